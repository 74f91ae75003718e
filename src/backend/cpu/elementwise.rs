//! Elementwise arithmetic. Each output element depends on its inputs only, so any split over
//! threads gives the same bits.

use super::CHUNK;
use crate::backend::{Binary, ChannelShape};
use rayon::prelude::*;

/// out[i] = f(i-th chunk of the inputs), in parallel over fixed-size chunks.
pub(crate) fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = super::pool::take(a.len());
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    out
}

pub(crate) fn map1(a: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = super::pool::take(a.len());
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, a)| {
        for (o, &a) in o.iter_mut().zip(a) {
            *o = f(a);
        }
    });
    out
}

pub fn binary(op: Binary, a: &[f32], b: &[f32]) -> Vec<f32> {
    match op {
        Binary::Add => map2(a, b, |a, b| a + b),
        Binary::Sub => map2(a, b, |a, b| a - b),
        Binary::Mul => map2(a, b, |a, b| a * b),
        Binary::Div => map2(a, b, |a, b| a / b),
    }
}

pub fn affine(x: &[f32], alpha: f32, beta: f32) -> Vec<f32> {
    map1(x, |x| alpha * x + beta)
}

pub fn axpby(a: f32, x: &[f32], b: f32, y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = a * x + b * *y;
        }
    });
}

pub fn add_channels(x: &[f32], bias: &[f32], s: ChannelShape) -> Vec<f32> {
    let mut out = super::pool::take(x.len());
    out.par_chunks_mut(s.hw).zip(x.par_chunks(s.hw)).enumerate().for_each(|(plane, (o, x))| {
        let b = bias[plane % s.c];
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x + b;
        }
    });
    out
}
