//! MNIST-family idx files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip.
//!
//! Format: a big-endian u32 magic `0x000008NN` (unsigned bytes, NN dimensions), NN big-endian u32
//! dimensions, then the bytes. Images are 3-D (count, rows, cols), labels 1-D (count). The byte
//! count must match the header exactly: a short or over-long file is an error, not a guess.
//! Nothing is allocated from the header's claims: bytes are read as they arrive, so a 20-byte file
//! claiming 4 billion images costs nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use super::{
    DataError, Dataset, ImageSet, alloc_pixels, check_params, list_dir, read_file, resize, target_channels,
};

pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
pub(crate) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(crate) const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images of an idx3 file, row-major, one byte per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// A parsed idx file of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdxFile {
    Images(IdxImages),
    Labels(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Images,
    Labels,
    Either,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Images => "0x00000803 (images)",
            Expect::Labels => "0x00000801 (labels)",
            Expect::Either => "0x00000803 (images) or 0x00000801 (labels)",
        }
    }
}

/// Parses idx bytes of either kind (raw, or gzip detected by its magic). `name` is used in errors.
pub fn parse_idx_bytes(bytes: &[u8], name: &str) -> Result<IdxFile, DataError> {
    parse(bytes, name, Expect::Either)
}

/// Parses an idx images file (magic 0x803), raw or gzip.
pub fn parse_idx_images(bytes: &[u8], name: &str) -> Result<IdxImages, DataError> {
    match parse(bytes, name, Expect::Images)? {
        IdxFile::Images(i) => Ok(i),
        IdxFile::Labels(_) => unreachable!("parse checked the magic"),
    }
}

/// Parses an idx labels file (magic 0x801), raw or gzip.
pub fn parse_idx_labels(bytes: &[u8], name: &str) -> Result<Vec<u8>, DataError> {
    match parse(bytes, name, Expect::Labels)? {
        IdxFile::Labels(l) => Ok(l),
        IdxFile::Images(_) => unreachable!("parse checked the magic"),
    }
}

fn gzip_error(name: &str, e: std::io::Error) -> DataError {
    DataError::Gzip { name: name.to_string(), reason: e.to_string() }
}

fn parse(bytes: &[u8], name: &str, expect: Expect) -> Result<IdxFile, DataError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_stream(MultiGzDecoder::new(bytes), name, expect, "decompressed data")
    } else {
        parse_stream(bytes, name, expect, "file")
    }
}

/// Reads up to `n` bytes (fewer only at the end of the stream).
fn read_up_to(r: &mut impl Read, n: u64, name: &str) -> Result<Vec<u8>, DataError> {
    let mut buf = Vec::new();
    r.take(n).read_to_end(&mut buf).map_err(|e| gzip_error(name, e))?;
    Ok(buf)
}

fn parse_stream(
    mut r: impl Read,
    name: &str,
    expect: Expect,
    what: &'static str,
) -> Result<IdxFile, DataError> {
    let magic_bytes = read_up_to(&mut r, 4, name)?;
    if magic_bytes.len() < 4 {
        return Err(DataError::IdxShortHeader { name: name.into(), len: magic_bytes.len(), need: 8 });
    }
    let magic = u32::from_be_bytes(magic_bytes[..4].try_into().expect("4 bytes"));
    let ok = match expect {
        Expect::Images => magic == IMAGES_MAGIC,
        Expect::Labels => magic == LABELS_MAGIC,
        Expect::Either => magic == IMAGES_MAGIC || magic == LABELS_MAGIC,
    };
    if !ok {
        return Err(DataError::IdxMagic { name: name.into(), found: magic, expected: expect.describe() });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let dim_bytes = read_up_to(&mut r, 4 * ndims as u64, name)?;
    if dim_bytes.len() < 4 * ndims {
        return Err(DataError::IdxShortHeader { name: name.into(), len: 4 + dim_bytes.len(), need: header });
    }
    let dims: Vec<u32> =
        dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes"))).collect();
    const AXES: [&str; 3] = ["count", "rows", "cols"];
    for (i, &d) in dims.iter().enumerate() {
        if d == 0 {
            return Err(DataError::IdxZeroDim { name: name.into(), axis: AXES[i] });
        }
    }
    let expected: u128 = dims.iter().map(|&d| d as u128).product();
    let dims_text = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
    // Read at most one byte more than the header claims; what arrives is what gets allocated.
    let data = read_up_to(&mut r, expected.min(u64::MAX as u128 - 1) as u64 + 1, name)?;
    if (data.len() as u128) < expected {
        return Err(DataError::IdxTruncated {
            name: name.into(),
            dims: dims_text,
            expected,
            what,
            actual: data.len() as u128,
            header,
        });
    }
    if data.len() as u128 > expected {
        // Count the rest for the message, without keeping it (bounded so a gzip bomb ends).
        let rest =
            std::io::copy(&mut r.take(1 << 36), &mut std::io::sink()).map_err(|e| gzip_error(name, e))?;
        return Err(DataError::IdxTrailing {
            name: name.into(),
            dims: dims_text,
            expected,
            what,
            actual: expected + 1 + rest as u128,
            header,
        });
    }
    let mut data = data;
    data.truncate(expected as usize);
    Ok(if magic == IMAGES_MAGIC {
        IdxFile::Images(IdxImages {
            count: dims[0] as usize,
            rows: dims[1] as usize,
            cols: dims[2] as usize,
            pixels: data,
        })
    } else {
        IdxFile::Labels(data)
    })
}

/// Builds the dataset from the bytes of an images file and optionally a labels file; the file
/// readers go through here too, so the fuzz target exercises the real path.
pub fn idx_dataset_from_bytes(
    images: &[u8],
    images_name: &str,
    labels: Option<(&[u8], &str)>,
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    check_params(image_size, channels)?;
    let imgs = parse_idx_images(images, images_name)?;
    // Labels that cannot number classes are left unused, and the description says why: the
    // images still train an unconditional GAN, and --conditional quotes the reason.
    let (labels, unusable) = match labels {
        Some((bytes, labels_name)) => {
            let l = parse_idx_labels(bytes, labels_name)?;
            if l.len() != imgs.count {
                return Err(DataError::LabelCount {
                    labels: labels_name.into(),
                    found: l.len(),
                    images: images_name.into(),
                    expected: imgs.count,
                });
            }
            match check_dense_labels(&l, labels_name) {
                Ok(()) => (Some(l), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
        None => (None, None),
    };
    let to_c = target_channels(channels, 1);
    let plane = image_size * image_size;
    let mut pixels = alloc_pixels(imgs.count, plane, images_name)?;
    let src_per = imgs.rows * imgs.cols;
    let transpose = is_emnist(images_name);
    pixels.par_chunks_mut(plane).zip(imgs.pixels.par_chunks(src_per)).for_each(|(dst, src)| {
        let prepared = if transpose {
            // Stored column-major: the transpose is rows×cols -> cols×rows.
            let t: Vec<u8> = (0..imgs.cols * imgs.rows)
                .map(|i| src[(i % imgs.rows) * imgs.cols + i / imgs.rows])
                .collect();
            resize::prepare_hwc(&t, imgs.cols, imgs.rows, 1, 1, image_size)
        } else {
            resize::prepare_hwc(src, imgs.rows, imgs.cols, 1, 1, image_size)
        };
        dst.copy_from_slice(&prepared);
    });
    let classes = labels.as_ref().and_then(|l| l.iter().max()).map(|&m| usize::from(m) + 1);
    let description = format!(
        "MNIST-family idx ({images_name}): {} images 1×{}×{}{}{} -> {to_c}×{image_size}×{image_size}{}",
        imgs.count,
        imgs.rows,
        imgs.cols,
        classes.map_or(String::new(), |c| format!(" with labels ({c} classes)")),
        if transpose { ", EMNIST: transposed upright" } else { "" },
        unusable.map_or(String::new(), |why| format!("; labels unused: {why}")),
    );
    // Grey stays one stored plane; RGB is replicated on read.
    Ok(Box::new(ImageSet::new(to_c, 1, image_size, pixels, labels, description)))
}

/// Labels usable as classes number them densely, each with at least one image: a stray label
/// (200 among 0..=9) would otherwise make a conditional model of 201 classes, 191 never seen.
/// Class 0 alone may go unused: EMNIST letters numbers its 26 classes from 1.
fn check_dense_labels(labels: &[u8], labels_name: &str) -> Result<(), DataError> {
    let mut per_class = [0usize; 256];
    for &l in labels {
        per_class[usize::from(l)] += 1;
    }
    let Some(&max) = labels.iter().max() else { return Ok(()) };
    let missing: Vec<usize> = (1..=usize::from(max)).filter(|&c| per_class[c] == 0).collect();
    match missing.first() {
        None => Ok(()),
        Some(&first_missing) => Err(DataError::SparseLabels {
            labels: labels_name.into(),
            label: max,
            image: labels.iter().position(|&l| l == max).expect("max is a label"),
            missing: missing.len(),
            first_missing,
        }),
    }
}

/// EMNIST stores each image transposed (column-major); torchvision's EMNIST transposes it back.
/// Only the file name tells (`emnist-*-images-idx3-ubyte`), so the name decides.
fn is_emnist(images_name: &str) -> bool {
    Path::new(images_name)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("emnist"))
}

fn strip_gz(name: &str) -> &str {
    name.strip_suffix(".gz").unwrap_or(name)
}

fn is_images_name(name: &str) -> bool {
    let n = strip_gz(name);
    n.ends_with("images-idx3-ubyte") || n.ends_with("images.idx3-ubyte")
}

/// The images file of an idx directory: `*images-idx3-ubyte[.gz]`, preferring a training set.
pub(crate) fn find_images_file(dir: &Path) -> Result<Option<PathBuf>, DataError> {
    let candidates: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(is_images_name))
        .collect();
    let is_train = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("train"));
    Ok(candidates.iter().find(|p| is_train(p)).or(candidates.first()).cloned())
}

/// The training and test images files of an idx directory when it holds both, the
/// MNIST-family layout (`train-images-idx3-ubyte[.gz]` beside `t10k-images-idx3-ubyte[.gz]`;
/// a name with "test" counts as a test file too).
pub(crate) fn find_train_test_files(dir: &Path) -> Result<Option<(PathBuf, PathBuf)>, DataError> {
    let candidates: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(is_images_name))
        .collect();
    let named = |p: &&PathBuf, keys: &[&str]| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| keys.iter().any(|k| n.contains(k)))
    };
    let train = candidates.iter().find(|p| named(p, &["train"]));
    let test = candidates.iter().find(|p| named(p, &["t10k", "test"]));
    Ok(train.zip(test).map(|(a, b)| (a.clone(), b.clone())))
}

/// The labels file that belongs to an images file (same name with `labels-idx1`), if present.
fn find_labels_file(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let base = strip_gz(name);
    let labels_base = if base.ends_with("images.idx3-ubyte") {
        base.replace("images.idx3-ubyte", "labels.idx1-ubyte")
    } else {
        base.replace("images-idx3-ubyte", "labels-idx1-ubyte")
    };
    if labels_base == base {
        return None;
    }
    [labels_base.clone(), format!("{labels_base}.gz")]
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

pub(crate) fn open(
    path: &Path,
    is_dir: bool,
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    let images_path = if is_dir {
        find_images_file(path)?.ok_or_else(|| DataError::WrongFormat {
            path: path.display().to_string(),
            what: "no MNIST-family idx images file (*images-idx3-ubyte or *images-idx3-ubyte.gz) \
                   in this directory"
                .into(),
        })?
    } else {
        path.to_path_buf()
    };
    let images_name = images_path.display().to_string();
    let images = read_file(&images_path)?;
    let labels = match find_labels_file(&images_path) {
        Some(p) => Some((read_file(&p)?, p.display().to_string())),
        None => None,
    };
    idx_dataset_from_bytes(
        &images,
        &images_name,
        labels.as_ref().map(|(b, n)| (b.as_slice(), n.as_str())),
        image_size,
        channels,
    )
}
