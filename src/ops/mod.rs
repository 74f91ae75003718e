//! Differentiable operations: one file per op, each with its shape checks, its forward call
//! into the backend and its backward rule. Arguments follow PyTorch's order
//! (`torch.nn.functional`), so a comparison against PyTorch reads line for line.

mod activation;
mod augment;
mod batch_norm2d;
mod bce_with_logits;
mod conv2d;
mod conv_transpose2d;
mod elementwise;
mod linear;
mod matmul;
mod reduce;

pub use activation::{leaky_relu, relu, sigmoid, tanh};
pub use augment::translate_cutout;
pub use batch_norm2d::{batch_norm2d, batch_norm2d_act};
pub use bce_with_logits::binary_cross_entropy_with_logits;
pub use conv_transpose2d::conv_transpose2d;
pub use conv2d::{conv2d, conv2d_act};
pub use linear::linear;
pub use matmul::matmul;

use crate::backend::ChannelShape;
use crate::tensor::Tensor;

/// NCHW extents of an activation, for per-channel kernels.
pub(crate) fn channel_shape(x: &Tensor, op: &str) -> ChannelShape {
    let [n, c, h, w] = x.dims4(op);
    ChannelShape { n, c, hw: h * w }
}

/// Per-channel bias: checks [c] against the channel count and adds it to every pixel.
pub(crate) fn add_bias(op: &'static str, y: Tensor, bias: Option<&Tensor>, s: ChannelShape) -> Tensor {
    let Some(b) = bias else { return y };
    assert!(b.shape() == [s.c], "{op}: bias of shape {:?} for {} output channels", b.shape(), s.c);
    let out = y.backend().add_channels(&y.storage(), &b.storage(), s);
    let shape = y.shape().to_vec();
    crate::autograd::record_op(op, out, &shape, vec![y, b.clone()], move |g, _| {
        let db = g.backend().sum_channels(&g.storage(), s);
        vec![Some(g.clone()), Some(Tensor::from_storage(db, &[s.c]))]
    })
}
