// Linear layers (weights [in, out], as Burn stores them) and global average pooling, with
// their input gradients.

// `input` and `output` in the arena, `weights` and `bias` in the weights
// (crates/atd-gpu/src/kernels/dense.rs: DenseParams).
struct DenseParams {
    input: u32, weights: u32, output: u32, rows: u32,
    nin: u32, nout: u32, bias: u32, has_bias: u32,
    hw: u32, pad0: u32, pad1: u32, pad2: u32,
    pad3: u32, pad4: u32, pad5: u32, pad6: u32,
}

@group(0) @binding(0) var<uniform> P: DenseParams;

// y[n, o] = sum_i x[n, i] w[i, o] (+ bias[o]) for n < rows.
@compute @workgroup_size(256)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let nin = P.nin; let nout = P.nout;
    if i >= P.rows * nout { return; }
    let o = i % nout;
    let n = i / nout;
    var sum = 0.0;
    for (var k = 0u; k < nin; k++) {
        sum = sum + A[P.input + n * nin + k] * W[P.weights + k * nout + o];
    }
    if P.has_bias != 0u { sum = sum + W[P.bias + o]; }
    A[P.output + i] = sum;
}

// dx[n, i] = sum_o dy[n, o] w[i, o]: input is dy, output dx.
@compute @workgroup_size(256)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let nin = P.nin; let nout = P.nout;
    if i >= P.rows * nin { return; }
    let k = i % nin;
    let n = i / nin;
    var sum = 0.0;
    for (var o = 0u; o < nout; o++) {
        sum = sum + A[P.input + n * nout + o] * W[P.weights + k * nout + o];
    }
    A[P.output + i] = sum;
}

// y[m] = mean of x[m * hw .. (m + 1) * hw] for m < rows.
@compute @workgroup_size(256)
fn mean_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let m = thread_index(gid, groups);
    if m >= P.rows { return; }
    var sum = 0.0;
    for (var p = 0u; p < P.hw; p++) {
        sum = sum + A[P.input + m * P.hw + p];
    }
    A[P.output + m] = sum / f32(P.hw);
}

// dx[m * hw + p] = dy[m] / hw: input is dy, output dx.
@compute @workgroup_size(256)
fn mean_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.rows * P.hw { return; }
    A[P.output + i] = A[P.input + i / P.hw] / f32(P.hw);
}
