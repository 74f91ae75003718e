//! SGEMM benchmarks: this crate's packed `sgemm` (on the global rayon pool and on a 1-thread
//! pool) vs the `matrixmultiply` crate (with its `threading` feature, as Cargo.toml has it)
//! vs a naive triple loop (small sizes only), at square sizes and at the im2col GEMM shapes of
//! DCGAN-64.
//!
//! Criterion's "elements/s" here is FLOP/s (throughput = 2·m·n·k). A plain
//! `GFLOP/s` line per case is also printed to stderr from a separate short timing loop.
//!
//! `bf16_tiles_1thread` is `--matmul bf16`'s product on one thread: both operands rounded
//! and packed into AMX tile layout (counted in its time, as the convolutions pay it), then
//! the tile gemm (the portable loop on CPUs without AMX: see `amx::available`).
//!
//! Run: `cargo bench --bench gemm` (filter e.g. `cargo bench --bench gemm -- square`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::cpu::amx::{self, PackedA16, PackedB16, gemm_bf16};
use dcgan::backend::cpu::gemm::{MatRef, gemm_kernel_name, sgemm, sgemm_naive};

#[derive(Clone, Copy)]
enum Impl {
    Sgemm,
    Sgemm1T,
    MatrixMultiply,
    Naive,
    Bf16Tiles,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Sgemm => "sgemm",
            Impl::Sgemm1T => "sgemm_1thread",
            Impl::MatrixMultiply => "matrixmultiply",
            Impl::Naive => "naive",
            Impl::Bf16Tiles => "bf16_tiles_1thread",
        }
    }
}

/// One GEMM problem: C (m×n, row-major) = A·B with A m×k and B k×n, each optionally stored
/// transposed (as the backward passes of a conv use them).
struct Case {
    name: String,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Case {
    fn new(name: &str, m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Case {
        let a = (0..m * k).map(|i| ((i * 7 + 3) % 17) as f32 * 0.05 - 0.4).collect();
        let b = (0..k * n).map(|i| ((i * 5 + 1) % 13) as f32 * 0.05 - 0.3).collect();
        Case { name: name.to_string(), m, n, k, ta, tb, a, b, c: vec![0.0; m * n] }
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }

    fn label(&self) -> String {
        format!(
            "{} m{} n{} k{}{}{}",
            self.name,
            self.m,
            self.n,
            self.k,
            if self.ta { " At" } else { "" },
            if self.tb { " Bt" } else { "" }
        )
    }

    fn run(&mut self, imp: Impl, one: &rayon::ThreadPool) {
        let (m, n, k) = (self.m, self.n, self.k);
        let a = if self.ta { MatRef::row_major_t(&self.a, m) } else { MatRef::row_major(&self.a, k) };
        let b = if self.tb { MatRef::row_major_t(&self.b, k) } else { MatRef::row_major(&self.b, n) };
        let c = &mut self.c;
        match imp {
            Impl::Sgemm => sgemm(m, n, k, 1.0, a, b, 0.0, c, n),
            Impl::Sgemm1T => one.install(|| sgemm(m, n, k, 1.0, a, b, 0.0, c, n)),
            Impl::Naive => sgemm_naive(m, n, k, 1.0, a, b, 0.0, c, n),
            Impl::Bf16Tiles => gemm_bf16(&PackedA16::new(m, k, a), &PackedB16::new(k, n, b), false, c, n),
            Impl::MatrixMultiply => unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.data.as_ptr(),
                    a.row_stride as isize,
                    a.col_stride as isize,
                    b.data.as_ptr(),
                    b.row_stride as isize,
                    b.col_stride as isize,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            },
        }
        black_box(&self.c);
    }

    /// Best-of timing over ~`budget`, printed as GFLOP/s to stderr.
    fn report(&mut self, imp: Impl, one: &rayon::ThreadPool, budget: Duration) {
        self.run(imp, one);
        let start = Instant::now();
        let mut best = f64::INFINITY;
        let mut reps = 0;
        while reps < 3 || (start.elapsed() < budget && reps < 10_000) {
            let t = Instant::now();
            self.run(imp, one);
            best = best.min(t.elapsed().as_secs_f64());
            reps += 1;
        }
        eprintln!(
            "GFLOP/s  {:<44} {:<15} {:>8.1}   ({:.3} ms best of {reps})",
            self.label(),
            imp.name(),
            self.flops() as f64 / best / 1e9,
            best * 1e3
        );
    }
}

fn bench_cases(c: &mut Criterion, group: &str, cases: Vec<(Case, Vec<Impl>)>) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut g = c.benchmark_group(group);
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (mut case, impls) in cases {
        g.throughput(Throughput::Elements(case.flops()));
        for imp in impls {
            case.report(imp, &one, Duration::from_millis(300));
            g.bench_function(BenchmarkId::new(imp.name(), case.label()), |bch| {
                bch.iter(|| case.run(imp, &one))
            });
        }
    }
    g.finish();
}

fn square(c: &mut Criterion) {
    eprintln!("sgemm kernel path: {}; rayon threads: {}", gemm_kernel_name(), rayon::current_num_threads());
    eprintln!("bf16 products: {}", if amx::available() { "AMX tiles" } else { "portable loop (no AMX)" });
    let mut cases = Vec::new();
    for s in [256usize, 512, 1024, 2048] {
        let mut impls = vec![Impl::Sgemm, Impl::Sgemm1T, Impl::MatrixMultiply, Impl::Bf16Tiles];
        if s <= 256 {
            impls.push(Impl::Naive);
        }
        cases.push((Case::new("square", s, s, s, false, false), impls));
    }
    bench_cases(c, "square", cases);
}

/// DCGAN-64 (nz=100, ngf=ndf=64, batch 128) convolutions as im2col GEMMs.
/// Conv forward per image: C[Cout × HWout] = W[Cout × Cin·16] · col[Cin·16 × HWout].
/// ConvTranspose forward per image: col[Cout·16 × HWin] = Wᵀ · x[Cin × HWin] (then col2im).
/// Backward of a conv: dW += dY · colᵀ (B transposed), dcol = Wᵀ · dY (A transposed).
fn dcgan(c: &mut Criterion) {
    let both = || vec![Impl::Sgemm, Impl::MatrixMultiply, Impl::Bf16Tiles];
    let cases = vec![
        // Discriminator, conv forward per image.
        (Case::new("d1_fwd", 64, 1024, 48, false, false), both()),
        (Case::new("d2_fwd", 128, 256, 1024, false, false), both()),
        (Case::new("d3_fwd", 256, 64, 2048, false, false), both()),
        (Case::new("d4_fwd", 512, 16, 4096, false, false), both()),
        // Last D layer (512→1, k4 s1 p0 on 4×4) batched over the 128 images.
        (Case::new("d5_fwd_batched", 128, 1, 8192, false, false), both()),
        // Backward of d2 per image.
        (Case::new("d2_dW", 128, 1024, 256, false, true), both()),
        (Case::new("d2_dcol", 1024, 256, 128, true, false), both()),
        // Generator: first layer batched (x[128×100] · W[100 × 512·16]).
        (Case::new("g1_fwd_batched", 128, 8192, 100, false, false), both()),
        // Generator ConvTranspose forward per image (A = Wᵀ).
        (Case::new("g2_fwd", 4096, 16, 512, true, false), both()),
        (Case::new("g3_fwd", 2048, 64, 256, true, false), both()),
        (Case::new("g4_fwd", 1024, 256, 128, true, false), both()),
        (Case::new("g5_fwd", 48, 1024, 64, true, false), both()),
        // A batched (whole-minibatch im2col) variant: d2 forward with N = 128·256.
        (Case::new("d2_fwd_batched", 128, 128 * 256, 1024, false, false), both()),
    ];
    bench_cases(c, "dcgan", cases);
}

criterion_group!(benches, square, dcgan);
criterion_main!(benches);
