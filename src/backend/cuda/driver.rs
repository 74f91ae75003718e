//! What the CUDA backend needs from a driver: device memory, copies and kernel launches with
//! by-value arguments. Two implementations: the real one (cudarc, `super::real`) and the
//! emulator (`crate::backend::emu`), so the backend's own code — grid sizes, argument order,
//! buffer sizes — is the same code in both.

use super::kernels::Kernel;
use crate::backend::Device;
use std::ffi::c_void;
use std::fmt;

/// A device address (CUdeviceptr). `#[repr(transparent)]`: a kernel argument slot holding a
/// `DevPtr` holds exactly the pointer the kernel reads.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DevPtr(pub u64);

impl DevPtr {
    /// `bytes` further on (for views into a buffer).
    pub fn offset(self, bytes: usize) -> DevPtr {
        DevPtr(self.0 + bytes as u64)
    }
}

/// Grid and block extents and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

impl LaunchDims {
    pub fn new(grid: [u32; 3], block: u32) -> Self {
        LaunchDims { grid, block: [block, 1, 1], shared_bytes: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct GpuError(pub String);

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuError {}

pub trait GpuDriver: Send + Sync + 'static {
    fn device(&self) -> Device;
    fn alloc(&self, bytes: usize) -> Result<DevPtr, GpuError>;
    /// # Safety
    /// `p` came from `alloc(bytes)` of this driver and is not used afterwards.
    unsafe fn free(&self, p: DevPtr, bytes: usize);
    /// # Safety
    /// `dst` is a live allocation of at least `src.len()` bytes.
    unsafe fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError>;
    /// Waits for every earlier launch, then copies.
    /// # Safety
    /// `src` is a live allocation of at least `dst.len()` bytes.
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<(), GpuError>;
    /// # Safety
    /// Both are live allocations of at least `bytes` bytes.
    unsafe fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<(), GpuError>;
    /// # Safety
    /// `dst` is a live allocation of at least `bytes` bytes.
    unsafe fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<(), GpuError>;
    /// Launches `kernel`; `args[i]` points at the value of its i-th parameter (the
    /// cuLaunchKernel convention). Use the typed launchers of `kernels::launch`.
    /// # Safety
    /// The argument values match the kernel's parameter types, and the buffers they point to
    /// are large enough for the launch.
    unsafe fn launch(
        &self,
        kernel: Kernel,
        dims: LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), GpuError>;
    fn synchronize(&self) -> Result<(), GpuError>;
}
