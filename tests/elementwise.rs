//! add, sub, mul, div, affine, sum, mean, per-channel sum/mean: forward and gradients.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, tensor};
use dcgan::{Device, Rng, Tensor};

type Binary = (&'static str, fn(&Tensor, &Tensor) -> Tensor, fn(f64, f64) -> f64);
const BINARY: &[Binary] = &[
    ("add", Tensor::add, |a, b| a + b),
    ("sub", Tensor::sub, |a, b| a - b),
    ("mul", Tensor::mul, |a, b| a * b),
];

fn binary_ops(dev: Device) {
    let mut rng = Rng::new(61);
    let shape = vec![2, 3, 5, 7];
    for &(name, op, f) in BINARY {
        let (a, b) = (random(210, &mut rng), random(210, &mut rng));
        let y = op(&tensor(&a, &shape, dev), &tensor(&b, &shape, dev));
        let want: Vec<f64> = a.iter().zip(&b).map(|(&a, &b)| f(a, b)).collect();
        assert_close(&y.to_vec(), &want, 1e-6, name);
        check_gradients(
            name,
            &[(a, shape.clone()), (b, shape.clone())],
            &[true, true],
            dev,
            |t| op(&t[0], &t[1]),
            |v| v[0].iter().zip(&v[1]).map(|(&a, &b)| f(a, b)).collect(),
        );
    }
}

/// a / b, with b kept at least 0.5 from zero so the central differences stay accurate.
fn division(dev: Device) {
    let mut rng = Rng::new(62);
    let shape = vec![3, 5, 7];
    let a = random(105, &mut rng);
    let b: Vec<f64> = random(105, &mut rng).iter().map(|&x| x.signum() * (0.5 + x.abs())).collect();
    let y = tensor(&a, &shape, dev).div(&tensor(&b, &shape, dev));
    let want: Vec<f64> = a.iter().zip(&b).map(|(&a, &b)| a / b).collect();
    assert_close(&y.to_vec(), &want, 1e-6, "div");
    check_gradients(
        "div",
        &[(a, shape.clone()), (b, shape.clone())],
        &[true, true],
        dev,
        |t| t[0].div(&t[1]),
        |v| v[0].iter().zip(&v[1]).map(|(&a, &b)| a / b).collect(),
    );
}

fn affine_and_reductions(dev: Device) {
    let mut rng = Rng::new(62);
    let shape = vec![3, 4, 5, 2];
    let x = random(120, &mut rng);
    let xt = tensor(&x, &shape, dev);
    let want_affine: Vec<f64> = x.iter().map(|v| -2.5 * v + 0.75).collect();
    assert_close(&xt.affine(-2.5, 0.75).to_vec(), &want_affine, 1e-6, "affine");
    assert_close(&xt.sum().to_vec(), &[x.iter().sum()], 1e-6, "sum");
    assert_close(&xt.mean().to_vec(), &[x.iter().sum::<f64>() / 120.0], 1e-6, "mean");
    let per_channel = |v: &[f64]| -> Vec<f64> {
        (0..4).map(|c| (0..3).flat_map(|n| v[(n * 4 + c) * 10..][..10].to_vec()).sum()).collect()
    };
    assert_close(&xt.sum_channels().to_vec(), &per_channel(&x), 1e-6, "sum_channels");
    let means: Vec<f64> = per_channel(&x).iter().map(|s| s / 30.0).collect();
    assert_close(&xt.mean_channels().to_vec(), &means, 1e-6, "mean_channels");

    let input = [(x.clone(), shape.clone())];
    check_gradients(
        "affine",
        &input,
        &[true],
        dev,
        |t| t[0].affine(-2.5, 0.75),
        |v| v[0].iter().map(|v| -2.5 * v + 0.75).collect(),
    );
    check_gradients("sum", &input, &[true], dev, |t| t[0].sum(), |v| vec![v[0].iter().sum()]);
    check_gradients(
        "mean",
        &input,
        &[true],
        dev,
        |t| t[0].mean(),
        |v| vec![v[0].iter().sum::<f64>() / 120.0],
    );
    check_gradients("sum_channels", &input, &[true], dev, |t| t[0].sum_channels(), |v| per_channel(&v[0]));
    check_gradients(
        "mean_channels",
        &input,
        &[true],
        dev,
        |t| t[0].mean_channels(),
        |v| per_channel(&v[0]).iter().map(|s| s / 30.0).collect(),
    );
    check_gradients(
        "reshape",
        &input,
        &[true],
        dev,
        |t| t[0].reshape(&[12, 10]).mul(&t[0].reshape(&[12, 10])),
        |v| v[0].iter().map(|x| x * x).collect(),
    );
}

/// Sums accumulate in f64: 2^24 followed by 4096 ones is exact (an f32 accumulator would
/// stay stuck at 2^24, since 2^24 + 1 rounds back down).
fn sum_is_accurate(dev: Device) {
    let mut v = vec![1.0f32; 4097];
    v[0] = 2f32.powi(24);
    let s = Tensor::from_vec(v, &[4097], dev).sum().item();
    assert_eq!(s, 2f32.powi(24) + 4096.0);
}

device_tests!(binary_ops, division, affine_and_reductions, sum_is_accurate);
