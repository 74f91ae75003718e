//! DCGAN generator and discriminator (Radford et al.), laid out exactly as pytorch/examples'
//! `dcgan/main.py` — an `nn.Sequential` per network — so their state names match
//! (`0.weight`, `1.running_mean`, ...). For image size 2^k the stacks have k − 2 stride-2
//! layers; 64 gives the canonical five-layer networks. D ends in a logit: the loss applies
//! the sigmoid inside BCE-with-logits.
//!
//! A class-conditional pair (`classes` > 0, `train --conditional`) follows the two standard
//! recipes: G reads its class as a one-hot vector appended to z (Mirza & Osindero 2014), and D
//! is a projection discriminator (Miyato & Koyama 2018), whose last layer is a
//! [`ClassProjection`].

use crate::backend::Device;
use crate::nn::init::dcgan_init;
use crate::nn::{
    BatchNorm2d, ClassProjection, Conv2d, ConvTranspose2d, LeakyReLU, ReLU, Sequential, SpectralNormConv2d,
    Tanh,
};
use crate::rng::Rng;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DcganConfig {
    pub image_size: usize,
    pub channels: usize,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    /// Classes of a conditional GAN; 0 for an unconditional one.
    pub classes: usize,
}

impl DcganConfig {
    /// Stride-2 layers in each network: 4×4 up (or down) to image_size.
    pub fn stride2_layers(&self) -> usize {
        assert!(
            self.image_size >= 16 && self.image_size.is_power_of_two(),
            "DCGAN image size must be a power of two ≥ 16, got {}",
            self.image_size
        );
        self.image_size.trailing_zeros() as usize - 2
    }
}

/// z [N, nz, 1, 1] -> images [N, channels, S, S] in (−1, 1); for a conditional G, z with the
/// one-hot class appended ([`generator_input`]), [N, nz + classes, 1, 1].
pub fn generator(cfg: &DcganConfig, rng: &mut Rng, device: Device) -> Sequential {
    let n = cfg.stride2_layers();
    let mut ch = cfg.ngf << (n - 1);
    let mut g = Sequential::new()
        .push(ConvTranspose2d::new(cfg.nz + cfg.classes, ch, 4, 1, 0, 0, false, rng, device))
        .push(BatchNorm2d::new(ch, device))
        .push(ReLU);
    for _ in 1..n {
        g = g
            .push(ConvTranspose2d::new(ch, ch / 2, 4, 2, 1, 0, false, rng, device))
            .push(BatchNorm2d::new(ch / 2, device))
            .push(ReLU);
        ch /= 2;
    }
    let g = g.push(ConvTranspose2d::new(ch, cfg.channels, 4, 2, 1, 0, false, rng, device)).push(Tanh);
    dcgan_init(&g, rng);
    g
}

/// G's input for noise `z` ([n·nz] values, [n, nz] row-major) and each sample's class: z with
/// the one-hot label appended, [n, nz + classes, 1, 1]. Without classes, z itself, not copied.
pub fn generator_input(z: Vec<f32>, nz: usize, labels: &[u8], classes: usize, device: Device) -> Tensor {
    let n = z.len() / nz;
    if classes == 0 {
        return Tensor::from_vec(z, &[n, nz, 1, 1], device);
    }
    assert_eq!(labels.len(), n, "generator_input: {n} noise vectors, {} labels", labels.len());
    let mut data = Vec::with_capacity(n * (nz + classes));
    for (row, &y) in z.chunks(nz).zip(labels) {
        data.extend_from_slice(row);
        data.extend((0..classes).map(|c| if c == usize::from(y) { 1.0 } else { 0.0 }));
    }
    Tensor::from_vec(data, &[n, nz + classes, 1, 1], device)
}

/// The labels as one-hot rows, [n, classes]: what a conditional D reads with its images.
pub fn one_hot(labels: &[u8], classes: usize, device: Device) -> Tensor {
    let mut data = vec![0.0; labels.len() * classes];
    for (row, &y) in data.chunks_mut(classes).zip(labels) {
        row[usize::from(y)] = 1.0;
    }
    Tensor::from_vec(data, &[labels.len(), classes], device)
}

/// images [N, channels, S, S] -> logits [N, 1, 1, 1] (a conditional D's without its class
/// term; [`conditional_logits`] adds it).
pub fn discriminator(cfg: &DcganConfig, rng: &mut Rng, device: Device) -> Sequential {
    discriminator_layers(cfg, false, rng, device)
}

/// The discriminator of `--spectral-norm`: every convolution spectrally normalised
/// ([`SpectralNormConv2d`]) and no BatchNorm, as SN-GAN's discriminators (Miyato et al. 2018):
/// BatchNorm's per-channel rescaling would undo the Lipschitz bound the normalisation keeps.
/// State names follow PyTorch's `spectral_norm` (`0.weight_orig`, `0.weight_u`, ...).
pub fn spectral_norm_discriminator(cfg: &DcganConfig, rng: &mut Rng, device: Device) -> Sequential {
    discriminator_layers(cfg, true, rng, device)
}

fn discriminator_layers(cfg: &DcganConfig, spectral_norm: bool, rng: &mut Rng, device: Device) -> Sequential {
    let n = cfg.stride2_layers();
    let conv = |c_in: usize, c_out: usize, stride: usize, padding: usize, d: Sequential, rng: &mut Rng| {
        let c = Conv2d::new(c_in, c_out, 4, stride, padding, false, rng, device);
        if spectral_norm {
            d.push(SpectralNormConv2d::new(c.weight, stride, padding, rng))
        } else {
            d.push(c)
        }
    };
    let mut ch = cfg.ndf;
    let mut d = conv(cfg.channels, ch, 2, 1, Sequential::new(), rng).push(LeakyReLU(0.2));
    for _ in 1..n {
        d = conv(ch, ch * 2, 2, 1, d, rng);
        if !spectral_norm {
            d = d.push(BatchNorm2d::new(ch * 2, device));
        }
        d = d.push(LeakyReLU(0.2));
        ch *= 2;
    }
    let mut d = conv(ch, 1, 1, 0, d, rng);
    if cfg.classes > 0 {
        // Features of the last hidden layer: ch channels at 4×4.
        d = d.push(ClassProjection::new(cfg.classes, ch * 16, device));
    }
    dcgan_init(&d, rng);
    d
}

/// A conditional D's logits for `images` of the classes `one_hot` (\[n, classes\]), \[n\]: its
/// unconditional logit ψ(φ(x)) plus the class term ⟨e_y, φ(x)⟩ of its [`ClassProjection`].
pub fn conditional_logits(d: &Sequential, images: &Tensor, one_hot: &Tensor) -> Tensor {
    let n = images.shape()[0];
    let layers = d.layers.len();
    let projection = &d.layers[layers - 1];
    assert_eq!(projection.kind(), "ClassProjection", "conditional_logits: D has no class projection");
    let features = d.forward_prefix(images, layers - 2);
    let psi = d.layers[layers - 2].forward(&features).reshape(&[n]);
    let embed = &projection.parameters()[0];
    psi.add(&ClassProjection::class_term(embed, &features, one_hot))
}
