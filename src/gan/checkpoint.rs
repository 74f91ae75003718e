//! Checkpoints: everything a run needs to continue bit for bit.
//!
//! ```text
//! checkpoints/step_000200/
//!   generator.safetensors      PyTorch state_dict names (main.0.weight, ...), --save-dtype
//!   discriminator.safetensors  same
//!   optimizer.safetensors      Adam moments and step counts, f32 master weights if the
//!                              weights files were saved in f16/bf16
//!   state.json                 format version, config, step, epoch, RNG and loader state
//! checkpoints/latest           the name of the newest checkpoint directory
//! ```
//! A checkpoint is written into a temporary directory and renamed into place, so a crash
//! or Ctrl-C mid-write never leaves a half checkpoint under a real name.

use super::config::{TrainConfig, WeightDtype};
use super::step::Gan;
use crate::data::LoaderState;
use crate::io::{self, ArrayData, NamedArray, SaveDtype};
use crate::nn::{Module, Sequential};
use crate::optim::Adam;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever the checkpoint layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub format_version: u32,
    pub created_by: String,
    pub config: TrainConfig,
    /// Generator steps completed.
    pub step: u64,
    pub epoch: u64,
    pub rng: [u64; 4],
    pub loader: LoaderState,
    /// Image channels actually trained on (the data's, unless --channels said otherwise).
    pub channels: usize,
    /// The data's classes for a conditional run (`--conditional`), else 0.
    #[serde(default)]
    pub classes: usize,
}

fn save_dtype(d: WeightDtype) -> SaveDtype {
    match d {
        WeightDtype::F32 => SaveDtype::F32,
        WeightDtype::F16 => SaveDtype::F16,
        WeightDtype::Bf16 => SaveDtype::Bf16,
    }
}

pub fn step_dir_name(step: u64) -> String {
    format!("step_{step:06}")
}

/// Adam's state under `<model>.<param index>.{exp_avg,exp_avg_sq,step}`.
fn optimizer_arrays(model: &str, opt: &Adam, out: &mut Vec<NamedArray>) {
    for (i, (m, v)) in opt.exp_avg.iter().zip(&opt.exp_avg_sq).enumerate() {
        for (what, t) in [("exp_avg", m), ("exp_avg_sq", v)] {
            out.push(NamedArray {
                name: format!("{model}.{i}.{what}"),
                shape: t.shape().to_vec(),
                data: ArrayData::F32(t.to_vec()),
            });
        }
        out.push(NamedArray {
            name: format!("{model}.{i}.step"),
            shape: vec![],
            data: ArrayData::I64(vec![opt.steps[i] as i64]),
        });
    }
}

fn load_optimizer(
    model: &str,
    opt: &mut Adam,
    arrays: &BTreeMap<&str, &NamedArray>,
    file: &Path,
) -> Result<()> {
    let get = |name: String| {
        arrays
            .get(name.as_str())
            .copied()
            .with_context(|| format!("{}: missing tensor {name}", file.display()))
    };
    for i in 0..opt.exp_avg.len() {
        for (what, t) in [("exp_avg", &opt.exp_avg[i]), ("exp_avg_sq", &opt.exp_avg_sq[i])] {
            let a = get(format!("{model}.{i}.{what}"))?;
            match &a.data {
                ArrayData::F32(v) if a.shape == t.shape() => {
                    if let Some(why) = a.non_finite() {
                        bail!("{}: {why}", file.display());
                    }
                    t.copy_from_slice(v)
                }
                _ => bail!(
                    "{}: {model}.{i}.{what} has shape {:?} ({}), expected {:?} f32",
                    file.display(),
                    a.shape,
                    a.data.dtype(),
                    t.shape()
                ),
            }
        }
        let a = get(format!("{model}.{i}.step"))?;
        match &a.data {
            ArrayData::I64(v) if v.len() == 1 && v[0] >= 0 => opt.steps[i] = v[0] as u64,
            _ => bail!("{}: {model}.{i}.step must be one non-negative int64", file.display()),
        }
    }
    Ok(())
}

/// The weights files of a checkpoint and the networks they hold: G, D, and G's running
/// average when the run keeps one.
fn networks(gan: &Gan) -> Vec<(&'static str, &Sequential)> {
    let mut v = vec![("generator", &gan.generator), ("discriminator", &gan.discriminator)];
    if let Some(ema) = &gan.ema {
        v.push((EMA_FILE, &ema.generator));
    }
    v
}

/// The first tensor of `gan`'s weights, BatchNorm statistics or Adam moments that holds a NaN
/// or an infinity, as "discriminator main.3.running_var"; None when all are finite.
pub fn first_non_finite(gan: &Gan) -> Option<String> {
    for (file, model) in networks(gan) {
        for a in io::module_state("main", model, SaveDtype::F32) {
            if a.data.first_non_finite().is_some() {
                return Some(format!("{file} {}", a.name));
            }
        }
    }
    let mut moments = Vec::new();
    optimizer_arrays("generator", &gan.opt_g, &mut moments);
    optimizer_arrays("discriminator", &gan.opt_d, &mut moments);
    moments.into_iter().find(|a| a.data.first_non_finite().is_some()).map(|a| format!("Adam's {}", a.name))
}

/// The weights file of G's running average (`--ema`).
pub const EMA_FILE: &str = "generator_ema";

/// Writes checkpoints/step_NNNNNN and points checkpoints/latest at it. Returns its path.
pub fn save(run_dir: &Path, state: &RunState, gan: &Gan) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = write_files(&tmp, state, gan) {
        // A half-written checkpoint (a full disk, say) is not left behind.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = root.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot move checkpoint into {}", dest.display()))?;
    io::write_atomic(&root.join("latest"), format!("{name}\n").as_bytes())?;
    Ok(dest)
}

/// A checkpoint's files, written into `dir`.
fn write_files(dir: &Path, state: &RunState, gan: &Gan) -> Result<()> {
    let dtype = save_dtype(state.config.save_dtype);
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let models = networks(gan);
    for &(file, model) in &models {
        let arrays = io::module_state("main", model, dtype);
        io::write_safetensors(&dir.join(format!("{file}.safetensors")), &arrays, &meta)?;
    }
    let mut opt = Vec::new();
    optimizer_arrays("generator", &gan.opt_g, &mut opt);
    optimizer_arrays("discriminator", &gan.opt_d, &mut opt);
    if dtype != SaveDtype::F32 {
        // Reduced-precision weights files cannot resume exactly: keep f32 masters here.
        for &(file, model) in &models {
            for mut a in io::module_state("main", model, SaveDtype::F32) {
                a.name = format!("master.{file}.{}", a.name);
                opt.push(a);
            }
        }
    }
    io::write_safetensors(&dir.join("optimizer.safetensors"), &opt, &BTreeMap::new())?;
    io::write_json_atomic(&dir.join("state.json"), state)?;
    Ok(())
}

/// A run directory (uses checkpoints/latest), its checkpoints/ folder, or one checkpoint.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        bail!("{}: no such checkpoint or run directory", path.display());
    }
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        let latest = root.join("latest");
        if latest.is_file() {
            let name = std::fs::read_to_string(&latest)
                .with_context(|| format!("cannot read {}", latest.display()))?;
            let dir = root.join(name.trim());
            if !dir.join("state.json").is_file() {
                bail!("{} names {}, which holds no state.json", latest.display(), dir.display());
            }
            return Ok(dir);
        }
    }
    bail!(
        "{}: not a checkpoint (expected state.json in it, or a run directory with checkpoints/latest)",
        path.display()
    )
}

/// Every checkpoint `path` names, in step order: a checkpoint directory (just itself), or a
/// run directory or its checkpoints/ folder (each `step_N` in it that holds a state.json).
pub fn list(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.exists() {
        bail!("{}: no such checkpoint or run directory", path.display());
    }
    if path.join("state.json").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        let Ok(entries) = std::fs::read_dir(&root) else { continue };
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in entries {
            let dir = entry.with_context(|| format!("cannot list {}", root.display()))?.path();
            let step = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step_"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(step) = step
                && dir.join("state.json").is_file()
            {
                found.push((step, dir));
            }
        }
        if !found.is_empty() {
            found.sort();
            return Ok(found.into_iter().map(|(_, d)| d).collect());
        }
    }
    bail!(
        "{}: not a checkpoint (expected state.json in it, or a run directory whose checkpoints/ holds step_N checkpoints)",
        path.display()
    )
}

pub fn read_state(dir: &Path) -> Result<RunState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // Check the version before the full structure, so an old or future layout gets a
    // version message rather than a missing-field one.
    let version: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: corrupt JSON", path.display()))?;
    match version.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == FORMAT_VERSION as u64 => {}
        Some(v) => bail!(
            "{}: checkpoint format version {v}, this dcgan reads version {FORMAT_VERSION}",
            path.display()
        ),
        None => bail!("{}: no format_version field; not a dcgan checkpoint", path.display()),
    }
    serde_json::from_value(version).with_context(|| format!("{}: unexpected contents", path.display()))
}

/// Loads one network's weights (f32 masters from the optimizer file when present).
pub fn load_model(dir: &Path, file: &str, model: &Sequential) -> Result<()> {
    let path = dir.join(format!("{file}.safetensors"));
    let arrays = io::read_safetensors(&path)?;
    io::load_module_state("main", model, &arrays, &path)?;
    Ok(())
}

/// Restores weights, BatchNorm statistics and Adam state into `gan`.
pub fn load_into(dir: &Path, gan: &mut Gan) -> Result<()> {
    let opt_path = dir.join("optimizer.safetensors");
    let opt = io::read_safetensors(&opt_path)?;
    for (file, model) in networks(gan) {
        let prefix = format!("master.{file}.");
        let masters: Vec<NamedArray> = opt
            .iter()
            .filter_map(|a| {
                a.name.strip_prefix(&prefix).map(|n| NamedArray { name: n.to_string(), ..a.clone() })
            })
            .collect();
        if masters.is_empty() {
            load_model(dir, file, model)?;
        } else {
            io::load_module_state("main", model, &masters, &opt_path)?;
        }
    }
    let by_name: BTreeMap<&str, &NamedArray> = opt.iter().map(|a| (a.name.as_str(), a)).collect();
    load_optimizer("generator", &mut gan.opt_g, &by_name, &opt_path)?;
    load_optimizer("discriminator", &mut gan.opt_d, &by_name, &opt_path)?;
    Ok(())
}

/// Parameter count of a model, for the startup summary.
pub fn parameter_count(model: &Sequential) -> usize {
    model.parameters().iter().map(|p| p.numel()).sum()
}

/// The run directory a checkpoint belongs to (…/RUN/checkpoints/step_N -> …/RUN).
pub fn run_dir_of(path: &Path) -> Result<PathBuf> {
    let dir = resolve(path)?;
    match dir.parent().and_then(|p| p.file_name().map(|n| (p, n))) {
        Some((checkpoints, name)) if name == "checkpoints" => {
            Ok(checkpoints.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")))
        }
        _ => bail!(
            "{}: not inside a run's checkpoints/ directory; pass --out for the resumed run",
            dir.display()
        ),
    }
}
