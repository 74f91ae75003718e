//! `dcgan sample`: images from a checkpoint's generator, with the noise that made them.

use super::checkpoint;
use super::models::generator;
use super::trainer::{noise, save_grid};
use crate::backend::Device;
use crate::io::{self, ArrayData, NamedArray};
use crate::nn::Module;
use crate::rng::Rng;
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct SampleOptions {
    pub checkpoint: PathBuf,
    pub n: usize,
    pub seed: u64,
    /// A safetensors file with a tensor `z` of shape [n, nz, 1, 1] or [n, nz]; overrides n/seed.
    pub z: Option<PathBuf>,
    pub out: PathBuf,
    pub device: Device,
}

fn read_z(path: &Path, nz: usize, device: Device) -> Result<Tensor> {
    let arrays = io::read_safetensors(path)?;
    let Some(z) = arrays.iter().find(|a| a.name == "z") else {
        bail!("{}: no tensor named \"z\" (expected shape [n, {nz}, 1, 1] or [n, {nz}])", path.display());
    };
    let n = match z.shape[..] {
        [n, c, 1, 1] | [n, c] if c == nz && n > 0 => n,
        _ => bail!(
            "{}: z has shape {:?}, expected [n, {nz}, 1, 1] or [n, {nz}] for this generator",
            path.display(),
            z.shape
        ),
    };
    let Some(values) = z.data.to_f32() else {
        bail!("{}: z is stored as {}, expected a float type", path.display(), z.data.dtype());
    };
    Ok(Tensor::from_vec(values, &[n, nz, 1, 1], device))
}

/// Writes `samples.png` and `samples.safetensors` (images [n, c, h, w] in [-1, 1] and `z`).
pub fn sample(opts: &SampleOptions) -> Result<PathBuf> {
    if opts.n == 0 {
        bail!("--n 0: expected at least 1 sample");
    }
    let dir = checkpoint::resolve(&opts.checkpoint)?;
    let state = checkpoint::read_state(&dir)?;
    let model = state.config.model(state.channels);
    let mut g = generator(&model, &mut Rng::new(0), opts.device);
    checkpoint::load_model(&dir, "generator", &g)?;
    g.set_training(false);
    let z = match &opts.z {
        Some(path) => read_z(path, model.nz, opts.device)?,
        None => noise(opts.n, model.nz, &mut Rng::new(opts.seed), opts.device),
    };
    let images = crate::no_grad(|| g.forward(&z));
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| anyhow::anyhow!("--out {}: cannot create the directory: {e}", opts.out.display()))?;
    save_grid(&opts.out.join("samples.png"), &images)?;
    let arrays = [("images", &images), ("z", &z)].map(|(name, t)| NamedArray {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        data: ArrayData::F32(t.to_vec()),
    });
    io::write_safetensors(&opts.out.join("samples.safetensors"), &arrays, &BTreeMap::new())?;
    Ok(opts.out.clone())
}
