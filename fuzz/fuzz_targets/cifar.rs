//! Arbitrary bytes into the CIFAR-10 reader: a Result, never a panic. Valid inputs go through
//! the whole dataset path (resize, luma) and every image is read back.
#![no_main]

use dcgan::data::{cifar_dataset_from_bytes, parse_cifar_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_cifar_bytes(data, "fuzz");
    let knob = data.last().copied().unwrap_or(0);
    let size = [32, 16, 5, 64][knob as usize % 4];
    let channels = [None, Some(1), Some(3)][(knob as usize / 4) % 3];
    // One file, and the same bytes split into two "batch files" at the first byte's proportion.
    let cut = data.first().map_or(0, |&c| c as usize * data.len() / 255);
    let (a, b) = data.split_at(cut);
    for files in [vec![("fuzz", data)], vec![("a", a), ("b", b)]] {
        if let Ok(ds) = cifar_dataset_from_bytes(&files, size, channels) {
            let mut out = vec![0f32; ds.channels() * size * size];
            for i in 0..ds.len().unwrap_or(0) {
                ds.image(i, &mut out);
                assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)), "pixel out of [-1, 1]");
                assert!(ds.label(i).is_some_and(|l| l < 10));
            }
        }
    }
});
