//! The emulator: kernels/*.cu compiled for the host by build.rs (g++ under kernels/emu/shim.h)
//! behind the same [`GpuDriver`] interface as a GPU. "Device memory" is host memory, a
//! `DevPtr` its address; launches run synchronously on the calling thread, each CUDA thread
//! a fiber (see kernels/emu/shim.h). `Device::Emu` is `CudaBackend<EmuDriver>`: every grid
//! size, argument and buffer size the CUDA backend computes is exercised here.

use crate::backend::Device;
use crate::backend::cuda::CudaBackend;
use crate::backend::cuda::driver::{DevPtr, GpuDriver, GpuError, LaunchDims};
use crate::backend::cuda::kernels::{Kernel, emu_entry};
use std::alloc::Layout;
use std::ffi::{CStr, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

const ALIGN: usize = 256;

#[derive(Default)]
pub struct EmuDriver {
    allocs: AtomicUsize,
    launches: AtomicUsize,
}

impl EmuDriver {
    /// Allocations that reached this driver (the caching pool's misses).
    pub fn alloc_count(&self) -> usize {
        self.allocs.load(Ordering::Relaxed)
    }
    pub fn launch_count(&self) -> usize {
        self.launches.load(Ordering::Relaxed)
    }
}

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes.max(1), ALIGN).expect("emulator allocation layout")
}

impl GpuDriver for EmuDriver {
    fn device(&self) -> Device {
        Device::Emu
    }
    fn alloc(&self, bytes: usize) -> Result<DevPtr, GpuError> {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::alloc(layout(bytes)) };
        if p.is_null() {
            return Err(GpuError(format!("emulator: out of host memory ({bytes} bytes)")));
        }
        Ok(DevPtr(p as u64))
    }
    unsafe fn free(&self, p: DevPtr, bytes: usize) {
        // SAFETY: the caller passes a pointer from alloc(bytes).
        unsafe { std::alloc::dealloc(p.0 as *mut u8, layout(bytes)) }
    }
    unsafe fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError> {
        // SAFETY: the caller guarantees dst holds src.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.0 as *mut u8, src.len()) };
        Ok(())
    }
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<(), GpuError> {
        // SAFETY: the caller guarantees src holds dst.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.0 as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
    unsafe fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<(), GpuError> {
        // SAFETY: the caller guarantees both hold `bytes` bytes (distinct allocations).
        unsafe { std::ptr::copy_nonoverlapping(src.0 as *const u8, dst.0 as *mut u8, bytes) };
        Ok(())
    }
    unsafe fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<(), GpuError> {
        // SAFETY: the caller guarantees dst holds `bytes` bytes.
        unsafe { std::ptr::write_bytes(dst.0 as *mut u8, 0, bytes) };
        Ok(())
    }
    unsafe fn launch(
        &self,
        kernel: Kernel,
        dims: LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), GpuError> {
        if dims.shared_bytes != 0 {
            return Err(GpuError(format!(
                "emulator: {} asks for dynamic shared memory, which it lacks",
                kernel.name()
            )));
        }
        self.launches.fetch_add(1, Ordering::Relaxed);
        let entry = emu_entry::ENTRIES[kernel.index()];
        // SAFETY: the typed launcher built `args` to match the kernel's parameters.
        let rc = unsafe { entry(args.as_mut_ptr(), dims.grid.as_ptr(), dims.block.as_ptr()) };
        if rc != 0 {
            // SAFETY: a NUL-terminated thread-local string owned by the runtime.
            let msg =
                unsafe { CStr::from_ptr(emu_entry::dcgan_emu_last_error()) }.to_string_lossy().into_owned();
            return Err(GpuError(format!(
                "emulator: kernel {} ({}:{}): {msg}",
                kernel.name(),
                kernel.source().name,
                kernel.line()
            )));
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<(), GpuError> {
        Ok(())
    }
}

/// The process-wide emulator backend.
pub fn backend() -> &'static CudaBackend<EmuDriver> {
    static EMU: OnceLock<CudaBackend<EmuDriver>> = OnceLock::new();
    EMU.get_or_init(|| CudaBackend::new(EmuDriver::default()))
}
