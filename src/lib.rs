//! dcgan: a from-scratch tensor engine that trains DCGANs.
//!
//! Layers, from the bottom: [`backend`] holds the kernels (one trait, one implementation per
//! device); [`Tensor`] is an NCHW f32 array with an autograd node; [`ops`] are the
//! differentiable operations (forward call + backward rule, one file per op); [`nn`] and
//! [`optim`] build layers and optimisers on top; [`gan`] assembles the DCGAN.

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod data;
pub mod gan;
pub mod io;
pub mod lab;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;

pub use autograd::{NoGradGuard, is_grad_enabled, no_grad};
pub use backend::Device;
pub use ops::*;
pub use rng::Rng;
pub use tensor::Tensor;
