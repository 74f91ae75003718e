//! bf16 matrix products for `--matmul bf16`: on Intel AMX (Sapphire Rapids and later), else
//! on AVX512-BF16 dot products over the same packed operands, else on f32 FMAs over them
//! widened back to f32 ([`Bf16Path`]).
//!
//! `gemm_bf16` computes C = [C +] bf16(A)·bf16(B): both inputs rounded to bf16 (nearest
//! even), every product exact in f32, summed in f32. A tile multiply (`tdpbf16ps`) adds a
//! 32-deep step's products to its accumulator with one rounding (measured: it matches an
//! exact sum of the step rounded once on ordinary data; with exponents far apart it does
//! not, so the tests bound the error instead of asking for bits). Without AMX, `vdpbf16ps`
//! adds each k-pair's two products to a lane's sum; without that, the widened kernel adds
//! the same products one at a time as [`gemm_bf16_portable`], the tests' reference, does.
//! A C element's sum is never split between threads, and its steps run in k order, so the
//! bits do not depend on the thread count.
//!
//! Layout: A is packed as 32-row blocks of 32-deep steps, each step two 16×32 bf16 tiles
//! ([`PackedA16`]); B in the tiles' pair-interleaved ("VNNI") form, 32-column blocks of
//! 32-deep steps, each step two tiles of 16 k-pairs × 16 columns ([`PackedB16`]). Both are
//! zero-padded to whole blocks and steps, and start on a cache line (a tile row straddling
//! two lines halves the loads' rate). A C block is 2×2 tiles (tmm0-3) fed by two A tiles
//! (tmm4-5) and two B tiles (tmm6-7): four tile loads per four tile multiplies.
//!
//! [`gemm_bf16_part`] multiplies a band of A's rows, or a slice of its depth with the sums
//! carried through C, so that a caller can make an operand a piece at a time and use each
//! piece while it is in L2; the bits are those of the whole product.
//!
//! The tiles are configured (`ldtilecfg`) at the start of each serial product on the thread
//! that runs it and released at its end, so no thread keeps 8 KiB of tile state between
//! calls. Linux gives a process the tile registers only on request (`arch_prctl`), made
//! once, in [`available`].

use super::gemm::MatRef;
use std::ops::Range;

/// Rows of a tile, and f32 columns of an accumulator tile.
const TILE: usize = 16;
/// The depth of one tile multiply: 32 bf16 per tile row. A depth slice of a product
/// (`gemm_bf16_part`) starts on a multiple of it.
pub const STEP: usize = 32;
/// Rows and columns of a C block: 2×2 accumulator tiles. A row band of a product
/// (`gemm_bf16_part`) starts on a multiple of it.
pub const BLOCK: usize = 2 * TILE;
/// bf16 elements of one packed block step (two tiles of 16 rows × 64 bytes).
const STEP_LEN: usize = BLOCK * STEP;

/// Where A's element (i, p) lies in `PackedA16`: block i / 32, step p / 32, row i % 32 of
/// its two tiles.
#[inline(always)]
fn a_offset(steps: usize, i: usize, p: usize) -> usize {
    ((i / BLOCK * steps + p / STEP) * BLOCK + i % BLOCK) * STEP + p % STEP
}

/// The u32 lane of `PackedB16` that holds B's rows p and p + 1 (p even) of column j: block
/// j / 32, step p / 32, tile j % 32 / 16, tile row p % 32 / 2.
#[inline(always)]
fn b_lane(steps: usize, p: usize, j: usize) -> usize {
    let tile = (j / BLOCK * steps + p / STEP) * 2 + j % BLOCK / TILE;
    (tile * TILE + p % STEP / 2) * TILE + j % TILE
}

/// f32 → bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() { ((b >> 16) as u16) | 0x40 } else { rounded }
}

/// The f32 that `bf16_bits` stands for.
#[inline(always)]
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Packed bf16 operands, in a buffer of the CPU pool (a fresh one per call cost page faults
/// worth a tenth of a training step), returned on drop. They start on a 64-byte boundary, so
/// that every 64-byte tile row is one cache line: pool buffers are only 16-byte aligned, and
/// tile loads straddling two lines ran at a third to a half of the aligned rate (measured:
/// 1.0-1.1 against 2.0-3.2 TFLOP/s a core, L2- and L1-resident).
struct Packed {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Packed {
    /// `len` (even) bf16 for an operand of `rows` × `cols` padded to whole tiles: zero where
    /// the operand has padding (rows or cols not a multiple of 32), else unspecified, for a
    /// packer that writes every element.
    fn for_operand(len: usize, rows: usize, cols: usize) -> Packed {
        let floats = len / 2;
        // 15 floats of slack hold any 64-byte alignment shift. Zeroing a whole operand that
        // its packer then overwrites cost memory traffic for nothing.
        let padded = !rows.is_multiple_of(BLOCK) || !cols.is_multiple_of(STEP); // both 32
        let buf = if padded { super::pool::zeros(floats + 15) } else { super::pool::take(floats + 15) };
        let start = buf.as_ptr().align_offset(64).min(15);
        Packed { buf, start, len: floats }
    }

    fn as_ref(&self) -> &[u16] {
        bytemuck::cast_slice(&self.buf[self.start..self.start + self.len])
    }

    fn as_mut(&mut self) -> &mut [u16] {
        bytemuck::cast_slice_mut(&mut self.buf[self.start..self.start + self.len])
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        super::pool::give(std::mem::take(&mut self.buf));
    }
}

/// A (m × k) as bf16 tiles: element (i, p) at `a_offset(steps, i, p)`.
pub struct PackedA16 {
    data: Packed,
    m: usize,
    k: usize,
    steps: usize,
}

impl PackedA16 {
    pub fn new(m: usize, k: usize, a: MatRef) -> PackedA16 {
        let steps = k.div_ceil(STEP);
        let mut data = Packed::for_operand(m.div_ceil(BLOCK) * steps * STEP_LEN, m, k);
        pack_a(m, k, steps, &a, data.as_mut());
        PackedA16 { data, m, k, steps }
    }
}

/// B (k × n) in pair-interleaved tiles: element (p, j) is the low (p even) or high half of
/// u32 lane `b_lane(steps, p, j)`.
pub struct PackedB16 {
    data: Packed,
    k: usize,
    n: usize,
    steps: usize,
}

impl PackedB16 {
    pub fn new(k: usize, n: usize, b: MatRef) -> PackedB16 {
        let mut packed = PackedB16::for_producer(k, n);
        let steps = packed.steps;
        pack_b(k, n, steps, &b, packed.lanes_mut().1);
        packed
    }

    /// A k × n operand for a producer that writes every element in place (`Bf16Lanes`):
    /// zero in the padding past k and n, unspecified within. im2col writes the forward's col
    /// straight into it, with no f32 copy in between.
    pub fn for_producer(k: usize, n: usize) -> PackedB16 {
        let steps = k.div_ceil(STEP);
        PackedB16 { data: Packed::for_operand(n.div_ceil(BLOCK) * steps * STEP_LEN, k, n), k, n, steps }
    }

    /// Where a producer writes, and the lanes themselves.
    pub fn lanes_mut(&mut self) -> (Bf16Lanes, &mut [u32]) {
        (Bf16Lanes { k: self.k, n: self.n, steps: self.steps }, bytemuck::cast_slice_mut(self.data.as_mut()))
    }
}

/// `PackedB16`'s layout as u32 lanes: the lane at `lane(p, j)` holds rows p and p + 1 (p
/// even) of column j, bf16 bits, row p in the low half; columns j..j + 16 from a multiple of
/// 16 are 16 consecutive lanes.
#[derive(Clone, Copy, Debug)]
pub struct Bf16Lanes {
    pub k: usize,
    pub n: usize,
    steps: usize,
}

impl Bf16Lanes {
    #[inline]
    pub fn lane(&self, p: usize, j: usize) -> usize {
        b_lane(self.steps, p, j)
    }

    /// Lanes in the buffer.
    pub fn lane_count(&self) -> usize {
        self.n.div_ceil(BLOCK) * self.steps * STEP_LEN / 2
    }
}

/// Whether the packing loops run compiled for AVX-512 (every AMX CPU has it), where their
/// rounding vectorises 16 lanes wide.
fn wide_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::conv::avx512() && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Generates `$name(args)`: `$body` compiled for AVX-512 when `wide_simd`, else for the
/// baseline.
macro_rules! simd_variants {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if wide_simd() {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has AVX-512F and BW (`wide_simd`).
                unsafe { wide($($arg),*) };
                return;
            }
            $body($($arg),*)
        }
    };
}

simd_variants!(pack_a_region, pack_a_body, (rows: Range<usize>, ks: Range<usize>, steps: usize, a: &MatRef, data: &mut [u16]));
simd_variants!(pack_b_region, pack_b_body, (ks: Range<usize>, cols: Range<usize>, steps: usize, b: &MatRef, lanes: &mut [u32]));

/// A into `PackedA16`'s blocks. A transposed (unit row stride: the weight of backward-data)
/// goes 16×32 at a time through register transposes; the rest element by element.
fn pack_a(m: usize, k: usize, steps: usize, a: &MatRef, data: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if a.row_stride == 1 && a.col_stride != 1 && wide_simd() {
        let (mf, kf) = (m / TILE * TILE, k / STEP * STEP);
        // SAFETY: the CPU has AVX-512F (`wide_simd`); the helper reads whole 16-row runs of
        // rows < mf and columns < kf only.
        unsafe { wide::pack_a_transposed(mf, kf, steps, a, data) };
        pack_a_region(0..m, kf..k, steps, a, data);
        pack_a_region(mf..m, 0..kf, steps, a, data);
        return;
    }
    pack_a_region(0..m, 0..k, steps, a, data);
}

/// B into `PackedB16`'s tiles (as u32 lanes). B transposed (unit row stride: backward-
/// weight's colᵀ) goes a 32 × 16 tile at a time through register transposes; the rest
/// element by element.
fn pack_b(k: usize, n: usize, steps: usize, b: &MatRef, lanes: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if b.row_stride == 1 && b.col_stride != 1 && wide_simd() {
        let (kf, nf) = (k / STEP * STEP, n / TILE * TILE);
        // SAFETY: the CPU has AVX-512F (`wide_simd`); the helper reads whole 32-deep runs of
        // columns < nf and rows < kf only.
        unsafe { wide::pack_b_transposed(kf, nf, steps, b, lanes) };
        pack_b_region(kf..k, 0..n, steps, b, lanes);
        pack_b_region(0..kf, nf..n, steps, b, lanes);
        return;
    }
    pack_b_region(0..k, 0..n, steps, b, lanes);
}

/// Rows `rows`, depths `ks` of A into `PackedA16`'s blocks (`ks` starts on a step).
#[inline(always)]
fn pack_a_body(rows: Range<usize>, ks: Range<usize>, steps: usize, a: &MatRef, data: &mut [u16]) {
    for i in rows {
        for p0 in ks.clone().step_by(STEP) {
            let dst = &mut data[a_offset(steps, i, p0)..][..STEP];
            let run = STEP.min(ks.end - p0);
            if a.col_stride == 1 {
                let src = &a.data[i * a.row_stride + p0..][..run];
                for (d, &x) in dst[..run].iter_mut().zip(src) {
                    *d = bf16_bits(x);
                }
            } else {
                for (q, d) in dst[..run].iter_mut().enumerate() {
                    *d = bf16_bits(a.data[i * a.row_stride + (p0 + q) * a.col_stride]);
                }
            }
        }
    }
}

/// Depths `ks` (starting even), columns `cols` of B into `PackedB16`'s tiles, two rows at a
/// time as u32 lanes: lane (pair row q, column c) holds rows 2q (low half) and 2q + 1. Walks
/// B in memory order.
#[inline(always)]
fn pack_b_body(ks: Range<usize>, cols: Range<usize>, steps: usize, b: &MatRef, lanes: &mut [u32]) {
    let at = |p: usize, j: usize| {
        if p < ks.end { bf16_bits(b.data[p * b.row_stride + j * b.col_stride]) as u32 } else { 0 }
    };
    for p in ks.clone().step_by(2) {
        let mut j0 = cols.start;
        while j0 < cols.end {
            // Up to the end of the tile row: consecutive lanes.
            let run = (TILE - j0 % TILE).min(cols.end - j0);
            let dst = &mut lanes[b_lane(steps, p, j0)..][..run];
            if p + 1 < ks.end && b.col_stride == 1 {
                let row0 = &b.data[p * b.row_stride + j0..][..run];
                let row1 = &b.data[(p + 1) * b.row_stride + j0..][..run];
                for ((l, &x0), &x1) in dst.iter_mut().zip(row0).zip(row1) {
                    *l = bf16_bits(x0) as u32 | (bf16_bits(x1) as u32) << 16;
                }
            } else {
                for (c, l) in dst.iter_mut().enumerate() {
                    *l = at(p, j0 + c) | at(p + 1, j0 + c) << 16;
                }
            }
            j0 += run;
        }
    }
}

/// The packers' register-transpose paths.
#[cfg(target_arch = "x86_64")]
pub(crate) mod wide {
    use super::{BLOCK, MatRef, STEP, TILE, a_offset, b_lane};
    use crate::backend::cpu::gemm::x86::transpose16;
    use std::arch::x86_64::*;

    /// 16 f32 → their `bf16_bits` in the low half of each u32 lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round16(x: __m512) -> __m512i {
        let b = _mm512_castps_si512(x);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let rounded =
            _mm512_srli_epi32::<16>(_mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))));
        let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
        _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), quiet)
    }

    /// Two rows' 16 values as 16 lanes of bf16 pairs (`even` in the low halves).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn pair_lanes(even: __m512, odd: __m512) -> __m512i {
        _mm512_or_si512(round16(even), _mm512_slli_epi32::<16>(round16(odd)))
    }

    /// Full 16-row, 32-deep tiles of a transposed A (element (i, p) at i + p·col_stride):
    /// for each pair of depths a vector over 16 rows, then a 16×16 transpose gives each row
    /// its 16 pairs.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_a_transposed(mf: usize, kf: usize, steps: usize, a: &MatRef, data: &mut [u16]) {
        let cs = a.col_stride;
        assert!(mf == 0 || kf == 0 || (mf - 1) + (kf - 1) * cs < a.data.len());
        assert!(data.len() >= mf.div_ceil(BLOCK) * steps * BLOCK * STEP);
        let (src, dst) = (a.data.as_ptr(), data.as_mut_ptr());
        // SAFETY: reads rows i0..i0 + 16 ≤ mf of depths < kf, inside `a` (checked above);
        // writes one 64-byte packed row each, inside `data`.
        unsafe {
            for i0 in (0..mf).step_by(TILE) {
                for p0 in (0..kf).step_by(STEP) {
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (q, v) in r.iter_mut().enumerate() {
                        let even = _mm512_loadu_ps(src.add(i0 + (p0 + 2 * q) * cs));
                        let odd = _mm512_loadu_ps(src.add(i0 + (p0 + 2 * q + 1) * cs));
                        *v = _mm512_castsi512_ps(pair_lanes(even, odd));
                    }
                    transpose16(&mut r);
                    for (row, v) in r.iter().enumerate() {
                        let i = i0 + row;
                        let at = a_offset(steps, i, p0);
                        _mm512_storeu_ps(dst.add(at) as *mut f32, *v);
                    }
                }
            }
        }
    }

    /// Full 32-deep, 16-column tiles of a transposed B (element (p, j) at p + j·col_stride):
    /// each column's 32 depths rounded and narrowed to 16 pairs, then a 16×16 transpose gives
    /// each pair row its 16 columns.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_b_transposed(
        kf: usize,
        nf: usize,
        steps: usize,
        b: &MatRef,
        lanes: &mut [u32],
    ) {
        let cs = b.col_stride;
        assert!(kf == 0 || nf == 0 || (kf - 1) + (nf - 1) * cs < b.data.len());
        assert!(lanes.len() >= nf.div_ceil(BLOCK) * steps * BLOCK * STEP / 2);
        let (src, dst) = (b.data.as_ptr(), lanes.as_mut_ptr());
        // SAFETY: reads depths p0..p0 + 32 ≤ kf of columns < nf, inside `b` (checked above);
        // writes one 64-byte tile row each, inside `lanes`.
        unsafe {
            for j0 in (0..nf).step_by(TILE) {
                for p0 in (0..kf).step_by(STEP) {
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (c, v) in r.iter_mut().enumerate() {
                        let at = src.add(p0 + (j0 + c) * cs);
                        let lo = _mm512_cvtepi32_epi16(round16(_mm512_loadu_ps(at)));
                        let hi = _mm512_cvtepi32_epi16(round16(_mm512_loadu_ps(at.add(16))));
                        *v = _mm512_castsi512_ps(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi));
                    }
                    transpose16(&mut r);
                    for (q, v) in r.iter().enumerate() {
                        _mm512_storeu_ps(dst.add(b_lane(steps, p0 + 2 * q, j0)) as *mut f32, *v);
                    }
                }
            }
        }
    }
}

/// C (m × n, row stride ldc) = [C +] bf16(A)·bf16(B) on this thread, on the fastest
/// [`Bf16Path`] (the same products on each, rounded a little differently: see
/// [`gemm_bf16_portable`]).
pub fn gemm_bf16(a: &PackedA16, b: &PackedB16, accumulate: bool, c: &mut [f32], ldc: usize) {
    gemm_bf16_part(a, 0..a.m, 0..a.k, b, accumulate, c, ldc);
}

/// [`gemm_bf16`] for rows `rows` and depths `depth` of A, times B (`depth.len()` deep), into
/// C, which holds those rows only: a band of a product (rows) or a slice of its sum (depth),
/// made and used while it is in cache. Rows start on a 32-row block; depths start on a
/// 32-deep step and end on one or at A's depth. Each C element is the same sum as in the
/// whole product: the tiles' f32 accumulators go to C and back unchanged between slices.
pub fn gemm_bf16_part(
    a: &PackedA16,
    rows: Range<usize>,
    depth: Range<usize>,
    b: &PackedB16,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(
        rows.start.is_multiple_of(BLOCK) && rows.start <= rows.end && rows.end <= a.m,
        "rows {rows:?} of A"
    );
    assert!(
        depth.start.is_multiple_of(STEP)
            && depth.start <= depth.end
            && (depth.end.is_multiple_of(STEP) || depth.end == a.k)
            && depth.end <= a.k,
        "depths {depth:?} of A"
    );
    assert_eq!(depth.len(), b.k, "inner dimensions");
    let (m, n) = (rows.len(), b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C too small");
    match path() {
        // SAFETY: AMX is present and the process may use it (`path`); C's extent is checked
        // above and the packed operands hold whole blocks.
        #[cfg(target_arch = "x86_64")]
        Bf16Path::Amx => unsafe { tiles::gemm(a, rows, depth, b, accumulate, c, ldc) },
        // SAFETY: the CPU has AVX512-BF16 (`path`); as above.
        #[cfg(target_arch = "x86_64")]
        Bf16Path::Avx512Bf16 => unsafe { each_block(a, rows, depth, b, accumulate, c, ldc, dot::block) },
        // SAFETY: `widened::block` picks a variant the CPU runs; as above.
        _ => unsafe { each_block(a, rows, depth, b, accumulate, c, ldc, widened::block()) },
    }
}

/// The reference for [`gemm_bf16`], one C element at a time from the packed operands: the
/// same products, each added to the f32 sum in k order, as the widened path does (the tiles
/// sum each 32-deep step exactly first, `vdpbf16ps` each k-pair, so those round differently,
/// within f32 rounding of each other).
pub fn gemm_bf16_portable(a: &PackedA16, b: &PackedB16, accumulate: bool, c: &mut [f32], ldc: usize) {
    assert_eq!(a.k, b.k, "inner dimensions");
    assert!(a.m == 0 || b.n == 0 || c.len() >= (a.m - 1) * ldc + b.n, "C too small");
    portable(a, 0..a.m, 0..a.k, b, accumulate, c, ldc);
}

fn portable(
    a: &PackedA16,
    rows: Range<usize>,
    depth: Range<usize>,
    b: &PackedB16,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let a_at = |i: usize, p: usize| a.data.as_ref()[a_offset(a.steps, i, p)];
    // A lane is two bf16, row p's the first (little-endian low half).
    let b_at = |p: usize, j: usize| b.data.as_ref()[2 * b_lane(b.steps, p, j) + p % 2];
    for (ci, i) in rows.enumerate() {
        for j in 0..b.n {
            let mut acc = if accumulate { c[ci * ldc + j] } else { 0.0 };
            for p in 0..b.k {
                acc += bf16_value(a_at(i, depth.start + p)) * bf16_value(b_at(p, j));
            }
            c[ci * ldc + j] = acc;
        }
    }
}

/// The bf16 tile multiply rate of the threads of the current rayon pool, in GFLOP/s: each
/// runs a loop of tile multiplies on registers (about 50 ms), best of `rounds`. None without
/// AMX.
pub fn tile_peak_gflops(rounds: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if available() {
        const ITERS: u64 = 2_500_000;
        // Four 16×16×32 multiply-adds an iteration.
        let flops = 4.0 * (TILE * TILE * STEP * 2) as f64 * ITERS as f64;
        // SAFETY: AMX is present and the process may use it (`available`).
        return Some(best_rate_on_every_thread(rounds, flops, || unsafe { tiles::multiply_loop(ITERS) }));
    }
    let _ = rounds;
    None
}

/// What `gemm_bf16` reaches on the threads of the current rayon pool, in GFLOP/s: each
/// multiplies its own packed 256×1024 by 1024×256 (operands and C in its L2, the size of a
/// convolution's per-task product) 20 times a round, packing not timed; best of `rounds`.
/// None without AMX (the other paths' rates say nothing about the tiles).
pub fn tile_gemm_gflops(rounds: usize) -> Option<f64> {
    const M: usize = 256;
    const K: usize = 1024;
    const REPS: usize = 20;
    if !available() {
        return None;
    }
    // Each thread's operands and C, made on that thread (broadcast returns them in thread
    // order); the lock is never contended.
    let operands = rayon::broadcast(|_| {
        let x: Vec<f32> = (0..M * K).map(|i| ((i * 7919) % 1999) as f32 / 1999.0 - 0.5).collect();
        let a = PackedA16::new(M, K, MatRef::row_major(&x, K));
        (a, PackedB16::new(K, M, MatRef::row_major(&x, M)), std::sync::Mutex::new(vec![0.0f32; M * M]))
    });
    let flops = (2 * M * M * K * REPS) as f64;
    let rate = best_rate_on_every_thread(rounds, flops, || {
        let (a, b, c) = &operands[rayon::current_thread_index().unwrap_or(0) % operands.len()];
        let mut c = c.lock().expect("probe's C");
        for _ in 0..REPS {
            gemm_bf16(a, b, false, &mut c, M);
        }
    });
    Some(rate)
}

/// `flops` of work done by `work` on every thread of the current rayon pool at once, as
/// GFLOP/s over all of them, best of `rounds`.
fn best_rate_on_every_thread(rounds: usize, flops: f64, work: impl Fn() + Sync) -> f64 {
    let threads = rayon::current_num_threads() as f64;
    (0..rounds)
        .map(|_| {
            let t = std::time::Instant::now();
            rayon::broadcast(|_| work());
            flops * threads / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Where `gemm_bf16` multiplies, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Path {
    /// The AMX tile units (Sapphire Rapids and later).
    Amx,
    /// AVX512-BF16 dot products (`vdpbf16ps`: Cooper Lake, Zen 4, and Xeons whose AMX is not
    /// exposed, as in some VMs), 32 products an instruction where an f32 FMA does 16. Whether
    /// that beats f32 depends on the CPU: this project's Xeon VM without AMX runs them at 85
    /// GFLOP/s a core against 186 for the FMA loop (one instruction in 2.4 cycles, 0.46× the
    /// f32 rate), and a DCGAN-32 step in 374 ms against 268 in f32.
    Avx512Bf16,
    /// f32 FMAs on the operands widened back from bf16 (AVX-512, AVX2 or baseline), on any
    /// CPU: about half the f32 path's speed (the B rows widened per k-pair, C's block summed
    /// in L1: a DCGAN-32 step in 535 ms against 268 in f32 on this project's VM with
    /// AVX-512; the scalar loop it replaced took 30.8 s).
    Widened,
}

impl Bf16Path {
    /// As `dcgan bench --json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "amx",
            Bf16Path::Avx512Bf16 => "avx512-bf16",
            Bf16Path::Widened => "widened",
        }
    }

    /// As the training log and `dcgan bench` name it.
    pub fn describe(self) -> &'static str {
        match self {
            Bf16Path::Amx => "on the AMX tiles",
            Bf16Path::Avx512Bf16 => {
                "on AVX512-BF16 dot products (this CPU has no AMX): on CPUs that run them at half \
                 the f32 FMA rate, slower than --matmul f32 (dcgan bench compares)"
            }
            Bf16Path::Widened => {
                "on f32 FMAs over the widened bf16 (this CPU has neither AMX nor AVX512-BF16): slower \
                 than --matmul f32"
            }
        }
    }
}

/// The path this CPU takes. Asked once.
pub fn path() -> Bf16Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static PATH: OnceLock<Bf16Path> = OnceLock::new();
        *PATH.get_or_init(|| {
            if available() {
                Bf16Path::Amx
            } else if dot::cpu_has_avx512_bf16() {
                Bf16Path::Avx512Bf16
            } else {
                Bf16Path::Widened
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Bf16Path::Widened
}

/// Whether the AMX tile path runs: the CPU has AMX-BF16 and Linux granted this process the
/// tile registers. Asked once.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| tiles::cpu_has_amx_bf16() && tiles::request_tile_permission())
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A C block's accumulators in a 32×32 f32 scratch (row stride 128 bytes), for edge blocks.
#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// B column blocks per pass over A: their packed panels (up to 1 MiB, half the L2, for any k
/// below 16384) stay in L2 while every A block streams past them. 8 blocks, fewer from k =
/// 2048 on (on AMX at k = 4096, 4 blocks ran 15-20% faster than 8, and 1 or 2 no faster than
/// 4). Each C block sums all of k in its accumulators: splitting an operand already made into
/// 128- to 512-deep passes ran 0-25% slower on the DCGAN shapes. (Where the caller makes B a
/// slice at a time, `gemm_bf16_part`, slices pay: B is then in L2.)
fn b_blocks_per_pass(steps: usize) -> usize {
    (512 / steps.max(1)).clamp(1, 8)
}

/// A 32×32 C block kernel: A's block and B's block at their first step, `steps` steps of
/// each, C (row stride ldc) loaded first when accumulating, then stored.
type BlockKernel = unsafe fn(*const u16, *const u16, usize, *mut f32, usize, bool);

/// Runs `block` over every 32×32 block of C = [C +] A[rows, depth]·B, edge blocks through a
/// scratch: the loop every [`Bf16Path`] shares.
///
/// # Safety
/// `block` must be runnable on this CPU; C's extent is checked by the caller.
#[allow(clippy::too_many_arguments)]
unsafe fn each_block(
    a: &PackedA16,
    rows: Range<usize>,
    depth: Range<usize>,
    b: &PackedB16,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
    block: BlockKernel,
) {
    let (m, n, steps) = (rows.len(), b.n, b.steps);
    let (mb, nb) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
    // The first of `rows`' A blocks at the first of `depth`'s steps; A's blocks lie a.steps
    // steps apart.
    let a_block = a.steps * STEP_LEN;
    let a0 =
        unsafe { a.data.as_ref().as_ptr().add(rows.start / BLOCK * a_block + depth.start / STEP * STEP_LEN) };
    let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
    let cp = c.as_mut_ptr();
    let per_pass = b_blocks_per_pass(steps);
    for jb0 in (0..nb).step_by(per_pass) {
        for ib in 0..mb {
            let ap = unsafe { a0.add(ib * a_block) };
            for jb in jb0..(jb0 + per_pass).min(nb) {
                // SAFETY: the packed operands hold whole blocks and steps; C's rows and
                // columns are those of the block, within C's checked extent.
                unsafe {
                    let bp = b.data.as_ref().as_ptr().add(jb * steps * STEP_LEN);
                    let (rows, cols) = (BLOCK.min(m - ib * BLOCK), BLOCK.min(n - jb * BLOCK));
                    let cb = cp.add(ib * BLOCK * ldc + jb * BLOCK);
                    if rows == BLOCK && cols == BLOCK {
                        block(ap, bp, steps, cb, ldc, accumulate);
                    } else {
                        // What the scratch holds past the block's rows and columns only feeds
                        // C elements that are never copied out.
                        let sp = scratch.0.as_mut_ptr();
                        if accumulate {
                            for r in 0..rows {
                                std::ptr::copy_nonoverlapping(cb.add(r * ldc), sp.add(r * BLOCK), cols);
                            }
                        }
                        block(ap, bp, steps, sp, BLOCK, accumulate);
                        for r in 0..rows {
                            std::ptr::copy_nonoverlapping(sp.add(r * BLOCK), cb.add(r * ldc), cols);
                        }
                    }
                }
            }
        }
    }
}

/// The block kernel without AMX or AVX512-BF16: bf16 widened to f32 (a shift), the same
/// products as [`gemm_bf16_portable`] added to each sum in the same k order, so the same
/// bits (a product of two bf16 is exact in f32, fused or not; only a zero sum's sign can
/// differ, the padding's products being +0), with C's block in L1 and each k-pair's B row
/// widened once for 32 rows.
mod widened {
    use super::{BLOCK, BlockKernel, STEP, STEP_LEN, TILE};

    #[inline(always)]
    unsafe fn body(a: *const u16, b: *const u16, steps: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        let widen = |bits: u32| f32::from_bits(bits << 16);
        let mut acc = [[0.0f32; BLOCK]; BLOCK];
        // SAFETY (this function): as `BlockKernel`'s contract.
        unsafe {
            if accumulate {
                for (r, row) in acc.iter_mut().enumerate() {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), row.as_mut_ptr(), BLOCK);
                }
            }
            for s in 0..steps {
                let (ap, bp) = (a.add(s * STEP_LEN), b.add(s * STEP_LEN) as *const u32);
                for q in 0..TILE {
                    // Rows 2q and 2q + 1 of B's 32 columns: tile t's row q holds columns
                    // 16t..16t + 16.
                    let (mut even, mut odd) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
                    for j in 0..BLOCK {
                        let lane = bp.add(j / TILE * TILE * TILE + q * TILE + j % TILE).read();
                        (even[j], odd[j]) = (widen(lane), f32::from_bits(lane & 0xffff_0000));
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let x0 = widen(u32::from(ap.add(r * STEP + 2 * q).read()));
                        let x1 = widen(u32::from(ap.add(r * STEP + 2 * q + 1).read()));
                        for j in 0..BLOCK {
                            row[j] += x0 * even[j];
                            row[j] += x1 * odd[j];
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(r * ldc), BLOCK);
            }
        }
    }

    unsafe fn baseline(
        a: *const u16,
        b: *const u16,
        steps: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        unsafe { body(a, b, steps, c, ldc, accumulate) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(a: *const u16, b: *const u16, steps: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        unsafe { body(a, b, steps, c, ldc, accumulate) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(a: *const u16, b: *const u16, steps: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        unsafe { body(a, b, steps, c, ldc, accumulate) }
    }

    /// Every variant this CPU runs, for the tests.
    #[cfg(test)]
    pub(super) fn variants() -> Vec<(&'static str, BlockKernel)> {
        let mut all: Vec<(&'static str, BlockKernel)> = vec![("baseline", baseline)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(("avx2", avx2));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(("avx512", avx512));
            }
        }
        all
    }

    /// The widest variant this CPU runs.
    pub(super) fn block() -> BlockKernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return avx2;
            }
        }
        baseline
    }
}

/// The AVX512-BF16 block kernel: the AMX path's packed operands read as they lie. A packed
/// B step row (64 bytes) is 16 columns' k-pairs, exactly `vdpbf16ps`'s second operand; A's
/// pair (i, 2q..2q + 2) is broadcast as its first.
#[cfg(target_arch = "x86_64")]
mod dot {
    use super::{BLOCK, STEP, STEP_LEN, TILE};
    use std::arch::x86_64::*;

    pub(super) fn cpu_has_avx512_bf16() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }

    /// C rows a pass over the block's depth keeps in registers: 8 rows × 2 column tiles = 16
    /// zmm accumulators, beside B's two rows and A's broadcast pair.
    const ROWS: usize = 8;

    /// One 32×32 C block (see `BlockKernel`): per 8-row band, for each step and k-pair q, two
    /// B rows loaded and each row's A pair broadcast into 16 `vdpbf16ps`. Every C element
    /// sums its k-pairs in k order, whatever the band or the caller's slicing.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn block(
        a: *const u16,
        b: *const u16,
        steps: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let bh = |v: __m512i| -> __m512bh {
            // SAFETY: both are 64 bytes of plain bits.
            unsafe { std::mem::transmute(v) }
        };
        for r0 in (0..BLOCK).step_by(ROWS) {
            let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
            // SAFETY (this block): the packed operands hold `steps` whole steps of whole
            // blocks; C holds 32 rows of 32 floats at row stride ldc (the caller's contract).
            unsafe {
                if accumulate {
                    for (r, row) in acc.iter_mut().enumerate() {
                        for (t, v) in row.iter_mut().enumerate() {
                            *v = _mm512_loadu_ps(c.add((r0 + r) * ldc + t * TILE));
                        }
                    }
                }
                for s in 0..steps {
                    let (ap, bp) = (a.add(s * STEP_LEN + r0 * STEP), b.add(s * STEP_LEN));
                    for q in 0..TILE {
                        let b0 = bh(_mm512_loadu_si512(bp.add(q * 2 * TILE) as *const __m512i));
                        let b1 =
                            bh(_mm512_loadu_si512(bp.add(STEP_LEN / 2 + q * 2 * TILE) as *const __m512i));
                        for (r, row) in acc.iter_mut().enumerate() {
                            let pair = (ap.add(r * STEP + 2 * q) as *const i32).read_unaligned();
                            let av = bh(_mm512_set1_epi32(pair));
                            row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                            row[1] = _mm512_dpbf16_ps(row[1], av, b1);
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (t, v) in row.iter().enumerate() {
                        _mm512_storeu_ps(c.add((r0 + r) * ldc + t * TILE), *v);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{PackedA16, PackedB16, STEP_LEN, TILE};
    use std::arch::asm;
    use std::ops::Range;

    pub(super) fn cpu_has_amx_bf16() -> bool {
        // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        if max_leaf < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0
    }

    /// Linux: ask for the AMX tile data state (`ARCH_REQ_XCOMP_PERM`, `XFEATURE_XTILEDATA`).
    /// Other systems: no.
    pub(super) fn request_tile_permission() -> bool {
        #[cfg(target_os = "linux")]
        {
            const SYS_ARCH_PRCTL: i64 = 158;
            const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
            const XFEATURE_XTILEDATA: i64 = 18;
            let ret: i64;
            // SAFETY: a plain system call; it only changes this process's permissions.
            unsafe {
                asm!(
                    "syscall",
                    inlateout("rax") SYS_ARCH_PRCTL => ret,
                    in("rdi") ARCH_REQ_XCOMP_PERM,
                    in("rsi") XFEATURE_XTILEDATA,
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack),
                );
            }
            ret == 0
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Palette 1, all eight tiles 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: TileConfig = {
        let mut colsb = [0u16; 16];
        let mut rows = [0u8; 16];
        let mut t = 0;
        while t < 8 {
            colsb[t] = 64;
            rows[t] = TILE as u8;
            t += 1;
        }
        TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb, rows }
    };

    /// [`super::each_block`] with the tiles configured around it.
    pub(super) unsafe fn gemm(
        a: &PackedA16,
        rows: Range<usize>,
        depth: Range<usize>,
        b: &PackedB16,
        accumulate: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
            super::each_block(a, rows, depth, b, accumulate, c, ldc, block);
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// `iters` rounds of four tile multiplies on zero tiles, nothing loaded or stored: the
    /// tile units' own rate, for `dcgan bench`'s bf16 peak.
    pub(super) unsafe fn multiply_loop(iters: u64) {
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "tilezero tmm4",
                "tilezero tmm5",
                "tilezero tmm6",
                "tilezero tmm7",
                options(nostack, nomem),
            );
            for _ in 0..iters {
                asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem),
                );
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// One 32×32 C block at `c` (row stride ldc floats): tiles loaded from C (or zeroed),
    /// `steps` tile multiplies each, stored back.
    #[inline(always)]
    unsafe fn block(a: *const u16, b: *const u16, steps: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        let cs = ldc * 4;
        let (c0, c1, c2, c3) = unsafe { (c, c.add(TILE), c.add(TILE * ldc), c.add(TILE * ldc + TILE)) };
        unsafe {
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c0} + {cs}]",
                    "tileloadd tmm1, [{c1} + {cs}]",
                    "tileloadd tmm2, [{c2} + {cs}]",
                    "tileloadd tmm3, [{c3} + {cs}]",
                    c0 = in(reg) c0, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3, cs = in(reg) cs,
                    options(nostack, readonly),
                );
            } else {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
            }
            for s in 0..steps {
                let (ap, bp) = (a.add(s * STEP_LEN), b.add(s * STEP_LEN));
                asm!(
                    "tileloadd tmm4, [{a0} + {rs}]",
                    "tileloadd tmm6, [{b0} + {rs}]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {rs}]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {rs}]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) ap, a1 = in(reg) ap.add(STEP_LEN / 2),
                    b0 = in(reg) bp, b1 = in(reg) bp.add(STEP_LEN / 2),
                    rs = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c0} + {cs}], tmm0",
                "tilestored [{c1} + {cs}], tmm1",
                "tilestored [{c2} + {cs}], tmm2",
                "tilestored [{c3} + {cs}], tmm3",
                c0 = in(reg) c0, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3, cs = in(reg) cs,
                options(nostack),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widened block kernel, every variant the CPU runs, gives the portable loop's bits:
    /// the same exact products added in the same order, on edge blocks, depth slices that
    /// carry their sums through C, and row bands.
    #[test]
    fn widened_blocks_give_the_portable_loops_bits() {
        let mut rng = crate::Rng::new(5);
        for (m, n, k) in [(1, 1, 1), (33, 47, 70), (64, 96, 257), (70, 45, 150)] {
            let mut draw = |len: usize| (0..len).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
            let (x, y, c0) = (draw(m * k), draw(k * n), draw(m * n));
            let a = PackedA16::new(m, k, MatRef::row_major(&x, k));
            let b = PackedB16::new(k, n, MatRef::row_major(&y, n));
            for accumulate in [false, true] {
                let mut want = c0.clone();
                portable(&a, 0..m, 0..k, &b, accumulate, &mut want, n);
                for (name, kernel) in widened::variants() {
                    let mut got = c0.clone();
                    // SAFETY: `variants` lists only kernels this CPU runs; C is m × n.
                    unsafe { each_block(&a, 0..m, 0..k, &b, accumulate, &mut got, n, kernel) };
                    let differ = (0..m * n).filter(|&i| got[i].to_bits() != want[i].to_bits()).count();
                    assert_eq!(differ, 0, "{name}, {m}×{n}×{k}, accumulate {accumulate}: {differ} differ");
                }
            }
        }
    }

    /// Every packed operand starts on a cache line, whatever the pool hands out: a tile row
    /// straddling two lines cost a third to a half of the tile gemm's rate.
    #[test]
    fn packed_operands_start_on_a_cache_line() {
        let x = vec![0.5f32; 97 * 130];
        // Buffers of several sizes, some kept alive so the pool hands out different ones.
        let mut kept = Vec::new();
        for (m, k) in [(1, 2), (33, 64), (97, 130), (64, 32), (5, 1000)] {
            let a = PackedA16::new(m, k, MatRef::row_major(&x[..m * k], k));
            let b = PackedB16::new(k, m, MatRef::row_major(&x[..m * k], m));
            assert_eq!(a.data.as_ref().as_ptr() as usize % 64, 0, "A {m}×{k}");
            assert_eq!(b.data.as_ref().as_ptr() as usize % 64, 0, "B {k}×{m}");
            kept.push((a, b));
        }
    }
}
