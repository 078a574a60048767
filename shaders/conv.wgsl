// 2-D convolution without bias (NCHW, weights [cout, cin, k, k]), stride 1 or 2, explicit
// top/left padding (bottom/right follow from the output size: symmetric or TF-SAME), and its
// gradient with respect to the input.
//
// a: x, w (W), y, batch; b: cin, cout, hin, win; c: hout, wout, k, stride; d: pad_top, pad_left, accumulate.

// One thread per output value.
@compute @workgroup_size(256)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let cin = P.b.x; let cout = P.b.y; let hin = P.b.z; let win = P.b.w;
    let hout = P.c.x; let wout = P.c.y; let k = P.c.z; let stride = P.c.w;
    if i >= P.a.w * cout * hout * wout { return; }
    let ox = i % wout;
    let oy = (i / wout) % hout;
    let co = (i / (wout * hout)) % cout;
    let n = i / (wout * hout * cout);
    let y0 = i32(oy * stride) - i32(P.d.x);
    let x0 = i32(ox * stride) - i32(P.d.y);
    var sum = 0.0;
    for (var ci = 0u; ci < cin; ci++) {
        let xbase = P.a.x + (n * cin + ci) * hin * win;
        let wbase = P.a.y + (co * cin + ci) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let y = y0 + i32(ky);
            if y < 0 || y >= i32(hin) { continue; }
            for (var kx = 0u; kx < k; kx++) {
                let x = x0 + i32(kx);
                if x < 0 || x >= i32(win) { continue; }
                sum = sum + A[xbase + u32(y) * win + u32(x)] * W[wbase + ky * k + kx];
            }
        }
    }
    if P.d.z != 0u { sum = sum + A[P.a.z + i]; }
    A[P.a.z + i] = sum;
}

// One thread per input value: dx[n, ci, y, x] (+)= sum over co, ky, kx of
// w[co, ci, ky, kx] * dy[n, co, oy, ox] where oy * stride + ky - pad_top = y (same for x).
// a: dy, w (W), dx, batch; b..d as conv_forward.
@compute @workgroup_size(256)
fn conv_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let cin = P.b.x; let cout = P.b.y; let hin = P.b.z; let win = P.b.w;
    let hout = P.c.x; let wout = P.c.y; let k = P.c.z; let stride = P.c.w;
    if i >= P.a.w * cin * hin * win { return; }
    let x = i % win;
    let y = (i / win) % hin;
    let ci = (i / (win * hin)) % cin;
    let n = i / (win * hin * cin);
    let ty = i32(y) + i32(P.d.x);
    let tx = i32(x) + i32(P.d.y);
    var sum = 0.0;
    for (var co = 0u; co < cout; co++) {
        let gbase = P.a.x + (n * cout + co) * hout * wout;
        let wbase = P.a.y + (co * cin + ci) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let sy = ty - i32(ky);
            if sy < 0 || sy % i32(stride) != 0 { continue; }
            let oy = u32(sy) / stride;
            if oy >= hout { continue; }
            for (var kx = 0u; kx < k; kx++) {
                let sx = tx - i32(kx);
                if sx < 0 || sx % i32(stride) != 0 { continue; }
                let ox = u32(sx) / stride;
                if ox >= wout { continue; }
                sum = sum + A[gbase + oy * wout + ox] * W[wbase + ky * k + kx];
            }
        }
    }
    if P.d.z != 0u { sum = sum + A[P.a.z + i]; }
    A[P.a.z + i] = sum;
}
