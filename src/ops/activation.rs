//! relu, leaky_relu, tanh, sigmoid, sqrt.

use crate::autograd::record;
use crate::backend::Unary;
use crate::tensor::Tensor;
use std::sync::{Arc, RwLock};

fn unary(name: &'static str, op: Unary, x: &Tensor) -> Tensor {
    let out = Arc::new(RwLock::new(x.backend().unary(op, &x.storage())));
    // tanh and sigmoid differentiate through their output; keep its buffer, not the output
    // tensor itself (the tensor owns this node: holding it would be a reference cycle).
    let saved_out = op.backward_uses_output().then(|| out.clone());
    record(name, out, x.shape().to_vec(), x.device(), vec![x.clone()], move |dy, inputs| {
        let be = dy.backend();
        let dx = match &saved_out {
            Some(y) => be.unary_backward(op, &y.read().expect("lock"), &dy.storage()),
            None => be.unary_backward(op, &inputs[0].storage(), &dy.storage()),
        };
        vec![Some(Tensor::from_storage(dx, dy.shape()))]
    })
}

pub fn relu(x: &Tensor) -> Tensor {
    unary("relu", Unary::Relu, x)
}

pub fn leaky_relu(x: &Tensor, negative_slope: f32) -> Tensor {
    unary("leaky_relu", Unary::LeakyRelu(negative_slope), x)
}

pub fn tanh(x: &Tensor) -> Tensor {
    unary("tanh", Unary::Tanh, x)
}

pub fn sigmoid(x: &Tensor) -> Tensor {
    unary("sigmoid", Unary::Sigmoid, x)
}

/// √x, for x ≥ 0.
pub fn sqrt(x: &Tensor) -> Tensor {
    unary("sqrt", Unary::Sqrt, x)
}

impl Tensor {
    pub fn relu(&self) -> Tensor {
        relu(self)
    }
    pub fn leaky_relu(&self, negative_slope: f32) -> Tensor {
        leaky_relu(self, negative_slope)
    }
    pub fn tanh(&self) -> Tensor {
        tanh(self)
    }
    pub fn sigmoid(&self) -> Tensor {
        sigmoid(self)
    }
    pub fn sqrt(&self) -> Tensor {
        sqrt(self)
    }
}
