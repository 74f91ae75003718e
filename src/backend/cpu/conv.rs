//! Convolution as im2col + gemm, in the three directions: forward, backward to the data and
//! backward to the weight. conv_transpose2d uses the same three with roles swapped (see
//! `ConvGeom`), so this file serves both ops.
//!
//! Images are processed in groups: a group's im2col matrix has one column per output pixel of
//! every image in it, [c_in·kh·kw, group·h_out·w_out], so one gemm covers the group. Small
//! late layers (4×4 outputs) thus still give the gemm a wide N. The group size depends only on
//! the shapes, so the weight-gradient summation order — and its bits — never depends on the
//! thread count.

use super::gemm::{MatRef, sgemm};
use crate::backend::ConvGeom;
use rayon::prelude::*;

/// Largest im2col matrix kept per group, in floats (16 MiB).
const COL_BUDGET: usize = 1 << 22;

fn rows(g: &ConvGeom) -> usize {
    g.c_in * g.kh * g.kw
}

fn hw_out(g: &ConvGeom) -> usize {
    g.h_out * g.w_out
}

fn group_size(g: &ConvGeom) -> usize {
    (COL_BUDGET / (rows(g) * hw_out(g)).max(1)).clamp(1, g.n.max(1))
}

/// Images n0..n0+gn of x into col [rows, gn·hw_out]; out-of-image taps read as zero.
fn im2col(x: &[f32], g: &ConvGeom, n0: usize, gn: usize, col: &mut [f32]) {
    let (hw, plane) = (hw_out(g), g.h_in * g.w_in);
    let ld = gn * hw;
    col[..rows(g) * ld].par_chunks_mut(ld).enumerate().for_each(|(r, row)| {
        let (c, ki, kj) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        for i in 0..gn {
            let src = &x[((n0 + i) * g.c_in + c) * plane..][..plane];
            let dst = &mut row[i * hw..][..hw];
            for oy in 0..g.h_out {
                let out_row = &mut dst[oy * g.w_out..][..g.w_out];
                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                if iy < 0 || iy >= g.h_in as isize {
                    out_row.fill(0.0);
                    continue;
                }
                let src_row = &src[iy as usize * g.w_in..][..g.w_in];
                for (ox, o) in out_row.iter_mut().enumerate() {
                    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                    *o = if ix >= 0 && ix < g.w_in as isize { src_row[ix as usize] } else { 0.0 };
                }
            }
        }
    });
}

/// The adjoint of im2col: sum col [rows, gn·hw_out] back into images n0..n0+gn of dx.
/// Each task owns one (image, channel) plane, so the additions into a pixel happen in a
/// fixed order.
fn col2im(col: &[f32], g: &ConvGeom, n0: usize, gn: usize, dx: &mut [f32]) {
    let (hw, plane) = (hw_out(g), g.h_in * g.w_in);
    let ld = gn * hw;
    let planes = &mut dx[n0 * g.c_in * plane..(n0 + gn) * g.c_in * plane];
    planes.par_chunks_mut(plane).enumerate().for_each(|(idx, dst)| {
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
    });
}

/// NCHW images n0..n0+gn of y (c_out channels) to [c_out, gn·hw_out].
fn gather_y(y: &[f32], g: &ConvGeom, n0: usize, gn: usize, out: &mut [f32]) {
    let hw = hw_out(g);
    out[..g.c_out * gn * hw].par_chunks_mut(gn * hw).enumerate().for_each(|(co, row)| {
        for i in 0..gn {
            row[i * hw..][..hw].copy_from_slice(&y[((n0 + i) * g.c_out + co) * hw..][..hw]);
        }
    });
}

/// The inverse of `gather_y`.
fn scatter_y(src: &[f32], g: &ConvGeom, n0: usize, gn: usize, y: &mut [f32]) {
    let hw = hw_out(g);
    let planes = &mut y[n0 * g.c_out * hw..(n0 + gn) * g.c_out * hw];
    planes.par_chunks_mut(hw).enumerate().for_each(|(idx, dst)| {
        let (i, co) = (idx / g.c_out, idx % g.c_out);
        dst.copy_from_slice(&src[co * gn * hw + i * hw..][..hw]);
    });
}

fn groups(g: &ConvGeom) -> impl Iterator<Item = (usize, usize)> {
    let gs = group_size(g);
    let n = g.n;
    (0..n).step_by(gs).map(move |n0| (n0, gs.min(n - n0)))
}

/// y = conv2d(x, w): per group, y_g [c_out, gn·hw] = w [c_out, rows] · col [rows, gn·hw].
pub fn forward(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (rows, hw, gs) = (rows(g), hw_out(g), group_size(g));
    let mut y = vec![0.0; g.y_len()];
    let mut col = vec![0.0; rows * gs * hw];
    let mut y_g = vec![0.0; g.c_out * gs * hw];
    for (n0, gn) in groups(g) {
        let ld = gn * hw;
        im2col(x, g, n0, gn, &mut col);
        sgemm(
            g.c_out,
            ld,
            rows,
            1.0,
            MatRef::row_major(w, rows),
            MatRef::row_major(&col, ld),
            0.0,
            &mut y_g,
            ld,
        );
        scatter_y(&y_g, g, n0, gn, &mut y);
    }
    y
}

/// dx = conv2d's adjoint applied to dy: col = wᵀ · dy_g, then col2im.
pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (rows, hw, gs) = (rows(g), hw_out(g), group_size(g));
    let mut dx = vec![0.0; g.x_len()];
    let mut col = vec![0.0; rows * gs * hw];
    let mut dy_g = vec![0.0; g.c_out * gs * hw];
    for (n0, gn) in groups(g) {
        let ld = gn * hw;
        gather_y(dy, g, n0, gn, &mut dy_g);
        let w_t = MatRef::row_major_t(w, rows);
        sgemm(rows, ld, g.c_out, 1.0, w_t, MatRef::row_major(&dy_g, ld), 0.0, &mut col, ld);
        col2im(&col, g, n0, gn, &mut dx);
    }
    dx
}

/// dw = Σ_groups dy_g · colᵀ, groups summed in batch order.
pub fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (rows, hw, gs) = (rows(g), hw_out(g), group_size(g));
    let mut dw = vec![0.0; g.w_len()];
    let mut col = vec![0.0; rows * gs * hw];
    let mut dy_g = vec![0.0; g.c_out * gs * hw];
    for (n0, gn) in groups(g) {
        let ld = gn * hw;
        im2col(x, g, n0, gn, &mut col);
        gather_y(dy, g, n0, gn, &mut dy_g);
        let beta = if n0 == 0 { 0.0 } else { 1.0 };
        let col_t = MatRef::row_major_t(&col, ld);
        sgemm(g.c_out, rows, ld, 1.0, MatRef::row_major(&dy_g, ld), col_t, beta, &mut dw, rows);
    }
    dw
}
