//! DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
//! Training"): every image D sees, real or generated, in D's steps and in G's, is augmented by
//! differentiable transforms, so G's gradient passes back through them. D then cannot memorise
//! a small training set pixel for pixel, and G is not pushed to draw the augmentation, since
//! real and fake images get the same. The paper's three transforms, in its order:
//!
//! - `color`: brightness x + (r₀ − ½); saturation (x − m_c)·2r₁ + m_c, with m_c the mean over
//!   channels at each pixel (RGB only: grey images have nothing to desaturate); contrast
//!   (x − m)·(r₂ + ½) + m, with m the image's mean. Built from the engine's differentiable
//!   ops ([`color`]).
//! - `translation`: a shift by up to an eighth of the side along each axis, zero-filled;
//! - `cutout`: a square of half the side set to 0 around a random centre. Both in one kernel,
//!   [`crate::ops::translate_cutout`].
//!
//! Each (step, batch) draws its factors from its own seeded generator, as instance noise
//! does, so a resumed run draws the same ones with no state kept.

use super::step::batch_seed;
use crate::backend::ChannelShape;
use crate::ops::{add_bias, conv_transpose2d, conv2d, translate_cutout};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Which of DiffAugment's transforms a run applies: `--diffaugment color,translation,cutout`
/// (the paper's policy, and the flag's default), or any non-empty part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DiffAugmentPolicy {
    pub color: bool,
    pub translation: bool,
    pub cutout: bool,
}

impl DiffAugmentPolicy {
    /// The paper's policy, every transform.
    pub const ALL: DiffAugmentPolicy = DiffAugmentPolicy { color: true, translation: true, cutout: true };
    const NAMES: [&'static str; 3] = ["color", "translation", "cutout"];
}

impl std::str::FromStr for DiffAugmentPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut on = [false; 3];
        for part in s.split(',').map(str::trim) {
            let Some(i) = Self::NAMES.iter().position(|&n| n == part) else {
                return Err(format!(
                    "{s:?}: expected a comma-separated list of color, translation and cutout (e.g. color,translation,cutout)"
                ));
            };
            on[i] = true;
        }
        Ok(DiffAugmentPolicy { color: on[0], translation: on[1], cutout: on[2] })
    }
}

impl std::fmt::Display for DiffAugmentPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = [self.color, self.translation, self.cutout];
        let names: Vec<&str> = Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        f.write_str(&names.join(","))
    }
}

impl TryFrom<String> for DiffAugmentPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DiffAugmentPolicy> for String {
    fn from(p: DiffAugmentPolicy) -> String {
        p.to_string()
    }
}

/// A run's DiffAugment: the transforms it applies and the seed its draws derive from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffAugment {
    pub seed: u64,
    pub policy: DiffAugmentPolicy,
}

impl DiffAugment {
    /// The [`translate_cutout`] parameters, [n · 6], of `n` images of side `side` in batch
    /// `which` of step `t` (its shifts 0 without translation, its cut empty without cutout).
    pub fn params(&self, n: usize, side: usize, t: u64, which: u64) -> Vec<f32> {
        let mut rng = Rng::new(batch_seed(self.seed, t, which, 0x0D1F_FA96));
        // DiffAugment's own rounding: int(side · ratio + 0.5).
        let (shift, cut) = ((side + 4) / 8, side.div_ceil(2));
        let mut out = Vec::with_capacity(6 * n);
        for _ in 0..n {
            let mut draw = |k: usize| rng.below(k as u64) as f32;
            let (dy, dx) = (draw(2 * shift + 1) - shift as f32, draw(2 * shift + 1) - shift as f32);
            let centre = side + 1 - cut % 2;
            let (cy, cx) = (draw(centre) - (cut / 2) as f32, draw(centre) - (cut / 2) as f32);
            let shifts = if self.policy.translation { [dy, dx] } else { [0.0; 2] };
            let box_ = if self.policy.cutout { [cy, cy + cut as f32, cx, cx + cut as f32] } else { [0.0; 4] };
            out.extend(shifts.into_iter().chain(box_));
        }
        out
    }

    /// The colour factors r, [n · 3] in [0, 1), of batch `which` of step `t`.
    pub fn color_factors(&self, n: usize, t: u64, which: u64) -> Vec<f32> {
        let mut rng = Rng::new(batch_seed(self.seed, t, which, 0xC010_2A6D));
        (0..3 * n).map(|_| rng.uniform(0.0, 1.0)).collect()
    }

    /// `x` augmented by the draws of batch `which` of step `t`.
    pub fn apply(&self, x: &Tensor, t: u64, which: u64) -> Tensor {
        let [n, _, h, w] = x.dims4("DiffAugment");
        assert_eq!(h, w, "DiffAugment: square images");
        let mut x = x.clone();
        if self.policy.color {
            x = color(&x, &self.color_factors(n, t, which));
        }
        if self.policy.translation || self.policy.cutout {
            let params = Tensor::from_vec(self.params(n, h, t, which), &[n, 6], x.device());
            x = translate_cutout(&x, &params);
        }
        x
    }
}

/// DiffAugment's colour transforms of `x` [n, c, h, w] with image i's factors r[3i..3i + 3]
/// (module docs): brightness, saturation (c > 1), then contrast. Linear in x; the per-image
/// terms are channel biases of x seen as one image of n channels, the channel mean a 1×1
/// convolution by 1/c and its broadcast back a 1×1 transposed convolution by 1.
pub fn color(x: &Tensor, r: &[f32]) -> Tensor {
    let [n, c, h, w] = x.dims4("DiffAugment color");
    assert_eq!(r.len(), 3 * n, "DiffAugment color: three factors an image");
    let dev = x.device();
    let per_image = ChannelShape { n: 1, c: n, hw: c * h * w };
    let factor = |k: usize, f: fn(f32) -> f32| r.chunks(3).map(move |q| f(q[k]));
    // A factor of every image, repeated over the image.
    let full = |k: usize, f: fn(f32) -> f32| {
        let v: Vec<f32> = factor(k, f).flat_map(|v| std::iter::repeat_n(v, c * h * w)).collect();
        Tensor::from_vec(v, &[n, c, h, w], dev)
    };
    let of_images = |k: usize, f: fn(f32) -> f32| Tensor::from_vec(factor(k, f).collect(), &[n], dev);

    let mut x = add_bias("diffaugment_brightness", x.clone(), Some(&of_images(0, |r| r - 0.5)), per_image);
    if c > 1 {
        let mean = conv2d(&x, &Tensor::full(&[1, c, 1, 1], 1.0 / c as f32, dev), None, 1, 0);
        let mean = conv_transpose2d(&mean, &Tensor::ones(&[1, c, 1, 1], dev), None, 1, 0, 0);
        x = x.sub(&mean).mul(&full(1, |r| 2.0 * r)).add(&mean);
    }
    // (x − m)(r + ½) + m = x·(r + ½) + m·(½ − r), m the image's mean.
    let mean = x.reshape(&[1, n, c * h, w]).mean_channels();
    let scaled = x.mul(&full(2, |r| r + 0.5));
    add_bias("diffaugment_contrast", scaled, Some(&mean.mul(&of_images(2, |r| 0.5 - r))), per_image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draws at side 32: shifts within ±4 (int(32/8 + 0.5)) and 16-pixel cuts whose
    /// centres span the image, every value reached; each (step, batch) its own, the same every
    /// time it is asked for; a transform left out of the policy draws nothing.
    #[test]
    fn draws_shifts_and_cuts_in_range() {
        let augment = DiffAugment { seed: 5, policy: DiffAugmentPolicy::ALL };
        let p = augment.params(4000, 32, 7, 1);
        let column = |k: usize| p.chunks(6).map(move |q| q[k]);
        for k in [0, 1] {
            let (lo, hi) = column(k).fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
            assert_eq!((lo, hi), (-4.0, 4.0), "shift {k}");
            assert!(column(k).all(|v| v == v.round()));
        }
        for (start, end) in [(2, 3), (4, 5)] {
            assert!(p.chunks(6).all(|q| q[end] - q[start] == 16.0), "cut size");
            let (lo, hi) = column(start).fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
            assert_eq!((lo, hi), (-8.0, 24.0), "cut start: centres 0..=32");
        }
        assert_eq!(augment.params(8, 32, 7, 1), p[..48]);
        assert_ne!(augment.params(8, 32, 7, 2), p[..48]);
        assert_ne!(augment.params(8, 32, 8, 1), p[..48]);
        assert_ne!(DiffAugment { seed: 6, ..augment }.params(8, 32, 7, 1), p[..48]);
        let shifts_only = DiffAugmentPolicy { color: false, translation: true, cutout: false };
        let q = DiffAugment { policy: shifts_only, ..augment }.params(8, 32, 7, 1);
        assert!(q.chunks(6).zip(p.chunks(6)).all(|(q, p)| q[..2] == p[..2] && q[2..] == [0.0; 4]));
        let r = augment.color_factors(1000, 7, 1);
        assert!(r.iter().all(|v| (0.0..1.0).contains(v)) && r.iter().any(|&v| v > 0.99));
    }

    /// The policy reads and writes as the flag spells it, in the paper's order.
    #[test]
    fn policy_round_trips_and_refuses_unknown_transforms() {
        let p: DiffAugmentPolicy = "cutout, translation".parse().unwrap();
        assert_eq!(p, DiffAugmentPolicy { color: false, translation: true, cutout: true });
        assert_eq!(p.to_string(), "translation,cutout");
        assert_eq!(DiffAugmentPolicy::ALL.to_string(), "color,translation,cutout");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"translation,cutout\"");
        assert_eq!(serde_json::from_str::<DiffAugmentPolicy>("\"color\"").unwrap().to_string(), "color");
        for bad in ["blur", "", "color,,cutout"] {
            let err = bad.parse::<DiffAugmentPolicy>().unwrap_err();
            assert!(err.contains("color, translation and cutout"), "{bad:?}: {err}");
        }
    }
}
