//! BatchNorm2d over (n, h, w) per channel. PyTorch's conventions: biased variance to
//! normalise, eps inside the square root.
//!
//! The elementwise passes walk the tensor in memory order, image by image. The per-channel
//! sums run over fixed chunks of images, a sixteenth of the batch (each chunk sums every
//! channel, the chunks' f64 totals are then added in chunk order), channel by channel within
//! a chunk: at batch 128 one channel's eight planes are eight streams the hardware
//! prefetchers follow, and its accumulators stay in L1, where walking the chunk image by
//! image cycled all channels' accumulators (78 KB at 512 channels) through L2 once per plane
//! (4×4 backward −25%, 8×8 −20%). Walking one channel's planes over the whole batch instead
//! jumps c·h·w floats between 16-float planes at 4×4, which the prefetchers do not follow: in
//! a training step, where the input is no longer in cache, that ran at a third of its
//! in-cache speed.

use crate::backend::{ChannelShape, Unary};
use rayon::prelude::*;
use std::cell::Cell;

fn count(s: ChannelShape) -> f64 {
    (s.n * s.hw) as f64
}

/// Lanes of independent accumulators in the per-channel sums: they break the add-latency
/// chain and vectorise. Each lane sums a few dozen terms in f32 (at most FLUSH/LANES plus one
/// plane's share), then the lanes are added into f64 totals, in a fixed order: accurate, and
/// the same bits for any thread count. Flushing every FLUSH terms rather than every plane
/// keeps the serial f64 additions off the 4×4 and 8×8 planes' critical path.
const LANES: usize = 16;
const FLUSH: usize = 1024;

/// Terms summed per channel: (Σ d, Σ d²) for the statistics, (Σ dz, Σ dz·x̂) in backward.
const K: usize = 2;

/// Σ f(i) over the planes of one channel, f returning `K` terms at once.
#[derive(Clone)]
struct LaneSums {
    lanes: [[f32; LANES]; K],
    terms: usize,
    total: [f64; K],
}

impl LaneSums {
    const ZERO: LaneSums = LaneSums { lanes: [[0.0; LANES]; K], terms: 0, total: [0.0; K] };

    /// Adds f(x[i], y[i]) over one plane (`y` as long as `x`): element i into lane i % LANES.
    /// Whole chunks of LANES, so the loop has no bounds checks and vectorises.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn add(&mut self, x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> [f32; K]) {
        let y = &y[..x.len()];
        let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (xs, ys) in xc.zip(yc) {
            for l in 0..LANES {
                let t = f(xs[l], ys[l]);
                for k in 0..K {
                    self.lanes[k][l] += t[k];
                }
            }
        }
        for (l, (&x, &y)) in xr.iter().zip(yr).enumerate() {
            let t = f(x, y);
            for k in 0..K {
                self.lanes[k][l] += t[k];
            }
        }
        self.terms += x.len();
        if self.terms >= FLUSH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (total, lanes) in self.total.iter_mut().zip(&mut self.lanes) {
            *total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            *lanes = [0.0; LANES];
        }
        self.terms = 0;
    }

    fn finish(&mut self) -> [f64; K] {
        self.flush();
        self.total
    }
}

/// Chunks of the batch summed as one task each. Fixed by the batch size alone, so the sums
/// are the same bits for any thread count.
const SUM_CHUNKS: usize = 16;

thread_local! {
    /// A chunk's per-channel accumulators (152 bytes a channel: 78 KB at 512 channels), kept
    /// for the thread's next chunk. A fresh Vec per chunk came from pages the allocator had
    /// just trimmed: 300 page faults for each 512-channel call, a third of a warm 4×4 call.
    static CHUNK_SUMS: Cell<Vec<LaneSums>> = const { Cell::new(Vec::new()) };
}

/// Per channel, K sums over all images and positions: `add_plane(c, offset, sums)` adds the
/// terms of channel c's plane that starts at `offset` (in an (n, c, hw) tensor) to `sums`.
fn channel_sums(s: ChannelShape, add_plane: impl Fn(usize, usize, &mut LaneSums) + Sync) -> Vec<[f64; K]> {
    let per_chunk = s.n.div_ceil(SUM_CHUNKS).max(1);
    let chunks: Vec<Vec<[f64; K]>> = (0..s.n.div_ceil(per_chunk))
        .into_par_iter()
        .map(|chunk| {
            let mut sums = CHUNK_SUMS.take();
            sums.clear();
            sums.resize(s.c, LaneSums::ZERO);
            let images = chunk * per_chunk..((chunk + 1) * per_chunk).min(s.n);
            for (c, sums) in sums.iter_mut().enumerate() {
                for n in images.clone() {
                    add_plane(c, (n * s.c + c) * s.hw, sums);
                }
            }
            let totals = sums.iter_mut().map(LaneSums::finish).collect();
            CHUNK_SUMS.set(sums);
            totals
        })
        .collect();
    let mut total = vec![[0.0f64; K]; s.c];
    for chunk in &chunks {
        for (t, part) in total.iter_mut().zip(chunk) {
            for k in 0..K {
                t[k] += part[k];
            }
        }
    }
    total
}

/// The elementwise passes: a fresh output, each image's channels written in parallel by
/// `f(c, offset, out plane)`, the plane of channel c starting at `offset` in the tensor.
fn per_plane(s: ChannelShape, f: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = super::pool::take(s.n * s.c * s.hw);
    let image = s.c * s.hw;
    if image == 0 {
        return out;
    }
    out.par_chunks_mut(image).enumerate().for_each(|(n, out)| {
        for (c, plane) in out.chunks_mut(s.hw).enumerate() {
            f(c, n * image + c * s.hw, plane);
        }
    });
    out
}

/// Per-channel (mean, biased variance) in one pass over x, from the sums of d = x − k and d²
/// with k the channel's first value: a shift near the mean keeps E[d²] − E[d]² from cancelling
/// when |mean| ≫ std, and one pass instead of two matters because the input is usually fresh
/// from a convolution and past the caches (a pass over DRAM is most of BatchNorm's time).
fn batch_stats(x: &[f32], s: ChannelShape) -> (Vec<f32>, Vec<f32>) {
    let m = count(s);
    let hw = s.hw;
    let shift: Vec<f32> = (0..s.c).map(|c| x.get(c * hw).copied().unwrap_or(0.0)).collect();
    let sums = channel_sums(s, |c, o, sums: &mut LaneSums| {
        let (p, k) = (&x[o..o + hw], shift[c]);
        sums.add(p, p, |x, _| {
            let d = x - k;
            [d, d * d]
        })
    });
    sums.iter()
        .zip(&shift)
        .map(|(&[sd, sd2], &k)| {
            let mean_d = sd / m;
            ((k as f64 + mean_d) as f32, (sd2 / m - mean_d * mean_d).max(0.0) as f32)
        })
        .unzip()
}

fn inv_std(var: &[f32], eps: f32) -> Vec<f32> {
    var.iter().map(|&v| (1.0 / (v as f64 + eps as f64).sqrt()) as f32).collect()
}

/// y = (x − mean) · invstd · gamma + beta, as y = x · scale + shift per channel.
fn normalise(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    s: ChannelShape,
) -> Vec<f32> {
    per_plane(s, |c, o, y| {
        let scale = gamma[c] * invstd[c];
        let shift = beta[c] - mean[c] * scale;
        for (y, &x) in y.iter_mut().zip(&x[o..]) {
            *y = x * scale + shift;
        }
    })
}

pub fn forward_train(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: ChannelShape,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = batch_stats(x, s);
    let y = normalise(x, gamma, beta, &mean, &inv_std(&var, eps), s);
    (y, mean, var)
}

pub fn forward_eval(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    s: ChannelShape,
    eps: f32,
) -> Vec<f32> {
    normalise(x, gamma, beta, mean, &inv_std(var, eps), s)
}

/// With batch statistics: dx = gamma·invstd/M · (M·dy − Σdy − x̂·Σ(dy·x̂)); with fixed
/// statistics the two sums drop out of dx. dgamma = Σ dy·x̂, dbeta = Σ dy either way.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    s: ChannelShape,
    eps: f32,
    batch_stats: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    backward_of(x, dy, gamma, mean, &inv_std(var, eps), s, batch_stats, |_| |_, dy| dy)
}

/// The BatchNorm backward of `backward` for dz = `dz_of(c)(x, dy)` in channel c (dy itself,
/// or dy through a fused activation): dx, dgamma = Σ dz·x̂, dbeta = Σ dz. The per-channel
/// closure is made once per plane, so the element loops see plain constants and vectorise.
#[allow(clippy::too_many_arguments)]
fn backward_of<D>(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    s: ChannelShape,
    batch_stats: bool,
    dz_of: impl Fn(usize) -> D + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<f32>)
where
    D: Fn(f32, f32) -> f32,
{
    let hw = s.hw;
    let sums = channel_sums(s, |c, o, sums: &mut LaneSums| {
        let (x, dy, mu, is, dz) = (&x[o..o + hw], &dy[o..o + hw], mean[c], invstd[c], dz_of(c));
        sums.add(x, dy, |x, dy| {
            let dz = dz(x, dy);
            [dz, dz * (x - mu) * is]
        });
    });
    let dbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s[1] as f32).collect();
    let m = count(s) as f32;
    let dx = per_plane(s, |c, o, dx| {
        let (k, mu, is, dz) = (gamma[c] * invstd[c], mean[c], invstd[c], dz_of(c));
        let (x, dy) = (&x[o..o + hw], &dy[o..o + hw]);
        if batch_stats {
            let (mean_dy, mean_dy_xhat) = (dbeta[c] / m, dgamma[c] / m);
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let xhat = (x - mu) * is;
                *dx = k * (dz(x, dy) - mean_dy - xhat * mean_dy_xhat);
            }
        } else {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                *dx = k * dz(x, dy);
            }
        }
    });
    (dx, dgamma, dbeta)
}

// ------------------------------------------------------------------------------------------
// BatchNorm fused with the activation that follows it (ReLU, LeakyReLU)
// ------------------------------------------------------------------------------------------

/// The activation of a fused BatchNorm as (slope for z > 0 is 1) the slope for z ≤ 0:
/// 0 for ReLU, the negative slope for LeakyReLU. Other activations are not fused.
pub fn fused_slope(act: Unary) -> f32 {
    match act {
        Unary::Relu => 0.0,
        Unary::LeakyRelu(slope) => slope,
        other => panic!("batchnorm2d_act: only ReLU and LeakyReLU fuse with BatchNorm, got {other:?}"),
    }
}

/// z for z > 0, else slope·z (ReLU: slope 0), branch-free so the loops vectorise.
#[inline(always)]
fn act(z: f32, slope: f32) -> f32 {
    let neg = slope * z;
    if z > 0.0 { z } else { neg }
}

/// act'(z)·dy, with the same convention at 0 as the unfused backward (left slope).
#[inline(always)]
fn act_grad(z: f32, dy: f32, slope: f32) -> f32 {
    let neg = slope * dy;
    if z > 0.0 { dy } else { neg }
}

/// Per-channel (scale, shift) with z = x·scale + shift — the same arithmetic as `normalise`,
/// so a fused op gives the unfused composition's bits.
fn scale_shift(gamma: &[f32], beta: &[f32], mean: &[f32], invstd: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(invstd).map(|(&g, &i)| g * i).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
    (scale, shift)
}

/// y = act(x·scale + shift) per channel, one pass.
fn normalise_act(x: &[f32], scale: &[f32], shift: &[f32], slope: f32, s: ChannelShape) -> Vec<f32> {
    per_plane(s, |c, o, y| {
        let (a, b, slope) = (scale[c], shift[c], slope);
        for (y, &x) in y.iter_mut().zip(&x[o..]) {
            *y = act(x * a + b, slope);
        }
    })
}

/// Training-mode act(batchnorm(x)): returns (y, batch mean, biased batch variance).
pub fn act_forward_train(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: ChannelShape,
    eps: f32,
    act: Unary,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let slope = fused_slope(act);
    let (mean, var) = batch_stats(x, s);
    let (scale, shift) = scale_shift(gamma, beta, &mean, &inv_std(&var, eps));
    (normalise_act(x, &scale, &shift, slope, s), mean, var)
}

/// Eval-mode act(batchnorm(x)) with the given statistics.
#[allow(clippy::too_many_arguments)]
pub fn act_forward_eval(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    s: ChannelShape,
    eps: f32,
    act: Unary,
) -> Vec<f32> {
    let (scale, shift) = scale_shift(gamma, beta, mean, &inv_std(var, eps));
    normalise_act(x, &scale, &shift, fused_slope(act), s)
}

/// Backward through y = act(z), z = batchnorm(x): the pre-activation z is recomputed from x
/// (same arithmetic as the forward, so the same signs), dz = dy·act'(z), and dz goes through
/// the BatchNorm backward of `backward` — without z or dz ever being stored.
#[allow(clippy::too_many_arguments)]
pub fn act_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    s: ChannelShape,
    eps: f32,
    batch_stats: bool,
    act: Unary,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let slope = fused_slope(act);
    let invstd = inv_std(var, eps);
    let (scale, shift) = scale_shift(gamma, beta, mean, &invstd);
    backward_of(x, dy, gamma, mean, &invstd, s, batch_stats, |c| {
        let (sc, sh) = (scale[c], shift[c]);
        move |x, dy| act_grad(x * sc + sh, dy, slope)
    })
}
