//! Optimisers over a list of parameter tensors. A parameter without a gradient (frozen, or not
//! reached by the last backward) is skipped, as in PyTorch.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use crate::tensor::Tensor;

pub trait Optimizer {
    fn step(&mut self);
    fn params(&self) -> &[Tensor];
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
}
