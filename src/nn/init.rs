//! DCGAN initialisation (Radford et al.; pytorch/examples' `weights_init`): convolution
//! weights N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0. Draws happen layer by layer
//! in state order, so a seed fixes every value.

use super::Sequential;
use crate::rng::Rng;

pub fn dcgan_init(model: &Sequential, rng: &mut Rng) {
    for layer in &model.layers {
        let kind = layer.kind();
        for (name, t) in layer.named_tensors() {
            let mut data = vec![0.0; t.numel()];
            match (kind, name.as_str()) {
                (k, "weight" | "weight_orig") if k.contains("Conv") => rng.fill_normal(&mut data, 0.0, 0.02),
                (k, "bias") if k.contains("Conv") => {} // zero
                ("BatchNorm2d", "weight") => rng.fill_normal(&mut data, 1.0, 0.02),
                ("BatchNorm2d", "bias") => {} // zero
                _ => continue,
            }
            t.copy_from_slice(&data);
        }
    }
}
