//! BatchNorm2d kernels (training forward and backward, plain and fused with ReLU/LeakyReLU)
//! at the DCGAN-64 batch-128 BatchNorm shapes, beside a naive two-pass loop. Criterion's
//! "bytes/s" counts the tensor bytes each kernel must read and write.
//!
//! Run: `cargo bench --bench batchnorm`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::{ChannelShape, Device, Storage, Unary};

/// (name, shape): G's BatchNorms (followed by ReLU) and D's (followed by LeakyReLU).
fn shapes() -> Vec<(&'static str, ChannelShape, Unary)> {
    let s = |c: usize, h: usize| ChannelShape { n: 128, c, hw: h * h };
    vec![
        ("G 512x4x4", s(512, 4), Unary::Relu),
        ("G 256x8x8", s(256, 8), Unary::Relu),
        ("G 128x16x16", s(128, 16), Unary::Relu),
        ("G 64x32x32", s(64, 32), Unary::Relu),
        ("D 128x16x16", s(128, 16), Unary::LeakyRelu(0.2)),
        ("D 256x8x8", s(256, 8), Unary::LeakyRelu(0.2)),
        ("D 512x4x4", s(512, 4), Unary::LeakyRelu(0.2)),
    ]
}

fn data(len: usize, seed: u32) -> Storage {
    Storage::Cpu(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20) as f32 / 4096.0 - 0.5)
            .collect(),
    )
}

/// Naive training-mode forward: per channel mean, variance, then normalise.
fn naive_forward(x: &[f32], g: &[f32], b: &[f32], s: ChannelShape) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    let m = (s.n * s.hw) as f64;
    for c in 0..s.c {
        let idx = |n: usize, i: usize| (n * s.c + c) * s.hw + i;
        let mut mean = 0.0;
        for n in 0..s.n {
            for i in 0..s.hw {
                mean += x[idx(n, i)] as f64;
            }
        }
        mean /= m;
        let mut var = 0.0;
        for n in 0..s.n {
            for i in 0..s.hw {
                var += (x[idx(n, i)] as f64 - mean).powi(2);
            }
        }
        let inv = 1.0 / (var / m + 1e-5).sqrt();
        for n in 0..s.n {
            for i in 0..s.hw {
                y[idx(n, i)] = ((x[idx(n, i)] as f64 - mean) * inv) as f32 * g[c] + b[c];
            }
        }
    }
    y
}

fn batchnorm(c: &mut Criterion) {
    let be = Device::Cpu.backend();
    let mut grp = c.benchmark_group("batchnorm2d");
    grp.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for (name, s, act) in shapes() {
        let len = s.n * s.c * s.hw;
        let bytes = (len * 4) as u64;
        let (x, dy, g, b) = (data(len, 1), data(len, 2), data(s.c, 3), data(s.c, 4));
        let (_, mean, var) = be.batchnorm2d_forward_train(&x, &g, &b, s, 1e-5);
        // forward: read x twice (statistics) + once, write y
        grp.throughput(Throughput::Bytes(4 * bytes));
        grp.bench_function(BenchmarkId::new("forward_train", name), |bn| {
            bn.iter(|| black_box(be.batchnorm2d_forward_train(&x, &g, &b, s, 1e-5)))
        });
        grp.bench_function(BenchmarkId::new("forward_train_act_fused", name), |bn| {
            bn.iter(|| black_box(be.batchnorm2d_act_forward_train(&x, &g, &b, s, 1e-5, act)))
        });
        grp.bench_function(BenchmarkId::new("naive_forward_train", name), |bn| {
            bn.iter(|| black_box(naive_forward(x.cpu(), g.cpu(), b.cpu(), s)))
        });
        // backward: read x, dy twice, write dx
        grp.throughput(Throughput::Bytes(5 * bytes));
        grp.bench_function(BenchmarkId::new("backward", name), |bn| {
            bn.iter(|| black_box(be.batchnorm2d_backward(&x, &dy, &g, &mean, &var, s, 1e-5, true)))
        });
        grp.bench_function(BenchmarkId::new("backward_act_fused", name), |bn| {
            bn.iter(|| {
                black_box(be.batchnorm2d_act_backward(&x, &dy, &g, &b, &mean, &var, s, 1e-5, true, act))
            })
        });
    }
    grp.finish();
}

criterion_group!(benches, batchnorm);
criterion_main!(benches);
