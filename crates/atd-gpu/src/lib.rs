//! atd-gpu: the detector and the PGD attack as our own WGSL compute shaders (`shaders/`) on
//! wgpu, natively (Vulkan, Metal, DX12; lavapipe in CI) and in the browser (WebGPU), with a
//! CPU reference that runs the very same kernel list.

pub mod engine;
pub mod gpu;
pub mod kernels;
pub mod plan;

pub use atd_core::attack::Detector;
pub use engine::{AttackOptions, AttackResult, AttackSpec, Direction, Engine, EngineError};
pub use kernels::ConvStrategy;
pub use plan::Plan;
