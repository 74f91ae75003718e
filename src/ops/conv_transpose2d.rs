//! Transposed convolution: x [N, Cin, H, W], weight [Cin, Cout, kh, kw] (PyTorch's layout),
//! output H' = (H − 1)·stride − 2·padding + kh + output_padding.
//!
//! It is the adjoint of conv2d with input and output swapped, so its forward is conv2d's
//! backward-to-data, its backward-to-data is conv2d's forward, and its weight gradient is
//! conv2d's weight gradient with the roles of x and dy exchanged (see `ConvGeom`).

use super::{add_bias, channel_shape};
use crate::autograd::record_op;
use crate::backend::ConvGeom;
use crate::tensor::Tensor;

pub fn conv_transpose2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Tensor {
    let [n, c_in, h, w] = input.dims4("conv_transpose2d");
    let [w_cin, c_out, kh, kw] = weight.dims4("conv_transpose2d");
    assert!(
        c_in == w_cin,
        "conv_transpose2d: input has {c_in} channels but the weight expects {w_cin} (input {:?}, weight {:?})",
        input.shape(),
        weight.shape()
    );
    assert!(stride > 0, "conv_transpose2d: stride must be positive");
    assert!(
        output_padding < stride,
        "conv_transpose2d: output_padding {output_padding} must be smaller than stride {stride}"
    );
    let full_h = (h - 1) * stride + kh + output_padding;
    let full_w = (w - 1) * stride + kw + output_padding;
    assert!(
        full_h > 2 * padding && full_w > 2 * padding,
        "conv_transpose2d: padding {padding} leaves no output for input {:?} and weight {:?}",
        input.shape(),
        weight.shape()
    );
    // The convolution whose adjoint this is: it maps our output (large) back to our input.
    let g = ConvGeom {
        n,
        c_in: c_out,
        h_in: full_h - 2 * padding,
        w_in: full_w - 2 * padding,
        c_out: c_in,
        h_out: h,
        w_out: w,
        kh,
        kw,
        stride,
        pad: padding,
    };
    let out = input.backend().conv2d_backward_data(&input.storage(), &weight.storage(), &g);
    let shape = [n, c_out, g.h_in, g.w_in];
    let y =
        record_op("conv_transpose2d", out, &shape, vec![input.clone(), weight.clone()], move |dy, inputs| {
            let be = dy.backend();
            let (x, w) = (&inputs[0], &inputs[1]);
            let dx = x
                .requires_grad()
                .then(|| Tensor::from_storage(be.conv2d_forward(&dy.storage(), &w.storage(), &g), x.shape()));
            let dw = w.requires_grad().then(|| {
                Tensor::from_storage(be.conv2d_backward_weight(&dy.storage(), &x.storage(), &g), w.shape())
            });
            vec![dx, dw]
        });
    let s = channel_shape(&y, "conv_transpose2d");
    add_bias("conv_transpose2d", y, bias, s)
}
