//! BatchNorm2d as `torch.nn.functional.batch_norm` on NCHW input.
//!
//! Training: normalise with the batch mean and biased variance; update the running
//! statistics in place as running = (1 − momentum)·running + momentum·batch, with the
//! unbiased variance (× M/(M−1), M = N·H·W). Eval: normalise with the running statistics.

use super::channel_shape;
use crate::autograd::record_op;
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
    let s = channel_shape(input, "batch_norm2d");
    let dev = input.device();
    for (what, t) in
        [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)]
    {
        if let Some(t) = t {
            assert!(
                t.shape() == [s.c],
                "batch_norm2d: {what} of shape {:?} for input {:?} ({} channels)",
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
        assert!(
            m > 1,
            "batch_norm2d: training needs more than one value per channel, got input {:?}",
            input.shape()
        );
        let (y, mean, var) =
            be.batchnorm2d_forward_train(&input.storage(), &gamma.storage(), &beta.storage(), s, eps);
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
            panic!("batch_norm2d: eval mode needs running_mean and running_var");
        };
        let y = be.batchnorm2d_forward_eval(
            &input.storage(),
            &gamma.storage(),
            &beta.storage(),
            &rm.storage(),
            &rv.storage(),
            s,
            eps,
        );
        // Snapshots: the running buffers may change before backward runs.
        (y, be.copy(&rm.storage()), be.copy(&rv.storage()))
    };
    record_op("batch_norm2d", y, input.shape(), vec![input.clone(), gamma, beta], move |dy, inputs| {
        let be = dy.backend();
        let (x, gamma) = (&inputs[0], &inputs[1]);
        let (dx, dgamma, dbeta) = be.batchnorm2d_backward(
            &x.storage(),
            &dy.storage(),
            &gamma.storage(),
            &mean,
            &var,
            s,
            eps,
            training,
        );
        vec![
            Some(Tensor::from_storage(dx, x.shape())),
            Some(Tensor::from_storage(dgamma, &[s.c])),
            Some(Tensor::from_storage(dbeta, &[s.c])),
        ]
    })
}
