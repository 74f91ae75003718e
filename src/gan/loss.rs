//! The game D and G play: what each minimises, on D's raw outputs (its logits), batch means.
//!
//! | `--loss`         | D minimises                              | G minimises            |
//! |------------------|------------------------------------------|------------------------|
//! | `non-saturating` | −log σ(D(x)) − log(1 − σ(D(G(z))))       | −log σ(D(G(z)))        |
//! | `minimax`        | the same                                 | log(1 − σ(D(G(z))))    |
//! | `least-squares`  | ½(D(x) − 1)² + ½ D(G(z))²                | ½(D(G(z)) − 1)²        |
//! | `hinge`          | max(0, 1 − D(x)) + max(0, 1 + D(G(z)))   | −D(G(z))               |
//!
//! The first two are Goodfellow et al. 2014's (DCGAN trains with the first); least squares is
//! Mao et al. 2017's LSGAN (a = 0, b = c = 1), hinge Lim & Ye 2017's, as SN-GAN and BigGAN
//! train. Every term is built from the engine's differentiable ops, so it runs on every device.

use crate::ops::binary_cross_entropy_with_logits as bce;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// −log D(G(z)) for G: strong gradients while D still rejects the fakes (the DCGAN default).
    NonSaturating,
    /// log(1 − D(G(z))) for G: the original minimax objective; saturates when D wins.
    Minimax,
    /// Squared distances to the targets (LSGAN): fakes far on the real side still pull.
    LeastSquares,
    /// D's margin loss, G raises D's score on its samples (SN-GAN, BigGAN).
    Hinge,
}

impl GanLoss {
    pub const ALL: [GanLoss; 4] =
        [GanLoss::NonSaturating, GanLoss::Minimax, GanLoss::LeastSquares, GanLoss::Hinge];

    pub fn name(self) -> &'static str {
        match self {
            GanLoss::NonSaturating => "non-saturating",
            GanLoss::Minimax => "minimax",
            GanLoss::LeastSquares => "least-squares",
            GanLoss::Hinge => "hinge",
        }
    }

    /// Whether D's output is read as the probability σ(logit) that its input is real (the
    /// cross-entropy games) rather than as a score.
    pub fn is_probabilistic(self) -> bool {
        matches!(self, GanLoss::NonSaturating | GanLoss::Minimax)
    }

    /// Whether D's loss on real images has a target that `--real-label` can move (the hinge
    /// has a margin instead).
    pub fn has_real_target(self) -> bool {
        self != GanLoss::Hinge
    }

    /// D's loss on its outputs for real images, whose target is `real_label` (1, or less for
    /// one-sided label smoothing; ignored by the hinge, see [`Self::has_real_target`]).
    pub fn d_real(self, out: &Tensor, real_label: f32) -> Tensor {
        match self {
            GanLoss::NonSaturating | GanLoss::Minimax => {
                bce(out, &Tensor::full(out.shape(), real_label, out.device()))
            }
            GanLoss::LeastSquares => half_square(&out.add_scalar(-real_label)),
            GanLoss::Hinge => out.scale(-1.0).add_scalar(1.0).relu().mean(),
        }
    }

    /// D's loss on its outputs for generated images (target 0, or −1 for the hinge's margin).
    pub fn d_fake(self, out: &Tensor) -> Tensor {
        match self {
            GanLoss::NonSaturating | GanLoss::Minimax => bce(out, &Tensor::zeros(out.shape(), out.device())),
            GanLoss::LeastSquares => half_square(out),
            GanLoss::Hinge => out.add_scalar(1.0).relu().mean(),
        }
    }

    /// D's whole loss with real target 1.
    pub fn d_loss(self, real_out: &Tensor, fake_out: &Tensor) -> Tensor {
        self.d_real(real_out, 1.0).add(&self.d_fake(fake_out))
    }

    /// G's loss on D's outputs for its samples.
    pub fn g_loss(self, fake_out: &Tensor) -> Tensor {
        match self {
            GanLoss::NonSaturating => bce(fake_out, &Tensor::ones(fake_out.shape(), fake_out.device())),
            // log(1 − σ(l)) = −bce(l, 0)
            GanLoss::Minimax => self.d_fake(fake_out).scale(-1.0),
            GanLoss::LeastSquares => half_square(&fake_out.add_scalar(-1.0)),
            GanLoss::Hinge => fake_out.mean().scale(-1.0),
        }
    }

    /// What D says about a batch, in the units its loss reads: the mean probability σ(logit)
    /// for the cross-entropy games, the mean raw score for the others (whose targets are 1 and
    /// 0 for least squares, beyond ±1 for the hinge).
    pub fn d_output(self, out: &Tensor) -> Tensor {
        crate::no_grad(|| if self.is_probabilistic() { out.sigmoid().mean() } else { out.mean() })
    }
}

/// ½ · mean(x²).
fn half_square(x: &Tensor) -> Tensor {
    x.mul(x).mean().scale(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Device;

    /// Each loss's value and its gradient with respect to every output, against the closed
    /// forms, at outputs on both sides of the hinge's kinks and of the LSGAN targets.
    #[test]
    fn each_loss_matches_its_formula_and_derivative() {
        let outs = [-2.5f32, -0.5, 0.25, 0.75, 1.5, 3.0];
        let n = outs.len() as f64;
        let sig = |l: f64| 1.0 / (1.0 + (-l).exp());
        type Term = fn(GanLoss, &Tensor) -> Tensor;
        // (term, per-sample value, per-sample derivative), for each loss.
        type Closed = (fn(f64) -> f64, fn(f64) -> f64);
        let cases: Vec<(GanLoss, &str, Term, Closed)> = vec![
            (
                GanLoss::LeastSquares,
                "d_real",
                |g, t| g.d_real(t, 0.9),
                (|l| 0.5 * (l - 0.9).powi(2), |l| l - 0.9),
            ),
            (GanLoss::LeastSquares, "d_fake", |g, t| g.d_fake(t), (|l| 0.5 * l * l, |l| l)),
            (GanLoss::LeastSquares, "g_loss", |g, t| g.g_loss(t), (|l| 0.5 * (l - 1.0).powi(2), |l| l - 1.0)),
            (
                GanLoss::Hinge,
                "d_real",
                |g, t| g.d_real(t, 1.0),
                (|l| (1.0 - l).max(0.0), |l| if l < 1.0 { -1.0 } else { 0.0 }),
            ),
            (
                GanLoss::Hinge,
                "d_fake",
                |g, t| g.d_fake(t),
                (|l| (1.0 + l).max(0.0), |l| if l > -1.0 { 1.0 } else { 0.0 }),
            ),
            (GanLoss::Hinge, "g_loss", |g, t| g.g_loss(t), (|l| -l, |_| -1.0)),
            (
                GanLoss::NonSaturating,
                "g_loss",
                |g, t| g.g_loss(t),
                (|l| -(1.0 / (1.0 + (-l).exp())).ln(), |l| 1.0 / (1.0 + (-l).exp()) - 1.0),
            ),
            (
                GanLoss::Minimax,
                "g_loss",
                |g, t| g.g_loss(t),
                (|l| (1.0 - 1.0 / (1.0 + (-l).exp())).ln(), |l| -1.0 / (1.0 + (-l).exp())),
            ),
            (
                GanLoss::Minimax,
                "d_real",
                |g, t| g.d_real(t, 1.0),
                (|l| -(1.0 / (1.0 + (-l).exp())).ln(), |l| 1.0 / (1.0 + (-l).exp()) - 1.0),
            ),
        ];
        for (loss, term, f, (value, derivative)) in cases {
            let x = Tensor::from_vec(outs.to_vec(), &[outs.len()], Device::Cpu);
            x.set_requires_grad(true);
            let l = f(loss, &x);
            let want: f64 = outs.iter().map(|&o| value(f64::from(o))).sum::<f64>() / n;
            assert!(
                (f64::from(l.item()) - want).abs() < 1e-5,
                "{} {term}: {} against {want}",
                loss.name(),
                l.item()
            );
            l.backward();
            for (o, g) in outs.iter().zip(x.grad().unwrap().to_vec()) {
                let want = derivative(f64::from(*o)) / n;
                assert!(
                    (f64::from(g) - want).abs() < 1e-6,
                    "{} {term}'({o}): {g} against {want}",
                    loss.name()
                );
            }
        }
        // The reported outputs: probabilities for the cross-entropy games, raw scores else.
        let x = Tensor::from_vec(outs.to_vec(), &[outs.len()], Device::Cpu);
        let mean_raw = outs.iter().map(|&o| f64::from(o)).sum::<f64>() / n;
        let mean_sig = outs.iter().map(|&o| sig(f64::from(o))).sum::<f64>() / n;
        for loss in GanLoss::ALL {
            let want = if loss.is_probabilistic() { mean_sig } else { mean_raw };
            assert!((f64::from(loss.d_output(&x).item()) - want).abs() < 1e-6, "{}", loss.name());
        }
    }

    /// The command-line names are the ones `config.json` keeps and the docs use.
    #[test]
    fn names_round_trip_through_the_flag_and_the_config() {
        use clap::ValueEnum;
        for loss in GanLoss::ALL {
            assert_eq!(GanLoss::from_str(loss.name(), false), Ok(loss));
            assert_eq!(serde_json::to_string(&loss).unwrap(), format!("\"{}\"", loss.name()));
        }
    }
}
