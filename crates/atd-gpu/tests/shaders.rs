//! Every shader file parses and validates with naga (no GPU needed), and every kernel the
//! engine launches exists as an entry point of its family's file.

use atd_gpu::kernels::{
    AttackParams, ConvParams, DenseParams, ElementwiseParams, Family, Kernel, KernelParams, PARAMS_BYTES,
};

fn module(family: Family) -> naga::Module {
    let source = family.source();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}: {}", family.file_name(), e.emit_to_string(&source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", family.file_name(), e.emit_to_string(&source)));
    module
}

#[test]
fn every_shader_validates_and_holds_its_kernels() {
    for family in Family::ALL {
        let module = module(family);
        for kernel in Kernel::ALL.into_iter().filter(|k| k.family() == family) {
            let entry = module.entry_points.iter().find(|e| e.name == kernel.entry_point());
            let entry =
                entry.unwrap_or_else(|| panic!("{} has no entry point {}", family.file_name(), kernel.entry_point()));
            assert_eq!(
                entry.workgroup_size,
                [256, 1, 1],
                "{}: workgroups must stay within WebGPU's 256 invocations",
                kernel.entry_point()
            );
        }
    }
}

#[test]
fn shaders_stay_within_webgpu_default_binding_limits() {
    for family in Family::ALL {
        let module = module(family);
        let storage = module
            .global_variables
            .iter()
            .filter(|(_, v)| matches!(v.space, naga::AddressSpace::Storage { .. }))
            .count();
        assert!(storage <= 8, "{}: {storage} storage buffers (WebGPU allows 8 per stage)", family.file_name());
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("type layouts");
        let workgroup_bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum();
        assert!(
            workgroup_bytes <= 16_384,
            "{}: {workgroup_bytes} bytes of workgroup memory (WebGPU allows 16384)",
            family.file_name()
        );
    }
}

/// The WGSL struct `P::WGSL_NAME` in `family`'s file against its Rust twin: the same fields in
/// the same order at the same byte offsets with the same scalar types, the uniform at binding 0
/// of that type, and 64 bytes in all.
fn assert_mirrors<P: KernelParams>(family: Family) {
    let module = module(family);
    let file = family.file_name();
    assert_eq!(family.params_struct(), P::WGSL_NAME);
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(P::WGSL_NAME))
        .unwrap_or_else(|| panic!("{file} declares no struct {}", P::WGSL_NAME));
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{file}: {} is not a struct", P::WGSL_NAME)
    };
    assert_eq!(*span as usize, PARAMS_BYTES, "{file}: {} is {span} bytes", P::WGSL_NAME);
    let wgsl: Vec<(String, usize, &str)> = members
        .iter()
        .map(|m| {
            let scalar = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => "f32",
                ref other => panic!("{file}: field {:?} has type {other:?}", m.name),
            };
            (m.name.clone().unwrap_or_default(), m.offset as usize, scalar)
        })
        .collect();
    let rust: Vec<(String, usize, &str)> = P::FIELDS.iter().map(|&(n, o, t)| (n.to_string(), o, t)).collect();
    assert_eq!(wgsl, rust, "{file}: the WGSL {} differs from its Rust struct", P::WGSL_NAME);
    let uniform = module
        .global_variables
        .iter()
        .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
        .unwrap_or_else(|| panic!("{file} has no uniform"))
        .1;
    assert_eq!(uniform.ty, handle, "{file}: the uniform is not a {}", P::WGSL_NAME);
    assert_eq!(uniform.binding.as_ref().map(|b| (b.group, b.binding)), Some((0, 0)));
}

#[test]
fn wgsl_parameter_structs_mirror_the_rust_ones() {
    assert_mirrors::<ElementwiseParams>(Family::Elementwise);
    assert_mirrors::<ConvParams>(Family::Conv);
    assert_mirrors::<DenseParams>(Family::Dense);
    assert_mirrors::<AttackParams>(Family::Attack);
}
