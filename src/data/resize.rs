//! Resize-then-centre-crop and channel conversion on u8 images.
//!
//! The geometry is torchvision's `Resize(size)` (short side to `size`, long side
//! `floor(size·long/short)`) followed by `CenterCrop(size)` (offset `round((len - size)/2)`), and
//! the filter is PIL's antialiased bilinear (triangle, support widened by the downscale factor),
//! torchvision's default, down to PIL's fixed-point rounding: the bytes equal Pillow's. Only the cropped window is computed, so memory stays `size²` per image
//! even for an absurd aspect ratio in a hostile file.

/// ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) in PIL's `convert("L")` fixed point, so a
/// greyscale conversion gives the bytes PIL gives.
pub fn luma601(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Converts interleaved HWC pixels with `from` channels (1 or 3) to `to` channels (1 or 3).
pub fn convert_channels(hwc: &[u8], from: usize, to: usize) -> Vec<u8> {
    match (from, to) {
        (a, b) if a == b => hwc.to_vec(),
        (1, 3) => hwc.iter().flat_map(|&v| [v, v, v]).collect(),
        (3, 1) => hwc.chunks_exact(3).map(|p| luma601(p[0], p[1], p[2])).collect(),
        _ => unreachable!("channel conversion {from} -> {to}"),
    }
}

/// PIL's fixed-point precision for 8-bit resampling: 32 - 8 - 2 bits of fraction.
const PRECISION_BITS: u32 = 22;

/// One axis of the separable resampler: for each output index, the first source index and the
/// fixed-point weights of the source pixels it reads.
struct AxisWeights {
    start: Vec<usize>,
    weights: Vec<Vec<i64>>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Weights for the output indices `offset..offset + count` of a resize of `in_len` to
/// `full_out_len`: PIL's `precompute_coeffs` with the bilinear filter, then its 8-bit
/// fixed-point rounding, so results match PIL (and so torchvision) exactly.
fn axis_weights(in_len: usize, full_out_len: usize, offset: usize, count: usize) -> AxisWeights {
    let scale = in_len as f64 / full_out_len as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    let mut start = Vec::with_capacity(count);
    let mut weights = Vec::with_capacity(count);
    for out in offset..offset + count {
        let center = (out as f64 + 0.5) * scale;
        let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(in_len - 1);
        let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, in_len);
        let mut w: Vec<f64> = (lo..hi).map(|x| triangle((x as f64 - center + 0.5) / filter_scale)).collect();
        let sum: f64 = w.iter().sum();
        if sum > 0.0 {
            w.iter_mut().for_each(|v| *v /= sum);
        } else {
            // Cannot happen for the triangle at these positions; nearest pixel as a safe fallback.
            w.iter_mut().for_each(|v| *v = 0.0);
            w[0] = 1.0;
        }
        let one = (1i64 << PRECISION_BITS) as f64;
        start.push(lo);
        weights.push(
            w.into_iter()
                .map(|v| if v < 0.0 { (v * one - 0.5) as i64 } else { (v * one + 0.5) as i64 })
                .collect(),
        );
    }
    AxisWeights { start, weights }
}

/// PIL's `clip8`: round (the accumulator starts at one half) and clamp to a byte.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved HWC u8 image (`h`×`w`, `c` channels) so that its short side is `size`,
/// crops the centre `size`×`size`, and returns it interleaved HWC.
pub fn resize_center_crop(hwc: &[u8], h: usize, w: usize, c: usize, size: usize) -> Vec<u8> {
    assert_eq!(hwc.len(), h * w * c, "resize_center_crop: buffer length");
    assert!(h > 0 && w > 0 && size > 0, "resize_center_crop: empty image");
    if h == size && w == size {
        return hwc.to_vec();
    }
    // torchvision Resize(int): the short side becomes `size`, the long side keeps the aspect ratio
    // (truncated), computed in f64 to avoid overflow for hostile sizes.
    let (new_h, new_w) = if w <= h {
        (((size as f64 * h as f64 / w as f64) as usize).max(size), size)
    } else {
        (size, ((size as f64 * w as f64 / h as f64) as usize).max(size))
    };
    // torchvision CenterCrop: offset round((len - size) / 2).
    let top = ((new_h - size) as f64 / 2.0).round() as usize;
    let left = ((new_w - size) as f64 / 2.0).round() as usize;
    let xw = axis_weights(w, new_w, left, size);
    let yw = axis_weights(h, new_h, top, size);
    let half = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass, only over the source rows the vertical pass reads, into bytes as PIL does.
    let row_lo = yw.start[0];
    let row_hi = yw.start.iter().zip(&yw.weights).map(|(s, k)| s + k.len()).max().unwrap_or(row_lo + 1);
    let mut tmp = vec![0u8; (row_hi - row_lo) * size * c];
    for (r, tmp_row) in (row_lo..row_hi).zip(tmp.chunks_exact_mut(size * c)) {
        let src_row = &hwc[r * w * c..(r + 1) * w * c];
        for (x, (&s, k)) in xw.start.iter().zip(&xw.weights).enumerate() {
            for ch in 0..c {
                let mut acc = half;
                for (i, &kw) in k.iter().enumerate() {
                    acc += kw * src_row[(s + i) * c + ch] as i64;
                }
                tmp_row[x * c + ch] = clip8(acc);
            }
        }
    }
    let mut out = vec![0u8; size * size * c];
    for (y, (&s, k)) in yw.start.iter().zip(&yw.weights).enumerate() {
        let out_row = &mut out[y * size * c..(y + 1) * size * c];
        for (xc, o) in out_row.iter_mut().enumerate() {
            let mut acc = half;
            for (i, &kw) in k.iter().enumerate() {
                acc += kw * tmp[(s + i - row_lo) * size * c + xc] as i64;
            }
            *o = clip8(acc);
        }
    }
    out
}

/// Interleaved HWC to planar CHW.
pub fn hwc_to_chw(hwc: &[u8], hw: usize, c: usize) -> Vec<u8> {
    if c == 1 {
        return hwc.to_vec();
    }
    let mut out = vec![0u8; hwc.len()];
    for (p, px) in hwc.chunks_exact(c).enumerate().take(hw) {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * hw + p] = v;
        }
    }
    out
}

/// Planar CHW to interleaved HWC.
pub fn chw_to_hwc(chw: &[u8], hw: usize, c: usize) -> Vec<u8> {
    if c == 1 {
        return chw.to_vec();
    }
    let mut out = vec![0u8; chw.len()];
    for ch in 0..c {
        for p in 0..hw {
            out[p * c + ch] = chw[ch * hw + p];
        }
    }
    out
}

/// Converts one planar (CHW) source image to the target channels and size, planar output.
pub fn prepare_chw(chw: &[u8], h: usize, w: usize, c: usize, to_c: usize, size: usize) -> Vec<u8> {
    let hwc = chw_to_hwc(chw, h * w, c);
    prepare_hwc(&hwc, h, w, c, to_c, size)
}

/// Converts one interleaved (HWC) source image to the target channels and size, planar output.
/// Channels are converted first: luma before resizing is a third of the work, and both are linear.
pub fn prepare_hwc(hwc: &[u8], h: usize, w: usize, c: usize, to_c: usize, size: usize) -> Vec<u8> {
    let converted = convert_channels(hwc, c, to_c);
    let resized = resize_center_crop(&converted, h, w, to_c, size);
    hwc_to_chw(&resized, size * size, to_c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_already_the_size() {
        let img: Vec<u8> = (0..16).collect();
        assert_eq!(resize_center_crop(&img, 4, 4, 1, 4), img);
    }

    #[test]
    fn constant_image_stays_constant_up_and_down() {
        let img = vec![77u8; 28 * 28];
        assert!(resize_center_crop(&img, 28, 28, 1, 32).iter().all(|&v| v == 77));
        let img = vec![200u8; 100 * 60 * 3];
        assert!(resize_center_crop(&img, 100, 60, 3, 16).iter().all(|&v| v == 200));
    }

    #[test]
    fn centre_crop_of_a_wide_image_keeps_the_middle() {
        // 4 rows × 12 columns: left third 0, middle third 255, right third 0 -> size 4 is the middle.
        let mut img = vec![0u8; 4 * 12];
        for r in 0..4 {
            for cidx in 4..8 {
                img[r * 12 + cidx] = 255;
            }
        }
        let out = resize_center_crop(&img, 4, 12, 1, 4);
        assert!(out.iter().all(|&v| v == 255), "{out:?}");
    }

    #[test]
    fn extreme_aspect_ratio_is_cheap() {
        let img = vec![9u8; 100_000];
        let out = resize_center_crop(&img, 1, 100_000, 1, 64);
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|&v| v == 9));
    }

    /// Golden outputs from Pillow 13.0.0, torchvision's default path for `Resize(s)` +
    /// `CenterCrop(s)` on PIL images: `Image.frombytes(mode, (w, h), pattern).resize((nw, nh),
    /// Image.BILINEAR).crop((left, top, left + s, top + s)).tobytes()`, with `pattern` below.
    #[test]
    fn matches_pillow_bilinear_resize_and_centre_crop_exactly() {
        let pattern = |h: usize, w: usize, c: usize| -> Vec<u8> {
            let mut v = Vec::new();
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        v.push(((x * 37 + y * 11 + ch * 71 + (x * y % 7) * 19) % 256) as u8);
                    }
                }
            }
            v
        };
        // 9×13 RGB -> 6: downscale, resized to 6×8, crop left 1.
        let rgb: [u8; 108] = [
            90, 161, 160, 156, 169, 121, 150, 72, 117, 64, 87, 158, 69, 140, 163, 142, 189, 59, 155, 182, 96,
            188, 87, 104, 78, 97, 168, 53, 124, 190, 121, 176, 135, 201, 116, 94, 179, 148, 72, 158, 113,
            121, 126, 103, 174, 65, 136, 170, 154, 158, 73, 185, 58, 106, 184, 67, 70, 154, 71, 140, 72, 129,
            200, 78, 121, 178, 172, 83, 78, 169, 58, 112, 200, 84, 86, 145, 63, 131, 44, 101, 172, 83, 126,
            183, 181, 95, 90, 111, 64, 118, 147, 110, 66, 97, 78, 146, 95, 150, 172, 105, 176, 157, 151, 152,
            61, 108, 70, 122,
        ];
        assert_eq!(resize_center_crop(&pattern(9, 13, 3), 9, 13, 3, 6), rgb);
        // 5×4 grey -> 8: upscale, resized to 10×8, crop top 1.
        let grey: [u8; 64] = [
            3, 13, 34, 55, 76, 97, 118, 128, 8, 21, 47, 72, 98, 124, 149, 162, 14, 29, 59, 90, 120, 151, 181,
            196, 19, 37, 72, 107, 142, 178, 212, 230, 25, 45, 85, 125, 164, 196, 219, 231, 30, 53, 98, 142,
            187, 206, 201, 198, 36, 61, 110, 151, 184, 200, 200, 199, 41, 68, 123, 152, 156, 177, 215, 233,
        ];
        assert_eq!(resize_center_crop(&pattern(5, 4, 1), 5, 4, 1, 8), grey);
    }

    #[test]
    fn luma_and_replication() {
        assert_eq!(luma601(255, 0, 0), 76);
        assert_eq!(luma601(0, 255, 0), 150);
        assert_eq!(luma601(0, 0, 255), 29);
        assert_eq!(convert_channels(&[5, 6], 1, 3), vec![5, 5, 5, 6, 6, 6]);
    }
}
