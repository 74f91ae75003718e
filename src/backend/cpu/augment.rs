//! translate_cutout: DiffAugment's shift and cut, forward and adjoint, as kernels/augment.cu
//! states them. Each output element is one read (or zero), so any split gives the same bits.

use rayon::prelude::*;

/// x [n, c, h, w]; `params` six per image: dy, dx, cut rows [y0, y1), cut columns [x0, x1).
pub fn translate_cutout(x: &[f32], params: &[f32], [n, c, h, w]: [usize; 4], backward: bool) -> Vec<f32> {
    assert_eq!((x.len(), params.len()), (n * c * h * w, 6 * n), "translate_cutout: lengths");
    let mut out = super::pool::take(x.len());
    let plane = h * w;
    out.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().for_each(|(bc, (o, x))| {
        let q = &params[6 * (bc / c)..][..6];
        let (dy, dx) = (q[0] as isize, q[1] as isize);
        let [y0, y1, x0, x1] = [q[2], q[3], q[4], q[5]].map(|v| v as isize);
        for i in 0..h as isize {
            for j in 0..w as isize {
                // The output pixel and the input pixel it reads; backward, the reverse.
                let (oi, oj) = if backward { (i + dy, j + dx) } else { (i, j) };
                let (si, sj) = if backward { (oi, oj) } else { (i - dy, j - dx) };
                let cut = (y0..y1).contains(&oi) && (x0..x1).contains(&oj);
                let inside = (0..h as isize).contains(&si) && (0..w as isize).contains(&sj);
                o[(i * w as isize + j) as usize] =
                    if !cut && inside { x[(si * w as isize + sj) as usize] } else { 0.0 };
            }
        }
    });
    out
}
