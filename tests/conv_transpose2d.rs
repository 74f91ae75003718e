//! conv_transpose2d: forward against a scatter-form f64 reference (independent of the
//! engine's adjoint-of-conv2d implementation), gradients against central differences.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, reference, tensor};
use dcgan::{Device, Rng, conv_transpose2d};

/// (batch, c_in, h, w, c_out, kernel, stride, padding, output_padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize, usize);
const CASES: &[Case] = &[
    (2, 5, 1, 1, 4, 4, 1, 0, 0), // DCGAN first G layer: z (1×1) -> 4×4
    (2, 4, 4, 4, 3, 4, 2, 1, 0), // DCGAN upsampling layer
    (1, 3, 3, 5, 2, 3, 2, 1, 1), // output_padding, batch 1, non-square
    (2, 2, 5, 3, 3, 3, 1, 1, 0), // stride 1 with padding
    (1, 2, 3, 3, 2, 5, 3, 2, 2), // stride 3, output_padding 2
    (1, 1, 1, 1, 1, 1, 1, 0, 0), // 1×1 everything
    (3, 3, 7, 7, 2, 4, 2, 1, 1), // odd input, DCGAN kernel, output_padding
];

fn forward_matches_reference(dev: Device) {
    let mut rng = Rng::new(11);
    for (i, &(n, ci, h, w, co, k, s, p, op)) in CASES.iter().enumerate() {
        let x = random(n * ci * h * w, &mut rng);
        let wt = random(ci * co * k * k, &mut rng);
        let b = random(co, &mut rng);
        let bias = (i % 2 == 0).then_some(&b[..]);
        let (want, shape) =
            reference::conv_transpose2d(&x, [n, ci, h, w], &wt, [ci, co, k, k], bias, s, p, op);
        let bt = bias.map(|b| tensor(b, &[co], dev));
        let y = conv_transpose2d(
            &tensor(&x, &[n, ci, h, w], dev),
            &tensor(&wt, &[ci, co, k, k], dev),
            bt.as_ref(),
            s,
            p,
            op,
        );
        assert_eq!(y.shape(), shape, "case {i}");
        assert_close(&y.to_vec(), &want, 1e-5, &format!("conv_transpose2d case {i} {:?}", CASES[i]));
    }
}

fn gradients_match_finite_differences(dev: Device) {
    let mut rng = Rng::new(12);
    for &(n, ci, h, w, co, k, s, p, op) in &CASES[..5] {
        let inputs = vec![
            (random(n * ci * h * w, &mut rng), vec![n, ci, h, w]),
            (random(ci * co * k * k, &mut rng), vec![ci, co, k, k]),
            (random(co, &mut rng), vec![co]),
        ];
        check_gradients(
            &format!("conv_transpose2d {:?}", (n, ci, h, w, co, k, s, p, op)),
            &inputs,
            &[true, true, true],
            dev,
            |t| conv_transpose2d(&t[0], &t[1], Some(&t[2]), s, p, op),
            |v| {
                reference::conv_transpose2d(
                    &v[0],
                    [n, ci, h, w],
                    &v[1],
                    [ci, co, k, k],
                    Some(&v[2]),
                    s,
                    p,
                    op,
                )
                .0
            },
        );
    }
}

/// A DCGAN-sized layer (many channels, so the gemm's blocked paths run) against the reference.
fn dcgan_layer_matches_reference(dev: Device) {
    let (n, ci, h, co) = (4, 64, 8, 32);
    let mut rng = Rng::new(13);
    let x = random(n * ci * h * h, &mut rng);
    let wt = random(ci * co * 16, &mut rng);
    let (want, _) = reference::conv_transpose2d(&x, [n, ci, h, h], &wt, [ci, co, 4, 4], None, 2, 1, 0);
    let y =
        conv_transpose2d(&tensor(&x, &[n, ci, h, h], dev), &tensor(&wt, &[ci, co, 4, 4], dev), None, 2, 1, 0);
    // 256 f32 products per output: rounding reaches ~1e-6 absolute on O(1) sums.
    assert_close(&y.to_vec(), &want, 1e-4, "conv_transpose2d 64->32, 8x8 -> 16x16");
}

device_tests!(forward_matches_reference, gradients_match_finite_differences, dcgan_layer_matches_reference);
