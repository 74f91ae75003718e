//! Naive f64 references, written from the definitions (loops over every index), independent
//! of the engine's kernels: the convolutions walk every multiply-add through
//! `ConvGeom::for_each_mac`, which no kernel uses, and conv_transpose2d here is a scatter, not
//! the engine's adjoint trick.

/// y[n, co, oy, ox] = Σ x[n, ci, oy·s − p + ki, ox·s − p + kj] · w[co, ci, ki, kj] + b[co]
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f64],
    [n, c_in, h_in, w_in]: [usize; 4],
    wt: &[f64],
    [c_out, _, kh, kw]: [usize; 4],
    bias: Option<&[f64]>,
    stride: usize,
    pad: usize,
) -> (Vec<f64>, [usize; 4]) {
    let (h_out, w_out) = ((h_in + 2 * pad - kh) / stride + 1, (w_in + 2 * pad - kw) / stride + 1);
    let g = dcgan::backend::ConvGeom { n, c_in, h_in, w_in, c_out, h_out, w_out, kh, kw, stride, pad };
    let mut y = vec![0.0; g.y_len()];
    g.for_each_mac(|xi, yi, wi| y[yi] += x[xi] * wt[wi]);
    if let Some(bias) = bias {
        for (plane, yc) in y.chunks_mut(h_out * w_out).enumerate() {
            yc.iter_mut().for_each(|v| *v += bias[plane % c_out]);
        }
    }
    (y, [n, c_out, h_out, w_out])
}

/// Each input pixel scatters its kernel-weighted value into the output:
/// y[n, co, iy·s − p + ki, ix·s − p + kj] += x[n, ci, iy, ix] · w[ci, co, ki, kj].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &[f64],
    [n, ci, h, w]: [usize; 4],
    wt: &[f64],
    [_, co, kh, kw]: [usize; 4],
    bias: Option<&[f64]>,
    stride: usize,
    pad: usize,
    output_padding: usize,
) -> (Vec<f64>, [usize; 4]) {
    let oh = (h - 1) * stride + kh + output_padding - 2 * pad;
    let ow = (w - 1) * stride + kw + output_padding - 2 * pad;
    let mut y = vec![0.0; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let base = (b * co + o) * oh * ow;
            if let Some(bb) = bias {
                y[base..base + oh * ow].iter_mut().for_each(|v| *v = bb[o]);
            }
            for c in 0..ci {
                for iy in 0..h {
                    for ix in 0..w {
                        let xv = x[((b * ci + c) * h + iy) * w + ix];
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let oy = (iy * stride + ki) as isize - pad as isize;
                                let ox = (ix * stride + kj) as isize - pad as isize;
                                if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                    y[base + oy as usize * ow + ox as usize] +=
                                        xv * wt[((c * co + o) * kh + ki) * kw + kj];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y, [n, co, oh, ow])
}

/// Per-channel (mean, biased variance) over n, h, w.
pub fn channel_stats(x: &[f64], [n, c, h, w]: [usize; 4]) -> (Vec<f64>, Vec<f64>) {
    let m = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals = (0..n).flat_map(|b| x[(b * c + ch) * h * w..][..h * w].iter().copied());
        mean[ch] = vals.clone().sum::<f64>() / m;
        var[ch] = vals.map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / m;
    }
    (mean, var)
}

/// (x − mean)/√(var + eps)·gamma + beta per channel.
pub fn batch_norm(
    x: &[f64],
    shape: [usize; 4],
    mean: &[f64],
    var: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    let [_, c, h, w] = shape;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / (h * w)) % c;
            (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
        })
        .collect()
}

pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// −[t·log σ(x) + (1 − t)·log(1 − σ(x))] averaged, with log σ(x) = −log(1 + e^−x) written
/// through ln_1p so large |x| stays finite.
pub fn bce_with_logits(x: &[f64], t: &[f64]) -> f64 {
    let log_sig = |x: f64| if x >= 0.0 { -(-x).exp().ln_1p() } else { x - x.exp().ln_1p() };
    let sum: f64 = x.iter().zip(t).map(|(&x, &t)| -(t * log_sig(x) + (1.0 - t) * log_sig(-x))).sum();
    sum / x.len() as f64
}

/// A square-kernel convolution: x [n, c_in, h_in, w_in], k×k, stride s, padding p.
pub fn conv_geom(
    n: usize,
    c_in: usize,
    (h_in, w_in): (usize, usize),
    c_out: usize,
    k: usize,
    s: usize,
    p: usize,
) -> dcgan::backend::ConvGeom {
    let out = |x: usize| (x + 2 * p - k) / s + 1;
    dcgan::backend::ConvGeom {
        n,
        c_in,
        h_in,
        w_in,
        c_out,
        h_out: out(h_in),
        w_out: out(w_in),
        kh: k,
        kw: k,
        stride: s,
        pad: p,
    }
}

/// The three directions of the convolution `g` from their definition, every multiply-add
/// in turn: (y = conv(x, w), dx = its adjoint applied to dy, dw = its weight gradient).
pub fn conv_directions(
    g: &dcgan::backend::ConvGeom,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut dx, mut dw) = (vec![0.0; g.y_len()], vec![0.0; g.x_len()], vec![0.0; g.w_len()]);
    g.for_each_mac(|xi, yi, wi| {
        y[yi] += x[xi] * w[wi];
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    (y, dx, dw)
}
