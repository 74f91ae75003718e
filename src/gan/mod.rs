//! The DCGAN: models now; the trainer, losses and metrics build on them.

pub mod models;
