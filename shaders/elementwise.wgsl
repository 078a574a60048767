// Per-channel affine (folded BatchNorm or input normalisation) + activation, its input
// gradient, residual add and copy.

// y = act(x * scale[c] + shift[c]) over b * channels * hw values.
// a: x, y, scale (W), shift (W); b: channels, hw, n, act; c.x: slope bits.
@compute @workgroup_size(256)
fn affine_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.b.z { return; }
    let ch = (i / P.b.y) % P.b.x;
    let z = A[P.a.x + i] * W[P.a.z + ch] + W[P.a.w + ch];
    A[P.a.y + i] = activate(z, P.b.w, bitcast<f32>(P.c.x));
}

// dx (+)= dy * act'(x * scale + shift) * scale.
// a: x, dy, dx, scale (W); b: channels, hw, n, act; c: slope bits, shift (W), accumulate.
@compute @workgroup_size(256)
fn affine_act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.b.z { return; }
    let ch = (i / P.b.y) % P.b.x;
    let scale = W[P.a.w + ch];
    let z = A[P.a.x + i] * scale + W[P.c.y + ch];
    var g = A[P.a.y + i] * activate_grad(z, P.b.w, bitcast<f32>(P.c.x)) * scale;
    if P.c.z != 0u { g = g + A[P.a.z + i]; }
    A[P.a.z + i] = g;
}

// y = x1 + x2 over n values. a: x1, x2, y, n.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.a.w { return; }
    A[P.a.z + i] = A[P.a.x + i] + A[P.a.y + i];
}

// y = x over n values. a: x, y, n.
@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.a.z { return; }
    A[P.a.y + i] = A[P.a.x + i];
}
