//! The CUDA gemm kernel (kernels/gemm.cu) against cuBLAS sgemm on the same device buffers.
//! `cargo bench --bench cuda_gemm --features cublas`; without the feature only our kernel is
//! timed. Without a usable GPU it prints why and measures nothing.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::Rng;
use dcgan::backend::Backend;
use dcgan::backend::cuda::driver::GpuDriver;
use dcgan::backend::cuda::real;

fn gemm(c: &mut Criterion) {
    let backend = match real::probe(0).and_then(|_| real::backend(0)) {
        Ok(b) => b,
        Err(why) => {
            eprintln!("cuda_gemm: skipped, no usable GPU ({why})");
            return;
        }
    };
    let mut group = c.benchmark_group("cuda_gemm");
    for n in [256usize, 1024, 2048] {
        let mut rng = Rng::new(1);
        let a = backend.upload((0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect());
        let b = backend.upload((0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect());
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        group.bench_with_input(BenchmarkId::new("gemm_f32", n), &n, |bench, &n| {
            bench.iter(|| {
                let c = backend.matmul(&a, false, &b, false, n, n, n);
                backend.driver().synchronize().unwrap();
                c
            })
        });
        #[cfg(feature = "cublas")]
        cublas::bench(&mut group, backend, &a, &b, n);
    }
    group.finish();
}

#[cfg(feature = "cublas")]
mod cublas {
    use super::*;
    use criterion::measurement::WallTime;
    use cudarc::cublas::{result, sys};
    use dcgan::backend::Storage;
    use dcgan::backend::cuda::CudaBackend;
    use dcgan::backend::cuda::real::CudaDriver;

    pub fn bench(
        group: &mut criterion::BenchmarkGroup<'_, WallTime>,
        backend: &'static CudaBackend<CudaDriver>,
        a: &Storage,
        b: &Storage,
        n: usize,
    ) {
        // SAFETY: only dlopens.
        if !unsafe { sys::is_culib_present() } {
            eprintln!("cuda_gemm: cuBLAS not loadable, baseline skipped");
            return;
        }
        let handle = result::create_handle().expect("cublasCreate");
        let c = backend.zeros(n * n);
        let (pa, pb, pc) = (a.gpu().ptr().0, b.gpu().ptr().0, c.gpu().ptr().0);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let ni = n as i32;
        group.bench_with_input(BenchmarkId::new("cublas_sgemm", n), &n, |bench, _| {
            bench.iter(|| {
                // Row-major C = A B is column-major Cᵀ = Bᵀ Aᵀ.
                // SAFETY: three live n x n device buffers.
                unsafe {
                    result::sgemm(
                        handle,
                        sys::cublasOperation_t::CUBLAS_OP_N,
                        sys::cublasOperation_t::CUBLAS_OP_N,
                        ni,
                        ni,
                        ni,
                        &alpha,
                        pb as *const f32,
                        ni,
                        pa as *const f32,
                        ni,
                        &beta,
                        pc as *mut f32,
                        ni,
                    )
                    .expect("cublasSgemm");
                }
                backend.driver().synchronize().unwrap();
            })
        });
        // SAFETY: created above, no longer used.
        unsafe { result::destroy_handle(handle) }.ok();
    }
}

criterion_group!(benches, gemm);
criterion_main!(benches);
