//! Why the minimax generator loss saturates: the gradients of log(1 − D(G(z))) and of
//! −log D(G(z)) with respect to D's logit as D(G(z)) → 0 (measured with the engine's
//! autograd), then the shift1d toy, started far from the data against a trained D, with each.

use anyhow::Result;
use serde_json::json;

use super::shift1d::{MU, train};
use super::{GanLoss, LabOptions, diverged, sigmoid64, write_csv};
use crate::io::{PlotOptions, plot_series};
use crate::{Device, Rng, Tensor};

/// Iterations and learning rate when --steps and --lr are not given.
pub(crate) const STEPS: usize = 1500;
pub(crate) const LR: f32 = 0.1;

/// d loss / d logit for each loss at each logit, by backward through the engine's loss.
fn logit_grads(loss: GanLoss, logits: &[f64]) -> Vec<f64> {
    let a = Tensor::from_vec(logits.iter().map(|&x| x as f32).collect(), &[logits.len(), 1], Device::Cpu);
    a.set_requires_grad(true);
    // The loss is a batch mean: scale back to the per-sample derivative.
    loss.g_loss(&a).scale(logits.len() as f32).backward();
    a.grad().expect("gradient").to_vec().into_iter().map(f64::from).collect()
}

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    // Part 1: gradients against the logit.
    let logits: Vec<f64> = (0..=160).map(|k| -12.0 + 0.1 * k as f64).collect();
    let g_mm = logit_grads(GanLoss::Minimax, &logits);
    let g_ns = logit_grads(GanLoss::NonSaturating, &logits);
    let mag = |g: &[f64]| g.iter().map(|v| v.abs()).collect::<Vec<f64>>();
    let log_mag = |g: &[f64]| g.iter().map(|v| v.abs().max(1e-30).log10()).collect::<Vec<f64>>();
    plot_series(
        &opts.out.join("saturation_grad.png"),
        &PlotOptions::new(
            "|d loss / d logit| of G's loss (D(G(z)) = sigmoid(logit))",
            "D's logit on G(z)",
            "|gradient|",
        ),
        &logits,
        &[("minimax log(1 − D)", &mag(&g_mm)), ("non-saturating −log D", &mag(&g_ns))],
    )?;
    plot_series(
        &opts.out.join("saturation_grad_log.png"),
        &PlotOptions::new("log10 |d loss / d logit| as D(G(z)) → 0", "D's logit on G(z)", "log10 |gradient|"),
        &logits,
        &[("minimax log(1 − D)", &log_mag(&g_mm)), ("non-saturating −log D", &log_mag(&g_ns))],
    )?;
    // The measured gradients at D(G(z)) = 10⁻ᵏ.
    let at: Vec<serde_json::Value> = (1..=5)
        .map(|k| {
            let d = 10f64.powi(-k);
            let a = (d / (1.0 - d)).ln();
            let mm = logit_grads(GanLoss::Minimax, &[a])[0];
            let ns = logit_grads(GanLoss::NonSaturating, &[a])[0];
            json!({"d": d, "logit": a, "minimax_grad": mm, "non_saturating_grad": ns})
        })
        .collect();

    // Part 2: the toy, 6 to the left of μ, D trained first so that D(G(z)) ≈ 0.
    let steps = opts.steps.unwrap_or(STEPS);
    let lr = opts.lr.unwrap_or(LR);
    let theta0 = MU - 6.0;
    let mut results = Vec::new();
    let mut curves = Vec::new();
    for loss in [GanLoss::NonSaturating, GanLoss::Minimax] {
        let mut rng = Rng::new(opts.seed);
        let toy = train(&mut rng, theta0, loss, steps, opts.d_steps(), lr, 1000, 0.1, &[], |_, _, _, _| {});
        if let Some(step) = toy.diverged_at {
            let when = match step {
                0 => "in D's 1000 steps of pretraining".to_string(),
                s => format!("after step {s} of {steps}"),
            };
            let what = format!("the {} run's θ or φ is not finite {when}", loss.name());
            return Err(diverged("saturation", &what, lr, opts));
        }
        let (p0, p1) = toy.phis[0];
        let d_start = sigmoid64(p0 + p1 * theta0);
        // Steps until θ first comes within 0.25 of μ.
        let reached = toy.thetas.iter().position(|t| (t - MU).abs() < 0.25);
        results.push((loss, reached, *toy.thetas.last().unwrap(), d_start));
        curves.push(toy.thetas);
    }
    let iters: Vec<f64> = (0..curves[0].len()).map(|k| k as f64).collect();
    let mu_line = vec![MU; iters.len()];
    plot_series(
        &opts.out.join("saturation_theta.png"),
        &PlotOptions::new("θ against iteration from a winning D", "iteration", "θ"),
        &iters,
        &[("non-saturating", &curves[0]), ("minimax", &curves[1]), ("μ", &mu_line)],
    )?;
    let rows: Vec<Vec<f64>> = (0..iters.len()).map(|k| vec![k as f64, curves[0][k], curves[1][k]]).collect();
    write_csv(&opts.out.join("saturation.csv"), &["step", "theta_non_saturating", "theta_minimax"], &rows)?;
    let grad_rows: Vec<Vec<f64>> =
        (0..logits.len()).map(|k| vec![logits[k], sigmoid64(logits[k]), g_mm[k], g_ns[k]]).collect();
    write_csv(
        &opts.out.join("saturation_grad.csv"),
        &["logit", "d", "grad_minimax", "grad_non_saturating"],
        &grad_rows,
    )?;

    let describe = |(loss, conv, th, _): &(GanLoss, Option<usize>, f64, f64)| match conv {
        Some(s) => format!("{} reaches |θ − μ| < 0.25 in {s} steps (θ_final {th:.3})", loss.name()),
        None => {
            format!("{} stalls (θ {theta0:.2} → {th:.3} in {steps} steps, never within 0.25)", loss.name())
        }
    };
    let headline = format!(
        "saturation: at D(G(z)) = 1e-3 |∂/∂logit| minimax = {:.2e}, non-saturating = {:.3}; from D(G(θ₀)) = {:.1e}: {}; {}",
        at[2]["minimax_grad"].as_f64().unwrap().abs(),
        at[2]["non_saturating_grad"].as_f64().unwrap().abs(),
        results[0].3,
        describe(&results[0]),
        describe(&results[1]),
    );
    let json = json!({
        "grads_at": at, "theta0": theta0, "mu": MU, "steps": steps, "lr": lr, "d_steps": opts.d_steps(),
        "d_at_theta0": results[0].3,
        "non_saturating": {"steps_to_reach": results[0].1, "theta_final": results[0].2},
        "minimax": {"steps_to_reach": results[1].1, "theta_final": results[1].2},
    });
    Ok((headline, json))
}
