//! The bf16 products of `--matmul bf16`: the tile gemm (AMX where the CPU has it) and its
//! portable twin against an f64 product of the bf16-rounded operands, over every operand
//! layout and ragged edges; the rounding against `half`; and the CPU convolutions under
//! `MatmulPrecision::Bf16`, in all three directions, against f64 convolutions of the rounded
//! inputs.

mod common;
use common::reference::{conv_directions, conv_geom as geom};
use common::{assert_close, cpu_bits_with_threads, random, to_f32};
use dcgan::Rng;
use dcgan::backend::cpu::amx::{
    self, PackedA16, PackedB16, bf16_bits, bf16_value, gemm_bf16, gemm_bf16_part, gemm_bf16_portable,
};
use dcgan::backend::cpu::gemm::MatRef;
use dcgan::backend::cpu::{MatmulPrecision, MatmulPrecisionScope, matmul_precision, set_matmul_precision};
use dcgan::backend::{Backend, ConvGeom, Device, Storage};

#[test]
fn bf16_bits_rounds_like_half() {
    // Every 65537th bit pattern (all exponents, both signs, NaNs, infinities, subnormals),
    // plus the ties either side of even.
    let ties = [0x3f80_8000u32, 0x3f81_8000, 0x3f80_7fff, 0x3f81_8001, 0x7f7f_ffff, 0x0000_8000];
    for bits in (0..=u32::MAX).step_by(65537).chain(ties) {
        let x = f32::from_bits(bits);
        let want = half::bf16::from_f32(x).to_bits();
        assert_eq!(bf16_bits(x), want, "{bits:#010x} ({x:e})");
        if !x.is_nan() {
            assert_eq!(bf16_value(want), half::bf16::from_bits(want).to_f32(), "{bits:#010x}");
        }
    }
}

/// An m×n operand of random values in [-1, 1), stored row-major or transposed.
fn operand(rows: usize, cols: usize, transposed: bool, rng: &mut Rng) -> (Vec<f32>, usize, usize) {
    let data = to_f32(&random(rows * cols, rng));
    if transposed { (data, 1, rows) } else { (data, cols, 1) }
}

/// Reused pool buffers come back filled with NaN (in release builds too), so an operand
/// element its packer or im2col failed to write shows up in the results. On for the whole
/// binary: it only slows the tests.
fn poison_reused_buffers() {
    dcgan::backend::cpu::pool::set_poison(true);
}

fn rounded(x: f32) -> f64 {
    bf16_value(bf16_bits(x)) as f64
}

#[test]
fn tile_gemm_matches_the_rounded_product_on_every_layout_and_edge() {
    poison_reused_buffers();
    let mut rng = Rng::new(7);
    // Edges of every kind, then k = 1100 (35 tile steps), 17 column blocks of B (passes of
    // 8 over A), and k = 2100 (passes of 7).
    let shapes = [
        (1, 1, 1),
        (5, 7, 3),
        (16, 16, 32),
        (32, 32, 64),
        (33, 47, 70),
        (64, 96, 257),
        (100, 130, 96),
        (40, 50, 1100),
        (33, 530, 600),
        (20, 300, 2100),
    ];
    for (m, n, k) in shapes {
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let (a, ars, acs) = operand(m, k, a_t, &mut rng);
            let (b, brs, bcs) = operand(k, n, b_t, &mut rng);
            let pa = PackedA16::new(m, k, MatRef { data: &a, row_stride: ars, col_stride: acs });
            let pb = PackedB16::new(k, n, MatRef { data: &b, row_stride: brs, col_stride: bcs });
            let c0 = to_f32(&random(m * n, &mut rng));
            for accumulate in [false, true] {
                let what = format!(
                    "{m}×{n}×{k}, A{} B{}, accumulate {accumulate}",
                    ["", "ᵀ"][a_t as usize],
                    ["", "ᵀ"][b_t as usize]
                );
                let (mut tiles, mut portable) = (c0.clone(), c0.clone());
                gemm_bf16(&pa, &pb, accumulate, &mut tiles, n);
                gemm_bf16_portable(&pa, &pb, accumulate, &mut portable, n);
                for i in 0..m {
                    for j in 0..n {
                        let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
                        if accumulate {
                            exact = c0[i * n + j] as f64;
                            magnitude = exact.abs();
                        }
                        for p in 0..k {
                            let t = rounded(a[i * ars + p * acs]) * rounded(b[p * brs + j * bcs]);
                            exact += t;
                            magnitude += t.abs();
                        }
                        // One f32 rounding per added product (portable) or per 32-deep step
                        // (tiles), each at most half an ulp of the running magnitude.
                        let tol = (k + 4) as f64 * magnitude * f64::powi(2.0, -24);
                        for (name, got) in [("tiles", tiles[i * n + j]), ("portable", portable[i * n + j])] {
                            assert!(
                                (got as f64 - exact).abs() <= tol,
                                "{what}, {name} C[{i},{j}] = {got}, rounded product {exact} (tol {tol:e})"
                            );
                        }
                    }
                }
            }
        }
    }
    eprintln!("bf16 gemm ran {}", amx::path().describe());
}

#[test]
fn row_bands_and_depth_slices_give_the_whole_products_bits() {
    // What the convolutions rely on: a band of A's rows, or the sum carried through C over
    // slices of whole 32-deep steps (the last one ragged), is the whole product, bit for bit.
    let mut rng = Rng::new(11);
    let (m, n, k) = (70, 45, 150);
    let (a, _, _) = operand(m, k, false, &mut rng);
    let (b, _, _) = operand(k, n, false, &mut rng);
    let pa = PackedA16::new(m, k, MatRef::row_major(&a, k));
    let mut whole = vec![0.0f32; m * n];
    gemm_bf16(&pa, &PackedB16::new(k, n, MatRef::row_major(&b, n)), false, &mut whole, n);
    let mut parts = vec![f32::NAN; m * n];
    for rows in [0..32, 32..64, 64..m] {
        for (s, depth) in [0..64, 64..128, 128..k].into_iter().enumerate() {
            let b_slice =
                PackedB16::new(depth.len(), n, MatRef::row_major(&b[depth.start * n..depth.end * n], n));
            let c = &mut parts[rows.start * n..rows.end * n];
            gemm_bf16_part(&pa, rows.clone(), depth, &b_slice, s > 0, c, n);
        }
    }
    let differ = (0..m * n).filter(|&i| parts[i].to_bits() != whole[i].to_bits()).count();
    assert_eq!(differ, 0, "{differ} of {} elements differ from the whole product", m * n);
}

/// Largest |got − want| over the largest |want|.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs())) / scale
}

#[test]
fn bf16_convolutions_match_f64_convolutions_of_the_rounded_inputs() {
    poison_reused_buffers();
    set_matmul_precision(MatmulPrecision::Bf16);
    let be = Device::Cpu.backend();
    for (i, g) in [
        geom(4, 16, (16, 16), 8, 4, 2, 1), // k4 s2 p1 with 16 channels: f32 takes Winograd here
        geom(3, 3, (16, 16), 16, 4, 2, 1), // the RGB layer: batch-quarter backward-weight
        geom(6, 33, (8, 8), 4, 4, 2, 1),   // channel-block backward-weight, 16-pixel planes
        geom(40, 16, (8, 8), 8, 4, 2, 1),  // several image groups, a ragged last one
        geom(2, 5, (6, 7), 4, 3, 1, 1),    // k3 s1: the general col2im
        geom(2, 17, (6, 10), 5, 4, 2, 1),  // odd channels, non-square
        geom(2, 8, (8, 8), 40, 4, 2, 1),   // 40 output channels: wᵀ's full 32-deep steps
        geom(3, 6, (8, 8), 5, 4, 2, 1),    // an odd channel count over 16-pixel dy planes
        // 256-pixel dy planes: backward-weight runs a gemm per image, and a batch quarter of
        // two images sums two of them.
        geom(6, 3, (32, 32), 8, 4, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng::new(100 + i as u64);
        let (x, w, dy) =
            (random(g.x_len(), &mut rng), random(g.w_len(), &mut rng), random(g.y_len(), &mut rng));
        let round_all = |v: &[f64]| v.iter().map(|&t| rounded(t as f32)).collect::<Vec<f64>>();
        let (y, dx, dw) = conv_directions(&g, &round_all(&x), &round_all(&w), &round_all(&dy));
        let (y_f32, ..) = conv_directions(&g, &x, &w, &dy);
        let up = |v: &[f64]| Storage::Cpu(to_f32(v));
        let got_y = be.download(&be.conv2d_forward(&up(&x), &up(&w), &g));
        assert_close(&got_y, &y, 1e-4, &format!("forward {g:?}"));
        assert_close(
            &be.download(&be.conv2d_backward_data(&up(&dy), &up(&w), &g)),
            &dx,
            1e-4,
            &format!("backward-data {g:?}"),
        );
        assert_close(
            &be.download(&be.conv2d_backward_weight(&up(&x), &up(&dy), &g)),
            &dw,
            1e-4,
            &format!("backward-weight {g:?}"),
        );
        // The rounding is real: against the unrounded inputs the error is bf16's, not f32's.
        let err = relative_error(&got_y, &y_f32);
        assert!(err > 1e-4, "{g:?}: bf16 forward within {err:e} of the f32 one: inputs not rounded?");
    }
}

#[test]
fn dense_layers_and_f32_mode_keep_f32_products() {
    let be = Device::Cpu.backend();
    let run = |g: &ConvGeom, p: MatmulPrecision| {
        set_matmul_precision(p);
        let mut rng = Rng::new(5);
        let (x, w) = (random(g.x_len(), &mut rng), random(g.w_len(), &mut rng));
        be.download(&be.conv2d_forward(&Storage::Cpu(to_f32(&x)), &Storage::Cpu(to_f32(&w)), g))
    };
    // D's last layer (a 1×1 output): one small f32 gemm in either mode.
    let dense = geom(5, 24, (4, 4), 7, 4, 1, 0);
    assert_eq!(run(&dense, MatmulPrecision::F32), run(&dense, MatmulPrecision::Bf16));
    // A strided layer: the modes differ, and setting f32 again restores the f32 bits.
    let strided = geom(2, 16, (8, 8), 8, 4, 2, 1);
    let f32_bits = run(&strided, MatmulPrecision::F32);
    assert_ne!(run(&strided, MatmulPrecision::Bf16), f32_bits);
    assert_eq!(run(&strided, MatmulPrecision::F32), f32_bits);
}

/// `train` and `bench` set the precision for their run only: the thread gets its own back,
/// and other threads never see it.
#[test]
fn a_precision_scope_restores_the_thread_s_setting() {
    set_matmul_precision(MatmulPrecision::F32);
    {
        let _run = MatmulPrecisionScope::new(MatmulPrecision::Bf16);
        assert_eq!(matmul_precision(), MatmulPrecision::Bf16);
        let other = std::thread::spawn(matmul_precision).join().unwrap();
        assert_eq!(other, MatmulPrecision::F32, "another thread saw this one's setting");
    }
    assert_eq!(matmul_precision(), MatmulPrecision::F32);
}

/// The bits of `op` on `threads` rayon threads, in bf16.
fn bf16_bits_with_threads(threads: usize, op: impl Fn(&dyn Backend) -> Storage + Sync) -> Vec<u32> {
    cpu_bits_with_threads(threads, MatmulPrecision::Bf16, op)
}

#[test]
fn bf16_convolution_bits_do_not_depend_on_the_thread_count() {
    poison_reused_buffers();
    for (i, g) in [
        geom(30, 33, (16, 16), 8, 4, 2, 1),
        geom(6, 3, (32, 32), 8, 4, 2, 1),
        geom(20, 16, (8, 8), 12, 4, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng::new(60 + i as u64);
        let (x, w, dy) =
            (random(g.x_len(), &mut rng), random(g.w_len(), &mut rng), random(g.y_len(), &mut rng));
        let (x, w, dy) = (Storage::Cpu(to_f32(&x)), Storage::Cpu(to_f32(&w)), Storage::Cpu(to_f32(&dy)));
        let run = |threads: usize| {
            (
                bf16_bits_with_threads(threads, |be| be.conv2d_forward(&x, &w, &g)),
                bf16_bits_with_threads(threads, |be| be.conv2d_backward_data(&dy, &w, &g)),
                bf16_bits_with_threads(threads, |be| be.conv2d_backward_weight(&x, &dy, &g)),
            )
        };
        let want = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == want, "{g:?}: bits differ with {threads} threads");
        }
    }
}
