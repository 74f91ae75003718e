//! 8 Gaussians on a circle (radius 2, σ 0.02) learned by an MLP G against an MLP D: the
//! classic mode-collapse picture. Every `EVAL_EVERY` steps: modes covered (a mode counts
//! when ≥ 1% of samples lie within 3σ of it), the share of high-quality samples (within 3σ
//! of any mode) and a KDE estimate of JSD(p_data ‖ p_g).

use anyhow::Result;
use serde_json::json;

use super::{LabOptions, all_finite, check_loss, diverged, mlp, write_csv};
use crate::io::{PALETTE, PlotOptions, plot_series, scatter_plot};
use crate::nn::{Module, Sequential};
use crate::optim::{Adam, Optimizer};
use crate::{Device, Rng, Tensor, no_grad};

/// Iterations and learning rate when --steps and --lr are not given.
pub(crate) const STEPS: usize = 5000;
pub(crate) const LR: f32 = 3e-4;

const MODES: usize = 8;
const RADIUS: f64 = 2.0;
const SIGMA: f64 = 0.02;
const Z_DIM: usize = 8;
const BATCH: usize = 256;
const EVAL_SAMPLES: usize = 1000;
/// KDE bandwidth; the data density is smoothed by the same kernel, exactly.
const BANDWIDTH: f64 = 0.05;

fn mode(k: usize) -> (f64, f64) {
    let a = std::f64::consts::TAU * k as f64 / MODES as f64;
    (RADIUS * a.cos(), RADIUS * a.sin())
}

fn sample_data(rng: &mut Rng, n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|_| {
            let (x, y) = mode(rng.below(MODES as u64) as usize);
            (x + SIGMA * rng.normal(), y + SIGMA * rng.normal())
        })
        .collect()
}

fn to_tensor(ps: &[(f64, f64)]) -> Tensor {
    Tensor::from_vec(
        ps.iter().flat_map(|&(x, y)| [x as f32, y as f32]).collect(),
        &[ps.len(), 2],
        Device::Cpu,
    )
}

fn noise(rng: &mut Rng, n: usize) -> Tensor {
    Tensor::randn(&[n, Z_DIM], 0.0, 1.0, rng, Device::Cpu)
}

fn generate(g: &Sequential, rng: &mut Rng, n: usize) -> Vec<(f64, f64)> {
    let v = no_grad(|| g.forward(&noise(rng, n)).to_vec());
    v.chunks(2).map(|p| (f64::from(p[0]), f64::from(p[1]))).collect()
}

/// Samples per mode within 3σ, and how many samples are within 3σ of any mode.
fn mode_counts(ps: &[(f64, f64)]) -> (Vec<usize>, usize) {
    let mut counts = vec![0; MODES];
    let mut good = 0;
    for &(x, y) in ps {
        for (k, c) in counts.iter_mut().enumerate() {
            let (mx, my) = mode(k);
            if (x - mx).hypot(y - my) < 3.0 * SIGMA {
                *c += 1;
                good += 1;
                break;
            }
        }
    }
    (counts, good)
}

fn gauss2(dx: f64, dy: f64, var: f64) -> f64 {
    (-(dx * dx + dy * dy) / (2.0 * var)).exp() / (std::f64::consts::TAU * var)
}

/// The data density smoothed by the KDE kernel: each mode N(μₖ, (σ² + h²) I).
fn p_smooth(x: f64, y: f64) -> f64 {
    let var = SIGMA * SIGMA + BANDWIDTH * BANDWIDTH;
    (0..MODES).map(|k| gauss2(x - mode(k).0, y - mode(k).1, var)).sum::<f64>() / MODES as f64
}

fn kde(fit: &[(f64, f64)], x: f64, y: f64) -> f64 {
    let var = BANDWIDTH * BANDWIDTH;
    fit.iter().map(|&(a, b)| gauss2(x - a, y - b, var)).sum::<f64>() / fit.len() as f64
}

/// JSD (nats) between the smoothed data density and a KDE of generated samples `fit`, by
/// Monte Carlo over data samples `xs` and other generated samples `ys`.
fn kde_jsd(fit: &[(f64, f64)], xs: &[(f64, f64)], ys: &[(f64, f64)]) -> f64 {
    let term = |pts: &[(f64, f64)], own_is_p: bool| {
        pts.iter()
            .map(|&(x, y)| {
                let (p, q) = (p_smooth(x, y), kde(fit, x, y));
                let m = 0.5 * (p + q);
                let own = if own_is_p { p } else { q };
                if own > 0.0 { (own / m).ln() } else { 0.0 }
            })
            .sum::<f64>()
            / pts.len() as f64
    };
    (0.5 * term(xs, true) + 0.5 * term(ys, false)).clamp(0.0, std::f64::consts::LN_2)
}

pub(crate) struct Eval {
    step: usize,
    modes: usize,
    high_quality: f64,
    jsd: f64,
    d_loss: f64,
    g_loss: f64,
}

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    let steps = opts.steps.unwrap_or(STEPS);
    let lr = opts.lr.unwrap_or(LR);
    let eval_every = (steps / 30).max(1);
    let mut rng = Rng::new(opts.seed);
    let g = mlp(&[Z_DIM, 128, 128, 2], false, &mut rng);
    let d = mlp(&[2, 128, 128, 1], true, &mut rng);
    let mut opt_g = Adam::new(g.parameters(), lr, (0.5, 0.999));
    let mut opt_d = Adam::new(d.parameters(), lr, (0.5, 0.999));
    // Fixed evaluation sets, from their own stream so that training does not shift them.
    let mut erng = Rng::new(opts.seed ^ 0xe7a1);
    let eval_real = sample_data(&mut erng, EVAL_SAMPLES);
    let snap_at: Vec<usize> =
        [0.0, 0.1, 0.25, 0.5, 1.0].iter().map(|f| (f * steps as f64) as usize).collect();
    let mut evals: Vec<Eval> = Vec::new();
    let mut plots = Vec::new();
    let (mut last_d, mut last_g) = (f64::NAN, f64::NAN);
    for step in 0..=steps {
        if step % eval_every == 0 || step == steps || snap_at.contains(&step) {
            let mut srng = Rng::new(opts.seed ^ 0x5a3b ^ (step as u64) << 20);
            let fit = generate(&g, &mut srng, EVAL_SAMPLES);
            if !all_finite(fit.iter().flat_map(|&(x, y)| [x, y])) {
                let what = format!("G's samples are not finite at step {step} of {steps}");
                return Err(diverged("ring", &what, lr, opts));
            }
            let other = generate(&g, &mut srng, EVAL_SAMPLES / 2);
            let (counts, good) = mode_counts(&fit);
            let covered = counts.iter().filter(|&&c| c as f64 >= 0.01 * fit.len() as f64).count();
            let jsd = kde_jsd(&fit, &eval_real[..EVAL_SAMPLES / 2], &other);
            evals.push(Eval {
                step,
                modes: covered,
                high_quality: good as f64 / fit.len() as f64,
                jsd,
                d_loss: last_d,
                g_loss: last_g,
            });
            if snap_at.contains(&step) {
                let path = opts.out.join(format!("ring_step{step:05}.png"));
                let po = PlotOptions {
                    y_range: Some((-3.0, 3.0)),
                    ..PlotOptions::new(
                        &format!(
                            "ring ({}, d-steps {}, lr {lr}), step {step}: {covered}/8 modes, JSD {jsd:.3}",
                            opts.loss().name(),
                            opts.d_steps()
                        ),
                        "x",
                        "y",
                    )
                    .size(700, 700)
                };
                // Pin the x range with two invisible-ish corner points in the data colour.
                let real_pts: Vec<(f64, f64)> =
                    eval_real.iter().copied().chain([(-3.0, -3.0), (3.0, 3.0)]).collect();
                scatter_plot(
                    &path,
                    &po,
                    &[("real", &real_pts, PALETTE[0]), ("generated", &fit, PALETTE[1])],
                )?;
                plots.push(path.display().to_string());
            }
        }
        if step == steps {
            break;
        }
        for _ in 0..opts.d_steps() {
            let real = to_tensor(&sample_data(&mut rng, BATCH));
            let fake = g.forward(&noise(&mut rng, BATCH)).detach();
            opt_d.zero_grad();
            let l = opts.loss().d_loss(&d.forward(&real), &d.forward(&fake));
            l.backward();
            opt_d.step();
            last_d = f64::from(l.item());
            check_loss("ring", "D", last_d, (step, steps), lr, opts)?;
        }
        opt_g.zero_grad();
        let l = opts.loss().g_loss(&d.forward(&g.forward(&noise(&mut rng, BATCH))));
        l.backward();
        opt_g.step();
        // D's parameters got gradients from G's backward; D's next zero_grad clears them.
        last_g = f64::from(l.item());
        check_loss("ring", "G", last_g, (step, steps), lr, opts)?;
    }

    let xs: Vec<f64> = evals.iter().map(|e| e.step as f64).collect();
    let modes: Vec<f64> = evals.iter().map(|e| e.modes as f64).collect();
    let hq: Vec<f64> = evals.iter().map(|e| e.high_quality).collect();
    let jsd: Vec<f64> = evals.iter().map(|e| e.jsd).collect();
    plot_series(
        &opts.out.join("ring_modes.png"),
        &PlotOptions {
            y_range: Some((0.0, 8.5)),
            ..PlotOptions::new("ring: modes covered (≥ 1% of samples within 3σ)", "step", "modes")
        },
        &xs,
        &[("modes covered", &modes)],
    )?;
    plot_series(
        &opts.out.join("ring_quality.png"),
        &PlotOptions {
            y_range: Some((0.0, 1.0)),
            ..PlotOptions::new("ring: high-quality share and KDE JSD (nats)", "step", "")
        },
        &xs,
        &[("high-quality share", &hq), ("JSD (KDE)", &jsd)],
    )?;
    let rows: Vec<Vec<f64>> = evals
        .iter()
        .map(|e| vec![e.step as f64, e.modes as f64, e.high_quality, e.jsd, e.d_loss, e.g_loss])
        .collect();
    write_csv(
        &opts.out.join("ring.csv"),
        &["step", "modes_covered", "high_quality", "jsd_kde", "d_loss", "g_loss"],
        &rows,
    )?;

    let last = evals.last().unwrap();
    let max_modes = evals.iter().map(|e| e.modes).max().unwrap();
    // The verdict reads the last quarter of the evaluations, not one noisy snapshot.
    let tail = &evals[evals.len() - (evals.len() / 4).max(1)..];
    let tail_min = tail.iter().map(|e| e.modes).min().unwrap();
    let tail_max = tail.iter().map(|e| e.modes).max().unwrap();
    let tail_hq = tail.iter().map(|e| e.high_quality).sum::<f64>() / tail.len() as f64;
    let tail_modes = tail.iter().map(|e| e.modes as f64).sum::<f64>() / tail.len() as f64;
    let verdict = if tail_hq < 0.1 {
        "has not converged"
    } else if tail_min == MODES {
        "covers all 8"
    } else if tail_max <= MODES / 2 {
        "collapses"
    } else {
        "partial"
    };
    let headline = format!(
        "ring ({}, d-steps {}, lr {lr}, {steps} steps): {verdict}: final {}/8 modes (last quarter {tail_min}..{tail_max}, mean {tail_modes:.2}; max ever {max_modes}), high-quality share {:.3} (last quarter {tail_hq:.3}), KDE JSD {:.4} nats",
        opts.loss().name(),
        opts.d_steps(),
        last.modes,
        last.high_quality,
        last.jsd
    );
    let json = json!({
        "loss": opts.loss().name(), "d_steps": opts.d_steps(), "lr": lr, "steps": steps,
        "modes_final": last.modes, "modes_max": max_modes, "high_quality_final": last.high_quality,
        "jsd_final": last.jsd, "verdict": verdict, "modes_tail_min": tail_min, "modes_tail_max": tail_max, "modes_tail_mean": tail_modes, "high_quality_tail": tail_hq, "plots": plots,
        "modes_per_eval": modes, "eval_steps": xs,
    });
    Ok((headline, json))
}
