//! The Dirac-GAN of Mescheder, Geiger & Nowozin (2018), "Which Training Methods for GANs do
//! actually Converge?": the smallest GAN that does not converge. The data is a point mass at
//! 0, the generator a point mass at θ, the discriminator D(x) = ψ·x. The one equilibrium is
//! (θ, ψ) = (0, 0), where the gradient field's Jacobian has eigenvalues ±i·f′(0) = ±i/2: a pure
//! rotation, for both generator losses.
//!
//! * With the minimax loss the flow conserves θ² + ψ²: simultaneous gradient descent spirals
//!   out, alternating gradient descent circles at its starting distance for ever.
//! * With the non-saturating loss the flow loses (ψθ)·tanh(ψθ/2) of it, a third-order pull:
//!   the distance creeps in like 1/√t, no exponential convergence.
//! * An R1 penalty (γ/2)·‖∇ₓD(x)‖² on the real data, here (γ/2)·ψ², damps the rotation
//!   (eigenvalues −γ/2 ± √(γ²/4 − 1/4)) and either loss converges exponentially.
//! * So does instance noise N(0, σ²) on every point D sees (`train --instance-noise`): it
//!   turns the eigenvalues into f″(0)σ² ± √(f″(0)²σ⁴ − f′(0)²) = −σ²/4 ± √(σ⁴/16 − 1/4),
//!   a damped rotation again (the paper's Lemma 3.3).
//!
//! Every gradient comes from the engine's autograd through its BCE loss.

use anyhow::Result;
use serde_json::json;

use super::{DEV, GanLoss, LabOptions, all_finite, diverged, write_csv};
use crate::io::{PALETTE, PlotOptions, ScatterGroup, plot_series, scatter_plot};
use crate::optim::{Optimizer, Sgd};
use crate::{Tensor, linear};

/// Iterations and learning rate when --steps and --lr are not given.
pub(crate) const STEPS: usize = 1000;
pub(crate) const LR: f32 = 0.1;

/// Where every run starts, as in the paper's figures.
const START: (f64, f64) = (1.0, 1.0);
/// The R1 weight: with γ < 1 the damped run still turns as it closes in, so the plot shows
/// the spiral.
pub(crate) const GAMMA: f32 = 0.3;
/// The instance noise's σ: damping −σ²/4 ≈ −0.12, so the run closes in about as fast as R1's
/// (−γ/2 = −0.15) and the plot shows the same kind of spiral.
pub(crate) const SIGMA: f32 = 0.7;
/// Noise draws per batch. The expectation over the noise is taken over one fixed set of
/// antithetic draws (±ε) with a second moment of exactly σ², the same every step, so the run
/// stays deterministic and follows the expected gradient near the equilibrium, not a random
/// walk.
const NOISE_DRAWS: usize = 64;

/// How the two players take their steps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Schedule {
    /// Both gradients at the same point, then both steps.
    Simultaneous,
    /// `d_steps` D steps, then a G step against the updated D.
    Alternating,
    /// Alternating, with the R1 penalty in D's loss.
    AlternatingR1,
    /// Alternating, with instance noise on every point D sees.
    AlternatingNoise,
}

impl Schedule {
    fn name(self) -> &'static str {
        match self {
            Schedule::Simultaneous => "simultaneous",
            Schedule::Alternating => "alternating",
            Schedule::AlternatingR1 => "alternating + R1",
            Schedule::AlternatingNoise => "alternating + instance noise",
        }
    }

    /// The name in CSV columns.
    fn tag(self) -> &'static str {
        match self {
            Schedule::AlternatingR1 => "alternating_r1",
            Schedule::AlternatingNoise => "alternating_noise",
            s => s.name(),
        }
    }
}

/// (θ, ψ) after every generator step, the start first.
fn train(loss: GanLoss, schedule: Schedule, d_steps: usize, steps: usize, lr: f32) -> Vec<(f64, f64)> {
    let theta = Tensor::from_vec(vec![START.0 as f32], &[1, 1], DEV);
    let psi = Tensor::from_vec(vec![START.1 as f32], &[1, 1], DEV);
    theta.set_requires_grad(true);
    psi.set_requires_grad(true);
    let mut opt_g = Sgd::new(vec![theta.clone()], lr, 0.0);
    let mut opt_d = Sgd::new(vec![psi.clone()], lr, 0.0);
    let disc = |x: &Tensor| linear(x, &psi, None);
    // The real point 0 and G's point θ, each as D sees it: itself, or a column of noisy copies.
    let noise = (schedule == Schedule::AlternatingNoise).then(|| {
        let mut rng = crate::Rng::new(0);
        let half: Vec<f64> = (0..NOISE_DRAWS / 2).map(|_| rng.normal()).collect();
        // Scaled to a second moment of exactly σ², the one moment the damping depends on.
        let scale = f64::from(SIGMA) / (half.iter().map(|e| e * e).sum::<f64>() / half.len() as f64).sqrt();
        let draws: Vec<f32> = half.iter().flat_map(|&e| [(scale * e) as f32, -(scale * e) as f32]).collect();
        (Tensor::from_vec(draws, &[NOISE_DRAWS, 1], DEV), Tensor::ones(&[NOISE_DRAWS, 1], DEV))
    });
    let real = noise.as_ref().map_or_else(|| Tensor::zeros(&[1, 1], DEV), |(eps, _)| eps.clone());
    let seen = |point: &Tensor| match &noise {
        // θ·1 + ε, with the gradient reaching θ through the product.
        Some((eps, ones)) => linear(ones, point, None).add(eps),
        None => point.clone(),
    };
    let d_objective = || {
        let l = loss.d_loss(&disc(&real), &disc(&seen(&theta.detach())));
        match schedule {
            // ∇ₓD(x) = ψ wherever x is, the real point included.
            Schedule::AlternatingR1 => l.add(&psi.mul(&psi).sum().scale(GAMMA / 2.0)),
            _ => l,
        }
    };
    let g_objective = || loss.g_loss(&disc(&seen(&theta)));
    let point = || (f64::from(theta.item()), f64::from(psi.item()));
    let mut path = vec![point()];
    for _ in 0..steps {
        if schedule == Schedule::Simultaneous {
            // G's backward also reaches ψ; D's gradient is taken after clearing it.
            opt_g.zero_grad();
            g_objective().backward();
            opt_d.zero_grad();
            d_objective().backward();
            opt_d.step();
            opt_g.step();
        } else {
            for _ in 0..d_steps {
                opt_d.zero_grad();
                d_objective().backward();
                opt_d.step();
            }
            opt_g.zero_grad();
            g_objective().backward();
            opt_g.step();
        }
        path.push(point());
    }
    path
}

/// One loss's runs, one a schedule: the paths, and their distances from the equilibrium.
struct LossRuns {
    loss: GanLoss,
    paths: Vec<Vec<(f64, f64)>>,
    distances: Vec<Vec<f64>>,
}

const SCHEDULES: [Schedule; 4] =
    [Schedule::Simultaneous, Schedule::Alternating, Schedule::AlternatingR1, Schedule::AlternatingNoise];

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    let steps = opts.steps.unwrap_or(STEPS);
    let lr = opts.lr.unwrap_or(LR);
    let runs: Vec<LossRuns> = [GanLoss::Minimax, GanLoss::NonSaturating]
        .into_iter()
        .map(|loss| {
            let paths: Vec<_> =
                SCHEDULES.iter().map(|&s| train(loss, s, opts.d_steps(), steps, lr)).collect();
            let distances = paths.iter().map(|p| p.iter().map(|(t, s)| t.hypot(*s)).collect()).collect();
            LossRuns { loss, paths, distances }
        })
        .collect();
    for r in &runs {
        for (schedule, path) in SCHEDULES.iter().zip(&r.paths) {
            if let Some(step) = path.iter().position(|&(t, s)| !all_finite([t, s])) {
                let what = format!(
                    "(θ, ψ) of the {} loss's {} run is not finite at step {step} of {steps}",
                    r.loss.name(),
                    schedule.name()
                );
                return Err(diverged("dirac", &what, lr, opts));
            }
        }
    }

    // Each loss's paths in the (θ, ψ) plane, at most 1500 dots a run.
    let every = steps.div_ceil(1500).max(1);
    for (r, file) in runs.iter().zip(["dirac_paths_minimax.png", "dirac_paths_non_saturating.png"]) {
        let dots: Vec<Vec<(f64, f64)>> =
            r.paths.iter().map(|p| p.iter().copied().step_by(every).collect()).collect();
        let groups: Vec<ScatterGroup> = SCHEDULES
            .iter()
            .zip(&dots)
            .enumerate()
            .map(|(k, (s, d))| (s.name(), &d[..], PALETTE[k]))
            .collect();
        scatter_plot(
            &opts.out.join(file),
            &PlotOptions::new(
                &format!("Dirac-GAN, {} loss: from (θ, ψ) = (1, 1), lr {lr}, {steps} steps", r.loss.name()),
                "θ (the generator's point)",
                "ψ (the discriminator's slope)",
            )
            .size(760, 700),
            &groups,
        )?;
    }
    // log10 of the distance: exponential convergence is a straight line down, 1/√t a flattening
    // curve, circling a flat one.
    let iters: Vec<f64> = (0..=steps).map(|k| k as f64).collect();
    let logs: Vec<(String, Vec<f64>)> = runs
        .iter()
        .flat_map(|r| {
            SCHEDULES.iter().zip(&r.distances).map(|(s, d)| {
                (format!("{}, {}", r.loss.name(), s.name()), d.iter().map(|v| v.max(1e-30).log10()).collect())
            })
        })
        .collect();
    let series: Vec<(&str, &[f64])> = logs.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
    plot_series(
        &opts.out.join("dirac_distance.png"),
        &PlotOptions::new("distance from the equilibrium (0, 0)", "generator step", "log10 ‖(θ, ψ)‖"),
        &iters,
        &series,
    )?;
    let mut header = vec!["step".to_string()];
    for r in &runs {
        for s in SCHEDULES {
            let tag = format!("{}_{}", r.loss.name().replace('-', "_"), s.tag());
            header.extend([format!("theta_{tag}"), format!("psi_{tag}")]);
        }
    }
    let rows: Vec<Vec<f64>> = (0..=steps)
        .map(|k| {
            std::iter::once(k as f64)
                .chain(runs.iter().flat_map(|r| r.paths.iter().flat_map(move |p| [p[k].0, p[k].1])))
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_csv(&opts.out.join("dirac.csv"), &header, &rows)?;

    // The last quarter of a run: the least and the most distance.
    let tail = |d: &[f64]| {
        let t = &d[d.len() - d.len() / 4 - 1..];
        (t.iter().copied().fold(f64::INFINITY, f64::min), t.iter().copied().fold(0.0, f64::max))
    };
    let start = START.0.hypot(START.1);
    let json_runs: Vec<serde_json::Value> = runs
        .iter()
        .flat_map(|r| {
            SCHEDULES.iter().zip(&r.distances).map(|(s, d)| {
                let (lo, hi) = tail(d);
                json!({"loss": r.loss.name(), "schedule": s.name(), "final_distance": d[steps],
                       "last_quarter_min": lo, "last_quarter_max": hi})
            })
        })
        .collect();
    let (mm, ns) = (&runs[0].distances, &runs[1].distances);
    let ((mm_lo, mm_hi), (ns_lo, ns_hi)) = (tail(&mm[1]), tail(&ns[1]));
    let headline = format!(
        "dirac: from distance {start:.3}, {steps} steps at lr {lr}; minimax: simultaneous {:.3}, alternating \
         circles at {mm_lo:.3}–{mm_hi:.3}; non-saturating: simultaneous {:.3}, alternating {ns_lo:.3}–{ns_hi:.3}; \
         with R1 (γ = {GAMMA}) {:.1e} and {:.1e}, with instance noise (σ = {SIGMA}) {:.1e} and {:.1e}",
        mm[0][steps], ns[0][steps], mm[2][steps], ns[2][steps], mm[3][steps], ns[3][steps],
    );
    let json = json!({
        "start": [START.0, START.1], "steps": steps, "lr": lr, "d_steps": opts.d_steps(),
        "gamma": GAMMA, "sigma": SIGMA, "runs": json_runs,
    });
    Ok((headline, json))
}
