//! One DCGAN training step (Goodfellow et al.'s Algorithm 1 with the DCGAN settings):
//! D on real + detached fake, then G through a frozen D.

use crate::nn::{Module, Sequential};
use crate::ops::binary_cross_entropy_with_logits as bce;
use crate::optim::{Adam, Optimizer};
use crate::tensor::Tensor;

/// Which generator loss to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratorLoss {
    /// −log D(G(z)): strong gradients while D still rejects the fakes (the DCGAN default).
    NonSaturating,
    /// log(1 − D(G(z))): the original minimax objective; saturates when D wins.
    Minimax,
}

/// Every number of the minimax game for one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepMetrics {
    pub loss_d: f32,
    pub loss_g: f32,
    /// Mean D(x) on the real batch.
    pub d_real: f32,
    /// Mean D(G(z)) before the D update.
    pub d_fake_before: f32,
    /// Mean D(G(z)) after the D update (as seen by the G step).
    pub d_fake_after: f32,
}

pub struct Gan {
    pub generator: Sequential,
    pub discriminator: Sequential,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub loss: GeneratorLoss,
}

fn mean_probability(logits: &Tensor) -> f32 {
    let v = logits.to_vec();
    v.iter().map(|&l| crate::backend::cpu::activation::sigmoid(l) as f64).sum::<f64>() as f32 / v.len() as f32
}

fn set_requires_grad(model: &Sequential, on: bool) {
    for p in model.parameters() {
        p.set_requires_grad(on);
    }
}

impl Gan {
    /// One D update on `real` and G(z), then one G update with the same z.
    pub fn step(&mut self, real: &Tensor, z: &Tensor) -> StepMetrics {
        let n = real.shape()[0];
        let dev = real.device();
        let ones = Tensor::ones(&[n], dev);
        let zeros = Tensor::zeros(&[n], dev);
        let d = |x: &Tensor| self.discriminator.forward(x).reshape(&[n]);

        // D step: maximise log D(x) + log(1 − D(G(z))).
        self.opt_d.zero_grad();
        let fake = self.generator.forward(z);
        let real_logits = d(real);
        let fake_logits = d(&fake.detach());
        let loss_d = bce(&real_logits, &ones).add(&bce(&fake_logits, &zeros));
        loss_d.backward();
        self.opt_d.step();

        // G step through a frozen D: its weight gradients are neither needed nor computed.
        self.opt_g.zero_grad();
        set_requires_grad(&self.discriminator, false);
        let fake_logits_after = d(&fake);
        let loss_g = match self.loss {
            GeneratorLoss::NonSaturating => bce(&fake_logits_after, &ones),
            // log(1 − σ(l)) = −bce(l, 0)
            GeneratorLoss::Minimax => bce(&fake_logits_after, &zeros).scale(-1.0),
        };
        loss_g.backward();
        set_requires_grad(&self.discriminator, true);
        self.opt_g.step();

        StepMetrics {
            loss_d: loss_d.item(),
            loss_g: loss_g.item(),
            d_real: mean_probability(&real_logits),
            d_fake_before: mean_probability(&fake_logits),
            d_fake_after: mean_probability(&fake_logits_after),
        }
    }
}
