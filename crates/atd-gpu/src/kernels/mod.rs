//! The engine's kernels, one module per op family, each beside its `shaders/<family>.wgsl`: the
//! family's parameter struct (`#[repr(C)]`, 64 bytes: one uniform slot per dispatch), its op
//! constructors and its CPU reference. The plan writes the parameters, the CPU reference reads
//! them, and each WGSL file declares the same struct under the same name; `tests/shaders.rs`
//! checks every field's name, offset and type against the WGSL (naga reflection). Here: what
//! the families share (the kernel list, an op, the parameter macro, activation codes).

/// A parameter struct shared with WGSL: its name there and its fields (name, byte offset,
/// WGSL scalar type), in order.
pub trait KernelParams: bytemuck::Pod {
    const WGSL_NAME: &'static str;
    const FIELDS: &'static [(&'static str, usize, &'static str)];
}

macro_rules! wgsl_type {
    (u32) => {
        "u32"
    };
    (f32) => {
        "f32"
    };
}

/// Declares a parameter struct and its `KernelParams` description from one field list.
macro_rules! kernel_params {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident: $ty:tt,)* }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $ty,)*
        }

        impl KernelParams for $name {
            const WGSL_NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, usize, &'static str)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field), wgsl_type!($ty)),)*];
        }

        const _: () = assert!(std::mem::size_of::<$name>() == PARAMS_BYTES, "one 64-byte uniform slot");
    };
}

/// Bytes of one dispatch's parameters.
pub const PARAMS_BYTES: usize = 64;

pub mod attack;
pub mod conv;
pub mod dense;
pub mod elementwise;

pub use attack::AttackParams;
pub use conv::{CONV_BLOCK, CONV_TILE, CONV_TILE_CHANNELS, ConvGeometry, ConvParams, ConvStrategy};
pub use dense::DenseParams;
pub use elementwise::ElementwiseParams;

/// The WGSL entry points, one per kernel (see `shaders/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    AffineAct,
    AffineActBackward,
    Add,
    Copy,
    ConvForward,
    ConvForwardTiled,
    ConvBackwardInput,
    LinearForward,
    LinearBackwardInput,
    MeanPool,
    MeanPoolBackward,
    Objective,
    PgdInit,
    PgdStep,
    Record,
    KeepBest,
}

impl Kernel {
    pub const ALL: [Kernel; 16] = [
        Kernel::AffineAct,
        Kernel::AffineActBackward,
        Kernel::Add,
        Kernel::Copy,
        Kernel::ConvForward,
        Kernel::ConvForwardTiled,
        Kernel::ConvBackwardInput,
        Kernel::LinearForward,
        Kernel::LinearBackwardInput,
        Kernel::MeanPool,
        Kernel::MeanPoolBackward,
        Kernel::Objective,
        Kernel::PgdInit,
        Kernel::PgdStep,
        Kernel::Record,
        Kernel::KeepBest,
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::AffineAct => "affine_act",
            Kernel::AffineActBackward => "affine_act_backward",
            Kernel::Add => "add",
            Kernel::Copy => "copy",
            Kernel::ConvForward => "conv_forward",
            Kernel::ConvForwardTiled => "conv_forward_tiled",
            Kernel::ConvBackwardInput => "conv_backward_input",
            Kernel::LinearForward => "linear_forward",
            Kernel::LinearBackwardInput => "linear_backward_input",
            Kernel::MeanPool => "mean_pool",
            Kernel::MeanPoolBackward => "mean_pool_backward",
            Kernel::Objective => "objective",
            Kernel::PgdInit => "pgd_init",
            Kernel::PgdStep => "pgd_step",
            Kernel::Record => "record",
            Kernel::KeepBest => "keep_best",
        }
    }

    /// The shader file (op family) that holds this kernel.
    pub fn family(self) -> Family {
        match self {
            Kernel::AffineAct | Kernel::AffineActBackward | Kernel::Add | Kernel::Copy => Family::Elementwise,
            Kernel::ConvForward | Kernel::ConvForwardTiled | Kernel::ConvBackwardInput => Family::Conv,
            Kernel::LinearForward | Kernel::LinearBackwardInput | Kernel::MeanPool | Kernel::MeanPoolBackward => {
                Family::Dense
            }
            Kernel::Objective | Kernel::PgdInit | Kernel::PgdStep | Kernel::Record | Kernel::KeepBest => Family::Attack,
        }
    }
}

/// One WGSL file per op family; each is compiled with `shaders/common.wgsl` in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Conv,
    Dense,
    Attack,
}

pub const COMMON_WGSL: &str = include_str!("../../../../shaders/common.wgsl");

impl Family {
    pub const ALL: [Family; 4] = [Family::Elementwise, Family::Conv, Family::Dense, Family::Attack];

    pub fn file_name(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise.wgsl",
            Family::Conv => "conv.wgsl",
            Family::Dense => "dense.wgsl",
            Family::Attack => "attack.wgsl",
        }
    }

    /// The name of the family's parameter struct (in its module here and in its WGSL file).
    pub fn params_struct(self) -> &'static str {
        match self {
            Family::Elementwise => ElementwiseParams::WGSL_NAME,
            Family::Conv => ConvParams::WGSL_NAME,
            Family::Dense => DenseParams::WGSL_NAME,
            Family::Attack => AttackParams::WGSL_NAME,
        }
    }

    /// The complete shader source: the common header, then the family's kernels.
    pub fn source(self) -> String {
        let body = match self {
            Family::Elementwise => include_str!("../../../../shaders/elementwise.wgsl"),
            Family::Conv => include_str!("../../../../shaders/conv.wgsl"),
            Family::Dense => include_str!("../../../../shaders/dense.wgsl"),
            Family::Attack => include_str!("../../../../shaders/attack.wgsl"),
        };
        format!("{COMMON_WGSL}\n{body}")
    }
}

/// One kernel launch: its parameters (its family's struct in `params`, as the 64 bytes the
/// shader's uniform holds) and a thread count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Op {
    pub kernel: Kernel,
    pub params: [u32; 16],
    pub threads: u32,
}

/// Activation codes of `shaders/common.wgsl`.
pub const ACT_NONE: u32 = 0;
pub const ACT_RELU: u32 = 1;
pub const ACT_SWISH: u32 = 2;
pub const ACT_LEAKY: u32 = 3;

/// Offsets and thread counts are u32 in the shaders. A plan over the memory budget is refused
/// once it is complete (`PlanError::TooLarge`), so a value that does not fit only ever lands in
/// a plan that is then discarded: saturate rather than panic.
fn u(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Op {
    pub(crate) fn new<P: KernelParams>(kernel: Kernel, threads: usize, params: P) -> Self {
        assert_eq!(P::WGSL_NAME, kernel.family().params_struct(), "{kernel:?} takes its family's parameters");
        Self { kernel, params: bytemuck::cast(params), threads: u(threads) }
    }

    /// The parameters as the struct of the kernel's family.
    pub fn params<P: KernelParams>(&self) -> P {
        assert_eq!(P::WGSL_NAME, self.kernel.family().params_struct(), "{:?} has its family's parameters", self.kernel);
        bytemuck::cast(self.params)
    }
}

/// An offset or size parameter as an index.
fn ix(v: u32) -> usize {
    v as usize
}

/// Run one op on the CPU: the same arithmetic as its WGSL kernel.
pub fn run_cpu(op: &Op, w: &[f32], a: &mut [f32]) {
    match op.kernel.family() {
        Family::Elementwise => elementwise::run(op, w, a),
        Family::Conv => conv::run(op, w, a),
        Family::Dense => dense::run(op, w, a),
        Family::Attack => attack::run(op, a),
    }
}
