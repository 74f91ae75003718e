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

    /// (parameters, floats of every layer's output for one image) of G, then of D, in f64 so
    /// that absurd flag values cannot overflow: what the memory estimates count.
    fn sizes(&self) -> [(f64, f64); 2] {
        let n = self.stride2_layers() as i32;
        let (side, c, classes) = (self.image_size as f64, self.channels as f64, self.classes as f64);
        // G: nz + classes → ngf·2^(n−1) at 4×4, halving the channels as the side doubles.
        let mut ch = self.ngf as f64 * 2f64.powi(n - 1);
        let (mut params, mut floats) = (16.0 * (self.nz as f64 + classes) * ch, 16.0 * ch);
        for k in 1..n {
            params += 16.0 * ch * ch / 2.0;
            ch /= 2.0;
            floats += ch * (4.0 * 2f64.powi(k)).powi(2);
        }
        let g = (params + 16.0 * ch * c, floats + c * side * side);
        // D: channels → ndf at side/2, doubling the channels as the side halves, then a logit.
        let mut ch = self.ndf as f64;
        let (mut params, mut floats) = (16.0 * c * ch, ch * (side / 2.0).powi(2));
        for k in 1..n {
            params += 16.0 * ch * 2.0 * ch;
            ch *= 2.0;
            floats += ch * (side / 2f64.powi(k + 1)).powi(2);
        }
        [g, (params + 16.0 * ch * (1.0 + classes), floats + 1.0)]
    }

    /// About the most memory a training step at `batch` with `d_steps` D updates takes on the
    /// CPU: weights, gradients and Adam's two moments (16 bytes a parameter), three f32 copies
    /// of every layer's output an image (the outputs backward keeps, their gradients and
    /// workspace), and the d_steps real batches held at once (host and tensor). At 64×64×3
    /// batch 128 it says 487 MiB where a training run peaks at 434; at 32×32×1, 113 against 117
    /// (which includes the binary's own 20 or so).
    pub fn training_bytes(&self, batch: usize, d_steps: usize) -> f64 {
        let [(pg, fg), (pd, fd)] = self.sizes();
        let image = (self.channels * self.image_size * self.image_size) as f64;
        16.0 * (pg + pd) + 12.0 * batch as f64 * (fg + fd) + 8.0 * d_steps as f64 * batch as f64 * image
    }

    /// About the most memory generating `images` images in one batch takes: G's weights and
    /// two f32 copies of its layers' outputs an image.
    pub fn sampling_bytes(&self, images: usize) -> f64 {
        let [(params, floats), _] = self.sizes();
        4.0 * params + 8.0 * images as f64 * floats
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Module;

    /// The memory estimates count what the built networks hold: their convolutions' (and class
    /// projection's) parameters, and every convolution's output for an image.
    #[test]
    fn sizes_match_the_built_networks() {
        for (image_size, channels, classes) in [(16, 3, 0), (32, 1, 10), (64, 3, 0)] {
            let cfg = DcganConfig { image_size, channels, nz: 20, ngf: 8, ndf: 12, classes };
            let [(pg, fg), (pd, fd)] = cfg.sizes();
            let mut rng = Rng::new(0);
            let (g, d) = (generator(&cfg, &mut rng, Device::Cpu), discriminator(&cfg, &mut rng, Device::Cpu));
            for (net, params, floats, input) in [
                (&g, pg, fg, Tensor::zeros(&[2, cfg.nz + classes, 1, 1], Device::Cpu)),
                (&d, pd, fd, Tensor::zeros(&[2, channels, image_size, image_size], Device::Cpu)),
            ] {
                // BatchNorm's scales and shifts (one dimension) are left out: a few per channel.
                let counted: usize =
                    net.parameters().iter().filter(|p| p.shape().len() > 1).map(|p| p.numel()).sum();
                assert_eq!(params, counted as f64, "{cfg:?}");
                let (mut x, mut outputs) = (input, 0);
                for layer in net.layers.iter().filter(|l| l.kind() != "ClassProjection") {
                    x = layer.forward(&x);
                    if layer.kind().starts_with("Conv") {
                        outputs += x.numel() / 2;
                    }
                }
                assert_eq!(floats, outputs as f64, "{cfg:?}");
            }
        }
    }
}
