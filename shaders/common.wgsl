// Shared by every kernel family (prepended to each shader file by atd-gpu).
// One layout for every dispatch: the op's parameters (a dynamic-offset uniform at binding 0,
// declared by each family's file as its own struct, the mirror of the family module in crates/atd-gpu/src/kernels/),
// all model weights (folded BatchNorm included) in one read-only buffer, and one read-write
// arena holding every activation, gradient and attack buffer. Offsets are in f32 elements.
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read_write> A: array<f32>;

const WORKGROUP: u32 = 256u;

// The flat thread index of a 1-D or 2-D dispatch of WORKGROUP-sized groups.
fn thread_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

// Activations: 0 none, 1 ReLU, 2 Swish (x * sigmoid(x)), 3 LeakyReLU(slope).
fn activate(z: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return max(z, 0.0); }
        case 2u: { return z / (1.0 + exp(-z)); }
        case 3u: { return select(z * slope, z, z > 0.0); }
        default: { return z; }
    }
}

// d activate(z) / dz. ReLU's derivative at 0 is 0, as in Burn.
fn activate_grad(z: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return select(0.0, 1.0, z > 0.0); }
        case 2u: {
            let s = 1.0 / (1.0 + exp(-z));
            return s * (1.0 + z * (1.0 - s));
        }
        case 3u: { return select(slope, 1.0, z > 0.0); }
        default: { return 1.0; }
    }
}
