//! The one error type of the data side. Every message names the file (or the setting), what was
//! found and what was expected, because the CLI prints it as is and the user has nothing else.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{name}: not an idx file: {len} bytes, shorter than the {need}-byte idx header")]
    IdxShortHeader { name: String, len: usize, need: usize },

    #[error("{name}: idx magic 0x{found:08x}, expected {expected}")]
    IdxMagic { name: String, found: u32, expected: &'static str },

    #[error("{name}: idx dimension {axis} is 0, expected at least 1")]
    IdxZeroDim { name: String, axis: &'static str },

    #[error(
        "{name}: truncated: header says {dims} = {expected} bytes, {what} has {actual} after its {header}-byte header"
    )]
    IdxTruncated {
        name: String,
        dims: String,
        expected: u128,
        what: &'static str,
        actual: u128,
        header: usize,
    },

    #[error(
        "{name}: trailing data: header says {dims} = {expected} bytes, {what} has {actual} after its {header}-byte header"
    )]
    IdxTrailing {
        name: String,
        dims: String,
        expected: u128,
        what: &'static str,
        actual: u128,
        header: usize,
    },

    #[error("{labels}: {found} labels, but {images} has {expected} images")]
    LabelCount { labels: String, found: usize, images: String, expected: usize },

    #[error(
        "{labels}: label {label} (image {image}) makes {} classes, but {missing} of them {} no image \
         (the first: class {first_missing}); expected the labels to number the classes 0..=N-1 \
         (or 1..=N, as EMNIST letters does) with at least one image each",
        *label as usize + 1,
        if *missing == 1 { "has" } else { "have" }
    )]
    SparseLabels { labels: String, label: u8, image: usize, missing: usize, first_missing: usize },

    #[error("{name}: gzip stream is corrupt: {reason}")]
    Gzip { name: String, reason: String },

    #[error(
        "{name}: size {len} is not a multiple of 3073 bytes (CIFAR-10 record: 1 label byte + 3×32×32 pixels)"
    )]
    CifarSize { name: String, len: usize },

    #[error("{name}: record {record} has label {label}, expected 0..=9 (CIFAR-10 has 10 classes)")]
    CifarLabel { name: String, record: usize, label: u8 },

    #[error("{path}: no PNG/JPEG images found (searched recursively for .png, .jpg, .jpeg)")]
    NoImages { path: String },

    /// `also` is empty, or names how many more images of the folder failed.
    #[error("{path}: cannot decode: {reason}{also}")]
    Decode { path: String, reason: String, also: String },

    #[error("{path}: {what}")]
    WrongFormat { path: String, what: String },

    #[error(
        "{path}: no dataset found: looked for an MNIST-family idx images file (*images-idx3-ubyte[.gz]), \
         CIFAR-10 binary batches (data_batch_*.bin) and PNG/JPEG images (searched recursively)"
    )]
    NotRecognised { path: String },

    #[error("image size {0} is out of range, expected 1..=8192")]
    ImageSize(usize),

    #[error("channels {0} is not supported, expected 1 (greyscale) or 3 (RGB)")]
    Channels(usize),

    #[error("{what}: {bytes} bytes of decoded images do not fit in memory")]
    TooLarge { what: String, bytes: u128 },

    #[error("batch size 0: a batch needs at least one image")]
    BatchSizeZero,

    #[error(
        "--batch-size {batch} is larger than the dataset, which has {len} image{}: {dataset}",
        if *len == 1 { "" } else { "s" }
    )]
    BatchTooLarge { batch: usize, len: usize, dataset: String },

    #[error("loader state {what}")]
    LoaderState { what: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path: path.display().to_string() }
        } else {
            DataError::Io { path: path.display().to_string(), source }
        }
    }
}
