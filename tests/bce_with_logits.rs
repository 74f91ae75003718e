//! binary_cross_entropy_with_logits: the stable form at any logit, mean reduction, gradient.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, reference, tensor};
use dcgan::{Device, Rng, binary_cross_entropy_with_logits as bce};

fn forward_matches_reference(dev: Device) {
    let mut rng = Rng::new(41);
    let x: Vec<f64> = random(37, &mut rng).iter().map(|v| 6.0 * v).collect();
    let t: Vec<f64> = random(37, &mut rng).iter().map(|v| (v + 1.0) / 2.0).collect(); // soft labels too
    let loss = bce(&tensor(&x, &[37], dev), &tensor(&t, &[37], dev));
    assert!(loss.shape().is_empty(), "the loss is a 0-dimensional tensor");
    assert_close(&loss.to_vec(), &[reference::bce_with_logits(&x, &t)], 1e-6, "bce_with_logits");
}

/// Where sigmoid-then-log overflows: the loss of a confident wrong logit is |x|, of a
/// confident right one e^−|x|, never inf or NaN.
fn large_logits_stay_finite_and_exact(dev: Device) {
    let cases: &[(f32, f32, f64)] = &[
        (100.0, 0.0, 100.0),
        (-100.0, 1.0, 100.0),
        (100.0, 1.0, (-100.0f64).exp()),
        (-100.0, 0.0, (-100.0f64).exp()),
        (1e4, 0.0, 1e4),
        (-88.0, 1.0, 88.0),
        (0.0, 1.0, std::f64::consts::LN_2),
    ];
    for &(x, t, want) in cases {
        let loss =
            bce(&dcgan::Tensor::from_vec(vec![x], &[1], dev), &dcgan::Tensor::from_vec(vec![t], &[1], dev));
        assert_close(&loss.to_vec(), &[want], 1e-6, &format!("bce({x}, {t})"));
    }
    // The gradient saturates to ±1/N, it does not vanish or explode.
    let x = dcgan::Tensor::from_vec(vec![100.0, -100.0], &[2], dev);
    x.set_requires_grad(true);
    bce(&x, &dcgan::Tensor::from_vec(vec![0.0, 1.0], &[2], dev)).backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![0.5, -0.5]);
}

fn gradients_match_finite_differences(dev: Device) {
    let mut rng = Rng::new(42);
    let x: Vec<f64> = random(24, &mut rng).iter().map(|v| 5.0 * v).collect();
    let t: Vec<f64> = random(24, &mut rng).iter().map(|v| (v + 1.0) / 2.0).collect();
    check_gradients(
        "bce_with_logits",
        &[(x, vec![4, 6]), (t, vec![4, 6])],
        &[true, true],
        dev,
        |v| bce(&v[0], &v[1]),
        |v| vec![reference::bce_with_logits(&v[0], &v[1])],
    );
}

device_tests!(
    forward_matches_reference,
    large_logits_stay_finite_and_exact,
    gradients_match_finite_differences
);
