//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (red, green, blue planes
//! of 32×32, row-major). A file whose size is not a whole number of records is refused: it is
//! either truncated or not CIFAR-10 (CIFAR-100's records are 3074 bytes).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{
    DataError, Dataset, ImageSet, alloc_pixels, check_params, list_dir, read_file, resize, target_channels,
};

pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_PIXELS;
const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Labels and planar 3×32×32 pixels of one or more CIFAR-10 batch files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CifarRecords {
    pub labels: Vec<u8>,
    pub pixels: Vec<u8>,
}

/// Parses the bytes of one CIFAR-10 batch file. `name` is used in errors.
pub fn parse_cifar_bytes(bytes: &[u8], name: &str) -> Result<CifarRecords, DataError> {
    if bytes.is_empty() {
        return Err(DataError::WrongFormat {
            path: name.into(),
            what: "empty file, expected CIFAR-10 records of 3073 bytes".into(),
        });
    }
    if !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(DataError::CifarSize { name: name.into(), len: bytes.len() });
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut out =
        CifarRecords { labels: Vec::with_capacity(n), pixels: Vec::with_capacity(n * CIFAR_PIXELS) };
    for (record, chunk) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if label > 9 {
            return Err(DataError::CifarLabel { name: name.into(), record, label });
        }
        out.labels.push(label);
        out.pixels.extend_from_slice(&chunk[1..]);
    }
    Ok(out)
}

/// Builds the dataset from the bytes of batch files (name, bytes), in the order given; the file
/// reader goes through here too, so the fuzz target exercises the real path.
pub fn cifar_dataset_from_bytes(
    files: &[(&str, &[u8])],
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    check_params(image_size, channels)?;
    let mut all = CifarRecords::default();
    for (name, bytes) in files {
        let r = parse_cifar_bytes(bytes, name)?;
        all.labels.extend(r.labels);
        all.pixels.extend(r.pixels);
    }
    let what = files.first().map(|(n, _)| *n).unwrap_or("CIFAR-10");
    let to_c = target_channels(channels, 3);
    let per = to_c * image_size * image_size;
    let count = all.labels.len();
    let pixels = if to_c == 3 && image_size == 32 {
        all.pixels
    } else {
        let mut pixels = alloc_pixels(count, per, what)?;
        pixels.par_chunks_mut(per).zip(all.pixels.par_chunks(CIFAR_PIXELS)).for_each(|(dst, src)| {
            dst.copy_from_slice(&resize::prepare_chw(src, 32, 32, 3, to_c, image_size));
        });
        pixels
    };
    let names = files.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    let source = match names.as_slice() {
        [one] => one.to_string(),
        [first, .., last] => format!("{first} … {last}, {} files", names.len()),
        [] => String::new(),
    };
    let description = format!(
        "CIFAR-10 binary ({source}): {count} images 3×32×32 with labels -> {to_c}×{image_size}×{image_size}"
    );
    Ok(Box::new(ImageSet::new(to_c, to_c, image_size, pixels, Some(all.labels), description)))
}

/// `data_batch_*.bin` in `dir`, in numeric order (data_batch_2 before data_batch_10).
pub(crate) fn find_batches(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut batches: Vec<(u64, PathBuf)> = list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let middle = name.strip_prefix("data_batch_")?.strip_suffix(".bin")?;
            Some((middle.parse().unwrap_or(u64::MAX), p))
        })
        .collect();
    batches.sort();
    Ok(batches.into_iter().map(|(_, p)| p).collect())
}

pub(crate) fn open(
    path: &Path,
    is_dir: bool,
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    let paths = if is_dir {
        let b = find_batches(path)?;
        if b.is_empty() {
            return Err(DataError::WrongFormat {
                path: path.display().to_string(),
                what: "no CIFAR-10 binary batches (data_batch_*.bin) in this directory".into(),
            });
        }
        b
    } else {
        vec![path.to_path_buf()]
    };
    let mut files = Vec::with_capacity(paths.len());
    for p in &paths {
        files.push((p.display().to_string(), read_file(p)?));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    cifar_dataset_from_bytes(&refs, image_size, channels)
}
