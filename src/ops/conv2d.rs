//! 2-D convolution (cross-correlation, as PyTorch): x [N, Cin, H, W], weight [Cout, Cin, kh, kw].

use super::{add_bias, channel_shape};
use crate::autograd::{record, record_op};
use crate::backend::{ConvGeom, Storage, Unary};
use crate::tensor::Tensor;
use std::sync::{Arc, RwLock};

pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Tensor {
    let g = geometry("conv2d", input, weight, stride, padding);
    let out = input.backend().conv2d_forward(&input.storage(), &weight.storage(), &g);
    let y = record_op(
        "conv2d",
        out,
        &output_shape(&g),
        vec![input.clone(), weight.clone()],
        move |dy, inputs| conv2d_grads(&dy.storage(), inputs, &g),
    );
    let s = channel_shape(&y, "conv2d");
    add_bias("conv2d", y, bias, s)
}

/// `act(conv2d(input, weight))` without bias, fused: the same values and gradients as the
/// composition, with the activation applied while the convolution's output is in cache and
/// the pre-activation never kept. `act` must be one whose backward reads its output
/// ([`Unary::backward_uses_output`]: ReLU, LeakyReLU with a non-negative slope, tanh,
/// sigmoid).
pub fn conv2d_act(input: &Tensor, weight: &Tensor, stride: usize, padding: usize, act: Unary) -> Tensor {
    assert!(
        act.backward_uses_output(),
        "conv2d_act: {act:?} differentiates through its input, which the fused op does not keep"
    );
    let g = geometry("conv2d_act", input, weight, stride, padding);
    let be = input.backend();
    let out = Arc::new(RwLock::new(be.conv2d_forward_act(&input.storage(), &weight.storage(), &g, act)));
    // The output's buffer, not the tensor (which owns this node: a reference cycle).
    let saved_out = out.clone();
    let inputs = vec![input.clone(), weight.clone()];
    record("conv2d_act", out, output_shape(&g).to_vec(), input.device(), inputs, move |dy, inputs| {
        let dz = dy.backend().unary_backward(act, &saved_out.read().expect("lock"), &dy.storage());
        conv2d_grads(&dz, inputs, &g)
    })
}

fn geometry(op: &str, input: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> ConvGeom {
    let [n, c_in, h_in, w_in] = input.dims4(op);
    let [c_out, w_cin, kh, kw] = weight.dims4(op);
    assert!(
        c_in == w_cin,
        "{op}: input has {c_in} channels but the weight expects {w_cin} (input {:?}, weight {:?})",
        input.shape(),
        weight.shape()
    );
    assert!(stride > 0, "{op}: stride must be positive");
    assert!(
        h_in + 2 * padding >= kh && w_in + 2 * padding >= kw,
        "{op}: kernel {kh}×{kw} larger than the padded input (input {:?}, padding {padding})",
        input.shape()
    );
    ConvGeom {
        n,
        c_in,
        h_in,
        w_in,
        c_out,
        h_out: (h_in + 2 * padding - kh) / stride + 1,
        w_out: (w_in + 2 * padding - kw) / stride + 1,
        kh,
        kw,
        stride,
        pad: padding,
    }
}

fn output_shape(g: &ConvGeom) -> [usize; 4] {
    [g.n, g.c_out, g.h_out, g.w_out]
}

/// (dx, dw) from dy, each only where its input requires a gradient.
fn conv2d_grads(dy: &Storage, inputs: &[Tensor], g: &ConvGeom) -> Vec<Option<Tensor>> {
    let (x, w) = (&inputs[0], &inputs[1]);
    let be = x.backend();
    let dx = x
        .requires_grad()
        .then(|| Tensor::from_storage(be.conv2d_backward_data(dy, &w.storage(), g), x.shape()));
    let dw = w
        .requires_grad()
        .then(|| Tensor::from_storage(be.conv2d_backward_weight(&x.storage(), dy, g), w.shape()));
    vec![dx, dw]
}
