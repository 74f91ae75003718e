//! Tests of the CPU SGEMM against an f64 reference.

use dcgan::backend::cpu::gemm::{
    KernelPath, MatRef, PackedA, PackedBLayout, SPLIT_MAX_THREADS, gemm_kernel_name, sgemm, sgemm_naive,
    sgemm_serial_packed, sgemm_serial_prepacked, sgemm_serial_prepacked_b, sgemm_with,
};

/// Small deterministic PRNG (xorshift64*), values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next_f32()).collect()
    }
}

/// A stored operand: element (i, j) at data[off + i*rs + j*cs].
struct Operand {
    data: Vec<f32>,
    rs: usize,
    cs: usize,
}

impl Operand {
    /// rows×cols matrix in one of several layouts: 0 row-major, 1 column-major (transposed),
    /// 2 row-major with padded leading dim, 3 general strides (neither is 1).
    fn new(rng: &mut Rng, rows: usize, cols: usize, layout: u32) -> Operand {
        let (rs, cs, len) = match layout {
            0 => (cols, 1, rows * cols),
            1 => (1, rows, rows * cols),
            2 => (cols + 3, 1, rows * (cols + 3)),
            _ => (2 * cols + 1, 2, rows * (2 * cols + 1)),
        };
        Operand { data: rng.vec(len.max(1)), rs, cs }
    }
    fn mat(&self) -> MatRef<'_> {
        MatRef { data: &self.data, row_stride: self.rs, col_stride: self.cs }
    }
    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.rs + j * self.cs] as f64
    }
}

#[allow(clippy::too_many_arguments)]
fn reference(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &Operand,
    b: &Operand,
    beta: f32,
    c: &[f32],
    ldc: usize,
) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                acc += a.at(i, p) * b.at(p, j);
            }
            let prev = if beta == 0.0 { 0.0 } else { beta as f64 * c[i * ldc + j] as f64 };
            out[i * n + j] = alpha as f64 * acc + prev;
        }
    }
    out
}

/// Runs one case on `path` (None: the default `sgemm`) and checks it against the f64 reference.
#[allow(clippy::too_many_arguments)]
fn check_case(
    path: Option<KernelPath>,
    m: usize,
    n: usize,
    k: usize,
    la: u32,
    lb: u32,
    alpha: f32,
    beta: f32,
    ldc_pad: usize,
    nan_c: bool,
) {
    let mut rng = Rng::new((m * 1_000_003 + n * 1009 + k * 17 + la as usize * 3 + lb as usize) as u64);
    let a = Operand::new(&mut rng, m, k, la);
    let b = Operand::new(&mut rng, k, n, lb);
    let ldc = n + ldc_pad;
    let clen = if m == 0 { 0 } else { (m - 1) * ldc + n };
    let mut c: Vec<f32> = if nan_c { vec![f32::NAN; clen] } else { rng.vec(clen) };
    // Sentinels in the padding columns must survive.
    for i in 0..m {
        for j in n..ldc {
            if i * ldc + j < clen {
                c[i * ldc + j] = 12345.0;
            }
        }
    }
    let want = reference(m, n, k, alpha, &a, &b, beta, &c, ldc);
    match path {
        Some(p) => sgemm_with(p, m, n, k, alpha, a.mat(), b.mat(), beta, &mut c, ldc),
        None => sgemm(m, n, k, alpha, a.mat(), b.mat(), beta, &mut c, ldc),
    }
    // Error bound: k products of values ≤ 1 in magnitude, fp32 accumulation.
    let tol = 1e-5 * (k as f64 + 4.0) * (alpha.abs() as f64 + 1.0) + 1e-5 * beta.abs() as f64;
    for i in 0..m {
        for j in 0..ldc {
            let idx = i * ldc + j;
            if idx >= clen {
                continue;
            }
            if j >= n {
                assert_eq!(c[idx], 12345.0, "padding of C overwritten at ({i},{j}) m={m} n={n} k={k}");
                continue;
            }
            let got = c[idx] as f64;
            let w = want[i * n + j];
            assert!(
                (got - w).abs() <= tol,
                "path {:?} m={m} n={n} k={k} layouts A{la} B{lb} alpha={alpha} beta={beta} ldc={ldc}: \
                 C({i},{j}) = {got}, want {w} (tol {tol})",
                path
            );
        }
    }
}

const SIZES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 37, 5),
    (29, 1, 7),
    (7, 13, 5),
    (33, 65, 17),
    (14, 32, 8),
    (15, 33, 9),
    (13, 31, 300),
    (28, 64, 256),
    (29, 65, 257),
    (6, 16, 3),
    (7, 17, 513),
    (100, 3, 70),
    (3, 100, 70),
    (45, 97, 260),
    (64, 48, 1),
    // Matrix-vector shapes (sgemm takes a gemv path for these).
    (1, 300, 70),
    (200, 1, 100),
    (1, 1, 5000),
    (1, 1100, 40),
    // n ≤ 16 (narrow AVX-512 tile).
    (100, 16, 50),
    (57, 9, 300),
];

fn paths() -> Vec<Option<KernelPath>> {
    let mut v: Vec<Option<KernelPath>> = vec![None];
    v.extend(KernelPath::available().into_iter().map(Some));
    v
}

#[test]
fn reports_a_kernel_path() {
    let name = gemm_kernel_name();
    assert!(["avx512", "avx2", "scalar"].contains(&name));
    assert_eq!(name, KernelPath::detected().name());
    assert!(KernelPath::available().contains(&KernelPath::Scalar));
    eprintln!("sgemm kernel path: {name}; available: {:?}", KernelPath::available());
}

#[test]
fn all_transposes_and_odd_sizes_every_path() {
    for path in paths() {
        for &(m, n, k) in SIZES {
            for la in 0..2 {
                for lb in 0..2 {
                    check_case(path, m, n, k, la, lb, 1.0, 0.0, 0, false);
                }
            }
        }
    }
}

#[test]
fn general_strides_and_padded_leading_dims() {
    for path in paths() {
        for &(m, n, k) in &[(7, 13, 5), (33, 65, 17), (45, 97, 260), (70, 90, 40)] {
            for la in 0..4 {
                for lb in 0..4 {
                    check_case(path, m, n, k, la, lb, 1.0, 0.0, 0, false);
                }
            }
        }
    }
}

#[test]
fn alpha_beta_variants() {
    for path in paths() {
        for &(m, n, k) in &[(7, 13, 5), (33, 65, 17), (29, 65, 257), (1, 1, 1)] {
            for &(alpha, beta) in
                &[(1.0, 1.0), (2.5, 0.0), (-0.5, 1.0), (1.0, -2.0), (0.75, 0.5), (0.0, 0.5), (0.0, 0.0)]
            {
                check_case(path, m, n, k, 0, 1, alpha, beta, 0, false);
                check_case(path, m, n, k, 1, 0, alpha, beta, 3, false);
            }
        }
    }
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    for path in paths() {
        for &(m, n, k) in &[(1, 1, 1), (7, 13, 5), (33, 65, 17), (45, 97, 260), (130, 70, 300)] {
            check_case(path, m, n, k, 0, 0, 1.0, 0.0, 0, true);
            check_case(path, m, n, k, 1, 1, 0.5, 0.0, 2, true);
        }
        // alpha == 0, beta == 0: C becomes exactly zero even if it held NaN.
        let mut c = vec![f32::NAN; 12];
        let a = vec![f32::NAN; 6];
        let b = vec![f32::NAN; 8];
        match path {
            Some(p) => sgemm_with(
                p,
                3,
                4,
                2,
                0.0,
                MatRef::row_major(&a, 2),
                MatRef::row_major(&b, 4),
                0.0,
                &mut c,
                4,
            ),
            None => sgemm(3, 4, 2, 0.0, MatRef::row_major(&a, 2), MatRef::row_major(&b, 4), 0.0, &mut c, 4),
        }
        assert!(c.iter().all(|&x| x == 0.0));
    }
}

#[test]
fn ldc_larger_than_n() {
    for path in paths() {
        for &(m, n, k) in &[(7, 13, 5), (33, 65, 17), (45, 97, 260)] {
            check_case(path, m, n, k, 0, 0, 1.0, 0.0, 5, false);
            check_case(path, m, n, k, 0, 1, 1.0, 1.0, 31, false);
        }
    }
}

#[test]
fn large_blocks_cross_kc_nc_and_threads() {
    // Big enough to take the parallel packed path, with k > KC and ragged edges.
    for path in paths() {
        check_case(path, 203, 301, 600, 0, 0, 1.0, 0.0, 0, false);
        check_case(path, 131, 77, 1100, 1, 1, 1.5, 0.5, 3, false);
    }
    // Parallel gemv paths.
    check_case(None, 1, 3000, 400, 0, 0, 1.0, 0.5, 0, false);
    check_case(None, 1, 3000, 400, 0, 1, 1.0, 0.0, 0, false);
    check_case(None, 2000, 1, 600, 0, 0, 1.0, 0.0, 0, false);
    check_case(None, 2000, 1, 600, 1, 1, 2.0, 1.0, 3, false);
    // n larger than NC (4096 columns) on the default path.
    check_case(None, 20, 4200, 40, 0, 0, 1.0, 1.0, 0, false);
}

/// On one thread (no split into column tasks), a product wider than one packed B block
/// (NC = 4096 columns) and tall enough that B's panels are packed rather than read in place:
/// the second block's panels must come from B's columns 4096.., for B row-major (packed a
/// run of rows at a time) and transposed.
#[test]
fn serial_product_wider_than_one_packed_b_block() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        for path in paths() {
            for lb in [0, 1] {
                check_case(path, 40, 4200, 24, 0, lb, 1.0, 0.0, 0, false);
            }
        }
    });
}

#[test]
fn empty_and_k_zero() {
    let mut c = vec![1.0f32; 6];
    sgemm(2, 3, 0, 1.0, MatRef::row_major(&[], 0), MatRef::row_major(&[], 3), 2.0, &mut c, 3);
    assert_eq!(c, vec![2.0; 6]);
    sgemm(2, 3, 0, 1.0, MatRef::row_major(&[], 0), MatRef::row_major(&[], 3), 0.0, &mut c, 3);
    assert_eq!(c, vec![0.0; 6]);
    let mut e: Vec<f32> = vec![];
    sgemm(0, 5, 4, 1.0, MatRef::row_major(&[], 4), MatRef::row_major(&[0.0; 20], 5), 0.0, &mut e, 5);
}

#[test]
#[should_panic(expected = "sgemm")]
fn short_a_panics() {
    let a = vec![0.0f32; 5];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 6];
    sgemm(2, 3, 3, 1.0, MatRef::row_major(&a, 3), MatRef::row_major(&b, 3), 0.0, &mut c, 3);
}

#[test]
#[should_panic(expected = "sgemm")]
fn short_c_panics() {
    let a = vec![0.0f32; 6];
    let b = vec![0.0f32; 9];
    let mut c = vec![0.0f32; 5];
    sgemm(2, 3, 3, 1.0, MatRef::row_major(&a, 3), MatRef::row_major(&b, 3), 0.0, &mut c, 3);
}

#[test]
fn matches_naive_reference_closely() {
    let mut rng = Rng::new(7);
    let (m, n, k) = (37, 41, 29);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut c1 = vec![0.0f32; m * n];
    let mut c2 = vec![0.0f32; m * n];
    sgemm(m, n, k, 1.0, MatRef::row_major(&a, k), MatRef::row_major(&b, n), 0.0, &mut c1, n);
    sgemm_naive(m, n, k, 1.0, MatRef::row_major(&a, k), MatRef::row_major(&b, n), 0.0, &mut c2, n);
    for (x, y) in c1.iter().zip(&c2) {
        assert!((x - y).abs() < 1e-4);
    }
}

fn run_in_pool(
    threads: usize,
    path: KernelPath,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> Vec<u32> {
    let mut rng = Rng::new(99 + m as u64);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut c = rng.vec(m * n);
    let am = if ta { MatRef::row_major_t(&a, m) } else { MatRef::row_major(&a, k) };
    let bm = if tb { MatRef::row_major_t(&b, k) } else { MatRef::row_major(&b, n) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| sgemm_with(path, m, n, k, 0.7, am, bm, 0.3, &mut c, n));
    c.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn bit_identical_across_thread_counts() {
    for path in KernelPath::available() {
        for &(m, n, k, ta, tb) in &[
            (257, 259, 700, false, false),
            (64, 1100, 300, false, true),
            (500, 40, 520, true, false),
            (130, 131, 129, true, true),
        ] {
            let one = run_in_pool(1, path, m, n, k, ta, tb);
            for threads in [2, 3, 4] {
                let many = run_in_pool(threads, path, m, n, k, ta, tb);
                assert!(one == many, "path {path:?} {m}x{n}x{k}: {threads} threads differ from 1 thread");
            }
            // Same pool size, repeated: same bits.
            assert!(one == run_in_pool(1, path, m, n, k, ta, tb));
        }
    }
}

#[test]
fn nested_inside_rayon_parallel_loop() {
    use rayon::prelude::*;
    let (m, n, k) = (150, 170, 300);
    let mut rng = Rng::new(5);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut want = vec![0.0f32; m * n];
    sgemm(m, n, k, 1.0, MatRef::row_major(&a, k), MatRef::row_major(&b, n), 0.0, &mut want, n);
    let outs: Vec<Vec<f32>> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![f32::NAN; m * n];
            sgemm(m, n, k, 1.0, MatRef::row_major(&a, k), MatRef::row_major(&b, n), 0.0, &mut c, n);
            c
        })
        .collect();
    for c in outs {
        assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

/// `sgemm` itself (with its gemv, narrow-tile, split, shared-panel and column-task modes) gives the same
/// bits on 1, 2, 3 and 6 threads.
#[test]
fn sgemm_bit_identical_across_thread_counts_all_modes() {
    let shapes: &[(usize, usize, usize, bool, bool)] = &[
        (1, 3000, 400, false, false),  // gemv, m == 1, row-major B
        (1, 3000, 400, false, true),   // gemv, m == 1, dot products
        (3000, 1, 400, true, false),   // gemv, n == 1
        (600, 16, 300, false, false),  // narrow tile
        (700, 12, 260, true, false),   // narrow tile, A read in place
        (300, 64, 700, true, false),   // A read in place (n small)
        (20, 900, 300, false, false),  // B read in place (m small)
        (400, 500, 300, false, true),  // split mode
        (520, 530, 300, true, true),   // shared panels past SPLIT_MAX_THREADS (m·n·k > SPLIT_MAX_MNK)
        (40, 3100, 600, false, false), // column tasks (wide, short), a ragged last task
        (300, 3200, 100, true, true),  // column tasks, both operands transposed
    ];
    for &(m, n, k, ta, tb) in shapes {
        let run = |threads: usize| -> Vec<u32> {
            let mut rng = Rng::new(1234 + m as u64 * 7 + n as u64);
            let a = rng.vec(m * k);
            let b = rng.vec(k * n);
            let mut c = rng.vec(m * n);
            let am = if ta { MatRef::row_major_t(&a, m) } else { MatRef::row_major(&a, k) };
            let bm = if tb { MatRef::row_major_t(&b, k) } else { MatRef::row_major(&b, n) };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| sgemm(m, n, k, 1.25, am, bm, 0.5, &mut c, n));
            c.iter().map(|x| x.to_bits()).collect()
        };
        let one = run(1);
        assert!(one == run(2), "{m}x{n}x{k}: 2 threads differ from 1");
        assert!(one == run(3), "{m}x{n}x{k}: 3 threads differ from 1");
        // Past SPLIT_MAX_THREADS, large products share packed panels instead of splitting.
        assert!(
            one == run(SPLIT_MAX_THREADS + 2),
            "{m}x{n}x{k}: {} threads differ from 1",
            SPLIT_MAX_THREADS + 2
        );
        // And it is right.
        let mut rng = Rng::new(1234 + m as u64 * 7 + n as u64);
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let c0 = rng.vec(m * n);
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] } as f64;
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] } as f64;
        for &(i, j) in &[(0, 0), (m - 1, n - 1), (m / 2, n / 3), (m - 1, 0), (0, n - 1)] {
            let want = 1.25 * (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>() + 0.5 * c0[i * n + j] as f64;
            let got = f32::from_bits(one[i * n + j]) as f64;
            assert!((got - want).abs() < 1e-3, "{m}x{n}x{k} C({i},{j}) = {got}, want {want}");
        }
    }
}

/// A packed once and reused gives exactly `sgemm`'s bits: across KC blocks and a ragged last
/// panel, for both A layouts, and where the call falls back to packing from the source (the
/// narrow kernel for n ≤ 16, m above one MB block, the tiny direct loop).
#[test]
fn prepacked_a_gives_sgemm_bits() {
    for &(m, n, k, ta) in &[
        (37, 300, 600, false),
        (37, 300, 600, true),
        (150, 70, 257, true),
        (64, 12, 300, false),
        (4100, 40, 3, true),
        (3, 3, 3, false),
    ] {
        let mut rng = Rng::new(m as u64 * 31 + n as u64);
        let a = rng.vec(m * k);
        let am = if ta { MatRef::row_major_t(&a, m) } else { MatRef::row_major(&a, k) };
        let packed = PackedA::new(m, k, am);
        // Two different right operands through the same packed A.
        for round in 0..2 {
            let b = rng.vec(k * n);
            let c0 = rng.vec(m * n);
            let mut want = c0.clone();
            sgemm(m, n, k, 0.9, am, MatRef::row_major(&b, n), 0.4, &mut want, n);
            let mut got = c0;
            sgemm_serial_packed(&packed, n, 0.9, MatRef::row_major(&b, n), 0.4, &mut got, n);
            assert!(
                got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}x{n}x{k} (A transposed: {ta}), round {round}: prepacked A differs from sgemm"
            );
        }
    }
}

/// A packed A taken block by block (as the convolutions do, one KC block of depth at a time
/// with beta 1 after the first, or a panel-aligned band of rows) gives the whole product's bits.
#[test]
fn packed_a_blocks_give_the_whole_bits() {
    let (m, n, k) = (60, 70, 700); // three KC blocks, the last ragged; five 12-row panels
    let mut rng = Rng::new(5);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let packed = PackedA::new(m, k, MatRef::row_major(&a, k));
    let mut whole = vec![0.0; m * n];
    sgemm_serial_packed(&packed, n, 1.0, MatRef::row_major(&b, n), 0.0, &mut whole, n);
    let kc = 256; // every kernel's KC: blocks must follow the packing
    let mut by_depth = vec![f32::NAN; m * n];
    for p0 in (0..k).step_by(kc) {
        let depth = p0..(p0 + kc).min(k);
        let rows_of_b = MatRef::row_major(&b[p0 * n..], n);
        let beta = if p0 == 0 { 0.0 } else { 1.0 };
        sgemm_serial_packed(&packed.block(0..m, depth), n, 1.0, rows_of_b, beta, &mut by_depth, n);
    }
    assert!(
        by_depth.iter().zip(&whole).all(|(x, y)| x.to_bits() == y.to_bits()),
        "KC blocks summed with beta 1 differ from the whole"
    );
    let band = 24..m; // a multiple of both MR (12 for avx512, 6 for avx2)
    let mut rows = vec![0.0; band.len() * n];
    sgemm_serial_packed(
        &packed.block(band.clone(), 0..k),
        n,
        1.0,
        MatRef::row_major(&b, n),
        0.0,
        &mut rows,
        n,
    );
    assert!(
        rows.iter().zip(&whole[band.start * n..]).all(|(x, y)| x.to_bits() == y.to_bits()),
        "a band of rows differs from the same rows of the whole"
    );
    // An A taller than the driver's one MB block of rows (4096): used whole, the gemm packs it
    // from the source; a block of it (on a panel boundary, 4104 a multiple of 12 and of 6)
    // reads its panels.
    let (m, n, k) = (4200, 40, 30);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let tall = PackedA::new(m, k, MatRef::row_major_t(&a, m));
    let mut whole = vec![0.0; m * n];
    sgemm_serial_packed(&tall, n, 1.0, MatRef::row_major(&b, n), 0.0, &mut whole, n);
    let mut rows = vec![0.0; 96 * n];
    sgemm_serial_packed(&tall.block(4104..4200, 0..k), n, 1.0, MatRef::row_major(&b, n), 0.0, &mut rows, n);
    assert!(
        rows.iter().zip(&whole[4104 * n..]).all(|(x, y)| x.to_bits() == y.to_bits()),
        "a block of a tall A differs from the same rows of the whole"
    );
}

/// B written straight into the gemm's packed panels (as the k4 s2 im2col does) gives the
/// bits of packing it from a row-major B: several KC blocks with a ragged last one, a
/// ragged last panel, an A taller than one 4096-row block of the driver, and beta both 0
/// and not; in the 32-wide layout and in the tightest one (16-wide panels for the narrow
/// kernel).
#[test]
fn prepacked_b_gives_sgemm_bits() {
    let shapes =
        [(37, 300, 600, 0.0), (132, 48, 257, 0.4), (12, 33, 16, 0.0), (4100, 40, 3, 0.4), (50, 64, 300, 0.0)];
    for &(m, n, k, beta) in &shapes {
        let (Some(wide), Some(tightest)) = (PackedBLayout::new(k, n), PackedBLayout::tightest(k, n)) else {
            eprintln!("skipped prepacked_b_gives_sgemm_bits: this CPU's kernel packs its own B");
            return;
        };
        // 16-wide panels where a 32-wide last panel would be at most half full.
        assert_eq!(tightest.nr, if (1..=16).contains(&(n % 32)) { 16 } else { wide.nr }, "{m}x{n}x{k}");
        for layout in [wide, tightest] {
            check_prepacked_b(m, n, k, beta, layout);
        }
    }
}

/// A row-major k×n B written into `layout` as a producer would, padding columns zero; any
/// float the layout does not reach stays NaN.
fn pack_b(b: &[f32], k: usize, n: usize, layout: PackedBLayout) -> Vec<f32> {
    let mut packed = vec![f32::NAN; layout.len()];
    for p in 0..k {
        for j in 0..n.next_multiple_of(layout.nr) {
            packed[layout.offset(p, j)] = if j < n { b[p * n + j] } else { 0.0 };
        }
    }
    packed
}

/// One shape in one layout: prepacked B (A prepacked, and A packed in the call) against
/// packing B from its row-major source.
fn check_prepacked_b(m: usize, n: usize, k: usize, beta: f32, layout: PackedBLayout) {
    let mut rng = Rng::new(m as u64 * 17 + n as u64);
    let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
    let packed_a = PackedA::new(m, k, MatRef::row_major(&a, k));
    let packed_b = pack_b(&b, k, n, layout);
    assert!(packed_b.iter().all(|v| !v.is_nan()), "{m}x{n}x{k}: the layout leaves holes");
    let mut want = c0.clone();
    sgemm_serial_packed(&packed_a, n, 1.0, MatRef::row_major(&b, n), beta, &mut want, n);
    let mut got = c0.clone();
    sgemm_serial_prepacked(&packed_a, &packed_b, layout, beta, &mut got, n);
    assert!(
        got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{m}x{n}x{k} beta {beta}, {layout:?}: prepacked B differs from packing it"
    );
    // The same with A packed by the gemm itself (backward-weight's dy · colᵀ).
    let mut got = c0;
    sgemm_serial_prepacked_b(m, MatRef::row_major(&a, k), &packed_b, layout, beta, &mut got, n);
    assert!(
        got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{m}x{n}x{k} beta {beta}, {layout:?}: prepacked B with A packed in the call differs"
    );
}

/// An A stored as column blocks (NCHW images' planes read as one [c, n·hw] matrix) packed by
/// `PackedA::from_column_blocks` gives the bits of the same A gathered into one row-major
/// matrix: blocks of 4 to 64 columns, rows that end in a ragged panel, blocks spread apart,
/// several KC blocks, both B layouts. Where KC is not a multiple of the block there is none.
#[test]
fn filled_panels_give_sgemm_bits() {
    // A's panels written by a callback (as the Winograd forward writes its transformed
    // weight): several KC blocks with a ragged last one, a ragged last panel, both layouts,
    // and blocks of rows starting on panel boundaries past one 4096-row gemm block.
    for &(m, k, n) in &[(40, 600, 64), (13, 300, 33), (4200, 40, 48)] {
        let (Some(wide), Some(tightest)) = (PackedBLayout::new(k, n), PackedBLayout::tightest(k, n)) else {
            eprintln!("skipped filled_panels_give_sgemm_bits: this CPU's kernel packs its own B");
            return;
        };
        let mut rng = Rng::new(k as u64 * 7 + m as u64);
        let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
        for layout in [wide, tightest] {
            let packed_b = pack_b(&b, k, n, layout);
            let filled = PackedA::from_panels(m, k, layout, |rows, depth, panel| {
                let mr = panel.len() / depth.len();
                for (dp, p) in depth.clone().enumerate() {
                    for i in 0..mr {
                        let r = rows.start + i;
                        panel[dp * mr + i] = if r < rows.end { a[r * k + p] } else { 0.0 };
                    }
                }
            })
            .expect("the layout's kernel exists");
            let mr = layout.a_panel_rows();
            let band = (m / 3 / mr * mr)..m;
            let mut want = c0[band.start * n..].to_vec();
            let a_band = MatRef::row_major(&a[band.start * k..], k);
            sgemm_serial_prepacked_b(band.len(), a_band, &packed_b, layout, 0.5, &mut want, n);
            let mut got = c0[band.start * n..].to_vec();
            sgemm_serial_prepacked(&filled.block(band.clone(), 0..k), &packed_b, layout, 0.5, &mut got, n);
            assert!(
                got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}x{n}x{k} rows {band:?}, {layout:?}: filled panels differ from packing A"
            );
        }
    }
}

#[test]
fn column_block_a_gives_sgemm_bits() {
    for &(m, cols, blocks, n) in &[(40, 16, 20, 64), (128, 64, 5, 48), (13, 16, 16, 33), (64, 4, 70, 96)] {
        let k = cols * blocks;
        let (Some(wide), Some(tightest)) = (PackedBLayout::new(k, n), PackedBLayout::tightest(k, n)) else {
            eprintln!("skipped column_block_a_gives_sgemm_bits: this CPU's kernel packs its own B");
            return;
        };
        // Block b at data[b·stride..], 5 floats of gap after each.
        let stride = m * cols + 5;
        let mut rng = Rng::new(k as u64 * 13 + m as u64);
        let (data, b, c0) = (rng.vec(blocks * stride), rng.vec(k * n), rng.vec(m * n));
        let a: Vec<f32> =
            (0..m * k).map(|e| data[(e % k / cols) * stride + (e / k) * cols + e % cols]).collect();
        for layout in [wide, tightest] {
            let packed_b = pack_b(&b, k, n, layout);
            let mut want = c0.clone();
            sgemm_serial_prepacked_b(m, MatRef::row_major(&a, k), &packed_b, layout, 0.5, &mut want, n);
            let blocked =
                PackedA::from_column_blocks(m, &data, cols, stride, layout).expect("KC is a multiple");
            let mut got = c0.clone();
            sgemm_serial_prepacked(&blocked, &packed_b, layout, 0.5, &mut got, n);
            assert!(
                got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}x{n}x{k} in blocks of {cols}, {layout:?}: differs from the gathered A"
            );
        }
    }
    let layout = PackedBLayout::new(48 * 6, 64).expect("as above");
    assert!(PackedA::from_column_blocks(8, &[0.0; 8 * 48 * 6], 48, 8 * 48, layout).is_none());
}
