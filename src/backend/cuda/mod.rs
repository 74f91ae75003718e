//! The CUDA backend: hand-written kernels (kernels/*.cu) compiled at run time by NVRTC.
//!
//! - [`kernels`]: the table build.rs generates from kernels/*.cu (sources, entry points,
//!   parameter structs, typed launchers);
//! - [`driver`]: the [`driver::GpuDriver`] trait — memory, copies, by-value launches — with
//!   two implementations: [`real::CudaDriver`] (cudarc) and `crate::backend::emu::EmuDriver`;
//! - [`CudaBackend`]: the `Backend` over any driver, with the caching allocator ([`alloc`]);
//! - [`nvrtc`]: compilation and the disk cache; [`report`]: `dcgan kernels`.

pub mod alloc;
mod backend;
pub mod driver;
pub mod kernels;
pub mod nvrtc;
pub mod real;
pub mod report;

pub use backend::{BLOCK, CudaBackend, MAX_GRID, TILE, forward_splits, weight_grad_splits};
pub use report::{KernelStats, kernels_report, render_json, render_table};
