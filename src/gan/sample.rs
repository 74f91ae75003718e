//! `dcgan sample`: images from a checkpoint's generator, with the noise that made them, or
//! walks through its latent space (Radford et al. 2015, §6.1). A conditional generator draws
//! one class a grid row, or `--class` throughout.

use super::checkpoint;
use super::models::{generator, generator_input};
use super::trainer::{noise, save_grid};
use crate::backend::Device;
use crate::io::{self, ArrayData, NamedArray};
use crate::nn::{Module, Sequential};
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
    /// Walk the latent space instead: `steps` images from each noise vector to the next.
    pub walk: Option<Walk>,
    /// G's own weights even where the checkpoint keeps their running average (`--ema`).
    pub no_ema: bool,
    /// Redraw noise components beyond ±this ([`truncated_noise`]).
    pub truncation: Option<f32>,
    /// The class every image is drawn from (conditional checkpoints); None: row r of the grid
    /// draws class r mod classes.
    pub class: Option<usize>,
}

/// Where `dcgan sample` wrote, and which generator made the images.
pub struct Sampled {
    pub out: PathBuf,
    /// The running average of G (a run trained with `--ema`), not G itself.
    pub ema: bool,
}

/// A walk through the n noise vectors in order: row i goes from z_i to z_(i+1) in `steps`
/// images, both ends included, so the rows join up into one path.
#[derive(Clone, Copy, Debug)]
pub struct Walk {
    pub steps: usize,
    pub path: LatentPath,
}

/// How to go from one noise vector to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LatentPath {
    /// Along the arc between the two (White 2016), which keeps the norm of two ends of equal
    /// norm: a Gaussian z of dimension nz has a norm close to √nz, and the straight line's
    /// midpoint between two such (nearly orthogonal) points is about √2 shorter, a z the
    /// generator rarely saw in training.
    Slerp,
    /// The straight line, as in the DCGAN paper's walks.
    Linear,
}

/// The point a fraction `t` of the way from `a` to `b` along `path`.
pub fn latent_point(a: &[f32], b: &[f32], t: f64, path: LatentPath) -> Vec<f32> {
    let linear =
        |wa: f64, wb: f64| a.iter().zip(b).map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32).collect();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    let cos = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() / (na * nb);
    let omega = cos.clamp(-1.0, 1.0).acos();
    // Nearly parallel ends (or a zero vector): the two paths agree, and the line is exact.
    let s = omega.sin();
    if path == LatentPath::Linear || s.is_nan() || s < 1e-6 {
        return linear(1.0 - t, t);
    }
    linear(((1.0 - t) * omega).sin() / s, (t * omega).sin() / s)
}

/// The walk's noise, [(n - 1)·steps, nz, 1, 1], from `z` [n, nz, 1, 1].
fn walk_noise(z: &Tensor, walk: Walk) -> Tensor {
    let [n, nz, _, _] = z.dims4("walk_noise");
    let host = z.to_vec();
    let row = |i: usize| &host[i * nz..(i + 1) * nz];
    let mut out = Vec::with_capacity((n - 1) * walk.steps * nz);
    for i in 0..n - 1 {
        for s in 0..walk.steps {
            let t = s as f64 / (walk.steps - 1) as f64;
            out.extend(latent_point(row(i), row(i + 1), t, walk.path));
        }
    }
    Tensor::from_vec(out, &[(n - 1) * walk.steps, nz, 1, 1], z.device())
}

/// G (in eval mode, where BatchNorm treats every image alone) on `z`, at most
/// [`GENERATE_BATCH`] images a forward pass: a walk of hundreds of images needs no more
/// memory than a plain grid.
fn generate(g: &Sequential, z: &Tensor) -> Tensor {
    let [n, nz, _, _] = z.dims4("generate");
    if n <= GENERATE_BATCH {
        return crate::no_grad(|| g.forward(z));
    }
    let host = z.to_vec();
    let mut images = Vec::new();
    let mut shape = Vec::new();
    for chunk in host.chunks(GENERATE_BATCH * nz) {
        let zc = Tensor::from_vec(chunk.to_vec(), &[chunk.len() / nz, nz, 1, 1], z.device());
        let out = crate::no_grad(|| g.forward(&zc));
        shape = out.shape().to_vec();
        images.extend(out.to_vec());
    }
    shape[0] = n;
    Tensor::from_vec(images, &shape, z.device())
}

/// Images a forward pass of `dcgan sample` (a default grid is 64).
const GENERATE_BATCH: usize = 64;

/// The smallest `--truncation`: below it the redrawing takes over a hundred draws a value.
pub const MIN_TRUNCATION: f32 = 0.05;

/// n noise vectors from N(0, 1) with every component beyond ±`threshold` redrawn (the
/// truncation trick of Brock et al. 2019, "Large Scale GAN Training"): the images come from
/// nearer the middle of what G was trained on, at the cost of variety. The draws are those of
/// the untruncated noise with the rejected ones skipped, so a threshold no draw exceeds gives
/// exactly the untruncated noise.
pub fn truncated_noise(n: usize, nz: usize, rng: &mut Rng, threshold: f32, device: Device) -> Tensor {
    let t = f64::from(threshold);
    let data = (0..n * nz)
        .map(|_| {
            loop {
                let v = rng.normal();
                if v.abs() <= t {
                    break v as f32;
                }
            }
        })
        .collect();
    Tensor::from_vec(data, &[n, nz, 1, 1], device)
}

/// `--truncation`'s check, for `dcgan sample` and `lab score`.
pub fn check_truncation(t: f32) -> Result<()> {
    if !(t >= MIN_TRUNCATION && t.is_finite()) {
        bail!(
            "--truncation {t}: expected a threshold of at least {MIN_TRUNCATION} (0.5 to 1 is usual; 2 barely truncates)"
        );
    }
    Ok(())
}

/// `--class`'s check against the checkpoint's classes (0: unconditional).
fn check_class(class: Option<usize>, classes: usize) -> Result<()> {
    match class {
        Some(c) if classes == 0 => {
            bail!("--class {c}: the checkpoint's generator is unconditional (trained without --conditional)")
        }
        Some(c) if c >= classes => {
            bail!("--class {c}: the checkpoint's generator knows {classes} classes, 0 to {}", classes - 1)
        }
        _ => Ok(()),
    }
}

/// The class of each of `n` images in a grid of `columns`: `class`, or row r's r mod
/// `classes`. Empty for an unconditional generator.
fn grid_labels(n: usize, columns: usize, classes: usize, class: Option<usize>) -> Vec<u8> {
    if classes == 0 {
        return Vec::new();
    }
    (0..n).map(|i| class.unwrap_or(i / columns % classes) as u8).collect()
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
    if let Some(i) = z.data.first_non_finite() {
        bail!("{}: z holds a NaN or infinity (element {i}); noise must be finite", path.display());
    }
    Ok(Tensor::from_vec(values, &[n, nz, 1, 1], device))
}

/// What [`sample`] writes into its `--out` directory.
pub const OUT_FILES: [&str; 2] = ["samples.png", "samples.safetensors"];

/// Writes `samples.png` and `samples.safetensors` (images [n, c, h, w] in [-1, 1] and `z`;
/// for a walk, a row of the grid per leg, and every point's z).
pub fn sample(opts: &SampleOptions) -> Result<Sampled> {
    if opts.n == 0 {
        bail!("--n 0: expected at least 1 sample");
    }
    if let Some(walk) = opts.walk
        && walk.steps < 2
    {
        bail!("--walk {}: expected at least 2 images a row (its two ends)", walk.steps);
    }
    if let Some(t) = opts.truncation {
        check_truncation(t)?;
    }
    if opts.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        bail!(
            "--out {}: expected a directory, which gets samples.png and samples.safetensors",
            opts.out.display()
        );
    }
    // An earlier sample's files (perhaps the very --z being read) are never written over.
    if let Some(earlier) = OUT_FILES.iter().map(|f| opts.out.join(f)).find(|p| p.exists()) {
        bail!(
            "--out {}: already holds {}, from an earlier sample, which this one would overwrite; \
             choose another --out (or move that file away)",
            opts.out.display(),
            earlier.display()
        );
    }
    let dir = checkpoint::resolve(&opts.checkpoint)?;
    let state = checkpoint::read_state(&dir)?;
    let model = state.config.model(state.channels, state.classes);
    check_class(opts.class, model.classes)?;
    // G makes every image in one batch: refuse one larger than memory before allocating it.
    let check_count = |vectors: usize| {
        let (images, flags) = match opts.walk {
            Some(w) => {
                (vectors.saturating_sub(1).saturating_mul(w.steps), format!(" and --walk {}", w.steps))
            }
            None => (vectors, String::new()),
        };
        let source = if opts.z.is_some() { "the vectors of --z" } else { "--n" };
        crate::gan::config::check_memory(
            model.sampling_bytes(images),
            &format!("{vectors} noise vectors ({source}){flags}: {images} images of {}²", model.image_size),
            "ask for fewer images",
        )
    };
    if opts.z.is_none() {
        check_count(opts.n)?;
    }
    let mut g = generator(&model, &mut Rng::new(0), opts.device);
    let ema = !opts.no_ema && dir.join(format!("{}.safetensors", checkpoint::EMA_FILE)).is_file();
    checkpoint::load_model(&dir, if ema { checkpoint::EMA_FILE } else { "generator" }, &g)?;
    g.set_training(false);
    let z = match &opts.z {
        Some(path) => {
            let z = read_z(path, model.nz, opts.device)?;
            check_count(z.shape()[0])?;
            z
        }
        None => match opts.truncation {
            Some(t) => truncated_noise(opts.n, model.nz, &mut Rng::new(opts.seed), t, opts.device),
            None => noise(opts.n, model.nz, &mut Rng::new(opts.seed), opts.device),
        },
    };
    let (z, columns) = match opts.walk {
        Some(walk) => {
            let n = z.shape()[0];
            if n < 2 {
                bail!("--walk needs at least 2 noise vectors to walk between, got {n} (--n or --z)");
            }
            (walk_noise(&z, walk), walk.steps)
        }
        None => (z, 8),
    };
    let labels = grid_labels(z.shape()[0], columns, model.classes, opts.class);
    let images = generate(&g, &generator_input(z.to_vec(), model.nz, &labels, model.classes, opts.device));
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| anyhow::anyhow!("--out {}: cannot create the directory: {e}", opts.out.display()))?;
    save_grid(&opts.out.join(OUT_FILES[0]), &images, columns)?;
    let mut arrays: Vec<NamedArray> = [("images", &images), ("z", &z)]
        .map(|(name, t)| NamedArray {
            name: name.to_string(),
            shape: t.shape().to_vec(),
            data: ArrayData::F32(t.to_vec()),
        })
        .into();
    if model.classes > 0 {
        arrays.push(NamedArray {
            name: "labels".to_string(),
            shape: vec![labels.len()],
            data: ArrayData::I64(labels.iter().map(|&y| i64::from(y)).collect()),
        });
    }
    // Which weights file made the images, for scripts/check_pytorch_generator.py.
    let made_by = if ema { checkpoint::EMA_FILE } else { "generator" };
    let metadata = BTreeMap::from([("generator".to_string(), made_by.to_string())]);
    io::write_safetensors(&opts.out.join(OUT_FILES[1]), &arrays, &metadata)?;
    Ok(Sampled { out: opts.out.clone(), ema })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
    }

    /// Every component within the threshold; the untruncated stream with the rejected draws
    /// skipped, so a threshold above every draw gives the untruncated noise bit for bit.
    #[test]
    fn truncated_noise_redraws_only_what_lies_beyond() {
        let z = truncated_noise(50, 100, &mut Rng::new(4), 0.5, Device::Cpu).to_vec();
        assert!(z.iter().all(|v| v.abs() <= 0.5));
        let plain = noise(50, 100, &mut Rng::new(4), Device::Cpu).to_vec();
        let kept: Vec<f32> = plain.iter().copied().filter(|v| v.abs() <= 0.5).collect();
        assert!(kept.len() < plain.len() / 2, "about 38% of N(0, 1) lies within ±0.5");
        assert_eq!(z[..kept.len()], kept[..], "the kept draws, in order");
        assert_eq!(truncated_noise(50, 100, &mut Rng::new(4), 100.0, Device::Cpu).to_vec(), plain);
    }

    #[test]
    fn both_paths_start_and_end_exactly_on_the_ends() {
        let (a, b) = ([0.3, -1.2, 2.0], [1.5, 0.25, -0.75]);
        for path in [LatentPath::Slerp, LatentPath::Linear] {
            assert_eq!(latent_point(&a, &b, 0.0, path), a, "{path:?} at 0");
            assert_eq!(latent_point(&a, &b, 1.0, path), b, "{path:?} at 1");
        }
    }

    #[test]
    fn slerp_keeps_the_norm_where_the_line_cuts_the_corner() {
        // Orthogonal ends of norm 5: the arc's midpoint has norm 5, the line's 5/√2.
        let (a, b) = ([3.0, 4.0, 0.0], [0.0, 0.0, 5.0]);
        let mid = latent_point(&a, &b, 0.5, LatentPath::Slerp);
        assert!((norm(&mid) - 5.0).abs() < 1e-5, "slerp midpoint {mid:?}");
        assert!(
            (mid[2] - 5.0 / 2f32.sqrt()).abs() < 1e-5,
            "the arc's midpoint is 45° from each end: {mid:?}"
        );
        let line = latent_point(&a, &b, 0.5, LatentPath::Linear);
        assert_eq!(line, vec![1.5, 2.0, 2.5]);
        assert!((norm(&line) - 5.0 / 2f64.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn parallel_or_zero_ends_fall_back_to_the_line() {
        let a = [1.0, 2.0];
        for b in [[2.0, 4.0], [0.0, 0.0]] {
            let p = latent_point(&a, &b, 0.25, LatentPath::Slerp);
            assert_eq!(p, latent_point(&a, &b, 0.25, LatentPath::Linear), "b = {b:?}");
            assert!(p.iter().all(|x| x.is_finite()));
        }
    }
}
