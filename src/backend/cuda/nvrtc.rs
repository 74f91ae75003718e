//! NVRTC at run time: compile one kernel file for one architecture, to CUBIN (exact
//! architecture, `sm_XY`, no driver JIT) or PTX (`compute_XY`, the fallback the driver JITs),
//! with a disk cache keyed by a hash of the source (with its headers), the options, the
//! architecture and the NVRTC version, so a second run compiles nothing.
//!
//! cudarc's NVRTC calls panic when libnvrtc is missing: every entry point here checks
//! [`available`] first and returns an error instead.

use super::kernels::{HEADERS, SourceFile};
use std::ffi::{CString, c_char, c_int};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cudarc::nvrtc::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Cubin,
    Ptx,
}

#[derive(Debug, Clone)]
pub enum NvrtcError {
    /// libnvrtc could not be loaded.
    Missing(String),
    /// The architecture string is not `sm_XY`.
    BadArch(String),
    /// NVRTC rejected the source: the file, the first line it complained about, its log.
    Compile {
        file: String,
        line: Option<usize>,
        log: String,
    },
    /// Any other NVRTC call failing.
    Call(String),
    Io(String),
}

impl fmt::Display for NvrtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvrtcError::Missing(m) => write!(f, "NVRTC not available: {m}"),
            NvrtcError::BadArch(a) => {
                write!(f, "unknown GPU architecture `{a}` (expected sm_XY, e.g. sm_80 or sm_90)")
            }
            NvrtcError::Compile { file, line, log } => match line {
                Some(l) => write!(f, "NVRTC failed to compile kernels/{file}, line {l}:\n{log}"),
                None => write!(f, "NVRTC failed to compile kernels/{file}:\n{log}"),
            },
            NvrtcError::Call(m) => write!(f, "NVRTC: {m}"),
            NvrtcError::Io(m) => write!(f, "kernel cache: {m}"),
        }
    }
}

impl std::error::Error for NvrtcError {}

/// Where scripts/cuda-toolchain.sh puts the PyPI wheels: `$DCGAN_CUDA_DIR`, else
/// `.cache/cuda` under the current directory.
fn toolchain_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("DCGAN_CUDA_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from(".cache/cuda"));
    dirs
}

/// When libnvrtc is not on the loader's path but the toolchain script installed it, load it
/// by absolute path once: cudarc's later dlopen of `libnvrtc.so.12` then finds the library
/// already loaded (same soname), so `dcgan kernels` works without LD_LIBRARY_PATH.
fn preload_from_toolchain_dir() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        for dir in toolchain_dirs() {
            let lib = dir.join("nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
            if lib.is_file() {
                // SAFETY: loading NVIDIA's NVRTC library runs no initialiser with preconditions.
                if let Ok(l) = unsafe { libloading::Library::new(&lib) } {
                    std::mem::forget(l); // stays loaded for the process
                    return;
                }
            }
        }
    });
}

/// The NVRTC functions this crate calls.
const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
];

/// Whether libnvrtc can be loaded and has every function used, and if not, why.
pub fn available() -> Result<(), NvrtcError> {
    // SAFETY: only tries to dlopen the candidate names.
    if !unsafe { sys::is_culib_present() } {
        preload_from_toolchain_dir();
    }
    // SAFETY: as above.
    if unsafe { sys::is_culib_present() } {
        // SAFETY: present, so culib() finds it.
        match super::real::first_missing_symbol(unsafe { sys::culib() }, NVRTC_SYMBOLS) {
            Some(name) => {
                Err(NvrtcError::Missing(format!("the NVRTC library lacks {name}: not a usable libnvrtc")))
            }
            None => Ok(()),
        }
    } else {
        Err(NvrtcError::Missing(
            "libnvrtc.so not loadable (run `. scripts/cuda-toolchain.sh`, which installs it from PyPI and sets \
             LD_LIBRARY_PATH)"
                .into(),
        ))
    }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), NvrtcError> {
    available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: library present; out-pointers valid.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    check(r, "nvrtcVersion")?;
    Ok((major, minor))
}

fn check(r: sys::nvrtcResult, what: &str) -> Result<(), NvrtcError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(NvrtcError::Call(format!("{what} returned {r:?}")))
    }
}

/// `sm_90` -> 90.
pub fn arch_number(arch: &str) -> Result<u32, NvrtcError> {
    arch.strip_prefix("sm_")
        .and_then(|n| n.trim_end_matches(['a', 'f']).parse::<u32>().ok())
        .filter(|&n| n >= 50)
        .ok_or_else(|| NvrtcError::BadArch(arch.to_string()))
}

/// Directories holding cuda_fp16.h / cuda_bf16.h (convert.cu includes them; NVRTC 12.9 does
/// not bundle them): $DCGAN_CUDA_INCLUDE (scripts/cuda-toolchain.sh), $CUDA_PATH/include, the
/// toolchain script's install directory, /usr/local/cuda/include.
pub fn include_dirs() -> Vec<String> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("DCGAN_CUDA_INCLUDE") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(d) = std::env::var("CUDA_PATH") {
        dirs.push(Path::new(&d).join("include"));
    }
    dirs.extend(toolchain_dirs().into_iter().map(|d| d.join("nvidia/cuda_runtime/include")));
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.into_iter().filter(|d| d.join("cuda_fp16.h").is_file()).map(|d| d.display().to_string()).collect()
}

/// The options a file is compiled with.
pub fn options(arch: &str, kind: ImageKind, extra: &[&str]) -> Result<Vec<String>, NvrtcError> {
    let n = arch_number(arch)?;
    let target = match kind {
        ImageKind::Cubin => format!("--gpu-architecture=sm_{n}"),
        ImageKind::Ptx => format!("--gpu-architecture=compute_{n}"),
    };
    let mut o = vec![target, "-std=c++17".to_string(), "--fmad=true".to_string()];
    for d in include_dirs() {
        o.push(format!("--include-path={d}"));
    }
    o.extend(extra.iter().map(|s| s.to_string()));
    Ok(o)
}

/// One NVRTC compilation's result.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub image: Vec<u8>,
    pub kind: ImageKind,
    pub log: String,
    pub millis: f64,
    pub from_cache: bool,
}

/// Compiles `name` (the file name used in NVRTC's messages) with `text`, headers from the
/// kernel table. No cache.
pub fn compile_source(
    name: &str,
    text: &str,
    opts: &[String],
    kind: ImageKind,
) -> Result<Compiled, NvrtcError> {
    available()?;
    let t0 = Instant::now();
    let src = CString::new(text).map_err(|_| NvrtcError::Call("source contains NUL".into()))?;
    let cname = CString::new(name).unwrap();
    let header_names: Vec<CString> = HEADERS.iter().map(|h| CString::new(h.0).unwrap()).collect();
    let header_texts: Vec<CString> = HEADERS.iter().map(|h| CString::new(h.1).unwrap()).collect();
    let hn: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
    let ht: Vec<*const c_char> = header_texts.iter().map(|c| c.as_ptr()).collect();
    let copts: Vec<CString> = opts.iter().map(|o| CString::new(o.as_str()).unwrap()).collect();
    let po: Vec<*const c_char> = copts.iter().map(|c| c.as_ptr()).collect();
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: library present; every pointer is valid for the call.
    unsafe {
        check(
            sys::nvrtcCreateProgram(
                &mut prog,
                src.as_ptr(),
                cname.as_ptr(),
                hn.len() as c_int,
                ht.as_ptr(),
                hn.as_ptr(),
            ),
            "nvrtcCreateProgram",
        )?;
        let r = sys::nvrtcCompileProgram(prog, po.len() as c_int, po.as_ptr());
        let log = program_log(prog);
        let result = if r != sys::nvrtcResult::NVRTC_SUCCESS {
            let line = error_line(&log, name);
            Err(NvrtcError::Compile { file: name.to_string(), line, log: log.clone() })
        } else {
            let image = match kind {
                ImageKind::Cubin => {
                    let mut size = 0usize;
                    check(sys::nvrtcGetCUBINSize(prog, &mut size), "nvrtcGetCUBINSize")?;
                    let mut buf = vec![0u8; size];
                    check(sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char), "nvrtcGetCUBIN")?;
                    buf
                }
                ImageKind::Ptx => {
                    let mut size = 0usize;
                    check(sys::nvrtcGetPTXSize(prog, &mut size), "nvrtcGetPTXSize")?;
                    let mut buf = vec![0u8; size]; // includes the terminating NUL
                    check(sys::nvrtcGetPTX(prog, buf.as_mut_ptr() as *mut c_char), "nvrtcGetPTX")?;
                    buf
                }
            };
            Ok(Compiled { image, kind, log, millis: t0.elapsed().as_secs_f64() * 1e3, from_cache: false })
        };
        sys::nvrtcDestroyProgram(&mut prog);
        result
    }
}

unsafe fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: prog is a live program.
    unsafe {
        if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) != sys::nvrtcResult::NVRTC_SUCCESS {
            return String::new();
        }
        String::from_utf8_lossy(&buf).trim_end_matches('\0').to_string()
    }
}

/// The first `name(LINE): error` of an NVRTC log.
fn error_line(log: &str, name: &str) -> Option<usize> {
    log.lines().filter(|l| l.contains("error")).find_map(|l| {
        let rest = &l[l.find(&format!("{name}("))? + name.len() + 1..];
        rest[..rest.find(')')?].parse().ok()
    })
}

/// 128-bit FNV-1a (two 64-bit lanes with different offsets): a stable content hash.
fn hash128(parts: &[&[u8]]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for p in parts {
        for &byte in p.iter().chain(&[0xffu8]) {
            a = (a ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    }
    format!("{a:016x}{b:016x}")
}

/// `$XDG_CACHE_HOME/dcgan/kernels`, else `~/.cache/dcgan/kernels`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("dcgan").join("kernels"))
}

/// Compiled kernel images on disk. A cache directory that cannot be written only costs the
/// next run a compile.
pub struct KernelCache {
    dir: Option<PathBuf>,
    compiles: AtomicUsize,
}

impl KernelCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        KernelCache { dir, compiles: AtomicUsize::new(0) }
    }

    pub fn at_default_dir() -> Self {
        Self::new(default_cache_dir())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// NVRTC compilations this cache ran (misses).
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The cache key of a file: source, headers, options, architecture, NVRTC version.
    pub fn key(
        file: &SourceFile,
        arch: &str,
        kind: ImageKind,
        opts: &[String],
    ) -> Result<String, NvrtcError> {
        let (major, minor) = version()?;
        let ver = format!("nvrtc {major}.{minor}");
        let mut parts: Vec<&[u8]> =
            vec![file.name.as_bytes(), file.text.as_bytes(), arch.as_bytes(), ver.as_bytes()];
        for h in HEADERS {
            parts.push(h.0.as_bytes());
            parts.push(h.1.as_bytes());
        }
        let kind_s = format!("{kind:?}");
        parts.push(kind_s.as_bytes());
        for o in opts {
            parts.push(o.as_bytes());
        }
        Ok(hash128(&parts))
    }

    /// The image of `file` for `arch`, from disk when a previous run compiled it.
    pub fn load_or_compile(
        &self,
        file: &SourceFile,
        arch: &str,
        kind: ImageKind,
    ) -> Result<Compiled, NvrtcError> {
        let opts = options(arch, kind, &[])?;
        let key = Self::key(file, arch, kind, &opts)?;
        let ext = match kind {
            ImageKind::Cubin => "cubin",
            ImageKind::Ptx => "ptx",
        };
        let path = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}-{arch}-{key}.{ext}", file.name.trim_end_matches(".cu"))));
        if let Some(image) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(Compiled { image, kind, log: String::new(), millis: 0.0, from_cache: true });
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let c = compile_source(file.name, file.text, &opts, kind)?;
        if let Some(p) = &path {
            // Write to a temporary name, then rename: a concurrent reader never sees half a file.
            let tmp = p.with_extension(format!("{ext}.tmp{}", std::process::id()));
            let written = std::fs::create_dir_all(p.parent().unwrap())
                .and_then(|_| std::fs::write(&tmp, &c.image))
                .and_then(|_| std::fs::rename(&tmp, p));
            if written.is_err() {
                // An unwritable cache costs the next run a compile, nothing else.
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(c)
    }
}
