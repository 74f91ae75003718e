//! conv2d: forward against the naive f64 reference on awkward shapes, gradients against
//! central differences, and the weight gradient across several im2col groups.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, reference, tensor};
use dcgan::{Device, Rng, Tensor, conv2d};

/// (batch, c_in, h, w, c_out, kernel, stride, padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
const CASES: &[Case] = &[
    (1, 1, 1, 1, 2, 1, 1, 0), // 1×1 input, 1×1 kernel
    (1, 2, 1, 1, 3, 3, 1, 1), // 1×1 input, padding makes room for the kernel
    (2, 3, 7, 5, 4, 3, 1, 1), // odd, non-square
    (2, 3, 9, 7, 5, 3, 2, 1), // stride 2 on odd sizes
    (3, 4, 8, 8, 6, 4, 2, 1), // DCGAN downsampling layer
    (2, 8, 4, 4, 1, 4, 1, 0), // DCGAN final layer: 4×4 -> 1×1 logit
    (1, 3, 6, 6, 2, 5, 2, 2), // large kernel, large padding
    (2, 2, 5, 6, 3, 2, 3, 0), // stride 3, even kernel
];

fn forward_matches_reference(dev: Device) {
    let mut rng = Rng::new(1);
    for (i, &(n, ci, h, w, co, k, s, p)) in CASES.iter().enumerate() {
        let x = random(n * ci * h * w, &mut rng);
        let wt = random(co * ci * k * k, &mut rng);
        let b = random(co, &mut rng);
        let bias = (i % 2 == 1).then_some(&b[..]);
        let (want, shape) = reference::conv2d(&x, [n, ci, h, w], &wt, [co, ci, k, k], bias, s, p);
        let bt = bias.map(|b| tensor(b, &[co], dev));
        let y =
            conv2d(&tensor(&x, &[n, ci, h, w], dev), &tensor(&wt, &[co, ci, k, k], dev), bt.as_ref(), s, p);
        assert_eq!(y.shape(), shape, "case {i}");
        assert_close(&y.to_vec(), &want, 1e-5, &format!("conv2d case {i} {:?}", CASES[i]));
    }
}

fn gradients_match_finite_differences(dev: Device) {
    let mut rng = Rng::new(2);
    for &(n, ci, h, w, co, k, s, p) in &[CASES[1], CASES[3], CASES[4], CASES[5], CASES[7]] {
        let inputs = vec![
            (random(n * ci * h * w, &mut rng), vec![n, ci, h, w]),
            (random(co * ci * k * k, &mut rng), vec![co, ci, k, k]),
            (random(co, &mut rng), vec![co]),
        ];
        check_gradients(
            &format!("conv2d {:?}", (n, ci, h, w, co, k, s, p)),
            &inputs,
            &[true, true, true],
            dev,
            |t| conv2d(&t[0], &t[1], Some(&t[2]), s, p),
            |v| reference::conv2d(&v[0], [n, ci, h, w], &v[1], [co, ci, k, k], Some(&v[2]), s, p).0,
        );
    }
}

/// A batch big enough that the im2col matrix is split into several groups: the weight
/// gradient must still sum every image once. dW is checked against its definition,
/// dW[o, c, ki, kj] = Σ dy[n, o, oy, ox] · x[n, c, oy·s − p + ki, ox·s − p + kj].
fn weight_gradient_over_many_groups(dev: Device) {
    let (n, ci, h, co, k, s, p) = (20, 64, 32, 4, 4, 2, 1);
    let oh = h / 2;
    let mut rng = Rng::new(3);
    let x = random(n * ci * h * h, &mut rng);
    let dy = random(n * co * oh * oh, &mut rng);
    let xt = tensor(&x, &[n, ci, h, h], dev);
    let w = Tensor::zeros(&[co, ci, k, k], dev);
    w.set_requires_grad(true);
    conv2d(&xt, &w, None, s, p).mul(&tensor(&dy, &[n, co, oh, oh], dev)).sum().backward();
    let g = reference::conv_geom(n, ci, (h, h), co, k, s, p);
    let (_, _, want) = reference::conv_directions(&g, &x, &vec![0.0; g.w_len()], &dy);
    assert_close(&w.grad().unwrap().to_vec(), &want, 1e-4, "conv2d weight gradient, batch 20");
}

device_tests!(
    forward_matches_reference,
    gradients_match_finite_differences,
    weight_gradient_over_many_groups
);
