//! The DCGAN: the two networks and one training step.

pub mod models;
pub mod step;

pub use models::{DcganConfig, discriminator, generator};
pub use step::{Gan, GeneratorLoss, StepMetrics};
