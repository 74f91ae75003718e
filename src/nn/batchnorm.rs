use super::{Module, parameter};
use crate::backend::Device;
use crate::backend::Unary;
use crate::ops::{batch_norm2d, batch_norm2d_act};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicU64, Ordering};

/// BatchNorm2d with affine weight/bias and running statistics, PyTorch's defaults
/// (momentum 0.1, eps 1e-5; weight 1, bias 0, running mean 0, running var 1).
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// Training-mode forward passes so far (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: AtomicU64,
    pub momentum: f32,
    pub eps: f32,
    pub training: bool,
}

impl BatchNorm2d {
    pub fn new(num_features: usize, device: Device) -> Self {
        BatchNorm2d {
            weight: parameter(Tensor::ones(&[num_features], device)),
            bias: parameter(Tensor::zeros(&[num_features], device)),
            running_mean: Tensor::zeros(&[num_features], device),
            running_var: Tensor::ones(&[num_features], device),
            num_batches_tracked: AtomicU64::new(0),
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        }
    }
}

impl BatchNorm2d {
    /// `act(self.forward(x))` in one fused op, for `act` = ReLU or LeakyReLU (what
    /// [`Sequential`](super::Sequential) uses when such a layer follows this one).
    pub fn forward_act(&self, x: &Tensor, act: Unary) -> Tensor {
        if self.training {
            self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
        batch_norm2d_act(
            x,
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            self.training,
            self.momentum,
            self.eps,
            act,
        )
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.training {
            self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
        batch_norm2d(
            x,
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            self.training,
            self.momentum,
            self.eps,
        )
    }
    fn forward_fused(&self, x: &Tensor, act: Unary) -> Option<Tensor> {
        matches!(act, Unary::Relu | Unary::LeakyRelu(_)).then(|| self.forward_act(x, act))
    }
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }
    /// `num_batches_tracked` is an integer, not a tensor here; checkpoints write it separately.
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
        ]
    }
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.weight.clone(), self.bias.clone()]
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn counters(&self) -> Vec<(String, u64)> {
        vec![("num_batches_tracked".to_string(), self.num_batches_tracked.load(Ordering::Relaxed))]
    }
    fn set_counter(&self, name: &str, value: u64) -> bool {
        if name != "num_batches_tracked" {
            return false;
        }
        self.num_batches_tracked.store(value, Ordering::Relaxed);
        true
    }
}
