//! relu, leaky_relu, tanh, sigmoid: forward and backward.

use super::elementwise::{map1, map2};
use crate::backend::Unary;

fn relu(x: f32) -> f32 {
    if x > 0.0 { x } else { 0.0 }
}

fn leaky_relu(x: f32, slope: f32) -> f32 {
    if x > 0.0 { x } else { slope * x }
}

pub fn forward(op: Unary, x: &[f32]) -> Vec<f32> {
    match op {
        Unary::Relu => map1(x, relu),
        Unary::LeakyRelu(slope) => map1(x, move |x| leaky_relu(x, slope)),
        Unary::Tanh => map1(x, f32::tanh),
        Unary::Sigmoid => map1(x, sigmoid),
    }
}

/// `forward` in place on one thread: for a kernel applying the activation to a block of its
/// own output while that block is in cache.
pub fn forward_in_place(op: Unary, y: &mut [f32]) {
    fn each(y: &mut [f32], f: impl Fn(f32) -> f32) {
        y.iter_mut().for_each(|v| *v = f(*v));
    }
    match op {
        Unary::Relu => each(y, relu),
        Unary::LeakyRelu(slope) => each(y, move |x| leaky_relu(x, slope)),
        Unary::Tanh => each(y, f32::tanh),
        Unary::Sigmoid => each(y, sigmoid),
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
