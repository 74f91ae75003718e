//! matmul and linear: forward against f64, gradients against central differences.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, reference, tensor};
use dcgan::{Device, Rng, linear, matmul};

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols * rows).map(|i| a[(i % rows) * cols + i / rows]).collect()
}

fn linear_ref(x: &[f64], w: &[f64], b: &[f64], batch: usize, fin: usize, fout: usize) -> Vec<f64> {
    let mut y = reference::matmul(x, &transpose(w, fout, fin), batch, fin, fout);
    y.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % fout]);
    y
}

fn matmul_forward_and_gradients(dev: Device) {
    let mut rng = Rng::new(51);
    for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 70, 65)] {
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let c = matmul(&tensor(&a, &[m, k], dev), &tensor(&b, &[k, n], dev));
        assert_close(&c.to_vec(), &reference::matmul(&a, &b, m, k, n), 1e-5, &format!("matmul {m}x{k}x{n}"));
        if m * k * n < 2000 {
            check_gradients(
                &format!("matmul {m}x{k}x{n}"),
                &[(a, vec![m, k]), (b, vec![k, n])],
                &[true, true],
                dev,
                |t| matmul(&t[0], &t[1]),
                |v| reference::matmul(&v[0], &v[1], m, k, n),
            );
        }
    }
}

fn linear_forward_and_gradients(dev: Device) {
    let mut rng = Rng::new(52);
    for &(batch, fin, fout) in &[(1, 2, 1), (5, 3, 4), (8, 16, 2)] {
        let (x, w, b) = (random(batch * fin, &mut rng), random(fout * fin, &mut rng), random(fout, &mut rng));
        let y = linear(
            &tensor(&x, &[batch, fin], dev),
            &tensor(&w, &[fout, fin], dev),
            Some(&tensor(&b, &[fout], dev)),
        );
        assert_close(&y.to_vec(), &linear_ref(&x, &w, &b, batch, fin, fout), 1e-5, "linear");
        check_gradients(
            &format!("linear {batch}x{fin}->{fout}"),
            &[(x, vec![batch, fin]), (w, vec![fout, fin]), (b, vec![fout])],
            &[true, true, true],
            dev,
            |t| linear(&t[0], &t[1], Some(&t[2])),
            |v| linear_ref(&v[0], &v[1], &v[2], batch, fin, fout),
        );
    }
}

device_tests!(matmul_forward_and_gradients, linear_forward_and_gradients);
