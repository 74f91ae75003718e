//! Parameter-free activation layers, so a Sequential reads like PyTorch's.

use super::Module;
use crate::backend::Unary;
use crate::tensor::Tensor;

pub struct ReLU;
pub struct LeakyReLU(pub f32);
pub struct Tanh;
pub struct Sigmoid;

impl Module for ReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.relu()
    }
    fn activation(&self) -> Option<Unary> {
        Some(Unary::Relu)
    }
    fn kind(&self) -> &'static str {
        "ReLU"
    }
}

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.leaky_relu(self.0)
    }
    fn activation(&self) -> Option<Unary> {
        Some(Unary::LeakyRelu(self.0))
    }
    fn kind(&self) -> &'static str {
        "LeakyReLU"
    }
}

impl Module for Tanh {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.tanh()
    }
    fn kind(&self) -> &'static str {
        "Tanh"
    }
}

impl Module for Sigmoid {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.sigmoid()
    }
    fn kind(&self) -> &'static str {
        "Sigmoid"
    }
}
