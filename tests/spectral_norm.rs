//! Spectral normalisation (`train --spectral-norm`): the power iteration finds the largest
//! singular value, the normalised weight has spectral norm 1, and the gradient through σ is
//! the closed form, on every device.

#[macro_use]
mod common;
use common::{assert_close, random, tensor};
use dcgan::nn::{Module, SpectralNormConv2d};
use dcgan::{Device, Rng};

const M: usize = 6;
const REST: usize = 2 * 4 * 4;

/// The largest singular value of the row-major m×n matrix `w`, by power iteration on WᵀW in
/// f64 (its top eigenvalue is well separated for a random matrix).
fn top_singular_value(w: &[f64], m: usize, n: usize) -> f64 {
    let mut v = vec![1.0; n];
    let mut sigma = 0.0;
    for _ in 0..2000 {
        let wv: Vec<f64> = (0..m).map(|i| (0..n).map(|j| w[i * n + j] * v[j]).sum()).collect();
        let wtwv: Vec<f64> = (0..n).map(|j| (0..m).map(|i| w[i * n + j] * wv[i]).sum()).collect();
        let norm = wtwv.iter().map(|x| x * x).sum::<f64>().sqrt();
        sigma = norm.sqrt();
        v = wtwv.iter().map(|x| x / norm).collect();
    }
    sigma
}

fn layer(dev: Device) -> (Vec<f64>, SpectralNormConv2d) {
    let mut rng = Rng::new(3);
    let w = random(M * REST, &mut rng);
    let w_t = tensor(&w, &[M, 2, 4, 4], dev);
    w_t.set_requires_grad(true);
    (w, SpectralNormConv2d::new(w_t, 2, 1, &mut rng))
}

/// After 40 training-mode steps σ is W's largest singular value and W/σ's is 1; in eval mode
/// u and v stay put.
fn sigma_converges_to_the_largest_singular_value(dev: Device) {
    let (w, mut sn) = layer(dev);
    let truth = top_singular_value(&w, M, REST);
    let first = f64::from(sn.sigma().item());
    for _ in 0..40 {
        sn.sigma();
    }
    let sigma = f64::from(sn.sigma().item());
    assert!((sigma - truth).abs() < 1e-5 * truth, "σ {sigma} against {truth} (first step {first})");
    assert!((first - truth).abs() > 1e-3 * truth, "one step from a random u is not converged: {first}");
    let normalized: Vec<f64> = sn.normalized_weight().to_vec().iter().map(|&x| f64::from(x)).collect();
    let top = top_singular_value(&normalized, M, REST);
    assert!((top - 1.0).abs() < 1e-5, "W/σ has spectral norm {top}");

    sn.set_training(false);
    let (u, v) = (sn.u.to_vec(), sn.v.to_vec());
    sn.sigma();
    assert_eq!((sn.u.to_vec(), sn.v.to_vec()), (u, v), "eval mode moved u or v");
}

/// f(W) = Σ (W/σ) ⊙ R with σ = uᵀWv (u, v fixed, eval mode): its gradient is R/σ − (Σ W⊙R)/σ²·uvᵀ.
fn gradient_through_sigma_is_the_closed_form(dev: Device) {
    let (w, mut sn) = layer(dev);
    for _ in 0..5 {
        sn.sigma();
    }
    sn.set_training(false);
    let r = random(M * REST, &mut Rng::new(4));
    sn.normalized_weight().mul(&tensor(&r, &[M, 2, 4, 4], dev)).sum().backward();
    let got = sn.weight.grad().expect("W gets a gradient").to_vec();
    let (u, v): (Vec<f64>, Vec<f64>) = (
        sn.u.to_vec().iter().map(|&x| f64::from(x)).collect(),
        sn.v.to_vec().iter().map(|&x| f64::from(x)).collect(),
    );
    let sigma: f64 = (0..M).map(|i| u[i] * (0..REST).map(|j| w[i * REST + j] * v[j]).sum::<f64>()).sum();
    let wr: f64 = w.iter().zip(&r).map(|(a, b)| a * b).sum();
    let want: Vec<f64> =
        (0..M * REST).map(|k| r[k] / sigma - wr / (sigma * sigma) * u[k / REST] * v[k % REST]).collect();
    assert_close(&got, &want, 1e-5, "d/dW Σ (W/σ)⊙R");
    // The σ term matters: without it the gradient would be R/σ alone.
    let naive: Vec<f64> = r.iter().map(|x| x / sigma).collect();
    let off = want.iter().zip(&naive).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(off > 1e-3, "the σ term is negligible here ({off}): the test would not see it missing");
}

device_tests!(sigma_converges_to_the_largest_singular_value, gradient_through_sigma_is_the_closed_form);
