// Linear layers (weights [in, out], as Burn stores them) and global average pooling, with
// their input gradients.

// y[n, o] = sum_i x[n, i] w[i, o] (+ bias[o]).
// a: x, w (W), y, batch; b: nin, nout, bias (W), has_bias.
@compute @workgroup_size(256)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let nin = P.b.x; let nout = P.b.y;
    if i >= P.a.w * nout { return; }
    let o = i % nout;
    let n = i / nout;
    var sum = 0.0;
    for (var k = 0u; k < nin; k++) {
        sum = sum + A[P.a.x + n * nin + k] * W[P.a.y + k * nout + o];
    }
    if P.b.w != 0u { sum = sum + W[P.b.z + o]; }
    A[P.a.z + i] = sum;
}

// dx[n, i] = sum_o dy[n, o] w[i, o]. a: dy, w (W), dx, batch; b: nin, nout.
@compute @workgroup_size(256)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let nin = P.b.x; let nout = P.b.y;
    if i >= P.a.w * nin { return; }
    let k = i % nin;
    let n = i / nin;
    var sum = 0.0;
    for (var o = 0u; o < nout; o++) {
        sum = sum + A[P.a.x + n * nout + o] * W[P.a.y + k * nout + o];
    }
    A[P.a.z + i] = sum;
}

// y[m] = mean of x[m * hw .. (m + 1) * hw] for m < rows. a: x, y, rows, hw.
@compute @workgroup_size(256)
fn mean_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let m = thread_index(gid, groups);
    if m >= P.a.z { return; }
    var sum = 0.0;
    for (var p = 0u; p < P.a.w; p++) {
        sum = sum + A[P.a.x + m * P.a.w + p];
    }
    A[P.a.y + m] = sum / f32(P.a.w);
}

// dx[m * hw + p] = dy[m] / hw. a: dy, dx, rows * hw, hw.
@compute @workgroup_size(256)
fn mean_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.a.z { return; }
    A[P.a.y + i] = A[P.a.x + i / P.a.w] / f32(P.a.w);
}
