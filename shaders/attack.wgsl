// The attack: the objective and its gradient seed, the random start, the signed PGD step with
// projection onto the eps-ball and [0,1], per-step score records and best-restart selection.

// Buffers in the arena; `count` samples or values, `width` values per row
// (crates/atd-gpu/src/kernels/attack.rs: AttackParams).
struct AttackParams {
    clean: u32, x: u32, grad: u32, objective: u32,
    best_x: u32, best_objective: u32, logits: u32, history: u32,
    count: u32, width: u32, flag: u32, seed: u32,
    sign: f32, eps: f32, alpha: f32, pad0: u32,
}

@group(0) @binding(0) var<uniform> P: AttackParams;

// Objective per sample, and d objective / d logits scaled by `sign` (+1 raises the score,
// -1 lowers it). flag 0: the logit itself (ATD's discriminator, one output). flag 1: the
// log of the maximum softmax probability (MSP) over `width` classes.
@compute @workgroup_size(256)
fn objective(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.count { return; }
    let classes = P.width;
    let base = P.logits + n * classes;
    if P.flag == 0u {
        A[P.objective + n] = A[base];
        A[P.grad + n] = P.sign;
        return;
    }
    var best = 0u;
    var m = A[base];
    for (var c = 1u; c < classes; c++) {
        if A[base + c] > m { m = A[base + c]; best = c; }
    }
    var total = 0.0;
    for (var c = 0u; c < classes; c++) { total = total + exp(A[base + c] - m); }
    A[P.objective + n] = -log(total);
    for (var c = 0u; c < classes; c++) {
        let p = exp(A[base + c] - m) / total;
        A[P.grad + n * classes + c] = P.sign * (select(0.0, 1.0, c == best) - p);
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

// x = clamp(clean + eps * noise, 0, 1) over count values (eps 0: x = clean).
@compute @workgroup_size(256)
fn pgd_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.count { return; }
    A[P.x + i] = clamp(A[P.clean + i] + P.eps * noise(P.seed, i), 0.0, 1.0);
}

// x = clamp(clamp(x + alpha * sign(grad), clean - eps, clean + eps), 0, 1) over count values.
@compute @workgroup_size(256)
fn pgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    if i >= P.count { return; }
    let x0 = A[P.clean + i];
    let stepped = A[P.x + i] + P.alpha * sign(A[P.grad + i]);
    A[P.x + i] = clamp(clamp(stepped, x0 - P.eps, x0 + P.eps), 0.0, 1.0);
}

// history[n] = objective[n] for n < count.
@compute @workgroup_size(256)
fn record(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.count { return; }
    A[P.history + n] = A[P.objective + n];
}

// Per sample (count of them, width values each): keep x and its objective when it is better
// for the attacker (sign * objective larger) than the best so far; always when flag is set
// (the first restart).
@compute @workgroup_size(256)
fn keep_best(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = thread_index(gid, groups);
    if n >= P.count { return; }
    if P.flag == 0u && !(P.sign * A[P.objective + n] > P.sign * A[P.best_objective + n]) { return; }
    A[P.best_objective + n] = A[P.objective + n];
    let per = P.width;
    for (var k = 0u; k < per; k++) {
        A[P.best_x + n * per + k] = A[P.x + n * per + k];
    }
}
