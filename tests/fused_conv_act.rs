//! conv2d fused with the activation after it (`conv2d_act`, and `Sequential`'s fusion of a
//! bias-free Conv2d followed by an activation layer) against the unfused composition: the
//! same output bits and the same gradient bits, on every path of the CPU convolution.

#[macro_use]
mod common;
use common::{random, tensor};
use dcgan::backend::{Unary, profile};
use dcgan::nn::{Conv2d, LeakyReLU, Module, Sequential};
use dcgan::{Device, Rng, Tensor, conv2d, conv2d_act};
use std::sync::Mutex;

/// The profiler is process-wide: tests that read it must not overlap with other CPU work.
static SERIAL: Mutex<()> = Mutex::new(());

fn apply(act: Unary, z: &Tensor) -> Tensor {
    match act {
        Unary::Relu => z.relu(),
        Unary::LeakyRelu(s) => z.leaky_relu(s),
        Unary::Tanh => z.tanh(),
        Unary::Sigmoid => z.sigmoid(),
        Unary::Sqrt => z.sqrt(),
    }
}

fn fused_matches_composition(dev: Device) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(31);
    // (x shape, weight shape, stride, padding): the k4 s2 p1 path with several tasks and a
    // ragged last one (4×4 outputs, 16 images a task), the generic tap-table path, a 1×1
    // output (one plain gemm), and k4 s2 p1 with 16 input channels and 1024 output pixels
    // (the CPU's Winograd forward, on AVX-512: a spectral-norm D's conv + LeakyReLU layers).
    let cases = [
        ([40, 3, 8, 8], [5, 3, 4, 4], 2, 1),
        ([4, 16, 32, 32], [8, 16, 4, 4], 2, 1),
        ([3, 2, 7, 5], [4, 2, 3, 3], 1, 1),
        ([6, 8, 4, 4], [3, 8, 4, 4], 1, 0),
    ];
    for (xs, ws, stride, pad) in cases {
        for act in [Unary::Relu, Unary::LeakyRelu(0.2), Unary::Tanh, Unary::Sigmoid] {
            let x = random(xs.iter().product(), &mut rng);
            let w = random(ws.iter().product(), &mut rng);
            let what = format!("x {xs:?} w {ws:?} {act:?}");
            let run = |fused: bool| {
                let (xt, wt) = (tensor(&x, &xs, dev), tensor(&w, &ws, dev));
                xt.set_requires_grad(true);
                wt.set_requires_grad(true);
                let y = if fused {
                    conv2d_act(&xt, &wt, stride, pad, act)
                } else {
                    apply(act, &conv2d(&xt, &wt, None, stride, pad))
                };
                let r = Tensor::randn(y.shape(), 0.0, 1.0, &mut Rng::new(7), dev);
                y.mul(&r).sum().backward();
                (y.to_vec(), xt.grad().unwrap().to_vec(), wt.grad().unwrap().to_vec())
            };
            let (yf, dxf, dwf) = run(true);
            let (yu, dxu, dwu) = run(false);
            assert!(yf.iter().any(|&v| v != 0.0), "{what}: all-zero output tests nothing");
            assert_eq!(yf, yu, "forward {what}");
            assert_eq!(dxf, dxu, "dx {what}");
            assert_eq!(dwf, dwu, "dw {what}");
        }
    }
}

/// A Sequential of bias-free Conv2d + LeakyReLU gives the layer-by-layer output and
/// gradients, and on the CPU really runs fused: no separate activation kernel.
fn sequential_fusion_matches_layer_by_layer(dev: Device) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(32);
    let seq = Sequential::new().push(Conv2d::new(3, 4, 4, 2, 1, false, &mut rng, dev)).push(LeakyReLU(0.2));
    let x = Tensor::randn(&[5, 3, 8, 8], 0.0, 1.0, &mut rng, dev);
    let r = Tensor::randn(&[5, 4, 4, 4], 0.0, 1.0, &mut rng, dev);

    profile::enable(dev == Device::Cpu);
    let _ = profile::take();
    let fused = seq.forward(&x);
    profile::enable(false);
    if dev == Device::Cpu {
        let table = profile::take();
        let calls = |kernel: &str| table.iter().find(|(k, _)| *k == kernel).map_or(0, |(_, e)| e.calls);
        assert_eq!((calls("conv forward"), calls("activations")), (1, 0), "not fused: {table:?}");
    }
    fused.mul(&r).sum().backward();
    let fused_grad = seq.parameters()[0].grad().unwrap().to_vec();
    seq.parameters()[0].zero_grad();
    let unfused = seq.layers.iter().fold(x.clone(), |x, l| l.forward(&x));
    unfused.mul(&r).sum().backward();
    assert_eq!(fused.to_vec(), unfused.to_vec());
    assert_eq!(fused_grad, seq.parameters()[0].grad().unwrap().to_vec());
}

device_tests!(fused_matches_composition, sequential_fusion_matches_layer_by_layer);
