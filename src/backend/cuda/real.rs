//! The real driver: cudarc 0.19's driver API (dynamically loaded), one primary context per
//! GPU, the legacy default stream, and kernel modules compiled by NVRTC at first use for the
//! device's compute capability (CUBIN for the exact architecture; PTX for the driver to JIT
//! when the CUBIN is refused), cached on disk. It cannot run on a machine without a GPU; it
//! is compiled everywhere and probed with [`probe`], which never panics.

use super::CudaBackend;
use super::driver::{DevPtr, GpuDriver, GpuError, LaunchDims};
use super::kernels::{Kernel, SOURCES};
use super::nvrtc::{self, ImageKind, KernelCache};
use crate::backend::Device;
use cudarc::driver::{result as cu, sys};
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::{Mutex, OnceLock};

fn err(what: &str, e: impl std::fmt::Debug) -> GpuError {
    GpuError(format!("{what}: {e:?}"))
}

/// The driver functions this backend calls (cudarc's wrappers included: its errors' Debug
/// asks cuGetErrorString).
const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuGetErrorString",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemsetD8_v2",
    "cuLaunchKernel",
];

/// The first of `names` that `lib` lacks. cudarc looks each function up at its first call and
/// panics when the library lacks it (a stub, or a far older release), so the probes ask for
/// every one first.
pub(super) fn first_missing_symbol(
    lib: &libloading::Library,
    names: &[&'static str],
) -> Option<&'static str> {
    // SAFETY: only looks the names up; nothing is called.
    names.iter().copied().find(|name| unsafe { lib.get::<*const c_void>(name.as_bytes()) }.is_err())
}

/// Why CUDA device `ordinal` cannot be used, or Ok. Checks the libraries and the functions
/// used before any cudarc call (cudarc panics when either is missing).
pub fn probe(ordinal: usize) -> Result<String, String> {
    // SAFETY: only dlopens candidate names.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver found (libcuda.so not loadable)".into());
    }
    // SAFETY: the library is present (checked above), so culib() finds it.
    if let Some(name) = first_missing_symbol(unsafe { sys::culib() }, DRIVER_SYMBOLS) {
        return Err(format!("the CUDA driver library lacks {name}: not a usable libcuda"));
    }
    cu::init().map_err(|e| format!("the CUDA driver failed to initialise ({e:?})"))?;
    let count = cu::device::get_count().map_err(|e| format!("cuDeviceGetCount failed ({e:?})"))?;
    if count <= 0 {
        return Err("the CUDA driver is present but found no GPU".into());
    }
    if ordinal >= count as usize {
        return Err(format!("there is no GPU {ordinal} ({count} found: cuda:0..cuda:{})", count - 1));
    }
    nvrtc::available().map_err(|e| e.to_string())?;
    let dev = cu::device::get(ordinal as i32).map_err(|e| format!("cuDeviceGet failed ({e:?})"))?;
    let name = cu::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
    let (major, minor) = compute_capability(dev).map_err(|e| e.0)?;
    Ok(format!("{name}, compute capability {major}.{minor}"))
}

fn compute_capability(dev: sys::CUdevice) -> Result<(i32, i32), GpuError> {
    use sys::CUdevice_attribute::*;
    // SAFETY: dev came from cuDeviceGet.
    unsafe {
        let major = cu::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(|e| err("compute capability", e))?;
        let minor = cu::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(|e| err("compute capability", e))?;
        Ok((major, minor))
    }
}

/// GPU `ordinal`'s fp32 FMA peak in GFLOP/s from its data sheet terms: multiprocessors ×
/// fp32 lanes per multiprocessor (by compute capability) × 2 FLOPs × the rated clock. None
/// when the GPU is unusable or its generation is not in the table.
pub fn fp32_peak_gflops(ordinal: usize) -> Option<f64> {
    use sys::CUdevice_attribute::*;
    probe(ordinal).ok()?;
    let dev = cu::device::get(ordinal as i32).ok()?;
    let (major, minor) = compute_capability(dev).ok()?;
    let lanes = match (major, minor) {
        (7, _) | (8, 0) | (6, 0) => 64.0,
        (6, _) | (8, _) | (9, _) | (10, _) | (12, _) => 128.0,
        _ => return None,
    };
    // SAFETY: dev came from cuDeviceGet.
    let (sms, khz) = unsafe {
        (
            cu::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).ok()?,
            cu::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_CLOCK_RATE).ok()?,
        )
    };
    Some(sms as f64 * lanes * 2.0 * khz as f64 / 1e6)
}

struct Handle<T>(T);
// SAFETY: CUDA driver handles (contexts, modules, functions) may be used from any thread once
// the context is current there; every call below makes it current first.
unsafe impl<T> Send for Handle<T> {}
unsafe impl<T> Sync for Handle<T> {}

pub struct CudaDriver {
    ordinal: usize,
    ctx: Handle<sys::CUcontext>,
    arch: String,
    cache: KernelCache,
    modules: Mutex<HashMap<usize, Handle<sys::CUmodule>>>,
    functions: Vec<OnceLock<Handle<sys::CUfunction>>>,
}

impl CudaDriver {
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        probe(ordinal).map_err(GpuError)?;
        let dev = cu::device::get(ordinal as i32).map_err(|e| err("cuDeviceGet", e))?;
        // SAFETY: dev is valid; the primary context lives as long as the process.
        let ctx = unsafe { cu::primary_ctx::retain(dev) }.map_err(|e| err("cuDevicePrimaryCtxRetain", e))?;
        let (major, minor) = compute_capability(dev)?;
        Ok(CudaDriver {
            ordinal,
            ctx: Handle(ctx),
            arch: format!("sm_{major}{minor}"),
            cache: KernelCache::at_default_dir(),
            modules: Mutex::new(HashMap::new()),
            functions: Kernel::ALL.iter().map(|_| OnceLock::new()).collect(),
        })
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    fn bind(&self) -> Result<(), GpuError> {
        // SAFETY: the context is retained for the driver's lifetime.
        unsafe { cu::ctx::set_current(self.ctx.0) }.map_err(|e| err("cuCtxSetCurrent", e))
    }

    /// The module of kernel file `file`, compiled (or read from the disk cache) and loaded on
    /// first use: CUBIN for this GPU's architecture, else PTX.
    fn module(&self, file: usize) -> Result<sys::CUmodule, GpuError> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(&file) {
            return Ok(m.0);
        }
        let src = &SOURCES[file];
        let cubin = self.cache.load_or_compile(src, &self.arch, ImageKind::Cubin);
        let loaded = match &cubin {
            // SAFETY: a CUBIN image produced by NVRTC.
            Ok(c) => unsafe { cu::module::load_data(c.image.as_ptr() as *const c_void) }.ok(),
            Err(_) => None,
        };
        let module = match loaded {
            Some(m) => m,
            None => {
                let ptx =
                    self.cache.load_or_compile(src, &self.arch, ImageKind::Ptx).map_err(
                        |e| match &cubin {
                            Err(ce) => GpuError(format!("{ce}\n(PTX fallback: {e})")),
                            Ok(_) => GpuError(e.to_string()),
                        },
                    )?;
                let mut image = ptx.image;
                if image.last() != Some(&0) {
                    image.push(0);
                }
                // SAFETY: NUL-terminated PTX text.
                unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }.map_err(|e| {
                    err(&format!("cuModuleLoadData(kernels/{} PTX for {})", src.name, self.arch), e)
                })?
            }
        };
        modules.insert(file, Handle(module));
        Ok(module)
    }

    fn function(&self, kernel: Kernel) -> Result<sys::CUfunction, GpuError> {
        if let Some(f) = self.functions[kernel.index()].get() {
            return Ok(f.0);
        }
        let module = self.module(kernel.file())?;
        // SAFETY: module is loaded and never unloaded.
        let f = unsafe { cu::module::get_function(module, CString::new(kernel.name()).unwrap()) }
            .map_err(|e| err(&format!("cuModuleGetFunction({})", kernel.name()), e))?;
        Ok(self.functions[kernel.index()].get_or_init(|| Handle(f)).0)
    }
}

impl GpuDriver for CudaDriver {
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }
    fn alloc(&self, bytes: usize) -> Result<DevPtr, GpuError> {
        self.bind()?;
        // SAFETY: context current.
        unsafe { cu::malloc_sync(bytes) }.map(DevPtr).map_err(|e| err("cuMemAlloc", e))
    }
    unsafe fn free(&self, p: DevPtr, _bytes: usize) {
        if self.bind().is_ok() {
            // SAFETY: the caller passes a pointer from alloc.
            let _ = unsafe { cu::free_sync(p.0) };
        }
    }
    unsafe fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError> {
        self.bind()?;
        // SAFETY: the caller guarantees the size.
        unsafe { cu::memcpy_htod_sync(dst.0, src) }.map_err(|e| err("cuMemcpyHtoD", e))
    }
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<(), GpuError> {
        self.bind()?;
        // SAFETY: the caller guarantees the size; the synchronous copy waits for the kernels.
        unsafe { cu::memcpy_dtoh_sync(dst, src.0) }.map_err(|e| err("cuMemcpyDtoH", e))
    }
    unsafe fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<(), GpuError> {
        self.bind()?;
        // SAFETY: the caller guarantees the sizes.
        unsafe { cu::memcpy_dtod_sync(dst.0, src.0, bytes) }.map_err(|e| err("cuMemcpyDtoD", e))
    }
    unsafe fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<(), GpuError> {
        self.bind()?;
        // SAFETY: the caller guarantees the size.
        unsafe { cu::memset_d8_sync(dst.0, 0, bytes) }.map_err(|e| err("cuMemsetD8", e))
    }
    unsafe fn launch(
        &self,
        kernel: Kernel,
        dims: LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), GpuError> {
        self.bind()?;
        let f = self.function(kernel)?;
        let g = (dims.grid[0], dims.grid[1], dims.grid[2]);
        let b = (dims.block[0], dims.block[1], dims.block[2]);
        // SAFETY: the typed launcher matched `args` to the kernel's parameters.
        unsafe { cu::launch_kernel(f, g, b, dims.shared_bytes, cu::stream::null(), args) }.map_err(|e| {
            err(
                &format!("launch of {} (kernels/{}:{})", kernel.name(), kernel.source().name, kernel.line()),
                e,
            )
        })
    }
    fn synchronize(&self) -> Result<(), GpuError> {
        self.bind()?;
        cu::ctx::synchronize().map_err(|e| err("cuCtxSynchronize", e))
    }
}

/// GPUs one process can address.
pub const MAX_GPUS: usize = 16;

/// The process-wide backend of GPU `ordinal`, created on first use (`Device::backend` calls
/// this on every op: after creation it is one atomic load).
pub fn backend(ordinal: usize) -> Result<&'static CudaBackend<CudaDriver>, String> {
    static SLOTS: [OnceLock<&'static CudaBackend<CudaDriver>>; MAX_GPUS] =
        [const { OnceLock::new() }; MAX_GPUS];
    static CREATE: Mutex<()> = Mutex::new(());
    let slot = SLOTS
        .get(ordinal)
        .ok_or_else(|| format!("GPU ordinal {ordinal} is beyond the {MAX_GPUS} supported"))?;
    if let Some(b) = slot.get() {
        return Ok(b);
    }
    let _guard = CREATE.lock().unwrap();
    if let Some(b) = slot.get() {
        return Ok(b);
    }
    let driver = CudaDriver::new(ordinal).map_err(|e| e.0)?;
    let b: &'static CudaBackend<CudaDriver> = Box::leak(Box::new(CudaBackend::new(driver)));
    Ok(slot.get_or_init(|| b))
}
