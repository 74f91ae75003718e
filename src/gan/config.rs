//! Everything that defines a training run. Saved as `config.json` in the run directory and
//! inside every checkpoint's `state.json`, so a run can be resumed or sampled from alone.

use super::augment::DiffAugmentPolicy;
use super::loss::GanLoss;
use super::models::DcganConfig;
use crate::backend::cpu::MatmulPrecision;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// "synthetic" or a path.
    pub data: String,
    pub format: DataFormatArg,
    pub image_size: usize,
    /// None: the data's own channel count.
    pub channels: Option<usize>,
    pub batch_size: usize,
    /// Total generator steps; `epochs` is turned into steps once the dataset size is known.
    pub steps: Option<u64>,
    pub epochs: Option<u64>,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    pub lr: f32,
    /// D's learning rate when it differs from G's (`--lr-d`).
    #[serde(default)]
    pub lr_d: Option<f32>,
    /// D's target for real images (`--real-label`; below 1: one-sided label smoothing).
    #[serde(default = "one")]
    pub real_label: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub d_steps: usize,
    pub loss: GanLoss,
    pub device: String,
    pub threads: Option<usize>,
    pub seed: u64,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub save_dtype: WeightDtype,
    /// Keep a running average of G with this decay (`--ema`); None: no average.
    #[serde(default)]
    pub ema: Option<f32>,
    /// σ of the instance noise on D's inputs at the start (`--instance-noise`); None: none.
    #[serde(default)]
    pub instance_noise: Option<f32>,
    /// Steps over which it falls to 0 (`--instance-noise-steps`; by default the run's length
    /// when it started, fixed then so that a run resumed to a larger --steps keeps its schedule).
    #[serde(default)]
    pub instance_noise_steps: Option<u64>,
    /// Mirror augmentation of the real images (`--mirror`).
    #[serde(default)]
    pub mirror: bool,
    /// D with spectrally normalised convolutions and no BatchNorm (`--spectral-norm`).
    #[serde(default)]
    pub spectral_norm: bool,
    /// A class-conditional G and D (`--conditional`), on the data's labels.
    #[serde(default)]
    pub conditional: bool,
    /// DiffAugment's transforms on every image D sees (`--diffaugment`); None: none.
    #[serde(default)]
    pub diffaugment: Option<DiffAugmentPolicy>,
    /// How the CPU's convolutions multiply (`--matmul`): f32, or bf16 inputs with f32 sums.
    #[serde(default)]
    pub matmul: MatmulPrecision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DataFormatArg {
    Auto,
    Mnist,
    Cifar10,
    Folder,
}

/// Storage type of the weights files (the optimizer file keeps f32 masters, so resuming is
/// exact whatever this is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    F32,
    F16,
    Bf16,
}

fn one() -> f32 {
    1.0
}

/// The largest image side accepted: a 2048² DCGAN already needs ~10 GiB of activations at
/// batch 64; anything bigger is a typo.
pub const MAX_IMAGE_SIZE: usize = 2048;

/// `--matmul bf16` exists on the CPU backend only.
pub fn check_matmul_device(matmul: MatmulPrecision, device: crate::backend::Device) -> anyhow::Result<()> {
    if matmul != MatmulPrecision::F32 && device != crate::backend::Device::Cpu {
        anyhow::bail!(
            "--matmul {}: only the CPU backend has bf16 products; use --device cpu or --matmul f32",
            matmul.name()
        );
    }
    Ok(())
}

/// Checks the flags that shape the networks and the batch, which `dcgan train` and
/// `dcgan bench` share; the message names the flag and what it accepts. `[nz, ngf, ndf]`.
pub fn check_model_flags(
    image_size: usize,
    channels: Option<usize>,
    batch_size: usize,
    [nz, ngf, ndf]: [usize; 3],
) -> anyhow::Result<()> {
    use anyhow::bail;
    let s = image_size;
    if !(16..=MAX_IMAGE_SIZE).contains(&s) || !s.is_power_of_two() {
        bail!("--image-size {s}: expected a power of two from 16 to {MAX_IMAGE_SIZE} (16, 32, 64, 128, ...)");
    }
    if let Some(c) = channels
        && c != 1
        && c != 3
    {
        bail!("--channels {c}: expected 1 (greyscale) or 3 (RGB)");
    }
    if batch_size < 2 {
        bail!("--batch-size {batch_size}: expected at least 2 (BatchNorm normalizes over the batch)");
    }
    for (flag, v) in [("--nz", nz), ("--ngf", ngf), ("--ndf", ndf)] {
        if v == 0 {
            bail!("{flag} 0: expected at least 1");
        }
    }
    Ok(())
}

/// The most threads `--threads` accepts (100 000 spent over a minute spawning, with no output).
pub const MAX_THREADS: usize = 1024;

/// The most D updates per G update `--d-steps` accepts (WGAN's critic takes 5; each batch is
/// held in memory at once).
pub const MAX_D_STEPS: usize = 100;

/// `--threads`' check, which `dcgan train` and `dcgan bench` share.
pub fn check_threads(threads: Option<usize>) -> anyhow::Result<()> {
    match threads {
        Some(t) if !(1..=MAX_THREADS).contains(&t) => {
            anyhow::bail!("--threads {t}: expected 1 to {MAX_THREADS} (this machine has {} cores)", cores())
        }
        _ => Ok(()),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine's memory (MemTotal of /proc/meminfo); None where it cannot be read.
fn machine_memory_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

/// Refuses work whose estimated memory (`bytes`) is more than the machine has, before any of
/// it is allocated: an allocation that fails aborts the process. `what` names the flags that
/// set the size, `advice` what to lower.
pub fn check_memory(bytes: f64, what: &str, advice: &str) -> anyhow::Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    match machine_memory_bytes() {
        Some(total) if bytes > total => anyhow::bail!(
            "{what}: needs about {:.1} GiB of memory, more than this machine's {:.1} GiB; {advice}",
            bytes / GIB,
            total / GIB
        ),
        _ => Ok(()),
    }
}

/// Refuses training steps on a host device (CPU, emulator) that would need more memory than
/// the machine has ([`DcganConfig::training_bytes`]), naming the flags that size them; `dcgan
/// train` and `dcgan bench` share it.
pub fn check_training_memory(
    model: &DcganConfig,
    batch_size: usize,
    d_steps: usize,
    device: crate::backend::Device,
) -> anyhow::Result<()> {
    if matches!(device, crate::backend::Device::Cuda(_)) {
        return Ok(()); // the activations live on the GPU, whose allocator reports a shortage
    }
    let m = model;
    check_memory(
        m.training_bytes(batch_size, d_steps),
        &format!(
            "--batch-size {batch_size} at --image-size {} (--nz {}, --ngf {}, --ndf {}, --d-steps {d_steps})",
            m.image_size, m.nz, m.ngf, m.ndf
        ),
        "lower --batch-size (or --ngf, --ndf)",
    )
}

/// `--instance-noise`'s check, which `dcgan train` and `dcgan bench` share.
pub fn check_instance_noise(sigma: f32) -> anyhow::Result<()> {
    if !(sigma > 0.0 && sigma.is_finite()) {
        anyhow::bail!(
            "--instance-noise {sigma}: expected a positive standard deviation (images span [-1, 1]; 0.1 to 1 is usual)"
        );
    }
    Ok(())
}

impl TrainConfig {
    /// D's learning rate: `--lr-d`, else G's.
    pub fn lr_d(&self) -> f32 {
        self.lr_d.unwrap_or(self.lr)
    }

    /// The networks' shapes for data with `channels` channels and `classes` classes (0 for an
    /// unconditional run).
    pub fn model(&self, channels: usize, classes: usize) -> DcganConfig {
        DcganConfig {
            image_size: self.image_size,
            channels,
            nz: self.nz,
            ngf: self.ngf,
            ndf: self.ndf,
            classes,
        }
    }

    /// Checks every value a user can set; the message names the flag and what it accepts.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        check_model_flags(self.image_size, self.channels, self.batch_size, [self.nz, self.ngf, self.ndf])?;
        if self.steps == Some(0) || self.epochs == Some(0) {
            bail!("--steps/--epochs 0: expected at least 1");
        }
        if !(1..=MAX_D_STEPS).contains(&self.d_steps) {
            bail!("--d-steps {}: expected 1 to {MAX_D_STEPS} D updates per G update", self.d_steps);
        }
        for (flag, lr) in [("--lr", Some(self.lr)), ("--lr-d", self.lr_d)] {
            if let Some(lr) = lr
                && !(lr > 0.0 && lr.is_finite())
            {
                bail!("{flag} {lr}: expected a positive finite learning rate (DCGAN uses 2e-4)");
            }
        }
        for (flag, b) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("--{} {b}: expected a value in [0, 1)", flag.trim_start_matches('-'));
            }
        }
        for (flag, v) in [
            ("--sample-every", self.sample_every),
            ("--checkpoint-every", self.checkpoint_every),
            ("--log-every", self.log_every),
        ] {
            if v == 0 {
                bail!("{flag} 0: expected at least 1");
            }
        }
        if !(self.real_label > 0.5 && self.real_label <= 1.0) {
            bail!(
                "--real-label {}: expected a target in (0.5, 1] (0.9 is the usual smoothing)",
                self.real_label
            );
        }
        if self.real_label != 1.0 && !self.loss.has_real_target() {
            bail!(
                "--real-label {}: the {} loss has a margin, not a target, for real images; label smoothing applies to the non-saturating, minimax and least-squares losses",
                self.real_label,
                self.loss.name()
            );
        }
        if let Some(d) = self.ema
            && !(d > 0.0 && d < 1.0)
        {
            bail!("--ema {d}: expected a decay between 0 and 1 (0.999 is usual)");
        }
        if let Some(sigma) = self.instance_noise {
            check_instance_noise(sigma)?;
        }
        if self.instance_noise_steps == Some(0) {
            bail!("--instance-noise-steps 0: expected at least 1");
        }
        check_threads(self.threads)?;
        Ok(())
    }
}
