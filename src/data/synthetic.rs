//! The embedded default dataset: filled circles, squares and triangles of bright random colour,
//! size and position on a dark background, anti-aliased. Image `i` is a pure function of
//! `(seed, i)`, so the set is unlimited, needs no files or memory, and any batch can be regenerated
//! on resume. One or two shapes per image keeps it easy enough for a small DCGAN to learn in
//! minutes on a CPU, while colour, size, position and rotation keep it from being trivial.

use crate::rng::Rng;

use super::Dataset;

/// The procedural shapes dataset; see the module notes.
#[derive(Clone, Debug)]
pub struct Synthetic {
    seed: u64,
    size: usize,
    channels: usize,
}

/// The unlimited RGB shapes dataset at `image_size`×`image_size`.
pub fn synthetic(seed: u64, image_size: usize) -> Box<dyn Dataset> {
    Box::new(Synthetic::new(seed, image_size))
}

impl Synthetic {
    pub fn new(seed: u64, image_size: usize) -> Self {
        Synthetic { seed, size: image_size, channels: 3 }
    }

    /// The same images as BT.601 luma (1) or RGB (3). Panics on anything else (the CLI restricts
    /// `--channels` to 1|3, so that is a programming error).
    pub fn with_channels(mut self, channels: usize) -> Self {
        assert!(channels == 1 || channels == 3, "Synthetic::with_channels({channels}): expected 1 or 3");
        self.channels = channels;
        self
    }

    /// A stream seed for image `index`: SplitMix64's finaliser of the index, so neighbouring
    /// indices get unrelated streams, combined with the dataset seed.
    fn image_seed(&self, index: usize) -> u64 {
        let mut z = (index as u64).wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.seed.rotate_left(17) ^ z ^ (z >> 31)
    }
}

/// Colour from hue in [0, 1), saturation and value in [0, 1].
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = (h.fract() * 6.0).min(5.999_999);
    let sector = h6 as u32;
    let f = h6 - sector as f32;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// A convex shape as half-planes `n·p <= d` (unit outward normals) or a circle.
enum Shape {
    Circle { cx: f32, cy: f32, r: f32 },
    Polygon { edges: Vec<([f32; 2], f32)> },
}

impl Shape {
    /// Signed distance in pixels, negative inside. For polygons the max over edges: exact along
    /// edges, which is where the anti-aliasing looks.
    fn distance(&self, x: f32, y: f32) -> f32 {
        match self {
            Shape::Circle { cx, cy, r } => ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() - r,
            Shape::Polygon { edges } => {
                edges.iter().map(|(n, d)| n[0] * x + n[1] * y - d).fold(f32::NEG_INFINITY, f32::max)
            }
        }
    }

    fn polygon(center: [f32; 2], vertices: &[[f32; 2]]) -> Shape {
        let k = vertices.len();
        let edges = (0..k)
            .map(|i| {
                let (a, b) = (vertices[i], vertices[(i + 1) % k]);
                let mut n = [b[1] - a[1], a[0] - b[0]];
                let len = (n[0] * n[0] + n[1] * n[1]).sqrt().max(1e-12);
                n = [n[0] / len, n[1] / len];
                // Point away from the centre whatever the winding.
                if n[0] * (a[0] - center[0]) + n[1] * (a[1] - center[1]) < 0.0 {
                    n = [-n[0], -n[1]];
                }
                (n, n[0] * a[0] + n[1] * a[1])
            })
            .collect();
        Shape::Polygon { edges }
    }
}

impl Dataset for Synthetic {
    fn len(&self) -> Option<usize> {
        None
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn image_size(&self) -> usize {
        self.size
    }

    fn image(&self, index: usize, out: &mut [f32]) {
        let s = self.size;
        let plane = s * s;
        assert_eq!(out.len(), self.channels * plane, "Synthetic::image: output length");
        let mut rng = Rng::new(self.image_seed(index));
        let to_channels = |rgb: [f32; 3]| -> [f32; 3] {
            if self.channels == 1 {
                let y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
                [y, y, y]
            } else {
                rgb
            }
        };
        // Dark, slightly tinted background; values in [0, 1] until the final mapping to [-1, 1].
        let bg = to_channels([rng.uniform(0.0, 0.16), rng.uniform(0.0, 0.16), rng.uniform(0.0, 0.16)]);
        for (c, p) in out.chunks_exact_mut(plane).enumerate() {
            p.fill(bg[c]);
        }
        let sf = s as f32;
        let shapes = 1 + rng.below(2);
        for _ in 0..shapes {
            let kind = rng.below(3);
            let colour =
                to_channels(hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.65, 1.0), rng.uniform(0.8, 1.0)));
            let r = sf * rng.uniform(0.16, 0.3);
            let cx = rng.uniform(r, sf - r);
            let cy = rng.uniform(r, sf - r);
            let angle = rng.uniform(0.0, std::f32::consts::TAU);
            let shape = match kind {
                0 => Shape::Circle { cx, cy, r },
                1 => {
                    // Axis-aligned, with the circle's area: half-side r·√π/2.
                    let h = r * 0.886;
                    Shape::polygon(
                        [cx, cy],
                        &[[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]],
                    )
                }
                _ => {
                    // Equilateral, circumradius a bit larger than r so it is not smaller-looking.
                    let rr = r * 1.2;
                    let v: Vec<[f32; 2]> = (0..3)
                        .map(|k| {
                            let a = angle + k as f32 * std::f32::consts::TAU / 3.0;
                            [cx + rr * a.cos(), cy + rr * a.sin()]
                        })
                        .collect();
                    Shape::polygon([cx, cy], &v)
                }
            };
            // Only the bounding box (plus a pixel of anti-aliasing) can be covered.
            let reach = if kind == 2 { r * 1.2 } else { r } + 1.0;
            let x0 = (cx - reach).floor().max(0.0) as usize;
            let y0 = (cy - reach).floor().max(0.0) as usize;
            let x1 = ((cx + reach).ceil().max(0.0) as usize).min(s);
            let y1 = ((cy + reach).ceil().max(0.0) as usize).min(s);
            for y in y0..y1 {
                for x in x0..x1 {
                    // Coverage of the pixel from the signed distance at its centre: a one-pixel ramp.
                    let a = (0.5 - shape.distance(x as f32 + 0.5, y as f32 + 0.5)).clamp(0.0, 1.0);
                    if a > 0.0 {
                        for (c, p) in out.chunks_exact_mut(plane).enumerate() {
                            let v = &mut p[y * s + x];
                            *v += (colour[c] - *v) * a;
                        }
                    }
                }
            }
        }
        for v in out.iter_mut() {
            *v = (*v * 2.0 - 1.0).clamp(-1.0, 1.0);
        }
    }

    fn label(&self, _index: usize) -> Option<u8> {
        None
    }

    fn describe(&self) -> String {
        format!(
            "synthetic shapes (seed {}): unlimited {}×{s}×{s} images of 1–2 circles/squares/triangles",
            self.seed,
            self.channels,
            s = self.size
        )
    }
}
