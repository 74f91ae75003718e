//! The emulator under ThreadSanitizer: kernels/emu/tsan_driver.cpp and the build.rs
//! trampolines are compiled with `g++ -std=c++20 -fsanitize=thread -DDCGAN_EMU_THREADS` (each
//! CUDA thread an OS thread, barriers real), every kernel is launched on small inputs, and
//! TSan must report no race. A `__syncthreads()` removed from a shared-memory reduction is
//! reported here. Without g++'s TSan runtime the test says so and passes, except under
//! CI=true, where it fails.

use dcgan::backend::cuda::kernels::Kernel;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn every_kernel_is_race_free_under_thread_sanitizer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = Path::new(env!("OUT_DIR"));
    let work = std::env::temp_dir().join(format!("dcgan-tsan-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let exe = work.join("tsan_driver");
    let mut sources: Vec<PathBuf> =
        vec![root.join("kernels/emu/runtime.cpp"), root.join("kernels/emu/tsan_driver.cpp")];
    let mut generated: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_str().unwrap().starts_with("emu_")
                && p.extension().is_some_and(|e| e == "cpp")
        })
        .collect();
    generated.sort();
    assert!(!generated.is_empty(), "no generated trampolines in {}", out_dir.display());
    sources.extend(generated);

    let compile = Command::new(std::env::var("CXX").unwrap_or_else(|_| "g++".into()))
        .args(["-std=c++20", "-fsanitize=thread", "-O1", "-g", "-DDCGAN_EMU_THREADS", "-Wno-unknown-pragmas"])
        .arg("-I")
        .arg(root.join("kernels/emu"))
        .arg("-I")
        .arg(root.join("kernels"))
        .arg("-I")
        .arg(out_dir)
        .args(&sources)
        .arg("-o")
        .arg(&exe)
        .arg("-pthread")
        .output()
        .expect("running g++");
    if !compile.status.success() {
        let err = String::from_utf8_lossy(&compile.stderr);
        let no_runtime = err.contains("libtsan") || err.contains("-ltsan");
        if no_runtime && std::env::var("CI").map_or(true, |v| v != "true") {
            eprintln!("skipped: g++ has no ThreadSanitizer runtime here:\n{err}");
            return;
        }
        panic!("building the TSan driver failed:\n{err}");
    }

    let run = Command::new(&exe)
        .env("TSAN_OPTIONS", "halt_on_error=0 exitcode=66 report_signal_unsafe=0")
        .output()
        .expect("running the TSan driver");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let _ = std::fs::remove_dir_all(&work);
    assert!(!stderr.contains("ThreadSanitizer"), "ThreadSanitizer reported:\n{stderr}");
    assert!(run.status.success(), "TSan driver exited with {:?}:\n{stderr}", run.status);
    for k in Kernel::ALL {
        assert!(
            stdout.lines().any(|l| l == format!("launched {}", k.name())),
            "{} was not launched",
            k.name()
        );
    }
    assert!(stdout.contains("tsan driver: done"));
    println!("no race: {} kernels under ThreadSanitizer", Kernel::ALL.len());
}
