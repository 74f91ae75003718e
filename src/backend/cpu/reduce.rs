//! Sums, whole-tensor and per channel, accumulated in f64 in a fixed order.

use super::CHUNK;
use crate::backend::ChannelShape;
use rayon::prelude::*;

pub fn sum(x: &[f32]) -> f64 {
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(|c| c.iter().map(|&v| v as f64).sum()).collect();
    partials.iter().sum()
}

/// Σ over n and hw of x[n, c, hw], per channel.
pub fn sum_channels(x: &[f32], s: ChannelShape) -> Vec<f64> {
    (0..s.c)
        .into_par_iter()
        .map(|c| channel_planes(x, s, c).map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum())
        .collect()
}

/// The n planes of channel c, in batch order.
pub fn channel_planes(x: &[f32], s: ChannelShape, c: usize) -> impl Iterator<Item = &[f32]> {
    (0..s.n).map(move |n| &x[(n * s.c + c) * s.hw..][..s.hw])
}
