//! `metrics.csv`: one row per training step, written as it happens and trimmed on resume so
//! that a resumed run's file is byte-identical to the uninterrupted run's.

use super::{IoError, display_name, write_atomic};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An f32 written so that parsing it back (as f32) gives the same bits: the shortest decimal
/// that round-trips ("0.6931472", "1e-8", "NaN", "inf", "-inf").
pub fn format_f32(x: f32) -> String {
    format!("{x:?}")
}

/// An f64 written so that parsing it back gives the same bits.
pub fn format_f64(x: f64) -> String {
    format!("{x:?}")
}

/// A value that can be a CSV field; floats are written bit-faithfully.
pub trait CsvField {
    fn csv(&self) -> String;
}

impl CsvField for f32 {
    fn csv(&self) -> String {
        format_f32(*self)
    }
}

impl CsvField for f64 {
    fn csv(&self) -> String {
        format_f64(*self)
    }
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl CsvField for $t {
            fn csv(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_field!(u32, u64, usize, i32, i64);

/// Appends rows to a CSV file whose first column is the step. Each row is written with one
/// `write` call as soon as it is given, so a reader (or a crash) sees whole rows.
#[derive(Debug)]
pub struct MetricsCsv {
    path: PathBuf,
    file: File,
    columns: usize,
}

impl MetricsCsv {
    /// Open `path` for a run with these `columns` (the first should be "step").
    ///
    /// - `truncate_after_step: None` (a new run): the file is created, or emptied, and the
    ///   header written.
    /// - `Some(s)` (resuming from a checkpoint taken after step `s`): the existing rows with
    ///   step ≤ `s` are kept, later ones (written after the checkpoint, before the
    ///   interruption) are dropped, as is an incomplete last line; the file must have this
    ///   header. A missing file is started afresh.
    pub fn open(path: &Path, columns: &[&str], truncate_after_step: Option<u64>) -> Result<Self, IoError> {
        assert!(!columns.is_empty(), "MetricsCsv::open: no columns");
        for c in columns {
            assert!(
                !c.is_empty() && !c.contains([',', '"', '\n', '\r']),
                "MetricsCsv::open: column name {c:?} needs no quoting and must not be empty"
            );
        }
        let header = columns.join(",");
        let mut content = format!("{header}\n");
        if let Some(last_step) = truncate_after_step {
            match std::fs::read(path) {
                Ok(bytes) => content = kept_rows(path, &bytes, &header, last_step)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IoError::os(path, "read", e)),
            }
        }
        write_atomic(path, content.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| IoError::os(path, "open", e))?;
        Ok(MetricsCsv { path: path.to_path_buf(), file, columns: columns.len() })
    }

    /// Append one row (one field per column) and hand it to the operating system at once.
    ///
    /// Panics (a programming error) when the number of fields differs from the columns'.
    pub fn row(&mut self, fields: &[&dyn CsvField]) -> Result<(), IoError> {
        assert_eq!(
            fields.len(),
            self.columns,
            "MetricsCsv::row: {} fields for {} columns",
            fields.len(),
            self.columns
        );
        let mut line = fields.iter().map(|f| f.csv()).collect::<Vec<_>>().join(",");
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| IoError::os(&self.path, "append to", e))
    }

    /// [`MetricsCsv::row`] for plain numbers: `step` then f64 values (bit-faithful for values
    /// that came from f32 only if they are exactly representable; prefer `row` for f32).
    pub fn row_f64(&mut self, step: u64, values: &[f64]) -> Result<(), IoError> {
        let mut fields: Vec<&dyn CsvField> = vec![&step];
        fields.extend(values.iter().map(|v| v as &dyn CsvField));
        self.row(&fields)
    }

    /// Force the rows written so far to disk (they are already visible to readers).
    pub fn sync(&self) -> Result<(), IoError> {
        self.file.sync_data().map_err(|e| IoError::os(&self.path, "fsync", e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file's content up to and including the rows with step ≤ `last_step`.
fn kept_rows(path: &Path, bytes: &[u8], header: &str, last_step: u64) -> Result<String, IoError> {
    let file = display_name(path);
    let text = std::str::from_utf8(bytes).map_err(|e| IoError::Csv {
        file: file.clone(),
        line: 1,
        msg: format!("not UTF-8 text ({e})"),
    })?;
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end_matches(['\n', '\r']) != header {
        return Err(IoError::Csv {
            file,
            line: 1,
            msg: format!(
                "the header is \"{}\", this run writes \"{header}\" (metrics of another version or program?)",
                first.trim_end()
            ),
        });
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(first);
    for (i, line) in lines.enumerate() {
        if !line.ends_with('\n') {
            break; // a row cut short by the interruption
        }
        let step_field = line.split(',').next().unwrap_or("").trim();
        let step: u64 = step_field.parse().map_err(|_| IoError::Csv {
            file: file.clone(),
            line: i + 2,
            msg: format!("the step \"{step_field}\" is not a non-negative integer"),
        })?;
        if step > last_step {
            break;
        }
        out.push_str(line);
    }
    Ok(out)
}

/// Read a metrics CSV: the column names and one `Vec<f64>` per row. Empty fields read as NaN;
/// an incomplete last line (a run still writing) is ignored.
pub fn read_metrics_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>), IoError> {
    let file = display_name(path);
    let text = std::fs::read_to_string(path).map_err(|e| IoError::os(path, "read", e))?;
    let mut lines = text.split_inclusive('\n');
    let Some(header) = lines.next().filter(|h| !h.trim().is_empty()) else {
        return Err(IoError::Csv {
            file,
            line: 1,
            msg: "the file is empty, expected a header line".to_string(),
        });
    };
    let columns: Vec<String> =
        header.trim_end_matches(['\n', '\r']).split(',').map(|s| s.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let complete = line.ends_with('\n');
        let body = line.trim_end_matches(['\n', '\r']);
        if body.trim().is_empty() {
            continue;
        }
        let parsed: Result<Vec<f64>, String> = body
            .split(',')
            .map(|f| {
                let f = f.trim();
                if f.is_empty() {
                    Ok(f64::NAN)
                } else {
                    f.parse::<f64>().map_err(|_| format!("\"{f}\" is not a number"))
                }
            })
            .collect();
        let row = match parsed {
            Ok(row) if row.len() == columns.len() => row,
            _ if !complete => break,
            Ok(row) => {
                return Err(IoError::Csv {
                    file,
                    line: i + 2,
                    msg: format!("{} fields, the header has {}", row.len(), columns.len()),
                });
            }
            Err(msg) => return Err(IoError::Csv { file, line: i + 2, msg }),
        };
        rows.push(row);
    }
    Ok((columns, rows))
}
