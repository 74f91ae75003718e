//! The GAN internals lab (issue 6): the classic small experiments, one function each, with
//! real measurements, plots (PNG) and a CSV written into an output folder.
//!
//! * `shift1d`: the textbook 1-D example, a shifted generator against a logistic D.
//! * `optimal-d`: a trained D against D* = p_data / (p_data + p_g), and V(D*, G) against
//!   −log 4 + 2·JSD.
//! * `saturation`: the minimax generator loss saturates when D wins; the non-saturating one
//!   does not.
//! * `ring`: 8 Gaussians on a circle, MLP G and D, modes covered over training.
//! * `dirac`: the Dirac-GAN (Mescheder et al. 2018): simultaneous and alternating gradient
//!   descent do not converge to its equilibrium (the non-saturating loss only creeps in, like
//!   1/√t); an R1 penalty makes both losses converge exponentially.
//! * `score`: a trainer checkpoint's samples against the real test images: Fréchet distance
//!   in a small classifier's features (trained once with this engine, cached) and the
//!   samples' class histogram.

mod dirac;
pub mod frechet;
mod optimal_d;
mod ring;
mod saturation;
pub mod score;
mod shift1d;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::nn::{LeakyReLU, Linear, Module, ReLU, Sequential};
use crate::{Device, Rng, Tensor};

/// The experiments `run` knows: the issue's, in its order, then the Dirac-GAN, then scoring.
/// The docs are `dcgan lab --help`'s; each prints what it used (--lr, --steps) in its JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Experiment {
    /// The textbook 1-D GAN: a shifted generator against a logistic D (--loss, --d-steps)
    Shift1d,
    /// A trained D against D* = p_data / (p_data + p_g), and V(D*, G) against −log 4 + 2·JSD
    OptimalD,
    /// Why the minimax generator loss saturates when D wins, and the non-saturating one does not
    Saturation,
    /// 8 Gaussians on a circle, MLP G and D: modes covered over training (--loss, --d-steps)
    Ring,
    /// The Dirac-GAN (Mescheder et al. 2018): GD circles or creeps; an R1 penalty converges
    Dirac,
    /// A checkpoint's Fréchet distance and class histogram in a small classifier's features
    Score,
}

impl Experiment {
    /// The command-line name (`optimal-d`), as clap derives it.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Shift1d => "shift1d",
            Experiment::OptimalD => "optimal-d",
            Experiment::Saturation => "saturation",
            Experiment::Ring => "ring",
            Experiment::Dirac => "dirac",
            Experiment::Score => "score",
        }
    }
}

/// The players' losses: the trainer's own enum, so the lab and `dcgan train` mean the same.
pub use crate::gan::GanLoss;

/// Knobs shared by the experiments. `None` means the experiment's own default.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub seed: u64,
    /// Folder for the plots and the CSV (created when missing).
    pub out: PathBuf,
    /// The game's losses (`shift1d`: the two cross-entropy ones, whose D is a probability;
    /// `ring`: any; `saturation` and `dirac` always run both cross-entropy ones; they,
    /// `optimal-d` and `score` refuse it, even at its default). `None`: non-saturating.
    pub loss: Option<GanLoss>,
    /// Discriminator steps per generator step (`shift1d`, `saturation`, `ring`, `dirac`).
    /// `None`: 1.
    pub d_steps: Option<usize>,
    /// Learning rate of both players (`shift1d`, `dirac`: SGD; `ring`, `optimal-d`: Adam; `score`:
    /// the classifier's Adam).
    pub lr: Option<f32>,
    /// Training iterations (`score`: the classifier's; default one epoch).
    pub steps: Option<usize>,
    /// `score`: a checkpoint, or a run directory (or its checkpoints/) to score every one.
    pub checkpoint: Option<PathBuf>,
    /// `score`: the labelled data the checkpoint was trained on.
    pub data: Option<PathBuf>,
    /// `score`: generated samples per checkpoint (default [`score::DEFAULT_SAMPLES`]).
    pub samples: Option<usize>,
    /// `score`: where the trained classifier is cached (default
    /// [`score::default_cache_dir`]).
    pub cache: Option<PathBuf>,
    /// `score`: truncate the samples' noise at this threshold ([`crate::gan::sample::truncated_noise`]).
    pub truncation: Option<f32>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            seed: 0,
            out: PathBuf::from("lab"),
            loss: None,
            d_steps: None,
            lr: None,
            steps: None,
            checkpoint: None,
            data: None,
            samples: None,
            cache: None,
            truncation: None,
        }
    }
}

impl LabOptions {
    /// The game's losses, given or the default.
    pub fn loss(&self) -> GanLoss {
        self.loss.unwrap_or(GanLoss::NonSaturating)
    }

    /// Discriminator steps per generator step, given or the default.
    pub fn d_steps(&self) -> usize {
        self.d_steps.unwrap_or(1)
    }
}

/// Each experiment's own `--steps` and `--lr`, for `dcgan lab --help`.
pub fn defaults_help() -> String {
    let rows = [
        (Experiment::Shift1d, shift1d::STEPS, shift1d::LR),
        (Experiment::OptimalD, optimal_d::STEPS, optimal_d::LR),
        (Experiment::Saturation, saturation::STEPS, saturation::LR),
        (Experiment::Ring, ring::STEPS, ring::LR),
        (Experiment::Dirac, dirac::STEPS, dirac::LR),
    ];
    let mut help = String::from("Defaults of --steps and --lr:\n");
    for (experiment, steps, lr) in rows {
        let _ = writeln!(help, "  {:<11} {steps} steps, --lr {lr}", experiment.name());
    }
    let _ = write!(
        help,
        "  {:<11} one epoch of the classifier, --lr {}",
        Experiment::Score.name(),
        score::DEFAULT_LR
    );
    help
}

/// What an experiment found: the one-line summary and the same numbers as JSON.
#[derive(Clone, Debug)]
pub struct LabSummary {
    pub experiment: String,
    pub headline: String,
    pub json: serde_json::Value,
}

/// Run `experiment` (an [`Experiment`]'s name), writing its files into `opts.out`.
pub fn run(experiment: &str, opts: &LabOptions) -> Result<LabSummary> {
    use clap::ValueEnum;
    let Some(&which) = Experiment::value_variants().iter().find(|e| e.name() == experiment) else {
        let known: Vec<_> = Experiment::value_variants().iter().map(|e| e.name()).collect();
        bail!("unknown lab experiment {experiment:?}; known experiments: {}", known.join(", "));
    };
    check_flags_used(experiment, opts)?;
    if opts.d_steps == Some(0) {
        bail!("--d-steps must be at least 1");
    }
    if let Some(lr) = opts.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        bail!("--lr must be a positive number, got {lr}");
    }
    if opts.steps == Some(0) {
        bail!("the number of steps must be at least 1");
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create the output folder", opts.out.display()))?;
    let (headline, json) = match which {
        Experiment::Shift1d => shift1d::run(opts)?,
        Experiment::OptimalD => optimal_d::run(opts)?,
        Experiment::Saturation => saturation::run(opts)?,
        Experiment::Ring => ring::run(opts)?,
        Experiment::Dirac => dirac::run(opts)?,
        Experiment::Score => score::run(opts)?,
    };
    Ok(LabSummary { experiment: experiment.to_string(), headline, json })
}

/// Refuses a flag that `experiment` would ignore: an ignored flag reads as a setting that took
/// effect, even one given at its default value.
fn check_flags_used(experiment: &str, opts: &LabOptions) -> Result<()> {
    let given = [
        ("--loss", opts.loss.is_some(), opts.loss().name().to_string()),
        ("--d-steps", opts.d_steps.is_some(), opts.d_steps().to_string()),
        ("--checkpoint", opts.checkpoint.is_some(), String::new()),
        ("--data", opts.data.is_some(), String::new()),
        ("--samples", opts.samples.is_some(), String::new()),
        ("--cache", opts.cache.is_some(), String::new()),
        ("--truncation", opts.truncation.is_some(), String::new()),
    ];
    for (flag, is_given, value) in given {
        if !is_given {
            continue;
        }
        let why = match (experiment, flag) {
            ("shift1d" | "ring", "--loss" | "--d-steps") => continue,
            ("score", "--checkpoint" | "--data" | "--samples" | "--cache" | "--truncation") => continue,
            ("saturation" | "dirac", "--d-steps") => continue,
            ("saturation", "--loss") => "it compares the minimax and the non-saturating losses itself",
            ("dirac", "--loss") => "it runs both the minimax and the non-saturating losses itself",
            ("optimal-d", "--loss") => {
                "its D trains on the cross-entropy loss, whose optimum is the D* it compares against"
            }
            ("optimal-d", "--d-steps") => "it trains D alone, against a fixed p_g",
            ("score", _) => "it scores a trained checkpoint",
            _ => "only lab score reads it",
        };
        let shown = if value.is_empty() { flag.to_string() } else { format!("{flag} {value}") };
        bail!("{shown}: lab {experiment} does not use {flag} ({why}); leave it out");
    }
    Ok(())
}

/// The error of an experiment whose numbers stopped being finite (`what` says which, where):
/// its steps were too large for the game.
pub(crate) fn diverged(experiment: &str, what: &str, lr: f32, opts: &LabOptions) -> anyhow::Error {
    // 0.1 as 0.1, 1e30 as 1e30 rather than its 31 digits.
    let shown = if (1e-3..1e4).contains(&lr) { lr.to_string() } else { format!("{lr:e}") };
    let rate = match opts.lr {
        Some(_) => format!("--lr {shown}"),
        None => format!("its default --lr {shown}"),
    };
    anyhow::anyhow!("lab {experiment} diverged: {what} with {rate}; lower --lr")
}

/// Ok while `who`'s loss is finite, else [`diverged`] naming it and the step (0-based `step`
/// of `steps`).
pub(crate) fn check_loss(
    experiment: &str,
    who: &str,
    loss: f64,
    (step, steps): (usize, usize),
    lr: f32,
    opts: &LabOptions,
) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(diverged(experiment, &format!("{who}'s loss is {loss} in step {} of {steps}", step + 1), lr, opts))
}

/// True when every value is finite.
pub(crate) fn all_finite(values: impl IntoIterator<Item = f64>) -> bool {
    values.into_iter().all(f64::is_finite)
}

// ---- helpers shared by the experiments ----

const DEV: Device = Device::Cpu;

pub(crate) fn normal_pdf(x: f64, mu: f64, sigma: f64) -> f64 {
    let z = (x - mu) / sigma;
    (-0.5 * z * z).exp() / (sigma * (std::f64::consts::TAU).sqrt())
}

/// A column tensor [n, 1] from f64 values.
pub(crate) fn column(xs: &[f64]) -> Tensor {
    Tensor::from_vec(xs.iter().map(|&x| x as f32).collect(), &[xs.len(), 1], DEV)
}

/// Write a CSV with a header line and one line per row.
pub(crate) fn write_csv(path: &Path, header: &[&str], rows: &[Vec<f64>]) -> Result<()> {
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        for (k, v) in r.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            write!(s, "{v}").unwrap();
        }
        s.push('\n');
    }
    crate::io::write_atomic(path, s.as_bytes())?;
    Ok(())
}

/// An MLP: Linear layers of the given widths with `act` between them (LeakyReLU(0.2) when
/// `leaky`, else ReLU), no activation after the last.
pub(crate) fn mlp(widths: &[usize], leaky: bool, rng: &mut Rng) -> Sequential {
    let mut s = Sequential::new();
    for (k, w) in widths.windows(2).enumerate() {
        s = s.push(Linear::new(w[0], w[1], true, rng, DEV));
        if k + 2 < widths.len() {
            s = if leaky { s.push(LeakyReLU(0.2)) } else { s.push(ReLU) };
        }
    }
    s
}

pub(crate) fn sigmoid64(a: f64) -> f64 {
    1.0 / (1.0 + (-a).exp())
}

/// Evaluate a module on a column of x values without recording a graph.
pub(crate) fn eval_column(m: &dyn Module, xs: &[f64]) -> Vec<f64> {
    crate::no_grad(|| m.forward(&column(xs)).to_vec().into_iter().map(f64::from).collect())
}

#[cfg(test)]
mod tests {
    use super::Experiment;
    use clap::ValueEnum;

    /// `run` finds an experiment by `name`, the CLI by clap's derived name: they must agree.
    #[test]
    fn experiment_names_are_clap_s() {
        for e in Experiment::value_variants() {
            assert_eq!(e.to_possible_value().map(|v| v.get_name().to_string()).as_deref(), Some(e.name()));
        }
    }
}
