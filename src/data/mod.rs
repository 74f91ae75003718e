//! Datasets and the batch loader.
//!
//! Every file format is decoded once, at [`open`], into u8 images already at the target size and
//! channel count (resize + centre crop like torchvision), so a training step only converts bytes
//! to floats. The formats: MNIST-family idx (raw or gzip), CIFAR-10 binary, a folder of PNG/JPEG,
//! and the procedural [`synthetic`] shapes that need no files. [`Loader`] turns any of them into
//! shuffled, seeded, resumable NCHW batches in [-1, 1].

mod cifar;
mod error;
mod folder;
mod idx;
mod loader;
pub mod resize;
mod synthetic;

use std::path::{Path, PathBuf};

pub use cifar::{CIFAR_RECORD_BYTES, CifarRecords, cifar_dataset_from_bytes, parse_cifar_bytes};
pub use error::DataError;
pub use idx::{
    IdxFile, IdxImages, idx_dataset_from_bytes, parse_idx_bytes, parse_idx_images, parse_idx_labels,
};
pub use loader::{BatchInfo, Loader, LoaderState, SYNTHETIC_EPOCH_IMAGES};
pub use synthetic::{Synthetic, synthetic};

/// What the trainer reads images from.
pub trait Dataset: Send + Sync {
    /// Number of images, None for an unlimited generator (synthetic).
    fn len(&self) -> Option<usize>;
    /// 1 or 3.
    fn channels(&self) -> usize;
    /// Square side, already resized.
    fn image_size(&self) -> usize;
    /// Image `index` as f32 in [-1, 1], CHW, into `out` (len channels·size·size).
    /// Panics if `index` is out of range or `out` has the wrong length: both are programming errors.
    fn image(&self, index: usize, out: &mut [f32]);
    fn label(&self, index: usize) -> Option<u8>;
    /// One line for the log, e.g. "MNIST-family idx (data/): 60000 images 1×28×28 -> 1×32×32".
    fn describe(&self) -> String;
    /// True for a dataset with no images; only [`Dataset::len`] decides.
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// The classes of a labelled dataset: its largest label + 1. None when it is unlimited or any
/// image has no label.
pub fn class_count(ds: &dyn Dataset) -> Option<usize> {
    let len = ds.len()?;
    let mut most = None;
    for i in 0..len {
        most = most.max(Some(ds.label(i)?));
    }
    most.map(|m| usize::from(m) + 1)
}

/// Which reader [`open`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Detect from the path: idx files, CIFAR-10 batches, or a folder of images.
    Auto,
    /// MNIST-family idx (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip.
    Mnist,
    /// CIFAR-10 binary (`data_batch_*.bin`).
    Cifar10,
    /// A folder of PNG/JPEG images, searched recursively.
    Folder,
}

/// The largest `image_size` accepted: beyond it one decoded image alone is hundreds of MB.
pub const MAX_IMAGE_SIZE: usize = 8192;

/// Opens the dataset at `path`, decoding every image to `image_size`×`image_size` with `channels`
/// channels (None: the data's own; 1 from RGB is BT.601 luma, 3 from grey replicates).
pub fn open(
    path: &Path,
    format: DataFormat,
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    check_params(image_size, channels)?;
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_dir() && !meta.is_file() {
        // Reading a FIFO blocks until a writer comes, a device may never end.
        return Err(DataError::WrongFormat {
            path: path.display().to_string(),
            what: format!(
                "is {}, expected a regular dataset file or a directory",
                special_file_kind(&meta.file_type())
            ),
        });
    }
    let format = match format {
        DataFormat::Auto => detect(path, meta.is_dir())?,
        f => f,
    };
    match format {
        DataFormat::Mnist => idx::open(path, meta.is_dir(), image_size, channels),
        DataFormat::Cifar10 => cifar::open(path, meta.is_dir(), image_size, channels),
        DataFormat::Folder => folder::open(path, image_size, channels),
        DataFormat::Auto => unreachable!("detect returns a concrete format"),
    }
}

/// The training and test images files of an MNIST-family idx directory, when `path` is a
/// directory holding both (`train-images-idx3-ubyte[.gz]` and `t10k-images-idx3-ubyte[.gz]`);
/// None otherwise. Each can be opened on its own with [`open`], which finds its labels.
pub fn idx_train_test_files(path: &Path) -> Result<Option<(PathBuf, PathBuf)>, DataError> {
    if !path.is_dir() {
        return Ok(None);
    }
    idx::find_train_test_files(path)
}

/// The checks every reader starts with: a sane size and 1 or 3 channels.
fn check_params(image_size: usize, channels: Option<usize>) -> Result<(), DataError> {
    if image_size == 0 || image_size > MAX_IMAGE_SIZE {
        return Err(DataError::ImageSize(image_size));
    }
    match channels {
        Some(c) if c != 1 && c != 3 => Err(DataError::Channels(c)),
        _ => Ok(()),
    }
}

fn detect(path: &Path, is_dir: bool) -> Result<DataFormat, DataError> {
    if is_dir {
        if idx::find_images_file(path)?.is_some() {
            return Ok(DataFormat::Mnist);
        }
        if !cifar::find_batches(path)?.is_empty() {
            return Ok(DataFormat::Cifar10);
        }
        if folder::has_images(path)? {
            return Ok(DataFormat::Folder);
        }
        return Err(DataError::NotRecognised { path: path.display().to_string() });
    }
    // A single file: sniff its first bytes, then its size.
    let mut head = [0u8; 4];
    let n = read_prefix(path, &mut head)?;
    let head = &head[..n];
    let len = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
    if head.starts_with(&idx::GZIP_MAGIC) || head == idx::IMAGES_MAGIC.to_be_bytes() {
        return Ok(DataFormat::Mnist);
    }
    let is_bin = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin"));
    if is_bin || (len > 0 && len.is_multiple_of(CIFAR_RECORD_BYTES as u64)) {
        return Ok(DataFormat::Cifar10);
    }
    if head == idx::LABELS_MAGIC.to_be_bytes() {
        return Err(DataError::WrongFormat {
            path: path.display().to_string(),
            what: "this is an idx labels file (magic 0x00000801); pass the images file \
                   (*images-idx3-ubyte[.gz]) or its directory"
                .into(),
        });
    }
    let magic = head.iter().fold(0u32, |m, &b| (m << 8) | b as u32);
    Err(DataError::WrongFormat {
        path: path.display().to_string(),
        what: format!(
            "not a recognised dataset file: starts with 0x{magic:08x}, neither gzip (1f 8b) nor idx images \
             (0x00000803), and its size {len} is not a multiple of 3073 bytes (CIFAR-10); a folder of \
             PNG/JPEG images must be given as its directory"
        ),
    })
}

/// What a path that is neither a regular file nor a directory is, for messages.
fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    let _ = kind;
    "not a regular file"
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize, DataError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut got = Vec::with_capacity(buf.len());
    f.take(buf.len() as u64).read_to_end(&mut got).map_err(|e| DataError::io(path, e))?;
    buf[..got.len()].copy_from_slice(&got);
    Ok(got.len())
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Sorted entries of a directory (files and directories alike).
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// 256-entry table u8 -> [-1, 1]: 0 maps to exactly -1 and 255 to exactly 1.
fn byte_to_unit() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|i| (i as f32 - 127.5) / 127.5))
}

/// The in-memory dataset every file format decodes into: u8, planar, at the target size.
/// Grey data asked for as RGB is stored once and replicated on read (a third of the memory).
pub(crate) struct ImageSet {
    channels: usize,
    stored_channels: usize,
    size: usize,
    count: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u8>>,
    description: String,
}

impl ImageSet {
    pub(crate) fn new(
        channels: usize,
        stored_channels: usize,
        size: usize,
        pixels: Vec<u8>,
        labels: Option<Vec<u8>>,
        description: String,
    ) -> Self {
        let per = stored_channels * size * size;
        assert!(per > 0 && pixels.len().is_multiple_of(per), "ImageSet: pixel buffer length");
        assert!(stored_channels == channels || stored_channels == 1, "ImageSet: channels");
        let count = pixels.len() / per;
        if let Some(l) = &labels {
            assert_eq!(l.len(), count, "ImageSet: label count");
        }
        ImageSet { channels, stored_channels, size, count, pixels, labels, description }
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> Option<usize> {
        Some(self.count)
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn image_size(&self) -> usize {
        self.size
    }
    fn image(&self, index: usize, out: &mut [f32]) {
        assert!(index < self.count, "ImageSet::image: index {index} out of range ({} images)", self.count);
        let plane = self.size * self.size;
        assert_eq!(out.len(), self.channels * plane, "ImageSet::image: output length");
        let per = self.stored_channels * plane;
        let src = &self.pixels[index * per..(index + 1) * per];
        let table = byte_to_unit();
        for out_plane in out.chunks_exact_mut(per) {
            for (o, &b) in out_plane.iter_mut().zip(src) {
                *o = table[b as usize];
            }
        }
    }
    fn label(&self, index: usize) -> Option<u8> {
        self.labels.as_ref().map(|l| l[index])
    }
    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// A zeroed pixel buffer of `count`×`per_image` bytes, or an error instead of an abort when the
/// request (a huge dataset at a huge size) cannot be met.
fn alloc_pixels(count: usize, per_image: usize, what: &str) -> Result<Vec<u8>, DataError> {
    let bytes = count as u128 * per_image as u128;
    let too_large = || DataError::TooLarge { what: what.to_string(), bytes };
    let n = usize::try_from(bytes).map_err(|_| too_large())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_large())?;
    v.resize(n, 0);
    Ok(v)
}

/// The target channel count: the requested one, or the data's own.
fn target_channels(requested: Option<usize>, own: usize) -> usize {
    requested.unwrap_or(own)
}
