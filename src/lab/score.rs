//! `score`: image quality of the trainer's checkpoints, measured with this engine.
//!
//! A small CNN classifier is trained (once, then cached) on the labelled MNIST-family data at
//! the checkpoint's image size, average-pooled to 32×32 when that size is a larger multiple of
//! 32 (generated images get the same pooling). Its penultimate layer (128 ReLU features) is
//! the feature space: the Fréchet distance between Gaussians fitted to the features of the
//! real test images and of the generator's samples measures sample quality and diversity
//! together (FID's recipe, with this classifier in place of Inception), and the classifier's
//! predictions on the samples give their class histogram, where mode dropping shows as
//! missing classes.
//!
//! Splits: with an idx directory holding both `train-*` and `t10k-*` files, the classifier
//! trains on the training file less its last sixth (at most 10 000 images), which it never
//! sees; those held-out training images are the "real sample" of the real-vs-real floor, the
//! distance a perfect generator would score with as many samples. The reference is the whole
//! test file. With one labelled file, its last sixth is the test set and the sixth before it
//! the floor's sample.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde_json::json;

use super::LabOptions;
use super::frechet::{Gaussian, frechet_distance};
use crate::data::{DataFormat, Dataset};
use crate::gan::checkpoint;
use crate::gan::models::{generator, generator_input};
use crate::gan::sample::{check_truncation, truncated_noise};
use crate::gan::trainer::{noise, save_grid};
use crate::io::{self, PlotOptions, SaveDtype, plot_series};
use crate::nn::{BatchNorm2d, Conv2d, LeakyReLU, Linear, Module, ReLU, Sequential};
use crate::optim::{Adam, Optimizer};
use crate::{Device, Rng, Tensor, binary_cross_entropy_with_logits, no_grad};

const DEV: Device = Device::Cpu;
/// Width of the penultimate layer: the feature space of the distance.
pub const FEATURES: usize = 128;
const BATCH: usize = 128;
const EVAL_BATCH: usize = 500;
/// The most samples a checkpoint `--samples` accepts.
const MAX_SAMPLES: usize = 1_000_000;

/// Generated samples per checkpoint unless `--samples` says otherwise.
pub const DEFAULT_SAMPLES: usize = 2000;
pub(crate) const DEFAULT_LR: f32 = 2e-3;
/// Bumped whenever the classifier or its training changes, so stale caches are not reused.
const CLASSIFIER_VERSION: u32 = 2;
/// Images larger than this (and a multiple of it) are average-pooled down to it before the
/// classifier: a 64×64 run's classifier then trains as fast as a 32×32 one's (Fashion-MNIST
/// is 28×28 to begin with), and real and generated images go through the same pooling.
const CLASSIFIER_SIDE: usize = 32;
/// Largest real-sample pool held out of the classifier's training images.
const MAX_POOL: usize = 10_000;
/// A class counts as covered when its share of the samples is at least this fraction of its
/// share of the real test set.
const COVERED_FRACTION: f64 = 0.1;

/// [n, c, h, w] -> [n, c·h·w].
struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        let n = x.shape()[0];
        x.reshape(&[n, x.numel() / n.max(1)])
    }
    fn kind(&self) -> &'static str {
        "Flatten"
    }
}

/// Stride-2 4×4 convolutions (32, 64, 128, 128, ... channels; BatchNorm after all but the
/// first; LeakyReLU 0.2) down to 4×4, then Linear -> 128 + ReLU (the features), then a
/// Linear head with one logit per class, trained one-vs-rest with BCE.
pub struct Classifier {
    body: Sequential,
    head: Sequential,
    pub classes: usize,
    /// Side of the images the network sees (after [`pool_factor`]).
    side: usize,
}

/// How much images of side `size` are average-pooled before the classifier.
fn pool_factor(size: usize) -> usize {
    if size > CLASSIFIER_SIDE && size.is_multiple_of(CLASSIFIER_SIDE) { size / CLASSIFIER_SIDE } else { 1 }
}

/// The side of the images the classifier sees for data of side `size`.
fn classifier_side(size: usize) -> usize {
    size / pool_factor(size)
}

/// [n, c, s, s] -> [n, c, s/f, s/f], each pixel the mean of an f×f block.
fn average_pool(x: &Tensor, f: usize) -> Tensor {
    if f == 1 {
        return x.clone();
    }
    let [n, c, s, _] = x.dims4("average_pool");
    let (v, t) = (x.to_vec(), s / f);
    let mut out = vec![0f32; n * c * t * t];
    out.par_chunks_mut(t * t).zip(v.par_chunks(s * s)).for_each(|(o, plane)| {
        for (k, o) in o.iter_mut().enumerate() {
            let (y, x) = (k / t * f, k % t * f);
            let sum: f32 = (0..f).flat_map(|dy| &plane[(y + dy) * s + x..][..f]).sum();
            *o = sum / (f * f) as f32;
        }
    });
    Tensor::from_vec(out, &[n, c, t, t], x.device())
}

/// What the classifier makes of a set of images: features [n, FEATURES] and the argmax class.
#[derive(Default)]
pub struct Eval {
    pub features: Vec<f32>,
    pub predicted: Vec<usize>,
}

impl Eval {
    pub fn gaussian(&self) -> Gaussian {
        Gaussian::fit(&self.features, FEATURES)
    }
    /// For each class, the Gaussian of the rows `class_of` puts in it (None under 2 rows).
    pub fn class_gaussians(
        &self,
        classes: usize,
        class_of: impl Fn(usize) -> usize,
    ) -> Vec<Option<Gaussian>> {
        let mut rows = vec![Vec::new(); classes];
        for (j, f) in self.features.chunks_exact(FEATURES).enumerate() {
            rows[class_of(j)].extend_from_slice(f);
        }
        rows.into_iter().map(|r| (r.len() >= 2 * FEATURES).then(|| Gaussian::fit(&r, FEATURES))).collect()
    }
    pub fn histogram(&self, classes: usize) -> Vec<usize> {
        let mut h = vec![0; classes];
        for &p in &self.predicted {
            h[p] += 1;
        }
        h
    }
}

impl Classifier {
    pub fn new(image_size: usize, channels: usize, classes: usize, rng: &mut Rng) -> Classifier {
        let mut body = Sequential::new();
        let input_side = classifier_side(image_size);
        let (mut side, mut ch, mut width, mut first) = (input_side, channels, 32, true);
        while side > 4 {
            body = body.push(Conv2d::new(ch, width, 4, 2, 1, first, rng, DEV));
            if !first {
                body = body.push(BatchNorm2d::new(width, DEV));
            }
            body = body.push(LeakyReLU(0.2));
            (side, ch, width, first) = (side / 2, width, (width * 2).min(128), false);
        }
        let body =
            body.push(Flatten).push(Linear::new(ch * side * side, FEATURES, true, rng, DEV)).push(ReLU);
        let head = Sequential::new().push(Linear::new(FEATURES, classes, true, rng, DEV));
        Classifier { body, head, classes, side: input_side }
    }

    pub fn parameters(&self) -> Vec<Tensor> {
        let mut p = self.body.parameters();
        p.extend(self.head.parameters());
        p
    }

    pub fn set_training(&mut self, on: bool) {
        self.body.set_training(on);
        self.head.set_training(on);
    }

    /// What the network sees: `x` average-pooled to its input side.
    fn input(&self, x: &Tensor) -> Tensor {
        average_pool(x, x.shape()[2] / self.side)
    }

    /// Logits [n, classes] of images at the data's size.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.head.forward(&self.body.forward(&self.input(x)))
    }

    /// Features and predictions of a batch, appended to `out` (no graph recorded).
    pub fn eval_batch(&self, x: &Tensor, out: &mut Eval) {
        no_grad(|| {
            let f = self.body.forward(&self.input(x));
            let logits = self.head.forward(&f).to_vec();
            out.features.extend(f.to_vec());
            out.predicted.extend(logits.chunks(self.classes).map(argmax));
        });
    }

    /// Features and predictions of dataset images `idx`, in batches.
    pub fn eval_images(&self, data: &dyn Dataset, idx: &[usize]) -> Eval {
        let mut out = Eval::default();
        for chunk in idx.chunks(EVAL_BATCH) {
            self.eval_batch(&images(data, chunk), &mut out);
        }
        out
    }

    fn state(&self) -> Vec<io::NamedArray> {
        let mut a = io::module_state("body", &self.body, SaveDtype::F32);
        a.extend(io::module_state("head", &self.head, SaveDtype::F32));
        a
    }

    fn load(&self, arrays: Vec<io::NamedArray>, file: &Path) -> Result<()> {
        let (body, head): (Vec<_>, Vec<_>) = arrays.into_iter().partition(|a| a.name.starts_with("body."));
        io::load_module_state("body", &self.body, &body, file)?;
        io::load_module_state("head", &self.head, &head, file)?;
        Ok(())
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (k, &v)| if v > best.1 { (k, v) } else { best })
        .0
}

/// Dataset images `idx` as one [n, c, s, s] tensor.
fn images(data: &dyn Dataset, idx: &[usize]) -> Tensor {
    let (c, s) = (data.channels(), data.image_size());
    let per = c * s * s;
    let mut buf = vec![0f32; idx.len() * per];
    buf.par_chunks_mut(per).zip(idx.par_iter()).for_each(|(o, &i)| data.image(i, o));
    Tensor::from_vec(buf, &[idx.len(), c, s, s], DEV)
}

fn one_hot(data: &dyn Dataset, idx: &[usize], classes: usize) -> Tensor {
    let mut t = vec![0f32; idx.len() * classes];
    for (row, &i) in idx.iter().enumerate() {
        t[row * classes + data.label(i).expect("checked: labelled") as usize] = 1.0;
    }
    Tensor::from_vec(t, &[idx.len(), classes], DEV)
}

/// Train a fresh classifier on `idx` of `data`: Adam, batches of 128, learning rate decayed
/// linearly to zero over `steps`.
pub fn train_classifier(
    data: &dyn Dataset,
    idx: &[usize],
    classes: usize,
    steps: usize,
    lr: f32,
    seed: u64,
) -> Classifier {
    let mut rng = Rng::new(seed);
    let mut clf = Classifier::new(data.image_size(), data.channels(), classes, &mut rng);
    clf.set_training(true);
    let mut opt = Adam::new(clf.parameters(), lr, (0.9, 0.999));
    let batch = BATCH.min(idx.len());
    let mut order = idx.to_vec();
    let mut pos = order.len();
    for step in 0..steps {
        if pos + batch > order.len() {
            rng.shuffle(&mut order);
            pos = 0;
        }
        let b = &order[pos..pos + batch];
        pos += batch;
        opt.lr = lr * (1.0 - step as f32 / steps as f32);
        opt.zero_grad();
        let loss =
            binary_cross_entropy_with_logits(&clf.forward(&images(data, b)), &one_hot(data, b, classes));
        loss.backward();
        opt.step();
    }
    clf.set_training(false);
    clf
}

/// The labelled data, split into the classifier's training images, the real-sample pool of
/// the floor, and the test set (the reference of every distance).
struct Splits {
    train: Box<dyn Dataset>,
    /// None: the test images are held out of `train`.
    test: Option<Box<dyn Dataset>>,
    fit: Vec<usize>,
    pool: Vec<usize>,
    test_idx: Vec<usize>,
    /// The files, for messages.
    describe: String,
}

impl Splits {
    fn test_data(&self) -> &dyn Dataset {
        self.test.as_deref().unwrap_or(&*self.train)
    }
}

fn open_data(path: &Path, image_size: usize) -> Result<Splits> {
    let open = |p: &Path, f| {
        crate::data::open(p, f, image_size, None).with_context(|| format!("--data {}", path.display()))
    };
    let files =
        crate::data::idx_train_test_files(path).with_context(|| format!("--data {}", path.display()))?;
    let splits = match files {
        Some((train_file, test_file)) => {
            let train = open(&train_file, DataFormat::Mnist)?;
            let test = open(&test_file, DataFormat::Mnist)?;
            let n = train.len().unwrap_or(0);
            let hold = (n / 6).min(MAX_POOL);
            let describe = format!("{}; {}", train.describe(), test.describe());
            let test_n = test.len().unwrap_or(0);
            Splits {
                fit: (0..n - hold).collect(),
                pool: (n - hold..n).collect(),
                test_idx: (0..test_n).collect(),
                train,
                test: Some(test),
                describe,
            }
        }
        None => {
            let train = open(path, DataFormat::Auto)?;
            let Some(n) = train.len() else {
                bail!(
                    "--data {}: score needs a finite labelled dataset (MNIST-family idx with its labels), not {}",
                    path.display(),
                    train.describe()
                );
            };
            let hold = n / 6;
            Splits {
                fit: (0..n - 2 * hold).collect(),
                pool: (n - 2 * hold..n - hold).collect(),
                test_idx: (n - hold..n).collect(),
                describe: train.describe(),
                train,
                test: None,
            }
        }
    };
    for (what, d) in [("", Some(&splits.train)), ("test ", splits.test.as_ref())] {
        let Some(d) = d else { continue };
        if !d.is_empty() && d.label(0).is_none() {
            bail!(
                "--data {}: score needs labelled data, but the {what}images have no labels ({}); for MNIST-family \
                 idx, put the *labels-idx1-ubyte[.gz] file next to the *images-idx3-ubyte[.gz] file",
                path.display(),
                d.describe()
            );
        }
    }
    if splits.fit.len() < 2 || splits.pool.len() < 2 || splits.test_idx.len() < 2 {
        bail!(
            "--data {}: too few images to split into training, real-sample and test sets ({})",
            path.display(),
            splits.describe
        );
    }
    Ok(splits)
}

/// Size, modification time and name of the data file, or of every entry of the data folder:
/// a changed or replaced dataset gets a new classifier.
fn data_identity(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| {
                let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!("{}:{}", m.len(), mtime.map_or(0, |d| d.as_secs()))
            })
            .unwrap_or_default()
    };
    let mut s = format!("{}={}", canonical.display(), stamp(&canonical));
    if let Ok(rd) = std::fs::read_dir(&canonical) {
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            let _ = write!(
                s,
                ";{}={}",
                e.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                stamp(&e)
            );
        }
    }
    s
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `$XDG_CACHE_HOME/dcgan`, else `$HOME/.cache/dcgan`, else `.cache/dcgan`.
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    non_empty("XDG_CACHE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("dcgan")
}

/// The classifier, from the cache when a matching one is there, else trained and cached.
struct Trained {
    clf: Classifier,
    cached: bool,
    file: PathBuf,
    train_seconds: f64,
    steps: usize,
}

fn classifier_for(splits: &Splits, data_path: &Path, classes: usize, opts: &LabOptions) -> Result<Trained> {
    let (size, channels) = (splits.train.image_size(), splits.train.channels());
    let side = classifier_side(size);
    let steps = opts.steps.unwrap_or((splits.fit.len() / BATCH).max(1));
    let lr = opts.lr.unwrap_or(DEFAULT_LR);
    let key = format!(
        "v{CLASSIFIER_VERSION};size={size};channels={channels};classes={classes};seed={};steps={steps};lr={lr};fit={};{}",
        opts.seed,
        splits.fit.len(),
        data_identity(data_path)
    );
    let dir = opts.cache.clone().unwrap_or_else(default_cache_dir);
    let file = dir.join(format!(
        "score-classifier-{size}px-{channels}ch-seed{}-{:016x}.safetensors",
        opts.seed,
        fnv1a(&key)
    ));
    if file.is_file() {
        let loaded = io::read_safetensors_with_metadata(&file).map_err(anyhow::Error::from).and_then(|st| {
            if st.metadata.get("key") != Some(&key) {
                bail!("made for other data or settings");
            }
            // A cache is only a shortcut: weights it corrupted (refused by the load, like any
            // checkpoint's) are retrained below, not scored with.
            let clf = Classifier::new(size, channels, classes, &mut Rng::new(opts.seed));
            clf.load(st.tensors, &file)?;
            let secs = st.metadata.get("train_seconds").and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            Ok((clf, secs))
        });
        match loaded {
            Ok((mut clf, train_seconds)) => {
                clf.set_training(false);
                return Ok(Trained { clf, cached: true, file, train_seconds, steps });
            }
            Err(e) => eprintln!(
                "score: not using the cached classifier {} ({e:#}); training a new one",
                file.display()
            ),
        }
    }
    eprintln!(
        "score: training the classifier ({steps} steps of {BATCH} on {} images at {channels}×{side}×{side}{})",
        splits.fit.len(),
        if side == size { String::new() } else { format!(", pooled from {size}×{size}") },
    );
    let t0 = Instant::now();
    let clf = train_classifier(&*splits.train, &splits.fit, classes, steps, lr, opts.seed);
    let train_seconds = t0.elapsed().as_secs_f64();
    let meta = std::collections::BTreeMap::from([
        ("key".to_string(), key),
        ("train_seconds".to_string(), format!("{train_seconds:.2}")),
    ]);
    let saved = std::fs::create_dir_all(&dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(io::write_safetensors(&file, &clf.state(), &meta)?));
    match saved {
        Ok(()) => eprintln!("score: classifier cached in {}", file.display()),
        // The score is still right; only the next run pays for training again.
        Err(e) => eprintln!(
            "score: cannot cache the classifier in {} ({e:#}); the score is unaffected",
            dir.display()
        ),
    }
    Ok(Trained { clf, cached: false, file, train_seconds, steps })
}

/// Classes whose share of `hist` is under [`COVERED_FRACTION`] of their share of the test set.
fn missing_classes(hist: &[usize], reference: &[f64]) -> Vec<usize> {
    let n: usize = hist.iter().sum();
    (0..hist.len())
        .filter(|&k| {
            reference[k] > 0.0 && (hist[k] as f64 / n.max(1) as f64) < COVERED_FRACTION * reference[k]
        })
        .collect()
}

struct CheckpointScore {
    step: u64,
    dir: PathBuf,
    frechet: f64,
    /// The Fréchet distance of G's running average, when the run kept one (`train --ema`).
    frechet_ema: Option<f64>,
    hist: Vec<usize>,
    missing: Vec<usize>,
    /// The average's class histogram and missing classes, beside its distance.
    hist_ema: Option<Vec<usize>>,
    missing_ema: Option<Vec<usize>>,
    /// For a conditional G (`train --conditional`): the share of samples the classifier puts
    /// in the class G was asked for, G's and its running average's.
    agreement: Option<f64>,
    agreement_ema: Option<f64>,
    /// Its intra-class Fréchet distance ([`intra_frechet`]), G's and its running average's.
    intra: Option<f64>,
    intra_ema: Option<f64>,
}

/// The intra-class Fréchet distance (Miyato & Koyama 2018's intra-FID, in the classifier's
/// features): the mean over classes of the distance between a class's real images and the
/// samples made for it, over the classes both sides have. The distance of the mixtures misses a
/// G that draws every class well but not the one asked for; this does not. None when no class
/// has the 2 images a side that a Gaussian needs (too few samples for the classes).
fn intra_frechet(real: &[Option<Gaussian>], generated: &[Option<Gaussian>]) -> Option<f64> {
    let d: Vec<f64> = real
        .iter()
        .zip(generated)
        .filter_map(|(a, b)| Some(frechet_distance(a.as_ref()?, b.as_ref()?)))
        .collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// An intra-class distance for the summary, or why there is none.
fn intra_text(intra: Option<f64>) -> String {
    intra.map_or("n/a, --samples under 2 a class".to_string(), |d| format!("{d:.2}"))
}

/// The class a conditional G is asked for in sample `j` of a score: every class in turn.
fn requested_class(j: usize, classes: usize) -> usize {
    j % classes
}

/// The share of `predicted` classes equal to the requested ones.
fn class_agreement(predicted: &[usize], classes: usize) -> f64 {
    let hits = predicted.iter().enumerate().filter(|&(j, &p)| p == requested_class(j, classes)).count();
    hits as f64 / predicted.len().max(1) as f64
}

pub(crate) fn run(opts: &LabOptions) -> Result<(String, serde_json::Value)> {
    if let Some(t) = opts.truncation {
        check_truncation(t)?;
    }
    let Some(ckpt_path) = &opts.checkpoint else {
        bail!(
            "score needs --checkpoint DIR: a checkpoint, or a run directory (or its checkpoints/) to score every checkpoint"
        );
    };
    let Some(data_path) = &opts.data else {
        bail!(
            "score needs --data PATH: the labelled MNIST-family data the checkpoint was trained on (e.g. a directory with train-* and t10k-* idx files)"
        );
    };
    let samples = opts.samples.unwrap_or(DEFAULT_SAMPLES);
    if !(10..=MAX_SAMPLES).contains(&samples) {
        bail!(
            "--samples {samples}: expected 10 (the distance fits a covariance to them) to {MAX_SAMPLES} \
             (FID's custom is 50 000)"
        );
    }
    let dirs =
        checkpoint::list(ckpt_path).with_context(|| format!("--checkpoint {}", ckpt_path.display()))?;
    let mut states = Vec::with_capacity(dirs.len());
    for d in &dirs {
        states.push(
            checkpoint::read_state(d).with_context(|| format!("--checkpoint {}", ckpt_path.display()))?,
        );
    }
    let first = &states[0];
    let (size, channels) = (first.config.image_size, first.channels);
    for (d, s) in dirs.iter().zip(&states) {
        if (s.config.image_size, s.channels) != (size, channels) {
            bail!(
                "--checkpoint {}: its checkpoints differ: {} is {}×{}×{}, {} is {channels}×{size}×{size}",
                ckpt_path.display(),
                d.display(),
                s.channels,
                s.config.image_size,
                s.config.image_size,
                dirs[0].display()
            );
        }
    }

    let splits = open_data(data_path, size)?;
    let data_channels = splits.train.channels();
    if data_channels != channels {
        bail!(
            "--checkpoint {} makes {channels}-channel images but --data {} has {data_channels} ({}); score compares \
             like with like: pass the data the checkpoint was trained on",
            dirs[0].display(),
            data_path.display(),
            splits.describe
        );
    }
    let label_max =
        |d: &dyn Dataset, idx: &[usize]| idx.iter().filter_map(|&i| d.label(i)).max().unwrap_or(0);
    let classes = 1 + label_max(&*splits.train, &splits.fit)
        .max(label_max(&*splits.train, &splits.pool))
        .max(label_max(splits.test_data(), &splits.test_idx)) as usize;

    for (d, s) in dirs.iter().zip(&states) {
        if s.classes != 0 && s.classes != classes {
            bail!(
                "--checkpoint {}: its generator is conditioned on {} classes, but --data {} has {classes}",
                d.display(),
                s.classes,
                data_path.display()
            );
        }
    }

    let trained = classifier_for(&splits, data_path, classes, opts)?;
    let clf = &trained.clf;
    let test = clf.eval_images(splits.test_data(), &splits.test_idx);
    let correct = test
        .predicted
        .iter()
        .zip(&splits.test_idx)
        .filter(|&(&p, &i)| splits.test_data().label(i) == Some(p as u8))
        .count();
    let accuracy = correct as f64 / splits.test_idx.len() as f64;
    let test_counts: Vec<usize> = {
        let mut c = vec![0; classes];
        for &i in &splits.test_idx {
            c[splits.test_data().label(i).unwrap() as usize] += 1;
        }
        c
    };
    let test_share: Vec<f64> = test_counts.iter().map(|&c| c as f64 / splits.test_idx.len() as f64).collect();
    let present = test_share.iter().filter(|&&s| s > 0.0).count();
    let test_gauss = test.gaussian();

    // The floor: real images the classifier never trained on, as many as the samples.
    let pool_n = samples.min(splits.pool.len());
    let pool = clf.eval_images(&*splits.train, &splits.pool[..pool_n]);
    let floor = frechet_distance(&test_gauss, &pool.gaussian());
    let pool_hist = pool.histogram(classes);
    let pool_missing = missing_classes(&pool_hist, &test_share);
    // Per class, for conditional generators: the test set's Gaussians, and the floor of the
    // intra-class distance, real images as many a class as the samples.
    let test_by_class = states.iter().any(|s| s.classes > 0).then(|| {
        let label = |j: usize| splits.test_data().label(splits.test_idx[j]).expect("labelled") as usize;
        test.class_gaussians(classes, label)
    });
    let intra_floor = test_by_class.as_ref().and_then(|t| {
        let label = |j: usize| splits.train.label(splits.pool[j]).expect("labelled") as usize;
        intra_frechet(t, &pool.class_gaussians(classes, label))
    });

    let mut scores = Vec::with_capacity(dirs.len());
    let mut last_images = None;
    for (k, (dir, state)) in dirs.iter().zip(&states).enumerate() {
        let model = state.config.model(state.channels, state.classes);
        let conditional = model.classes > 0;
        // The same noise for every checkpoint and for both of its generators. Returns the
        // features' statistics and the first batch of images.
        let eval_generator = |file: &str| -> Result<(Eval, Tensor)> {
            let mut g = generator(&model, &mut Rng::new(0), DEV);
            checkpoint::load_model(dir, file, &g)?;
            g.set_training(false);
            let mut zrng = Rng::new(opts.seed ^ 0x5c0e_5a3b);
            let mut ev = Eval::default();
            let mut first = None;
            let mut left = samples;
            while left > 0 {
                let n = left.min(EVAL_BATCH);
                let z = match opts.truncation {
                    Some(t) => truncated_noise(n, model.nz, &mut zrng, t, DEV),
                    None => noise(n, model.nz, &mut zrng, DEV),
                };
                let labels: Vec<u8> = match conditional {
                    true => (samples - left..samples - left + n)
                        .map(|j| requested_class(j, classes) as u8)
                        .collect(),
                    false => Vec::new(),
                };
                let input = generator_input(z.to_vec(), model.nz, &labels, model.classes, DEV);
                let imgs = no_grad(|| g.forward(&input));
                if !imgs.to_vec().iter().all(|v| v.is_finite()) {
                    bail!(
                        "--checkpoint {}: its {file} makes non-finite pixels (NaN or inf); its weights \
                         are corrupt or its training diverged",
                        dir.display()
                    );
                }
                clf.eval_batch(&imgs, &mut ev);
                first.get_or_insert(imgs);
                left -= n;
            }
            Ok((ev, first.expect("at least one sample")))
        };
        let (ev, first_batch) = eval_generator("generator")?;
        if k + 1 == dirs.len() {
            last_images = Some(first_batch);
        }
        let ema = if dir.join(format!("{}.safetensors", checkpoint::EMA_FILE)).is_file() {
            Some(eval_generator(checkpoint::EMA_FILE)?.0)
        } else {
            None
        };
        let frechet_ema = ema.as_ref().map(|ev| frechet_distance(&test_gauss, &ev.gaussian()));
        let hist_ema = ema.as_ref().map(|ev| ev.histogram(classes));
        let missing_ema = hist_ema.as_ref().map(|h| missing_classes(h, &test_share));
        let agreement = conditional.then(|| class_agreement(&ev.predicted, classes));
        let agreement_ema =
            ema.as_ref().filter(|_| conditional).map(|ev| class_agreement(&ev.predicted, classes));
        let intra_of = |ev: &Eval| {
            let t = test_by_class.as_ref().expect("fitted when a checkpoint is conditional");
            intra_frechet(t, &ev.class_gaussians(classes, |j| requested_class(j, classes)))
        };
        let intra = conditional.then(|| intra_of(&ev)).flatten();
        let intra_ema = ema.as_ref().filter(|_| conditional).and_then(intra_of);
        let frechet = frechet_distance(&test_gauss, &ev.gaussian());
        let hist = ev.histogram(classes);
        let missing = missing_classes(&hist, &test_share);
        let avg = match (frechet_ema, &missing_ema) {
            (Some(f), Some(m)) => {
                format!(" (running average {f:.2}, classes {}/{present})", present - m.len())
            }
            _ => String::new(),
        };
        let agree = match agreement {
            Some(a) => {
                format!(", class agreement {:.1}%, intra-class Fréchet {}", 100.0 * a, intra_text(intra))
            }
            None => String::new(),
        };
        eprintln!(
            "score: step {}: Fréchet {frechet:.2}{avg}, classes {}/{present}{agree}",
            state.step,
            present - missing.len()
        );
        scores.push(CheckpointScore {
            step: state.step,
            dir: dir.clone(),
            frechet,
            frechet_ema,
            hist,
            missing,
            hist_ema,
            missing_ema,
            agreement,
            agreement_ema,
            intra,
            intra_ema,
        });
    }

    // ---- outputs ----
    let out = &opts.out;
    let mut csv = String::from("step,frechet,floor,classifier_accuracy,samples");
    for c in 0..classes {
        write!(csv, ",class_{c}").unwrap();
    }
    csv.push_str(",classes_covered,missing_classes,frechet_ema,classes_covered_ema,class_agreement,class_agreement_ema,intra_frechet,intra_frechet_ema\n");
    for s in &scores {
        write!(csv, "{},{},{floor},{accuracy},{samples}", s.step, s.frechet).unwrap();
        for h in &s.hist {
            write!(csv, ",{h}").unwrap();
        }
        let missing: Vec<String> = s.missing.iter().map(|m| m.to_string()).collect();
        let ema = s.frechet_ema.map_or(String::new(), |f| f.to_string());
        let covered_ema = s.missing_ema.as_ref().map_or(String::new(), |m| (present - m.len()).to_string());
        let [agree, agree_ema, intra, intra_ema] = [s.agreement, s.agreement_ema, s.intra, s.intra_ema]
            .map(|a| a.map_or(String::new(), |a| a.to_string()));
        writeln!(
            csv,
            ",{},{},{ema},{covered_ema},{agree},{agree_ema},{intra},{intra_ema}",
            present - s.missing.len(),
            missing.join(";")
        )
        .unwrap();
    }
    io::write_atomic(&out.join("score.csv"), csv.as_bytes())?;
    let steps: Vec<f64> = scores.iter().map(|s| s.step as f64).collect();
    let fds: Vec<f64> = scores.iter().map(|s| s.frechet).collect();
    let fds_ema: Vec<f64> = scores.iter().map(|s| s.frechet_ema.unwrap_or(f64::NAN)).collect();
    let floors = vec![floor; scores.len()];
    plot_series(
        &out.join("frechet.png"),
        &PlotOptions::new(
            &format!(
                "score: Fréchet distance in classifier features ({samples} samples vs {} test images)",
                splits.test_idx.len()
            ),
            "step",
            "Fréchet distance",
        ),
        &steps,
        &if scores.iter().any(|s| s.frechet_ema.is_some()) {
            vec![
                ("G vs test", &fds[..]),
                ("G's running average vs test", &fds_ema[..]),
                ("real vs test (floor)", &floors[..]),
            ]
        } else {
            vec![("generated vs test", &fds[..]), ("real vs test (floor)", &floors[..])]
        },
    )?;
    let last = scores.last().expect("at least one checkpoint");
    let classes_x: Vec<f64> = (0..classes).map(|c| c as f64).collect();
    let share = |h: &[usize]| -> Vec<f64> {
        let n: usize = h.iter().sum();
        h.iter().map(|&c| c as f64 / n.max(1) as f64).collect()
    };
    let gen_share = share(&last.hist);
    let ema_share = last.hist_ema.as_deref().map(share);
    let ymax =
        gen_share.iter().chain(&test_share).chain(ema_share.iter().flatten()).fold(0.0f64, |a, &b| a.max(b));
    let gen_label = format!("generated (step {})", last.step);
    let mut histograms = vec![(gen_label.as_str(), &gen_share[..])];
    if let Some(ema_share) = &ema_share {
        histograms.push(("G's running average", &ema_share[..]));
    }
    histograms.push(("real test set", &test_share[..]));
    plot_series(
        &out.join("class_histogram.png"),
        &PlotOptions {
            y_range: Some((0.0, ymax * 1.1 + 1e-9)),
            ..PlotOptions::new(
                &format!(
                    "score: predicted classes of {samples} samples at step {} vs the test set",
                    last.step
                ),
                "class",
                "share",
            )
        },
        &classes_x,
        &histograms,
    )?;
    if let Some(imgs) = &last_images {
        let n = imgs.shape()[0].min(64);
        let per = imgs.numel() / imgs.shape()[0];
        let grid = Tensor::from_vec(imgs.to_vec()[..n * per].to_vec(), &[n, channels, size, size], DEV);
        save_grid(&out.join("samples.png"), &grid, 8)?;
    }

    let covered = present - last.missing.len();
    let cached = if trained.cached { ", cached" } else { "" };
    let truncated = opts.truncation.map_or(String::new(), |t| format!(", noise truncated at ±{t}"));
    let tail = format!(
        "real-vs-real floor {floor:.2}{truncated}), classes {covered}/{present}{}, classifier test accuracy {:.1}%{cached}",
        if last.missing.is_empty() { String::new() } else { format!(" (missing {:?})", last.missing) },
        100.0 * accuracy
    );
    let tail = match last.agreement {
        Some(a) => format!(
            "{tail}, class agreement {:.1}%, intra-class Fréchet {} (floor {})",
            100.0 * a,
            intra_text(last.intra),
            intra_text(intra_floor)
        ),
        None => tail,
    };
    let tail = match (last.frechet_ema, &last.missing_ema) {
        (Some(f), Some(m)) => format!(
            "{tail}; G's running average Fréchet {f:.2}, classes {}/{present} at step {}",
            present - m.len(),
            last.step
        ),
        _ => tail,
    };
    let headline = if scores.len() == 1 {
        format!(
            "score: step {} Fréchet {:.2} ({} test images vs {samples} samples; {tail}",
            last.step,
            last.frechet,
            splits.test_idx.len()
        )
    } else {
        let f = &scores[0];
        let best = scores.iter().min_by(|a, b| a.frechet.total_cmp(&b.frechet)).unwrap();
        format!(
            "score: {} checkpoints, Fréchet {:.2} at step {} -> {:.2} at step {} (best {:.2} at step {}; {} test images vs {samples} samples; {tail}",
            scores.len(),
            f.frechet,
            f.step,
            last.frechet,
            last.step,
            best.frechet,
            best.step,
            splits.test_idx.len()
        )
    };
    let per: Vec<serde_json::Value> = scores
        .iter()
        .map(|s| {
            json!({
                "step": s.step, "checkpoint": s.dir.display().to_string(), "frechet": s.frechet, "frechet_ema": s.frechet_ema,
                "class_counts": s.hist, "classes_covered": present - s.missing.len(), "missing_classes": s.missing,
                "class_counts_ema": s.hist_ema, "classes_covered_ema": s.missing_ema.as_ref().map(|m| present - m.len()),
                "missing_classes_ema": s.missing_ema, "class_agreement": s.agreement, "class_agreement_ema": s.agreement_ema,
                "intra_frechet": s.intra, "intra_frechet_ema": s.intra_ema,
            })
        })
        .collect();
    let json = json!({
        "checkpoints": per,
        "step": last.step,
        "frechet": last.frechet,
        "frechet_ema": last.frechet_ema,
        "frechet_first": scores[0].frechet,
        "floor": floor,
        "floor_samples": pool_n,
        "floor_class_counts": pool_hist,
        "floor_classes_covered": present - pool_missing.len(),
        "samples": samples,
        "truncation": opts.truncation,
        "test_images": splits.test_idx.len(),
        "classes": classes,
        "classes_present": present,
        "classes_covered": covered,
        "missing_classes": last.missing,
        "class_agreement": last.agreement,
        "intra_frechet": last.intra,
        "intra_floor": intra_floor,
        "image_size": size,
        "channels": channels,
        "data": splits.describe,
        "classifier": {
            "test_accuracy": accuracy, "cached": trained.cached, "train_seconds": trained.train_seconds,
            "train_steps": trained.steps, "train_images": splits.fit.len(), "cache_file": trained.file.display().to_string(),
        },
        "plots": [out.join("frechet.png").display().to_string(), out.join("class_histogram.png").display().to_string()],
    });
    Ok((headline, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample j asks for class j mod classes; the agreement counts the predictions that match.
    #[test]
    fn class_agreement_counts_the_requested_classes_predicted() {
        assert_eq!((0..7).map(|j| requested_class(j, 3)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(class_agreement(&[0, 1, 2, 0, 1, 1], 3), 5.0 / 6.0);
        assert_eq!(class_agreement(&[1, 2, 0], 3), 0.0);
    }

    /// Two classes drawn well but swapped: the mixtures match (the same rows), the
    /// intra-class distance does not.
    #[test]
    fn intra_frechet_sees_classes_swapped_that_the_mixture_misses() {
        let mut rng = Rng::new(9);
        let rows = 400;
        let mut features = vec![0.0f32; rows * FEATURES];
        for (j, row) in features.chunks_exact_mut(FEATURES).enumerate() {
            let centre = if j % 2 == 0 { 1.0 } else { -1.0 };
            rng.fill_normal(row, centre, 0.3);
        }
        let ev = Eval { features, predicted: Vec::new() };
        let real = ev.class_gaussians(2, |j| j % 2);
        let right = intra_frechet(&real, &ev.class_gaussians(2, |j| j % 2)).unwrap();
        let swapped = intra_frechet(&real, &ev.class_gaussians(2, |j| 1 - j % 2)).unwrap();
        assert!(right < 1e-6, "a set against itself: {right}");
        // Each class's mean is off by 2 in every one of the 128 features: |Δμ|² = 512.
        assert!((swapped - 512.0).abs() < 512.0 * 0.05, "swapped classes: {swapped}");
        assert!(frechet_distance(&ev.gaussian(), &ev.gaussian()) < 1e-6, "the mixtures match");
    }

    /// Under 2 samples a class no class has a Gaussian: there is no distance to report, not a 0
    /// (an empty f64 sum is -0.0, which printed as "-0.00").
    #[test]
    fn intra_frechet_without_a_comparable_class_is_none() {
        let mut rng = Rng::new(3);
        let mut features = vec![0.0f32; 4 * FEATURES];
        rng.fill_normal(&mut features, 0.0, 1.0);
        let ev = Eval { features, predicted: Vec::new() };
        // Four rows over four classes: one each, too few for any Gaussian.
        let one_each = ev.class_gaussians(4, |j| j);
        assert!(one_each.iter().all(Option::is_none));
        assert_eq!(intra_frechet(&one_each, &one_each), None);
        assert_eq!(intra_text(None), "n/a, --samples under 2 a class");
        // Two classes of two rows: a distance, never negative.
        let two_each = ev.class_gaussians(2, |j| j % 2);
        let d = intra_frechet(&two_each, &two_each).expect("both classes have 2 rows");
        assert!(d.is_sign_positive() && d < 1e-6, "{d}");
    }

    #[test]
    fn images_above_32_are_average_pooled_to_32() {
        assert_eq!([16, 28, 32, 48, 64, 128].map(pool_factor), [1, 1, 1, 1, 2, 4]);
        // One 4×4 plane of 0..16 pooled by 2: each output is the mean of its 2×2 block.
        let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4], DEV);
        let y = average_pool(&x, 2);
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec(), vec![2.5, 4.5, 10.5, 12.5]);
        let clf = Classifier::new(64, 1, 10, &mut Rng::new(0));
        assert_eq!(clf.side, 32);
        let logits = no_grad(|| clf.forward(&Tensor::zeros(&[2, 1, 64, 64], DEV)));
        assert_eq!(logits.shape(), &[2, 10]);
    }
}
