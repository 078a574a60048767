// The attack: the objective and its gradient seed, the random start, the signed PGD step with
// projection onto the eps-ball and [0,1], per-step score records and best-restart selection.

// Objective per sample, and d objective / d logits scaled by `sign` (+1 raises the score,
// -1 lowers it). Kind 0: the logit itself (ATD's discriminator, one output). Kind 1: the
// log of the maximum softmax probability (MSP).
// a: logits, objective, grad, batch; b: classes, kind, sign bits.
@compute @workgroup_size(256)
fn objective(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.a.w { return; }
    let classes = P.b.x;
    let sign = bitcast<f32>(P.b.z);
    let base = P.a.x + n * classes;
    if P.b.y == 0u {
        A[P.a.y + n] = A[base];
        A[P.a.z + n] = sign;
        return;
    }
    var best = 0u;
    var m = A[base];
    for (var c = 1u; c < classes; c++) {
        if A[base + c] > m { m = A[base + c]; best = c; }
    }
    var total = 0.0;
    for (var c = 0u; c < classes; c++) { total = total + exp(A[base + c] - m); }
    A[P.a.y + n] = -log(total);
    for (var c = 0u; c < classes; c++) {
        let p = exp(A[base + c] - m) / total;
        A[P.a.z + n * classes + c] = sign * (select(0.0, 1.0, c == best) - p);
    }
}

// A 32-bit integer hash (PCG output permutation); `noise` in [-1, 1) is a multiple of 2^-23,
// reproduced bit for bit by atd_core::noise.
fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn noise(seed: u32, i: u32) -> f32 {
    return f32(pcg(i ^ pcg(seed)) >> 8u) / 8388608.0 - 1.0;
}

// x = clamp(x0 + eps * noise, 0, 1) (eps 0: x = x0). a: x0, x, n, seed; b.x: eps bits.
@compute @workgroup_size(256)
fn pgd_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.a.z { return; }
    let eps = bitcast<f32>(P.b.x);
    A[P.a.y + i] = clamp(A[P.a.x + i] + eps * noise(P.a.w, i), 0.0, 1.0);
}

// x = clamp(clamp(x + alpha * sign(g), x0 - eps, x0 + eps), 0, 1).
// a: x0, x, g, n; b: eps bits, alpha bits.
@compute @workgroup_size(256)
fn pgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.a.w { return; }
    let eps = bitcast<f32>(P.b.x);
    let alpha = bitcast<f32>(P.b.y);
    let x0 = A[P.a.x + i];
    let stepped = A[P.a.y + i] + alpha * sign(A[P.a.z + i]);
    A[P.a.y + i] = clamp(clamp(stepped, x0 - eps, x0 + eps), 0.0, 1.0);
}

// hist[n] = objective[n]. a: objective, hist, batch.
@compute @workgroup_size(256)
fn record(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.a.z { return; }
    A[P.a.y + n] = A[P.a.x + n];
}

// Per sample: keep x and its objective when it is better for the attacker (sign * objective
// larger) than the best so far; always on the first restart.
// a: x, objective, best_x, best_objective; b: batch, values per sample, first, sign bits.
@compute @workgroup_size(256)
fn keep_best(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.b.x { return; }
    let sign = bitcast<f32>(P.b.w);
    if P.b.z == 0u && !(sign * A[P.a.y + n] > sign * A[P.a.w + n]) { return; }
    A[P.a.w + n] = A[P.a.y + n];
    let per = P.b.y;
    for (var k = 0u; k < per; k++) {
        A[P.a.z + n * per + k] = A[P.a.x + n * per + k];
    }
}
