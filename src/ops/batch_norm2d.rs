//! BatchNorm2d as `torch.nn.functional.batch_norm` on NCHW input.
//!
//! Training: normalise with the batch mean and biased variance; update the running
//! statistics in place as running = (1 − momentum)·running + momentum·batch, with the
//! unbiased variance (× M/(M−1), M = N·H·W). Eval: normalise with the running statistics.
//!
//! `batch_norm2d_act` is the same BatchNorm with a ReLU or LeakyReLU fused after it: one
//! kernel pass forward, one backward, and the pre-activation is never stored (the backward
//! recomputes it from the BatchNorm's input, which it keeps anyway).

use super::channel_shape;
use crate::autograd::record_op;
use crate::backend::Unary;
use crate::tensor::Tensor;

#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d(
    input: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Tensor {
    batch_norm_impl(input, running_mean, running_var, weight, bias, training, momentum, eps, None)
}

/// `act(batch_norm2d(...))` for `act` = [`Unary::Relu`] or [`Unary::LeakyRelu`], fused: the
/// same values and gradients as the composition, in one pass each way and without the
/// intermediate tensor.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_act(
    input: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f32,
    eps: f32,
    act: Unary,
) -> Tensor {
    assert!(
        matches!(act, Unary::Relu | Unary::LeakyRelu(_)),
        "batch_norm2d_act: only ReLU and LeakyReLU fuse with BatchNorm, got {act:?}"
    );
    batch_norm_impl(input, running_mean, running_var, weight, bias, training, momentum, eps, Some(act))
}

#[allow(clippy::too_many_arguments)]
fn batch_norm_impl(
    input: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f32,
    eps: f32,
    act: Option<Unary>,
) -> Tensor {
    let op = if act.is_some() { "batch_norm2d_act" } else { "batch_norm2d" };
    let s = channel_shape(input, op);
    let dev = input.device();
    for (what, t) in
        [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)]
    {
        if let Some(t) = t {
            assert!(
                t.shape() == [s.c],
                "{op}: {what} of shape {:?} for input {:?} ({} channels)",
                t.shape(),
                input.shape(),
                s.c
            );
        }
    }
    let gamma = weight.cloned().unwrap_or_else(|| Tensor::ones(&[s.c], dev));
    let beta = bias.cloned().unwrap_or_else(|| Tensor::zeros(&[s.c], dev));
    let be = input.backend();
    let (y, mean, var) = if training {
        let m = s.n * s.hw;
        assert!(m > 1, "{op}: training needs more than one value per channel, got input {:?}", input.shape());
        let (y, mean, var) = {
            let (x, g, b) = (input.storage(), gamma.storage(), beta.storage());
            match act {
                None => be.batchnorm2d_forward_train(&x, &g, &b, s, eps),
                Some(act) => be.batchnorm2d_act_forward_train(&x, &g, &b, s, eps, act),
            }
        };
        if let Some(rm) = running_mean {
            be.axpby(momentum, &mean, 1.0 - momentum, &mut rm.storage_mut());
        }
        if let Some(rv) = running_var {
            let unbiased = be.affine(&var, m as f32 / (m - 1) as f32, 0.0);
            be.axpby(momentum, &unbiased, 1.0 - momentum, &mut rv.storage_mut());
        }
        (y, mean, var)
    } else {
        let (Some(rm), Some(rv)) = (running_mean, running_var) else {
            panic!("{op}: eval mode needs running_mean and running_var");
        };
        let y = {
            let (x, g, b) = (input.storage(), gamma.storage(), beta.storage());
            let (m, v) = (rm.storage(), rv.storage());
            match act {
                None => be.batchnorm2d_forward_eval(&x, &g, &b, &m, &v, s, eps),
                Some(act) => be.batchnorm2d_act_forward_eval(&x, &g, &b, &m, &v, s, eps, act),
            }
        };
        // Snapshots: the running buffers may change before backward runs.
        (y, be.copy(&rm.storage()), be.copy(&rv.storage()))
    };
    record_op(op, y, input.shape(), vec![input.clone(), gamma, beta], move |dy, inputs| {
        let be = dy.backend();
        let (x, gamma, beta) = (inputs[0].storage(), inputs[1].storage(), inputs[2].storage());
        let dy = dy.storage();
        let (dx, dgamma, dbeta) = match act {
            None => be.batchnorm2d_backward(&x, &dy, &gamma, &mean, &var, s, eps, training),
            Some(act) => {
                be.batchnorm2d_act_backward(&x, &dy, &gamma, &beta, &mean, &var, s, eps, training, act)
            }
        };
        vec![
            Some(Tensor::from_storage(dx, inputs[0].shape())),
            Some(Tensor::from_storage(dgamma, &[s.c])),
            Some(Tensor::from_storage(dbeta, &[s.c])),
        ]
    })
}
