//! add, sub, mul, div (same shapes, no broadcasting), scale and add_scalar.

use crate::autograd::record_op;
use crate::backend::Binary;
use crate::tensor::Tensor;

fn binary(op: Binary, name: &'static str, a: &Tensor, b: &Tensor) -> Tensor {
    assert!(a.shape() == b.shape(), "{name}: shapes {:?} and {:?} differ", a.shape(), b.shape());
    assert!(a.device() == b.device(), "{name}: tensors on {} and {}", a.device(), b.device());
    let out = a.backend().binary(op, &a.storage(), &b.storage());
    record_op(name, out, a.shape(), vec![a.clone(), b.clone()], move |g, inputs| match op {
        Binary::Add => vec![Some(g.clone()), Some(g.clone())],
        Binary::Sub => vec![Some(g.clone()), Some(g.scale(-1.0))],
        Binary::Mul => vec![
            inputs[0].requires_grad().then(|| g.mul(&inputs[1])),
            inputs[1].requires_grad().then(|| g.mul(&inputs[0])),
        ],
        // d(a/b) = da / b − a·db / b²
        Binary::Div => vec![
            inputs[0].requires_grad().then(|| g.div(&inputs[1])),
            inputs[1].requires_grad().then(|| g.mul(&inputs[0]).div(&inputs[1].mul(&inputs[1])).scale(-1.0)),
        ],
    })
}

impl Tensor {
    pub fn add(&self, other: &Tensor) -> Tensor {
        binary(Binary::Add, "add", self, other)
    }

    pub fn sub(&self, other: &Tensor) -> Tensor {
        binary(Binary::Sub, "sub", self, other)
    }

    /// Elementwise product.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        binary(Binary::Mul, "mul", self, other)
    }

    /// Elementwise quotient.
    pub fn div(&self, other: &Tensor) -> Tensor {
        binary(Binary::Div, "div", self, other)
    }

    /// alpha · self + beta.
    pub fn affine(&self, alpha: f32, beta: f32) -> Tensor {
        let out = self.backend().affine(&self.storage(), alpha, beta);
        record_op("affine", out, self.shape(), vec![self.clone()], move |g, _| vec![Some(g.scale(alpha))])
    }

    pub fn scale(&self, alpha: f32) -> Tensor {
        self.affine(alpha, 0.0)
    }

    pub fn add_scalar(&self, beta: f32) -> Tensor {
        self.affine(1.0, beta)
    }
}
