//! The `dcgan` command line. Each subcommand parses its flags here and calls the library;
//! errors print as one message (with their causes) and exit 1, never as a panic.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dcgan::backend::cpu::MatmulPrecision;
use dcgan::gan::GanLoss;
use dcgan::gan::config::{DataFormatArg, TrainConfig, WeightDtype};
use dcgan::gan::sample::{SampleOptions, sample};
use dcgan::gan::trainer::{TrainOptions, train};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dcgan",
    version,
    about = "Train DCGANs with a from-scratch tensor engine (CPU and CUDA kernels)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a DCGAN (Radford et al.) on synthetic shapes, MNIST-family idx, CIFAR-10 or an image folder.
    Train(TrainArgs),
    /// Generate images from a checkpoint's generator (BatchNorm in eval mode).
    Sample(SampleArgs),
    /// Time whole DCGAN training steps and show where the time goes.
    Bench(BenchArgs),
    /// Compile every CUDA kernel with NVRTC and print registers, shared memory and spills.
    Kernels(KernelsArgs),
    /// The classic GAN experiments (shift1d, optimal-d, saturation, ring, dirac) and checkpoint scoring (score).
    Lab(LabArgs),
}

#[derive(Args)]
#[command(allow_negative_numbers = true, after_help = dcgan::lab::defaults_help())]
struct LabArgs {
    #[arg(value_enum)]
    experiment: dcgan::lab::Experiment,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for the plots and the CSV (default lab/<experiment>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    json: bool,
    /// The game's losses (shift1d: non-saturating or minimax; ring: any) [default:
    /// non-saturating].
    #[arg(long, value_enum)]
    loss: Option<GanLoss>,
    /// Discriminator steps per generator step (shift1d, saturation, ring, dirac) [default: 1].
    #[arg(long)]
    d_steps: Option<usize>,
    /// Learning rate (default: the experiment's own, listed below).
    #[arg(long)]
    lr: Option<f32>,
    /// Training iterations (default: the experiment's own, listed below).
    #[arg(long)]
    steps: Option<usize>,
    /// score: a checkpoint, or a run directory (or its checkpoints/) to score every checkpoint.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// score: the labelled MNIST-family data the checkpoint was trained on.
    #[arg(long)]
    data: Option<PathBuf>,
    /// score: generated samples per checkpoint [default: 2000].
    #[arg(long)]
    samples: Option<usize>,
    /// score: cache folder for the trained classifier [default: $XDG_CACHE_HOME/dcgan,
    /// ~/.cache/dcgan or .cache/dcgan].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// score: draw the samples' noise with the truncation trick at this threshold (as
    /// `dcgan sample --truncation`), to measure what it trades.
    #[arg(long, value_name = "THRESHOLD")]
    truncation: Option<f32>,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct BenchArgs {
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    #[arg(long, default_value_t = 3)]
    channels: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 100)]
    nz: usize,
    #[arg(long, default_value_t = 64)]
    ngf: usize,
    #[arg(long, default_value_t = 64)]
    ndf: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first (allocations, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// cpu, emu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    threads: Option<usize>,
    /// Peak GFLOP/s to report against (default: measured with the engine's gemm).
    #[arg(long)]
    peak: Option<f64>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The step's losses, as `train --loss`.
    #[arg(long, value_enum, default_value = "non-saturating")]
    loss: GanLoss,
    /// D as `train --spectral-norm` builds it.
    #[arg(long)]
    spectral_norm: bool,
    /// Instance noise of this σ on every image D sees, held constant (as `train
    /// --instance-noise` before it anneals).
    #[arg(long, value_name = "SIGMA")]
    instance_noise: Option<f32>,
    /// The step of `train --conditional` on CLASSES classes (10 when given alone), the
    /// batch's labels spread evenly over them.
    #[arg(long, value_name = "CLASSES", num_args = 0..=1, default_missing_value = "10")]
    conditional: Option<usize>,
    /// DiffAugment on every image D sees, as `train --diffaugment [POLICY]`.
    #[arg(long, value_name = "POLICY", num_args = 0..=1, default_missing_value = "color,translation,cutout")]
    diffaugment: Option<dcgan::gan::DiffAugmentPolicy>,
    /// The convolutions' products, as `train --matmul`.
    #[arg(long, value_enum, default_value = "f32")]
    matmul: MatmulPrecision,
}

#[derive(Args)]
struct KernelsArgs {
    /// Target architecture.
    #[arg(long, default_value = "sm_90", value_parser = ["sm_80", "sm_86", "sm_89", "sm_90"])]
    arch: String,
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// "synthetic" (procedural shapes, no files needed) or a path to a dataset.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Dataset format; auto detects idx (raw or .gz), CIFAR-10 binary and image folders.
    #[arg(long, value_enum, default_value = "auto")]
    format: DataFormatArg,
    /// Image side, a power of two from 16; the networks deepen with it. Default: 16 for the
    /// synthetic shapes (so the default run takes under 5 minutes on 2 cores), else 64, the
    /// paper's.
    #[arg(long)]
    image_size: Option<usize>,
    /// Image channels, 1 or 3 (default: the data's own).
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Generator steps to reach (a total: with --resume, the run continues up to it).
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Passes over a finite dataset (instead of --steps).
    #[arg(long)]
    epochs: Option<u64>,
    /// Size of the latent vector z.
    #[arg(long, default_value_t = 100)]
    nz: usize,
    /// Generator width (channels of its last hidden layer).
    #[arg(long, default_value_t = 64)]
    ngf: usize,
    /// Discriminator width (channels of its first layer).
    #[arg(long, default_value_t = 64)]
    ndf: usize,
    /// Adam's learning rate, G's and (without --lr-d) D's.
    #[arg(long, default_value_t = 2e-4)]
    lr: f32,
    /// D's own learning rate: the two time-scale update rule (Heusel et al. 2017) gives D a
    /// larger one than G, e.g. --lr 1e-4 --lr-d 4e-4.
    #[arg(long)]
    lr_d: Option<f32>,
    /// D's target for real images; 0.9 is one-sided label smoothing (Salimans et al. 2016).
    #[arg(long, default_value_t = 1.0)]
    real_label: f32,
    #[arg(long, default_value_t = 0.5)]
    beta1: f32,
    #[arg(long, default_value_t = 0.999)]
    beta2: f32,
    /// Discriminator updates per generator update (k in Goodfellow et al.'s Algorithm 1).
    #[arg(long, default_value_t = 1)]
    d_steps: usize,
    /// The losses D and G minimise: non-saturating (G: −log D(G(z))), minimax (G: log(1 −
    /// D(G(z)))), least-squares (LSGAN, Mao et al. 2017) or hinge (as SN-GAN and BigGAN).
    #[arg(long, value_enum, default_value = "non-saturating")]
    loss: GanLoss,
    /// auto, cpu, cuda, cuda:N, or emu (the CUDA kernels emulated on the CPU, for testing).
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory, new or empty (default runs/<UTC timestamp>; with --resume, the resumed run's).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write a sample grid from fixed noise every N steps.
    #[arg(long, default_value_t = 100)]
    sample_every: u64,
    /// Write a checkpoint every N steps (and always at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Print a log line every N steps.
    #[arg(long, default_value_t = 20)]
    log_every: u64,
    /// Continue a run from a checkpoint or run directory, bit for bit (CPU). It keeps its own
    /// settings: only its length, device, threads, reporting intervals and --save-dtype may
    /// change; any other flag must match the run's.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Storage type of the weights files (the optimizer file keeps f32 masters).
    #[arg(long, value_enum, default_value = "f32")]
    save_dtype: WeightDtype,
    /// Keep an exponential moving average of G's weights with this decay (e.g. 0.999): the
    /// sample grids and `dcgan sample` then use the average, checkpoints keep both.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f32>,
    /// Add N(0, σ²) noise to every image D sees, real and generated, with σ falling linearly
    /// from SIGMA to 0 over --instance-noise-steps (instance noise, Sønderby et al. 2016),
    /// e.g. 0.3.
    #[arg(long, value_name = "SIGMA")]
    instance_noise: Option<f32>,
    /// Steps over which the instance noise falls to 0 (default: the run's length when it
    /// starts; a resumed run keeps its schedule).
    #[arg(long, value_name = "STEPS", requires = "instance_noise")]
    instance_noise_steps: Option<u64>,
    /// Flip each real image left to right with probability ½ every time it is drawn (mirror
    /// augmentation, for data whose mirror image is as plausible: faces, scenes, not text).
    #[arg(long)]
    mirror: bool,
    /// Spectrally normalise every convolution of D and drop D's BatchNorm (SN-GAN, Miyato et
    /// al. 2018; pairs with --loss hinge).
    #[arg(long)]
    spectral_norm: bool,
    /// Class-conditional: G draws the class it is given (one-hot appended to z, Mirza &
    /// Osindero 2014) and D is a projection discriminator (Miyato & Koyama 2018). Needs
    /// labelled data (MNIST-family idx with its labels file, CIFAR-10, an image folder with a
    /// subfolder per class); sample a class with `dcgan sample --class`.
    #[arg(long)]
    conditional: bool,
    /// DiffAugment (Zhao et al. 2020): every image D sees, real or generated, augmented
    /// differentiably so that D cannot memorise a small dataset. POLICY: any of color
    /// (brightness, saturation, contrast), translation (up to 1/8 of the side) and cutout (a
    /// square of half the side), comma-separated; all three when given alone.
    #[arg(long, value_name = "POLICY", num_args = 0..=1, default_missing_value = "color,translation,cutout")]
    diffaugment: Option<dcgan::gan::DiffAugmentPolicy>,
    /// How the convolutions multiply on the CPU: f32, or bf16 (inputs rounded to bfloat16,
    /// sums in f32, as PyTorch's autocast; on the AMX tile units of Xeons from Sapphire
    /// Rapids on, about twice as fast as f32; without AMX on AVX512-BF16 dot products, whose
    /// speed against f32 depends on the CPU (`dcgan bench` compares); elsewhere on f32
    /// FMAs at about half the f32 path's speed).
    #[arg(long, value_enum, default_value = "f32")]
    matmul: MatmulPrecision,
    /// Plain log lines instead of a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct SampleArgs {
    /// A checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of images (with --z: as many as it holds).
    #[arg(long, default_value_t = 64, conflicts_with = "z")]
    n: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0, conflicts_with = "z")]
    seed: u64,
    /// safetensors file with the noise as a tensor "z" [n, nz, 1, 1] (instead of --seed).
    #[arg(long)]
    z: Option<PathBuf>,
    /// Directory for samples.png and samples.safetensors; one that already holds them (an
    /// earlier sample's) is refused rather than overwritten.
    #[arg(long, default_value = "samples")]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Walk the latent space: STEPS images from each of the noise vectors to the next, a grid
    /// row each (--n 10 --walk 8: 9 rows of 8).
    #[arg(long, value_name = "STEPS")]
    walk: Option<usize>,
    /// G's own weights, where the run also kept their running average (`train --ema`, which
    /// sampling uses by default).
    #[arg(long)]
    no_ema: bool,
    /// The walk's path between two noise vectors.
    #[arg(long, value_enum, default_value = "slerp", requires = "walk")]
    path: dcgan::gan::sample::LatentPath,
    /// The truncation trick (Brock et al. 2019): redraw every noise component beyond
    /// ±THRESHOLD, trading variety for images nearer G's typical ones (e.g. 0.5).
    #[arg(long, value_name = "THRESHOLD", conflicts_with = "z")]
    truncation: Option<f32>,
    /// The class to draw, for a conditional checkpoint (`train --conditional`); by default
    /// row r of the grid draws class r (mod the number of classes).
    #[arg(long, value_name = "CLASS")]
    class: Option<usize>,
}

/// runs/YYYYmmdd-HHMMSS in UTC, from the system clock (no timezone database needed).
fn default_run_dir() -> PathBuf {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    PathBuf::from(format!(
        "runs/{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// A dataset path made absolute, so that the run can be resumed from any directory; as typed
/// when it does not resolve (opening it then says why) or is "synthetic".
fn absolute_data_path(data: String) -> String {
    if data == "synthetic" {
        return data;
    }
    match std::fs::canonicalize(&data).map(|p| p.into_os_string().into_string()) {
        Ok(Ok(path)) => path,
        _ => data,
    }
}

/// `dcgan train`'s status after Ctrl-C: 128 + SIGINT, as shells report an interrupted command,
/// so that `dcgan train ... && next` does not go on.
const INTERRUPTED_STATUS: u8 = 130;

fn run_train(a: TrainArgs, given: Vec<String>) -> anyhow::Result<ExitCode> {
    let cfg = TrainConfig {
        image_size: a.image_size.unwrap_or(if a.data == "synthetic" { 16 } else { 64 }),
        data: absolute_data_path(a.data),
        format: a.format,
        channels: a.channels,
        batch_size: a.batch_size,
        steps: a.steps,
        epochs: a.epochs,
        nz: a.nz,
        ngf: a.ngf,
        ndf: a.ndf,
        lr: a.lr,
        lr_d: a.lr_d,
        real_label: a.real_label,
        beta1: a.beta1,
        beta2: a.beta2,
        d_steps: a.d_steps,
        loss: a.loss,
        device: a.device,
        threads: a.threads,
        seed: a.seed,
        sample_every: a.sample_every,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every,
        save_dtype: a.save_dtype,
        ema: a.ema,
        instance_noise: a.instance_noise,
        instance_noise_steps: a.instance_noise_steps,
        mirror: a.mirror,
        spectral_norm: a.spectral_norm,
        conditional: a.conditional,
        diffaugment: a.diffaugment,
        matmul: a.matmul,
    };
    let out = match (a.out, &a.resume) {
        (Some(out), _) => out,
        // Resuming writes into the run the checkpoint belongs to.
        (None, Some(resume)) => dcgan::gan::checkpoint::run_dir_of(resume)?,
        (None, None) => default_run_dir(),
    };
    let summary = train(cfg, &TrainOptions { out, resume: a.resume, no_progress: a.no_progress, given })?;
    let verb = if summary.interrupted { "stopped" } else { "finished" };
    eprintln!("{verb} at step {}; outputs in {}", summary.steps, summary.out.display());
    Ok(if summary.interrupted { ExitCode::from(INTERRUPTED_STATUS) } else { ExitCode::SUCCESS })
}

fn run_sample(a: SampleArgs) -> anyhow::Result<()> {
    let device = dcgan::gan::parse_device(&a.device)?;
    let out = sample(&SampleOptions {
        checkpoint: a.checkpoint,
        n: a.n,
        seed: a.seed,
        z: a.z,
        out: a.out,
        device,
        walk: a.walk.map(|steps| dcgan::gan::sample::Walk { steps, path: a.path }),
        no_ema: a.no_ema,
        truncation: a.truncation,
        class: a.class,
    })?;
    let which = if out.ema { " (G's running average; --no-ema for G itself)" } else { "" };
    eprintln!("wrote {0}/samples.png and {0}/samples.safetensors{which}", out.out.display());
    Ok(())
}

fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    use anyhow::bail;
    let model = dcgan::gan::DcganConfig {
        image_size: a.image_size,
        channels: a.channels,
        nz: a.nz,
        ngf: a.ngf,
        ndf: a.ndf,
        classes: a.conditional.unwrap_or(0),
    };
    dcgan::gan::config::check_model_flags(
        a.image_size,
        Some(a.channels),
        a.batch_size,
        [a.nz, a.ngf, a.ndf],
    )?;
    if a.steps == 0 {
        bail!("--steps 0: expected at least 1");
    }
    if let Some(p) = a.peak
        && !(p > 0.0 && p.is_finite())
    {
        bail!("--peak {p}: expected a positive GFLOP/s figure");
    }
    if let Some(sigma) = a.instance_noise {
        dcgan::gan::config::check_instance_noise(sigma)?;
    }
    if let Some(c) = a.conditional
        && !(2..=256).contains(&c)
    {
        bail!("--conditional {c}: expected 2 to 256 classes");
    }
    let device = dcgan::gan::parse_device(&a.device)?;
    dcgan::gan::config::check_matmul_device(a.matmul, device)?;
    dcgan::gan::config::check_training_memory(&model, a.batch_size, 1, device)?;
    dcgan::gan::config::check_threads(a.threads)?;
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global()?;
    }
    let report = dcgan::bench::run(&dcgan::bench::BenchOptions {
        model,
        batch_size: a.batch_size,
        steps: a.steps,
        warmup: a.warmup,
        device,
        peak_gflops: a.peak,
        loss: a.loss,
        spectral_norm: a.spectral_norm,
        instance_noise: a.instance_noise,
        diffaugment: a.diffaugment,
        matmul: a.matmul,
    });
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", dcgan::bench::render_text(&report));
    }
    Ok(())
}

fn run_kernels(a: KernelsArgs) -> anyhow::Result<()> {
    use dcgan::backend::cuda::{kernels_report, render_json, render_table};
    let stats = kernels_report(&a.arch)?;
    if a.json {
        println!("{}", render_json(&stats));
    } else {
        print!("{}", render_table(&stats));
    }
    Ok(())
}

fn run_lab(a: LabArgs) -> anyhow::Result<()> {
    let experiment = a.experiment.name();
    let out = a.out.unwrap_or_else(|| PathBuf::from("lab").join(experiment));
    let opts = dcgan::lab::LabOptions {
        seed: a.seed,
        out,
        loss: a.loss,
        d_steps: a.d_steps,
        lr: a.lr,
        steps: a.steps,
        checkpoint: a.checkpoint,
        data: a.data,
        samples: a.samples,
        cache: a.cache,
        truncation: a.truncation,
    };
    let summary = dcgan::lab::run(experiment, &opts)?;
    if a.json {
        println!("{}", summary.json);
    } else {
        println!("{}", summary.headline);
    }
    Ok(())
}

/// Restores the default SIGPIPE action, as command-line tools have it: `dcgan bench --json |
/// head -c 100` then ends quietly when head closes the pipe. Rust starts with SIGPIPE ignored,
/// so the next print failed with EPIPE and panicked with a backtrace.
fn default_sigpipe() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: called first thing, before any thread exists; SIG_DFL installs no handler.
        unsafe { signal(SIGPIPE, SIG_DFL) };
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    dcgan::backend::cpu::pool::pin_mmap_threshold();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Train(a) => {
            // The flags typed on the command line, which --resume must not drop silently.
            let m = matches.subcommand_matches("train").expect("the train subcommand's matches");
            let given = m
                .ids()
                .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
                .map(|id| id.as_str().to_string())
                .collect();
            run_train(a, given)
        }
        Command::Sample(a) => run_sample(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(a) => run_bench(a).map(|()| ExitCode::SUCCESS),
        Command::Kernels(a) => run_kernels(a).map(|()| ExitCode::SUCCESS),
        Command::Lab(a) => run_lab(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
