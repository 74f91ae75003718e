//! The Fréchet distance between two Gaussians fitted to feature sets (what FID computes in
//! Inception features; `score` does it in its own classifier's features):
//!
//! FD = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2·tr( (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} )
//!
//! All in f64. The matrix square roots come from a cyclic Jacobi eigendecomposition of
//! symmetric matrices; eigenvalues that rounding pushed slightly below zero are clamped to 0.

/// Mean and covariance (unbiased, n − 1) of `n` points of dimension `dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    pub dim: usize,
    /// Number of points it was fitted to.
    pub n: usize,
    pub mean: Vec<f64>,
    /// Row-major dim×dim.
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// Fit to `features`, row-major [n, dim] (n ≥ 2).
    pub fn fit(features: &[f32], dim: usize) -> Gaussian {
        assert!(
            dim > 0 && features.len().is_multiple_of(dim),
            "Gaussian::fit: length is not a multiple of dim"
        );
        let n = features.len() / dim;
        assert!(n >= 2, "Gaussian::fit: need at least 2 points, got {n}");
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = f64::from(x) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                if ci == 0.0 {
                    continue;
                }
                let dst = &mut cov[i * dim..i * dim + dim];
                // Upper triangle only; mirrored below.
                for j in i..dim {
                    dst[j] += ci * centred[j];
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (n - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Gaussian { dim, n, mean, cov }
    }
}

/// The Fréchet distance between two fitted Gaussians of the same dimension.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "frechet_distance: dimensions differ");
    let n = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    let s = psd_sqrt(&a.cov, n);
    let mut m = matmul(&matmul(&s, &b.cov, n), &s, n);
    symmetrize(&mut m, n);
    let (eig, _) = symmetric_eigen(&m, n);
    let tr_sqrt: f64 = eig.iter().map(|&l| l.max(0.0).sqrt()).sum();
    // Rounding can leave a tiny negative (or -0) for identical inputs; a distance is +0 or more.
    // NaN from non-finite features stays NaN, not a perfect 0.
    let distance = mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * tr_sqrt;
    if distance <= 0.0 { 0.0 } else { distance }
}

/// The symmetric positive semi-definite square root V·diag(√max(λ, 0))·Vᵀ.
pub fn psd_sqrt(a: &[f64], n: usize) -> Vec<f64> {
    let (eig, v) = symmetric_eigen(a, n);
    let roots: Vec<f64> = eig.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n).map(|k| v[i * n + k] * roots[k] * v[j * n + k]).sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            let (row, brow) = (&mut c[i * n..i * n + n], &b[k * n..k * n + n]);
            for (c, &b) in row.iter_mut().zip(brow) {
                *c += aik * b;
            }
        }
    }
    c
}

fn symmetrize(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
}

/// Eigenvalues and eigenvectors of the symmetric row-major n×n matrix `a`, by cyclic Jacobi
/// rotations: returns (λ, V) with V row-major and its column k the eigenvector of λₖ, so that
/// a = V·diag(λ)·Vᵀ. Only the symmetric part of `a` is meaningful.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: expected {n}×{n}");
    let mut a = a.to_vec();
    symmetrize(&mut a, n);
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                // t = tan of the rotation angle, the smaller root of t² + 2θt − 1 = 0.
                let t = if theta.abs() > 1e150 {
                    0.5 / theta
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // a ← Jᵀ a J and v ← v J, J the rotation in the (p, q) plane.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn random_symmetric(n: usize, rng: &mut Rng) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in i..n {
                let x = rng.normal();
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        a
    }

    /// A random SPD matrix B·Bᵀ + εI.
    fn random_spd(n: usize, rng: &mut Rng) -> Vec<f64> {
        let b: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>() / n as f64;
            }
            m[i * n + i] += 0.1;
        }
        m
    }

    fn gaussian(mean: Vec<f64>, cov: Vec<f64>) -> Gaussian {
        Gaussian { dim: mean.len(), n: 0, mean, cov }
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn jacobi_reconstructs_and_is_orthonormal() {
        let mut rng = Rng::new(1);
        for n in [1, 2, 3, 7, 40] {
            let a = random_symmetric(n, &mut rng);
            let (lam, v) = symmetric_eigen(&a, n);
            let mut rec = vec![0.0; n * n];
            let mut vtv = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    rec[i * n + j] = (0..n).map(|k| v[i * n + k] * lam[k] * v[j * n + k]).sum();
                    vtv[i * n + j] = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                }
            }
            let eye: Vec<f64> = (0..n * n).map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 }).collect();
            assert!(
                max_abs_diff(&rec, &a) < 1e-10,
                "n {n}: reconstruction off by {}",
                max_abs_diff(&rec, &a)
            );
            assert!(max_abs_diff(&vtv, &eye) < 1e-10, "n {n}: VᵀV off by {}", max_abs_diff(&vtv, &eye));
            // The trace is the sum of the eigenvalues.
            let tr: f64 = (0..n).map(|i| a[i * n + i]).sum();
            assert!((lam.iter().sum::<f64>() - tr).abs() < 1e-10);
        }
    }

    #[test]
    fn jacobi_known_eigenvalues() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut lam, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        lam.sort_by(f64::total_cmp);
        assert!((lam[0] - 1.0).abs() < 1e-14 && (lam[1] - 3.0).abs() < 1e-14, "{lam:?}");
    }

    #[test]
    fn psd_sqrt_squares_back_and_clamps_rank_deficient() {
        let mut rng = Rng::new(2);
        let n = 12;
        let a = random_spd(n, &mut rng);
        let s = psd_sqrt(&a, n);
        assert!(max_abs_diff(&matmul(&s, &s, n), &a) < 1e-10);
        // Rank one: u uᵀ; its square root is u uᵀ / |u|.
        let u: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let r1: Vec<f64> = (0..n * n).map(|k| u[k / n] * u[k % n]).collect();
        let s = psd_sqrt(&r1, n);
        let want: Vec<f64> = r1.iter().map(|x| x / norm).collect();
        // The square root is not Lipschitz at 0: the zero eigenvalues come out as ±1e-15 or so
        // and their roots as ~3e-8, hence the looser tolerance.
        assert!(max_abs_diff(&s, &want) < 1e-6, "{}", max_abs_diff(&s, &want));
        assert!(s.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn same_gaussian_is_at_distance_zero() {
        let mut rng = Rng::new(3);
        let n = 32;
        let g = gaussian((0..n).map(|_| rng.normal()).collect(), random_spd(n, &mut rng));
        let fd = frechet_distance(&g, &g);
        let tr: f64 = (0..n).map(|i| g.cov[i * n + i]).sum();
        assert!(fd.abs() < 1e-9 * tr, "FD {fd}");
        // And from features: a set against itself.
        let feats: Vec<f32> = (0..500 * 8).map(|_| rng.normal() as f32).collect();
        let g = Gaussian::fit(&feats, 8);
        assert!(frechet_distance(&g, &g) < 1e-9);
    }

    /// The distance is +0 or more, and non-finite features give NaN, not a perfect 0 (a corrupt
    /// classifier once scored "Fréchet 0.00").
    #[test]
    fn distance_is_never_negative_and_nan_is_not_hidden() {
        let zero = gaussian(vec![0.0; 3], vec![0.0; 9]);
        let d = frechet_distance(&zero, &zero);
        assert!(d == 0.0 && d.is_sign_positive(), "{d}");
        let nan = gaussian(vec![f64::NAN, 0.0, 0.0], vec![0.0; 9]);
        assert!(frechet_distance(&nan, &zero).is_nan());
        assert!(frechet_distance(&zero, &nan).is_nan());
    }

    #[test]
    fn diagonal_closed_form() {
        // Diagonal covariances: FD = Σ(μ₁ − μ₂)² + Σ(σ₁ − σ₂)².
        let mu1 = vec![0.0, 1.0, -2.0, 0.5];
        let mu2 = vec![1.0, 1.0, 0.0, 0.0];
        let s1 = [1.0f64, 2.0, 0.5, 3.0];
        let s2 = [2.0f64, 2.0, 1.5, 0.1];
        let diag = |s: &[f64]| {
            let mut m = vec![0.0; 16];
            for i in 0..4 {
                m[i * 4 + i] = s[i] * s[i];
            }
            m
        };
        let fd = frechet_distance(&gaussian(mu1.clone(), diag(&s1)), &gaussian(mu2.clone(), diag(&s2)));
        let want: f64 = mu1.iter().zip(&mu2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
            + s1.iter().zip(&s2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        assert!((fd - want).abs() < 1e-10, "FD {fd}, closed form {want}");
    }

    #[test]
    fn two_by_two_non_commuting_closed_form() {
        // For 2×2, tr√M = √(tr M + 2√det M), with M = A^½ B A^½: tr M = tr(AB), det M = det A·det B.
        let a = [2.0, 0.7, 0.7, 1.0];
        let b = [0.5, -0.3, -0.3, 3.0];
        let tr_ab = a[0] * b[0] + a[1] * b[2] + a[2] * b[1] + a[3] * b[3];
        let det = |m: &[f64; 4]| m[0] * m[3] - m[1] * m[2];
        let tr_sqrt = (tr_ab + 2.0 * (det(&a) * det(&b)).sqrt()).sqrt();
        let want = 1.0 + (a[0] + a[3]) + (b[0] + b[3]) - 2.0 * tr_sqrt;
        let fd =
            frechet_distance(&gaussian(vec![1.0, 0.0], a.to_vec()), &gaussian(vec![0.0, 0.0], b.to_vec()));
        assert!((fd - want).abs() < 1e-12, "FD {fd}, closed form {want}");
        // Symmetric in its arguments, although the formula is not written symmetrically.
        let back =
            frechet_distance(&gaussian(vec![0.0, 0.0], b.to_vec()), &gaussian(vec![1.0, 0.0], a.to_vec()));
        assert!((fd - back).abs() < 1e-12);
    }

    #[test]
    fn sampled_gaussians_approach_the_closed_form() {
        // Samples of N(μ₁, diag σ₁²) and N(μ₂, diag σ₂²), rotated by the same orthogonal Q
        // (which leaves FD unchanged): FD from 200k points each is close to the exact value.
        let mut rng = Rng::new(4);
        let dim = 6;
        let (_, q) = symmetric_eigen(&random_symmetric(dim, &mut rng), dim);
        let mu1: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let mu2: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let s1: Vec<f64> = (0..dim).map(|_| 0.5 + rng.uniform_f64()).collect();
        let s2: Vec<f64> = (0..dim).map(|_| 0.5 + rng.uniform_f64()).collect();
        let n = 200_000;
        let mut draw = |mu: &[f64], s: &[f64]| -> Vec<f32> {
            let mut out = Vec::with_capacity(n * dim);
            for _ in 0..n {
                let x: Vec<f64> = (0..dim).map(|k| mu[k] + s[k] * rng.normal()).collect();
                out.extend((0..dim).map(|i| (0..dim).map(|k| q[i * dim + k] * x[k]).sum::<f64>() as f32));
            }
            out
        };
        let a = draw(&mu1, &s1);
        let b = draw(&mu2, &s2);
        let fd = frechet_distance(&Gaussian::fit(&a, dim), &Gaussian::fit(&b, dim));
        let want: f64 = mu1.iter().zip(&mu2).map(|(x, y)| (x - y) * (x - y)).sum::<f64>()
            + s1.iter().zip(&s2).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
        assert!((fd - want).abs() < 0.02 * want + 0.01, "FD {fd}, closed form {want}");
    }

    #[test]
    fn invariances_and_translation() {
        let mut rng = Rng::new(5);
        let (n, dim) = (400, 5);
        let a: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> =
            (0..n * dim).map(|i| (1.5 * rng.normal() + (i % dim) as f64 * 0.1) as f32).collect();
        let fd = frechet_distance(&Gaussian::fit(&a, dim), &Gaussian::fit(&b, dim));
        assert!(fd > 0.1);
        // The order of the points does not matter.
        let mut rows: Vec<&[f32]> = b.chunks(dim).collect();
        rng.shuffle(&mut rows);
        let shuffled: Vec<f32> = rows.concat();
        let fd2 = frechet_distance(&Gaussian::fit(&a, dim), &Gaussian::fit(&shuffled, dim));
        assert!((fd - fd2).abs() < 1e-9 * fd, "{fd} vs {fd2}");
        // The same permutation of the coordinates of both sets does not matter.
        let perm = [3, 0, 4, 1, 2];
        let permute = |x: &[f32]| -> Vec<f32> { x.chunks(dim).flat_map(|r| perm.map(|p| r[p])).collect() };
        let fd3 = frechet_distance(&Gaussian::fit(&permute(&a), dim), &Gaussian::fit(&permute(&b), dim));
        assert!((fd - fd3).abs() < 1e-9 * fd, "{fd} vs {fd3}");
        // Translating both sets together does not matter; translating one by c moves the
        // mean difference by c.
        let c = [0.5f32, -1.0, 0.25, 0.0, 2.0];
        let shift = |x: &[f32]| -> Vec<f32> { x.iter().enumerate().map(|(i, v)| v + c[i % dim]).collect() };
        let ga = Gaussian::fit(&a, dim);
        let fd4 = frechet_distance(&Gaussian::fit(&shift(&a), dim), &Gaussian::fit(&shift(&b), dim));
        assert!((fd - fd4).abs() < 1e-4 * fd, "{fd} vs {fd4}");
        let fd5 = frechet_distance(&Gaussian::fit(&shift(&a), dim), &ga);
        let c2: f64 = c.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((fd5 - c2).abs() < 1e-4, "FD(a + c, a) {fd5}, |c|² {c2}");
    }
}
