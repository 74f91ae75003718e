use super::{Module, parameter, weight_and_bias};
use crate::backend::Device;
use crate::ops::linear;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// y = x · Wᵀ + b with W [out, in]; PyTorch's default init U(−1/√in, 1/√in).
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng, device: Device) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight =
            parameter(Tensor::rand_uniform(&[out_features, in_features], -bound, bound, rng, device));
        let bias = bias.then(|| parameter(Tensor::rand_uniform(&[out_features], -bound, bound, rng, device)));
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        linear(x, &self.weight, self.bias.as_ref())
    }
    fn kind(&self) -> &'static str {
        "Linear"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        weight_and_bias(&self.weight, &self.bias)
    }
    fn parameters(&self) -> Vec<Tensor> {
        self.named_tensors().into_iter().map(|(_, t)| t).collect()
    }
}
