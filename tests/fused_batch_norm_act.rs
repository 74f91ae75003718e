//! BatchNorm fused with ReLU / LeakyReLU (`batch_norm2d_act`, and `Sequential`'s automatic
//! fusion of a BatchNorm2d followed by an activation) against the unfused composition:
//! forward values, running statistics and gradients to x, gamma and beta, in training and
//! eval mode.

#[macro_use]
mod common;
use common::{random, tensor};
use dcgan::backend::Unary;
use dcgan::nn::{BatchNorm2d, LeakyReLU, Module, ReLU, Sequential};
use dcgan::{Device, Rng, Tensor, batch_norm2d, batch_norm2d_act};

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: fused {x}, unfused {y}");
    }
}

fn apply(act: Unary, z: &Tensor) -> Tensor {
    match act {
        Unary::Relu => z.relu(),
        Unary::LeakyRelu(s) => z.leaky_relu(s),
        _ => unreachable!(),
    }
}

fn fused_matches_composition(dev: Device) {
    let mut rng = Rng::new(21);
    for (shape, act, training) in [
        ([4, 3, 5, 5], Unary::Relu, true),
        ([2, 5, 3, 7], Unary::LeakyRelu(0.2), true),
        ([1, 4, 1, 2], Unary::Relu, true),
        ([3, 3, 4, 4], Unary::Relu, false),
        ([3, 2, 3, 3], Unary::LeakyRelu(0.2), false),
    ] {
        let [n, c, h, w] = shape;
        let x = random(n * c * h * w, &mut rng);
        let (g, b) = (random(c, &mut rng), random(c, &mut rng));
        let rm0 = random(c, &mut rng);
        let rv0: Vec<f64> = random(c, &mut rng).iter().map(|v| v.abs() + 0.5).collect();
        let r = random(n * c * h * w, &mut rng);
        let what = format!("{shape:?} {act:?} training={training}");

        let run = |fused: bool| {
            let xt = tensor(&x, &shape, dev);
            xt.set_requires_grad(true);
            let (gt, bt) = (tensor(&g, &[c], dev), tensor(&b, &[c], dev));
            gt.set_requires_grad(true);
            bt.set_requires_grad(true);
            let (rm, rv) = (tensor(&rm0, &[c], dev), tensor(&rv0, &[c], dev));
            let y = if fused {
                batch_norm2d_act(&xt, Some(&rm), Some(&rv), Some(&gt), Some(&bt), training, 0.1, 1e-5, act)
            } else {
                apply(
                    act,
                    &batch_norm2d(&xt, Some(&rm), Some(&rv), Some(&gt), Some(&bt), training, 0.1, 1e-5),
                )
            };
            y.mul(&tensor(&r, &shape, dev)).sum().backward();
            let grads =
                [xt.grad().unwrap().to_vec(), gt.grad().unwrap().to_vec(), bt.grad().unwrap().to_vec()];
            (y.to_vec(), rm.to_vec(), rv.to_vec(), grads)
        };
        let (yf, rmf, rvf, gf) = run(true);
        let (yu, rmu, rvu, gu) = run(false);
        assert_eq!(yf, yu, "forward {what}: same arithmetic, same bits");
        assert_eq!((rmf, rvf), (rmu, rvu), "running statistics {what}");
        for (k, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            close(&gf[k], &gu[k], 1e-5, &format!("{name} {what}"));
        }
    }
}

/// A Sequential with BatchNorm2d + ReLU / LeakyReLU fuses them; outputs and every
/// parameter's gradient equal those of the layers applied one by one.
fn sequential_fusion_matches_layer_by_layer(dev: Device) {
    let mut rng = Rng::new(22);
    let seq = Sequential::new()
        .push(BatchNorm2d::new(3, dev))
        .push(ReLU)
        .push(BatchNorm2d::new(3, dev))
        .push(LeakyReLU(0.2));
    let shape = [4, 3, 3, 3];
    let x = Tensor::randn(&shape, 0.0, 1.0, &mut rng, dev);
    for p in seq.parameters() {
        p.copy_from_slice(&random(3, &mut rng).iter().map(|&v| v as f32 + 1.0).collect::<Vec<_>>());
    }
    let r = Tensor::randn(&shape, 0.0, 1.0, &mut rng, dev);

    let fused = seq.forward(&x);
    fused.mul(&r).sum().backward();
    let fused_grads: Vec<Vec<f32>> = seq.parameters().iter().map(|p| p.grad().unwrap().to_vec()).collect();
    for p in seq.parameters() {
        p.zero_grad();
    }
    let unfused = seq.layers.iter().fold(x.clone(), |x, l| l.forward(&x));
    unfused.mul(&r).sum().backward();
    assert_eq!(fused.to_vec(), unfused.to_vec());
    for (p, fg) in seq.parameters().iter().zip(&fused_grads) {
        close(fg, &p.grad().unwrap().to_vec(), 1e-5, "parameter gradient");
    }
}

device_tests!(fused_matches_composition, sequential_fusion_matches_layer_by_layer);
