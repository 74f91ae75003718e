//! Conv2d and ConvTranspose2d with PyTorch's default initialisation
//! (U(−1/√fan_in, 1/√fan_in), what kaiming_uniform(a=√5) comes to).

use super::{Module, parameter, weight_and_bias};
use crate::backend::{Device, Unary};
use crate::ops::{conv_transpose2d, conv2d, conv2d_act};
use crate::rng::Rng;
use crate::tensor::Tensor;

fn uniform_init(shape: &[usize], fan_in: usize, rng: &mut Rng, device: Device) -> Tensor {
    let bound = 1.0 / (fan_in as f32).sqrt();
    parameter(Tensor::rand_uniform(shape, -bound, bound, rng, device))
}

pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let fan_in = in_channels * kernel_size * kernel_size;
        let weight =
            uniform_init(&[out_channels, in_channels, kernel_size, kernel_size], fan_in, rng, device);
        let bias = bias.then(|| uniform_init(&[out_channels], fan_in, rng, device));
        Conv2d { weight, bias, stride, padding }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        conv2d(x, &self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
    fn forward_fused(&self, x: &Tensor, act: Unary) -> Option<Tensor> {
        (self.bias.is_none() && act.backward_uses_output())
            .then(|| conv2d_act(x, &self.weight, self.stride, self.padding, act))
    }
    fn kind(&self) -> &'static str {
        "Conv2d"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        weight_and_bias(&self.weight, &self.bias)
    }
    fn parameters(&self) -> Vec<Tensor> {
        self.named_tensors().into_iter().map(|(_, t)| t).collect()
    }
}

pub struct ConvTranspose2d {
    /// [in_channels, out_channels, k, k], PyTorch's layout.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
}

impl ConvTranspose2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
        bias: bool,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        // PyTorch computes fan_in from weight.size(1) · k², i.e. out_channels here.
        let fan_in = out_channels * kernel_size * kernel_size;
        let weight =
            uniform_init(&[in_channels, out_channels, kernel_size, kernel_size], fan_in, rng, device);
        let bias = bias.then(|| uniform_init(&[out_channels], fan_in, rng, device));
        ConvTranspose2d { weight, bias, stride, padding, output_padding }
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        conv_transpose2d(x, &self.weight, self.bias.as_ref(), self.stride, self.padding, self.output_padding)
    }
    fn kind(&self) -> &'static str {
        "ConvTranspose2d"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        weight_and_bias(&self.weight, &self.bias)
    }
    fn parameters(&self) -> Vec<Tensor> {
        self.named_tensors().into_iter().map(|(_, t)| t).collect()
    }
}
