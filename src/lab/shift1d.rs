//! The textbook 1-D GAN: real x ~ N(μ, 1), generator x* = z + θ with z ~ N(0, 1) and θ
//! starting 3 to the left of μ, discriminator D(x) = sig(φ₀ + φ₁x). Plain SGD for both.

use anyhow::Result;
use serde_json::json;

use super::{GanLoss, LabOptions, all_finite, column, diverged, sigmoid64, write_csv};
use crate::io::{PlotOptions, plot_series};
use crate::optim::{Optimizer, Sgd};
use crate::{Rng, Tensor, linear};

/// Iterations and learning rate when --steps and --lr are not given.
pub(crate) const STEPS: usize = 1500;
pub(crate) const LR: f32 = 0.1;

pub(crate) const MU: f64 = 4.0;
const BATCH: usize = 256;

/// The state of the toy after a run.
pub(crate) struct Toy {
    /// θ after every generator step (θ₀ first).
    pub thetas: Vec<f64>,
    /// (φ₀, φ₁) after every generator step.
    pub phis: Vec<(f64, f64)>,
    /// The first step after which θ stays within `tol` of μ, if any.
    pub converged_at: Option<usize>,
    /// The generator step after which θ or φ stopped being finite (0: in D's pretraining);
    /// training ends there.
    pub diverged_at: Option<usize>,
}

/// Train the toy: `steps` generator steps, `d_steps` D steps before each. `pretrain_d` D
/// steps first (the saturation experiment starts from a winning D). `snapshot` is called
/// with (step, θ, φ₀, φ₁) at the steps listed in `snap_at`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train(
    rng: &mut Rng,
    theta0: f64,
    loss: GanLoss,
    steps: usize,
    d_steps: usize,
    lr: f32,
    pretrain_d: usize,
    tol: f64,
    snap_at: &[usize],
    mut snapshot: impl FnMut(usize, f64, f64, f64),
) -> Toy {
    let dev = crate::Device::Cpu;
    let phi1 = Tensor::from_vec(vec![0.0], &[1, 1], dev);
    let phi0 = Tensor::from_vec(vec![0.0], &[1], dev);
    let theta = Tensor::from_vec(vec![theta0 as f32], &[1], dev);
    for t in [&phi1, &phi0, &theta] {
        t.set_requires_grad(true);
    }
    let one = Tensor::ones(&[1, 1], dev);
    let mut opt_d = Sgd::new(vec![phi1.clone(), phi0.clone()], lr, 0.0);
    let mut opt_g = Sgd::new(vec![theta.clone()], lr, 0.0);
    let disc = |x: &Tensor| linear(x, &phi1, Some(&phi0));
    let gen_ = |z: &Tensor| linear(z, &one, Some(&theta));
    let sample = |rng: &mut Rng, mean: f64| -> Tensor {
        let xs: Vec<f64> = (0..BATCH).map(|_| mean + rng.normal()).collect();
        column(&xs)
    };
    let d_step = |rng: &mut Rng, opt_d: &mut Sgd| {
        let x = sample(rng, MU);
        let fake = gen_(&sample(rng, 0.0)).detach();
        opt_d.zero_grad();
        loss.d_loss(&disc(&x), &disc(&fake)).backward();
        opt_d.step();
    };
    for _ in 0..pretrain_d {
        d_step(rng, &mut opt_d);
    }
    let read = |t: &Tensor| f64::from(t.item());
    let mut toy = Toy {
        thetas: vec![theta0],
        phis: vec![(read(&phi0), read(&phi1))],
        converged_at: None,
        diverged_at: None,
    };
    if !all_finite([toy.phis[0].0, toy.phis[0].1]) {
        toy.diverged_at = Some(0);
        return toy;
    }
    let mut inside_since: Option<usize> = None;
    for step in 0..=steps {
        if snap_at.contains(&step) {
            snapshot(step, read(&theta), read(&phi0), read(&phi1));
        }
        if step == steps {
            break;
        }
        for _ in 0..d_steps {
            d_step(rng, &mut opt_d);
        }
        let z = sample(rng, 0.0);
        opt_g.zero_grad();
        loss.g_loss(&disc(&gen_(&z))).backward();
        opt_g.step();
        let th = read(&theta);
        toy.thetas.push(th);
        toy.phis.push((read(&phi0), read(&phi1)));
        if !all_finite([th, read(&phi0), read(&phi1)]) {
            toy.diverged_at = Some(step + 1);
            break;
        }
        if (th - MU).abs() < tol {
            inside_since.get_or_insert(step + 1);
        } else {
            inside_since = None;
        }
    }
    toy.converged_at = inside_since;
    toy
}

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    if !opts.loss().is_probabilistic() {
        anyhow::bail!(
            "lab shift1d --loss {}: the toy draws D as the probability σ(φ₀ + φ₁x) and measures it against the optimal D; expected non-saturating or minimax",
            opts.loss().name()
        );
    }
    let steps = opts.steps.unwrap_or(STEPS);
    let lr = opts.lr.unwrap_or(LR);
    let theta0 = MU - 3.0;
    let mut rng = Rng::new(opts.seed);
    let snap_at: Vec<usize> =
        [0.0, 0.02, 0.06, 0.15, 1.0].iter().map(|f| (f * steps as f64) as usize).collect();
    let (lo, hi) = (MU - 7.0, MU + 4.0);
    let grid: Vec<f64> = (0..=220).map(|k| lo + (hi - lo) * k as f64 / 220.0).collect();
    let mut plots = Vec::new();
    let mut plot_err = None;
    let toy = train(
        &mut rng,
        theta0,
        opts.loss(),
        steps,
        opts.d_steps(),
        lr,
        0,
        0.1,
        &snap_at,
        |step, th, p0, p1| {
            // Histograms of fresh samples (density units) on the grid's bins, and D's sigmoid.
            let mut srng = Rng::new(opts.seed ^ 0x5eed ^ step as u64);
            let hist = |rng: &mut Rng, mean: f64| -> Vec<f64> {
                let n = 20_000;
                let width = 0.25;
                let mut counts = vec![0.0; grid.len()];
                let xs: Vec<f64> = (0..n).map(|_| mean + rng.normal()).collect();
                for (c, g) in counts.iter_mut().zip(&grid) {
                    *c = xs.iter().filter(|&&x| (x - g).abs() < width / 2.0).count() as f64
                        / (n as f64 * width);
                }
                counts
            };
            let real = hist(&mut srng, MU);
            let fake = hist(&mut srng, th);
            let d: Vec<f64> = grid.iter().map(|&x| sigmoid64(p0 + p1 * x)).collect();
            let path = opts.out.join(format!("shift1d_step{step:05}.png"));
            let po = PlotOptions {
                y_range: Some((0.0, 1.02)),
                ..PlotOptions::new(
                    &format!("shift1d, step {step}: θ = {th:.3}, μ = {MU}"),
                    "x",
                    "density / D(x)",
                )
            };
            if let Err(e) = plot_series(
                &path,
                &po,
                &grid,
                &[("real samples", &real), ("generated samples", &fake), ("D(x)", &d)],
            ) {
                plot_err.get_or_insert(e);
            }
            plots.push(path.display().to_string());
        },
    );
    if let Some(step) = toy.diverged_at {
        let what = format!("θ or φ is not finite after step {step} of {steps}");
        return Err(diverged("shift1d", &what, lr, opts));
    }
    if let Some(e) = plot_err {
        return Err(e.into());
    }
    let iters: Vec<f64> = (0..toy.thetas.len()).map(|k| k as f64).collect();
    let mu_line = vec![MU; iters.len()];
    plot_series(
        &opts.out.join("shift1d_theta.png"),
        &PlotOptions::new("shift1d: θ against iteration", "iteration", "θ"),
        &iters,
        &[("θ", &toy.thetas), ("μ", &mu_line)],
    )?;
    let rows: Vec<Vec<f64>> = toy
        .thetas
        .iter()
        .zip(&toy.phis)
        .enumerate()
        .map(|(k, (t, p))| vec![k as f64, *t, p.0, p.1])
        .collect();
    write_csv(&opts.out.join("shift1d.csv"), &["step", "theta", "phi0", "phi1"], &rows)?;
    let final_theta = *toy.thetas.last().unwrap();
    let err = (final_theta - MU).abs();
    let (p0, p1) = *toy.phis.last().unwrap();
    let headline = format!(
        "shift1d ({} loss): θ {theta0:.2} → {final_theta:.4} after {steps} steps, |θ − μ| = {err:.4} (μ = {MU}); within 0.1 since step {}; final D slope φ₁ = {p1:.4}, D(μ) = {:.3}",
        opts.loss().name(),
        toy.converged_at.map_or("never".to_string(), |s| s.to_string()),
        sigmoid64(p0 + p1 * MU),
    );
    let json = json!({
        "mu": MU, "theta0": theta0, "theta_final": final_theta, "abs_error": err,
        "within_0_1": err < 0.1, "converged_at": toy.converged_at, "steps": steps,
        "loss": opts.loss().name(), "lr": lr, "d_steps": opts.d_steps(), "phi0": p0, "phi1": p1,
        "plots": plots,
    });
    Ok((headline, json))
}
