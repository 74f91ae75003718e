//! Fused optimiser updates over flat parameter buffers, PyTorch's formulas.

use super::CHUNK;
use crate::backend::AdamParams;
use rayon::prelude::*;

/// Adam (torch.optim.Adam, amsgrad off): bias-corrected moments, eps added after the sqrt.
pub fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamParams) {
    let t = hp.step as i32;
    let bias1 = 1.0 - (hp.beta1 as f64).powi(t);
    let bias2 = 1.0 - (hp.beta2 as f64).powi(t);
    let step_size = (hp.lr as f64 / bias1) as f32;
    let bias2_sqrt = bias2.sqrt() as f32;
    let (b1, b2, eps, wd) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for i in 0..p.len() {
                let grad = g[i] + wd * p[i];
                m[i] = b1 * m[i] + (1.0 - b1) * grad;
                v[i] = b2 * v[i] + (1.0 - b2) * grad * grad;
                let denom = v[i].sqrt() / bias2_sqrt + eps;
                p[i] -= step_size * m[i] / denom;
            }
        });
}

/// SGD with momentum (torch.optim.SGD, dampening 0, no Nesterov).
pub fn sgd(p: &mut [f32], g: &[f32], buf: &mut [f32], lr: f32, momentum: f32, wd: f32, first_step: bool) {
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(buf.par_chunks_mut(CHUNK)).for_each(
        |((p, g), buf)| {
            for i in 0..p.len() {
                let grad = g[i] + wd * p[i];
                let d = if momentum == 0.0 {
                    grad
                } else {
                    buf[i] = if first_step { grad } else { momentum * buf[i] + grad };
                    buf[i]
                };
                p[i] -= lr * d;
            }
        },
    );
}
