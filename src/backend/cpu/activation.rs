//! relu, leaky_relu, tanh, sigmoid, sqrt: forward and backward.

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
        Unary::Tanh => map1(x, tanh),
        Unary::Sigmoid => map1(x, sigmoid),
        Unary::Sqrt => map1(x, f32::sqrt),
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
        Unary::Tanh => each(y, tanh),
        Unary::Sigmoid => each(y, sigmoid),
        Unary::Sqrt => each(y, f32::sqrt),
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
        Unary::Sqrt => map2(saved, dy, |y, dy| dy / (2.0 * y)),
    }
}

/// tanh as the odd rational function Eigen uses for floats (`generic_fast_tanh_float`): p(x²)·x
/// / q(x²) on x clamped to ±7.9053 (where it reaches ±1), x itself below 4e-4. Within 4.1e-7
/// (7 ulp) of the exact value over ±10, against libm's 2 ulp; but branch-free plain
/// arithmetic, so a loop over it vectorises: a 64×64 generator's output (1.5 M values) took
/// 15 ms in libm's scalar tanhf, 2 ms so, at the baseline x86-64 SIMD width.
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = x2 * -2.760_768_6e-16 + 2.000_188e-13;
    for c in [-8.604_672e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_5e-4, 4.893_524_6e-3] {
        p = x2 * p + c;
    }
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    for c in [2.268_434_5e-3, 4.893_525e-3] {
        q = x2 * q + c;
    }
    let r = xc * p / q;
    if x.abs() < 4e-4 { x } else { r }
}

/// Logistic function without overflow: e^−|x| never exceeds 1.
pub fn sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}
