//! Fully connected layer: y = x · Wᵀ + b, W of shape [out, in] as in PyTorch.

use crate::autograd::record_op;
use crate::backend::ChannelShape;
use crate::tensor::Tensor;

pub fn linear(input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (&[batch, fan_in], &[fan_out, w_in]) = (input.shape(), weight.shape()) else {
        panic!(
            "linear: expected input [batch, in] and weight [out, in], got {:?} and {:?}",
            input.shape(),
            weight.shape()
        );
    };
    assert_eq!(
        fan_in,
        w_in,
        "linear: input features differ: input {:?}, weight {:?}",
        input.shape(),
        weight.shape()
    );
    let out =
        input.backend().matmul(&input.storage(), false, &weight.storage(), true, batch, fan_out, fan_in);
    let y =
        record_op("linear", out, &[batch, fan_out], vec![input.clone(), weight.clone()], move |g, inputs| {
            let be = g.backend();
            let (x, w) = (&inputs[0], &inputs[1]);
            // dx = g · W, dW = gᵀ · x
            let dx = x.requires_grad().then(|| {
                Tensor::from_storage(
                    be.matmul(&g.storage(), false, &w.storage(), false, batch, fan_in, fan_out),
                    &[batch, fan_in],
                )
            });
            let dw = w.requires_grad().then(|| {
                Tensor::from_storage(
                    be.matmul(&g.storage(), true, &x.storage(), false, fan_out, fan_in, batch),
                    &[fan_out, fan_in],
                )
            });
            vec![dx, dw]
        });
    super::add_bias("linear", y, bias, ChannelShape { n: batch, c: fan_out, hw: 1 })
}
