//! The training loop behind `dcgan train`: data, models, the step, and everything a run
//! leaves in its directory (see the README for the layout).

use super::augment::DiffAugment;
use super::checkpoint::{self, RunState};
use super::config::{DataFormatArg, TrainConfig};
use super::models::{discriminator, generator, generator_input, one_hot, spectral_norm_discriminator};
use super::step::{ClassLabels, Gan, GeneratorEma, InstanceNoise, StepMetrics};
use crate::backend::Device;
use crate::backend::cpu::MatmulPrecision;
use crate::data::{self, DataFormat, Dataset, Loader};
use crate::io::{self, MetricsCsv};
use crate::nn::Module;
use crate::optim::Adam;
use crate::rng::Rng;
use crate::tensor::Tensor;
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Samples in every grid: 64 as in PyTorch's example, an 8×8 grid.
pub const GRID_SAMPLES: usize = 64;
/// Images a row in every grid.
pub const GRID_COLUMNS: usize = 8;
/// The most rows of a conditional G's grid: one per class, for the first classes.
pub const GRID_CLASS_ROWS: usize = 16;

/// Columns of metrics.csv: only numbers of the game, so a resumed run's file is
/// byte-identical to an uninterrupted one (timings go to timing.csv).
pub const METRIC_COLUMNS: &[&str] = &[
    "step",
    "epoch",
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake_before",
    "d_fake_after",
    "grad_norm_d",
    "grad_norm_g",
];

/// Set by Ctrl-C; the loop checkpoints and stops at the end of the current step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub struct TrainOptions {
    pub out: PathBuf,
    /// Continue from this checkpoint (or run directory).
    pub resume: Option<PathBuf>,
    /// Plain log lines even on a terminal.
    pub no_progress: bool,
    /// The [`TrainConfig`] fields the user set on the command line: with `resume`, the
    /// run-time ones among them replace the run's, and any other that differs from the run's
    /// is an error rather than silently dropped.
    pub given: Vec<String>,
}

/// Settings a resumed run may change: where and how it runs and reports, not what it learns
/// (the thread count leaves the bits alone; another device is the user's call).
const RUNTIME_FIELDS: [&str; 6] =
    ["device", "threads", "sample_every", "checkpoint_every", "log_every", "save_dtype"];

/// The run's own settings with the run-time ones the user gave replaced, for `--resume`. Any
/// other field the user gave must match the run's.
fn resumed_config(run: &TrainConfig, cli: &TrainConfig, given: &[String]) -> Result<TrainConfig> {
    let (run_json, cli_json) = (serde_json::to_value(run)?, serde_json::to_value(cli)?);
    let mut merged = run_json.clone();
    for field in given {
        let (Some(theirs), Some(ours)) = (run_json.get(field), cli_json.get(field)) else { continue };
        if RUNTIME_FIELDS.contains(&field.as_str()) || field == "data" && data_moved(theirs, ours) {
            merged[field] = ours.clone();
        } else if !matches!(field.as_str(), "steps" | "epochs") && theirs != ours {
            // As typed: the f32 settings in their shortest f32 form, not JSON's f64 expansion.
            let show = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "none".to_string(),
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) if !n.is_u64() && !n.is_i64() => {
                    (n.as_f64().unwrap_or(f64::NAN) as f32).to_string()
                }
                v => v.to_string(),
            };
            bail!(
                "--{} {}: the run being resumed has {}, and a resumed run keeps what it was trained \
                 with (drop the flag, or start a new run)",
                field.replace('_', "-"),
                show(ours),
                show(theirs)
            );
        }
    }
    let mut cfg: TrainConfig = serde_json::from_value(merged)?;
    // The length comes from the command line whenever it gives one (a total to reach).
    if cli.steps.is_some() || cli.epochs.is_some() {
        cfg.steps = cli.steps;
        cfg.epochs = cli.epochs;
    }
    Ok(cfg)
}

/// Whether `--data` on a resume names the run's dataset at a new place: the run's path is gone
/// (or names the same file or folder, typed otherwise) and the new one exists. Its images are
/// then checked against the checkpoint as usual (channels, classes, count).
fn data_moved(run: &serde_json::Value, cli: &serde_json::Value) -> bool {
    let (Some(run), Some(cli)) = (run.as_str(), cli.as_str()) else { return false };
    let (run, cli) = (Path::new(run), Path::new(cli));
    cli.exists()
        && (!run.exists() || matches!((run.canonicalize(), cli.canonicalize()), (Ok(a), Ok(b)) if a == b))
}

pub struct Summary {
    pub steps: u64,
    pub last: Option<StepMetrics>,
    pub interrupted: bool,
    pub out: PathBuf,
}

fn data_format(f: DataFormatArg) -> DataFormat {
    match f {
        DataFormatArg::Auto => DataFormat::Auto,
        DataFormatArg::Mnist => DataFormat::Mnist,
        DataFormatArg::Cifar10 => DataFormat::Cifar10,
        DataFormatArg::Folder => DataFormat::Folder,
    }
}

pub fn open_dataset(cfg: &TrainConfig) -> Result<Arc<dyn Dataset>> {
    let ds: Box<dyn Dataset> = if cfg.data == "synthetic" {
        // --format says how to read files; the synthetic shapes have none to read.
        if cfg.format != DataFormatArg::Auto {
            let format = clap::ValueEnum::to_possible_value(&cfg.format).expect("every format has a name");
            bail!(
                "--format {}: --data synthetic is generated, not read from files; leave --format out \
                 or give --data a dataset path",
                format.get_name()
            );
        }
        data::synthetic(cfg.seed, cfg.image_size)
    } else {
        data::open(Path::new(&cfg.data), data_format(cfg.format), cfg.image_size, cfg.channels)?
    };
    Ok(Arc::from(ds))
}

/// Generator steps the run should reach.
fn total_steps(cfg: &TrainConfig, ds: &dyn Dataset) -> Result<u64> {
    match (cfg.steps, cfg.epochs, ds.len()) {
        (Some(s), _, _) => Ok(s),
        (None, Some(_), None) => {
            bail!("--epochs needs a finite dataset; synthetic data is unlimited: use --steps")
        }
        (None, Some(e), Some(len)) => {
            let Some(batches) = ((len / cfg.batch_size) as u64).checked_mul(e) else {
                bail!("--epochs {e}: {e} passes over {len} images is more steps than a run can count");
            };
            Ok(batches.div_ceil(cfg.d_steps as u64).max(1))
        }
        (None, None, _) => Ok(crate::gan::DEFAULT_STEPS),
    }
}

/// Where a run writes must cost no data. A new run goes into a new or empty directory. A
/// resumed run goes into its own directory (or a new or empty one), and there only from its
/// newest checkpoint: continuing from an older one would write over the newer ones. And a run
/// inside its own image folder would train on its sample grids next time.
fn check_out_dir(out: &Path, resumed: Option<(&Path, u64)>, data: &str) -> Result<()> {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    let own_run =
        resumed.and_then(|(dir, _)| checkpoint::run_dir_of(dir).ok()).is_some_and(|run| same(out, &run));
    if out.is_file() {
        bail!("--out {}: is a file; a run writes into a directory", out.display());
    }
    let holds_files = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    if !own_run && holds_files {
        bail!(
            "--out {}: already holds files; a run writes into a new or empty directory so that nothing \
             there is overwritten (to continue a run, pass --resume with its directory)",
            out.display()
        );
    }
    if let Some((dir, step)) = resumed
        && own_run
        && let Some(newer) = checkpoint::list(out)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| checkpoint::read_state(&c).ok().map(|s| (s.step, c)))
            .find(|&(s, _)| s > step)
    {
        bail!(
            "--resume {}: {} holds a newer checkpoint, {}, which continuing from step {step} would \
             overwrite; resume from the newest (--resume {}), or continue this one into a new run \
             with --out DIR",
            dir.display(),
            out.display(),
            newer.1.display(),
            out.display()
        );
    }
    let data = Path::new(data);
    if data.is_dir()
        && let (Ok(data), Ok(out)) = (std::path::absolute(data), std::path::absolute(out))
        && out.starts_with(&data)
    {
        bail!(
            "--out {}: inside the dataset folder {}, whose images the run's sample grids would join; \
             put the run elsewhere",
            out.display(),
            data.display()
        );
    }
    Ok(())
}

fn check_writable(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("--out {}: cannot create the directory", out.display()))?;
    let probe = out.join(".dcgan-write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("--out {}: directory is not writable", out.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn install_ctrl_c() {
    // A second handler (a second train call in one process) is refused by ctrlc; the first
    // one already sets the same flag.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: stop now
        }
    });
}

/// Noise for a batch: N(0, 1), [n, nz, 1, 1], drawn on the host from the run's generator.
pub fn noise(n: usize, nz: usize, rng: &mut Rng, device: Device) -> Tensor {
    Tensor::randn(&[n, nz, 1, 1], 0.0, 1.0, rng, device)
}

/// G's input for the training run's sample grids, from the run's seed alone (so it is the same
/// on resume): [`GRID_SAMPLES`] noise vectors; for a conditional G a row per class (up to
/// [`GRID_CLASS_ROWS`]), with the same [`GRID_COLUMNS`] noise vectors in every row, so that
/// down a column only the class changes.
pub fn grid_input(nz: usize, classes: usize, seed: u64, device: Device) -> Tensor {
    let mut rng = Rng::new(seed ^ 0xF1CED);
    let vectors = if classes == 0 { GRID_SAMPLES } else { GRID_COLUMNS };
    let mut z = vec![0.0; vectors * nz];
    rng.fill_normal(&mut z, 0.0, 1.0);
    if classes == 0 {
        return generator_input(z, nz, &[], 0, device);
    }
    let rows = classes.min(GRID_CLASS_ROWS);
    let labels: Vec<u8> = (0..rows).flat_map(|c| [c as u8; GRID_COLUMNS]).collect();
    generator_input(z.repeat(rows), nz, &labels, classes, device)
}

/// The classes of a `--conditional` run's data, or why it has none to condition on.
fn data_classes(cfg: &TrainConfig, dataset: &dyn Dataset) -> Result<usize> {
    match data::class_count(dataset) {
        Some(c) if c >= 2 => Ok(c),
        Some(c) => bail!("--conditional: {} has {c} class; conditioning needs at least 2", cfg.data),
        None => bail!(
            "--conditional: {} has no class labels to use ({}); a conditional GAN needs labelled \
             data: MNIST-family idx with its labels file, CIFAR-10, or an image folder with a \
             subfolder per class",
            cfg.data,
            dataset.describe()
        ),
    }
}

/// G in eval mode (running BatchNorm statistics) without recording: sampling never disturbs
/// training.
pub fn sample_images(gan: &mut Gan, z: &Tensor) -> Tensor {
    gan.generator.set_training(false);
    let images = crate::no_grad(|| gan.generator.forward(z));
    gan.generator.set_training(true);
    images
}

/// `images` [n, c, h, w] in [-1, 1] as a PNG grid, `columns` images a row.
pub fn save_grid(path: &Path, images: &Tensor, columns: usize) -> Result<()> {
    let [n, c, h, w] = images.dims4("save_grid");
    io::save_image_grid(path, &images.to_vec(), n, c, h, w, columns)?;
    Ok(())
}

/// What a run stopped by a NaN leaves behind.
fn kept_note(last_checkpoint: Option<u64>) -> String {
    match last_checkpoint {
        Some(s) => format!("the last good checkpoint, {}, is untouched", checkpoint::step_dir_name(s)),
        None => "no checkpoint had been written yet".to_string(),
    }
}

/// What to change after a run diverged: the learning rates it has, and huge instance noise.
fn divergence_advice(cfg: &TrainConfig) -> String {
    let lr = if cfg.lr_d.is_some() { "--lr or --lr-d" } else { "--lr" };
    match cfg.instance_noise {
        Some(sigma) => format!("Try a lower {lr}, or an --instance-noise below {sigma}."),
        None => format!("Try a lower {lr}."),
    }
}

fn log_line(step: u64, total: u64, epoch: u64, m: &StepMetrics, ms: f64, img_s: f64) -> String {
    format!(
        "step {step:>6}/{total} epoch {epoch:>3} | loss_D {:.4} loss_G {:.4} | D(x) {:.3} D(G(z)) {:.3} -> {:.3} | {ms:.1} ms/step {img_s:.0} img/s",
        m.loss_d, m.loss_g, m.d_real, m.d_fake_before, m.d_fake_after
    )
}

/// losses.png from metrics.csv: the whole history, resumed parts included.
pub fn plot_losses(out: &Path) -> Result<()> {
    let (cols, rows) = io::read_metrics_csv(&out.join("metrics.csv"))?;
    let col = |name: &str| -> Vec<f64> {
        let i = cols.iter().position(|c| c == name).expect("metrics.csv column");
        rows.iter().map(|r| r[i]).collect()
    };
    let steps = col("step");
    let series = [
        ("loss_D", col("loss_d")),
        ("loss_G", col("loss_g")),
        ("D(x)", col("d_real")),
        ("D(G(z))", col("d_fake_before")),
    ];
    let refs: Vec<(&str, &[f64])> = series.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let opts = io::PlotOptions::new("DCGAN training", "generator step", "loss / probability");
    io::plot_series(&out.join("losses.png"), &opts, &steps, &refs)?;
    Ok(())
}

/// layer_grad_norms.png from layers.csv: log10 of the gradient norm of each of `names`. None
/// before the first log step (a run stopped by Ctrl-C early).
fn plot_layer_norms(out: &Path, names: &[&str]) -> Result<()> {
    let (cols, rows) = io::read_metrics_csv(&out.join("layers.csv"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let col = |name: &str| -> Vec<f64> {
        let i = cols.iter().position(|c| c == name).expect("layers.csv column");
        rows.iter().map(|r| r[i]).collect()
    };
    let series: Vec<(&str, Vec<f64>)> =
        names.iter().map(|&n| (n, col(n).iter().map(|v| v.max(1e-30).log10()).collect())).collect();
    let refs: Vec<(&str, &[f64])> = series.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let opts = io::PlotOptions::new("gradient norm of each convolution", "generator step", "log10 ‖grad‖");
    io::plot_series(&out.join("layer_grad_norms.png"), &opts, &col("step"), &refs)?;
    Ok(())
}

pub fn train(mut cfg: TrainConfig, opts: &TrainOptions) -> Result<Summary> {
    let resume_dir = opts.resume.as_deref().map(checkpoint::resolve).transpose()?;
    let resumed: Option<RunState> = resume_dir.as_deref().map(checkpoint::read_state).transpose()?;
    if let Some(state) = &resumed {
        cfg = resumed_config(&state.config, &cfg, &opts.given)?;
    }
    cfg.validate()?;
    let device = crate::gan::parse_device(&cfg.device)?;
    crate::gan::config::check_matmul_device(cfg.matmul, device)?;
    // The convolutions read it on this thread, the one that runs the training loop.
    let _precision = crate::backend::cpu::MatmulPrecisionScope::new(cfg.matmul);
    if let Some(t) = cfg.threads {
        // Only the first call in a process can size the global pool; later calls keep it.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    let dataset = open_dataset(&cfg)?;
    let channels = match &resumed {
        Some(s) => s.channels,
        None => dataset.channels(),
    };
    if dataset.channels() != channels {
        bail!(
            "{}: data has {} channels, the checkpoint was trained on {channels}",
            cfg.data,
            dataset.channels()
        );
    }
    let classes = match &resumed {
        Some(s) if s.classes > 0 && data::class_count(dataset.as_ref()) != Some(s.classes) => {
            bail!(
                "{}: the data's labels are not the {} classes the checkpoint was trained on",
                cfg.data,
                s.classes
            )
        }
        Some(s) => s.classes,
        None if cfg.conditional => data_classes(&cfg, dataset.as_ref())?,
        None => 0,
    };
    let total = total_steps(&cfg, dataset.as_ref())?;
    if cfg.instance_noise.is_some() && cfg.instance_noise_steps.is_none() {
        cfg.instance_noise_steps = Some(total);
    }
    let model = cfg.model(channels, classes);
    crate::gan::config::check_training_memory(&model, cfg.batch_size, cfg.d_steps, device)?;
    let loader_state = resumed.as_ref().map(|s| s.loader).unwrap_or_default();
    let mut loader =
        Loader::restore(dataset.clone(), cfg.batch_size, cfg.seed, loader_state)?.with_mirror(cfg.mirror);
    // Only now, with every setting and the data checked: a rejected run leaves no directory.
    let out = opts.out.clone();
    check_out_dir(&out, resume_dir.as_deref().zip(resumed.as_ref().map(|s| s.step)), &cfg.data)?;
    check_writable(&out)?;

    let mut rng = Rng::new(cfg.seed);
    let g = generator(&model, &mut rng, device);
    let d = if cfg.spectral_norm {
        spectral_norm_discriminator(&model, &mut rng, device)
    } else {
        discriminator(&model, &mut rng, device)
    };
    let opt_g = Adam::new(g.parameters(), cfg.lr, (cfg.beta1, cfg.beta2));
    let opt_d = Adam::new(d.parameters(), cfg.lr_d(), (cfg.beta1, cfg.beta2));
    // The average's own initial values are overwritten: a generator of its own stream, so
    // the run's draws are the same with or without --ema.
    let ema = cfg.ema.map(|decay| GeneratorEma::new(decay, &g, generator(&model, &mut Rng::new(0), device)));
    let instance_noise = cfg.instance_noise.map(|sigma| InstanceNoise {
        sigma,
        anneal_steps: cfg.instance_noise_steps.expect("set above"),
        seed: cfg.seed,
    });
    let mut gan = Gan {
        generator: g,
        discriminator: d,
        opt_g,
        opt_d,
        loss: cfg.loss,
        ema,
        real_label: cfg.real_label,
        instance_noise,
        diff_augment: cfg.diffaugment.map(|policy| DiffAugment { seed: cfg.seed, policy }),
    };
    // Fixed noise for the sample grids: its own stream, so it is the same on resume.
    let fixed_z = grid_input(cfg.nz, classes, cfg.seed, device);

    let mut step = 0;
    let mut epoch = 0;
    if let (Some(dir), Some(state)) = (&resume_dir, &resumed) {
        checkpoint::load_into(dir, &mut gan)?;
        rng = Rng::from_state(state.rng);
        step = state.step;
        epoch = state.epoch;
        if step >= total {
            bail!(
                "--resume {}: already at step {step} of {total}; pass a larger --steps to continue",
                dir.display()
            );
        }
        eprintln!("resuming {} at step {step}", dir.display());
    }

    io::write_json_atomic(&out.join("config.json"), &cfg)?;
    let mut metrics =
        MetricsCsv::open(&out.join("metrics.csv"), METRIC_COLUMNS, resumed.as_ref().map(|s| s.step))?;
    let mut timing = MetricsCsv::open(
        &out.join("timing.csv"),
        &["step", "ms", "img_per_s"],
        resumed.as_ref().map(|s| s.step),
    )?;
    // Every parameter's gradient norm at the log steps.
    let parameters = gan.parameter_shapes();
    let layer_columns: Vec<&str> =
        std::iter::once("step").chain(parameters.iter().map(|(name, _)| name.as_str())).collect();
    let mut layers =
        MetricsCsv::open(&out.join("layers.csv"), &layer_columns, resumed.as_ref().map(|s| s.step))?;
    std::fs::create_dir_all(out.join("samples"))
        .with_context(|| format!("cannot create {}/samples", out.display()))?;

    eprintln!("device: {device}; data: {}", dataset.describe());
    if cfg.matmul == MatmulPrecision::Bf16 {
        eprintln!("convolution products in bf16 {}", crate::backend::cpu::amx::path().describe());
    }
    eprintln!(
        "G {} params, D {} params; image {}x{}x{}, batch {}, {} steps -> {}",
        checkpoint::parameter_count(&gan.generator),
        checkpoint::parameter_count(&gan.discriminator),
        channels,
        cfg.image_size,
        cfg.image_size,
        cfg.batch_size,
        total,
        out.display()
    );

    let image_len = channels * cfg.image_size * cfg.image_size;
    let batch_shape = [cfg.batch_size, channels, cfg.image_size, cfg.image_size];
    let mut host_batch = Vec::with_capacity(cfg.batch_size * image_len);
    if step == 0 {
        // A grid of real images from a loader of its own, so training batches are unchanged.
        let mut peek =
            Loader::new(dataset.clone(), cfg.batch_size.min(dataset.len().unwrap_or(usize::MAX)), cfg.seed)?
                .with_mirror(cfg.mirror);
        peek.next_batch(&mut host_batch);
        let n = (host_batch.len() / image_len).min(GRID_SAMPLES);
        io::save_image_grid(
            &out.join("real.png"),
            &host_batch[..n * image_len],
            n,
            channels,
            cfg.image_size,
            cfg.image_size,
            8,
        )?;
    }

    install_ctrl_c();
    let progress = (!opts.no_progress && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("progress template"),
        );
        pb.set_position(step);
        pb
    });
    let say = |line: &str| match &progress {
        Some(pb) => pb.println(line),
        None => eprintln!("{line}"),
    };

    let mut last = None;
    let mut last_checkpoint = resumed.as_ref().map(|s| s.step);
    let mut interrupted = false;
    while step < total {
        let t0 = Instant::now();
        let mut reals = Vec::with_capacity(cfg.d_steps);
        let mut zs = Vec::with_capacity(cfg.d_steps);
        let mut labels = Vec::new();
        for _ in 0..cfg.d_steps {
            // G is asked for the real batch's classes: D then sees the same mix of classes
            // real and fake, whatever the data's class balance.
            let batch_labels: Vec<u8> = match classes {
                0 => Vec::new(),
                _ => loader
                    .peek_indices()
                    .iter()
                    .map(|&i| dataset.label(i).expect("every label checked"))
                    .collect(),
            };
            let info = loader.next_batch(&mut host_batch);
            epoch = info.epoch;
            reals.push(Tensor::from_vec(host_batch.clone(), &batch_shape, device));
            let mut z = vec![0.0; cfg.batch_size * cfg.nz];
            rng.fill_normal(&mut z, 0.0, 1.0);
            zs.push(generator_input(z, cfg.nz, &batch_labels, classes, device));
            if classes > 0 {
                let y = one_hot(&batch_labels, classes, device);
                labels.push(ClassLabels { real: y.clone(), fake: y });
            }
        }
        let log_step = (step + 1) % cfg.log_every == 0 || step + 1 == total;
        let (m, layer_norms) = gan.step_with(&reals, &zs, &labels, log_step);
        step += 1;
        let secs = t0.elapsed().as_secs_f64();
        let img_s = (cfg.batch_size * cfg.d_steps) as f64 / secs;

        for (name, v) in [
            ("loss_D", m.loss_d),
            ("loss_G", m.loss_g),
            ("grad_norm_D", m.grad_norm_d),
            ("grad_norm_G", m.grad_norm_g),
        ] {
            if !v.is_finite() {
                let (kept, advice) = (kept_note(last_checkpoint), divergence_advice(&cfg));
                bail!("step {step}: {name} is {v}; training stopped ({kept}). {advice}");
            }
        }
        metrics.row(&[
            &step,
            &epoch,
            &m.loss_d,
            &m.loss_g,
            &m.d_real,
            &m.d_fake_before,
            &m.d_fake_after,
            &m.grad_norm_d,
            &m.grad_norm_g,
        ])?;
        timing.row(&[&step, &(secs * 1e3), &img_s])?;
        if log_step {
            let fields: Vec<&dyn io::CsvField> = std::iter::once(&step as &dyn io::CsvField)
                .chain(layer_norms.iter().map(|v| v as _))
                .collect();
            layers.row(&fields)?;
        }
        if let Some(pb) = &progress {
            pb.set_position(step);
            pb.set_message(format!("loss_D {:.3} loss_G {:.3}", m.loss_d, m.loss_g));
        }
        if step % cfg.log_every == 0 || step == total {
            say(&log_line(step, total, epoch, &m, secs * 1e3, img_s));
        }
        if step % cfg.sample_every == 0 || step == total {
            let images = match &gan.ema {
                Some(ema) => crate::no_grad(|| ema.generator.forward(&fixed_z)),
                None => sample_images(&mut gan, &fixed_z),
            };
            save_grid(
                &out.join("samples").join(format!("{}.png", checkpoint::step_dir_name(step))),
                &images,
                GRID_COLUMNS,
            )?;
        }
        interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if step % cfg.checkpoint_every == 0 || step == total || interrupted {
            let state = RunState {
                format_version: checkpoint::FORMAT_VERSION,
                created_by: format!("dcgan {}", env!("CARGO_PKG_VERSION")),
                config: cfg.clone(),
                step,
                epoch,
                rng: rng.state(),
                loader: loader.state(),
                channels,
                classes,
            };
            // A state that cannot be resumed is not saved: finite losses can still come with an
            // infinite BatchNorm variance (from huge instance noise, say).
            if let Some(what) = checkpoint::first_non_finite(&gan) {
                let (kept, advice) = (kept_note(last_checkpoint), divergence_advice(&cfg));
                bail!(
                    "step {step}: {what} holds a NaN or infinity; training stopped unsaved ({kept}). {advice}"
                );
            }
            // The checkpoint's host copies would otherwise sit on top of the idle buffers.
            crate::backend::cpu::pool::release();
            let dir = checkpoint::save(&out, &state, &gan)?;
            last_checkpoint = Some(step);
            if interrupted {
                say(&format!(
                    "interrupted: checkpoint written to {}; continue with --resume {}",
                    dir.display(),
                    out.display()
                ));
            }
        }
        last = Some(m);
        if interrupted {
            break;
        }
    }
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    plot_losses(&out)?;
    // The convolution weights only: BatchNorm's scales and shifts stay in the CSV.
    let convs: Vec<&str> =
        parameters.iter().filter(|(_, shape)| shape.len() == 4).map(|(n, _)| n.as_str()).collect();
    plot_layer_norms(&out, &convs)?;
    Ok(Summary { steps: step, last, interrupted, out })
}
