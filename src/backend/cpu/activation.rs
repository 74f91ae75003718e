//! relu, leaky_relu, tanh, sigmoid: forward and backward.

use super::elementwise::{map1, map2};
use crate::backend::Unary;

pub fn forward(op: Unary, x: &[f32]) -> Vec<f32> {
    match op {
        Unary::Relu => map1(x, |x| if x > 0.0 { x } else { 0.0 }),
        Unary::LeakyRelu(slope) => map1(x, move |x| if x > 0.0 { x } else { slope * x }),
        Unary::Tanh => map1(x, f32::tanh),
        Unary::Sigmoid => map1(x, sigmoid),
    }
}

/// `saved` is y, except x for leaky_relu with a negative slope (see
/// `Unary::backward_uses_output`); the relu family tests `saved > 0`, true for x and y alike.
/// At x = 0 the relu family takes the left slope, as PyTorch does.
pub fn backward(op: Unary, saved: &[f32], dy: &[f32]) -> Vec<f32> {
    match op {
        Unary::Relu => map2(saved, dy, |x, dy| if x > 0.0 { dy } else { 0.0 }),
        Unary::LeakyRelu(slope) => map2(saved, dy, move |x, dy| if x > 0.0 { dy } else { slope * dy }),
        Unary::Tanh => map2(saved, dy, |y, dy| dy * (1.0 - y * y)),
        Unary::Sigmoid => map2(saved, dy, |y, dy| dy * y * (1.0 - y)),
    }
}

/// Logistic function without overflow: e^−|x| never exceeds 1.
pub fn sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}
