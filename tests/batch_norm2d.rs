//! batch_norm2d: training mode (batch statistics, running statistics updated as PyTorch
//! does) and eval mode, forward against f64 references, gradients against central
//! differences in both modes.

#[macro_use]
mod common;
use common::{assert_close, assert_close_abs, check_gradients, random, reference, tensor};
use dcgan::nn::{BatchNorm2d, Module};
use dcgan::{Device, Rng, Tensor, batch_norm2d};

/// 35 images: the CPU backend sums them in chunks of 3, the last one ragged. 32×32 planes:
/// a chunk's per-channel sums outgrow the 1024 terms its f32 lanes take before they are
/// added into f64 (the training forward only; the gradients take the first four).
const SHAPES: &[[usize; 4]] =
    &[[4, 3, 5, 7], [1, 2, 3, 3], [2, 5, 1, 1], [35, 3, 2, 3], [3, 4, 8, 8], [4, 2, 32, 32]];
const EPS: f64 = 1e-5;

fn training_forward_and_running_stats(dev: Device) {
    let mut rng = Rng::new(21);
    for &shape in SHAPES {
        let [n, c, h, w] = shape;
        // Offset and scale the input so the statistics are far from (0, 1).
        let x: Vec<f64> = random(n * c * h * w, &mut rng).iter().map(|v| 3.0 * v + 1.5).collect();
        let gamma = random(c, &mut rng);
        let beta = random(c, &mut rng);
        let rm0 = random(c, &mut rng);
        let rv0: Vec<f64> = random(c, &mut rng).iter().map(|v| v.abs() + 0.5).collect();
        let (rm, rv) = (tensor(&rm0, &[c], dev), tensor(&rv0, &[c], dev));
        let momentum = 0.1;
        let y = batch_norm2d(
            &tensor(&x, &shape, dev),
            Some(&rm),
            Some(&rv),
            Some(&tensor(&gamma, &[c], dev)),
            Some(&tensor(&beta, &[c], dev)),
            true,
            momentum as f32,
            EPS as f32,
        );
        let (mean, var) = reference::channel_stats(&x, shape);
        let want = reference::batch_norm(&x, shape, &mean, &var, &gamma, &beta, EPS);
        assert_close(&y.to_vec(), &want, 1e-5, &format!("batch_norm2d train {shape:?}"));
        let m = (n * h * w) as f64;
        let want_rm: Vec<f64> = (0..c).map(|i| (1.0 - momentum) * rm0[i] + momentum * mean[i]).collect();
        let want_rv: Vec<f64> =
            (0..c).map(|i| (1.0 - momentum) * rv0[i] + momentum * var[i] * m / (m - 1.0)).collect();
        assert_close(&rm.to_vec(), &want_rm, 1e-5, "running_mean");
        assert_close(&rv.to_vec(), &want_rv, 1e-5, "running_var (unbiased)");
    }
}

fn eval_forward_uses_running_stats(dev: Device) {
    let mut rng = Rng::new(22);
    let shape = [3, 4, 5, 5];
    let [n, c, h, w] = shape;
    let x = random(n * c * h * w, &mut rng);
    let (gamma, beta) = (random(c, &mut rng), random(c, &mut rng));
    let rm = random(c, &mut rng);
    let rv: Vec<f64> = random(c, &mut rng).iter().map(|v| v.abs() + 0.5).collect();
    let (rmt, rvt) = (tensor(&rm, &[c], dev), tensor(&rv, &[c], dev));
    let y = batch_norm2d(
        &tensor(&x, &shape, dev),
        Some(&rmt),
        Some(&rvt),
        Some(&tensor(&gamma, &[c], dev)),
        Some(&tensor(&beta, &[c], dev)),
        false,
        0.1,
        EPS as f32,
    );
    let want = reference::batch_norm(&x, shape, &rm, &rv, &gamma, &beta, EPS);
    assert_close(&y.to_vec(), &want, 1e-5, "batch_norm2d eval");
    assert_eq!(rmt.to_vec(), common::to_f32(&rm), "eval mode must not touch running_mean");
    assert_eq!(rvt.to_vec(), common::to_f32(&rv), "eval mode must not touch running_var");
}

fn gradients_match_finite_differences(dev: Device) {
    let mut rng = Rng::new(23);
    for &shape in &SHAPES[..4] {
        let [n, c, h, w] = shape;
        let inputs = vec![
            (random(n * c * h * w, &mut rng), shape.to_vec()),
            (random(c, &mut rng), vec![c]),
            (random(c, &mut rng), vec![c]),
        ];
        for training in [true, false] {
            if training && n * h * w == 1 {
                continue;
            }
            let rm = random(c, &mut rng);
            let rv: Vec<f64> = random(c, &mut rng).iter().map(|v| v.abs() + 0.5).collect();
            let (rmt, rvt) = (tensor(&rm, &[c], dev), tensor(&rv, &[c], dev));
            check_gradients(
                &format!("batch_norm2d training={training} {shape:?}"),
                &inputs,
                &[true, true, true],
                dev,
                |t| {
                    batch_norm2d(
                        &t[0],
                        Some(&rmt),
                        Some(&rvt),
                        Some(&t[1]),
                        Some(&t[2]),
                        training,
                        0.1,
                        EPS as f32,
                    )
                },
                |v| {
                    let (mean, var) = if training {
                        reference::channel_stats(&v[0], shape)
                    } else {
                        (rm.clone(), rv.clone())
                    };
                    reference::batch_norm(&v[0], shape, &mean, &var, &v[1], &v[2], EPS)
                },
            );
        }
    }
}

/// A channel whose mean is ten thousand times its spread: the variance must not come from
/// E[x²] − E[x]² in f32, which would cancel to noise here.
fn statistics_far_from_zero(dev: Device) {
    let mut rng = Rng::new(25);
    let shape = [35, 2, 4, 4];
    let [n, c, h, w] = shape;
    // Values representable in f32, so the f64 reference sees exactly the kernel's input.
    let x: Vec<f64> = random(n * c * h * w, &mut rng).iter().map(|v| (1e4 + v) as f32 as f64).collect();
    let (gamma, beta) = (vec![1.0; c], vec![0.0; c]);
    let y = batch_norm2d(&tensor(&x, &shape, dev), None, None, None, None, true, 0.1, EPS as f32);
    let (mean, var) = reference::channel_stats(&x, shape);
    let want = reference::batch_norm(&x, shape, &mean, &var, &gamma, &beta, EPS);
    // The CPU kernel normalises as x·scale + shift (as PyTorch's does), whose terms are ~1e4:
    // an absolute rounding of a few 1e-3. A variance off by cancellation would be off by O(1).
    assert_close_abs(&y.to_vec(), &want, 1e-3, 4e-3, "batch_norm2d of a channel at 1e4 ± 1");
}

/// The module: defaults as PyTorch (weight 1, bias 0, running 0/1), counts training batches,
/// and switches to running statistics in eval mode.
fn module_tracks_batches_and_switches_mode(dev: Device) {
    let mut bn = BatchNorm2d::new(2, dev);
    let mut rng = Rng::new(24);
    let x = Tensor::randn(&[4, 2, 3, 3], 2.0, 3.0, &mut rng, dev);
    let y_train = bn.forward(&x);
    bn.forward(&x);
    assert_eq!(bn.num_batches_tracked.load(std::sync::atomic::Ordering::Relaxed), 2);
    bn.set_training(false);
    let y_eval = bn.forward(&x);
    assert_eq!(bn.num_batches_tracked.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Training output is normalised per channel; eval output with running stats after two
    // updates from (0, 1) is not.
    let m: f32 = y_train.to_vec().iter().sum::<f32>() / y_train.numel() as f32;
    assert!(m.abs() < 1e-5, "train-mode output mean {m}");
    assert_ne!(y_train.to_vec(), y_eval.to_vec());
}

#[test]
#[should_panic(expected = "more than one value per channel")]
fn training_with_one_value_per_channel_panics() {
    let x = Tensor::zeros(&[1, 3, 1, 1], Device::Cpu);
    batch_norm2d(&x, None, None, None, None, true, 0.1, 1e-5);
}

device_tests!(
    training_forward_and_running_stats,
    statistics_far_from_zero,
    eval_forward_uses_running_stats,
    gradients_match_finite_differences,
    module_tracks_batches_and_switches_mode
);
