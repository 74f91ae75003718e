//! Fix p_data (a two-Gaussian mixture) and p_g (a Gaussian), train an MLP D to convergence on
//! fresh samples of each, and compare it with D* = p_data / (p_data + p_g). Then check the
//! identity V(D*, G) = −log 4 + 2·JSD(p_data ‖ p_g), both sides by numerical integration.

use anyhow::Result;
use serde_json::json;

use super::{
    GanLoss, LabOptions, all_finite, check_loss, column, diverged, eval_column, mlp, normal_pdf, sigmoid64,
    write_csv,
};
use crate::Rng;
use crate::io::{PlotOptions, plot_series};
use crate::nn::Module;
use crate::optim::{Adam, Optimizer};

/// Iterations and learning rate when --steps and --lr are not given.
pub(crate) const STEPS: usize = 3000;
pub(crate) const LR: f32 = 2e-3;

/// p_data: ½ N(−1.5, 0.5²) + ½ N(1, 0.8²).
fn p_data(x: f64) -> f64 {
    0.5 * normal_pdf(x, -1.5, 0.5) + 0.5 * normal_pdf(x, 1.0, 0.8)
}
fn sample_data(rng: &mut Rng) -> f64 {
    if rng.below(2) == 0 { -1.5 + 0.5 * rng.normal() } else { 1.0 + 0.8 * rng.normal() }
}
/// p_g: N(0.5, 1.5²).
fn p_g(x: f64) -> f64 {
    normal_pdf(x, 0.5, 1.5)
}
fn sample_g(rng: &mut Rng) -> f64 {
    0.5 + 1.5 * rng.normal()
}

/// Trapezoid rule on a uniform grid.
fn integrate(h: f64, ys: &[f64]) -> f64 {
    let n = ys.len();
    h * (ys.iter().sum::<f64>() - 0.5 * (ys[0] + ys[n - 1]))
}

/// x log y with 0 log 0 = 0.
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    let steps = opts.steps.unwrap_or(STEPS);
    let lr = opts.lr.unwrap_or(LR);
    let batch = 1024;
    let mut rng = Rng::new(opts.seed);
    let d = mlp(&[1, 64, 64, 1], true, &mut rng);
    let mut opt = Adam::new(d.parameters(), lr, (0.9, 0.999));
    let mut loss_rows = Vec::new();
    for step in 0..steps {
        // The last third at a tenth of the rate, so D settles instead of jittering.
        if step == 2 * steps / 3 {
            opt = Adam::new(d.parameters(), lr / 10.0, (0.9, 0.999));
        }
        let real: Vec<f64> = (0..batch).map(|_| sample_data(&mut rng)).collect();
        let fake: Vec<f64> = (0..batch).map(|_| sample_g(&mut rng)).collect();
        opt.zero_grad();
        // D's cross-entropy loss (the non-saturating and minimax games share it), whose
        // minimiser is the D* this experiment compares against.
        let loss = GanLoss::NonSaturating.d_loss(&d.forward(&column(&real)), &d.forward(&column(&fake)));
        loss.backward();
        opt.step();
        if step % 10 == 0 || step + 1 == steps {
            let value = f64::from(loss.item());
            check_loss("optimal-d", "D", value, (step, steps), lr, opts)?;
            loss_rows.push((step as f64, value));
        }
    }

    let (lo, hi, n) = (-10.0, 11.0, 4201);
    let h = (hi - lo) / (n - 1) as f64;
    let grid: Vec<f64> = (0..n).map(|k| lo + h * k as f64).collect();
    let pd: Vec<f64> = grid.iter().map(|&x| p_data(x)).collect();
    let pg: Vec<f64> = grid.iter().map(|&x| p_g(x)).collect();
    let d_star: Vec<f64> = pd.iter().zip(&pg).map(|(a, b)| a / (a + b)).collect();
    let d_net: Vec<f64> = eval_column(&d, &grid).into_iter().map(sigmoid64).collect();
    if !all_finite(d_net.iter().copied()) {
        return Err(diverged(
            "optimal-d",
            &format!("the trained D's output is not finite after {steps} steps"),
            lr,
            opts,
        ));
    }

    // The bulk: the central 95% of the mass of m = (p_data + p_g) / 2.
    let m: Vec<f64> = pd.iter().zip(&pg).map(|(a, b)| 0.5 * (a + b)).collect();
    let mut cdf = vec![0.0; n];
    for k in 1..n {
        cdf[k] = cdf[k - 1] + 0.5 * h * (m[k - 1] + m[k]);
    }
    let in_bulk: Vec<bool> = cdf.iter().map(|&c| (0.025..=0.975).contains(&c)).collect();
    let bulk_lo = grid[in_bulk.iter().position(|&b| b).unwrap()];
    let bulk_hi = grid[in_bulk.iter().rposition(|&b| b).unwrap()];
    let max_err = (0..n).filter(|&k| in_bulk[k]).map(|k| (d_net[k] - d_star[k]).abs()).fold(0.0, f64::max);
    let mean_err = integrate(h, &(0..n).map(|k| m[k] * (d_net[k] - d_star[k]).abs()).collect::<Vec<_>>());

    // V(D, G) = E_data log D + E_g log(1 − D), and the JSD, by the trapezoid rule.
    let value = |dd: &[f64]| {
        integrate(h, &(0..n).map(|k| xlogy(pd[k], dd[k]) + xlogy(pg[k], 1.0 - dd[k])).collect::<Vec<_>>())
    };
    let v_star = value(&d_star);
    let v_net = value(&d_net);
    let jsd = 0.5 * integrate(h, &(0..n).map(|k| xlogy(pd[k], pd[k] / m[k])).collect::<Vec<_>>())
        + 0.5 * integrate(h, &(0..n).map(|k| xlogy(pg[k], pg[k] / m[k])).collect::<Vec<_>>());
    let rhs = -(4f64.ln()) + 2.0 * jsd;
    let gap = (v_star - rhs).abs();

    let po = PlotOptions {
        y_range: Some((0.0, 1.05)),
        ..PlotOptions::new("optimal-d: trained D against D* = p_data / (p_data + p_g)", "x", "D(x) / density")
    };
    let every: Vec<usize> = (0..n).step_by(16).collect();
    let pick = |v: &[f64]| every.iter().map(|&k| v[k]).collect::<Vec<f64>>();
    plot_series(
        &opts.out.join("optimal_d.png"),
        &po,
        &pick(&grid),
        &[("trained D", &pick(&d_net)), ("D*", &pick(&d_star)), ("p_data", &pick(&pd)), ("p_g", &pick(&pg))],
    )?;
    let (ls, lv): (Vec<f64>, Vec<f64>) = loss_rows.iter().copied().unzip();
    let theory = vec![-v_star; ls.len()];
    plot_series(
        &opts.out.join("optimal_d_loss.png"),
        &PlotOptions::new("optimal-d: D's loss against its optimum −V(D*, G)", "step", "BCE (real + fake)"),
        &ls,
        &[("D loss", &lv), ("−V(D*, G)", &theory)],
    )?;
    let rows: Vec<Vec<f64>> = (0..n)
        .step_by(8)
        .map(|k| vec![grid[k], pd[k], pg[k], d_star[k], d_net[k], f64::from(in_bulk[k] as u8)])
        .collect();
    write_csv(
        &opts.out.join("optimal_d.csv"),
        &["x", "p_data", "p_g", "d_star", "d_trained", "in_bulk"],
        &rows,
    )?;

    let headline = format!(
        "optimal-d: max |D − D*| = {max_err:.4} over the bulk [{bulk_lo:.2}, {bulk_hi:.2}] (mass-weighted mean {mean_err:.4}) after {steps} steps; V(D*, G) = {v_star:.6}, −log 4 + 2·JSD = {rhs:.6} (JSD = {jsd:.6} nats), gap {gap:.2e}; trained D reaches V = {v_net:.6}"
    );
    let json = json!({
        "max_abs_err_bulk": max_err, "mean_abs_err": mean_err, "bulk": [bulk_lo, bulk_hi],
        "v_star": v_star, "minus_log4_plus_2jsd": rhs, "jsd": jsd, "v_jsd_gap": gap,
        "v_trained": v_net, "steps": steps, "lr": lr,
    });
    Ok((headline, json))
}
