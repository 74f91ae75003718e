//! Image grids as PNG, laid out and quantised like
//! `torchvision.utils.save_image(x, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))`.

use super::{IoError, display_name, write_atomic_with};
use image::ExtendedColorType;
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use std::path::Path;

/// Padding between and around the images, in pixels (torchvision's default).
const PADDING: usize = 2;

/// Lay out `n` images (NCHW f32 in [-1, 1], `c` = 1 or 3 channels) in a grid of `nrow`
/// columns and return `(width, height, pixels)`: row-major 8-bit pixels with `c` interleaved
/// channels. As torchvision: values clamped to [-1, 1] and mapped to (x + 1) / 2 · 255 + 0.5
/// truncated to u8, 2 black pixels of padding between and around the images, and a single
/// image returned without padding. NaN becomes 0.
///
/// Panics (a programming error) when `c` is not 1 or 3, `nrow` or a size is 0, or `images`
/// does not hold `n·c·h·w` values.
pub fn grid_pixels(
    images: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    nrow: usize,
) -> (u32, u32, Vec<u8>) {
    assert!(c == 1 || c == 3, "grid_pixels: images must have 1 or 3 channels, got {c}");
    assert!(
        n > 0 && h > 0 && w > 0 && nrow > 0,
        "grid_pixels: empty grid (n={n}, h={h}, w={w}, nrow={nrow})"
    );
    assert_eq!(
        images.len(),
        n * c * h * w,
        "grid_pixels: {} values for {n}×{c}×{h}×{w} images",
        images.len()
    );

    let pad = if n == 1 { 0 } else { PADDING };
    let cols = nrow.min(n);
    let rows = n.div_ceil(cols);
    let width = cols * (w + pad) + pad;
    let height = rows * (h + pad) + pad;
    let mut out = vec![0u8; width * height * c];
    for (k, image) in images.chunks_exact(c * h * w).enumerate() {
        let (gy, gx) = (k / cols, k % cols);
        let (y0, x0) = (gy * (h + pad) + pad, gx * (w + pad) + pad);
        for ch in 0..c {
            let plane = &image[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let row = ((y0 + y) * width + x0) * c + ch;
                for x in 0..w {
                    out[row + x * c] = quantise(plane[y * w + x]);
                }
            }
        }
    }
    (width as u32, height as u32, out)
}

/// torchvision's normalize=True, value_range=(-1, 1) then `mul(255).add_(0.5).clamp_(0, 255)`
/// and the cast to uint8, in the same f32 operations.
fn quantise(x: f32) -> u8 {
    if x.is_nan() {
        return 0;
    }
    let v = (x.clamp(-1.0, 1.0) + 1.0) / 2.0;
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Write the grid of [`grid_pixels`] as a PNG (greyscale for 1 channel, RGB for 3), atomically.
pub fn save_image_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    nrow: usize,
) -> Result<(), IoError> {
    let (width, height, pixels) = grid_pixels(images, n, c, h, w, nrow);
    let color = if c == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
    write_png(path, width, height, &pixels, color)
}

/// Encode 8-bit pixels as a PNG file, atomically.
pub(crate) fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    pixels: &[u8],
    color: ExtendedColorType,
) -> Result<(), IoError> {
    let mut encode_err = None;
    let result = write_atomic_with(path, |w| {
        PngEncoder::new(w).write_image(pixels, width, height, color).map_err(|e| {
            let msg = e.to_string();
            encode_err = Some(msg.clone());
            std::io::Error::other(msg)
        })
    });
    match (result, encode_err) {
        (Err(_), Some(msg)) => {
            Err(IoError::Encode { file: display_name(path), msg: format!("cannot encode PNG: {msg}") })
        }
        (r, _) => r,
    }
}
