//! BatchNorm2d over (n, h, w) per channel. Statistics are computed in f64, one channel per
//! task; the normalisation then runs over planes. PyTorch's conventions: biased variance to
//! normalise, eps inside the square root.

use crate::backend::ChannelShape;
use crate::backend::cpu::reduce::channel_planes;
use rayon::prelude::*;

fn count(s: ChannelShape) -> f64 {
    (s.n * s.hw) as f64
}

/// Per-channel (mean, biased variance), two passes for accuracy.
fn batch_stats(x: &[f32], s: ChannelShape) -> (Vec<f32>, Vec<f32>) {
    let m = count(s);
    let stats: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let mean =
                channel_planes(x, s, c).map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / m;
            let var = channel_planes(x, s, c)
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect();
    (stats.iter().map(|s| s.0 as f32).collect(), stats.iter().map(|s| s.1 as f32).collect())
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
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(s.hw).zip(x.par_chunks(s.hw)).enumerate().for_each(|(plane, (y, x))| {
        let c = plane % s.c;
        let scale = gamma[c] * invstd[c];
        let shift = beta[c] - mean[c] * scale;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * scale + shift;
        }
    });
    y
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
    let invstd = inv_std(var, eps);
    let sums: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (mu, is) = (mean[c] as f64, invstd[c] as f64);
            channel_planes(x, s, c).zip(channel_planes(dy, s, c)).fold((0.0, 0.0), |(sd, sdx), (x, dy)| {
                let (a, b) = x.iter().zip(dy).fold((0.0f64, 0.0f64), |(a, b), (&x, &dy)| {
                    (a + dy as f64, b + dy as f64 * (x as f64 - mu) * is)
                });
                (sd + a, sdx + b)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let m = count(s) as f32;
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(s.hw).zip(x.par_chunks(s.hw).zip(dy.par_chunks(s.hw))).enumerate().for_each(
        |(plane, (dx, (x, dy)))| {
            let c = plane % s.c;
            let k = gamma[c] * invstd[c];
            if batch_stats {
                let (mean_dy, mean_dy_xhat) = (dbeta[c] / m, dgamma[c] / m);
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let xhat = (x - mean[c]) * invstd[c];
                    *dx = k * (dy - mean_dy - xhat * mean_dy_xhat);
                }
            } else {
                for (dx, &dy) in dx.iter_mut().zip(dy) {
                    *dx = k * dy;
                }
            }
        },
    );
    (dx, dgamma, dbeta)
}
