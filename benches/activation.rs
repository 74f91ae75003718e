//! Activation kernels (forward and backward) at the DCGAN-64 batch-128 activation sizes,
//! beside a naive sequential loop. Criterion's "bytes/s" counts tensor bytes read + written.
//!
//! Run: `cargo bench --bench activation`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::{Device, Storage, Unary};

fn data(len: usize, seed: u32) -> Storage {
    Storage::Cpu(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20) as f32 / 4096.0 - 0.5)
            .collect(),
    )
}

fn naive(op: Unary, x: &[f32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for &v in x {
        y.push(match op {
            Unary::Relu => v.max(0.0),
            Unary::LeakyRelu(s) => {
                if v > 0.0 {
                    v
                } else {
                    s * v
                }
            }
            Unary::Tanh => v.tanh(),
            Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Unary::Sqrt => v.sqrt(),
        });
    }
    y
}

fn activation(c: &mut Criterion) {
    let be = Device::Cpu.backend();
    let mut grp = c.benchmark_group("activation");
    grp.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    // (name, op, elements): D's first LeakyReLU (128×64×32×32), G's output Tanh (128×3×64×64),
    // G's last ReLU (128×64×32×32, unfused use).
    for (name, op, len) in [
        ("leaky_relu 128x64x32x32", Unary::LeakyRelu(0.2), 128 * 64 * 32 * 32),
        ("tanh 128x3x64x64", Unary::Tanh, 128 * 3 * 64 * 64),
        ("relu 128x64x32x32", Unary::Relu, 128 * 64 * 32 * 32),
    ] {
        let (x, dy) = (data(len, 1), data(len, 2));
        let saved = if op.backward_uses_output() { be.unary(op, &x) } else { be.copy(&x) };
        grp.throughput(Throughput::Bytes(2 * 4 * len as u64));
        grp.bench_function(BenchmarkId::new("forward", name), |b| b.iter(|| black_box(be.unary(op, &x))));
        grp.bench_function(BenchmarkId::new("naive_forward", name), |b| {
            b.iter(|| black_box(naive(op, x.cpu())))
        });
        grp.throughput(Throughput::Bytes(3 * 4 * len as u64));
        grp.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| black_box(be.unary_backward(op, &saved, &dy)))
        });
    }
    grp.finish();
}

criterion_group!(benches, activation);
criterion_main!(benches);
