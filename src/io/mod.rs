//! Files the trainer reads and writes: checkpoints (safetensors, PyTorch `state_dict` names),
//! PNG image grids, the metrics CSV and PNG plots.
//!
//! Every file is written to a temporary name in the same directory, fsync'd and renamed into
//! place ([`write_atomic`]), so a crash or a Ctrl-C never leaves a half-written file under
//! the real name. Every error is an [`IoError`] whose message names the file and, where there
//! is one, the tensor, the line or the field, and what was expected.

mod image_grid;
mod metrics;
mod plot;
mod safetensors;

pub use image_grid::{grid_pixels, save_image_grid};
pub use metrics::{CsvField, MetricsCsv, format_f32, format_f64, read_metrics_csv};
pub use plot::{PALETTE, PlotOptions, ScatterGroup, TextBackend, plot_series, scatter_plot};
pub use safetensors::{
    ArrayData, NamedArray, Safetensors, SaveDtype, load_module_file, load_module_state, module_state,
    parse_safetensors, read_safetensors, read_safetensors_with_metadata, save_module_file,
    serialize_safetensors, write_safetensors,
};

use serde::Serialize;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything that can go wrong reading or writing the trainer's files. The message always
/// starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system refused: missing file, no permission, disk full, ...
    #[error("{}: cannot {action}: {err}", path.display())]
    Os { path: PathBuf, action: &'static str, err: std::io::Error },

    /// The file ends before its own header says it should.
    #[error("{file}: truncated safetensors file: {msg}")]
    Truncated { file: String, msg: String },

    /// The safetensors header is not what the format prescribes (length, UTF-8, JSON, fields).
    #[error("{file}: corrupt safetensors header: {msg}")]
    Header { file: String, msg: String },

    /// One tensor's entry is inconsistent (dtype, shape, offsets, byte count).
    #[error("{file}: tensor \"{tensor}\": {msg}")]
    Tensor { file: String, tensor: String, msg: String },

    /// The checkpoint is well formed but does not fit the model it is loaded into.
    #[error("{file}: {msg}")]
    Mismatch { file: String, msg: String },

    /// A line of a CSV file is not what its header announces.
    #[error("{file}:{line}: {msg}")]
    Csv { file: String, line: usize, msg: String },

    /// Encoding a PNG or drawing a plot failed.
    #[error("{file}: {msg}")]
    Encode { file: String, msg: String },
}

impl IoError {
    pub(crate) fn os(path: &Path, action: &'static str, err: std::io::Error) -> Self {
        IoError::Os { path: path.to_path_buf(), action, err }
    }
}

/// A file's name as messages show it.
pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, fsync'd, then
/// renamed over `path` (and the directory fsync'd, so the rename itself is durable). Readers
/// see the old file or the new one, never a mixture; on error the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for a value serialised as pretty-printed JSON (with a final newline).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), IoError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| IoError::Encode {
        file: display_name(path),
        msg: format!("cannot serialise JSON: {e}"),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The temporary name for `path`: hidden, in the same directory, unique per process and call.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{unique}", std::process::id()))
}

pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&File>) -> std::io::Result<()>,
) -> Result<(), IoError> {
    if path.file_name().is_none() {
        return Err(IoError::os(
            path,
            "write",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        ));
    }
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| IoError::os(path, "write", e))?;
        let mut w = std::io::BufWriter::new(&file);
        fill(&mut w).and_then(|()| w.flush()).map_err(|e| IoError::os(path, "write", e))?;
        drop(w);
        file.sync_all().map_err(|e| IoError::os(path, "write (fsync)", e))?;
        drop(file);
        fs::rename(&tmp, path)
            .map_err(|e| IoError::os(path, "write (renaming the temporary file into place)", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_parent_dir(path);
    Ok(())
}

/// Make a rename in `path`'s directory durable. Best effort: some filesystems refuse to fsync
/// a directory, and the data itself is already on disk.
pub(crate) fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
