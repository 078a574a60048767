//! The wgpu side: one pipeline per kernel sharing one bind-group layout (parameters as a
//! dynamic-offset uniform, weights, arena), a table of op parameters uploaded once per program,
//! and programs recorded as one compute pass with readbacks at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::kernels::{Family, Kernel, Op};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter available ({0}); WebGPU or Vulkan/Metal/DX12 is needed, or use the CPU engine")]
    NoAdapter(String),
    #[error("the GPU refused a device: {0}")]
    NoDevice(String),
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    #[error("the model needs a {need} byte buffer; this GPU allows {limit}")]
    TooLarge { need: u64, limit: u64 },
}

/// What the adapter says about itself.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// A CPU implementation (lavapipe, SwiftShader, WARP, ...).
    pub software: bool,
}

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    layout: wgpu::BindGroupLayout,
    pipelines: HashMap<Kernel, wgpu::ComputePipeline>,
    param_stride: u64,
    max_binding: u64,
}

/// The device buffers of one plan.
pub struct Resident {
    weights: wgpu::Buffer,
    arena: wgpu::Buffer,
    params: wgpu::Buffer,
    params_capacity: u64,
    bind_group: wgpu::BindGroup,
}

const PARAMS_BYTES: u64 = crate::kernels::PARAMS_BYTES as u64;

/// The GPU device of an engine, for fault injection: destroying it does what a driver reset or
/// a lost GPU does (every later call of the engine fails with an error).
#[derive(Clone)]
pub struct DeviceHandle(wgpu::Device);

impl DeviceHandle {
    pub fn destroy(&self) {
        self.0.destroy();
    }
}

impl Gpu {
    /// A handle on the device that can destroy it while the engine is busy.
    pub fn handle(&self) -> DeviceHandle {
        DeviceHandle(self.device.clone())
    }

    /// Find an adapter (high performance first) and build every pipeline.
    pub async fn new() -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("atd-gpu"),
                required_limits: wgpu::Limits {
                    max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                    max_buffer_size: limits.max_buffer_size,
                    ..wgpu::Limits::downlevel_defaults()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoDevice(e.to_string()))?;
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("atd-gpu layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("atd-gpu pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let modules: HashMap<Family, wgpu::ShaderModule> = Family::ALL
            .into_iter()
            .map(|family| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(family.file_name()),
                    source: wgpu::ShaderSource::Wgsl(family.source().into()),
                });
                (family, module)
            })
            .collect();
        let pipelines = Kernel::ALL
            .into_iter()
            .map(|kernel| {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry_point()),
                    layout: Some(&pipeline_layout),
                    module: &modules[&kernel.family()],
                    entry_point: Some(kernel.entry_point()),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (kernel, pipeline)
            })
            .collect();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let adapter = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            software,
        };
        let param_stride = (device.limits().min_uniform_buffer_offset_alignment as u64).max(PARAMS_BYTES);
        let max_binding = device.limits().max_storage_buffer_binding_size.min(device.limits().max_buffer_size);
        Ok(Self { device, queue, adapter, layout, pipelines, param_stride, max_binding })
    }

    fn bind_group(&self, weights: &wgpu::Buffer, arena: &wgpu::Buffer, params: &wgpu::Buffer) -> wgpu::BindGroup {
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("atd-gpu bind group"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: params,
                        offset: 0,
                        size: wgpu::BufferSize::new(PARAMS_BYTES),
                    }),
                },
                wgpu::BindGroupEntry { binding: 1, resource: weights.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: arena.as_entire_binding() },
            ],
        })
    }

    /// Upload the weights once and allocate the arena.
    pub fn upload(&self, weights: &[f32], arena_len: usize) -> Result<Resident, GpuError> {
        let need = (weights.len().max(arena_len) * 4) as u64;
        if need > self.max_binding {
            return Err(GpuError::TooLarge { need, limit: self.max_binding });
        }
        let weights = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("weights"),
            contents: bytemuck::cast_slice(if weights.is_empty() { &[0.0f32] } else { weights }),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let arena = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("arena"),
            size: (arena_len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params_capacity = 256 * self.param_stride;
        let params = self.params_buffer(params_capacity);
        let bind_group = self.bind_group(&weights, &arena, &params);
        Ok(Resident { weights, arena, params, params_capacity, bind_group })
    }

    fn params_buffer(&self, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("op parameters"),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Write `writes` into the arena, run `schedule` (indices into `table`) in order, and read
    /// back `reads` (offset, length) from the arena afterwards.
    pub async fn run(
        &self,
        resident: &mut Resident,
        table: &[Op],
        schedule: &[usize],
        writes: &[(usize, &[f32])],
        reads: &[(usize, usize)],
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        let table_bytes = table.len() as u64 * self.param_stride;
        if table_bytes > resident.params_capacity {
            resident.params_capacity = table_bytes.next_power_of_two();
            resident.params = self.params_buffer(resident.params_capacity);
            resident.bind_group = self.bind_group(&resident.weights, &resident.arena, &resident.params);
        }
        let mut packed = vec![0u8; table_bytes as usize];
        for (i, op) in table.iter().enumerate() {
            let at = i * self.param_stride as usize;
            packed[at..at + PARAMS_BYTES as usize].copy_from_slice(bytemuck::cast_slice(&op.params));
        }
        if !packed.is_empty() {
            self.queue.write_buffer(&resident.params, 0, &packed);
        }
        for (offset, values) in writes {
            self.queue.write_buffer(&resident.arena, (*offset * 4) as u64, bytemuck::cast_slice(values));
        }
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("atd-gpu program") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("atd-gpu pass"),
                timestamp_writes: None,
            });
            for &index in schedule {
                let op = &table[index];
                if op.threads == 0 {
                    continue;
                }
                pass.set_pipeline(&self.pipelines[&op.kernel]);
                pass.set_bind_group(0, &resident.bind_group, &[(index as u64 * self.param_stride) as u32]);
                let groups = op.threads.div_ceil(256);
                let (x, y) = if groups <= 65_535 { (groups, 1) } else { (65_535, groups.div_ceil(65_535)) };
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        let total: usize = reads.iter().map(|r| r.1).sum();
        let staging = (total > 0).then(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: (total * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        if let Some(staging) = &staging {
            let mut at = 0u64;
            for &(offset, len) in reads {
                encoder.copy_buffer_to_buffer(
                    &resident.arena,
                    (offset * 4) as u64,
                    staging,
                    at,
                    Some((len * 4) as u64),
                );
                at += (len * 4) as u64;
            }
        }
        self.queue.submit([encoder.finish()]);
        let Some(staging) = staging else { return Ok(Vec::new()) };
        let bytes = self.read(&staging).await?;
        let values: &[f32] = bytemuck::cast_slice(&bytes);
        let mut out = Vec::with_capacity(reads.len());
        let mut at = 0;
        for &(_, len) in reads {
            out.push(values[at..at + len].to_vec());
            at += len;
        }
        Ok(out)
    }

    /// Map a staging buffer and copy it out: blocks natively, awaits the browser's callback.
    async fn read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>, GpuError> {
        type Slot = Arc<Mutex<(Option<Result<(), wgpu::BufferAsyncError>>, Option<std::task::Waker>)>>;
        let slot: Slot = Arc::new(Mutex::new((None, None)));
        let callback_slot = slot.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let mut s = callback_slot.lock().unwrap();
            s.0 = Some(result);
            if let Some(waker) = s.1.take() {
                waker.wake();
            }
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback(e.to_string()))?;
        std::future::poll_fn(|cx| {
            let mut s = slot.lock().unwrap();
            match s.0.take() {
                Some(result) => std::task::Poll::Ready(result),
                None => {
                    s.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        })
        .await
        .map_err(|e| GpuError::Readback(e.to_string()))?;
        let bytes = staging.get_mapped_range(..).map_err(|e| GpuError::Readback(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
