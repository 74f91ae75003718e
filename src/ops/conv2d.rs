//! 2-D convolution (cross-correlation, as PyTorch): x [N, Cin, H, W], weight [Cout, Cin, kh, kw].

use super::{add_bias, channel_shape};
use crate::autograd::record_op;
use crate::backend::ConvGeom;
use crate::tensor::Tensor;

pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Tensor {
    let [n, c_in, h_in, w_in] = input.dims4("conv2d");
    let [c_out, w_cin, kh, kw] = weight.dims4("conv2d");
    assert!(
        c_in == w_cin,
        "conv2d: input has {c_in} channels but the weight expects {w_cin} (input {:?}, weight {:?})",
        input.shape(),
        weight.shape()
    );
    assert!(stride > 0, "conv2d: stride must be positive");
    assert!(
        h_in + 2 * padding >= kh && w_in + 2 * padding >= kw,
        "conv2d: kernel {kh}×{kw} larger than the padded input (input {:?}, padding {padding})",
        input.shape()
    );
    let g = ConvGeom {
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
    };
    let out = input.backend().conv2d_forward(&input.storage(), &weight.storage(), &g);
    let y = record_op(
        "conv2d",
        out,
        &[n, c_out, g.h_out, g.w_out],
        vec![input.clone(), weight.clone()],
        move |dy, inputs| {
            let be = dy.backend();
            let (x, w) = (&inputs[0], &inputs[1]);
            let dx = x.requires_grad().then(|| {
                Tensor::from_storage(be.conv2d_backward_data(&dy.storage(), &w.storage(), &g), x.shape())
            });
            let dw = w.requires_grad().then(|| {
                Tensor::from_storage(be.conv2d_backward_weight(&x.storage(), &dy.storage(), &g), w.shape())
            });
            vec![dx, dw]
        },
    );
    let s = channel_shape(&y, "conv2d");
    add_bias("conv2d", y, bias, s)
}
