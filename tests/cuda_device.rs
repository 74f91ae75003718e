//! Device selection: `Device::parse` and `Device::auto` answer with a reason, never a panic,
//! whatever the machine has (this project's machines have no GPU and no CUDA driver).

use dcgan::Device;
use dcgan::backend::cuda::real;

#[test]
fn parse_names() {
    assert_eq!(Device::parse("cpu"), Ok(Device::Cpu));
    assert_eq!(Device::parse("emu"), Ok(Device::Emu));
    assert_eq!(Device::Emu.to_string(), "emu");
    assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    let e = Device::parse("tpu").unwrap_err();
    assert_eq!(e.to_string(), "--device tpu: unknown device (expected auto, cpu, cuda, cuda:N or emu)");
    let e = Device::parse("cuda:x").unwrap_err();
    assert!(e.to_string().starts_with("--device cuda:x: expected cuda:N"), "{e}");
}

#[test]
fn cuda_without_a_usable_gpu_is_an_error_not_a_panic() {
    match real::probe(0) {
        Ok(info) => {
            // A GPU machine: cuda works and auto picks it.
            assert_eq!(Device::parse("cuda"), Ok(Device::Cuda(0)));
            let (dev, why) = Device::auto();
            assert_eq!(dev, Device::Cuda(0), "{why}");
            assert!(why.contains(&info));
        }
        Err(reason) => {
            let e = Device::parse("cuda").unwrap_err();
            assert_eq!(e.to_string(), format!("--device cuda: {reason}; use --device cpu"));
            let e = Device::parse("cuda:3").unwrap_err();
            assert!(e.to_string().ends_with("; use --device cpu"), "{e}");
            let (dev, why) = Device::auto();
            assert_eq!(dev, Device::Cpu);
            assert_eq!(why, format!("using the CPU: {reason}"));
            assert_eq!(Device::parse("auto"), Ok(Device::Cpu));
        }
    }
}

/// This machine's case, spelled out: no libcuda at all.
#[test]
fn no_driver_message() {
    // SAFETY: only dlopens.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        eprintln!("skipped no_driver_message: a CUDA driver is installed here");
        return;
    }
    assert_eq!(
        Device::parse("cuda").unwrap_err().to_string(),
        "--device cuda: no CUDA driver found (libcuda.so not loadable); use --device cpu"
    );
}
