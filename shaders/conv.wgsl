// 2-D convolution without bias (NCHW, weights [cout, cin, k, k]), stride 1 or 2, explicit
// top/left padding (bottom/right follow from the output size: symmetric or TF-SAME), and its
// gradient with respect to the input. Each thread computes four channels of one pixel, so every
// activation it loads is used four times (register blocking); kernel taps that fall outside
// the image are skipped by loop bounds, not per-tap branches.
//
// `input` and `output` in the arena, `weights` in the weights (crates/atd-gpu/src/kernels/conv.rs:
// ConvParams); the backward reads d output as `input` and writes d input as `output`.

struct ConvParams {
    input: u32, weights: u32, output: u32, batch: u32,
    cin: u32, cout: u32, hin: u32, win: u32,
    hout: u32, wout: u32, k: u32, stride: u32,
    pad_top: u32, pad_left: u32, accumulate: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> P: ConvParams;

const BLOCK: u32 = 4u;

// The weights of four consecutive output channels (clamped to the last real one) at one tap.
fn weights4(base: u32, step: u32, first: u32, last: u32) -> vec4<f32> {
    return vec4<f32>(
        W[base + min(first, last) * step],
        W[base + min(first + 1u, last) * step],
        W[base + min(first + 2u, last) * step],
        W[base + min(first + 3u, last) * step],
    );
}

fn store4(at: u32, step: u32, first: u32, count: u32, v: vec4<f32>) {
    for (var j = 0u; j < BLOCK; j++) {
        if first + j < count {
            let o = at + j * step;
            if P.accumulate != 0u { A[o] = A[o] + v[j]; } else { A[o] = v[j]; }
        }
    }
}

// One thread per (image, block of 4 output channels, output pixel).
@compute @workgroup_size(256)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let cin = P.cin; let cout = P.cout; let hin = P.hin; let win = P.win;
    let hout = P.hout; let wout = P.wout; let k = P.k; let stride = P.stride;
    let blocks = (cout + BLOCK - 1u) / BLOCK;
    if i >= P.batch * blocks * hout * wout { return; }
    let ox = i % wout;
    let oy = (i / wout) % hout;
    let co0 = ((i / (wout * hout)) % blocks) * BLOCK;
    let n = i / (wout * hout * blocks);
    let y0 = i32(oy * stride) - i32(P.pad_top);
    let x0 = i32(ox * stride) - i32(P.pad_left);
    let ky_lo = u32(max(0, -y0));
    let ky_hi = u32(clamp(i32(hin) - y0, 0, i32(k)));
    let kx_lo = u32(max(0, -x0));
    let kx_hi = u32(clamp(i32(win) - x0, 0, i32(k)));
    let kk = k * k;
    var sum = vec4<f32>(0.0);
    for (var ci = 0u; ci < cin; ci++) {
        let xbase = P.input + (n * cin + ci) * hin * win;
        let wbase = P.weights + ci * kk;
        for (var ky = ky_lo; ky < ky_hi; ky++) {
            let row = xbase + u32(y0 + i32(ky)) * win;
            for (var kx = kx_lo; kx < kx_hi; kx++) {
                let v = A[row + u32(x0 + i32(kx))];
                sum = sum + v * weights4(wbase + ky * k + kx, cin * kk, co0, cout - 1u);
            }
        }
    }
    store4(P.output + ((n * cout + co0) * hout + oy) * wout + ox, hout * wout, co0, cout, sum);
}

// One thread per (image, block of 4 input channels, input pixel): dx[n, ci, y, x] (+)= sum over
// co, ky, kx of w[co, ci, ky, kx] * dy[n, co, oy, ox] where oy * stride + ky - pad_top = y;
// `input` is dy and `output` dx.
@compute @workgroup_size(256)
fn conv_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let cin = P.cin; let cout = P.cout; let hin = P.hin; let win = P.win;
    let hout = P.hout; let wout = P.wout; let k = P.k; let stride = P.stride;
    let blocks = (cin + BLOCK - 1u) / BLOCK;
    if i >= P.batch * blocks * hin * win { return; }
    let x = i % win;
    let y = (i / win) % hin;
    let ci0 = ((i / (win * hin)) % blocks) * BLOCK;
    let n = i / (win * hin * blocks);
    let ty = y + P.pad_top;
    let tx = x + P.pad_left;
    let kk = k * k;
    var sum = vec4<f32>(0.0);
    for (var co = 0u; co < cout; co++) {
        let gbase = P.input + (n * cout + co) * hout * wout;
        let wbase = P.weights + co * cin * kk;
        // Taps with ky = ty (mod stride), ky <= ty and oy = (ty - ky) / stride < hout.
        for (var ky = ty % stride; ky < k && ky <= ty; ky += stride) {
            let oy = (ty - ky) / stride;
            if oy >= hout { continue; }
            for (var kx = tx % stride; kx < k && kx <= tx; kx += stride) {
                let ox = (tx - kx) / stride;
                if ox >= wout { continue; }
                let g = A[gbase + oy * wout + ox];
                sum = sum + g * weights4(wbase + ky * k + kx, kk, ci0, cin - 1u);
            }
        }
    }
    store4(P.output + ((n * cin + ci0) * hin + y) * win + x, hin * win, ci0, cin, sum);
}

// The same forward convolution, tiled through workgroup memory: a workgroup computes an 8x8
// tile of output pixels for 16 output channels of one image (each thread: one pixel, four
// channels). Per round of 8 input channels it stages their input patch (zero outside the image,
// so padding needs no branches) and their weights once, then every thread reads both from
// workgroup memory: each staged input value serves up to 9 taps x 16 channels instead of being
// fetched from the arena by each thread. The plan uses it for k <= 3 and stride <= 2 (the
// patch then fits: (8 - 1) * 2 + 3 = 17 pixels a side).
// a..d as conv_forward.

const TILE: u32 = 8u;
const TILE_CHANNELS: u32 = 16u;
const CHUNK: u32 = 8u;

var<workgroup> staged_input: array<f32, 2312>;        // CHUNK * 17 * 17
var<workgroup> staged_taps: array<vec4<f32>, 288>;    // CHUNK * 9 taps * (TILE_CHANNELS / 4)

@compute @workgroup_size(256)
fn conv_forward_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) l: u32,
) {
    let cin = P.cin; let cout = P.cout; let hin = P.hin; let win = P.win;
    let hout = P.hout; let wout = P.wout; let k = P.k; let stride = P.stride;
    let tiles_x = (wout + TILE - 1u) / TILE;
    let tiles_y = (hout + TILE - 1u) / TILE;
    let channel_blocks = (cout + TILE_CHANNELS - 1u) / TILE_CHANNELS;
    // The workgroup index is uniform, so this early exit keeps the barriers below uniform.
    let g = wid.x + wid.y * groups.x;
    if g >= P.batch * channel_blocks * tiles_y * tiles_x { return; }
    let tx = g % tiles_x;
    let ty = (g / tiles_x) % tiles_y;
    let block = (g / (tiles_x * tiles_y)) % channel_blocks;
    let n = g / (tiles_x * tiles_y * channel_blocks);
    let side = (TILE - 1u) * stride + k;
    let area = side * side;
    let kk = k * k;
    let y_origin = i32(ty * TILE * stride) - i32(P.pad_top);
    let x_origin = i32(tx * TILE * stride) - i32(P.pad_left);
    let px = l % TILE;
    let py = (l / TILE) % TILE;
    let quad = l / (TILE * TILE);
    let co0 = block * TILE_CHANNELS + quad * BLOCK;
    var sum = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < cin; c0 += CHUNK) {
        let chunk = min(CHUNK, cin - c0);
        for (var j = l; j < CHUNK * area; j += WORKGROUP) {
            let ci = j / area;
            let y = y_origin + i32((j % area) / side);
            let x = x_origin + i32(j % side);
            var v = 0.0;
            if ci < chunk && y >= 0 && y < i32(hin) && x >= 0 && x < i32(win) {
                v = A[P.input + ((n * cin + c0 + ci) * hin + u32(y)) * win + u32(x)];
            }
            staged_input[j] = v;
        }
        // staged_taps[(ci * kk + tap) * 4 + q]: the weights of channels q*4..q*4+3 of the block.
        for (var j = l; j < CHUNK * kk * 4u; j += WORKGROUP) {
            let ci = j / (4u * kk);
            let first = block * TILE_CHANNELS + (j % 4u) * BLOCK;
            var v = vec4<f32>(0.0);
            if ci < chunk && first < cout {
                v = weights4(P.weights + (c0 + ci) * kk + (j / 4u) % kk, cin * kk, first, cout - 1u);
            }
            staged_taps[j] = v;
        }
        workgroupBarrier();
        for (var ci = 0u; ci < chunk; ci++) {
            for (var ky = 0u; ky < k; ky++) {
                let row = (ci * side + py * stride + ky) * side + px * stride;
                let tap = (ci * kk + ky * k) * 4u + quad;
                for (var kx = 0u; kx < k; kx++) {
                    sum = sum + staged_input[row + kx] * staged_taps[tap + kx * 4u];
                }
            }
        }
        workgroupBarrier();
    }
    let oy = ty * TILE + py;
    let ox = tx * TILE + px;
    if oy < hout && ox < wout {
        store4(P.output + ((n * cout + co0) * hout + oy) * wout + ox, hout * wout, co0, cout, sum);
    }
}
