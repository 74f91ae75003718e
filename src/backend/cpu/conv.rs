//! Convolution in the three directions — forward, backward to the data, backward to the
//! weight — as im2col + gemm. conv_transpose2d uses the same three with roles swapped (see
//! `ConvGeom`), so this file serves both ops.
//!
//! Images are processed in groups whose size depends only on the shapes (never on the thread
//! count), so every result — the weight-gradient sums included — has the same bits for any
//! number of threads.
//!
//! * Forward and backward-data: rayon over groups of images; each task builds its own im2col
//!   matrix (one column per output pixel of every image in the group, so the 4×4 late layers
//!   still give the gemm a wide N) in a reused workspace and runs a single-threaded gemm, so
//!   the operands stay in that core's caches and nothing is shared between tasks.
//! * Backward-data of the DCGAN geometry (k4, stride 2, pad 1, x exactly twice y — the
//!   forward of every stride-2 ConvTranspose2d) is split into its four output phases: output
//!   pixel (2a+py, 2b+px) only meets the kernel taps of parity (py+1, px+1), so each phase is a
//!   2×2 stride-1 convolution of dy — no col2im, no scattered additions, a quarter of the
//!   im2col rows per gemm.
//! * A convolution whose kernel covers its whole unpadded input with a 1×1 output (the
//!   generator's first layer, the discriminator's last) is one plain gemm in each direction.
//! * Backward-weight: the groups' gemms accumulate into dw in batch order, each gemm
//!   parallel over the tiles of dw.
//!
//! Workspaces come from a small pool and are reused across calls and steps.

use super::gemm::{MatRef, PackedA, sgemm, sgemm_serial_packed};
use crate::backend::ConvGeom;
use rayon::prelude::*;
use std::sync::Mutex;

/// Columns (output pixels) one forward / backward-data task aims for: wide enough for the
/// gemm's 32-column tiles and its packing costs, small enough to give both cores work.
const TARGET_COLS: usize = 256;
/// Largest im2col matrix of one backward-weight group, in floats (4 MiB).
const BW_COL_BUDGET: usize = 1 << 20;

// ------------------------------------------------------------------------------------------
// Workspaces
// ------------------------------------------------------------------------------------------

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A scratch buffer from the pool; it goes back on drop. Contents are unspecified.
struct Scratch(Vec<f32>);

impl Scratch {
    fn take(len: usize) -> Scratch {
        let mut v = {
            let mut pool = POOL.lock().expect("conv workspace pool");
            // The smallest buffer that fits, else the largest (grown below).
            let pick = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .or_else(|| pool.iter().enumerate().max_by_key(|(_, b)| b.len()))
                .map(|(i, _)| i);
            pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
        };
        if v.len() < len {
            v.resize(len, 0.0);
        }
        Scratch(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.lock().expect("conv workspace pool").push(v);
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
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

/// Images per backward-weight group.
fn bw_group_images(g: &ConvGeom) -> usize {
    (BW_COL_BUDGET / (rows(g) * hw_out(g)).max(1)).clamp(1, g.n.max(1))
}

fn groups(n: usize, gs: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(gs.max(1)).map(move |n0| (n0, gs.min(n - n0)))
}

/// The kernel covers the whole unpadded input and the output is 1×1: a plain matrix product
/// per direction.
fn is_dense(g: &ConvGeom) -> bool {
    g.h_out == 1 && g.w_out == 1 && g.pad == 0 && g.kh == g.h_in && g.kw == g.w_in
}

/// k4 s2 p1 with x exactly twice y: backward-data splits into four 2×2 phases. Each phase's
/// gemm has c_in rows, so images with few channels (the generator's RGB output) keep the
/// col2im form, whose gemm has c_in·16 rows.
fn is_phase_k4s2(g: &ConvGeom) -> bool {
    g.c_in >= 16
        && g.kh == 4
        && g.kw == 4
        && g.stride == 2
        && g.pad == 1
        && g.h_in == 2 * g.h_out
        && g.w_in == 2 * g.w_out
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
        Taps { idx, hw: hw_out(g), h: g.h_in, w: g.w_in, pad: g.pad }
    }

    /// The 2×2 taps of output phase (py, px) of a k4 s2 p1 backward-data over a dy plane
    /// (h_out × w_out, padded by 1): row (ty, tx), column (a, b) reads dy[a + dy_y, b + dy_x].
    fn phase(g: &ConvGeom, py: usize, px: usize) -> Taps {
        let (h, w) = (g.h_out, g.w_out);
        let wp = w + 2;
        let mut idx = Vec::with_capacity(4 * h * w);
        for &(_, oy) in &PHASE_TAPS[py] {
            for &(_, ox) in &PHASE_TAPS[px] {
                for a in 0..h {
                    for b in 0..w {
                        idx.push(
                            (((a as isize + 1 + oy) as usize) * wp + (b as isize + 1 + ox) as usize) as u32,
                        );
                    }
                }
            }
        }
        Taps { idx, hw: h * w, h, w, pad: 1 }
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

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// Images n0..n0+gn of x into col [rows, gn·hw_out] (on this thread).
fn im2col(x: &[f32], g: &ConvGeom, taps: &Taps, n0: usize, gn: usize, col: &mut [f32]) {
    let (hw, plane, kk) = (hw_out(g), g.h_in * g.w_in, g.kh * g.kw);
    let ld = gn * hw;
    let mut padded = vec![0.0; taps.padded_len()];
    for c in 0..g.c_in {
        let rows_c = &mut col[c * kk * ld..(c + 1) * kk * ld];
        for i in 0..gn {
            taps.fill_padded(&x[((n0 + i) * g.c_in + c) * plane..][..plane], &mut padded);
            taps.gather(&padded, &mut rows_c[i * hw..], ld);
        }
    }
}

/// `im2col`, parallel over input channels.
fn im2col_par(x: &[f32], g: &ConvGeom, taps: &Taps, n0: usize, gn: usize, col: &mut [f32]) {
    let (hw, plane, kk) = (hw_out(g), g.h_in * g.w_in, g.kh * g.kw);
    let ld = gn * hw;
    col[..g.c_in * kk * ld].par_chunks_mut(kk * ld).enumerate().for_each(|(c, rows_c)| {
        let mut padded = vec![0.0; taps.padded_len()];
        for i in 0..gn {
            taps.fill_padded(&x[((n0 + i) * g.c_in + c) * plane..][..plane], &mut padded);
            taps.gather(&padded, &mut rows_c[i * hw..], ld);
        }
    });
}

/// The adjoint of im2col for images n0..n0+gn: dx planes = Σ over the col rows of each plane.
fn col2im(col: &[f32], g: &ConvGeom, gn: usize, dx: &mut [f32]) {
    let (hw, plane) = (hw_out(g), g.h_in * g.w_in);
    let ld = gn * hw;
    for (idx, dst) in dx.chunks_exact_mut(plane).enumerate().take(gn * g.c_in) {
        let (i, c) = (idx / g.c_in, idx % g.c_in);
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

/// NCHW images n0..n0+gn of y (c_out channels) to [c_out, gn·hw_out].
fn gather_y(y: &[f32], g: &ConvGeom, n0: usize, gn: usize, out: &mut [f32]) {
    let hw = hw_out(g);
    for co in 0..g.c_out {
        for i in 0..gn {
            out[(co * gn + i) * hw..][..hw].copy_from_slice(&y[((n0 + i) * g.c_out + co) * hw..][..hw]);
        }
    }
}

/// `gather_y`, parallel over channels.
fn gather_y_par(y: &[f32], g: &ConvGeom, n0: usize, gn: usize, out: &mut [f32]) {
    let hw = hw_out(g);
    out[..g.c_out * gn * hw].par_chunks_mut(gn * hw).enumerate().for_each(|(co, row)| {
        for i in 0..gn {
            row[i * hw..][..hw].copy_from_slice(&y[((n0 + i) * g.c_out + co) * hw..][..hw]);
        }
    });
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

/// y = conv2d(x, w): per group, y_g [c_out, gn·hw] = w [c_out, rows] · col [rows, gn·hw].
pub fn forward(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
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
        return y;
    }
    let (hw, gs) = (hw_out(g), task_images(g));
    let taps = Taps::conv(g);
    // The weight is every task's A: packed once here, not once per task.
    let wa = PackedA::new(g.c_out, rows, MatRef::row_major(w, rows));
    let per_image = g.c_out * hw;
    y.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, y_t)| {
        let (n0, gn) = (t * gs, y_t.len() / per_image);
        let ld = gn * hw;
        let mut col = Scratch::take(rows * ld);
        im2col(x, g, &taps, n0, gn, &mut col);
        let col = MatRef::row_major(&col, ld);
        if gn == 1 {
            sgemm_serial_packed(&wa, ld, 1.0, col, 0.0, y_t, ld);
        } else {
            let mut out = Scratch::take(g.c_out * ld);
            sgemm_serial_packed(&wa, ld, 1.0, col, 0.0, &mut out, ld);
            scatter_planes(&out, g.c_out, gn, hw, y_t);
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
    if is_phase_k4s2(g) {
        backward_data_phases(dy, w, g, &mut dx);
        return dx;
    }
    let (hw, gs) = (hw_out(g), task_images(g));
    let w_t = PackedA::new(rows, g.c_out, MatRef::row_major_t(w, rows));
    let per_image = g.c_in * g.h_in * g.w_in;
    dx.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, dx_t)| {
        let (n0, gn) = (t * gs, dx_t.len() / per_image);
        let ld = gn * hw;
        let mut col = Scratch::take(rows * ld);
        if gn == 1 {
            let dy_i = &dy[n0 * g.c_out * hw..][..g.c_out * hw];
            sgemm_serial_packed(&w_t, ld, 1.0, MatRef::row_major(dy_i, ld), 0.0, &mut col, ld);
        } else {
            let mut dy_g = Scratch::take(g.c_out * ld);
            gather_y(dy, g, n0, gn, &mut dy_g);
            sgemm_serial_packed(&w_t, ld, 1.0, MatRef::row_major(&dy_g, ld), 0.0, &mut col, ld);
        }
        col2im(&col, g, gn, dx_t);
    });
    dx
}

/// Kernel taps of output parity `p` (0 or 1) along one axis, k4 s2 p1: (tap index, offset of
/// the dy row it reads relative to the output's half-resolution index). Output 2a+p takes
/// dy[a + off] through tap k, where 2(a + off) + k − 1 = 2a + p.
const PHASE_TAPS: [[(usize, isize); 2]; 2] = [[(1, 0), (3, -1)], [(0, 1), (2, 0)]];

/// Backward-data for k4 s2 p1 as four 2×2 stride-1 convolutions of dy, one per output phase
/// (py, px): dx_p [c_in, gn·hw] = W_p [c_in, c_out·4] · col_p [c_out·4, gn·hw], then the four
/// phases are interleaved into dx.
fn backward_data_phases(dy: &[f32], w: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let (hw, gs) = (hw_out(g), task_images(g));
    let k = g.c_out * 4;
    // W_pᵀ [(co, ty, tx), c_in] for the four phases: the gemm's A = W_p [c_in, (co, ty, tx)]
    // is then column-major and packs with contiguous copies.
    let mut wp = Scratch::take(4 * g.c_in * k);
    for (p, wp) in wp[..4 * g.c_in * k].chunks_exact_mut(g.c_in * k).enumerate() {
        let (py, px) = (p / 2, p % 2);
        for co in 0..g.c_out {
            for ty in 0..2 {
                for tx in 0..2 {
                    let (ki, kj) = (PHASE_TAPS[py][ty].0, PHASE_TAPS[px][tx].0);
                    let row = &mut wp[(co * 4 + ty * 2 + tx) * g.c_in..][..g.c_in];
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = w[((co * g.c_in + c) * 4 + ki) * 4 + kj];
                    }
                }
            }
        }
    }
    let taps: Vec<Taps> = (0..4).map(|p| Taps::phase(g, p / 2, p % 2)).collect();
    let wa: Vec<PackedA> = wp[..4 * g.c_in * k]
        .chunks_exact(g.c_in * k)
        .map(|w_p| PackedA::new(g.c_in, k, MatRef::row_major_t(w_p, g.c_in)))
        .collect();
    let per_image = g.c_in * g.h_in * g.w_in;
    dx.par_chunks_mut(gs * per_image).enumerate().for_each(|(t, dx_t)| {
        let (n0, gn) = (t * gs, dx_t.len() / per_image);
        let ld = gn * hw;
        let mut col = Scratch::take(k * ld);
        let mut out = Scratch::take(4 * g.c_in * ld);
        for p in 0..4 {
            phase_im2col(dy, g, &taps[p], n0, gn, &mut col);
            let out_p = &mut out[p * g.c_in * ld..][..g.c_in * ld];
            sgemm_serial_packed(&wa[p], ld, 1.0, MatRef::row_major(&col, ld), 0.0, out_p, ld);
        }
        interleave_phases(&out, g, gn, dx_t);
    });
}

/// col_p [(co, ty, tx), gn·hw] for one phase: the dy plane shifted by the tap offsets, zero
/// where the shift leaves the plane.
fn phase_im2col(dy: &[f32], g: &ConvGeom, taps: &Taps, n0: usize, gn: usize, col: &mut [f32]) {
    let hw = hw_out(g);
    let ld = gn * hw;
    let mut padded = vec![0.0; taps.padded_len()];
    for co in 0..g.c_out {
        for i in 0..gn {
            taps.fill_padded(&dy[((n0 + i) * g.c_out + co) * hw..][..hw], &mut padded);
            taps.gather(&padded, &mut col[co * 4 * ld + i * hw..], ld);
        }
    }
}

/// dx[i, c, 2a+py, 2b+px] = out_p[c, i·hw + a·w + b] for the four phases p = 2·py + px.
fn interleave_phases(out: &[f32], g: &ConvGeom, gn: usize, dx: &mut [f32]) {
    let (hw, w) = (hw_out(g), g.w_out);
    let ld = gn * hw;
    let phase = |p: usize, c: usize, i: usize| &out[p * g.c_in * ld + c * ld + i * hw..][..hw];
    for (idx, dst) in dx.chunks_exact_mut(g.h_in * g.w_in).enumerate().take(gn * g.c_in) {
        let (i, c) = (idx / g.c_in, idx % g.c_in);
        let (p00, p01, p10, p11) = (phase(0, c, i), phase(1, c, i), phase(2, c, i), phase(3, c, i));
        for (a, rows) in dst.chunks_exact_mut(2 * g.w_in).enumerate() {
            let (r0, r1) = rows.split_at_mut(g.w_in);
            for (row, even, odd) in [(r0, p00, p01), (r1, p10, p11)] {
                let (e, o) = (&even[a * w..][..w], &odd[a * w..][..w]);
                for (pair, (&e, &o)) in row.chunks_exact_mut(2).zip(e.iter().zip(o)) {
                    pair[0] = e;
                    pair[1] = o;
                }
            }
        }
    }
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
    let (hw, gs) = (hw_out(g), bw_group_images(g));
    let taps = Taps::conv(g);
    let mut col = Scratch::take(rows * gs * hw);
    let mut dy_g = Scratch::take(g.c_out * gs * hw);
    for (n0, gn) in groups(g.n, gs) {
        let ld = gn * hw;
        im2col_par(x, g, &taps, n0, gn, &mut col);
        let beta = if n0 == 0 { 0.0 } else { 1.0 };
        let col_t = MatRef::row_major_t(&col, ld);
        if gn == 1 {
            let dy_i = &dy[n0 * g.c_out * hw..][..g.c_out * hw];
            sgemm(g.c_out, rows, ld, 1.0, MatRef::row_major(dy_i, ld), col_t, beta, &mut dw, rows);
        } else {
            gather_y_par(dy, g, n0, gn, &mut dy_g);
            sgemm(g.c_out, rows, ld, 1.0, MatRef::row_major(&dy_g, ld), col_t, beta, &mut dw, rows);
        }
    }
    dw
}
