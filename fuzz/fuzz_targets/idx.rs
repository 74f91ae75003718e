//! Arbitrary bytes into the idx reader (raw and gzip): it must return a Result, never panic,
//! and never allocate from the header's claims. Valid inputs go through the whole dataset path
//! (resize, crop, channel replication) and every image is read back.
#![no_main]

use dcgan::data::{Dataset, idx_dataset_from_bytes, parse_idx_bytes, parse_idx_labels};
use libfuzzer_sys::fuzz_target;

fn read_all(ds: &dyn Dataset) {
    let s = ds.image_size();
    let mut out = vec![0f32; ds.channels() * s * s];
    for i in 0..ds.len().unwrap_or(0) {
        ds.image(i, &mut out);
        assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)), "pixel out of [-1, 1]");
        let _ = ds.label(i);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_idx_bytes(data, "fuzz");
    let _ = parse_idx_labels(data, "fuzz");
    // The last byte picks the target size, channels and file name, so both resize directions,
    // the grey-to-RGB path and the EMNIST transpose are exercised.
    let knob = data.last().copied().unwrap_or(0);
    let size = [1, 7, 16, 28, 33][knob as usize % 5];
    let channels = [None, Some(1), Some(3)][(knob as usize / 5) % 3];
    // EMNIST files (by name) are transposed on load.
    let name = if knob & 0x80 != 0 { "emnist-fuzz" } else { "fuzz" };
    if let Ok(ds) = idx_dataset_from_bytes(data, name, None, size, channels) {
        read_all(&*ds);
    }
    // Images and labels from one input: the first byte says where to cut.
    if let Some((&cut, rest)) = data.split_first() {
        let at = cut as usize * rest.len() / 255;
        let (images, labels) = rest.split_at(at);
        if let Ok(ds) = idx_dataset_from_bytes(images, "images", Some((labels, "labels")), size, channels) {
            read_all(&*ds);
        }
    }
});
