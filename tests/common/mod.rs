//! Shared test machinery: the device list every op test runs on, naive f64 references, and
//! a gradient checker against central finite differences.
#![allow(dead_code)]

pub mod reference;

use dcgan::{Device, Rng, Tensor};

/// Write a test body once as `fn name(dev: Device)`; `device_tests!(name, ...)` runs it on every
/// device: `cpu::name`, `emu::name` (the CUDA kernels in the emulator, always) and
/// `cuda::name` (on GPU 0 when one is usable, else it prints why and passes).
#[macro_export]
macro_rules! device_tests {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $( #[test] fn $name() { super::$name(dcgan::Device::Cpu) } )*
        }
        mod emu {
            $( #[test] fn $name() { super::$name(dcgan::Device::Emu) } )*
        }
        mod cuda {
            $( #[test] fn $name() {
                match $crate::common::cuda_device() {
                    Some(dev) => super::$name(dev),
                    None => eprintln!("skipped {}: no usable CUDA GPU", stringify!($name)),
                }
            } )*
        }
    };
}

/// GPU 0 when a driver, a GPU and NVRTC are present.
pub fn cuda_device() -> Option<Device> {
    Device::parse("cuda").ok()
}

/// Random f32 values, returned as f64 so references see exactly the values the engine sees.
/// The bits of what `op` computes on the CPU backend on a pool of `threads` rayon threads,
/// the convolutions' products in `precision` (set on the pool's thread, where `op` launches
/// its kernels).
pub fn cpu_bits_with_threads(
    threads: usize,
    precision: dcgan::backend::cpu::MatmulPrecision,
    op: impl Fn(&dyn dcgan::backend::Backend) -> dcgan::backend::Storage + Sync,
) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let be = Device::Cpu.backend();
    pool.install(|| {
        dcgan::backend::cpu::set_matmul_precision(precision);
        be.download(&op(be)).into_iter().map(f32::to_bits).collect()
    })
}

pub fn random(len: usize, rng: &mut Rng) -> Vec<f64> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0) as f64).collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn tensor(v: &[f64], shape: &[usize], dev: Device) -> Tensor {
    Tensor::from_vec(to_f32(v), shape, dev)
}

/// |actual − expected| ≤ rtol · max(|expected|, scale) elementwise, where scale is the
/// largest |expected| of the whole array times 1e-2, so near-zero entries of a large result
/// are judged at the precision the result as a whole can have.
pub fn assert_close(actual: &[f32], expected: &[f64], rtol: f64, what: &str) {
    assert_close_abs(actual, expected, rtol, 0.0, what)
}

/// `assert_close` plus an absolute floor `atol`, for results that are differences of O(1)
/// terms (gradients that nearly cancel), where f32 rounding is absolute, not relative.
pub fn assert_close_abs(actual: &[f32], expected: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs())) * 1e-2;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let tol = rtol * e.abs().max(scale).max(1e-12) + atol;
        assert!(
            (a as f64 - e).abs() <= tol,
            "{what}[{i}]: got {a}, expected {e} (|diff| {:.3e} > tol {tol:.3e})",
            (a as f64 - e).abs()
        );
    }
}

/// Tolerance: 1e-3 relative (f32 accumulation against f64), 1e-6 absolute (cancellation).
/// Checks the gradients autograd gives for L = Σ r ⊙ f(inputs), r random, against central
/// differences of the f64 reference of f: for every element of every input marked in
/// `differentiable`, (L(x + h) − L(x − h)) / 2h with h = 1e-6 in f64.
pub fn check_gradients(
    what: &str,
    inputs: &[(Vec<f64>, Vec<usize>)],
    differentiable: &[bool],
    dev: Device,
    f: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let tensors: Vec<Tensor> = inputs
        .iter()
        .zip(differentiable)
        .map(|((v, s), &d)| {
            let t = tensor(v, s, dev);
            t.set_requires_grad(d);
            t
        })
        .collect();
    let y = f(&tensors);
    let mut rng = Rng::new(99);
    let r = random(y.numel(), &mut rng);
    y.mul(&tensor(&r, y.shape(), dev)).sum().backward();

    let values: Vec<Vec<f64>> = inputs.iter().map(|(v, _)| v.clone()).collect();
    let loss = |vals: &[Vec<f64>]| -> f64 { reference(vals).iter().zip(&r).map(|(a, b)| a * b).sum() };
    let h = 1e-6;
    for (i, t) in tensors.iter().enumerate() {
        if !differentiable[i] {
            assert!(t.grad().is_none(), "{what}: input {i} is not differentiable but got a gradient");
            continue;
        }
        let grad = t.grad().unwrap_or_else(|| panic!("{what}: no gradient reached input {i}"));
        let mut numeric = vec![0.0; values[i].len()];
        let mut vals = values.clone();
        for (j, n) in numeric.iter_mut().enumerate() {
            let x0 = vals[i][j];
            vals[i][j] = x0 + h;
            let up = loss(&vals);
            vals[i][j] = x0 - h;
            let down = loss(&vals);
            vals[i][j] = x0;
            *n = (up - down) / (2.0 * h);
        }
        assert_close_abs(&grad.to_vec(), &numeric, 1e-3, 1e-6, &format!("{what}: d/d input {i}"));
    }
}

/// A fresh empty directory under the system temp dir for one test, removed when it goes out
/// of scope (also when the test fails), so test runs leave nothing behind.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `<temp>/<prefix>-<pid>-<name>`, emptied first.
    pub fn new(prefix: &str, name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
