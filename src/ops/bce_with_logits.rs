//! Binary cross-entropy on logits, mean over all elements (PyTorch's default reduction).

use crate::autograd::record_op;
use crate::tensor::Tensor;

pub fn binary_cross_entropy_with_logits(input: &Tensor, target: &Tensor) -> Tensor {
    assert!(
        input.shape() == target.shape(),
        "binary_cross_entropy_with_logits: input {:?} and target {:?} differ",
        input.shape(),
        target.shape()
    );
    let out = input.backend().bce_with_logits(&input.storage(), &target.storage());
    let len = input.numel();
    record_op(
        "binary_cross_entropy_with_logits",
        out,
        &[],
        vec![input.clone(), target.clone()],
        move |g, inputs| {
            let be = g.backend();
            let (x, t) = (&inputs[0], &inputs[1]);
            let dx = x.requires_grad().then(|| {
                Tensor::from_storage(
                    be.bce_with_logits_backward(&x.storage(), &t.storage(), &g.storage()),
                    x.shape(),
                )
            });
            // d/dt = −x / len · g
            let dt = t.requires_grad().then(|| {
                let scale = Tensor::from_storage(
                    be.broadcast_scalar(&g.storage(), -1.0 / len as f32, len),
                    x.shape(),
                );
                x.detach().mul(&scale)
            });
            vec![dx, dt]
        },
    )
}
