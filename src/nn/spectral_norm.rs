//! Spectral normalisation (Miyato et al. 2018, "Spectral Normalization for Generative
//! Adversarial Networks"): a bias-free Conv2d whose weight W, seen as the matrix
//! [c_out, c_in·k·k], is divided by an estimate σ of its largest singular value, which bounds
//! the layer's Lipschitz constant by 1. As PyTorch's `torch.nn.utils.spectral_norm`:
//! - every training-mode forward runs one power-iteration step, v ← Wᵀu/‖Wᵀu‖,
//!   u ← Wv/‖Wv‖, and keeps u and v as state (`weight_u`, `weight_v`), so the estimate
//!   sharpens as W drifts slowly through training;
//! - σ = uᵀWv, differentiated through W with u and v held constant;
//! - the trained tensor is `weight_orig`; eval mode uses u and v as they are.
//!
//! Everything is the engine's own ops on the layer's device (two matrix-vector products, the
//! norms, a device scalar broadcast), so nothing is read back to the host.

use super::Module;
use crate::backend::Unary;
use crate::ops::{conv2d, conv2d_act};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Added to ‖x‖² before the square root, as PyTorch's eps = 1e-12 is added to ‖x‖.
const EPS_SQ: f32 = 1e-24;

pub struct SpectralNormConv2d {
    /// W, [c_out, c_in, k, k]: `weight_orig`, the trained tensor.
    pub weight: Tensor,
    /// The left singular vector estimate, \[c_out\].
    pub u: Tensor,
    /// The right singular vector estimate, [c_in·k·k].
    pub v: Tensor,
    pub stride: usize,
    pub padding: usize,
    training: bool,
}

/// x / ‖x‖, without recording.
fn normalize(x: &Tensor) -> Tensor {
    let norm = x.mul(x).sum().add_scalar(EPS_SQ).sqrt();
    x.div(&norm.broadcast_to(x.shape()))
}

impl SpectralNormConv2d {
    /// Wraps `weight` (a bias-free Conv2d's), with u and v drawn from `rng` and normalised,
    /// as PyTorch starts them.
    pub fn new(weight: Tensor, stride: usize, padding: usize, rng: &mut Rng) -> Self {
        let (m, rest) = Self::matrix_shape(&weight);
        let dev = weight.device();
        let draw = |len: usize, rng: &mut Rng| {
            crate::no_grad(|| normalize(&Tensor::randn(&[len], 0.0, 1.0, rng, dev)))
        };
        let u = draw(m, rng);
        let v = draw(rest, rng);
        SpectralNormConv2d { weight, u, v, stride, padding, training: true }
    }

    fn matrix_shape(w: &Tensor) -> (usize, usize) {
        let m = w.shape()[0];
        (m, w.numel() / m)
    }

    /// σ = uᵀWv, after one power-iteration step in training mode: a one-element tensor whose
    /// gradient reaches W.
    pub fn sigma(&self) -> Tensor {
        let (m, rest) = Self::matrix_shape(&self.weight);
        let w = self.weight.reshape(&[m, rest]);
        if self.training {
            crate::no_grad(|| {
                let v = normalize(&self.u.reshape(&[1, m]).matmul(&w));
                let u = normalize(&w.matmul(&v.reshape(&[rest, 1])));
                for (mine, new) in [(&self.v, &v), (&self.u, &u)] {
                    *mine.storage_mut() = new.backend().copy(&new.storage());
                }
            });
        }
        self.u.reshape(&[1, m]).matmul(&w.matmul(&self.v.reshape(&[rest, 1])))
    }

    /// W / σ, the weight the convolution uses.
    pub fn normalized_weight(&self) -> Tensor {
        self.weight.div(&self.sigma().broadcast_to(self.weight.shape()))
    }
}

impl Module for SpectralNormConv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        conv2d(x, &self.normalized_weight(), None, self.stride, self.padding)
    }
    fn forward_fused(&self, x: &Tensor, act: Unary) -> Option<Tensor> {
        act.backward_uses_output()
            .then(|| conv2d_act(x, &self.normalized_weight(), self.stride, self.padding, act))
    }
    fn kind(&self) -> &'static str {
        "Conv2d"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight_orig".to_string(), self.weight.clone()),
            ("weight_u".to_string(), self.u.clone()),
            ("weight_v".to_string(), self.v.clone()),
        ]
    }
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.weight.clone()]
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
