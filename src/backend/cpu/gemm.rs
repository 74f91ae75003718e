//! Single-precision GEMM for the CPU backend.
//!
//! A packed, cache-blocked SGEMM in the BLIS / GotoBLAS style:
//!
//! ```text
//! for ib in 0..m step MB (4096)                (caps the size of the packed A block)
//!   for pc in 0..k step KC (256)               (k is NEVER split across threads)
//!     pack A[ib.., pc..] into MR-row panels    (parallel)
//!     for jc in 0..n step NC (4096)
//!       pack B[pc.., jc..] into NR-column panels (parallel)
//!       parallel over a 2-D grid of tasks (rows × columns of the C block):
//!         for column chunk (NCL2 = 1024 columns of packed B, kept in L2):
//!           for MR panel of A (kept in L1): for NR panel of B: micro-kernel
//! ```
//!
//! * Packing handles any strides (so transposes are free for the caller: `MatRef::t`) and pads
//!   panels with zeros; the micro-kernels store edge tiles with masks, so every element of C
//!   goes through exactly the same arithmetic whatever the tiling around it.
//! * Panels that would be reused at most twice are read in place instead of packed when the
//!   layout allows (A with unit row stride, i.e. a transposed row-major A; B with unit column
//!   stride, i.e. row-major B). Row-major A panels are packed with AVX-512 gathers,
//!   full transposed B panels with 16×16 register transposes, full row-major B panels eight
//!   rows at a time walking B's rows.
//! * An A multiplied by many B (a convolution weight by each task's im2col matrix) can be
//!   packed once up front: [`PackedA`] and [`sgemm_serial_packed`]; so can an A stored as
//!   blocks of columns (NCHW planes read as one [c, n·hw] matrix, backward-weight's dy),
//!   without gathering it first: [`PackedA::from_column_blocks`]. A B can be written by its
//!   producer straight into the packed panels ([`PackedBLayout`], the convolutions' im2col):
//!   [`sgemm_serial_prepacked`], [`sgemm_serial_prepacked_b`].
//! * Parallel problems are split into independent sub-GEMMs (one rayon region, no barriers),
//!   except wide, short ones (m ≤ 512, n ≥ 1024 a thread, m·n·k ≥ [`SPLIT_MAX_MNK`]), which
//!   pack A once and run 1024-column tasks that each pack their own B panels, and, on more
//!   than [`SPLIT_MAX_THREADS`] threads, large ones (m·n·k ≥ [`SPLIT_MAX_MNK`]), which share
//!   packed panels between threads.
//! * Tiny problems (m·n·k < [`SMALL_MNK`]) take a direct loop; m == 1 or n == 1 a gemv loop.
//!   Only problems with m·n·k ≥ [`PARALLEL_MNK`] use rayon.
//!
//! Determinism: the blocking depends only on the selected kernel path and the shape, never on
//! the thread count, and each element of C is accumulated over k in a fixed sequential order
//! (one FMA chain per KC block, then `alpha*ab + c` across KC blocks). The result is therefore
//! bit-identical whatever the rayon thread count (including nested calls from inside rayon
//! tasks), and run to run on the same machine and path.
//!
//! Micro-kernels (picked once at run time, see [`gemm_kernel_name`]):
//! * `avx512`: 12×32 tile (24 zmm accumulators), AVX-512F FMA, B prefetched 8 rows ahead;
//!   for n ≤ 16 a 24×16 tile. Alone on L2-resident B panels the old 14×32 tile (28
//!   accumulators) ran at 75% of an FMA loop, 80% with the prefetch, and 12×32 at 85%; 12
//!   rows also tile the DCGAN's 64·2^k output channels with less padding (128 rows: 11
//!   panels of 12, not 10 of 14).
//! * `avx2`:   6×16 tile (12 ymm accumulators), AVX2 + FMA;
//! * `scalar`: 4×8 portable tile (auto-vectorised to the baseline SIMD).

// Index loops mirror the register-tile math; the `let x = x;` rebinds make closures capture the
// whole Send/Sync wrapper rather than its raw-pointer field.
#![allow(clippy::needless_range_loop, clippy::redundant_locals)]

use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

/// A read-only matrix operand: element (i, j) lives at `data[i * row_stride + j * col_stride]`.
/// A transpose is the same data with the strides swapped.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major matrix with `cols` columns (leading dimension `cols`).
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn row_major_t(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, row_stride: 1, col_stride: cols }
    }
    pub fn t(self) -> Self {
        MatRef { data: self.data, row_stride: self.col_stride, col_stride: self.row_stride }
    }
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// Which micro-kernel family runs the packed GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// AVX-512F, 12×32 register tile.
    Avx512,
    /// AVX2 + FMA, 6×16 register tile.
    Avx2,
    /// Portable Rust, 4×8 tile.
    Scalar,
}

impl KernelPath {
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => false,
            KernelPath::Scalar => true,
        }
    }

    /// Every path this CPU can run, fastest first.
    pub fn available() -> Vec<KernelPath> {
        [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Scalar]
            .into_iter()
            .filter(|p| p.is_available())
            .collect()
    }

    /// The path `sgemm` uses (detected once).
    pub fn detected() -> KernelPath {
        static PATH: OnceLock<KernelPath> = OnceLock::new();
        *PATH.get_or_init(|| KernelPath::available()[0])
    }
}

/// Name of the micro-kernel path `sgemm` picked on this CPU: "avx512", "avx2" or "scalar".
pub fn gemm_kernel_name() -> &'static str {
    KernelPath::detected().name()
}

/// Below this many multiply-adds (m·n·k), `sgemm` runs a direct loop without packing.
pub const SMALL_MNK: usize = 4 * 1024;
/// Below this many multiply-adds (m·n·k), `sgemm` stays on the calling thread.
pub const PARALLEL_MNK: usize = 1 << 20;

/// C = alpha * A * B + beta * C, with A m×k, B k×n and C m×n row-major (leading dimension ldc).
/// `beta == 0` overwrites C without reading it (NaNs in C do not propagate).
/// `alpha == 0` (or `k == 0`) does not read A or B.
/// Results are bit-identical whatever the rayon thread count: k is never split across threads.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_impl(KernelPath::detected(), true, true, m, n, k, alpha, a, b, beta, c, ldc, None)
}

/// [`sgemm`] on the calling thread only: for callers that already parallelise over
/// independent problems (the convolutions run one gemm per group of images per task), so the
/// operands stay in that core's caches and no nested parallel region is opened.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_serial(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_impl(KernelPath::detected(), true, false, m, n, k, alpha, a, b, beta, c, ldc, None)
}

/// [`sgemm`] on an explicitly chosen micro-kernel path (for tests and benchmarks). Unlike
/// `sgemm` it always takes the packed path (no direct loop for tiny sizes), so tiny problems
/// exercise the micro-kernel's edge handling. Panics if the CPU cannot run `path`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    path: KernelPath,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_impl(path, false, true, m, n, k, alpha, a, b, beta, c, ldc, None)
}

#[allow(clippy::too_many_arguments)]
fn sgemm_impl(
    path: KernelPath,
    allow_small: bool,
    allow_parallel: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    pre: Option<&PackedA>,
) {
    check_extents(m, n, k, &a, &b, c, ldc);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    assert!(path.is_available(), "sgemm: kernel path {:?} is not supported by this CPU", path);
    let mnk = m.saturating_mul(n).saturating_mul(k);
    if allow_small && mnk < SMALL_MNK {
        small_gemm(m, n, k, alpha, a, b, beta, c, ldc);
        return;
    }
    let parallel = allow_parallel && mnk >= PARALLEL_MNK && rayon::current_num_threads() > 1;
    if allow_small && (n == 1 || m == 1) {
        gemv(m, n, k, alpha, a, b, beta, c, ldc, parallel);
        return;
    }
    let cp = CPtr(c.as_mut_ptr());
    // SAFETY: extents checked above; the path is supported by this CPU.
    unsafe {
        match path {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 if n <= 16 => {
                gemm_top::<x86::Avx512Narrow>(m, n, k, alpha, a, b, beta, cp, ldc, parallel, pre)
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => gemm_top::<x86::Avx512>(m, n, k, alpha, a, b, beta, cp, ldc, parallel, pre),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => gemm_top::<x86::Avx2>(m, n, k, alpha, a, b, beta, cp, ldc, parallel, pre),
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => unreachable!(),
            KernelPath::Scalar => {
                gemm_top::<ScalarKernel>(m, n, k, alpha, a, b, beta, cp, ldc, parallel, pre)
            }
        }
    }
}

/// Plain triple-loop reference (f32 accumulation, k in order). Slow; for tests and benches.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_naive(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    check_extents(m, n, k, &a, &b, c, ldc);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a.at(i, p) * b.at(p, j);
            }
            let cij = &mut c[i * ldc + j];
            *cij = if beta == 0.0 { alpha * acc } else { alpha * acc + beta * *cij };
        }
    }
}

/// A left operand packed once into the micro-kernel's panels, for a caller that multiplies
/// the same A by many right operands (a convolution weight by each task's im2col matrix):
/// [`sgemm_serial_packed`] then skips packing A, which otherwise costs every task a pass over
/// the whole weight. The source stays attached, so a call that picks another kernel (or a
/// shape too big to prepack) packs from it as usual and gets the same bits.
pub struct PackedA<'a> {
    src: MatRef<'a>,
    m: usize,
    k: usize,
    /// MR and KC of the kernel the panels were packed for; `mr == 0`: not packed.
    mr: usize,
    kc: usize,
    /// KC block `q` starts at `q·KC·mt·MR`; within it, panel `ip` at `ip·MR·kc`. `None` in a
    /// [`PackedA::block`], which borrows its parent's.
    panels: Option<PackBuf>,
    /// Aligned start of the panels of this operand's first KC block.
    base: *const f32,
    /// Panels per KC block of the whole packed matrix, and this operand's first one.
    mt: usize,
    panel0: usize,
}
// SAFETY: `base` points into the owned, read-only `panels`.
unsafe impl Send for PackedA<'_> {}
unsafe impl Sync for PackedA<'_> {}

impl<'a> PackedA<'a> {
    /// Pack the m×k matrix `a` for the kernel `sgemm` uses on this CPU (in parallel).
    pub fn new(m: usize, k: usize, a: MatRef<'a>) -> PackedA<'a> {
        let need = needed_len(m, k, a.row_stride, a.col_stride);
        assert!(
            need.is_some_and(|l| l <= a.data.len()),
            "PackedA: A ({m}x{k}) needs {need:?} elements, has {}",
            a.data.len()
        );
        match KernelPath::detected() {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => Self::for_kernel::<x86::Avx512>(m, k, a),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => Self::for_kernel::<x86::Avx2>(m, k, a),
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => unreachable!(),
            KernelPath::Scalar => Self::for_kernel::<ScalarKernel>(m, k, a),
        }
    }

    /// Packed for kernel `K` (whose extents the caller checked).
    fn for_kernel<K: Micro>(m: usize, k: usize, a: MatRef<'a>) -> PackedA<'a> {
        let mut pa = Self::unpacked(m, k, a);
        pa.pack::<K>();
        pa
    }

    /// m×k from `src`, no panels yet.
    fn unpacked(m: usize, k: usize, src: MatRef<'a>) -> PackedA<'a> {
        PackedA { src, m, k, mr: 0, kc: 0, panels: None, base: std::ptr::null(), mt: 0, panel0: 0 }
    }

    fn pack<K: Micro>(&mut self) {
        let (m, k, mr) = (self.m, self.k, K::MR);
        if m == 0 || k == 0 {
            return;
        }
        let mt = m.div_ceil(mr);
        let mut buf = PackBuf::take_from(&PACKED_A_CACHE, mt * mr * k);
        let dst = CPtr(buf.ptr());
        (self.panels, self.base) = (Some(buf), dst.0);
        let src = self.src;
        // A task packs up to 16 panels of one KC block.
        let groups = mt.div_ceil(16);
        (0..k.div_ceil(K::KC) * groups).into_par_iter().for_each(|t| {
            let dst = dst;
            let (q, panels) = (t / groups, (t % groups) * 16..((t % groups) * 16 + 16).min(mt));
            let (pc, kc) = (q * K::KC, K::KC.min(k - q * K::KC));
            // SAFETY: each task writes its own panels inside the buffer; extents checked above.
            unsafe {
                let block = dst.0.add(pc * mt * mr);
                if src.row_stride == 1 {
                    // Column-major A (a transposed weight): all the group's panels per column.
                    let i0 = panels.start * mr;
                    let (rows, np) = ((m - i0).min(panels.len() * mr), panels.len());
                    pack_a_columns_dyn::<K>(&src, i0, rows, pc, kc, np, block.add(i0 * kc));
                } else {
                    for ip in panels {
                        let rows = mr.min(m - ip * mr);
                        pack_a_panel_dyn::<K>(&src, ip * mr, pc, rows, kc, block.add(ip * mr * kc));
                    }
                }
            }
        });
        (self.mr, self.kc, self.mt) = (mr, K::KC, mt);
    }

    /// An m×`layout.k` A stored as blocks of `cols` columns, block b (columns b·cols..) the
    /// row-major m×cols matrix at `data[b·stride..]` (NCHW images' planes read as one
    /// [c, n·hw] matrix), packed on this thread for the kernel that multiplies a B in
    /// `layout`, with no gathered copy of the blocks first. None where there is no such
    /// kernel or its KC is not a multiple of `cols`. It has no source to repack from: only
    /// [`sgemm_serial_prepacked`] with a B in `layout` takes it.
    pub fn from_column_blocks(
        m: usize,
        data: &'a [f32],
        cols: usize,
        stride: usize,
        layout: PackedBLayout,
    ) -> Option<PackedA<'a>> {
        let k = layout.k;
        let blocks = k.div_ceil(cols.max(1));
        assert!(
            cols > 0 && k.is_multiple_of(cols) && stride >= m * cols,
            "PackedA::from_column_blocks: {k} columns in blocks of {cols}, {stride} floats apart, for {m} rows"
        );
        assert!(
            m == 0 || blocks == 0 || data.len() >= (blocks - 1) * stride + m * cols,
            "PackedA::from_column_blocks: {} floats, {blocks} blocks of {m}x{cols} {stride} apart need more",
            data.len()
        );
        let mut pa = Self::unpacked(m, k, MatRef { data: &[], row_stride: 0, col_stride: 0 });
        // One MB block only (see `panels`): there is no source to repack from past it.
        #[cfg(target_arch = "x86_64")]
        if layout.is_supported()
            && layout.kc.is_multiple_of(cols)
            && m > 0
            && k > 0
            && m <= x86::Avx512::MB.min(x86::Avx512Narrow::MB)
        {
            if layout.nr == x86::Avx512Narrow::NR {
                pa.pack_blocks::<x86::Avx512Narrow>(data, cols, stride);
            } else {
                pa.pack_blocks::<x86::Avx512>(data, cols, stride);
            }
            return Some(pa);
        }
        let _ = (&mut pa, data, stride);
        None
    }

    /// An m×k A for the kernel that multiplies a B in `layout`, its panels written by `fill`
    /// rather than packed from a source (a weight transformed on its way into the panels):
    /// `fill(rows, depth, panel)` gets one panel's rows (the kernel's MR of them, fewer in the
    /// last) and one KC block of depth, and writes element (i, p) of the panel to
    /// panel[p·MR + i] for every i < MR (zeros past the rows) and p < depth.len(). Panels are
    /// filled in parallel. None where there is no such kernel. As with
    /// [`PackedA::from_column_blocks`] there is no source to repack from: only
    /// [`sgemm_serial_prepacked`] with a B in `layout` takes it, through blocks of at most
    /// one MB block of rows ([`PackedBLayout::a_panel_rows`] gives the MR).
    pub fn from_panels(
        m: usize,
        k: usize,
        layout: PackedBLayout,
        fill: impl Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync,
    ) -> Option<PackedA<'static>> {
        let mut pa = PackedA::unpacked(m, k, MatRef { data: &[], row_stride: 0, col_stride: 0 });
        #[cfg(target_arch = "x86_64")]
        if layout.is_supported() && m > 0 && k > 0 {
            if layout.nr == x86::Avx512Narrow::NR {
                pa.pack_with::<x86::Avx512Narrow>(fill);
            } else {
                pa.pack_with::<x86::Avx512>(fill);
            }
            return Some(pa);
        }
        let _ = (&mut pa, layout, fill);
        None
    }

    fn pack_with<K: Micro>(&mut self, fill: impl Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync) {
        let (m, k, mr) = (self.m, self.k, K::MR);
        let mt = m.div_ceil(mr);
        let mut buf = PackBuf::take_from(&PACKED_A_CACHE, mt * mr * k);
        let dst = CPtr(buf.ptr());
        (0..k.div_ceil(K::KC) * mt).into_par_iter().for_each(|t| {
            let dst = dst;
            let (pc, ip) = ((t / mt) * K::KC, t % mt);
            let kc = K::KC.min(k - pc);
            // SAFETY: panel ip of the KC block at pc is mr·kc floats inside the mt·mr·k taken,
            // and each task writes its own panel.
            let panel =
                unsafe { std::slice::from_raw_parts_mut(dst.0.add(pc * mt * mr + ip * mr * kc), mr * kc) };
            fill(ip * mr..(ip * mr + mr).min(m), pc..pc + kc, panel);
        });
        (self.panels, self.base) = (Some(buf), dst.0);
        (self.mr, self.kc, self.mt) = (mr, K::KC, mt);
    }

    fn pack_blocks<K: Micro>(&mut self, data: &[f32], cols: usize, stride: usize) {
        let (m, k, mr) = (self.m, self.k, K::MR);
        assert!(m <= K::MB && K::KC.is_multiple_of(cols));
        let mt = m.div_ceil(mr);
        let mut buf = PackBuf::take_from(&PACKED_A_CACHE, mt * mr * k);
        let dst = buf.ptr();
        for pc in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - pc);
            for ip in 0..mt {
                let rows = mr.min(m - ip * mr);
                // SAFETY: panel ip of the KC block at pc lies inside the mt·mr·k floats taken;
                // each block's columns q - pc.. of it, as the blocks cover the block's depth.
                unsafe {
                    let panel = dst.add(pc * mt * mr + ip * mr * kc);
                    for q in (pc..pc + kc).step_by(cols) {
                        let block = MatRef::row_major(&data[(q / cols) * stride..], cols);
                        pack_a_panel_dyn::<K>(&block, ip * mr, 0, rows, cols, panel.add((q - pc) * mr));
                    }
                }
            }
        }
        (self.panels, self.base) = (Some(buf), dst);
        (self.mr, self.kc, self.mt) = (mr, K::KC, mt);
    }

    /// The row count `PackedA::block` bands must start at a multiple of (1 where A is not packed).
    pub fn panel_rows(&self) -> usize {
        self.mr.max(1)
    }

    /// Rows `rows` × columns `depth` of this A as an operand of its own, on the same panels: for
    /// a caller that multiplies A block by block (a convolution interleaving its im2col with the
    /// gemm, so each block of col is used while it is in L2). Where A is packed, `rows` must
    /// start on a panel boundary and `depth` on a KC block boundary, and end on one or at k.
    /// Blocks over depth, summed with `beta` = 1 after the first, give the bits of the whole.
    pub fn block(&self, rows: Range<usize>, depth: Range<usize>) -> PackedA<'_> {
        assert!(
            rows.start <= rows.end && rows.end <= self.m && depth.start <= depth.end && depth.end <= self.k,
            "PackedA::block: rows {rows:?}, depth {depth:?} outside {}x{}",
            self.m,
            self.k
        );
        let at = rows.start * self.src.row_stride + depth.start * self.src.col_stride;
        let src = MatRef { data: self.src.data.get(at..).unwrap_or(&[]), ..self.src };
        let mut b = PackedA { src, m: rows.len(), k: depth.len(), panels: None, ..*self };
        if self.mr != 0 {
            assert!(
                rows.start.is_multiple_of(self.mr)
                    && depth.start.is_multiple_of(self.kc)
                    && (depth.end == self.k || depth.len().is_multiple_of(self.kc)),
                "PackedA::block: rows {rows:?} / depth {depth:?} off the {}-row panels / {}-deep blocks",
                self.mr,
                self.kc
            );
            // SAFETY: depth.start ≤ k, so the offset stays inside (or one past) the panels.
            b.base = unsafe { self.base.add(depth.start * self.mt * self.mr) };
            b.panel0 = self.panel0 + rows.start / self.mr;
        }
        b
    }

    /// The panels for kernel `K`, if they were packed for it and span one MB block (the
    /// driver's A blocks are then exactly these panels; a taller A serves through its
    /// [`PackedA::block`]s, and packs from its source where used whole).
    fn panels<K: Micro>(&self) -> Option<PrepackedPanels> {
        (self.mr == K::MR && self.kc == K::KC && self.m <= K::MB).then_some(PrepackedPanels {
            base: self.base,
            mt: self.mt,
            mr: self.mr,
            k: self.k,
            kc: self.kc,
            panel0: self.panel0,
        })
    }
}

/// A view of [`PackedA`]'s panels from panel `panel0` on (a sub-GEMM over lower rows).
#[derive(Clone, Copy)]
struct PrepackedPanels {
    base: *const f32,
    mt: usize,
    mr: usize,
    k: usize,
    kc: usize,
    panel0: usize,
}
// SAFETY: read-only view of a packed buffer that outlives the call.
unsafe impl Send for PrepackedPanels {}
unsafe impl Sync for PrepackedPanels {}

impl PrepackedPanels {
    /// Starting at row `m0` (a multiple of MR).
    fn skip_rows(self, m0: usize) -> PrepackedPanels {
        debug_assert_eq!(m0 % self.mr, 0);
        PrepackedPanels { panel0: self.panel0 + m0 / self.mr, ..self }
    }

    /// Panel `ip` of the KC block starting at depth `pc`.
    fn panel(&self, pc: usize, ip: usize) -> Panel {
        let kc = self.kc.min(self.k - pc);
        // SAFETY: pc < k and panel0 + ip < mt, so the offset is inside the packed buffer.
        let ptr = unsafe { self.base.add(pc * self.mt * self.mr + (self.panel0 + ip) * self.mr * kc) };
        Panel { ptr, ks: self.mr }
    }
}

/// [`sgemm_serial`] with A prepacked: C = alpha · A · B + beta · C, A m×k from `a`.
pub fn sgemm_serial_packed(
    a: &PackedA,
    n: usize,
    alpha: f32,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let (m, k) = (a.m, a.k);
    sgemm_impl(KernelPath::detected(), true, false, m, n, k, alpha, a.src, b, beta, c, ldc, Some(a))
}

/// Where a producer writes a k×n B operand so that [`sgemm_serial_prepacked`] reads it as its
/// packed panels, with no packing copy of its own: KC-deep blocks of NR-column panels, element
/// (p, j) of a panel at p·NR + j. Padding columns of the last panel must hold finite values
/// (their products land in C columns that are never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedBLayout {
    pub k: usize,
    pub n: usize,
    pub kc: usize,
    pub nr: usize,
}

impl PackedBLayout {
    /// The layout for a k×n B on this CPU, where the prepacked path exists: the AVX-512
    /// kernel's (n ≤ 16 takes a narrow kernel that packs its own).
    pub fn new(k: usize, n: usize) -> Option<PackedBLayout> {
        #[cfg(target_arch = "x86_64")]
        if KernelPath::detected() == KernelPath::Avx512 && n > 16 {
            const { assert!(x86::Avx512::KC.is_power_of_two()) };
            return Some(PackedBLayout { k, n, kc: x86::Avx512::KC, nr: x86::Avx512::NR });
        }
        let _ = (k, n);
        None
    }

    /// The layout for a k×n B whose panels pad n least: 16-wide panels (the 24×16 kernel's)
    /// where n's last 32-wide panel would be at most half full, else [`PackedBLayout::new`]'s.
    pub fn tightest(k: usize, n: usize) -> Option<PackedBLayout> {
        #[cfg(target_arch = "x86_64")]
        if KernelPath::detected() == KernelPath::Avx512 && n > 16 && (1..=16).contains(&(n % 32)) {
            return Some(PackedBLayout { k, n, kc: x86::Avx512Narrow::KC, nr: x86::Avx512Narrow::NR });
        }
        PackedBLayout::new(k, n)
    }

    /// Whether the gemm on this CPU takes B packed in this layout.
    fn is_supported(&self) -> bool {
        Some(*self) == PackedBLayout::new(self.k, self.n)
            || Some(*self) == PackedBLayout::tightest(self.k, self.n)
    }

    /// The rows of one A panel of the kernel that takes B in this layout: where
    /// [`PackedA::from_panels`]' blocks of rows may start.
    pub fn a_panel_rows(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.nr == x86::Avx512Narrow::NR {
            return x86::Avx512Narrow::MR;
        }
        #[cfg(target_arch = "x86_64")]
        return x86::Avx512::MR;
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no prepacked-B layouts off x86-64")
    }

    /// Floats the packed operand takes.
    pub fn len(&self) -> usize {
        self.k * self.n.div_ceil(self.nr) * self.nr
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zeros the padding columns of the last panel (n up to a whole panel) in every row of
    /// `b`, for a producer that writes only the n real columns: the gemm then reads zeros
    /// there, not stale values.
    pub fn zero_padding(&self, b: &mut [f32]) {
        if self.n.is_multiple_of(self.nr) {
            return;
        }
        for p in 0..self.k {
            let at = self.offset(p, self.n);
            b[at..at + self.nr - self.n % self.nr].fill(0.0);
        }
    }

    /// Where element (p, j) goes.
    pub fn offset(&self, p: usize, j: usize) -> usize {
        let (base, stride) = self.row(p);
        base + (j / self.nr) * stride + j % self.nr
    }

    /// Row p as (where element (p, 0) goes, the distance between its panels): element (p, j)
    /// is at base + (j / nr)·stride + j % nr. Shifts, not divisions (kc is a power of two):
    /// producers call this once per row of a few dozen floats.
    #[inline]
    pub fn row(&self, p: usize) -> (usize, usize) {
        let shift = self.kc.trailing_zeros();
        let (q, pk) = (p >> shift, p & (self.kc - 1));
        let kcq = self.kc.min(self.k - (q << shift));
        ((q << shift) * self.n.div_ceil(self.nr) * self.nr + pk * self.nr, self.nr * kcq)
    }
}

/// A B operand already in [`PackedBLayout`].
#[derive(Clone, Copy)]
struct PrepackedB {
    base: *const f32,
    layout: PackedBLayout,
}
// SAFETY: a read-only view of the caller's buffer for the duration of the call.
unsafe impl Send for PrepackedB {}
unsafe impl Sync for PrepackedB {}

impl PrepackedB {
    /// The panel holding columns j.. (j a multiple of NR) of the KC block at depth `pc`.
    fn panel(&self, pc: usize, j: usize) -> Panel {
        // SAFETY: the caller checked the buffer holds layout.len() floats; (pc, j) is inside.
        Panel { ptr: unsafe { self.base.add(self.layout.offset(pc, j)) }, ks: self.layout.nr }
    }
}

/// [`sgemm_serial_packed`] with B already packed by its producer (`b` in `layout`, from
/// [`PackedBLayout::new`]): C = A·B + beta·C on the calling thread.
pub fn sgemm_serial_prepacked(
    a: &PackedA,
    b: &[f32],
    layout: PackedBLayout,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    prepacked_b_gemm(a.m, a.k, a.src, Some(a), b, layout, beta, c, ldc);
}

/// [`sgemm_serial`] (alpha 1) with B already packed by its producer, A (m×k) packed here.
pub fn sgemm_serial_prepacked_b(
    m: usize,
    a: MatRef,
    b: &[f32],
    layout: PackedBLayout,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let need = needed_len(m, layout.k, a.row_stride, a.col_stride);
    assert!(
        need.is_none_or(|l| l <= a.data.len()),
        "sgemm_serial_prepacked_b: A ({m}x{}) needs {need:?} elements, has {}",
        layout.k,
        a.data.len()
    );
    prepacked_b_gemm(m, layout.k, a, None, b, layout, beta, c, ldc);
}

#[allow(clippy::too_many_arguments)]
fn prepacked_b_gemm(
    m: usize,
    k: usize,
    a: MatRef,
    pre_a: Option<&PackedA>,
    b: &[f32],
    layout: PackedBLayout,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let n = layout.n;
    assert_eq!(layout.k, k, "prepacked B has depth {}, A {k}", layout.k);
    assert!(b.len() >= layout.len(), "prepacked B holds {} floats, needs {}", b.len(), layout.len());
    assert!(
        m == 0 || n == 0 || (ldc >= n && c.len() >= (m - 1) * ldc + n),
        "prepacked-B gemm: C ({} floats, ldc {ldc}) too small for {m}x{n}",
        c.len()
    );
    assert!(layout.is_supported(), "prepacked B: {layout:?} is not a layout this CPU's gemm takes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let pre_b = PrepackedB { base: b.as_ptr(), layout };
        let c = CPtr(c.as_mut_ptr());
        // SAFETY: extents checked above; the layouts exist only with AVX-512 present.
        unsafe {
            if layout.nr == x86::Avx512Narrow::NR {
                prepacked_b_run::<x86::Avx512Narrow>(m, k, a, pre_a, pre_b, beta, c, ldc)
            } else {
                prepacked_b_run::<x86::Avx512>(m, k, a, pre_a, pre_b, beta, c, ldc)
            }
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, pre_a);
}

/// `prepacked_b_gemm` on kernel `K`, the one its layout was made for: A's panels where they
/// were packed for `K`, else A packed here from its source.
#[allow(clippy::too_many_arguments)]
unsafe fn prepacked_b_run<K: Micro>(
    m: usize,
    k: usize,
    a: MatRef,
    pre_a: Option<&PackedA>,
    pre_b: PrepackedB,
    beta: f32,
    c: CPtr,
    ldc: usize,
) {
    let panels = pre_a.and_then(|p| p.panels::<K>());
    assert!(
        panels.is_some() || !a.data.is_empty(),
        "prepacked-B gemm: A has no source, and its panels are another kernel's or span more than one MB block"
    );
    let no_b = MatRef { data: &[], row_stride: 0, col_stride: 0 };
    // SAFETY: the caller checked the extents and that `K` runs on this CPU.
    unsafe { gemm_packed::<K>(m, pre_b.layout.n, k, 1.0, a, no_b, beta, c, ldc, false, panels, Some(pre_b)) }
}

// ------------------------------------------------------------------------------------------
// Checks and trivial paths
// ------------------------------------------------------------------------------------------

fn needed_len(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)?.checked_add(1)
}

fn check_extents(m: usize, n: usize, k: usize, a: &MatRef, b: &MatRef, c: &[f32], ldc: usize) {
    let need_a = needed_len(m, k, a.row_stride, a.col_stride);
    assert!(
        need_a.is_some_and(|l| l <= a.data.len()),
        "sgemm: A ({m}x{k}, row_stride {}, col_stride {}) needs {:?} elements but its slice has {}",
        a.row_stride,
        a.col_stride,
        need_a,
        a.data.len()
    );
    let need_b = needed_len(k, n, b.row_stride, b.col_stride);
    assert!(
        need_b.is_some_and(|l| l <= b.data.len()),
        "sgemm: B ({k}x{n}, row_stride {}, col_stride {}) needs {:?} elements but its slice has {}",
        b.row_stride,
        b.col_stride,
        need_b,
        b.data.len()
    );
    assert!(m <= 1 || ldc >= n, "sgemm: ldc ({ldc}) < n ({n}) for C ({m}x{n})");
    let need_c = needed_len(m, n, ldc, 1);
    assert!(
        need_c.is_some_and(|l| l <= c.len()),
        "sgemm: C ({m}x{n}, ldc {ldc}) needs {:?} elements but its slice has {}",
        need_c,
        c.len()
    );
}

fn scale_c(m: usize, n: usize, beta: f32, c: &mut [f32], ldc: usize) {
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|x| *x *= beta);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn small_gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                // SAFETY: extents checked by the caller.
                unsafe {
                    acc += *a.data.get_unchecked(i * a.row_stride + p * a.col_stride)
                        * *b.data.get_unchecked(p * b.row_stride + j * b.col_stride);
                }
            }
            let cij = &mut c[i * ldc + j];
            *cij = if beta == 0.0 { alpha * acc } else { alpha * acc + beta * *cij };
        }
    }
}

/// Dot product of two strided vectors in a fixed order (16 interleaved partial sums, then a
/// fixed reduction), so it vectorises and is deterministic.
#[inline]
fn dot_strided(x: &[f32], xs: usize, y: &[f32], ys: usize, k: usize) -> f32 {
    if xs == 1 && ys == 1 {
        let (x, y) = (&x[..k], &y[..k]);
        let mut acc = [0.0f32; 16];
        let xc = x.chunks_exact(16);
        let yc = y.chunks_exact(16);
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (xa, ya) in xc.zip(yc) {
            for l in 0..16 {
                acc[l] += xa[l] * ya[l];
            }
        }
        for (l, (a, b)) in xr.iter().zip(yr).enumerate() {
            acc[l] += a * b;
        }
        let mut s8 = [0.0f32; 8];
        for l in 0..8 {
            s8[l] = acc[l] + acc[l + 8];
        }
        ((s8[0] + s8[4]) + (s8[1] + s8[5])) + ((s8[2] + s8[6]) + (s8[3] + s8[7]))
    } else {
        let mut acc = 0.0f32;
        for p in 0..k {
            // SAFETY: extents checked by the caller.
            unsafe {
                acc += *x.get_unchecked(p * xs) * *y.get_unchecked(p * ys);
            }
        }
        acc
    }
}

/// Matrix-vector products (m == 1 or n == 1): no packing, memory-bound.
#[allow(clippy::too_many_arguments)]
fn gemv(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    let fin = |acc: f32, cij: &mut f32| {
        *cij = if beta == 0.0 { alpha * acc } else { alpha * acc + beta * *cij };
    };
    if n == 1 {
        // c[i*ldc] = A[i, :] · B[:, 0]
        let row = |i: usize, cij: &mut f32| {
            let acc = dot_strided(&a.data[i * a.row_stride..], a.col_stride, b.data, b.row_stride, k);
            fin(acc, cij);
        };
        if parallel {
            c.par_iter_mut()
                .step_by(ldc.max(1))
                .take(m)
                .enumerate()
                .with_min_len(16)
                .for_each(|(i, cij)| row(i, cij));
        } else {
            c.iter_mut().step_by(ldc.max(1)).take(m).enumerate().for_each(|(i, cij)| row(i, cij));
        }
    } else if b.row_stride == 1 || b.col_stride != 1 {
        // m == 1, each output is a dot product along a column of B.
        let col = |j: usize, cj: &mut f32| {
            let acc = dot_strided(a.data, a.col_stride, &b.data[j * b.col_stride..], b.row_stride, k);
            fin(acc, cj);
        };
        if parallel {
            c[..n].par_iter_mut().enumerate().with_min_len(16).for_each(|(j, cj)| col(j, cj));
        } else {
            c[..n].iter_mut().enumerate().for_each(|(j, cj)| col(j, cj));
        }
    } else {
        // m == 1, row-major B: accumulate rows of B (vectorises along n), k in order.
        let chunk = |j0: usize, cs: &mut [f32]| {
            let w = cs.len();
            let mut acc = vec![0.0f32; w];
            for p in 0..k {
                let ap = a.data[p * a.col_stride];
                let br = &b.data[p * b.row_stride + j0..p * b.row_stride + j0 + w];
                for (x, &y) in acc.iter_mut().zip(br) {
                    *x += ap * y;
                }
            }
            for (x, cj) in acc.into_iter().zip(cs.iter_mut()) {
                fin(x, cj);
            }
        };
        const W: usize = 512;
        if parallel {
            c[..n].par_chunks_mut(W).enumerate().for_each(|(t, cs)| chunk(t * W, cs));
        } else {
            c[..n].chunks_mut(W).enumerate().for_each(|(t, cs)| chunk(t * W, cs));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Packed driver
// ------------------------------------------------------------------------------------------

/// A micro-kernel family with its blocking parameters.
trait Micro {
    /// Register tile rows (broadcast from packed A).
    const MR: usize;
    /// Register tile columns (vector loads from packed B).
    const NR: usize;
    /// Depth of one packed block (k).
    const KC: usize;
    /// Columns of packed B a task streams through per pass (packed B chunk kept in L2).
    const NCL2: usize;
    /// Columns of one packed B block.
    const NC: usize;
    /// Rows of one packed A block (bounds memory).
    const MB: usize;
    /// Packing may use AVX-512: gathers for full row-major A panels, register transposes for
    /// full transposed B panels.
    const AVX512_PACK: bool = false;

    /// C[0..mr, 0..nr] = alpha * (Apanel · Bpanel) + beta * C (beta == 0: C not read).
    /// `a`: kc × MR panel, element (p, i) at a[p*ask + i]; `b`: kc × NR panel, element (p, j) at
    /// b[p*bsk + j]; `c` row stride ldc.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        ask: usize,
        b: *const f32,
        bsk: usize,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    );
}

#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks write disjoint regions of C.
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

const ALIGN_F32: usize = 16; // 64 bytes

thread_local! {
    // Packing-buffer caches, one for the driver's panels and one for `PackedA`s (which live
    // across many driver calls on the same thread). Taken (not borrowed) while in use, so a
    // nested or re-entrant use on the same thread simply allocates its own.
    static PACK_CACHE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACKED_A_CACHE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

type Cache = std::thread::LocalKey<Cell<Vec<f32>>>;

/// A packing buffer from a thread-local cache, 64-byte aligned; it goes back on drop (the
/// cache keeps the larger of two). Contents are unspecified: always packed before read.
struct PackBuf {
    v: Vec<f32>,
    cache: &'static Cache,
}

impl PackBuf {
    fn take(len: usize) -> PackBuf {
        Self::take_from(&PACK_CACHE, len)
    }

    fn take_from(cache: &'static Cache, len: usize) -> PackBuf {
        let mut v = cache.with(|c| c.take());
        let need = len + ALIGN_F32;
        if v.len() < need {
            v = Vec::new();
            v.resize(need, 0.0);
        }
        PackBuf { v, cache }
    }

    /// 64-byte aligned start.
    fn ptr(&mut self) -> *mut f32 {
        let p = self.v.as_mut_ptr();
        let off = p.align_offset(64);
        debug_assert!(off < ALIGN_F32);
        // SAFETY: buffer has ALIGN_F32 spare elements.
        unsafe { p.add(off) }
    }
}

impl Drop for PackBuf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        self.cache.with(|c| {
            let old = c.take();
            c.set(if old.len() >= v.len() { old } else { v });
        });
    }
}

/// Pack rows [i0, i0 + rows) × depth [p0, p0 + kc) of `a` into one MR-row panel, zero padded
/// past `rows`: element (i, p) at dst[p·MR + i]. B's panels are packed by it too, as Bᵀ's.
unsafe fn pack_a_panel<const MR: usize>(
    a: &MatRef,
    i0: usize,
    p0: usize,
    rows: usize,
    kc: usize,
    dst: *mut f32,
) {
    unsafe {
        let src = a.data.as_ptr();
        let (rs, cs) = (a.row_stride, a.col_stride);
        let base = src.add(i0 * rs + p0 * cs);
        if rows == MR && cs == 1 {
            // Row-major A: go in blocks of 8 k so reads stay contiguous and writes local.
            let mut p = 0;
            while p + 8 <= kc {
                for i in 0..MR {
                    let s = base.add(i * rs + p);
                    for q in 0..8 {
                        *dst.add((p + q) * MR + i) = *s.add(q);
                    }
                }
                p += 8;
            }
            while p < kc {
                for i in 0..MR {
                    *dst.add(p * MR + i) = *base.add(i * rs + p);
                }
                p += 1;
            }
        } else {
            for p in 0..kc {
                let d = dst.add(p * MR);
                for i in 0..MR {
                    *d.add(i) = if i < rows { *base.add(i * rs + p * cs) } else { 0.0 };
                }
            }
        }
    }
}

/// Pack `np` consecutive MR-row panels of a column-major A (unit row stride: column p is
/// contiguous), rows [i0, i0 + rows) × depth [p0, p0 + kc), the last panel zero padded:
/// panel j at dst[j·MR·kc ..], element (i, p) at [p·MR + i]. Columns are walked outermost, so
/// the reads run down each column rather than jumping a whole column stride per element.
unsafe fn pack_a_columns<const MR: usize>(
    a: &MatRef,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    np: usize,
    dst: *mut f32,
) {
    debug_assert_eq!(a.row_stride, 1);
    unsafe {
        for p in 0..kc {
            let col = a.data.as_ptr().add(i0 + (p0 + p) * a.col_stride);
            for j in 0..np {
                let (s, d) = (col.add(j * MR), dst.add(j * MR * kc + p * MR));
                let r = MR.min(rows - j * MR);
                if r == MR {
                    // A fixed-length copy: inlined, no call per panel row.
                    std::ptr::copy_nonoverlapping(s, d, MR);
                } else {
                    std::ptr::copy_nonoverlapping(s, d, r);
                    std::ptr::write_bytes(d.add(r), 0, MR - r);
                }
            }
        }
    }
}

fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Choose a (pm × pn) grid of tasks over an (mt × nt)-tile block for `threads` threads.
fn task_grid(mt: usize, nt: usize, threads: usize) -> (usize, usize) {
    if threads <= 1 {
        return (1, 1);
    }
    let mut best = (1, 1);
    let mut best_cost = f64::INFINITY;
    for pm in 1..=mt.min(4 * threads) {
        for pn in 1..=nt.min(4 * threads) {
            let tasks = pm * pn;
            let per = div_ceil(mt, pm) * div_ceil(nt, pn);
            // Rounds of work on `threads` threads, plus a small per-task overhead, plus a
            // penalty for repacking traffic when the columns are split.
            let cost = div_ceil(tasks, threads) as f64 * (per as f64 + 1.0) + 0.02 * (pn as f64) * mt as f64;
            if cost < best_cost - 1e-9 {
                best_cost = cost;
                best = (pm, pn);
            }
        }
    }
    best
}

/// Columns of one task where a wide, short product runs as column tasks (see `gemm_top`).
const COL_TASK: usize = 1024;
/// The most rows for column tasks: every task streams all of A's packed KC block (at most
/// 512 KiB, a quarter of L2) past its own B panels. Taller products share packed B panels.
const COL_TASK_MAX_M: usize = 512;

/// Parallel problems below this m·n·k are split into independent sub-GEMMs (one rayon
/// region, each task packs its own panels); larger ones share packed panels between threads
/// when there are more than [`SPLIT_MAX_THREADS`] of them.
pub const SPLIT_MAX_MNK: usize = 1 << 26;

/// Up to this many threads every parallel problem is split, whatever its size. A p×q grid of
/// tasks packs A q times and B p times; on two threads that repacking (a 1024³–2048³ split
/// in two column halves packs all of A on each core, about 4% of its time) costs less than
/// the shared-panel mode's three barriers per KC block and its cross-core reads. Split,
/// 1024³ ran 2–7% faster, 1024×1024×8192 4–8%, 768×768×32768 3–16%, 8192×128×2048 4–9%,
/// 2048³ and 1536³ within noise (five alternating rounds). With many threads each task's
/// repacked share grows, and shared panels are the usual answer; that was not measured here
/// (a 2-core machine), so the cap is conservative.
pub const SPLIT_MAX_THREADS: usize = 4;

/// Top level of the packed path: chooses how to use the threads.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_top<K: Micro>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: CPtr,
    ldc: usize,
    parallel: bool,
    pre: Option<&PackedA>,
) {
    // Prepacked panels serve only the kernel they were packed for.
    let pre = pre.and_then(|p| p.panels::<K>());
    unsafe {
        let threads = rayon::current_num_threads();
        if parallel
            && pre.is_none()
            && m * n * k >= SPLIT_MAX_MNK
            && m <= COL_TASK_MAX_M
            && n >= threads * COL_TASK
        {
            // Wide and short: A packed once and shared, each task a serial gemm over its own
            // columns, so every B panel is packed by the core that uses it, into its L2.
            let packed = PackedA::for_kernel::<K>(m, k, a);
            let pre = packed.panels::<K>();
            (0..n.div_ceil(COL_TASK)).into_par_iter().with_max_len(1).for_each(|t| {
                let c = c;
                let (n0, n1) = (t * COL_TASK, ((t + 1) * COL_TASK).min(n));
                let sb = MatRef { data: &b.data[n0 * b.col_stride..], ..b };
                gemm_packed::<K>(m, n1 - n0, k, alpha, a, sb, beta, CPtr(c.0.add(n0)), ldc, false, pre, None);
            });
            return;
        }
        if !parallel || (m * n * k >= SPLIT_MAX_MNK && threads > SPLIT_MAX_THREADS) {
            gemm_packed::<K>(m, n, k, alpha, a, b, beta, c, ldc, parallel, pre, None);
            return;
        }
        let (mt, nt) = (m.div_ceil(K::MR), n.div_ceil(K::NR));
        let (pm, pn) = task_grid(mt, nt, threads);
        let tasks = pm * pn;
        if tasks <= 1 {
            gemm_packed::<K>(m, n, k, alpha, a, b, beta, c, ldc, false, pre, None);
            return;
        }
        (0..tasks).into_par_iter().with_max_len(1).for_each(|t| {
            let c = c;
            let (t0, t1) = split(mt, pm, t / pn);
            let (u0, u1) = split(nt, pn, t % pn);
            let (m0, m1) = (t0 * K::MR, (t1 * K::MR).min(m));
            let (n0, n1) = (u0 * K::NR, (u1 * K::NR).min(n));
            let sa = MatRef { data: &a.data[m0 * a.row_stride..], ..a };
            let sb = MatRef { data: &b.data[n0 * b.col_stride..], ..b };
            gemm_packed::<K>(
                m1 - m0,
                n1 - n0,
                k,
                alpha,
                sa,
                sb,
                beta,
                CPtr(c.0.add(m0 * ldc + n0)),
                ldc,
                false,
                pre.map(|p| p.skip_rows(m0)),
                None,
            );
        });
    }
}

#[derive(Clone, Copy)]
struct Blocking {
    kc: usize,
    ncl2: usize,
    nc: usize,
    mb: usize,
}

fn blocking<K: Micro>() -> Blocking {
    Blocking { kc: K::KC, ncl2: K::NCL2, nc: K::NC, mb: K::MB }
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_packed<K: Micro>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: CPtr,
    ldc: usize,
    parallel: bool,
    pre: Option<PrepackedPanels>,
    pre_b: Option<PrepackedB>,
) {
    let (mr, nr) = (K::MR, K::NR);
    let bl = blocking::<K>();
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let kc_max = bl.kc.min(k);
    let mb_max = bl.mb.min(m).div_ceil(mr) * mr;
    let nc_max = bl.nc.min(n).div_ceil(nr) * nr;
    let a_len = if pre.is_some() { 0 } else { (mb_max * kc_max).div_ceil(ALIGN_F32) * ALIGN_F32 };
    let b_len = if pre_b.is_some() { 0 } else { nc_max * kc_max };
    let mut buf = PackBuf::take(a_len + b_len);
    let apack = buf.ptr();
    // SAFETY: the buffer holds a_len + b_len elements past the aligned start.
    let bpack = unsafe { apack.add(a_len) };
    // An operand whose panels are reused at most DIRECT_REUSE times is read in place when its
    // layout allows (A with unit row stride, B with unit column stride): full panels only, the
    // ragged last panel is still packed (zero padded).
    let a_direct = a.row_stride == 1 && nc_max / nr <= DIRECT_REUSE;
    let b_direct = pre_b.is_none() && b.col_stride == 1 && mb_max / mr <= DIRECT_REUSE;
    let mut apanels = vec![Panel { ptr: std::ptr::null(), ks: 0 }; mb_max / mr];
    let mut bpanels = vec![Panel { ptr: std::ptr::null(), ks: 0 }; nc_max / nr];

    for ib in (0..m).step_by(bl.mb) {
        let mb = bl.mb.min(m - ib);
        let mt = mb.div_ceil(mr);
        for pc in (0..k).step_by(bl.kc) {
            let kc = bl.kc.min(k - pc);
            let beta_eff = if pc == 0 { beta } else { 1.0 };
            // Pack (or point at) the A block.
            if let Some(pre) = pre {
                for (ip, panel) in apanels[..mt].iter_mut().enumerate() {
                    *panel = pre.panel(pc, ip);
                }
            } else {
                let ap = CPtr(apack);
                let pack_one = |(ip, panel): (usize, &mut Panel)| {
                    let ap = ap;
                    let rows = mr.min(mb - ip * mr);
                    if a_direct && rows == mr {
                        // SAFETY: in bounds (extents checked).
                        *panel = Panel {
                            ptr: unsafe { a.data.as_ptr().add(ib + ip * mr + pc * a.col_stride) },
                            ks: a.col_stride,
                        };
                    } else {
                        let dst = unsafe { ap.0.add(ip * mr * kc) };
                        unsafe { pack_a_panel_dyn::<K>(&a, ib + ip * mr, pc, rows, kc, dst) };
                        *panel = Panel { ptr: dst, ks: mr };
                    }
                };
                if threads > 1 && mt >= 4 && !a_direct {
                    apanels[..mt].par_iter_mut().enumerate().with_min_len(2).for_each(pack_one);
                } else {
                    apanels[..mt].iter_mut().enumerate().for_each(pack_one);
                }
            }
            for jc in (0..n).step_by(bl.nc) {
                let nc = bl.nc.min(n - jc);
                let nt = nc.div_ceil(nr);
                // A row-major B's full panels are packed a run of panels at a time, walking
                // the rows: each row of the run is one contiguous read.
                let rows_first = pre_b.is_none() && !b_direct && b.col_stride == 1;
                let full = if rows_first { nc / nr } else { 0 };
                if full > 0 {
                    let bp = CPtr(bpack);
                    let runs = if threads > 1 && full >= 4 { threads } else { 1 };
                    let pack_run = |r: usize| {
                        let bp = bp;
                        let (jp0, jp1) = split(full, runs, r);
                        unsafe { pack_b_rows::<K>(&b, pc, jc, jp0, jp1, kc, bp.0) };
                    };
                    if runs > 1 {
                        (0..runs).into_par_iter().with_max_len(1).for_each(pack_run);
                    } else {
                        pack_run(0);
                    }
                    for (jp, panel) in bpanels[..full].iter_mut().enumerate() {
                        *panel = Panel { ptr: unsafe { bpack.add(jp * nr * kc) }, ks: nr };
                    }
                }
                {
                    let bp = CPtr(bpack);
                    let pack_one = |(jp, panel): (usize, &mut Panel)| {
                        let jp = jp + full;
                        let bp = bp;
                        let cols = nr.min(nc - jp * nr);
                        if let Some(pre_b) = pre_b {
                            *panel = pre_b.panel(pc, jc + jp * nr);
                        } else if b_direct && cols == nr {
                            *panel = Panel {
                                ptr: unsafe { b.data.as_ptr().add(pc * b.row_stride + jc + jp * nr) },
                                ks: b.row_stride,
                            };
                        } else {
                            let dst = unsafe { bp.0.add(jp * nr * kc) };
                            unsafe { pack_b_panel_dyn::<K>(&b, pc, jc + jp * nr, cols, kc, dst) };
                            *panel = Panel { ptr: dst, ks: nr };
                        }
                    };
                    if threads > 1 && nt - full >= 4 && !b_direct && pre_b.is_none() {
                        bpanels[full..nt].par_iter_mut().enumerate().with_min_len(2).for_each(pack_one);
                    } else {
                        bpanels[full..nt].iter_mut().enumerate().for_each(pack_one);
                    }
                }
                let (pm, pn) = task_grid(mt, nt, threads);
                let (ap, bp) = (&apanels[..mt], &bpanels[..nt]);
                let run_task = |t: usize| {
                    let c = c;
                    let (tm, tn) = (t / pn, t % pn);
                    let (m0, m1) = split(mt, pm, tm);
                    let (n0, n1) = split(nt, pn, tn);
                    unsafe {
                        macro_kernel::<K>(
                            &bl,
                            ap,
                            bp,
                            kc,
                            mb,
                            nc,
                            m0,
                            m1,
                            n0,
                            n1,
                            alpha,
                            beta_eff,
                            c.0.add(ib * ldc + jc),
                            ldc,
                        )
                    };
                };
                let tasks = pm * pn;
                if tasks > 1 {
                    (0..tasks).into_par_iter().with_max_len(1).for_each(run_task);
                } else {
                    run_task(0);
                }
            }
        }
    }
}

/// Panels reused at most this many times are read in place instead of packed (when possible).
const DIRECT_REUSE: usize = 2;

/// One micro-panel: element (p, i) at ptr[p * ks + i].
#[derive(Clone, Copy)]
struct Panel {
    ptr: *const f32,
    ks: usize,
}
// SAFETY: panels point into read-only operands or packed buffers not written while shared.
unsafe impl Send for Panel {}
unsafe impl Sync for Panel {}

/// Even split of `total` items into `parts`: range of part `i`.
fn split(total: usize, parts: usize, i: usize) -> (usize, usize) {
    let base = total / parts;
    let rem = total % parts;
    let start = i * base + i.min(rem);
    let len = base + usize::from(i < rem);
    (start, start + len)
}

unsafe fn pack_a_panel_dyn<K: Micro>(
    a: &MatRef,
    i0: usize,
    p0: usize,
    rows: usize,
    kc: usize,
    dst: *mut f32,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if K::AVX512_PACK
            && a.col_stride == 1
            && a.row_stride.checked_mul(K::MR).is_some_and(|x| x < i32::MAX as usize)
        {
            let base = a.data.as_ptr().add(i0 * a.row_stride + p0);
            x86::pack_a_gather(base, a.row_stride, rows, K::MR, kc, dst);
            return;
        }
        if a.row_stride == 1 {
            pack_a_columns_dyn::<K>(a, i0, rows, p0, kc, 1, dst);
            return;
        }
        match K::MR {
            24 => pack_a_panel::<24>(a, i0, p0, rows, kc, dst),
            12 => pack_a_panel::<12>(a, i0, p0, rows, kc, dst),
            6 => pack_a_panel::<6>(a, i0, p0, rows, kc, dst),
            4 => pack_a_panel::<4>(a, i0, p0, rows, kc, dst),
            _ => unreachable!(),
        }
    }
}

unsafe fn pack_a_columns_dyn<K: Micro>(
    a: &MatRef,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    np: usize,
    dst: *mut f32,
) {
    unsafe {
        match K::MR {
            24 => pack_a_columns::<24>(a, i0, rows, p0, kc, np, dst),
            12 => pack_a_columns::<12>(a, i0, rows, p0, kc, np, dst),
            6 => pack_a_columns::<6>(a, i0, rows, p0, kc, np, dst),
            4 => pack_a_columns::<4>(a, i0, rows, p0, kc, np, dst),
            _ => unreachable!(),
        }
    }
}

/// Pack the full panels [jp0, jp1) of the B block at depth p0, columns from j0, of a
/// row-major B into their places in `dst` (panel jp at dst[jp·NR·kc ..]), walking B's rows:
/// each row of the run is read front to back, where packing panel by panel read NR floats a
/// row apart.
unsafe fn pack_b_rows<K: Micro>(
    b: &MatRef,
    p0: usize,
    j0: usize,
    jp0: usize,
    jp1: usize,
    kc: usize,
    dst: *mut f32,
) {
    debug_assert_eq!(b.col_stride, 1);
    let nr = K::NR;
    // Eight rows at a time: a panel's eight rows are one contiguous write, where a single
    // row's writes land a panel (a multiple of 4 KiB) apart, all in one L1 set.
    const ROWS: usize = 8;
    // SAFETY: rows p0..p0 + kc and the run's columns lie inside B (the caller's extents are
    // checked and the panels are full); panel jp's kc·NR floats lie inside `dst`.
    unsafe {
        for q in (0..kc).step_by(ROWS) {
            let rows = ROWS.min(kc - q);
            let src = b.data.as_ptr().add((p0 + q) * b.row_stride + j0);
            for jp in jp0..jp1 {
                let d = dst.add(jp * nr * kc + q * nr);
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(src.add(r * b.row_stride + jp * nr), d.add(r * nr), K::NR);
                }
            }
        }
    }
}

unsafe fn pack_b_panel_dyn<K: Micro>(
    b: &MatRef,
    p0: usize,
    j0: usize,
    cols: usize,
    kc: usize,
    dst: *mut f32,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if K::AVX512_PACK && cols == K::NR && b.row_stride == 1 && K::NR % 16 == 0 {
            // A transposed B (each column contiguous along k): 16×16 register transposes.
            let base = b.data.as_ptr().add(p0 + j0 * b.col_stride);
            x86::pack_b_transposed(base, b.col_stride, K::NR, kc, dst);
            return;
        }
        // A panel of B's columns is a panel of Bᵀ's rows: the A packer, NR rows at a time.
        let bt = b.t();
        match K::NR {
            32 => pack_a_panel::<32>(&bt, j0, p0, cols, kc, dst),
            16 => pack_a_panel::<16>(&bt, j0, p0, cols, kc, dst),
            8 => pack_a_panel::<8>(&bt, j0, p0, cols, kc, dst),
            _ => unreachable!(),
        }
    }
}

/// Run the micro-kernel over MR-tiles [m0, m1) × NR-tiles [n0, n1) of the block.
/// `c` points at C(ib, jc); `mb`, `nc` are the block's true extents.
/// Order: an A micro-panel stays in L1 while a chunk of B panels (kept in L2) streams past.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel<K: Micro>(
    bl: &Blocking,
    apanels: &[Panel],
    bpanels: &[Panel],
    kc: usize,
    mb: usize,
    nc: usize,
    m0: usize,
    m1: usize,
    n0: usize,
    n1: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    let (mr, nr) = (K::MR, K::NR);
    unsafe {
        let ncl2 = (bl.ncl2 / nr).max(1);
        let mut jj = n0;
        while jj < n1 {
            let jend = (jj + ncl2).min(n1);
            for it in m0..m1 {
                let rows = mr.min(mb - it * mr);
                let a = apanels[it];
                for jt in jj..jend {
                    let cols = nr.min(nc - jt * nr);
                    let b = bpanels[jt];
                    K::kernel(
                        kc,
                        a.ptr,
                        a.ks,
                        b.ptr,
                        b.ks,
                        c.add(it * mr * ldc + jt * nr),
                        ldc,
                        rows,
                        cols,
                        alpha,
                        beta,
                    );
                }
            }
            jj = jend;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Portable kernel
// ------------------------------------------------------------------------------------------

struct ScalarKernel;

impl Micro for ScalarKernel {
    const MR: usize = 4;
    const NR: usize = 8;
    const KC: usize = 256;
    const NCL2: usize = 1024;
    const NC: usize = 4096;
    const MB: usize = 4096;

    #[inline(never)]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        ask: usize,
        b: *const f32,
        bsk: usize,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = 4;
        const NR: usize = 8;
        let mut acc = [[0.0f32; NR]; MR];
        unsafe {
            for p in 0..kc {
                let bp = &*(b.add(p * bsk) as *const [f32; NR]);
                let ap = &*(a.add(p * ask) as *const [f32; MR]);
                for i in 0..MR {
                    for j in 0..NR {
                        acc[i][j] += ap[i] * bp[j];
                    }
                }
            }
            for i in 0..mr {
                let row = c.add(i * ldc);
                for j in 0..nr {
                    let t = alpha * acc[i][j];
                    *row.add(j) = if beta == 0.0 { t } else { t + beta * *row.add(j) };
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// x86-64 kernels
// ------------------------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::Micro;
    use std::arch::x86_64::*;

    pub struct Avx512;

    impl Micro for Avx512 {
        const MR: usize = 12;
        const NR: usize = 32;
        const KC: usize = 256;
        const NCL2: usize = 1024;
        const NC: usize = 4096;
        const MB: usize = 4096;

        #[inline(always)]
        unsafe fn kernel(
            kc: usize,
            a: *const f32,
            ask: usize,
            b: *const f32,
            bsk: usize,
            c: *mut f32,
            ldc: usize,
            mr: usize,
            nr: usize,
            alpha: f32,
            beta: f32,
        ) {
            unsafe { kernel_avx512::<12, 2>(kc, a, ask, b, bsk, c, ldc, mr, nr, alpha, beta) }
        }
        const AVX512_PACK: bool = true;
    }

    /// Narrow variant for n ≤ 16: 24×16 tile (24 accumulators), no half-empty B panels.
    pub struct Avx512Narrow;

    impl Micro for Avx512Narrow {
        const MR: usize = 24;
        const NR: usize = 16;
        const KC: usize = 256;
        const NCL2: usize = 1024;
        const NC: usize = 4096;
        const MB: usize = 4096;

        #[inline(always)]
        unsafe fn kernel(
            kc: usize,
            a: *const f32,
            ask: usize,
            b: *const f32,
            bsk: usize,
            c: *mut f32,
            ldc: usize,
            mr: usize,
            nr: usize,
            alpha: f32,
            beta: f32,
        ) {
            unsafe { kernel_avx512::<24, 1>(kc, a, ask, b, bsk, c, ldc, mr, nr, alpha, beta) }
        }
        const AVX512_PACK: bool = true;
    }

    /// Pack an MR-row panel of a row-major A (rows `rs` apart) with 16-lane gathers: element
    /// (i, p) to dst[p*mr + i] for the panel's `rows` real rows, zeros for the rest.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_a_gather(
        base: *const f32,
        rs: usize,
        rows: usize,
        mr: usize,
        kc: usize,
        dst: *mut f32,
    ) {
        unsafe {
            let first = |n: usize| -> __mmask16 { if n >= 16 { 0xFFFF } else { ((1u32 << n) - 1) as u16 } };
            let rs = rs as i32;
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(rs));
            let mut r0 = 0;
            while r0 < mr {
                // Gather the real rows; the padding lanes keep the source's zeros.
                let (read, write) = (first(rows.saturating_sub(r0)), first(mr - r0));
                let rb = base.wrapping_add(r0 * rs as usize);
                for p in 0..kc {
                    let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), read, idx, rb.wrapping_add(p));
                    _mm512_mask_storeu_ps(dst.add(p * mr + r0), write, v);
                }
                r0 += 16;
            }
        }
    }

    /// Pack `nr` (a multiple of 16) full columns of a B stored column by column (column j at
    /// base + j·cs, contiguous along k): element (p, j) to dst[p·nr + j]. Blocks of 16×16 are
    /// transposed in registers, so reads and writes are whole 64-byte vectors.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_b_transposed(base: *const f32, cs: usize, nr: usize, kc: usize, dst: *mut f32) {
        unsafe {
            let mut p = 0;
            while p + 16 <= kc {
                for j0 in (0..nr).step_by(16) {
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (j, v) in r.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(base.add((j0 + j) * cs + p));
                    }
                    transpose16(&mut r);
                    for (q, v) in r.iter().enumerate() {
                        _mm512_storeu_ps(dst.add((p + q) * nr + j0), *v);
                    }
                }
                p += 16;
            }
            for p in p..kc {
                for j in 0..nr {
                    *dst.add(p * nr + j) = *base.add(j * cs + p);
                }
            }
        }
    }

    /// Lane indices for `_mm512_permutex2var_ps` at each stage of [`transpose16`] (block size
    /// b = 8, 4, 2, 1): `lo` keeps a's lanes l with (l & b) == 0 and takes b's lane l − b for
    /// the others; `hi` takes a's lane l + b, or b's lane l where (l & b) != 0.
    const fn swap_index(b: usize, hi: bool) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut l = 0;
        while l < 16 {
            idx[l] = match (hi, l & b == 0) {
                (false, true) => l as i32,
                (false, false) => (16 + l - b) as i32,
                (true, true) => (l + b) as i32,
                (true, false) => (16 + l) as i32,
            };
            l += 1;
        }
        idx
    }
    const SWAP: [[[i32; 16]; 2]; 4] = [
        [swap_index(8, false), swap_index(8, true)],
        [swap_index(4, false), swap_index(4, true)],
        [swap_index(2, false), swap_index(2, true)],
        [swap_index(1, false), swap_index(1, true)],
    ];

    /// In-register transpose of a 16×16 block (r[i] lane l ↔ r[l] lane i): swap the
    /// off-diagonal 8×8, then 4×4, 2×2 and 1×1 sub-blocks. Written out pair by pair so the
    /// block stays in registers.
    #[inline(always)]
    pub(crate) unsafe fn transpose16(r: &mut [__m512; 16]) {
        macro_rules! stage {
            ($s:expr; $($i:literal $j:literal),*) => {{
                let lo = _mm512_loadu_si512(SWAP[$s][0].as_ptr() as *const _);
                let hi = _mm512_loadu_si512(SWAP[$s][1].as_ptr() as *const _);
                $(
                    let (a, c) = (r[$i], r[$j]);
                    r[$i] = _mm512_permutex2var_ps(a, lo, c);
                    r[$j] = _mm512_permutex2var_ps(a, hi, c);
                )*
            }};
        }
        unsafe {
            stage!(0; 0 8, 1 9, 2 10, 3 11, 4 12, 5 13, 6 14, 7 15);
            stage!(1; 0 4, 1 5, 2 6, 3 7, 8 12, 9 13, 10 14, 11 15);
            stage!(2; 0 2, 1 3, 4 6, 5 7, 8 10, 9 11, 12 14, 13 15);
            stage!(3; 0 1, 2 3, 4 5, 6 7, 8 9, 10 11, 12 13, 14 15);
        }
    }

    /// B rows ahead of the k loop to prefetch.
    const B_PREFETCH: usize = 8;

    /// MR×(16·NV) tile: C[0..mr, 0..nr] = alpha·A·B + beta·C, masked at the edges.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_avx512<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        ask: usize,
        b: *const f32,
        bsk: usize,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    ) {
        unsafe {
            // Fetch the C tile while the k loop runs.
            for i in 0..MR {
                if i < mr {
                    let cp = c.wrapping_add(i * ldc);
                    _mm_prefetch::<_MM_HINT_T0>(cp as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(nr - 1) as *const i8);
                }
            }
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let mut bv = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(B_PREFETCH * bsk + 16 * v) as *const i8);
                    bv[v] = _mm512_loadu_ps(bp.add(16 * v));
                }
                for i in 0..MR {
                    let ai = _mm512_set1_ps(*ap.add(i));
                    for v in 0..NV {
                        acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
                    }
                }
                ap = ap.add(ask);
                bp = bp.add(bsk);
            }
            let va = _mm512_set1_ps(alpha);
            let vb = _mm512_set1_ps(beta);
            let mut masks = [0u16; NV];
            for v in 0..NV {
                let lo = 16 * v;
                masks[v] = if nr >= lo + 16 {
                    0xFFFF
                } else if nr > lo {
                    ((1u32 << (nr - lo)) - 1) as u16
                } else {
                    0
                };
            }
            for i in 0..MR {
                if i < mr {
                    let cp = c.wrapping_add(i * ldc);
                    for v in 0..NV {
                        if masks[v] != 0 {
                            let cv = cp.wrapping_add(16 * v);
                            let mut r = _mm512_mul_ps(acc[i][v], va);
                            if beta != 0.0 {
                                r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(masks[v], cv), vb, r);
                            }
                            _mm512_mask_storeu_ps(cv, masks[v], r);
                        }
                    }
                }
            }
        }
    }

    pub struct Avx2;

    impl Micro for Avx2 {
        const MR: usize = 6;
        const NR: usize = 16;
        const KC: usize = 256;
        const NCL2: usize = 1024;
        const NC: usize = 4096;
        const MB: usize = 4096;

        #[inline(always)]
        unsafe fn kernel(
            kc: usize,
            a: *const f32,
            ask: usize,
            b: *const f32,
            bsk: usize,
            c: *mut f32,
            ldc: usize,
            mr: usize,
            nr: usize,
            alpha: f32,
            beta: f32,
        ) {
            unsafe { kernel_avx2::<6>(kc, a, ask, b, bsk, c, ldc, mr, nr, alpha, beta) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_avx2<const MR: usize>(
        kc: usize,
        a: *const f32,
        ask: usize,
        b: *const f32,
        bsk: usize,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    ) {
        unsafe {
            let mut acc0 = [_mm256_setzero_ps(); MR];
            let mut acc1 = [_mm256_setzero_ps(); MR];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for i in 0..MR {
                    let ai = _mm256_broadcast_ss(&*ap.add(i));
                    acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
                    acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
                }
                ap = ap.add(ask);
                bp = bp.add(bsk);
            }
            let va = _mm256_set1_ps(alpha);
            let vb = _mm256_set1_ps(beta);
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let nr = nr as i32;
            let k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lanes);
            let k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lanes);
            let full = nr >= 16;
            for i in 0..MR {
                if i < mr {
                    let cp = c.wrapping_add(i * ldc);
                    let cp1 = cp.wrapping_add(8);
                    let mut r0 = _mm256_mul_ps(acc0[i], va);
                    let mut r1 = _mm256_mul_ps(acc1[i], va);
                    if full {
                        if beta != 0.0 {
                            r0 = _mm256_fmadd_ps(_mm256_loadu_ps(cp), vb, r0);
                            r1 = _mm256_fmadd_ps(_mm256_loadu_ps(cp1), vb, r1);
                        }
                        _mm256_storeu_ps(cp, r0);
                        _mm256_storeu_ps(cp1, r1);
                    } else {
                        if beta != 0.0 {
                            r0 = _mm256_fmadd_ps(_mm256_maskload_ps(cp, k0), vb, r0);
                            if nr > 8 {
                                r1 = _mm256_fmadd_ps(_mm256_maskload_ps(cp1, k1), vb, r1);
                            }
                        }
                        _mm256_maskstore_ps(cp, k0, r0);
                        if nr > 8 {
                            _mm256_maskstore_ps(cp1, k1, r1);
                        }
                    }
                }
            }
        }
    }
}
