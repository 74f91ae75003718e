//! translate_cutout (DiffAugment's shift and cut): forward against a naive f64 reference on
//! odd shapes, shifts of either sign or beyond the image, cuts partly or wholly outside it
//! or empty; backward against central differences; and DiffAugment's colour transforms
//! against their f64 definition; on every device.

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

/// DiffAugment's colour transforms in f64, as the paper's PyTorch code: brightness, saturation
/// (a no-op for one channel), contrast, with image b's factors r[3b..3b + 3].
fn color_reference(x: &[f64], shape: [usize; 4], r: &[f64]) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let (hw, per) = (h * w, c * h * w);
    let mut y = x.to_vec();
    for b in 0..n {
        let img = &mut y[b * per..(b + 1) * per];
        img.iter_mut().for_each(|v| *v += r[3 * b] - 0.5);
        for p in 0..hw {
            let m = (0..c).map(|ch| img[ch * hw + p]).sum::<f64>() / c as f64;
            (0..c).for_each(|ch| img[ch * hw + p] = (img[ch * hw + p] - m) * 2.0 * r[3 * b + 1] + m);
        }
        let m = img.iter().sum::<f64>() / per as f64;
        img.iter_mut().for_each(|v| *v = (*v - m) * (r[3 * b + 2] + 0.5) + m);
    }
    y
}

/// The colour transforms against the f64 reference and central differences, RGB (saturation
/// included) and grey, with factors that move each part.
fn color_is_brightness_saturation_contrast(dev: Device) {
    let r = [0.9, 0.1, 0.05, 0.2, 0.8, 0.95];
    for shape in [[2, 3, 4, 5], [2, 1, 3, 3]] {
        let x = random(shape.iter().product(), &mut Rng::new(3));
        let want = color_reference(&x, shape, &r);
        let rf: Vec<f32> = r.iter().map(|&v| v as f32).collect();
        let got = dcgan::gan::augment::color(&tensor(&x, &shape, dev), &rf);
        assert_close(&got.to_vec(), &want, 1e-5, &format!("color {shape:?}"));
        assert!(want.iter().zip(&x).any(|(a, b)| (a - b).abs() > 0.1), "the factors change the images");
        check_gradients(
            "color",
            &[(x, shape.to_vec())],
            &[true],
            dev,
            |t| dcgan::gan::augment::color(&t[0], &rf),
            |v| color_reference(&v[0], shape, &r),
        );
    }
}

device_tests!(
    shifts_and_cuts_as_the_reference,
    gradient_is_the_adjoint,
    color_is_brightness_saturation_contrast
);
