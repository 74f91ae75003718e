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

impl GeneratorLoss {
    pub fn name(self) -> &'static str {
        match self {
            GeneratorLoss::NonSaturating => "non-saturating",
            GeneratorLoss::Minimax => "minimax",
        }
    }

    /// The generator's loss on D's logits for generated samples (mean over the batch).
    pub fn loss(self, fake_logits: &Tensor) -> Tensor {
        let dev = fake_logits.device();
        match self {
            GeneratorLoss::NonSaturating => bce(fake_logits, &Tensor::ones(fake_logits.shape(), dev)),
            // log(1 − σ(l)) = −bce(l, 0)
            GeneratorLoss::Minimax => bce(fake_logits, &Tensor::zeros(fake_logits.shape(), dev)).scale(-1.0),
        }
    }
}

impl std::str::FromStr for GeneratorLoss {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "non-saturating" => Ok(GeneratorLoss::NonSaturating),
            "minimax" => Ok(GeneratorLoss::Minimax),
            _ => anyhow::bail!("unknown generator loss {s:?}; expected non-saturating or minimax"),
        }
    }
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
    /// L2 norm of all of D's gradients in its (last) update.
    pub grad_norm_d: f32,
    /// L2 norm of all of G's gradients.
    pub grad_norm_g: f32,
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

/// √(Σ‖grad‖²) over a model's parameters.
fn grad_norm(model: &Sequential) -> f32 {
    crate::no_grad(|| {
        let sq: f64 =
            model.parameters().iter().filter_map(|p| p.grad()).map(|g| g.mul(&g).sum().item() as f64).sum();
        sq.sqrt() as f32
    })
}

fn set_requires_grad(model: &Sequential, on: bool) {
    for p in model.parameters() {
        p.set_requires_grad(on);
    }
}

impl Gan {
    /// One D update on `real` and G(z), then one G update with the same z.
    pub fn step(&mut self, real: &Tensor, z: &Tensor) -> StepMetrics {
        self.step_k(std::slice::from_ref(real), std::slice::from_ref(z))
    }

    /// Goodfellow et al.'s Algorithm 1 with k = reals.len() discriminator updates, each on
    /// its own real batch and noise, then one generator update reusing the last noise (G has
    /// not changed since, so its fakes are reused rather than recomputed).
    pub fn step_k(&mut self, reals: &[Tensor], zs: &[Tensor]) -> StepMetrics {
        assert!(
            !reals.is_empty() && reals.len() == zs.len(),
            "Gan::step_k: {} real batches, {} noise batches",
            reals.len(),
            zs.len()
        );
        let n = reals[0].shape()[0];
        let dev = reals[0].device();
        let ones = Tensor::ones(&[n], dev);
        let zeros = Tensor::zeros(&[n], dev);
        let mut m = StepMetrics::default();

        // D steps: maximise log D(x) + log(1 − D(G(z))).
        let mut fake = None;
        for (real, z) in reals.iter().zip(zs) {
            self.opt_d.zero_grad();
            // Real and fake terms are backpropagated one after the other (as pytorch/examples
            // does): the gradients sum the same, and the real batch's graph is freed before
            // the fake batch's is built, which halves D's share of the peak memory.
            let (real_logits, loss_real) = {
                let real_logits = self.discriminator.forward(real).reshape(&[n]);
                let loss_real = bce(&real_logits, &ones);
                loss_real.backward();
                (real_logits.detach(), loss_real.detach())
            };
            let f = self.generator.forward(z);
            let (fake_logits, loss_fake) = {
                let fake_logits = self.discriminator.forward(&f.detach()).reshape(&[n]);
                let loss_fake = bce(&fake_logits, &zeros);
                loss_fake.backward();
                (fake_logits.detach(), loss_fake.detach())
            };
            let loss_d = loss_real.add(&loss_fake);
            m.grad_norm_d = grad_norm(&self.discriminator);
            self.opt_d.step();
            // Gradients live only from backward to update: every step then starts with the
            // same memory free as the last (no allocation after warm-up), and the peak is lower.
            self.opt_d.zero_grad();
            m.loss_d = loss_d.item();
            m.d_real = mean_probability(&real_logits);
            m.d_fake_before = mean_probability(&fake_logits);
            fake = Some(f);
        }
        let fake = fake.expect("at least one D step");

        // G step through a frozen D: its weight gradients are neither needed nor computed.
        self.opt_g.zero_grad();
        set_requires_grad(&self.discriminator, false);
        let fake_logits_after = self.discriminator.forward(&fake).reshape(&[n]);
        let loss_g = self.loss.loss(&fake_logits_after);
        loss_g.backward();
        set_requires_grad(&self.discriminator, true);
        m.grad_norm_g = grad_norm(&self.generator);
        self.opt_g.step();
        self.opt_g.zero_grad();
        m.loss_g = loss_g.item();
        m.d_fake_after = mean_probability(&fake_logits_after);
        // Buffers no op of this step asked for (a sample grid's, say) go back to the OS.
        crate::backend::cpu::pool::trim();
        m
    }
}
