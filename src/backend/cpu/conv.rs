//! Convolution in the three directions — forward, backward to the data, backward to the
//! weight — as im2col + gemm. conv_transpose2d uses the same three with roles swapped (see
//! `ConvGeom`), so this file serves both ops. The forward of a k4 s2 p1 layer with 16 or more
//! input channels, and the backward-weight of the mid-sized ones, go to `winograd` instead
//! (on CPUs with AVX-512).
//!
//! Images are processed in groups whose size depends only on the shapes (never on the thread
//! count), so every result — the weight-gradient sums included — has the same bits for any
//! number of threads.
//!
//! * Forward and backward-data: rayon over groups of images; each task runs a single-threaded
//!   gemm over its own matrix (forward: the im2col of its images; backward-data: the col it
//!   produces) with one column per output pixel of every image in the group, so the 4×4 late
//!   layers still give the gemm a wide N. The operands stay in that core's caches; the only
//!   thing tasks share is the weight, packed once per call (`PackedA`). Where the task's
//!   matrix outgrows L2 (the 8×8 and 4×4 layers), it is made and used a band at a time: the
//!   forward's im2col one gemm KC block of rows at a time, summed into y with beta 1;
//!   backward-data's col a band of channels at a time, each band turned into dx at once.
//! * Backward-data is col = wᵀ·dy (no im2col: dy is the gemm's B) then col2im. For
//!   the DCGAN geometry (k4, stride 2, pad 1, x exactly twice y — the forward of every
//!   stride-2 ConvTranspose2d), output pixel (2a+py, 2b+px) only meets the kernel taps of
//!   parity (py+1, px+1), so col2im computes each dx element as one sum of four col values
//!   read from contiguous rows: no scattered additions.
//! * im2col reads each input plane through a table of tap indices (AVX-512 gathers from a
//!   zero-padded copy); for k4 s2 p1 with x twice y and y planes of whole 16-pixel chunks it
//!   splits the plane into its four row/column parity planes instead, and each col row is
//!   one of them shifted, read with masked loads (`Taps::plane_k4s2_avx512`). For
//!   backward-weight's colᵀ a pixel's 16 taps are its 4×4 input window instead, four 128-bit
//!   loads (`Taps::plane_k4s2_t_avx512`). Both write the gemm's packed B panels directly
//!   (`ColOut`), so no packing copy follows.
//! * A convolution whose kernel covers its whole unpadded input with a 1×1 output (the
//!   generator's first layer, the discriminator's last) is one plain gemm in each direction.
//! * Backward-weight: tasks each building their own im2col rows and running serial gemms
//!   (`backward_weight_tasks`). With 32 or more input channels a task owns the dw columns of
//!   a block of channels over the whole batch, one block per thread (the split changes no
//!   bits); with fewer (the RGB layer) each of four tasks sums a quarter of the batch and the
//!   four partial dw are added in order.
//! * With bf16 products (`MatmulPrecision::Bf16`, `--matmul bf16`) every convolution but the
//!   dense ones takes im2col + the AMX tile gemm (`amx`), in all three directions, never
//!   Winograd (its products are of transformed operands, not of the inputs rounded to
//!   bf16); the k4 s2 im2col then rounds col (and backward-weight's colᵀ) straight into the
//!   tile gemm's B (`ColOut::Bf16`, `Bf16T`).
//!
//! Workspaces come from a small pool and are reused across calls and steps.

use super::amx::{self, Bf16Lanes, PackedA16, PackedB16, gemm_bf16, gemm_bf16_part};
use super::gemm::{
    MatRef, PackedA, PackedBLayout, sgemm, sgemm_serial, sgemm_serial_packed, sgemm_serial_prepacked,
    sgemm_serial_prepacked_b,
};
use crate::backend::{ConvGeom, Unary};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

/// Columns (output pixels) one forward / backward-data task aims for: wide enough for the
/// gemm's 32-column tiles and its packing costs, small enough to give both cores work.
const TARGET_COLS: usize = 256;
/// Batch parts of `backward_weight_tasks` below 32 input channels (a fixed count, so the
/// partial sums never depend on the thread count), and the im2col matrix a task aims for
/// with a quarter of the channels, in floats (1 MiB: L2-resident).
const BW_TASKS: usize = 4;
const BW_TASK_COL: usize = 1 << 18;

// ------------------------------------------------------------------------------------------
// Workspaces
// ------------------------------------------------------------------------------------------

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A scratch buffer of `len` floats from the pool, starting on a 64-byte boundary (a gemm
/// operand's rows then never straddle cache lines); it goes back on drop. Contents are
/// unspecified.
pub(super) struct Scratch {
    v: Vec<f32>,
    start: usize,
    len: usize,
}

impl Scratch {
    pub(super) fn take(len: usize) -> Scratch {
        let mut v = {
            let mut pool = POOL.lock().expect("conv workspace pool");
            // The smallest buffer that fits, else the largest (grown below).
            let pick = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len + 15)
                .min_by_key(|(_, b)| b.len())
                .or_else(|| pool.iter().enumerate().max_by_key(|(_, b)| b.len()))
                .map(|(i, _)| i);
            pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
        };
        if v.len() < len + 15 {
            v.resize(len + 15, 0.0);
        }
        let start = v.as_ptr().align_offset(64).min(15);
        Scratch { v, start, len }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        POOL.lock().expect("conv workspace pool").push(v);
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.start..self.start + self.len]
    }
}

/// Frees the pooled workspaces (they are otherwise kept for the next call).
pub fn release_workspaces() {
    POOL.lock().expect("conv workspace pool").clear();
}

// ------------------------------------------------------------------------------------------
// Geometry helpers
// ------------------------------------------------------------------------------------------

fn rows(g: &ConvGeom) -> usize {
    g.c_in * g.kh * g.kw
}

fn hw_out(g: &ConvGeom) -> usize {
    g.h_out * g.w_out
}

/// Images per forward / backward-data task.
fn task_images(g: &ConvGeom) -> usize {
    TARGET_COLS.div_ceil(hw_out(g).max(1)).clamp(1, g.n.max(1))
}

fn groups(n: usize, gs: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(gs.max(1)).map(move |n0| (n0, gs.min(n - n0)))
}

/// A weight packed once per call for every task's gemm, in the precision of its products.
enum PackedWeight<'a> {
    F32(PackedA<'a>),
    Bf16(PackedA16),
}

impl<'a> PackedWeight<'a> {
    fn new(m: usize, k: usize, w: MatRef<'a>, bf16: bool) -> PackedWeight<'a> {
        if bf16 {
            PackedWeight::Bf16(PackedA16::new(m, k, w))
        } else {
            PackedWeight::F32(PackedA::new(m, k, w))
        }
    }
}

/// Whether this convolution's products run in bf16 (`MatmulPrecision::Bf16` on this thread).
/// The dense layers (one small gemm each) stay f32.
fn bf16_products(g: &ConvGeom) -> bool {
    super::matmul_precision() == super::MatmulPrecision::Bf16 && !is_dense(g)
}

/// The kernel covers the whole unpadded input and the output is 1×1: a plain matrix product
/// per direction.
fn is_dense(g: &ConvGeom) -> bool {
    g.h_out == 1 && g.w_out == 1 && g.pad == 0 && g.kh == g.h_in && g.kw == g.w_in
}

/// k4 s2 p1 with x exactly twice y (the forward of every stride-2 ConvTranspose2d): col2im
/// splits into four output phases, each a sum of four shifted col rows (`col2im_k4s2`).
pub(super) fn is_k4s2(g: &ConvGeom) -> bool {
    g.kh == 4 && g.kw == 4 && g.stride == 2 && g.pad == 1 && g.h_in == 2 * g.h_out && g.w_in == 2 * g.w_out
}

// ------------------------------------------------------------------------------------------
// im2col through a tap table
// ------------------------------------------------------------------------------------------

/// Where each (tap, output pixel) of one plane reads from, as an index into the plane padded
/// by `pad` on every side (so out-of-image taps read the zero border and the copy loop has no
/// branches). One table serves every plane of a call.
struct Taps {
    idx: Vec<u32>,
    hw: usize,
    h: usize,
    w: usize,
    pad: usize,
    /// Set where `plane_k4s2_avx512` (col) and `plane_k4s2_t_avx512` (colᵀ) serve instead of
    /// the tap table (see there).
    k4s2: Option<Vec<ShiftMasks>>,
}

impl Taps {
    /// The im2col taps of a convolution: row (ki, kj), column (oy, ox).
    fn conv(g: &ConvGeom) -> Taps {
        let wp = g.w_in + 2 * g.pad;
        let mut idx = Vec::with_capacity(g.kh * g.kw * hw_out(g));
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                for oy in 0..g.h_out {
                    for ox in 0..g.w_out {
                        idx.push(((oy * g.stride + ki) * wp + ox * g.stride + kj) as u32);
                    }
                }
            }
        }
        let k4s2 = k4s2_shift_masks(g, usize::MAX);
        Taps { idx, hw: hw_out(g), h: g.h_in, w: g.w_in, pad: g.pad, k4s2 }
    }

    /// The kh·kw col rows of one h×w input plane: col rows r0.., columns c0..c0 + hw.
    /// `scratch` holds `padded_len` floats, its border zero on first use. Only the k4 s2 path
    /// writes packed panels (`ColOut::Packed`; see `ColOut::packed_for`).
    fn plane(&self, src: &[f32], scratch: &mut [f32], col: &mut [f32], out: ColOut, r0: usize, c0: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(masks) = &self.k4s2 {
            // SAFETY: `k4s2` is only set with AVX-512F present and a fitting geometry.
            unsafe {
                match out {
                    ColOut::PackedT(_) | ColOut::Bf16T(_) => self.plane_k4s2_t_avx512(src, out, col, r0, c0),
                    _ => self.plane_k4s2_avx512(src, masks, scratch, col, out, r0, c0),
                }
            }
            return;
        }
        let ColOut::RowMajor { ld } = out else { unreachable!("packed im2col needs the k4 s2 path") };
        self.fill_padded(src, scratch);
        self.gather(scratch, &mut col[r0 * ld + c0..], ld);
    }

    /// k4 s2 p1 with x twice y, 16 output pixels at a time. Split the input plane into its
    /// four parity planes (even/odd rows × even/odd columns, each the size of y); then, with
    /// (parity, shift) = `IM2COL_TAPS[k]` per axis, tap (ki, kj) is the parity plane of its
    /// two parities shifted by its two shifts: one masked load per 16 pixels, the border's
    /// zeros from the masks (the adjoint of `col2im_k4s2_avx512`). No padded copy, no gathers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn plane_k4s2_avx512(
        &self,
        src: &[f32],
        masks: &[ShiftMasks],
        phases: &mut [f32],
        col: &mut [f32],
        out: ColOut,
        r0: usize,
        c0: usize,
    ) {
        use std::arch::x86_64::*;
        let (hw, w) = (self.hw, self.w / 2);
        assert!(src.len() >= 4 * hw && phases.len() >= 4 * hw && c0.is_multiple_of(16));
        assert!(r0.is_multiple_of(16) && out.holds(r0 + 16, c0 + hw, col.len()));
        let x = src.as_ptr();
        let ph = phases.as_mut_ptr();
        // 16 input floats holding the parity-py pixels at flat y positions f..f+8, both
        // column parities interleaved: one run of a row when w ≥ 8, two half rows when w = 4.
        let pairs = |py: usize, f: usize| unsafe {
            if w % 8 == 0 {
                _mm512_loadu_ps(x.add((2 * (f / w) + py) * 2 * w + 2 * (f % w)))
            } else {
                let r = x.add((2 * (f / w) + py) * 8);
                _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(0x00FF, r), 0xFF00, r.add(8))
            }
        };
        let pick = [
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        ];
        // SAFETY (all pointer use below): `pairs` reads rows < h_in of the plane; parity plane
        // (py, px) is phases[(2py + px)·hw ..][..hw]; each store writes one 16-float run,
        // inside `col` (checked above; a run never straddles a 32-wide panel, as r0, c0 and
        // the run starts are multiples of 16); masked loads touch only lanes inside their
        // parity plane.
        unsafe {
            for j in 0..hw / 16 {
                for py in 0..2 {
                    let (lo, hi) = (pairs(py, 16 * j), pairs(py, 16 * j + 8));
                    for (px, &pick) in pick.iter().enumerate() {
                        let v = _mm512_permutex2var_ps(lo, pick, hi);
                        _mm512_storeu_ps(ph.add((2 * py + px) * hw + 16 * j), v);
                    }
                }
            }
            // Tap t = 4ki + kj at output pixels 16j..16j + 16.
            let tap = |t: usize, j: usize| {
                let ((py, oy), (px, ox)) = (IM2COL_TAPS[t / 4], IM2COL_TAPS[t % 4]);
                let plane = ph.add((2 * py + px) * hw).wrapping_offset(oy * w as isize + ox);
                let mask = masks[j][(oy + 1) as usize][(ox + 1) as usize];
                _mm512_maskz_loadu_ps(mask, plane.wrapping_add(16 * j))
            };
            if let ColOut::Bf16(lanes) = out {
                // Rows r0 + t and r0 + t + 1 (r0 even) share their lanes.
                let base = col.as_mut_ptr() as *mut __m512i;
                for t in (0..16).step_by(2) {
                    for j in 0..hw / 16 {
                        let v = super::amx::wide::pair_lanes(tap(t, j), tap(t + 1, j));
                        _mm512_storeu_si512(base.byte_add(4 * lanes.lane(r0 + t, c0 + 16 * j)), v);
                    }
                }
                return;
            }
            let base = col.as_mut_ptr();
            for t in 0..16 {
                let (row, stride) = out.row(r0 + t);
                for j in 0..hw / 16 {
                    let c = c0 + 16 * j;
                    _mm512_storeu_ps(base.add(row + (c / 32) * stride + c % 32), tap(t, j));
                }
            }
        }
    }

    /// colᵀ for k4 s2 p1 with x twice y (backward-weight's B): the 16 taps of output pixel
    /// (oy, ox), tap 4ki + kj, are the 4×4 input window at (2oy − 1, 2ox − 1), four runs of
    /// four floats, so a pixel's vector is four 128-bit loads put in its four lanes of four:
    /// 48 inserts per 16 pixels, which two ports can take, where the parity split and a 16×16
    /// register transpose took 68 port-5 shuffles. Rows above or below the plane stay zero,
    /// and the first and last pixel of a row mask the column outside it. Into `PackedT`
    /// panels, or (`Bf16T`) rounded two pixels at a time into the bf16 tile gemm's B.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_k4s2_t_avx512(&self, src: &[f32], out: ColOut, col: &mut [f32], r0: usize, c0: usize) {
        use std::arch::x86_64::*;
        let (h, w, (ho, wo)) = (self.h, self.w, (self.h / 2, self.w / 2));
        let aligned = match out {
            ColOut::PackedT(layout) => layout.nr.is_multiple_of(16),
            // Pixel pairs start on even positions and never span two rows.
            ColOut::Bf16T(_) => c0.is_multiple_of(2) && wo.is_multiple_of(2),
            _ => false,
        };
        assert!(src.len() >= h * w && wo >= 2 && r0.is_multiple_of(16) && aligned);
        assert!(out.holds(r0 + 16, c0 + self.hw, col.len()));
        let (x, base) = (src.as_ptr(), col.as_mut_ptr());
        // SAFETY: a run of columns 2ox − 1.. of row iy < h, its lanes outside 0..w masked (the
        // zero-masked lanes are not read); each store is one 16-float run of position c0 + q's
        // panel row, or 16 lanes of its pair's tile row, inside `col` (checked above; r0 is a
        // multiple of 16, so the run never straddles a 32-wide panel or a tile).
        let pixel = |oy: usize, ox: usize| unsafe {
            let mask: __mmask16 = if ox == 0 {
                0xE
            } else if ox == wo - 1 {
                0x7
            } else {
                0xF
            };
            let left = x.wrapping_add(2 * ox).wrapping_sub(1);
            let run = |ki: usize| {
                let at = left.wrapping_add((2 * oy + ki - 1) * w);
                if mask == 0xF {
                    _mm_loadu_ps(at)
                } else {
                    _mm512_castps512_ps128(_mm512_maskz_loadu_ps(mask, at))
                }
            };
            let mut v = _mm512_setzero_ps();
            if oy > 0 {
                v = _mm512_insertf32x4::<0>(v, run(0));
            }
            v = _mm512_insertf32x4::<1>(v, run(1));
            v = _mm512_insertf32x4::<2>(v, run(2));
            if oy + 1 < ho {
                v = _mm512_insertf32x4::<3>(v, run(3));
            }
            v
        };
        for oy in 0..ho {
            // SAFETY: as for `pixel` above.
            match out {
                ColOut::Bf16T(lanes) => {
                    for ox in (0..wo).step_by(2) {
                        let v = super::amx::wide::pair_lanes(pixel(oy, ox), pixel(oy, ox + 1));
                        let at = lanes.lane(c0 + oy * wo + ox, r0);
                        unsafe { _mm512_storeu_si512(base.add(at) as *mut __m512i, v) };
                    }
                }
                ColOut::PackedT(layout) => {
                    for ox in 0..wo {
                        let at = layout.offset(c0 + oy * wo + ox, r0);
                        unsafe { _mm512_storeu_ps(base.add(at), pixel(oy, ox)) };
                    }
                }
                _ => unreachable!("checked above"),
            }
        }
    }

    fn padded_len(&self) -> usize {
        (self.h + 2 * self.pad) * (self.w + 2 * self.pad)
    }

    /// Copy `src` (h×w) into the middle of `padded`, whose border is already zero.
    fn fill_padded(&self, src: &[f32], padded: &mut [f32]) {
        let wp = self.w + 2 * self.pad;
        for (y, row) in src.chunks_exact(self.w).enumerate() {
            padded[(y + self.pad) * wp + self.pad..][..self.w].copy_from_slice(row);
        }
    }

    /// The `taps` rows of one plane: row t gets hw values at dst[t·ld ..].
    fn gather(&self, padded: &[f32], dst: &mut [f32], ld: usize) {
        assert!(padded.len() >= self.padded_len());
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: every index is below padded_len (checked above), the CPU has AVX-512F.
            unsafe { self.gather_avx512(padded, dst, ld) };
            return;
        }
        for (t, idx) in self.idx.chunks_exact(self.hw).enumerate() {
            for (d, &i) in dst[t * ld..][..self.hw].iter_mut().zip(idx) {
                *d = padded[i as usize];
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn gather_avx512(&self, padded: &[f32], dst: &mut [f32], ld: usize) {
        use std::arch::x86_64::*;
        let base = padded.as_ptr();
        for (t, idx) in self.idx.chunks_exact(self.hw).enumerate() {
            let out = &mut dst[t * ld..][..self.hw];
            let mut o = 0;
            // SAFETY: indices < padded.len() (see `gather`); stores stay inside `out`.
            unsafe {
                while o + 16 <= self.hw {
                    let vi = _mm512_loadu_si512(idx.as_ptr().add(o) as *const _);
                    let v = _mm512_i32gather_ps::<4>(vi, base);
                    _mm512_storeu_ps(out.as_mut_ptr().add(o), v);
                    o += 16;
                }
            }
            for (d, &i) in out[o..].iter_mut().zip(&idx[o..]) {
                *d = padded[i as usize];
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// Where im2col puts col element (r, j) (tap row r, output pixel column j); `gather_y`, dy's
/// element (channel r, pixel j of the group).
#[derive(Clone, Copy)]
enum ColOut {
    /// A row-major [rows, ld] matrix.
    RowMajor { ld: usize },
    /// The gemm's packed B panels (32 columns wide), for `sgemm_serial_prepacked`: the
    /// forward's w · col, backward-data's wᵀ · dy.
    Packed(PackedBLayout),
    /// colᵀ as packed B panels, 32 or 16 wide (`packed_t_for`), for backward-weight's dy · colᵀ.
    PackedT(PackedBLayout),
    /// The bf16 tile gemm's B (`PackedB16`), pairs of rows rounded into u32 lanes; the buffer
    /// is those lanes, passed as f32-sized elements. Only the k4 s2 im2col writes it.
    Bf16(Bf16Lanes),
    /// colᵀ as the bf16 tile gemm's B, for backward-weight's dy · colᵀ (as `Bf16`).
    Bf16T(Bf16Lanes),
}

impl ColOut {
    /// The packed panels for col (k × n: rows × ld), where the gemm takes them and the k4 s2
    /// im2col (the one that writes them) serves `taps`.
    fn packed_for(taps: &Taps, k: usize, n: usize) -> Option<PackedBLayout> {
        PackedBLayout::new(k, n).filter(|l| l.nr == 32 && taps.k4s2.is_some())
    }

    /// The packed panels for colᵀ (k × n, n = the block's taps), where the gemm takes them and
    /// the k4 s2 im2col serves `taps`: the layout that pads n least (the RGB layer's 48 taps
    /// as three 16-wide panels, not two 32-wide ones, a quarter of them padding).
    fn packed_t_for(taps: &Taps, k: usize, n: usize) -> Option<PackedBLayout> {
        PackedBLayout::tightest(k, n).filter(|_| taps.k4s2.is_some())
    }

    /// For col row r of `RowMajor` or `Packed`: (where element (r, 0) goes, distance between
    /// 32-column runs); element (r, j) is at .0 + (j / 32)·.1 + j % 32.
    #[inline]
    fn row(&self, r: usize) -> (usize, usize) {
        match *self {
            ColOut::RowMajor { ld } => (r * ld, 32),
            ColOut::Packed(layout) => layout.row(r),
            ColOut::PackedT(_) => unreachable!("colᵀ is written position by position"),
            ColOut::Bf16(_) | ColOut::Bf16T(_) => unreachable!("bf16 pairs are written two rows at a time"),
        }
    }

    /// Whether a buffer of `len` floats holds col rows ..rows × columns ..cols.
    fn holds(&self, rows: usize, cols: usize, len: usize) -> bool {
        match *self {
            ColOut::RowMajor { ld } => cols <= ld && rows * ld <= len,
            ColOut::Packed(l) => rows <= l.k && cols <= l.n && l.len() <= len,
            ColOut::PackedT(l) => cols <= l.k && rows <= l.n && l.len() <= len,
            ColOut::Bf16(l) => rows <= l.k && cols <= l.n && l.lane_count() <= len,
            ColOut::Bf16T(l) => cols <= l.k && rows <= l.n && l.lane_count() <= len,
        }
    }
}

/// Channels `chans` of images n0..n0+gn of x into col [chans·kh·kw, gn·hw_out] (on this
/// thread), laid out as `out` says.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    g: &ConvGeom,
    taps: &Taps,
    n0: usize,
    gn: usize,
    chans: Range<usize>,
    col: &mut [f32],
    out: ColOut,
) {
    let (hw, plane, kk) = (hw_out(g), g.h_in * g.w_in, g.kh * g.kw);
    let mut padded = vec![0.0; taps.padded_len()];
    for (cl, c) in chans.enumerate() {
        for i in 0..gn {
            let src = &x[((n0 + i) * g.c_in + c) * plane..][..plane];
            taps.plane(src, &mut padded, col, out, cl * kk, i * hw);
        }
    }
    if let ColOut::Packed(layout) | ColOut::PackedT(layout) = out {
        layout.zero_padding(col);
    }
}

/// The dx planes of channels `chans` of a group's gn images (`dx` starts at the first), as
/// (channel's index within `chans`, image, plane): what the col rows of those channels cover.
fn dx_planes<'a>(
    dx: &'a mut [f32],
    g: &ConvGeom,
    gn: usize,
    chans: Range<usize>,
) -> impl Iterator<Item = (usize, usize, &'a mut [f32])> {
    let c_in = g.c_in;
    dx.chunks_exact_mut(g.h_in * g.w_in).take(gn * c_in).enumerate().filter_map(move |(idx, plane)| {
        let (i, c) = (idx / c_in, idx % c_in);
        chans.contains(&c).then(|| (c - chans.start, i, plane))
    })
}

/// The adjoint of im2col for channels `chans` of images n0..n0+gn: dx planes = Σ over the
/// col rows of each plane (col holds those channels' rows only).
fn col2im(col: &[f32], g: &ConvGeom, gn: usize, chans: Range<usize>, dx: &mut [f32]) {
    let hw = hw_out(g);
    let ld = gn * hw;
    for (c, i, dst) in dx_planes(dx, g, gn, chans) {
        dst.fill(0.0);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let r = (c * g.kh + ki) * g.kw + kj;
                let src = &col[r * ld + i * hw..][..hw];
                for oy in 0..g.h_out {
                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h_in as isize {
                        continue;
                    }
                    let dst_row = &mut dst[iy as usize * g.w_in..][..g.w_in];
                    for ox in 0..g.w_out {
                        let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w_in as isize {
                            dst_row[ix as usize] += src[oy * g.w_out + ox];
                        }
                    }
                }
            }
        }
    }
}

/// NCHW images n0..n0+gn of y (c_out channels) to [c_out, gn·hw_out], laid out as `layout`
/// says: row-major (`y_group`'s matrix), or straight into the gemm's packed B panels
/// (backward-data's dy), zero in the last panel's padding.
fn gather_y(y: &[f32], g: &ConvGeom, n0: usize, gn: usize, layout: ColOut, out: &mut [f32]) {
    let hw = hw_out(g);
    for co in 0..g.c_out {
        let (base, stride) = layout.row(co);
        let at = |j: usize| base + (j / 32) * stride + j % 32;
        for i in 0..gn {
            let src = &y[((n0 + i) * g.c_out + co) * hw..][..hw];
            // In runs that end at a 32-column edge (a packed panel's).
            let mut q = 0;
            while q < hw {
                let j = i * hw + q;
                let run = (32 - j % 32).min(hw - q);
                out[at(j)..][..run].copy_from_slice(&src[q..q + run]);
                q += run;
            }
        }
    }
    if let ColOut::Packed(l) = layout {
        l.zero_padding(out);
    }
}

/// Images n0..n0+gn of y as one [c_out, gn·hw_out] matrix: a single image is that matrix
/// already (NCHW), a group is gathered into `buf` (taken on first use, then reused for the
/// following, never larger, groups).
fn y_group<'a>(y: &'a [f32], g: &ConvGeom, n0: usize, gn: usize, buf: &'a mut Option<Scratch>) -> &'a [f32] {
    let len = g.c_out * gn * hw_out(g);
    if gn == 1 {
        return &y[n0 * len..][..len];
    }
    let out = buf.get_or_insert_with(|| Scratch::take(len));
    gather_y(y, g, n0, gn, ColOut::RowMajor { ld: gn * hw_out(g) }, out);
    &out[..len]
}

/// [c, gn·hw] back to NCHW images (the slice `y` starts at the group's first image).
fn scatter_planes(src: &[f32], c: usize, gn: usize, hw: usize, y: &mut [f32]) {
    for (idx, dst) in y.chunks_exact_mut(hw).enumerate().take(gn * c) {
        let (i, ch) = (idx / c, idx % c);
        dst.copy_from_slice(&src[(ch * gn + i) * hw..][..hw]);
    }
}

// ------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------

/// y = conv2d(x, w), then `act` if given: per group, y_g [c_out, gn·hw] = w [c_out, rows] ·
/// col [rows, gn·hw], and each task applies act to its block of y as soon as it is written.
pub fn forward(x: &[f32], w: &[f32], g: &ConvGeom, act: Option<Unary>) -> Vec<f32> {
    let bf16 = bf16_products(g);
    #[cfg(target_arch = "x86_64")]
    if !bf16 && super::winograd::applies(g) {
        return super::winograd::forward(x, w, g, act);
    }
    let mut y = super::pool::take(g.y_len());
    if g.n == 0 || g.y_len() == 0 {
        return y;
    }
    let rows = rows(g);
    if is_dense(g) {
        // y [n, c_out] = x [n, rows] · wᵀ
        sgemm(
            g.n,
            g.c_out,
            rows,
            1.0,
            MatRef::row_major(x, rows),
            MatRef::row_major_t(w, rows),
            0.0,
            &mut y,
            g.c_out,
        );
        if let Some(act) = act {
            super::activation::forward_in_place(act, &mut y);
        }
        return y;
    }
    let (hw, gs) = (hw_out(g), task_images(g));
    let taps = Taps::conv(g);
    // The weight is every task's A: packed once here, not once per task.
    let wa = PackedWeight::new(g.c_out, rows, MatRef::row_major(w, rows), bf16);
    let per_image = g.c_out * hw;
    y.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, y_t)| {
        let (n0, gn) = (t * gs, y_t.len() / per_image);
        let ld = gn * hw;
        // y_g = w · col, into y itself for one image, else into a block scattered after.
        let gemm = |y_g: &mut [f32]| match (&wa, ColOut::packed_for(&taps, rows, ld)) {
            // The k4 s2 im2col rounds straight into the tile gemm's B: no f32 col in between.
            // A slice of channels at a time (whole 32-deep steps), each multiplied while it
            // is in L2, the tiles' sums carried through y_g: the same bits as one product.
            (PackedWeight::Bf16(wa), _) if taps.k4s2.is_some() => {
                let kk = g.kh * g.kw;
                let chans_per_slice = band_channels(BF16_SLICE_ROWS, amx::STEP, kk);
                for c0 in (0..g.c_in).step_by(chans_per_slice) {
                    let chans = c0..(c0 + chans_per_slice).min(g.c_in);
                    let depth = c0 * kk..chans.end * kk;
                    let mut col = PackedB16::for_producer(depth.len(), ld);
                    let (lanes, buf) = col.lanes_mut();
                    im2col(x, g, &taps, n0, gn, chans, bytemuck::cast_slice_mut(buf), ColOut::Bf16(lanes));
                    gemm_bf16_part(wa, 0..g.c_out, depth, &col, c0 > 0, y_g, ld);
                }
            }
            // Other geometries write col, then pack it.
            (PackedWeight::Bf16(wa), _) => {
                let mut col = Scratch::take(rows * ld);
                im2col(x, g, &taps, n0, gn, 0..g.c_in, &mut col, ColOut::RowMajor { ld });
                gemm_bf16(wa, &PackedB16::new(rows, ld, MatRef::row_major(&col, ld)), false, y_g, ld);
            }
            // im2col writes the gemm's packed B panels (no packing copy after it), one KC
            // block of rows at a time, each multiplied while it is still in L2: the whole col
            // is 4 MiB at 8×8 → 4×4, twice the L2, and went out to L3 and back.
            (PackedWeight::F32(wa), Some(layout)) => {
                let chans_per_block = layout.kc / (g.kh * g.kw);
                let first = PackedBLayout::new(rows.min(layout.kc), ld).expect("as `layout`: same n");
                let mut col = Scratch::take(first.len());
                for c0 in (0..g.c_in).step_by(chans_per_block) {
                    let chans = c0..(c0 + chans_per_block).min(g.c_in);
                    let depth = c0 * g.kh * g.kw..chans.end * g.kh * g.kw;
                    let block = PackedBLayout::new(depth.len(), ld).expect("as `layout`: same n");
                    im2col(x, g, &taps, n0, gn, chans, &mut col, ColOut::Packed(block));
                    let beta = if c0 == 0 { 0.0 } else { 1.0 };
                    sgemm_serial_prepacked(&wa.block(0..g.c_out, depth), &col, block, beta, y_g, ld);
                }
            }
            (PackedWeight::F32(wa), None) => {
                let mut col = Scratch::take(rows * ld);
                im2col(x, g, &taps, n0, gn, 0..g.c_in, &mut col, ColOut::RowMajor { ld });
                sgemm_serial_packed(wa, ld, 1.0, MatRef::row_major(&col, ld), 0.0, y_g, ld);
            }
        };
        if gn == 1 {
            gemm(y_t);
        } else {
            let mut block = Scratch::take(g.c_out * ld);
            gemm(&mut block);
            scatter_planes(&block, g.c_out, gn, hw, y_t);
        }
        if let Some(act) = act {
            super::activation::forward_in_place(act, y_t);
        }
    });
    y
}

// ------------------------------------------------------------------------------------------
// Backward to the data
// ------------------------------------------------------------------------------------------

/// dx = conv2d's adjoint applied to dy.
pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let mut dx = super::pool::take(g.x_len());
    if g.n == 0 || g.x_len() == 0 {
        return dx;
    }
    let rows = rows(g);
    if is_dense(g) {
        // dx [n, rows] = dy [n, c_out] · w [c_out, rows]
        sgemm(
            g.n,
            rows,
            g.c_out,
            1.0,
            MatRef::row_major(dy, g.c_out),
            MatRef::row_major(w, rows),
            0.0,
            &mut dx,
            rows,
        );
        return dx;
    }
    let (hw, gs) = (hw_out(g), task_images(g));
    let w_t = PackedWeight::new(rows, g.c_out, MatRef::row_major_t(w, rows), bf16_products(g));
    let per_image = g.c_in * g.h_in * g.w_in;
    // The vector col2im's masks, once per call, up to 16 wide. (At 32 wide the row loop is
    // faster: its interior vectorises, and 16 col rows read at once, a 4 KiB multiple apart,
    // fight over the same L1 sets.)
    let k4s2_masks = k4s2_shift_masks(g, 16);
    let kk = g.kh * g.kw;
    let col_to_dx = |col: &[f32], gn: usize, chans: Range<usize>, dx_t: &mut [f32]| {
        if is_k4s2(g) {
            col2im_k4s2(col, g, gn, chans, k4s2_masks.as_deref(), dx_t);
        } else {
            col2im(col, g, gn, chans, dx_t);
        }
    };
    dx.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, dx_t)| {
        let (n0, gn) = (t * gs, dx_t.len() / per_image);
        let ld = gn * hw;
        // A group of images: its dy gathered straight into the gemm's packed B, then col made
        // and summed into dx a band of channels at a time, each band while it is in L2 (the
        // whole col is 4 MiB at 4×4 → 8×8, twice the L2). Bands start on the packed weight's
        // panels. A lone image (256 pixels or more) is left as it was: its dy is the gemm's B
        // as it lies, with no copy, and its col is about the size of L2 (measured: banding it
        // was 2-10% slower).
        match (&w_t, PackedBLayout::new(g.c_out, ld).filter(|l| gn > 1 && l.nr == 32)) {
            (PackedWeight::Bf16(w_t), _) => {
                let mut dy_buf = None;
                let dy_g =
                    PackedB16::new(g.c_out, ld, MatRef::row_major(y_group(dy, g, n0, gn, &mut dy_buf), ld));
                let band = band_channels(BAND_ROWS, amx::BLOCK, kk);
                let mut col = Scratch::take(band.min(g.c_in) * kk * ld);
                for c0 in (0..g.c_in).step_by(band) {
                    let chans = c0..(c0 + band).min(g.c_in);
                    let col = &mut col[..chans.len() * kk * ld];
                    gemm_bf16_part(w_t, c0 * kk..chans.end * kk, 0..g.c_out, &dy_g, false, col, ld);
                    col_to_dx(col, gn, chans, dx_t);
                }
            }
            (PackedWeight::F32(w_t), Some(layout)) => {
                let mut dy_p = Scratch::take(layout.len());
                gather_y(dy, g, n0, gn, ColOut::Packed(layout), &mut dy_p);
                let band = band_channels(BAND_ROWS, w_t.panel_rows(), kk);
                let mut col = Scratch::take(band.min(g.c_in) * kk * ld);
                for c0 in (0..g.c_in).step_by(band) {
                    let chans = c0..(c0 + band).min(g.c_in);
                    let w_band = w_t.block(c0 * kk..chans.end * kk, 0..g.c_out);
                    sgemm_serial_prepacked(&w_band, &dy_p, layout, 0.0, &mut col, ld);
                    col_to_dx(&col, gn, chans, dx_t);
                }
            }
            (PackedWeight::F32(w_t), None) => {
                let mut col = Scratch::take(rows * ld);
                let mut dy_buf = None;
                let dy_g = MatRef::row_major(y_group(dy, g, n0, gn, &mut dy_buf), ld);
                sgemm_serial_packed(w_t, ld, 1.0, dy_g, 0.0, &mut col, ld);
                col_to_dx(&col, gn, 0..g.c_in, dx_t);
            }
        }
    });
    dx
}

/// Col rows per slice of the bf16 forward's sum (256 KiB of bf16 col at 256 columns).
const BF16_SLICE_ROWS: usize = 512;

/// Col rows per band of backward-data: a band of col (× 256 columns) is then 256 KiB, an
/// eighth of L2.
const BAND_ROWS: usize = 256;

/// Input channels per band of about `rows` col rows (`kk` a channel), so that every band
/// starts on a multiple of `unit` rows: a packed weight's panel (backward-data's bands), or
/// the tile gemm's 32-deep step (the bf16 forward's slices of its sum).
fn band_channels(rows: usize, unit: usize, kk: usize) -> usize {
    let step = unit / gcd(unit, kk);
    (rows / kk / step).max(1) * step
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Kernel taps of output parity `p` (0 or 1) along one axis, k4 s2 p1: (tap index, offset of
/// the dy row it reads relative to the output's half-resolution index). Output 2a+p takes
/// dy[a + off] through tap k, where 2(a + off) + k − 1 = 2a + p.
const PHASE_TAPS: [[(usize, isize); 2]; 2] = [[(1, 0), (3, -1)], [(0, 1), (2, 0)]];

/// Kernel tap k of k4 s2 p1 along one axis as (input parity, shift): output a reads input
/// 2a + k − 1 = 2(a + shift) + parity.
const IM2COL_TAPS: [(usize, isize); 4] = [(1, -1), (0, 0), (1, 0), (0, 1)];

/// col2im for k4 s2 p1 with x twice y. Output pixel (2a+py, 2b+px) only meets the taps of
/// parity (py+1, px+1): two kernel rows ki, each reading y row a + offy, and two kernel
/// columns kj, each reading y column b + offx (`PHASE_TAPS`). So every dx element is one sum
/// of at most four col values in a fixed order — no scattered read-modify-writes — and a dx
/// row is built from contiguous col rows in one pass.
fn col2im_k4s2(
    col: &[f32],
    g: &ConvGeom,
    gn: usize,
    chans: Range<usize>,
    masks: Option<&[ShiftMasks]>,
    dx: &mut [f32],
) {
    let (hw, h, w) = (hw_out(g), g.h_out, g.w_out);
    let ld = gn * hw;
    #[cfg(target_arch = "x86_64")]
    if let Some(masks) = masks {
        // SAFETY: `masks` is only given where AVX-512F is present and the shape fits (see
        // `backward_data`).
        unsafe { col2im_k4s2_avx512(col, g, gn, chans, masks, dx) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = masks;
    for (c, i, dst) in dx_planes(dx, g, gn, chans) {
        let plane = c * 16 * ld + i * hw;
        // The four col rows (kj = 0..4) of kernel row ki at y row oy, if oy is inside.
        let taps = |ki: usize, oy: Option<usize>| {
            let oy = oy.filter(|&oy| oy < h)?;
            let r = plane + ki * 4 * ld + oy * w;
            Some([&col[r..][..w], &col[r + ld..][..w], &col[r + 2 * ld..][..w], &col[r + 3 * ld..][..w]])
        };
        for (y, row) in dst.chunks_exact_mut(g.w_in).enumerate() {
            let (a, py) = (y / 2, y % 2);
            let [(k0, off0), (k1, off1)] = PHASE_TAPS[py];
            match (taps(k0, a.checked_add_signed(off0)), taps(k1, a.checked_add_signed(off1))) {
                (Some(t0), Some(t1)) => k4s2_row([t0, t1], row, w),
                (Some(t), None) | (None, Some(t)) => k4s2_row([t], row, w),
                (None, None) => row.fill(0.0),
            }
        }
    }
}

/// For each 16-pixel chunk of a y plane (h×w, flat), `[offy + 1][offx + 1]`: the lanes whose
/// pixel shifted by (offy, offx) still lies inside the plane.
type ShiftMasks = [[u16; 3]; 3];

/// The masks of the vector k4 s2 paths (`Taps::plane_k4s2_avx512`, `col2im_k4s2_avx512`),
/// where they apply: AVX-512F, the k4 s2 p1 geometry with x twice y, y planes of whole
/// 16-pixel chunks, 4 or a multiple of 8 and at most `widest` pixels wide.
fn k4s2_shift_masks(g: &ConvGeom, widest: usize) -> Option<Vec<ShiftMasks>> {
    let w = g.w_out;
    (is_k4s2(g) && avx512() && hw_out(g).is_multiple_of(16) && (w == 4 || w.is_multiple_of(8)) && w <= widest)
        .then(|| shift_masks(g.h_out, w))
}

fn shift_masks(h: usize, w: usize) -> Vec<ShiftMasks> {
    (0..(h * w).div_ceil(16))
        .map(|j| {
            let mut m = [[0u16; 3]; 3];
            for l in 0..16 {
                let (a, b) = ((16 * j + l) / w, (16 * j + l) % w);
                for (oy, row) in m.iter_mut().enumerate() {
                    for (ox, mask) in row.iter_mut().enumerate() {
                        if (a + oy).checked_sub(1).is_some_and(|a| a < h)
                            && (b + ox).checked_sub(1).is_some_and(|b| b < w)
                        {
                            *mask |= 1 << l;
                        }
                    }
                }
            }
            m
        })
        .collect()
}

/// `col2im_k4s2` 16 y pixels at a time, where `k4s2_shift_masks` applies (the row-by-row
/// loop above is scalar at the 4×4 and 8×8 planes, where it took 30% of a backward-data).
/// The y plane is read as a flat array: a phase's term (ki, kj) at pixel (a, b) is the col
/// row of that tap at (a + offy, b + offx), one masked load of 16 lanes shifted by
/// offy·w + offx, the lanes that fall outside the plane masked to zero. The same four terms
/// in the same order as `k4s2_row`; the two column phases are then interleaved into dx rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn col2im_k4s2_avx512(
    col: &[f32],
    g: &ConvGeom,
    gn: usize,
    chans: Range<usize>,
    masks: &[ShiftMasks],
    dx: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (hw, w) = (hw_out(g), g.w_out);
    let (ld, wi) = (gn * hw, g.w_in);
    // Lanes 0..16 of (even, odd) interleaved: lo from lanes 0..8, hi from lanes 8..16.
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (c, i, dst) in dx_planes(dx, g, gn, chans) {
        let plane = col[c * 16 * ld + i * hw..].as_ptr();
        let out = dst.as_mut_ptr();
        for (j, m) in masks.iter().enumerate() {
            for (py, &[(k0, oy0), (k1, oy1)]) in PHASE_TAPS.iter().enumerate() {
                let mut phase = [_mm512_setzero_ps(); 2];
                for (px, &[(j0, ox0), (j1, ox1)]) in PHASE_TAPS.iter().enumerate() {
                    let term = |ki: usize, oy: isize, kj: usize, ox: isize| {
                        let src = plane
                            .wrapping_add((ki * 4 + kj) * ld + 16 * j)
                            .wrapping_offset(oy * w as isize + ox);
                        // SAFETY: the mask keeps only lanes inside this tap's y plane.
                        unsafe { _mm512_maskz_loadu_ps(m[(oy + 1) as usize][(ox + 1) as usize], src) }
                    };
                    let r0 = _mm512_add_ps(term(k0, oy0, j0, ox0), term(k0, oy0, j1, ox1));
                    let r1 = _mm512_add_ps(term(k1, oy1, j0, ox0), term(k1, oy1, j1, ox1));
                    // 0 + r0 + r1, as `k4s2_row` starts its sums at 0.0: the same bits.
                    phase[px] = _mm512_add_ps(_mm512_add_ps(_mm512_setzero_ps(), r0), r1);
                }
                // Interleave the column phases: 8 y pixels (flat 16j + 8·half ..) each.
                for (half, perm) in [lo, hi].into_iter().enumerate() {
                    let v = _mm512_permutex2var_ps(phase[0], perm, phase[1]);
                    let f = 16 * j + 8 * half;
                    // SAFETY: each store covers 2·w' dx values of one dx row (w' = 8 when
                    // w is a multiple of 8, else the 4 pixels of each of two rows).
                    unsafe {
                        if w % 8 == 0 {
                            let (a, b) = (f / w, f % w);
                            _mm512_storeu_ps(out.add((2 * a + py) * wi + 2 * b), v);
                        } else {
                            let a = f / w;
                            _mm512_mask_storeu_ps(out.add((2 * a + py) * wi), 0x00FF, v);
                            _mm512_mask_storeu_ps(out.add((2 * a + 2 + py) * wi - 8), 0xFF00, v);
                        }
                    }
                }
            }
        }
    }
}

/// One dx row of `col2im_k4s2` from the col rows `taps[r][kj]` of its R kernel rows:
/// even pixels 2b take kj = 1 at b and kj = 3 at b − 1; odd pixels 2b+1 take kj = 0 at b + 1
/// and kj = 2 at b (`PHASE_TAPS`), terms outside the y row skipped.
#[inline(always)]
fn k4s2_row<'a, const R: usize>(taps: [[&'a [f32]; 4]; R], row: &mut [f32], w: usize) {
    let pixel = |b: usize| {
        let (mut even, mut odd) = (0.0f32, 0.0f32);
        for t in &taps {
            even += if b >= 1 { t[1][b] + t[3][b - 1] } else { t[1][b] };
            odd += if b + 1 < w { t[0][b + 1] + t[2][b] } else { t[2][b] };
        }
        (even, odd)
    };
    let (first, last) = (pixel(0), pixel(w - 1));
    // Interior b in 1..w−1: every term present. Slices cut to length n up front leave the
    // loop without bounds checks or branches, so it vectorises.
    let n = w.saturating_sub(2);
    if n > 0 {
        let taps_n =
            taps.map(|t: [&'a [f32]; 4]| [&t[0][2..][..n], &t[1][1..][..n], &t[2][1..][..n], &t[3][..n]]);
        let out = &mut row[2..][..2 * n];
        for k in 0..n {
            let (mut even, mut odd) = (0.0f32, 0.0f32);
            for t in &taps_n {
                even += t[1][k] + t[3][k];
                odd += t[0][k] + t[2][k];
            }
            out[2 * k] = even;
            out[2 * k + 1] = odd;
        }
    }
    (row[0], row[1]) = first;
    (row[2 * w - 2], row[2 * w - 1]) = last;
}

// ------------------------------------------------------------------------------------------
// Backward to the weight
// ------------------------------------------------------------------------------------------

/// dw = Σ_groups dy_g · colᵀ, groups summed in batch order.
pub fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f32> {
    let mut dw = super::pool::take(g.w_len());
    if g.n == 0 || g.w_len() == 0 {
        dw.fill(0.0);
        return dw;
    }
    let rows = rows(g);
    if is_dense(g) {
        // dw [c_out, rows] = dyᵀ [c_out, n] · x [n, rows]
        sgemm(
            g.c_out,
            rows,
            g.n,
            1.0,
            MatRef::row_major_t(dy, g.c_out),
            MatRef::row_major(x, rows),
            0.0,
            &mut dw,
            rows,
        );
        return dw;
    }
    #[cfg(target_arch = "x86_64")]
    if !bf16_products(g) && super::winograd::applies_backward_weight(g) {
        super::winograd::backward_weight(x, dy, g, &mut dw);
        return dw;
    }
    backward_weight_tasks(x, dy, g, &mut dw);
    dw
}

/// dw in tasks with serial gemms whose operands stay in their core's L2. With 32 or more
/// input channels a task owns the dw columns of a block of channels and runs over the whole
/// batch; with fewer (the RGB layer, whose dw is too narrow to split) each of BW_TASKS tasks
/// runs over a quarter of the batch into its own partial dw, and the partials are added in
/// task order.
/// Either way a task builds its own im2col rows, no task shares a matrix with another, and
/// every dw element is summed in an order fixed by the shapes alone.
fn backward_weight_tasks(x: &[f32], dy: &[f32], g: &ConvGeom, dw: &mut [f32]) {
    let (hw, kk, rows) = (hw_out(g), g.kh * g.kw, rows(g));
    // Channel blocks: one per thread, so each task packs the whole batch's dy (its gemms' A)
    // as few times as the threads allow (four blocks on two threads packed it twice as often
    // and ran 3-10% slower), and at least two (one 4×4 layer's whole dw is 8 MiB, past L2).
    // A task owns its dw columns, so the split changes no bits, as long as every block keeps
    // 32 columns: its gemm then always takes the packed kernel (a narrower one could fall to
    // the direct loop for tiny products, whose sums round differently).
    let (chan_blocks, image_parts) = if g.c_in >= 32 {
        (rayon::current_num_threads().max(2).min(g.c_in * kk / 32), 1)
    } else {
        (1, BW_TASKS.min(g.n))
    };
    let per_block = g.c_in.div_ceil(chan_blocks);
    // Images per gemm: an im2col of about BW_TASK_COL floats for a block of a quarter of the
    // channels, but a depth of 256 at least. The groups (and so the order of every sum) come
    // from the shape alone, never from the thread count. An image of 256 or more output
    // pixels is a gemm of its own: its dy is then the gemm's A as it lies in the tensor, with
    // no gathered copy (`y_group`), and a depth of 256 is already the gemm's own k block, so
    // nothing else changes.
    let group_block = if g.c_in >= 32 { g.c_in.div_ceil(BW_TASKS) } else { g.c_in };
    let gs = if hw >= 256 {
        1
    } else {
        (BW_TASK_COL / (group_block * kk * hw).max(1)).max(256_usize.div_ceil(hw)).clamp(1, g.n)
    };
    let taps = Taps::conv(g);
    let bf16 = bf16_products(g);
    // (first dw column, column count, first part of its block?, dw[:, those columns] summed
    // over the task's images): blocks in order, each block's image parts in batch order.
    let parts: Vec<(usize, usize, bool, Scratch)> = (0..g.c_in.div_ceil(per_block) * image_parts)
        .into_par_iter()
        .with_max_len(1)
        .map(|t| {
            let (block, part) = (t / image_parts, t % image_parts);
            let chans = block * per_block..((block + 1) * per_block).min(g.c_in);
            let images = g.n * part / image_parts..g.n * (part + 1) / image_parts;
            let (cols, per_image) = (chans.len() * kk, g.c_out * hw);
            let mut acc = Scratch::take(g.c_out * cols);
            let mut col = None;
            let mut dy_buf = None;
            for (n0, gn) in groups(images.len(), gs) {
                let (n0, ld) = (images.start + n0, gn * hw);
                let beta = if n0 == images.start { 0.0 } else { 1.0 };
                // im2col writes colᵀ as the gemm's packed B where it can (no transposing
                // copy after it), else col row-major for the gemm to pack.
                match ColOut::packed_t_for(&taps, ld, cols) {
                    _ if bf16 => {
                        // The k4 s2 im2col rounds colᵀ straight into the tile gemm's B, two
                        // pixels of a row at a time (so rows of even width); else col is
                        // written, then packed transposed.
                        let col_t = if taps.k4s2.is_some() && g.w_out.is_multiple_of(2) {
                            let mut col_t = PackedB16::for_producer(ld, cols);
                            let (lanes, buf) = col_t.lanes_mut();
                            let buf = bytemuck::cast_slice_mut(buf);
                            im2col(x, g, &taps, n0, gn, chans.clone(), buf, ColOut::Bf16T(lanes));
                            col_t
                        } else {
                            let col = col.get_or_insert_with(|| Scratch::take(cols * gs * hw));
                            im2col(x, g, &taps, n0, gn, chans.clone(), col, ColOut::RowMajor { ld });
                            PackedB16::new(ld, cols, MatRef::row_major_t(col, ld))
                        };
                        let dy_g = MatRef::row_major(y_group(dy, g, n0, gn, &mut dy_buf), ld);
                        gemm_bf16(&PackedA16::new(g.c_out, ld, dy_g), &col_t, beta == 1.0, &mut acc, cols);
                    }
                    Some(layout) => {
                        let col = col.get_or_insert_with(|| Scratch::take(layout.len()));
                        im2col(x, g, &taps, n0, gn, chans.clone(), col, ColOut::PackedT(layout));
                        // A group's dy planes go straight into the gemm's A panels, not
                        // gathered into one [c_out, gn·hw] matrix first (that copy was 7% of
                        // a 4×4-output layer's backward-weight); one image's dy is that matrix.
                        let planes = &dy[n0 * per_image..][..gn * per_image];
                        let dy_a = (gn > 1)
                            .then(|| PackedA::from_column_blocks(g.c_out, planes, hw, per_image, layout))
                            .flatten();
                        match dy_a {
                            Some(dy_a) => sgemm_serial_prepacked(&dy_a, col, layout, beta, &mut acc, cols),
                            None => {
                                let dy_g = MatRef::row_major(y_group(dy, g, n0, gn, &mut dy_buf), ld);
                                sgemm_serial_prepacked_b(g.c_out, dy_g, col, layout, beta, &mut acc, cols);
                            }
                        }
                    }
                    None => {
                        let dy_g = MatRef::row_major(y_group(dy, g, n0, gn, &mut dy_buf), ld);
                        let col = col.get_or_insert_with(|| Scratch::take(cols * gs * hw));
                        im2col(x, g, &taps, n0, gn, chans.clone(), col, ColOut::RowMajor { ld });
                        let col_t = MatRef::row_major_t(col, ld);
                        sgemm_serial(g.c_out, cols, ld, 1.0, dy_g, col_t, beta, &mut acc, cols);
                    }
                }
            }
            (chans.start * kk, cols, part == 0, acc)
        })
        .collect();
    for (j0, cols, first, acc) in parts {
        for (dst, src) in dw.chunks_exact_mut(rows).zip(acc.chunks_exact(cols)) {
            if first {
                dst[j0..][..cols].copy_from_slice(src);
            } else {
                dst[j0..][..cols].iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
}
