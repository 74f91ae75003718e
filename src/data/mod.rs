//! Datasets and the batch loader.
