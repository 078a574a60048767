//! The kernels' parameters: one `#[repr(C)]` struct per shader family, 64 bytes (one uniform
//! slot per dispatch). The plan writes them, the CPU reference reads them, and each family's
//! WGSL file declares the same struct under the same name; `tests/shaders.rs` checks every
//! field's name, offset and type against the WGSL (naga reflection).

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

kernel_params! {
    /// `shaders/elementwise.wgsl`: per-channel affine + activation, its backward, add, copy.
    /// `x` and `y` are inputs and `out` the output in the arena; `scale` and `shift` are
    /// per-channel vectors in the weights.
    ElementwiseParams {
        /// affine_act and its backward: the pre-affine input; add: the first term; copy: the source.
        x: u32,
        /// affine_act_backward: d out; add: the second term.
        y: u32,
        out: u32,
        scale: u32,
        shift: u32,
        channels: u32,
        /// Values per channel and image.
        hw: u32,
        /// Values processed.
        n: u32,
        /// Activation code (`ACT_*`).
        act: u32,
        /// LeakyReLU's negative slope.
        slope: f32,
        /// The backward adds to `out` instead of overwriting it.
        accumulate: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
        pad4: u32,
    }
}

kernel_params! {
    /// `shaders/conv.wgsl`: a convolution without bias (NCHW, weights `[cout, cin, k, k]`) and
    /// its input gradient (then `input` is d output and `output` d input).
    ConvParams {
        input: u32,
        weights: u32,
        output: u32,
        batch: u32,
        cin: u32,
        cout: u32,
        hin: u32,
        win: u32,
        hout: u32,
        wout: u32,
        k: u32,
        stride: u32,
        pad_top: u32,
        pad_left: u32,
        /// Add to `output` instead of overwriting it.
        accumulate: u32,
        pad0: u32,
    }
}

kernel_params! {
    /// `shaders/dense.wgsl`: linear layers (weights `[nin, nout]`) and global average pooling,
    /// with their input gradients (then `input` is the output's gradient).
    DenseParams {
        input: u32,
        weights: u32,
        output: u32,
        /// Images (linear) or pooled rows (mean pool: images x channels).
        rows: u32,
        nin: u32,
        nout: u32,
        bias: u32,
        has_bias: u32,
        /// Values averaged per row (mean pool).
        hw: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
        pad4: u32,
        pad5: u32,
        pad6: u32,
    }
}

kernel_params! {
    /// `shaders/attack.wgsl`: the objective and its gradient seed, the random start, the PGD
    /// step, the per-step records and the best point kept.
    AttackParams {
        /// Clean images (the centre of the eps-ball).
        clean: u32,
        /// The images being attacked.
        x: u32,
        /// d objective / d logits (objective) or d objective / d x (PGD step).
        grad: u32,
        objective: u32,
        best_x: u32,
        best_objective: u32,
        logits: u32,
        history: u32,
        /// Samples (objective, record, keep_best) or values (pgd_init, pgd_step).
        count: u32,
        /// Classes per logit row (objective), values per sample (keep_best).
        width: u32,
        /// objective: 1 for log MSP, 0 for the logit itself; keep_best: the first restart.
        flag: u32,
        seed: u32,
        /// +1 raises the score, -1 lowers it.
        sign: f32,
        eps: f32,
        /// The PGD step size.
        alpha: f32,
        pad0: u32,
    }
}
