//! One DCGAN training step (Goodfellow et al.'s Algorithm 1 with the DCGAN settings):
//! D on real + detached fake, then G through a frozen D.

use super::augment::DiffAugment;
use super::loss::GanLoss;
use super::models::{DcganConfig, conditional_logits, discriminator, generator};
use crate::backend::Device;
use crate::nn::{Module, Sequential};
use crate::optim::{Adam, Optimizer};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Every number of the minimax game for one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepMetrics {
    pub loss_d: f32,
    pub loss_g: f32,
    /// Mean D(x) on the real batch: a probability under the cross-entropy losses, D's raw
    /// score under least squares and the hinge ([`GanLoss::d_output`]).
    pub d_real: f32,
    /// Mean D(G(z)) before the D update, in the same units.
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
    pub loss: GanLoss,
    /// A running average of G, updated after every G step, when the run keeps one.
    pub ema: Option<GeneratorEma>,
    /// D's target for real images: 1, or less for one-sided label smoothing (Salimans et al.
    /// 2016, "Improved Techniques for Training GANs"), which stops D from pushing its logits
    /// on real images ever higher. Fakes stay at 0 and G's targets at 1. The hinge loss has
    /// no target and ignores it.
    pub real_label: f32,
    /// Gaussian noise on every image D sees, when the run adds it.
    pub instance_noise: Option<InstanceNoise>,
    /// DiffAugment on every image D sees, when the run augments.
    pub diff_augment: Option<DiffAugment>,
}

/// The seed of batch `which` of step `t` of a run seeded `seed`, for draws that must not
/// depend on any running state (a resumed run makes the same ones): distinct odd multipliers
/// keep the three inputs from cancelling, `salt` separates the users of one batch.
pub(super) fn batch_seed(seed: u64, t: u64, which: u64, salt: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ t.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ which.wrapping_mul(0xAEF1_7502_108E_F2D9)
        ^ salt
}

/// The classes of one D update's batches in a conditional GAN, as one-hot rows [n, classes]:
/// the real images' labels, and the classes G was asked for (appended to its noise by
/// [`super::models::generator_input`]).
pub struct ClassLabels {
    pub real: Tensor,
    pub fake: Tensor,
}

/// Instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017): every image D sees, real or
/// generated, in D's steps and in G's, gets independent N(0, σₜ²) noise per pixel, σₜ falling
/// linearly from `sigma` at G's update t = 0 to 0 at t = `anneal_steps`. Blurring both
/// distributions makes them overlap, so D cannot separate them perfectly early on and G's
/// gradient stays informative. The noise of step t is drawn from a generator seeded by (seed,
/// t, which batch), not from a running stream: a resumed run draws the same without storing
/// any state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNoise {
    pub sigma: f32,
    pub anneal_steps: u64,
    pub seed: u64,
}

impl InstanceNoise {
    /// The noise's standard deviation before G's update `t` (from 0).
    pub fn sigma_at(&self, t: u64) -> f32 {
        self.sigma * (1.0 - t as f32 / self.anneal_steps.max(1) as f32).max(0.0)
    }

    /// The noise for batch `which` of step `t`, `None` once annealed away. Which batch: 2k for
    /// the real images of the k-th D update, 2k + 1 for its fakes, [`Self::G_BATCH`] for G's.
    pub fn sample(&self, shape: &[usize], t: u64, which: u64, dev: Device) -> Option<Tensor> {
        let sigma = self.sigma_at(t);
        let key = batch_seed(self.seed, t, which, 0x1457_A9CE);
        (sigma > 0.0).then(|| {
            // A batch of images is millions of draws: filled in parallel, seeded chunk by chunk.
            let mut data = vec![0.0; shape.iter().product()];
            Rng::par_fill_normal(key, &mut data, 0.0, sigma);
            Tensor::from_vec(data, shape, dev)
        })
    }

    /// `which` for the batch G's step shows D.
    pub const G_BATCH: u64 = u64::MAX;

    /// x plus its noise (x itself once annealed away); the gradient passes through unchanged.
    fn add(&self, x: &Tensor, t: u64, which: u64) -> Tensor {
        match self.sample(x.shape(), t, which, x.device()) {
            Some(noise) => x.add(&noise),
            None => x.clone(),
        }
    }
}

/// An exponential moving average of the generator (Yazıcı et al. 2019, "The Unusual
/// Effectiveness of Averaging in GAN Training"): after every G step each tensor of G's state,
/// BatchNorm's running statistics included (as timm's ModelEmaV2 does), moves to
/// d · average + (1 − d) · G, with d ramping up to `decay` ([`GeneratorEma::decay_at`]). The
/// average only samples (eval mode); it never trains.
pub struct GeneratorEma {
    pub decay: f32,
    pub generator: Sequential,
    /// (G's tensor, the average's) for every tensor of the state, paired by name once.
    pairs: Vec<(Tensor, Tensor)>,
}

impl GeneratorEma {
    /// Starts the average at `g`'s current state, in `average`, a network of `g`'s
    /// architecture (its own values are overwritten). The average follows `g`'s tensors from
    /// then on (loading a checkpoint into `g` fills them in place).
    pub fn new(decay: f32, g: &Sequential, mut average: Sequential) -> Self {
        average.set_training(false);
        let (theirs, ours) = (g.named_tensors(), average.named_tensors());
        assert_eq!(theirs.len(), ours.len(), "GeneratorEma: the average and G differ in architecture");
        let pairs = theirs
            .into_iter()
            .zip(ours)
            .map(|((name, t), (avg_name, avg))| {
                assert_eq!(name, avg_name, "GeneratorEma: the average and G differ in architecture");
                (t, avg)
            })
            .collect();
        let ema = GeneratorEma { decay, generator: average, pairs };
        ema.blend(g, 1.0);
        ema
    }

    /// average ← (1 − w) · average + w · g, and g's BatchNorm counters.
    fn blend(&self, g: &Sequential, w: f32) {
        for (t, avg) in &self.pairs {
            t.backend().axpby(w, &t.storage(), 1.0 - w, &mut avg.storage_mut());
        }
        for (name, v) in g.counters() {
            self.generator.set_counter(&name, v);
        }
    }

    /// The decay after G's `t`-th update (from 1): it ramps up as (1 + t) / (10 + t) until it
    /// reaches `decay`, as TensorFlow's ExponentialMovingAverage does given its update count,
    /// so the random initial G leaves the average within a few hundred steps rather than over
    /// 1 / (1 − decay) of them (at 0.999, a fifth of the average would still be the random
    /// initial G after 1500 steps).
    pub fn decay_at(&self, t: u64) -> f32 {
        self.decay.min((1.0 + t as f32) / (10.0 + t as f32))
    }

    /// One step of the average after G's `t`-th update.
    pub fn update(&self, g: &Sequential, t: u64) {
        self.blend(g, 1.0 - self.decay_at(t));
    }
}

/// A model's trainable tensors under their state names ("0.weight", "3.bias", ...), in order.
fn named_parameters(model: &Sequential) -> Vec<(String, Tensor)> {
    let ids: Vec<u64> = model.parameters().iter().map(Tensor::id).collect();
    model.named_tensors().into_iter().filter(|(_, t)| ids.contains(&t.id())).collect()
}

/// ‖grad‖² of each of a model's parameters (None where it has no gradient) and their sum, all
/// left on the device.
fn grad_sq_norms(model: &Sequential) -> (Vec<Option<Tensor>>, Tensor) {
    crate::no_grad(|| {
        let each: Vec<Option<Tensor>> =
            model.parameters().into_iter().map(|p| p.grad().map(|g| g.mul(&g).sum())).collect();
        let total =
            each.iter().flatten().cloned().reduce(|a, b| a.add(&b)).expect("a step's model has gradients");
        (each, total)
    })
}

fn set_requires_grad(model: &Sequential, on: bool) {
    for p in model.parameters() {
        p.set_requires_grad(on);
    }
}

impl Gan {
    /// The DCGAN paper's setup for `cfg`: G and then D initialised from `rng`, Adam at 2e-4
    /// with β = (0.5, 0.999) for both, the non-saturating loss, hard labels, no average of G.
    /// (`dcgan train` builds its own from the run's settings.)
    pub fn dcgan(cfg: &DcganConfig, rng: &mut Rng, dev: Device) -> Gan {
        let generator = generator(cfg, rng, dev);
        let discriminator = discriminator(cfg, rng, dev);
        let opt_g = Adam::new(generator.parameters(), 2e-4, (0.5, 0.999));
        let opt_d = Adam::new(discriminator.parameters(), 2e-4, (0.5, 0.999));
        Gan {
            generator,
            discriminator,
            opt_g,
            opt_d,
            loss: GanLoss::NonSaturating,
            ema: None,
            real_label: 1.0,
            instance_noise: None,
            diff_augment: None,
        }
    }

    /// One D update on `real` and G(z), then one G update with the same z.
    pub fn step(&mut self, real: &Tensor, z: &Tensor) -> StepMetrics {
        self.step_k(std::slice::from_ref(real), std::slice::from_ref(z))
    }

    /// Goodfellow et al.'s Algorithm 1 with k = reals.len() discriminator updates, each on
    /// its own real batch and noise, then one generator update reusing the last noise (G has
    /// not changed since, so its fakes are reused rather than recomputed).
    pub fn step_k(&mut self, reals: &[Tensor], zs: &[Tensor]) -> StepMetrics {
        self.step_with(reals, zs, &[], false).0
    }

    /// `step_k`, and the gradient norm of every parameter, D's from its last update then
    /// G's, in [`Gan::parameter_shapes`] order (0 for a parameter without a gradient): which layers
    /// learn and which starve. One device read per parameter more than `step_k`.
    pub fn step_k_with_layers(&mut self, reals: &[Tensor], zs: &[Tensor]) -> (StepMetrics, Vec<f32>) {
        self.step_with(reals, zs, &[], true)
    }

    /// Whether D is a projection discriminator, whose logits need the images' classes.
    pub fn is_conditional(&self) -> bool {
        self.discriminator.layers.last().is_some_and(|l| l.kind() == "ClassProjection")
    }

    /// D's logits [n] for `images` (of the classes `one_hot` for a conditional D).
    fn d_logits(&self, images: &Tensor, one_hot: Option<&Tensor>) -> Tensor {
        match one_hot {
            Some(y) => conditional_logits(&self.discriminator, images, y),
            None => self.discriminator.forward(images).reshape(&[images.shape()[0]]),
        }
    }

    /// `("D.<name>", shape)` for each of D's parameters, then `("G.<name>", shape)` for G's.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let named = |prefix: &str, model: &Sequential| {
            named_parameters(model)
                .into_iter()
                .map(|(n, t)| (format!("{prefix}.{n}"), t.shape().to_vec()))
                .collect::<Vec<_>>()
        };
        [named("D", &self.discriminator), named("G", &self.generator)].concat()
    }

    /// The step in full: `step_k` with the classes of a conditional GAN (D ends in a class
    /// projection): `labels[i]` for `reals[i]` and for the fakes G makes from `zs[i]`, none
    /// for an unconditional GAN; with `layers`, the gradient norms of
    /// [`Gan::step_k_with_layers`] too (else an empty list).
    pub fn step_with(
        &mut self,
        reals: &[Tensor],
        zs: &[Tensor],
        labels: &[ClassLabels],
        layers: bool,
    ) -> (StepMetrics, Vec<f32>) {
        assert!(
            !reals.is_empty() && reals.len() == zs.len(),
            "Gan::step_with: {} real batches, {} noise batches",
            reals.len(),
            zs.len()
        );
        assert_eq!(
            if self.is_conditional() { reals.len() } else { 0 },
            labels.len(),
            "Gan::step_with: a conditional D needs labels for each D update, an unconditional one none"
        );
        let real_y = |k: usize| labels.get(k).map(|l| &l.real);
        let fake_y = |k: usize| labels.get(k).map(|l| &l.fake);
        // G's updates so far (Adam counts them, and a checkpoint keeps the count).
        let t = self.opt_g.steps.first().copied().unwrap_or(0);
        let (augment, noise) = (self.diff_augment, self.instance_noise);
        // Every image D sees: augmented, then blurred by noise, when the run does either.
        let seen_by_d = |x: &Tensor, which: u64| {
            let x = match augment {
                Some(augment) => augment.apply(x, t, which),
                None => x.clone(),
            };
            match noise {
                Some(noise) => noise.add(&x, t, which),
                None => x,
            }
        };
        // Every number the step reports stays on the device until the end, where all are
        // read at once: a read in the middle would make the host wait for the device there
        // (on a GPU, a synchronisation per read) before it could queue the rest of the step.
        let mut d_numbers = None;
        let mut d_layers = Vec::new();

        // D steps: for the cross-entropy losses, maximise log D(x) + log(1 − D(G(z))).
        let mut fake = None;
        for (k, (real, z)) in (0u64..).zip(reals.iter().zip(zs)) {
            self.opt_d.zero_grad();
            // Real and fake terms are backpropagated one after the other (as pytorch/examples
            // does): the gradients sum the same, and the real batch's graph is freed before
            // the fake batch's is built, which halves D's share of the peak memory.
            let (real_logits, loss_real) = {
                let real_logits = self.d_logits(&seen_by_d(real, 2 * k), real_y(k as usize));
                let loss_real = self.loss.d_real(&real_logits, self.real_label);
                loss_real.backward();
                (real_logits.detach(), loss_real.detach())
            };
            let f = self.generator.forward(z);
            let (fake_logits, loss_fake) = {
                let fake_logits = self.d_logits(&seen_by_d(&f.detach(), 2 * k + 1), fake_y(k as usize));
                let loss_fake = self.loss.d_fake(&fake_logits);
                loss_fake.backward();
                (fake_logits.detach(), loss_fake.detach())
            };
            let loss_d = loss_real.add(&loss_fake);
            let (each_d, grad_sq_d) = grad_sq_norms(&self.discriminator);
            if layers {
                d_layers = each_d;
            }
            self.opt_d.step();
            // Gradients live only from backward to update: every step then starts with the
            // same memory free as the last (no allocation after warm-up), and the peak is lower.
            self.opt_d.zero_grad();
            d_numbers =
                Some([loss_d, grad_sq_d, self.loss.d_output(&real_logits), self.loss.d_output(&fake_logits)]);
            fake = Some(f);
        }
        let fake = fake.expect("at least one D step");

        // G step through a frozen D: its weight gradients are neither needed nor computed.
        self.opt_g.zero_grad();
        set_requires_grad(&self.discriminator, false);
        let fake_logits_after =
            self.d_logits(&seen_by_d(&fake, InstanceNoise::G_BATCH), fake_y(reals.len() - 1));
        let loss_g = self.loss.g_loss(&fake_logits_after);
        loss_g.backward();
        set_requires_grad(&self.discriminator, true);
        let (each_g, grad_sq_g) = grad_sq_norms(&self.generator);
        self.opt_g.step();
        self.opt_g.zero_grad();
        if let Some(ema) = &self.ema {
            // G's update count lives in Adam's state, so a resumed run continues the ramp.
            ema.update(&self.generator, self.opt_g.steps.first().copied().unwrap_or(1));
        }
        let d_fake_after = self.loss.d_output(&fake_logits_after);
        let [loss_d, grad_sq_d, d_real, d_fake_before] = d_numbers.expect("at least one D step");
        let m = StepMetrics {
            loss_d: loss_d.item(),
            loss_g: loss_g.item(),
            d_real: d_real.item(),
            d_fake_before: d_fake_before.item(),
            d_fake_after: d_fake_after.item(),
            grad_norm_d: grad_sq_d.item().sqrt(),
            grad_norm_g: grad_sq_g.item().sqrt(),
        };
        let layer_norms = if layers {
            d_layers.iter().chain(&each_g).map(|sq| sq.as_ref().map_or(0.0, |t| t.item().sqrt())).collect()
        } else {
            Vec::new()
        };
        // Buffers no op of this step asked for (a sample grid's, say) go back to the OS.
        crate::backend::cpu::pool::trim();
        (m, layer_norms)
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceNoise;
    use crate::backend::Device;

    /// σ falls linearly to 0 at `anneal_steps` and stays there; each (step, batch) draws its
    /// own noise, the same every time it is asked for, with the standard deviation of its step.
    #[test]
    fn instance_noise_anneals_and_each_batch_draws_its_own() {
        let noise = InstanceNoise { sigma: 0.4, anneal_steps: 100, seed: 5 };
        assert_eq!(noise.sigma_at(0), 0.4);
        assert!((noise.sigma_at(25) - 0.3).abs() < 1e-6);
        assert_eq!(noise.sigma_at(100), 0.0);
        assert_eq!(noise.sigma_at(1000), 0.0);
        assert!(noise.sample(&[4], 100, 0, Device::Cpu).is_none());
        let draw = |t: u64, which: u64| noise.sample(&[64, 64], t, which, Device::Cpu).unwrap().to_vec();
        for (t, sigma) in [(0, 0.4), (50, 0.2)] {
            let v = draw(t, 0);
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
            let std = (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            assert!(
                mean.abs() < 0.02 && (std - sigma).abs() < 0.02 * sigma / 0.2,
                "t {t}: mean {mean}, std {std}"
            );
        }
        assert_eq!(draw(3, 1), draw(3, 1));
        assert_ne!(draw(3, 1), draw(3, 0));
        assert_ne!(draw(3, 1), draw(4, 1));
        assert_ne!(draw(3, 1), draw(3, InstanceNoise::G_BATCH));
        let other_seed = InstanceNoise { seed: 6, ..noise };
        assert_ne!(other_seed.sample(&[64], 3, 1, Device::Cpu).unwrap().to_vec(), draw(3, 1)[..64].to_vec());
    }
}
