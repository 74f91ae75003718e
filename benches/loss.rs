//! bce_with_logits forward and backward at DCGAN batch sizes (one logit per image) and at a
//! large size where the kernel's own speed shows, beside a naive loop.
//!
//! Run: `cargo bench --bench loss`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::{Device, Storage};

fn data(len: usize, seed: u32) -> Storage {
    Storage::Cpu(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20) as f32 / 512.0 - 4.0)
            .collect(),
    )
}

fn naive(x: &[f32], t: &[f32]) -> f32 {
    let mut s = 0.0f64;
    for (&x, &t) in x.iter().zip(t) {
        s += (x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln()) as f64;
    }
    (s / x.len() as f64) as f32
}

fn loss(c: &mut Criterion) {
    let be = Device::Cpu.backend();
    let mut grp = c.benchmark_group("bce_with_logits");
    grp.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for len in [128usize, 1 << 20] {
        let (x, t) = (data(len, 1), Storage::Cpu(vec![1.0; len]));
        let dl = Storage::Cpu(vec![1.0]);
        grp.throughput(Throughput::Bytes(2 * 4 * len as u64));
        grp.bench_function(BenchmarkId::new("forward", len), |b| {
            b.iter(|| black_box(be.bce_with_logits(&x, &t)))
        });
        grp.bench_function(BenchmarkId::new("naive_forward", len), |b| {
            b.iter(|| black_box(naive(x.cpu(), t.cpu())))
        });
        grp.throughput(Throughput::Bytes(3 * 4 * len as u64));
        grp.bench_function(BenchmarkId::new("backward", len), |b| {
            b.iter(|| black_box(be.bce_with_logits_backward(&x, &t, &dl)))
        });
    }
    grp.finish();
}

criterion_group!(benches, loss);
criterion_main!(benches);
