//! relu, leaky_relu, tanh, sigmoid, sqrt: forward against f64, gradients against central
//! differences (inputs kept away from the kink at 0, where the derivative is one-sided).

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, tensor};
use dcgan::{Device, Rng, Tensor, leaky_relu, relu, sigmoid, tanh};

type Op = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64);

const OPS: &[Op] = &[
    ("relu", relu, |x| x.max(0.0)),
    ("leaky_relu(0.2)", |x| leaky_relu(x, 0.2), |x| if x > 0.0 { x } else { 0.2 * x }),
    ("tanh", tanh, f64::tanh),
    ("sigmoid", sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
];

/// Values in ±[0.01, 4] plus large magnitudes, never within 0.01 of zero.
fn inputs(len: usize, rng: &mut Rng) -> Vec<f64> {
    let mut v: Vec<f64> = random(len, rng).iter().map(|x| x.signum() * (0.01 + 4.0 * x.abs())).collect();
    v.extend([30.0, -30.0, 100.0, -100.0].map(|x: f64| x as f32 as f64));
    v
}

fn forward_matches_reference(dev: Device) {
    let mut rng = Rng::new(31);
    for &(name, op, f) in OPS {
        let x = inputs(3 * 5 * 7, &mut rng);
        let y = op(&tensor(&x, &[x.len()], dev));
        let want: Vec<f64> = x.iter().map(|&v| f(v)).collect();
        assert_close(&y.to_vec(), &want, 1e-6, name);
        assert!(y.to_vec().iter().all(|v| v.is_finite()), "{name}: non-finite output");
    }
}

fn gradients_match_finite_differences(dev: Device) {
    let mut rng = Rng::new(32);
    for &(name, op, f) in OPS {
        let x = inputs(2 * 3 * 4, &mut rng);
        let shape = vec![x.len()];
        check_gradients(
            name,
            &[(x, shape)],
            &[true],
            dev,
            |t| op(&t[0]),
            |v| v[0].iter().map(|&x| f(x)).collect(),
        );
    }
}

/// √x on positive inputs (its derivative is unbounded at 0), and exactly 0 at 0.
fn sqrt_matches_reference(dev: Device) {
    let mut rng = Rng::new(33);
    let x: Vec<f64> = inputs(3 * 5 * 7, &mut rng).iter().map(|v| v.abs()).collect();
    let y = tensor(&x, &[x.len()], dev).sqrt();
    assert_close(&y.to_vec(), &x.iter().map(|v| v.sqrt()).collect::<Vec<_>>(), 1e-6, "sqrt");
    assert_eq!(tensor(&[0.0], &[1], dev).sqrt().to_vec(), [0.0]);
    let x = x[..24].to_vec();
    check_gradients(
        "sqrt",
        &[(x.clone(), vec![24])],
        &[true],
        dev,
        |t| t[0].sqrt(),
        |v| v[0].iter().map(|x| x.sqrt()).collect(),
    );
}

device_tests!(forward_matches_reference, gradients_match_finite_differences, sqrt_matches_reference);

/// The CPU's tanh is a rational approximation (vectorisable, unlike libm's): within 5e-7 of
/// the exact value on a dense sweep through ±12, odd, never past ±1, exact for tiny inputs.
#[test]
fn cpu_tanh_is_accurate_everywhere() {
    use dcgan::backend::cpu::activation::tanh as cpu_tanh;
    let mut x = -12.0f32;
    while x <= 12.0 {
        let (got, want) = (cpu_tanh(x), (x as f64).tanh());
        assert!((got as f64 - want).abs() <= 5e-7, "tanh({x}) = {got}, want {want}");
        assert!(got.abs() <= 1.0 && cpu_tanh(-x) == -got, "tanh({x}) = {got}: not odd or past ±1");
        x += 1.0 / 4096.0 + x.abs() * 1e-4;
    }
    for tiny in [0.0f32, 1e-30, -3e-4, 1e-6] {
        assert_eq!(cpu_tanh(tiny), tiny);
    }
    assert!(cpu_tanh(f32::NAN).is_nan());
    assert_eq!((cpu_tanh(f32::INFINITY), cpu_tanh(f32::NEG_INFINITY)), (1.0, -1.0));
}
