//! translate_cutout (DiffAugment's shift and cut): forward against a naive f64 reference on
//! odd shapes, shifts of either sign or beyond the image, cuts partly or wholly outside it
//! or empty; backward against central differences; on every device.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, tensor};
use dcgan::{Device, Rng, translate_cutout};

const SHAPE: [usize; 4] = [4, 2, 5, 7];

/// dy, dx, rows [y0, y1), columns [x0, x1), per image.
const PARAMS: [[f64; 6]; 4] = [
    [2.0, -3.0, 1.0, 4.0, 5.0, 9.0],   // cut partly outside on the right
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],    // the identity: no shift, an empty cut
    [-1.0, 6.0, -2.0, 2.0, -1.0, 3.0], // cut over the top-left corner
    [5.0, 0.0, 0.0, 5.0, 0.0, 7.0],    // shifted out entirely, and cut everywhere
];

fn reference(x: &[f64], params: &[f64]) -> Vec<f64> {
    let [n, c, h, w] = SHAPE;
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        let q: Vec<i64> = params[6 * b..6 * b + 6].iter().map(|&v| v as i64).collect();
        for ch in 0..c {
            for i in 0..h as i64 {
                for j in 0..w as i64 {
                    let cut = (q[2]..q[3]).contains(&i) && (q[4]..q[5]).contains(&j);
                    let (si, sj) = (i - q[0], j - q[1]);
                    if !cut && (0..h as i64).contains(&si) && (0..w as i64).contains(&sj) {
                        let plane = (b * c + ch) * h * w;
                        out[plane + (i as usize) * w + j as usize] = x[plane + si as usize * w + sj as usize];
                    }
                }
            }
        }
    }
    out
}

fn params_flat() -> Vec<f64> {
    PARAMS.iter().flatten().copied().collect()
}

fn shifts_and_cuts_as_the_reference(dev: Device) {
    let x = random(SHAPE.iter().product(), &mut Rng::new(1));
    let params = params_flat();
    let y = translate_cutout(&tensor(&x, &SHAPE, dev), &tensor(&params, &[4, 6], dev));
    assert_eq!(y.shape(), SHAPE);
    let want = reference(&x, &params);
    assert_close(&y.to_vec(), &want, 0.0, "translate_cutout");
    let plane = 2 * 5 * 7;
    assert_eq!(
        y.to_vec()[plane..2 * plane],
        x[plane..2 * plane].iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    assert!(y.to_vec()[3 * plane..].iter().all(|&v| v == 0.0), "image 3 is shifted out and cut");
}

fn gradient_is_the_adjoint(dev: Device) {
    let x = random(SHAPE.iter().product(), &mut Rng::new(2));
    let params = tensor(&params_flat(), &[4, 6], dev);
    check_gradients(
        "translate_cutout",
        &[(x, SHAPE.to_vec())],
        &[true],
        dev,
        |t| translate_cutout(&t[0], &params),
        |v| reference(&v[0], &params_flat()),
    );
}

device_tests!(shifts_and_cuts_as_the_reference, gradient_is_the_adjoint);
