//! Forward convolution for k4 s2 p1 with x twice y and 16 or more input channels (the
//! discriminator's stride-2 layers but the RGB one, and the generator's through
//! conv_transpose2d's backward-data) by Winograd's minimal filtering F(2×2, 2×2): nine gemms
//! of depth 4·c_in where im2col + gemm runs one of depth 16·c_in, so 9/16 of the
//! multiplications. Backward-weight the same way from 8×8 outputs on, where dUᵀ stays small
//! (see [`backward_weight`]). (Backward-data the same way measured no faster: its transforms
//! run over c_out channels, twice c_in in a DCGAN, and its gemms are half as tall.)
//!
//! Split x into its four row/column parity planes, P_ab[r][s] = x[2r+a−1][2s+b−1] (zero
//! outside x). Tap (2u+a, 2v+b) of output (oy, ox) reads P_ab[oy+u][ox+v], so the layer is a
//! stride-1 2×2 convolution over 4·c_in plane channels. F(2×2, 2×2) makes each 2×2 output tile
//! from the 3×3 plane patch d under it: V = Bᵀ d B, U = G g Gᵀ, y = Aᵀ (Σ U ⊙ V) A, with
//! Bᵀ = [1 −1 0; 0 1 0; 0 −1 1], G = [1 0; 1 1; 0 1], Aᵀ = [1 1 0; 0 1 1]. Transform point
//! pt = 3p + q is one gemm, M[pt] [c_out × tiles] = U[pt] [c_out × 4·c_in] · V[pt]. In x's
//! coordinates a tile's patches are its 6×6 window x[4ty−1.., 4tx−1..]: window row r is plane
//! row i of phase a for r = 2i + a, and likewise for columns.
//!
//! The transforms only add and subtract, so the result differs from im2col's by a few
//! rounding steps, not by any cancellation; it is checked against the naive convolution.
//!
//! A task takes a group of images (about [`TARGET_TILES`] tiles, a count that depends only on
//! the shapes, so the bits do not depend on the thread count) and, one gemm KC block of
//! channels at a time, writes V straight into the gemm's packed B panels and accumulates M.
//! Tiles are numbered image by image, tile row by tile row, so a vector of 16 tiles is one or
//! more whole tile rows, or a 16-tile part of one.

use super::conv::{Scratch, avx512, is_k4s2};
use super::gemm::{MatRef, PackedA, PackedBLayout, sgemm_serial, sgemm_serial_prepacked};
use crate::backend::{ConvGeom, Unary};
use rayon::prelude::*;
use std::ops::Range;

/// Tiles (2×2 output blocks) per task, the gemm's n: a task's nine V blocks of one KC block of
/// channels are then 9 × 256 × 128 floats, 1.2 MB, within L2.
const TARGET_TILES: usize = 128;
/// Below this many input channels the im2col path stays: 4·c_in is the gemm's depth.
const MIN_C_IN: usize = 16;
/// Below this many output pixels a call (n·h_out·w_out) the im2col path stays: U is written
/// into its packed panels afresh each call, 36 floats per weight plane, which fewer pixels do
/// not repay (256→512 at 4×4 outputs: batch 64 gained 4–10%, batch 32 lost).
const MIN_PIXELS: usize = 1024;
/// Tasks a call is split into at least, where the batch allows (a count from the shapes
/// alone, as the group size must be): a batch of one or two groups left a core idle.
const MIN_TASKS: usize = 4;
/// Floats of slack before and after each row-transformed buffer: the column stage reads one
/// float before a 16-tile chunk and up to 16 past the last tile.
const SLACK: usize = 16;

/// A mask of the first `n` of 16 lanes.
fn first_lanes(n: usize) -> u16 {
    if n >= 16 { 0xFFFF } else { ((1u32 << n) - 1) as u16 }
}

/// Whether [`forward`] serves this geometry: k4 s2 p1, x twice y, y's width twice a power of
/// two (a 16-tile vector then holds whole tile rows or part of one) and even height, at least
/// [`MIN_C_IN`] input channels and [`MIN_PIXELS`] output pixels, and the AVX-512 gemm that
/// takes prepacked B.
pub(super) fn applies(g: &ConvGeom) -> bool {
    is_k4s2(g)
        && g.h_out.is_multiple_of(2)
        && g.w_out.is_multiple_of(2)
        && (g.w_out / 2).is_power_of_two()
        && g.c_in >= MIN_C_IN
        && g.n * g.h_out * g.w_out >= MIN_PIXELS
        && avx512()
        && PackedBLayout::new(4 * g.c_in, 32).is_some_and(|l| l.nr == 32)
}

/// y = conv2d(x, w), then `act` if given, for a geometry [`applies`] accepts.
pub(super) fn forward(x: &[f32], w: &[f32], g: &ConvGeom, act: Option<Unary>) -> Vec<f32> {
    assert!(applies(g), "winograd::forward: {g:?} is not a k4 s2 p1 layer it serves");
    let mut y = super::pool::take(g.y_len());
    if g.y_len() == 0 {
        return y;
    }
    let (th, tw) = (g.h_out / 2, g.w_out / 2);
    let tiles_per_image = th * tw;
    let gs = TARGET_TILES.div_ceil(tiles_per_image).min(g.n.div_ceil(MIN_TASKS)).max(1);
    let depth = 4 * g.c_in;
    let full = PackedBLayout::new(depth, 32).expect("checked by `applies`");
    // U's nine blocks each start on a panel boundary, and are written straight into them.
    let cp = g.c_out.next_multiple_of(full.a_panel_rows());
    let ua =
        PackedA::from_panels(9 * cp, depth, full, |rows, depth, panel| u_panel(w, g, cp, rows, depth, panel))
            .expect("the layout's kernel exists");
    let kc = full.kc;
    let chans_per_block = kc / 4;
    let per_image = g.c_out * g.h_out * g.w_out;
    y.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, y_t)| {
        let (n0, gn) = (t * gs, y_t.len() / per_image);
        let tiles = gn * tiles_per_image;
        // The gemm's n: the packed layouts start past 16 columns (a small last group pads).
        let cols = tiles.max(17);
        let first = PackedBLayout::new(depth.min(kc), cols).expect("n > 16");
        let m_len = g.c_out * cols;
        let r_stride = 4 * tiles.next_multiple_of(16) + 2 * SLACK;
        // One workspace per task, V first (its panels then start 64-byte aligned): fewer
        // buffers out of the pool at once, so it settles sooner.
        let mut work = Scratch::take(9 * first.len() + 9 * m_len + SLACK + g.w_in + 6 * r_stride);
        let (v, rest) = work.split_at_mut(9 * first.len());
        let (m, rows) = rest.split_at_mut(9 * m_len + SLACK);
        for c0 in (0..g.c_in).step_by(chans_per_block) {
            let chans = c0..(c0 + chans_per_block).min(g.c_in);
            let layout = PackedBLayout::new(4 * chans.len(), cols).expect("as `first`");
            let out = VOut::Packed(layout);
            transform_input(x, g, n0, gn, chans.clone(), out, first.len(), v, rows, r_stride);
            let beta = if c0 == 0 { 0.0 } else { 1.0 };
            for pt in 0..9 {
                let a = ua.block(pt * cp..pt * cp + g.c_out, 4 * chans.start..4 * chans.end);
                let vb = &v[pt * first.len()..][..layout.len()];
                sgemm_serial_prepacked(&a, vb, layout, beta, &mut m[pt * m_len..][..m_len], cols);
            }
        }
        transform_output(m, g, tiles, cols, y_t);
        if let Some(act) = act {
            super::activation::forward_in_place(act, y_t);
        }
    });
    y
}

/// Rows `rows` × depth `depth` of U (nine blocks of `cp` rows over 4·c_in columns) into one
/// packed panel, element (i, p) at panel[p·MR + i]: block pt = 3p + q holds (G g Gᵀ)[p][q] of
/// output channel o (row pt·cp + o; zeros for o ≥ c_out) and plane channel (c, a, b)
/// (column 4c + 2a + b), where g[u][v] = w[o, c, 2u+a, 2v+b]. A panel lies in one block (cp
/// is a multiple of MR); it reads its MR output channels' taps channel by channel, MR runs of
/// w, and writes each channel's 4·MR floats in one run.
fn u_panel(w: &[f32], g: &ConvGeom, cp: usize, rows: Range<usize>, depth: Range<usize>, panel: &mut [f32]) {
    let mr = panel.len() / depth.len();
    let (pt, o0) = (rows.start / cp, rows.start % cp);
    let (p, q) = (pt / 3, pt % 3);
    // G's row s of a pair: the first, their sum, or the second.
    let pick = |x0: f32, x1: f32, s: usize| match s {
        0 => x0,
        1 => x0 + x1,
        _ => x1,
    };
    let real = g.c_out.saturating_sub(o0).min(mr);
    for (c, out) in (depth.start / 4..depth.end / 4).zip(panel.chunks_exact_mut(4 * mr)) {
        for i in 0..real {
            let t = &w[((o0 + i) * g.c_in + c) * 16..][..16];
            for ab in 0..4 {
                let (a, b) = (ab / 2, ab % 2);
                // G g Gᵀ: rows of g combined by p (per column v), then columns by q.
                let r0 = pick(t[a * 4 + b], t[(2 + a) * 4 + b], p);
                let r1 = pick(t[a * 4 + 2 + b], t[(2 + a) * 4 + 2 + b], p);
                out[ab * mr + i] = pick(r0, r1, q);
            }
        }
        for ab in 0..4 {
            out[ab * mr + real..(ab + 1) * mr].fill(0.0);
        }
    }
}

/// Where V's row k, columns t0..t0 + 16 go within a block: the forward's gemm reads V as its
/// packed B panels, backward-weight's as a row-major A (`ld` a multiple of 16).
#[derive(Clone, Copy)]
enum VOut {
    Packed(PackedBLayout),
    RowMajor { rows: usize, ld: usize },
}

impl VOut {
    fn offset(&self, k: usize, t0: usize) -> usize {
        match *self {
            VOut::Packed(layout) => layout.offset(k, t0),
            VOut::RowMajor { ld, .. } => k * ld + t0,
        }
    }

    fn len(&self) -> usize {
        match *self {
            VOut::Packed(layout) => layout.len(),
            VOut::RowMajor { rows, ld } => rows * ld,
        }
    }

    fn cols(&self) -> usize {
        match *self {
            VOut::Packed(layout) => layout.n,
            VOut::RowMajor { ld, .. } => ld,
        }
    }
}

/// V for channels `chans` of images n0..n0+gn: block pt of `v` (blocks `block_len` floats
/// apart) gets, as `out` lays it, row 4(c − chans.start) + 2a + b and column t (the group's
/// tile t); columns past the last tile get zeros.
///
/// Per channel, first the row half of Bᵀ d B over whole x rows, into `rows` (a row of x's width
/// for zeros, then six buffers `stride` apart, one per (a, p), each [tile row][W]); then the
/// column half, 16 tiles at a time, in registers.
#[allow(clippy::too_many_arguments)]
fn transform_input(
    x: &[f32],
    g: &ConvGeom,
    n0: usize,
    gn: usize,
    chans: Range<usize>,
    out_layout: VOut,
    block_len: usize,
    v: &mut [f32],
    rows: &mut [f32],
    stride: usize,
) {
    let (h, w) = (g.h_in, g.w_in);
    let (th, tw) = (g.h_out / 2, g.w_out / 2);
    let tiles = gn * th * tw;
    assert!(tiles <= out_layout.cols());
    assert!(
        v.len() >= 8 * block_len + out_layout.len()
            && rows.len() >= w + 6 * stride
            && stride >= 4 * tiles + 2 * SLACK
    );
    let (zero, rows) = rows.split_at_mut(w);
    zero.fill(0.0);
    let zero = &*zero;
    for c in chans.clone() {
        // Row stage: window rows 4ty−1+r, r in 0..6; plane rows (a, i) at r = 2i + a.
        for n in 0..gn {
            let plane = &x[((n0 + n) * g.c_in + c) * h * w..][..h * w];
            let x_row = |r: usize| -> &[f32] {
                // r is the window row + 1 (x row r − 1), so row −1 is r = 0.
                if (1..=h).contains(&r) { &plane[(r - 1) * w..][..w] } else { zero }
            };
            for ty in 0..th {
                let at = SLACK + (n * th + ty) * w;
                for a in 0..2 {
                    let (d0, d1, d2) = (x_row(4 * ty + a), x_row(4 * ty + 2 + a), x_row(4 * ty + 4 + a));
                    let (r0, rest) = rows[3 * a * stride..].split_at_mut(stride);
                    let (r1, r2) = rest.split_at_mut(stride);
                    let outs = r0[at..at + w].iter_mut().zip(&mut r1[at..at + w]).zip(&mut r2[at..at + w]);
                    for (((o0, o1), o2), ((&x0, &x1), &x2)) in outs.zip(d0.iter().zip(d1).zip(d2)) {
                        *o0 = x0 - x1;
                        *o1 = x1;
                        *o2 = x2 - x1;
                    }
                }
            }
        }
        // Column stage.
        let k0 = 4 * (c - chans.start);
        let vp = v.as_mut_ptr();
        for t0 in (0..tiles).step_by(16) {
            let lanes = (tiles - t0).min(16);
            let (keep_prev, keep_next) = neighbour_masks(t0, tw);
            for a in 0..2 {
                for p in 0..3 {
                    let r = &rows[(3 * a + p) * stride + SLACK + 4 * t0 - 1..][..66];
                    // (b, q) → block 3p + q, row k0 + 2a + b.
                    let out: [*mut f32; 6] = std::array::from_fn(|bq| {
                        let (b, q) = (bq / 3, bq % 3);
                        // SAFETY: inside block 3p + q of `v` (asserted above).
                        unsafe { vp.add((3 * p + q) * block_len + out_layout.offset(k0 + 2 * a + b, t0)) }
                    });
                    // SAFETY: `r` holds the 66 floats read; `out` rows hold 16 floats from t0
                    // (a 16-aligned column of a 32-wide panel).
                    unsafe { columns_avx512(r.as_ptr(), lanes, keep_prev, keep_next, out) };
                }
            }
        }
    }
    if let VOut::Packed(layout) = out_layout {
        zero_unreached(v, layout, block_len, tiles);
    }
}

/// Zeros the 16-column halves of V's panels past the last tile chunk, in each of the nine
/// blocks (`block_len` floats apart): the gemm reads whole panels.
fn zero_unreached(v: &mut [f32], layout: PackedBLayout, block_len: usize, tiles: usize) {
    for t0 in (tiles.next_multiple_of(16)..layout.n.next_multiple_of(layout.nr)).step_by(16) {
        for pt in 0..9 {
            for k in 0..layout.k {
                let at = pt * block_len + layout.offset(k, t0);
                v[at..at + 16].fill(0.0);
            }
        }
    }
}

/// For the 16 tiles from t0: which lanes have a tile to their left (else the pad column before
/// x) and to their right (else the one after it), as lane masks. tw is a power of two: with
/// 16 tiles or more a row, only lane 0 can start one and lane 15 end one; with fewer, the
/// lanes starting a row are every tw-th from 0, the same in every chunk.
#[inline]
fn neighbour_masks(t0: usize, tw: usize) -> (u16, u16) {
    debug_assert!(tw.is_power_of_two() && t0.is_multiple_of(16));
    if tw >= 16 {
        let starts = u16::from(t0 & (tw - 1) == 0);
        let ends = u16::from((t0 + 16) & (tw - 1) == 0) << 15;
        (!starts, !ends)
    } else {
        let starts = (0xFFFF / ((1u32 << tw) - 1)) as u16;
        (!starts, !(starts << (tw - 1)))
    }
}

/// The column half of Bᵀ d B for 16 tiles of one row-transformed buffer: `r` points at the
/// float before the chunk's first tile, E_k[l] = r[1 + 4l + k] is tile l's column k, and the
/// six outputs (b, q) go to `out[3b + q]`: b = 0: E3(l−1) − E1, E1, E3 − E1; b = 1: E0 − E2,
/// E2, E0(l+1) − E2. Lanes from `lanes` on are stored as zeros.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn columns_avx512(r: *const f32, lanes: usize, keep_prev: u16, keep_next: u16, out: [*mut f32; 6]) {
    use std::arch::x86_64::*;
    const fn idx(k: usize, hi: bool) -> [i32; 16] {
        let mut v = [0i32; 16];
        let mut l = 0;
        while l < 8 {
            v[if hi { l + 8 } else { l }] = (4 * l + k) as i32;
            l += 1;
        }
        v
    }
    const IDX: [[[i32; 16]; 2]; 4] = {
        let mut t = [[[0i32; 16]; 2]; 4];
        let mut k = 0;
        while k < 4 {
            t[k] = [idx(k, false), idx(k, true)];
            k += 1;
        }
        t
    };
    unsafe {
        let src = r.add(1);
        let (v0, v1, v2, v3) = (
            _mm512_loadu_ps(src),
            _mm512_loadu_ps(src.add(16)),
            _mm512_loadu_ps(src.add(32)),
            _mm512_loadu_ps(src.add(48)),
        );
        let e: [__m512; 4] = std::array::from_fn(|k| {
            let lo = _mm512_permutex2var_ps(v0, _mm512_loadu_si512(IDX[k][0].as_ptr().cast()), v1);
            let hi = _mm512_permutex2var_ps(v2, _mm512_loadu_si512(IDX[k][1].as_ptr().cast()), v3);
            _mm512_mask_blend_ps(0xFF00, lo, hi)
        });
        let before = _mm512_set1_ps(*r);
        let after = _mm512_set1_ps(*src.add(64));
        let e3_prev = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
            _mm512_castps_si512(e[3]),
            _mm512_castps_si512(before),
        ));
        let e0_next = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
            _mm512_castps_si512(after),
            _mm512_castps_si512(e[0]),
        ));
        let e3_prev = _mm512_maskz_mov_ps(keep_prev, e3_prev);
        let e0_next = _mm512_maskz_mov_ps(keep_next, e0_next);
        let vals = [
            _mm512_sub_ps(e3_prev, e[1]),
            e[1],
            _mm512_sub_ps(e[3], e[1]),
            _mm512_sub_ps(e[0], e[2]),
            e[2],
            _mm512_sub_ps(e0_next, e[2]),
        ];
        let real = first_lanes(lanes);
        for (dst, val) in out.into_iter().zip(vals) {
            _mm512_storeu_ps(dst, _mm512_maskz_mov_ps(real, val));
        }
    }
}

/// y from M (nine blocks of c_out × `ld`, row-major, back to back; columns ..tiles used): tile t's 2×2 outputs,
/// Aᵀ M A, to its place in y_t (the group's images). 16 tiles at a time; their 32 outputs per
/// y row are interleaved in registers and stored as runs of whole tile rows.
fn transform_output(m: &[f32], g: &ConvGeom, tiles: usize, ld: usize, y_t: &mut [f32]) {
    let (th, tw) = (g.h_out / 2, g.w_out / 2);
    let (hw, w) = (g.h_out * g.w_out, g.w_out);
    let m_len = g.c_out * ld;
    assert!(m.len() >= 9 * m_len + SLACK && y_t.len() >= tiles / (th * tw) * g.c_out * hw);
    // A run: lanes l0..l1 of a chunk, one tile row, starting at y_t offset `at` (channel 0,
    // output row 2ty, column 2tx of lane l0).
    let run_len = tw.min(16);
    for t0 in (0..tiles).step_by(16) {
        let lanes = (tiles - t0).min(16);
        let runs = lanes / run_len;
        let mut at = [0usize; 16];
        for (j, a) in at[..runs].iter_mut().enumerate() {
            let t = t0 + j * run_len;
            let (n, ty, tx) = (t / (th * tw), (t / tw) % th, t % tw);
            *a = n * g.c_out * hw + 2 * ty * w + 2 * tx;
        }
        for o in 0..g.c_out {
            // SAFETY: M holds 16 floats from every (pt, o, t0) (SLACK past its end); each run
            // writes 2·run_len floats of one y row inside y_t (asserted above).
            unsafe {
                output_avx512(
                    m.as_ptr().add(o * ld + t0),
                    m_len,
                    y_t.as_mut_ptr().add(o * hw),
                    &at[..runs],
                    run_len,
                    w,
                )
            };
        }
    }
}

/// One output channel's 16 tiles: `m` points at M[0][o][t0], blocks `m_len` apart; run j
/// (lanes j·run_len..) goes to y + at[j] (row 2ty) and y + at[j] + w (row 2ty + 1).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(m: *const f32, m_len: usize, y: *mut f32, at: &[usize], run_len: usize, w: usize) {
    use std::arch::x86_64::*;
    const fn interleave(hi: bool) -> [i32; 16] {
        let mut v = [0i32; 16];
        let mut f = 0;
        while f < 16 {
            // Float f of the pair's half: lane f/2 (+8 for the high half) of the first (even
            // f) or second vector (index + 16).
            v[f] = ((f / 2 + if hi { 8 } else { 0 }) + if f % 2 == 1 { 16 } else { 0 }) as i32;
            f += 1;
        }
        v
    }
    const LO: [i32; 16] = interleave(false);
    const HI: [i32; 16] = interleave(true);
    unsafe {
        let mp: [__m512; 9] = std::array::from_fn(|pt| _mm512_loadu_ps(m.add(pt * m_len)));
        let (lo, hi) = (_mm512_loadu_si512(LO.as_ptr().cast()), _mm512_loadu_si512(HI.as_ptr().cast()));
        for i in 0..2 {
            // s_i[q] = M[i][q] + M[i+1][q]; y_i0 = s_i[0] + s_i[1], y_i1 = s_i[1] + s_i[2].
            let s: [__m512; 3] = std::array::from_fn(|q| _mm512_add_ps(mp[3 * i + q], mp[3 * (i + 1) + q]));
            let (y0, y1) = (_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[1], s[2]));
            let pair = [_mm512_permutex2var_ps(y0, lo, y1), _mm512_permutex2var_ps(y0, hi, y1)];
            let floats = 2 * run_len;
            for (j, &a) in at.iter().enumerate() {
                let dst = y.add(a + i * w);
                if floats == 32 {
                    _mm512_storeu_ps(dst, pair[0]);
                    _mm512_storeu_ps(dst.add(16), pair[1]);
                } else {
                    // Floats f0..f0+floats of the 32, all in one half.
                    let f0 = 2 * j * run_len;
                    let (half, f) = (pair[f0 / 16], f0 % 16);
                    let mask = (((1u32 << floats) - 1) << f) as u16;
                    _mm512_mask_storeu_ps(dst.wrapping_sub(f), mask, half);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Backward to the weight
// ------------------------------------------------------------------------------------------
//
// With y = Aᵀ M A per tile and M[pt] = U[pt] · V[pt]: dM = A dy Aᵀ per tile (dM[p][q] sums dy
// over the tile's rows I_p and columns I_q, I_0 = {0}, I_1 = {0, 1}, I_2 = {1}), dU[pt] =
// Σ_tiles dM[pt] V[pt]ᵀ, and dg = Gᵀ dU G (dg[u][v] sums dU[3p + q] over p with G[p][u] = 1
// and q with G[q][v] = 1).

/// The most dUᵀ one of [`backward_weight`]'s two blocks may accumulate, in floats
/// (9 × 4·channels × c_out, 4 MiB): past it each group's gemms stream dUᵀ through L3, and
/// the im2col path stays (256→512 at 4×4 outputs ran 40–55% slower than im2col, with two
/// blocks of 9 MiB or five of 4).
const BW_DU_FLOATS: usize = 1 << 20;

/// The fewest output pixels an image for [`backward_weight`]: at 4×4 outputs (4 tiles an
/// image) it ran 25% slower than the im2col path, which packs such small dy planes straight
/// into its gemm's panels.
const BW_MIN_PLANE: usize = 64;

/// Whether [`backward_weight`] serves this geometry: as [`applies`], with output planes of at
/// least [`BW_MIN_PLANE`] pixels and each of its two blocks' dUᵀ within [`BW_DU_FLOATS`].
pub(super) fn applies_backward_weight(g: &ConvGeom) -> bool {
    applies(g) && g.h_out * g.w_out >= BW_MIN_PLANE && 36 * g.c_in.div_ceil(2) * g.c_out <= BW_DU_FLOATS
}

/// dw = conv2d's weight gradient, for a geometry [`applies_backward_weight`] accepts.
pub(super) fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeom, dw: &mut [f32]) {
    assert!(applies_backward_weight(g), "winograd::backward_weight: {g:?} is not a k4 s2 p1 layer it serves");
    let (th, tw) = (g.h_out / 2, g.w_out / 2);
    let tiles_per_image = th * tw;
    let gs = TARGET_TILES.div_ceil(tiles_per_image).clamp(1, g.n);
    // Two input-channel blocks, each a task owning its dw columns over the whole batch and
    // transforming dy for itself (a count fixed by the shapes, so dw's bits do not depend on
    // the threads).
    let cb = g.c_in.div_ceil(2);
    let c_out = g.c_out;
    let blocks = [0..cb, cb..g.c_in];
    let block_work = |chans: &Range<usize>| {
        let k = 4 * chans.len();
        let ld_max = (gs * tiles_per_image).next_multiple_of(16);
        let r_stride = 4 * ld_max + 2 * SLACK;
        // One workspace per block (as the forward's): dUᵀ, V, dM, the row buffers.
        let (du_len, v_len, dm_len) = (9 * k * c_out, 9 * k * ld_max, 9 * c_out * ld_max);
        let mut work = Scratch::take(du_len + v_len + dm_len + g.w_in + 6 * r_stride);
        let (du, rest) = work.split_at_mut(du_len);
        let (v, rest) = rest.split_at_mut(v_len);
        let (dm, rows) = rest.split_at_mut(dm_len);
        for (q, n0) in (0..g.n).step_by(gs).enumerate() {
            let gn = gs.min(g.n - n0);
            let tiles = gn * tiles_per_image;
            let ld = tiles.next_multiple_of(16);
            let out = VOut::RowMajor { rows: k, ld };
            transform_input(x, g, n0, gn, chans.clone(), out, k * ld, v, rows, r_stride);
            transform_dy(dy, g, n0, gn, ld, dm, rows);
            let beta = if q == 0 { 0.0 } else { 1.0 };
            for pt in 0..9 {
                // dUᵀ[pt] [k, c_out] += V[pt] [k, ld] · dM[pt]ᵀ [ld, c_out]
                sgemm_serial(
                    k,
                    c_out,
                    ld,
                    1.0,
                    MatRef::row_major(&v[pt * k * ld..][..k * ld], ld),
                    MatRef::row_major_t(&dm[pt * c_out * ld..][..c_out * ld], ld),
                    beta,
                    &mut du[pt * k * c_out..][..k * c_out],
                    c_out,
                );
            }
        }
        work
    };
    let parts = {
        let (a, b) = rayon::join(|| block_work(&blocks[0]), || block_work(&blocks[1]));
        [a, b]
    };
    // dg = Gᵀ dU G into dw, per (o, c).
    const SETS: [&[usize]; 2] = [&[0, 1], &[1, 2]];
    dw.par_chunks_mut(g.c_in * 16).enumerate().for_each(|(o, dwo)| {
        for (chans, work) in blocks.iter().zip(&parts) {
            let k = 4 * chans.len();
            // dUᵀ leads each block's workspace.
            let du = &work[..9 * k * c_out];
            for c in chans.clone() {
                let taps = &mut dwo[c * 16..][..16];
                for ab in 0..4 {
                    let (a, b) = (ab / 2, ab % 2);
                    let row = 4 * (c - chans.start) + ab;
                    for (u, ps) in SETS.iter().enumerate() {
                        for (vv, qs) in SETS.iter().enumerate() {
                            let mut sum = 0.0f32;
                            for &p in ps.iter() {
                                for &q in qs.iter() {
                                    sum += du[(3 * p + q) * k * c_out + row * c_out + o];
                                }
                            }
                            taps[(2 * u + a) * 4 + 2 * vv + b] = sum;
                        }
                    }
                }
            }
        }
    });
}

/// dM of images n0..n0+gn: block pt of `dm` ([c_out, ld] each, back to back) gets row o,
/// column t = Σ over the tile's dy rows I_p and columns I_q; columns past the last tile get
/// zeros. The row sums over whole dy rows into `rows` first (three buffers, [tile row][w]),
/// then the column sums 16 tiles at a time.
fn transform_dy(dy: &[f32], g: &ConvGeom, n0: usize, gn: usize, ld: usize, dm: &mut [f32], rows: &mut [f32]) {
    let (h, w) = (g.h_out, g.w_out);
    let (th, tw) = (h / 2, w / 2);
    let tiles = gn * th * tw;
    let stride = 2 * ld + 32;
    assert!(ld == tiles.next_multiple_of(16) && dm.len() >= 9 * g.c_out * ld && rows.len() >= 3 * stride);
    let block = g.c_out * ld;
    for o in 0..g.c_out {
        for n in 0..gn {
            let plane = &dy[((n0 + n) * g.c_out + o) * h * w..][..h * w];
            for ty in 0..th {
                let at = (n * th + ty) * w;
                let (d0, d1) = (&plane[2 * ty * w..][..w], &plane[(2 * ty + 1) * w..][..w]);
                let (r0, rest) = rows.split_at_mut(stride);
                let (r1, r2) = rest.split_at_mut(stride);
                let outs = r0[at..at + w].iter_mut().zip(&mut r1[at..at + w]).zip(&mut r2[at..at + w]);
                for (((o0, o1), o2), (&x0, &x1)) in outs.zip(d0.iter().zip(d1)) {
                    *o0 = x0;
                    *o1 = x0 + x1;
                    *o2 = x1;
                }
            }
        }
        let dp = dm.as_mut_ptr();
        for t0 in (0..tiles).step_by(16) {
            let lanes = (tiles - t0).min(16);
            for p in 0..3 {
                let r = &rows[p * stride + 2 * t0..][..32];
                // SAFETY: row o of block 3p + q holds 16 floats from t0 (t0 + 16 ≤ ld).
                let out: [*mut f32; 3] =
                    std::array::from_fn(|q| unsafe { dp.add((3 * p + q) * block + o * ld + t0) });
                // SAFETY: `r` holds the 32 floats read.
                unsafe { dy_columns_avx512(r.as_ptr(), lanes, out) };
            }
        }
    }
}

/// The column sums of dM for 16 tiles of one row-summed dy buffer: D_k[l] = r[2l + k], and
/// out[q] gets D0, D0 + D1, D1. Lanes from `lanes` on are stored as zeros.
#[target_feature(enable = "avx512f")]
unsafe fn dy_columns_avx512(r: *const f32, lanes: usize, out: [*mut f32; 3]) {
    use std::arch::x86_64::*;
    const fn idx(k: usize) -> [i32; 16] {
        let mut v = [0i32; 16];
        let mut l = 0;
        while l < 16 {
            v[l] = (2 * l + k) as i32;
            l += 1;
        }
        v
    }
    const EVEN: [i32; 16] = idx(0);
    const ODD: [i32; 16] = idx(1);
    unsafe {
        let (v0, v1) = (_mm512_loadu_ps(r), _mm512_loadu_ps(r.add(16)));
        let d0 = _mm512_permutex2var_ps(v0, _mm512_loadu_si512(EVEN.as_ptr().cast()), v1);
        let d1 = _mm512_permutex2var_ps(v0, _mm512_loadu_si512(ODD.as_ptr().cast()), v1);
        let real = first_lanes(lanes);
        for (dst, val) in out.into_iter().zip([d0, _mm512_add_ps(d0, d1), d1]) {
            _mm512_storeu_ps(dst, _mm512_maskz_mov_ps(real, val));
        }
    }
}
