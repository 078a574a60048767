// Per-channel affine (folded BatchNorm or input normalisation) + activation, its input
// gradient, residual add and copy.

// `x` and `y` are inputs and `out` the output in the arena; `scale` and `shift` per-channel
// vectors in the weights (crates/atd-gpu/src/kernels/elementwise.rs: ElementwiseParams).
struct ElementwiseParams {
    x: u32, y: u32, out: u32, scale: u32,
    shift: u32, channels: u32, hw: u32, n: u32,
    act: u32, slope: f32, accumulate: u32, pad0: u32,
    pad1: u32, pad2: u32, pad3: u32, pad4: u32,
}

@group(0) @binding(0) var<uniform> P: ElementwiseParams;

// out = act(x * scale[c] + shift[c]) over n = batch * channels * hw values.
@compute @workgroup_size(256)
fn affine_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.n { return; }
    let ch = (i / P.hw) % P.channels;
    let z = A[P.x + i] * W[P.scale + ch] + W[P.shift + ch];
    A[P.out + i] = activate(z, P.act, P.slope);
}

// out (+)= y * act'(x * scale + shift) * scale: y is d(affine_act's out), out is dx.
@compute @workgroup_size(256)
fn affine_act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.n { return; }
    let ch = (i / P.hw) % P.channels;
    let scale = W[P.scale + ch];
    let z = A[P.x + i] * scale + W[P.shift + ch];
    var g = A[P.y + i] * activate_grad(z, P.act, P.slope) * scale;
    if P.accumulate != 0u { g = g + A[P.out + i]; }
    A[P.out + i] = g;
}

// out = x + y over n values.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.n { return; }
    A[P.out + i] = A[P.x + i] + A[P.y + i];
}

// out = x over n values.
@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.n { return; }
    A[P.out + i] = A[P.x + i];
}
