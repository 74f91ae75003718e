//! conv2d and conv_transpose2d kernels of the CPU backend at the DCGAN-64 batch-128 layer
//! shapes — forward, backward-data and backward-weight — each beside a naive direct loop
//! (on 2 images, so it finishes), and with `--matmul bf16`'s products (`cpu_bf16_b128`: AMX
//! tiles where the CPU has them). Criterion's "elements/s" is FLOP/s (2 per multiply-add).
//!
//! Run: `cargo bench --bench conv` (filter e.g. `cargo bench --bench conv -- conv_transpose2d`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dcgan::backend::cpu::{MatmulPrecision, set_matmul_precision};
use dcgan::backend::{ConvGeom, Device, Storage};

const BATCH: usize = 128;
const NAIVE_BATCH: usize = 1;

/// A convolution seen from its large side (see `ConvGeom`): x [n, c_in, h, h], k4.
fn geom(
    n: usize,
    c_in: usize,
    h_in: usize,
    c_out: usize,
    h_out: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom { n, c_in, h_in, w_in: h_in, c_out, h_out, w_out: h_out, kh: 4, kw: 4, stride, pad }
}

/// DCGAN-64's discriminator convolutions (conv2d, x = input).
fn d_layers(n: usize) -> Vec<(&'static str, ConvGeom)> {
    vec![
        ("3x64x64->64x32x32", geom(n, 3, 64, 64, 32, 2, 1)),
        ("64x32x32->128x16x16", geom(n, 64, 32, 128, 16, 2, 1)),
        ("128x16x16->256x8x8", geom(n, 128, 16, 256, 8, 2, 1)),
        ("256x8x8->512x4x4", geom(n, 256, 8, 512, 4, 2, 1)),
        ("512x4x4->1x1x1", geom(n, 512, 4, 1, 1, 1, 0)),
    ]
}

/// DCGAN-64's generator ConvTranspose2d layers, as the convolution whose adjoint each is
/// (its forward is that convolution's backward-data).
fn g_layers(n: usize) -> Vec<(&'static str, ConvGeom)> {
    vec![
        ("100x1x1->512x4x4", geom(n, 512, 4, 100, 1, 1, 0)),
        ("512x4x4->256x8x8", geom(n, 256, 8, 512, 4, 2, 1)),
        ("256x8x8->128x16x16", geom(n, 128, 16, 256, 8, 2, 1)),
        ("128x16x16->64x32x32", geom(n, 64, 32, 128, 16, 2, 1)),
        ("64x32x32->3x64x64", geom(n, 3, 64, 64, 32, 2, 1)),
    ]
}

fn data(len: usize, seed: u32) -> Storage {
    Storage::Cpu(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20) as f32 / 4096.0 - 0.5)
            .collect(),
    )
}

#[derive(Clone, Copy)]
enum Dir {
    Forward,
    BackwardData,
    BackwardWeight,
}

fn run_fast(g: &ConvGeom, dir: Dir, x: &Storage, w: &Storage, y: &Storage) -> Storage {
    let be = Device::Cpu.backend();
    match dir {
        Dir::Forward => be.conv2d_forward(x, w, g),
        Dir::BackwardData => be.conv2d_backward_data(y, w, g),
        Dir::BackwardWeight => be.conv2d_backward_weight(x, y, g),
    }
}

fn run_naive(g: &ConvGeom, dir: Dir, x: &[f32], w: &[f32], y: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; [g.y_len(), g.x_len(), g.w_len()][dir as usize]];
    match dir {
        Dir::Forward => g.for_each_mac(|xi, yi, wi| out[yi] += x[xi] * w[wi]),
        Dir::BackwardData => g.for_each_mac(|xi, yi, wi| out[xi] += y[yi] * w[wi]),
        Dir::BackwardWeight => g.for_each_mac(|xi, yi, wi| out[wi] += y[yi] * x[xi]),
    }
    out
}

fn bench_family(
    c: &mut Criterion,
    family: &str,
    layers: fn(usize) -> Vec<(&'static str, ConvGeom)>,
    dirs: &[(&str, Dir)],
) {
    for &(dname, dir) in dirs {
        let mut grp = c.benchmark_group(format!("{family}/{dname}"));
        grp.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for ((name, g), (_, gn)) in layers(BATCH).into_iter().zip(layers(NAIVE_BATCH)) {
            let (x, w, y) = (data(g.x_len(), 1), data(g.w_len(), 2), data(g.y_len(), 3));
            grp.throughput(Throughput::Elements(2 * g.macs()));
            grp.bench_with_input(BenchmarkId::new(format!("cpu_b{BATCH}"), name), &g, |b, g| {
                b.iter(|| black_box(run_fast(g, dir, &x, &w, &y)))
            });
            grp.bench_with_input(BenchmarkId::new(format!("cpu_bf16_b{BATCH}"), name), &g, |b, g| {
                set_matmul_precision(MatmulPrecision::Bf16);
                b.iter(|| black_box(run_fast(g, dir, &x, &w, &y)));
                set_matmul_precision(MatmulPrecision::F32);
            });
            let (x, w, y) = (data(gn.x_len(), 1), data(gn.w_len(), 2), data(gn.y_len(), 3));
            grp.throughput(Throughput::Elements(2 * gn.macs()));
            grp.bench_with_input(BenchmarkId::new(format!("naive_b{NAIVE_BATCH}"), name), &gn, |b, g| {
                b.iter(|| black_box(run_naive(g, dir, x.cpu(), w.cpu(), y.cpu())))
            });
        }
        grp.finish();
    }
}

fn conv2d(c: &mut Criterion) {
    let dirs = [
        ("forward", Dir::Forward),
        ("backward_data", Dir::BackwardData),
        ("backward_weight", Dir::BackwardWeight),
    ];
    bench_family(c, "conv2d", d_layers, &dirs);
}

/// conv_transpose2d's forward is backward-data, its backward-data is forward, its weight
/// gradient is backward-weight, of the geometry in `g_layers`.
fn conv_transpose2d(c: &mut Criterion) {
    let dirs = [
        ("forward", Dir::BackwardData),
        ("backward_data", Dir::Forward),
        ("backward_weight", Dir::BackwardWeight),
    ];
    bench_family(c, "conv_transpose2d", g_layers, &dirs);
}

criterion_group!(benches, conv2d, conv_transpose2d);
criterion_main!(benches);
