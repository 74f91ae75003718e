//! The DCGAN: the two networks, one training step, the training loop and its checkpoints.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod models;
pub mod sample;
pub mod step;
pub mod trainer;

pub use augment::{DiffAugment, DiffAugmentPolicy};
pub use config::TrainConfig;
pub use loss::GanLoss;
pub use models::{DcganConfig, discriminator, generator, spectral_norm_discriminator};
pub use step::{ClassLabels, Gan, GeneratorEma, InstanceNoise, StepMetrics};

use crate::backend::Device;

/// Steps of a run given neither --steps nor --epochs: what the default synthetic run (16×16,
/// batch 128) needs to draw recognisable shapes in under five minutes on two cores (measured:
/// 2 min 48 s; see the README).
pub const DEFAULT_STEPS: u64 = 1500;

/// `--device auto|cpu|cuda|cuda:N|emu`; `auto` says what it picked and why.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    if s.trim() == "auto" {
        let (device, why) = Device::auto();
        eprintln!("device auto: {why}");
        return Ok(device);
    }
    Ok(Device::parse(s)?)
}
