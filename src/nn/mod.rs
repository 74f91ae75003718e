//! Layers. A [`Module`] maps a tensor to a tensor and lists its tensors by PyTorch's
//! `state_dict` names, so checkpoints and comparisons with PyTorch line up name for name.

mod activation;
mod batchnorm;
mod class_projection;
mod conv;
pub mod init;
mod linear;
mod sequential;
mod spectral_norm;

pub use activation::{LeakyReLU, ReLU, Sigmoid, Tanh};
pub use batchnorm::BatchNorm2d;
pub use class_projection::ClassProjection;
pub use conv::{Conv2d, ConvTranspose2d};
pub use linear::Linear;
pub use sequential::Sequential;
pub use spectral_norm::SpectralNormConv2d;

use crate::tensor::Tensor;

pub trait Module: Send + Sync {
    fn forward(&self, x: &Tensor) -> Tensor;

    /// PyTorch's class name ("Conv2d", "BatchNorm2d", ...), for initialisation rules and
    /// messages.
    fn kind(&self) -> &'static str;

    /// Every tensor of the state, trainable or not, under its `state_dict` name relative to
    /// this module ("weight", "running_mean", "3.weight", ...), in PyTorch's order.
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The trainable tensors, in `named_tensors` order.
    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Training mode (batch statistics in BatchNorm) or eval mode (running statistics).
    fn set_training(&mut self, _training: bool) {}

    /// Integer state that is not a tensor, under its `state_dict` name relative to this module
    /// (BatchNorm2d's "num_batches_tracked", "1.num_batches_tracked" in a Sequential), in
    /// PyTorch's order. Checkpoints store each as a 0-dim int64 tensor.
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Set the counter `name` (a name from [`Module::counters`]); false when there is none.
    fn set_counter(&self, _name: &str, _value: u64) -> bool {
        false
    }

    /// `act(self.forward(x))` as one fused op, where this layer has one for `act` (BatchNorm2d
    /// with ReLU or LeakyReLU, a bias-free Conv2d with an activation differentiated through its
    /// output); [`Sequential`] runs a layer and the activation layer after it through this.
    fn forward_fused(&self, _x: &Tensor, _act: crate::backend::Unary) -> Option<Tensor> {
        None
    }

    /// An elementwise activation layer names its kernel op here (for that fusion).
    fn activation(&self) -> Option<crate::backend::Unary> {
        None
    }
}

/// The state of a layer with a weight and an optional bias, under PyTorch's names.
pub(crate) fn weight_and_bias(w: &Tensor, b: &Option<Tensor>) -> Vec<(String, Tensor)> {
    let mut v = vec![("weight".to_string(), w.clone())];
    v.extend(b.iter().map(|b| ("bias".to_string(), b.clone())));
    v
}

/// A fresh trainable leaf.
pub(crate) fn parameter(t: Tensor) -> Tensor {
    t.set_requires_grad(true);
    t
}
