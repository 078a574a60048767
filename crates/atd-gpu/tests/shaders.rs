//! Every shader file parses and validates with naga (no GPU needed), and every kernel the
//! engine launches exists as an entry point of its family's file.

use atd_gpu::plan::{Family, Kernel};

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
