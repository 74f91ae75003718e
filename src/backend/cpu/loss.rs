//! Binary cross-entropy on logits, in the stable form max(x,0) − x·t + log(1 + e^−|x|):
//! no exp overflows and no log(0), whatever the logit.

use super::CHUNK;
use super::activation::sigmoid;
use rayon::prelude::*;

pub fn bce_with_logits(x: &[f32], t: &[f32]) -> f32 {
    let partials: Vec<f64> = x
        .par_chunks(CHUNK)
        .zip(t.par_chunks(CHUNK))
        .map(|(x, t)| {
            x.iter()
                .zip(t)
                .map(|(&x, &t)| {
                    let x = x as f64;
                    x.max(0.0) - x * t as f64 + (-x.abs()).exp().ln_1p()
                })
                .sum::<f64>()
        })
        .collect();
    (partials.iter().sum::<f64>() / x.len() as f64) as f32
}

pub fn bce_with_logits_backward(x: &[f32], t: &[f32], dloss: f32) -> Vec<f32> {
    let scale = dloss / x.len() as f32;
    super::elementwise::map2(x, t, |x, t| (sigmoid(x) - t) * scale)
}
