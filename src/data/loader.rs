//! Seeded, resumable batches.
//!
//! A finite dataset is visited in a fresh permutation each epoch, drawn from the seed and the
//! epoch number alone, and the last incomplete batch is dropped so that every batch has the same
//! shape (BatchNorm statistics depend on it). The synthetic dataset is read at consecutive indices
//! in nominal epochs of [`SYNTHETIC_EPOCH_IMAGES`]. Either way the loader's whole state is
//! `(epoch, cursor)`: a resumed run sees exactly the batches the uninterrupted run would have.
//! With mirroring on, whether an image is flipped is drawn from the seed, the epoch and its
//! position in the epoch alone, so it needs no state either.

use std::sync::Arc;

use rayon::prelude::*;

use crate::rng::Rng;

use super::{DataError, Dataset};

/// Images in one reported "epoch" of an unlimited dataset (MNIST's training-set size), rounded
/// down to whole batches.
pub const SYNTHETIC_EPOCH_IMAGES: usize = 60_000;

/// Where a batch sits in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub epoch: u64,
    pub step_in_epoch: u64,
}

/// The loader's position, for checkpoints: the epoch of the next batch and how many images of
/// that epoch are already consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub cursor: u64,
}

pub struct Loader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    cursor: usize,
    /// The current epoch's visiting order (finite datasets only).
    order: Vec<u32>,
    /// Flip each image left to right with probability ½ ([`Loader::with_mirror`]).
    mirror: bool,
}

/// Mixes the epoch number into a stream seed distinct from every other epoch's.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    let mut z = epoch.wrapping_add(0x6A09_E667_F3BC_C909).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    seed ^ z ^ (z >> 32)
}

impl Loader {
    /// A loader at the start of epoch 0.
    pub fn new(dataset: Arc<dyn Dataset>, batch_size: usize, seed: u64) -> Result<Self, DataError> {
        Self::restore(dataset, batch_size, seed, LoaderState::default())
    }

    /// A loader continuing from `state` (from [`Loader::state`] of a run with the same dataset,
    /// batch size and seed).
    pub fn restore(
        dataset: Arc<dyn Dataset>,
        batch_size: usize,
        seed: u64,
        state: LoaderState,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::BatchSizeZero);
        }
        if dataset.image_size() == 0 {
            return Err(DataError::ImageSize(0));
        }
        if let Some(len) = dataset.len() {
            if batch_size > len {
                return Err(DataError::BatchTooLarge { batch: batch_size, len, dataset: dataset.describe() });
            }
            if len > u32::MAX as usize {
                return Err(DataError::TooLarge { what: dataset.describe(), bytes: len as u128 });
            }
        }
        let mut loader = Loader {
            dataset,
            batch_size,
            seed,
            epoch: state.epoch,
            cursor: 0,
            order: Vec::new(),
            mirror: false,
        };
        let epoch_images = loader.batches_per_epoch() * batch_size;
        let cursor = usize::try_from(state.cursor).unwrap_or(usize::MAX);
        if cursor % batch_size != 0 || cursor >= epoch_images {
            return Err(DataError::LoaderState {
                what: format!(
                    "cursor {} does not fit: expected a multiple of the batch size {batch_size} below {epoch_images} \
                     (was the run saved with another batch size or dataset?)",
                    state.cursor
                ),
            });
        }
        loader.cursor = cursor;
        loader.shuffle_epoch();
        Ok(loader)
    }

    /// Mirror augmentation (StyleGAN's `--mirror`): each image, every time it is drawn, is
    /// flipped left to right with probability ½, so the data seen holds both orientations of
    /// every image, for data whose mirror image is as plausible as the image (faces, scenes,
    /// not text).
    pub fn with_mirror(mut self, on: bool) -> Self {
        self.mirror = on;
        self
    }

    /// Whether the image at position `pos` of the current epoch is flipped.
    fn mirrored_at(&self, pos: usize) -> bool {
        if !self.mirror {
            return false;
        }
        // One draw of a generator seeded by (seed, epoch, position): stateless, like the order.
        let mut z = epoch_seed(self.seed ^ 0x4D49_5252_4F52, self.epoch)
            ^ (pos as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 1 == 1
    }

    /// Whole batches per epoch (the last incomplete batch is dropped).
    pub fn batches_per_epoch(&self) -> usize {
        (self.dataset.len().unwrap_or(SYNTHETIC_EPOCH_IMAGES) / self.batch_size).max(1)
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Floats in one batch: N·C·H·W.
    pub fn batch_len(&self) -> usize {
        let s = self.dataset.image_size();
        self.batch_size * self.dataset.channels() * s * s
    }

    pub fn state(&self) -> LoaderState {
        LoaderState { epoch: self.epoch, cursor: self.cursor as u64 }
    }

    fn shuffle_epoch(&mut self) {
        match self.dataset.len() {
            Some(len) => {
                self.order.clear();
                self.order.extend(0..len as u32);
                Rng::new(epoch_seed(self.seed, self.epoch)).shuffle(&mut self.order);
            }
            None => self.order.clear(),
        }
    }

    /// The dataset index of position `pos` of the current epoch.
    fn index_at(&self, pos: usize) -> usize {
        if self.dataset.len().is_some() {
            self.order[pos] as usize
        } else {
            // Unlimited: consecutive indices across epochs (wrapping only after 2^64 images).
            let per_epoch = (self.batches_per_epoch() * self.batch_size) as u64;
            self.epoch.wrapping_mul(per_epoch).wrapping_add(pos as u64) as usize
        }
    }

    /// The dataset indices of the next batch, without consuming it.
    pub fn peek_indices(&self) -> Vec<usize> {
        (self.cursor..self.cursor + self.batch_size).map(|p| self.index_at(p)).collect()
    }

    /// Fills `out` with the next batch, N×C×H×W in [-1, 1], and advances. Images are filled in
    /// parallel; each is written by one thread from its index alone, so the result does not
    /// depend on the thread count.
    pub fn next_batch(&mut self, out: &mut Vec<f32>) -> BatchInfo {
        let per = self.batch_len() / self.batch_size;
        out.clear();
        out.resize(self.batch_len(), 0.0);
        let indices = self.peek_indices();
        let flips: Vec<bool> =
            (self.cursor..self.cursor + self.batch_size).map(|p| self.mirrored_at(p)).collect();
        let (dataset, side) = (&self.dataset, self.dataset.image_size());
        out.par_chunks_mut(per).zip(indices.par_iter().zip(&flips)).for_each(|(img, (&i, &flip))| {
            dataset.image(i, img);
            if flip {
                img.chunks_mut(side).for_each(<[f32]>::reverse);
            }
        });
        let info = BatchInfo { epoch: self.epoch, step_in_epoch: (self.cursor / self.batch_size) as u64 };
        self.cursor += self.batch_size;
        if self.cursor / self.batch_size >= self.batches_per_epoch() {
            self.epoch += 1;
            self.cursor = 0;
            self.shuffle_epoch();
        }
        info
    }
}
