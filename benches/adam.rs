//! The fused Adam update over DCGAN-64's parameters (G: 3.58 M, D: 2.77 M floats) and over its
//! largest single tensor, beside a naive loop. Criterion's "bytes/s" counts the 4 buffers read
//! and 3 written per element.
//!
//! Run: `cargo bench --bench adam`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::{AdamParams, Device, Storage};

fn data(len: usize, seed: u32) -> Storage {
    Storage::Cpu(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20) as f32 / 4096.0 - 0.5)
            .collect(),
    )
}

fn naive(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamParams) {
    let t = hp.step as i32;
    let (bc1, bc2) = (1.0 - hp.beta1.powi(t), 1.0 - hp.beta2.powi(t));
    for i in 0..p.len() {
        m[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * g[i];
        v[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * g[i] * g[i];
        p[i] -= hp.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + hp.eps);
    }
}

fn adam(c: &mut Criterion) {
    let be = Device::Cpu.backend();
    let hp = AdamParams { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 10 };
    let mut grp = c.benchmark_group("adam");
    grp.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    // G's 512x256x4x4 ConvTranspose weight (2.1 M) and all of G's parameters as one buffer.
    for (name, len) in [("G 256x512x4x4 weight", 256 * 512 * 16), ("all of G (3.58 M)", 3_576_704)] {
        let (mut p, g, mut m, mut v) = (data(len, 1), data(len, 2), data(len, 3), data(len, 4));
        grp.throughput(Throughput::Bytes(7 * 4 * len as u64));
        grp.bench_function(BenchmarkId::new("fused", name), |b| {
            b.iter(|| be.adam_step(&mut p, &g, &mut m, &mut v, &hp))
        });
        let (mut p, g, mut m, mut v) = (data(len, 1), data(len, 2), data(len, 3), data(len, 4));
        grp.bench_function(BenchmarkId::new("naive", name), |b| {
            b.iter(|| naive(p.cpu_mut(), g.cpu(), m.cpu_mut(), v.cpu_mut(), black_box(&hp)))
        });
    }
    grp.finish();
}

criterion_group!(benches, adam);
criterion_main!(benches);
