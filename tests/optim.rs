//! Adam and SGD against PyTorch. Golden values from torch 2.15 (CPU, float32), produced by:
//!
//! ```python
//! p = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0], requires_grad=True)
//! w = torch.tensor([1.0, 2.0, -0.5, 0.25, 4.0])
//! opt = torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999))   # etc.
//! for _ in range(5):
//!     opt.zero_grad(); (p * p * w + p).sum().backward(); opt.step()
//! print(p.tolist())
//! ```

#[macro_use]
mod common;
use common::assert_close;
use dcgan::optim::{Adam, Optimizer, Sgd};
use dcgan::{Device, Tensor};

const P0: [f32; 5] = [0.5, -1.0, 2.0, 0.0, 3.0];
const W: [f32; 5] = [1.0, 2.0, -0.5, 0.25, 4.0];

fn five_steps(dev: Device, make: impl FnOnce(Vec<Tensor>) -> Box<dyn Optimizer>) -> Vec<f32> {
    let p = Tensor::from_vec(P0.to_vec(), &[5], dev);
    p.set_requires_grad(true);
    let w = Tensor::from_vec(W.to_vec(), &[5], dev);
    let mut opt = make(vec![p.clone()]);
    for _ in 0..5 {
        opt.zero_grad();
        p.mul(&p).mul(&w).add(&p).sum().backward();
        opt.step();
    }
    p.to_vec()
}

fn adam_matches_pytorch(dev: Device) {
    let dcgan_hp = five_steps(dev, |p| Box::new(Adam::new(p, 2e-4, (0.5, 0.999))));
    let want = [
        0.49900010228157043,
        -0.9990001916885376,
        2.001000165939331,
        -0.0009999495232477784,
        2.998999834060669,
    ];
    assert_close(&dcgan_hp, &want, 1e-6, "Adam lr 2e-4 betas (0.5, 0.999)");
    let big_lr = five_steps(dev, |p| Box::new(Adam::new(p, 0.1, (0.9, 0.999))));
    let want = [
        0.00796365737915039,
        -0.5128688216209412,
        2.5021791458129883,
        -0.4970442056655884,
        2.501694440841675,
    ];
    assert_close(&big_lr, &want, 1e-5, "Adam lr 0.1 betas (0.9, 0.999)");
}

/// Adam's weight decay as torch.optim.Adam applies it (L2: wd·p added to the gradient before
/// the moments), against the same five steps in f64. The decay is large enough to cancel or
/// double a gradient (p = 2: 2pw + 1 = −1 and wd·p = 1), which Adam's normalised step, blind
/// to the gradient's size, still sees.
fn adam_weight_decay_matches_the_l2_formula(dev: Device) {
    let (lr, betas, eps, wd) = (0.05f32, (0.9f32, 0.999f32), 1e-8f32, 0.5f32);
    let got = five_steps(dev, |p| {
        let mut adam = Adam::new(p, lr, betas);
        adam.weight_decay = wd;
        Box::new(adam)
    });
    let (lr, b1, b2, eps, wd) = (lr as f64, betas.0 as f64, betas.1 as f64, eps as f64, wd as f64);
    let mut p: Vec<f64> = P0.iter().map(|&x| x as f64).collect();
    let (mut m, mut v) = (vec![0.0; 5], vec![0.0; 5]);
    for t in 1..=5 {
        let (bias1, bias2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for i in 0..5 {
            let g = 2.0 * p[i] * W[i] as f64 + 1.0 + wd * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            p[i] -= lr / bias1 * m[i] / (v[i].sqrt() / bias2.sqrt() + eps);
        }
    }
    assert_close(&got, &p, 1e-5, "Adam lr 0.05 betas (0.9, 0.999) weight_decay 0.5");
}

fn sgd_momentum_matches_pytorch(dev: Device) {
    let got = five_steps(dev, |p| Box::new(Sgd::new(p, 0.01, 0.9)));
    let want = [
        0.2493164837360382,
        -0.641668975353241,
        2.1345674991607666,
        -0.1298970878124237,
        0.29412975907325745,
    ];
    assert_close(&got, &want, 1e-5, "SGD lr 0.01 momentum 0.9");
}

/// A parameter without a gradient is left alone and its step count does not advance.
fn parameters_without_gradients_are_skipped(dev: Device) {
    let a = Tensor::from_vec(vec![1.0], &[1], dev);
    let b = Tensor::from_vec(vec![1.0], &[1], dev);
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    let mut adam = Adam::new(vec![a.clone(), b.clone()], 0.1, (0.9, 0.999));
    a.scale(2.0).sum().backward();
    adam.step();
    assert_eq!(b.to_vec(), vec![1.0]);
    assert_ne!(a.to_vec(), vec![1.0]);
    assert_eq!(adam.steps, vec![1, 0]);
}

device_tests!(
    adam_matches_pytorch,
    adam_weight_decay_matches_the_l2_formula,
    sgd_momentum_matches_pytorch,
    parameters_without_gradients_are_skipped
);
