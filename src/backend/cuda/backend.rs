//! `CudaBackend<D>`: the `Backend` implementation over any [`GpuDriver`]. Each method picks
//! the kernel, sizes the grid, allocates the outputs from the caching pool and launches; the
//! same code runs on a GPU (`CudaDriver`) and in the emulator (`EmuDriver`).

use super::alloc::{AllocStats, GpuBuffer, Pool};
use super::driver::{DevPtr, GpuDriver, LaunchDims};
use super::kernels::launch as k;
use super::kernels::params::*;
use crate::backend::{AdamParams, Backend, Binary, ChannelShape, ConvGeom, Storage, Unary};
use std::sync::Arc;

/// Threads per block of every kernel (BLOCK in kernels/common.cuh).
pub const BLOCK: u32 = 256;
/// Most blocks a grid-stride kernel launches (MAX_GRID in common.cuh).
pub const MAX_GRID: usize = 1024;
/// Output tile of the gemm and implicit-GEMM convolutions (TM = TN in common.cuh).
pub const TILE: usize = 64;
/// Input channels up to which backward-data computes pixels directly (NARROW_CI in conv.cu),
/// and the shared floats that hold a chunk of its weights (NARROW_W_FLOATS).
const NARROW_CI: usize = 4;
const NARROW_W_FLOATS: usize = 6144;
/// Blocks the weight gradient aims for when it splits K (about two waves of an 132-SM GPU).
const SPLIT_TARGET_BLOCKS: usize = 264;

pub struct CudaBackend<D: GpuDriver> {
    driver: D,
    pool: Arc<Pool>,
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

fn i32_of(v: usize, what: &str) -> i32 {
    i32::try_from(v)
        .unwrap_or_else(|_| panic!("cuda backend: {what} = {v} exceeds the kernels' 32-bit indexing"))
}

/// A 1-D grid-stride launch over `n` elements.
fn grid1(n: usize) -> LaunchDims {
    LaunchDims::new([ceil_div(n, BLOCK as usize).clamp(1, MAX_GRID) as u32, 1, 1], BLOCK)
}

fn chan_args(s: ChannelShape) -> ChanArgs {
    ChanArgs { n: i32_of(s.n, "n"), c: i32_of(s.c, "c"), hw: i32_of(s.hw, "hw") }
}

fn conv_args(g: &ConvGeom, splits: usize) -> ConvArgs {
    i32_of(g.x_len().max(g.y_len()).max(g.w_len()), "conv tensor size");
    ConvArgs {
        n: g.n as i32,
        c_in: g.c_in as i32,
        h_in: g.h_in as i32,
        w_in: g.w_in as i32,
        c_out: g.c_out as i32,
        h_out: g.h_out as i32,
        w_out: g.w_out as i32,
        kh: g.kh as i32,
        kw: g.kw as i32,
        stride: g.stride as i32,
        pad: g.pad as i32,
        splits: splits as i32,
    }
}

/// The split-K factor of a product of `tiles` output tiles and depth `k`: enough blocks to
/// fill the GPU, each slice at least 256 deep. Depends on the shapes only, so the sum order
/// (and the bits) are the same on every run.
fn k_splits(tiles: usize, k: usize) -> usize {
    ceil_div(SPLIT_TARGET_BLOCKS, tiles).min(ceil_div(k, 256)).max(1)
}

/// The split-K factor of a weight gradient (its K, n·h_out·w_out, is large; M and N small).
pub fn weight_grad_splits(g: &ConvGeom) -> usize {
    let tiles = ceil_div(g.c_out, TILE) * ceil_div(g.c_in * g.kh * g.kw, TILE);
    k_splits(tiles, g.n * g.h_out * g.w_out)
}

/// The split-K factor of a forward convolution: 1 for most layers, many for a deep product
/// with few outputs (a DCGAN discriminator's last layer: c_out 1, K = 8192).
pub fn forward_splits(g: &ConvGeom) -> usize {
    let tiles = ceil_div(g.n * g.h_out * g.w_out, TILE) * ceil_div(g.c_out, TILE);
    k_splits(tiles, g.c_in * g.kh * g.kw)
}

impl<D: GpuDriver> CudaBackend<D> {
    pub fn new(driver: D) -> Self {
        CudaBackend { driver, pool: Arc::new(Pool::default()) }
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    pub fn alloc_stats(&self) -> AllocStats {
        self.pool.stats()
    }

    /// Returns every cached block to the driver.
    pub fn trim(&self) {
        self.pool.trim(&self.driver)
    }

    fn alloc(&self, len: usize) -> GpuBuffer {
        self.pool.alloc(&self.driver, len)
    }

    /// Runs a split-K `launch` into `out`: straight into it with one slice, else into a
    /// workspace of `splits` slices of out's length, then sum_splits adds them in order.
    fn split_k(
        &self,
        out: &GpuBuffer,
        splits: usize,
        what: &str,
        launch: impl FnOnce(DevPtr) -> Result<(), super::driver::GpuError>,
    ) {
        if splits == 1 {
            self.ok(launch(out.ptr()), what);
            return;
        }
        let len = out.len();
        let ws = self.alloc(splits * len);
        self.ok(launch(ws.ptr()), what);
        let p = RedArgs { n: i32_of(len, "split-K output"), parts: splits as i32, scale: 1.0 };
        self.ok(k::sum_splits(&self.driver, grid1(len), ws.ptr(), out.ptr(), p), "sum_splits");
    }

    fn wrap(&self, b: GpuBuffer) -> Storage {
        Storage::Gpu(b)
    }

    fn ok(&self, r: Result<(), super::driver::GpuError>, what: &str) {
        if let Err(e) = r {
            panic!("{}: {what} failed: {e}", self.driver.device());
        }
    }

    fn ptr(&self, s: &Storage) -> DevPtr {
        let b = s.gpu();
        assert_eq!(
            b.device(),
            self.driver.device(),
            "a {} buffer reached the {} backend",
            b.device(),
            self.driver.device()
        );
        b.ptr()
    }

    fn map1(
        &self,
        kernel: fn(&D, LaunchDims, DevPtr, DevPtr, EwArgs) -> Result<(), super::driver::GpuError>,
        x: &Storage,
        alpha: f32,
        beta: f32,
        what: &str,
    ) -> Storage {
        let n = x.len();
        let y = self.alloc(n);
        let p = EwArgs { n: i32_of(n, "len"), op: 0, alpha, beta };
        self.ok(kernel(&self.driver, grid1(n), self.ptr(x), y.ptr(), p), what);
        self.wrap(y)
    }

    #[allow(clippy::type_complexity)]
    fn map2(
        &self,
        kernel: fn(&D, LaunchDims, DevPtr, DevPtr, DevPtr, EwArgs) -> Result<(), super::driver::GpuError>,
        a: &Storage,
        b: &Storage,
        op: i32,
        alpha: f32,
        what: &str,
    ) -> Storage {
        let n = a.len();
        let y = self.alloc(n);
        let p = EwArgs { n: i32_of(n, "len"), op, alpha, beta: 0.0 };
        self.ok(kernel(&self.driver, grid1(n), self.ptr(a), self.ptr(b), y.ptr(), p), what);
        self.wrap(y)
    }

    /// Two-stage deterministic sum of a `partial` kernel's block sums, times `scale`.
    fn finish_sum(&self, partial: &GpuBuffer, parts: usize, scale: f32) -> Storage {
        let out = self.alloc(1);
        let p = RedArgs { n: parts as i32, parts: parts as i32, scale };
        self.ok(
            k::sum_final(&self.driver, LaunchDims::new([1, 1, 1], BLOCK), partial.ptr(), out.ptr(), p),
            "sum_final",
        );
        self.wrap(out)
    }

    /// f32 -> f16 on the device (round to nearest even); the result comes back to the host.
    pub fn to_f16(&self, x: &Storage) -> Vec<half::f16> {
        let n = x.len();
        let y = self.alloc(n.div_ceil(2));
        self.ok(
            k::f32_to_f16(&self.driver, grid1(n), self.ptr(x), y.ptr(), CvtArgs { n: i32_of(n, "len") }),
            "f32_to_f16",
        );
        let mut bits = vec![0u16; n];
        // SAFETY: y holds ceil(n/2) f32 = at least 2n bytes.
        self.ok(unsafe { self.driver.copy_dtoh(bytemuck::cast_slice_mut(&mut bits), y.ptr()) }, "download");
        bits.into_iter().map(half::f16::from_bits).collect()
    }

    pub fn to_bf16(&self, x: &Storage) -> Vec<half::bf16> {
        let n = x.len();
        let y = self.alloc(n.div_ceil(2));
        self.ok(
            k::f32_to_bf16(&self.driver, grid1(n), self.ptr(x), y.ptr(), CvtArgs { n: i32_of(n, "len") }),
            "f32_to_bf16",
        );
        let mut bits = vec![0u16; n];
        // SAFETY: as in to_f16.
        self.ok(unsafe { self.driver.copy_dtoh(bytemuck::cast_slice_mut(&mut bits), y.ptr()) }, "download");
        bits.into_iter().map(half::bf16::from_bits).collect()
    }

    /// Uploads f16 values and widens them to f32 on the device.
    pub fn from_f16(&self, v: &[half::f16]) -> Storage {
        let bits: Vec<u16> = v.iter().map(|h| h.to_bits()).collect();
        self.widen(&bits, false)
    }

    pub fn from_bf16(&self, v: &[half::bf16]) -> Storage {
        let bits: Vec<u16> = v.iter().map(|h| h.to_bits()).collect();
        self.widen(&bits, true)
    }

    fn widen(&self, bits: &[u16], bf16: bool) -> Storage {
        let n = bits.len();
        let src = self.alloc(n.div_ceil(2).max(1));
        if n > 0 {
            // SAFETY: src holds at least 2n bytes.
            self.ok(unsafe { self.driver.copy_htod(src.ptr(), bytemuck::cast_slice(bits)) }, "upload");
        }
        let y = self.alloc(n);
        let p = CvtArgs { n: i32_of(n, "len") };
        let r = if bf16 {
            k::bf16_to_f32(&self.driver, grid1(n), src.ptr(), y.ptr(), p)
        } else {
            k::f16_to_f32(&self.driver, grid1(n), src.ptr(), y.ptr(), p)
        };
        self.ok(r, "widen");
        self.wrap(y)
    }
}

impl<D: GpuDriver> Backend for CudaBackend<D> {
    fn synchronize(&self) {
        self.ok(self.driver.synchronize(), "synchronize");
    }
    fn zeros(&self, len: usize) -> Storage {
        let b = self.alloc(len);
        // SAFETY: b holds len f32.
        self.ok(unsafe { self.driver.memset_zero(b.ptr(), len * 4) }, "memset");
        self.wrap(b)
    }
    fn upload(&self, data: Vec<f32>) -> Storage {
        let b = self.alloc(data.len());
        if !data.is_empty() {
            // SAFETY: b holds data.len() f32.
            self.ok(unsafe { self.driver.copy_htod(b.ptr(), bytemuck::cast_slice(&data)) }, "upload");
        }
        self.wrap(b)
    }
    fn download(&self, s: &Storage) -> Vec<f32> {
        let mut v = vec![0.0f32; s.len()];
        if !v.is_empty() {
            // SAFETY: the buffer holds s.len() f32.
            self.ok(
                unsafe { self.driver.copy_dtoh(bytemuck::cast_slice_mut(&mut v), self.ptr(s)) },
                "download",
            );
        }
        v
    }
    fn copy(&self, s: &Storage) -> Storage {
        let b = self.alloc(s.len());
        if !s.is_empty() {
            // SAFETY: both hold s.len() f32.
            self.ok(unsafe { self.driver.copy_dtod(b.ptr(), self.ptr(s), s.len() * 4) }, "copy");
        }
        self.wrap(b)
    }
    fn fill(&self, s: &mut Storage, value: f32) {
        let n = s.len();
        let p = EwArgs { n: i32_of(n, "len"), op: 0, alpha: value, beta: 0.0 };
        self.ok(k::ew_fill(&self.driver, grid1(n), self.ptr(s), p), "ew_fill");
    }

    fn binary(&self, op: Binary, a: &Storage, b: &Storage) -> Storage {
        let code = match op {
            Binary::Add => 0,
            Binary::Sub => 1,
            Binary::Mul => 2,
            Binary::Div => 3,
        };
        self.map2(k::ew_binary, a, b, code, 0.0, "ew_binary")
    }
    fn affine(&self, x: &Storage, alpha: f32, beta: f32) -> Storage {
        self.map1(k::ew_affine, x, alpha, beta, "ew_affine")
    }
    fn axpby(&self, a: f32, x: &Storage, b: f32, y: &mut Storage) {
        let n = x.len();
        let p = EwArgs { n: i32_of(n, "len"), op: 0, alpha: a, beta: b };
        self.ok(k::ew_axpby(&self.driver, grid1(n), self.ptr(x), self.ptr(y), p), "ew_axpby");
    }
    fn unary(&self, op: Unary, x: &Storage) -> Storage {
        match op {
            Unary::Relu => self.map1(k::relu_fwd, x, 0.0, 0.0, "relu_fwd"),
            Unary::LeakyRelu(slope) => self.map1(k::leaky_relu_fwd, x, slope, 0.0, "leaky_relu_fwd"),
            Unary::Tanh => self.map1(k::tanh_fwd, x, 0.0, 0.0, "tanh_fwd"),
            Unary::Sigmoid => self.map1(k::sigmoid_fwd, x, 0.0, 0.0, "sigmoid_fwd"),
            Unary::Sqrt => self.map1(k::sqrt_fwd, x, 0.0, 0.0, "sqrt_fwd"),
        }
    }
    fn unary_backward(&self, op: Unary, saved: &Storage, dy: &Storage) -> Storage {
        match op {
            Unary::Relu => self.map2(k::relu_bwd, saved, dy, 0, 0.0, "relu_bwd"),
            Unary::LeakyRelu(slope) => self.map2(k::leaky_relu_bwd, saved, dy, 0, slope, "leaky_relu_bwd"),
            Unary::Tanh => self.map2(k::tanh_bwd, saved, dy, 0, 0.0, "tanh_bwd"),
            Unary::Sigmoid => self.map2(k::sigmoid_bwd, saved, dy, 0, 0.0, "sigmoid_bwd"),
            Unary::Sqrt => self.map2(k::sqrt_bwd, saved, dy, 0, 0.0, "sqrt_bwd"),
        }
    }

    fn sum(&self, x: &Storage) -> Storage {
        let n = x.len();
        let dims = grid1(n);
        let parts = dims.grid[0] as usize;
        let partial = self.alloc(parts);
        let p = RedArgs { n: i32_of(n, "len"), parts: parts as i32, scale: 1.0 };
        self.ok(k::sum_partial(&self.driver, dims, self.ptr(x), partial.ptr(), p), "sum_partial");
        self.finish_sum(&partial, parts, 1.0)
    }
    fn broadcast_scalar(&self, s: &Storage, scale: f32, len: usize) -> Storage {
        let y = self.alloc(len);
        let p = EwArgs { n: i32_of(len, "len"), op: 0, alpha: scale, beta: 0.0 };
        self.ok(
            k::ew_broadcast_scalar(&self.driver, grid1(len), self.ptr(s), y.ptr(), p),
            "ew_broadcast_scalar",
        );
        self.wrap(y)
    }
    fn sum_channels(&self, x: &Storage, shape: ChannelShape) -> Storage {
        let y = self.alloc(shape.c);
        if shape.c > 0 {
            let dims = LaunchDims::new([shape.c as u32, 1, 1], BLOCK);
            self.ok(
                k::sum_channels(&self.driver, dims, self.ptr(x), y.ptr(), chan_args(shape)),
                "sum_channels",
            );
        }
        self.wrap(y)
    }
    fn translate_cutout(&self, x: &Storage, params: &Storage, shape: [usize; 4], backward: bool) -> Storage {
        let n = x.len();
        let y = self.alloc(n);
        let [b, c, h, w] = shape;
        let p = AugmentArgs {
            n: i32_of(b, "n"),
            c: i32_of(c, "c"),
            h: i32_of(h, "h"),
            w: i32_of(w, "w"),
            backward: i32::from(backward),
        };
        i32_of(n, "augment tensor size");
        let r = k::translate_cutout(&self.driver, grid1(n), self.ptr(x), self.ptr(params), y.ptr(), p);
        self.ok(r, "translate_cutout");
        self.wrap(y)
    }
    fn add_channels(&self, x: &Storage, bias: &Storage, shape: ChannelShape) -> Storage {
        let n = x.len();
        let y = self.alloc(n);
        let r = k::ew_add_channels(
            &self.driver,
            grid1(n),
            self.ptr(x),
            self.ptr(bias),
            y.ptr(),
            chan_args(shape),
        );
        self.ok(r, "ew_add_channels");
        self.wrap(y)
    }

    fn matmul(
        &self,
        a: &Storage,
        trans_a: bool,
        b: &Storage,
        trans_b: bool,
        m: usize,
        n: usize,
        kk: usize,
    ) -> Storage {
        let c = self.alloc(m * n);
        if m * n == 0 {
            return self.wrap(c);
        }
        let p = GemmArgs {
            m: i32_of(m, "m"),
            n: i32_of(n, "n"),
            k: i32_of(kk, "k"),
            trans_a: trans_a as i32,
            trans_b: trans_b as i32,
        };
        i32_of(m * kk.max(1), "m*k");
        i32_of(kk.max(1) * n, "k*n");
        let dims = LaunchDims::new([ceil_div(n, TILE) as u32, ceil_div(m, TILE) as u32, 1], BLOCK);
        self.ok(k::gemm_f32(&self.driver, dims, self.ptr(a), self.ptr(b), c.ptr(), p), "gemm_f32");
        self.wrap(c)
    }

    fn conv2d_forward(&self, x: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        let y = self.alloc(g.y_len());
        if g.y_len() == 0 {
            return self.wrap(y);
        }
        let splits = forward_splits(g);
        let cols = g.n * g.h_out * g.w_out;
        let dims = LaunchDims::new(
            [ceil_div(cols, TILE) as u32, ceil_div(g.c_out, TILE) as u32, splits as u32],
            BLOCK,
        );
        self.split_k(&y, splits, "conv_fwd", |out| {
            k::conv_fwd(&self.driver, dims, self.ptr(x), self.ptr(w), out, conv_args(g, splits))
        });
        self.wrap(y)
    }

    fn conv2d_backward_data(&self, dy: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        if g.x_len() > 0 && g.h_out == 1 && g.w_out == 1 && g.pad == 0 && (g.kh, g.kw) == (g.h_in, g.w_in) {
            // The kernel covers the whole input (a generator's first layer, mirrored): dx is
            // the plain product dy[n × c_out] · w[c_out × c_in·kh·kw]. The phase GEMM would
            // multiply through every tap of which all but one miss the single output pixel.
            return self.matmul(dy, false, w, false, g.n, g.c_in * g.kh * g.kw, g.c_out);
        }
        let dx = self.alloc(g.x_len());
        if g.x_len() == 0 {
            return self.wrap(dx);
        }
        if g.c_in <= NARROW_CI && g.c_in * g.kh * g.kw <= NARROW_W_FLOATS {
            let dims = LaunchDims::new([ceil_div(g.x_len() / g.c_in, BLOCK as usize) as u32, 1, 1], BLOCK);
            let r = k::conv_bwd_data_narrow(
                &self.driver,
                dims,
                self.ptr(dy),
                self.ptr(w),
                dx.ptr(),
                conv_args(g, 1),
            );
            self.ok(r, "conv_bwd_data_narrow");
            return self.wrap(dx);
        }
        let s = g.stride;
        // The largest phase has ceil(h_in/s) x ceil(w_in/s) pixels per image.
        let cols = g.n * ceil_div(g.h_in, s) * ceil_div(g.w_in, s);
        let dims = LaunchDims::new(
            [ceil_div(cols, TILE) as u32, ceil_div(g.c_in, TILE) as u32, (s * s) as u32],
            BLOCK,
        );
        let r = k::conv_bwd_data(&self.driver, dims, self.ptr(dy), self.ptr(w), dx.ptr(), conv_args(g, 1));
        self.ok(r, "conv_bwd_data");
        self.wrap(dx)
    }

    fn conv2d_backward_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeom) -> Storage {
        let dw = self.alloc(g.w_len());
        if g.w_len() == 0 {
            return self.wrap(dw);
        }
        let splits = weight_grad_splits(g);
        let (m, n) = (g.c_out, g.c_in * g.kh * g.kw);
        let dims =
            LaunchDims::new([ceil_div(n, TILE) as u32, ceil_div(m, TILE) as u32, splits as u32], BLOCK);
        self.split_k(&dw, splits, "conv_bwd_weight", |out| {
            k::conv_bwd_weight(&self.driver, dims, self.ptr(x), self.ptr(dy), out, conv_args(g, splits))
        });
        self.wrap(dw)
    }

    fn batchnorm2d_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> (Storage, Storage, Storage) {
        let (y, mean, var) = (self.alloc(x.len()), self.alloc(shape.c), self.alloc(shape.c));
        if shape.c > 0 {
            let p = BnArgs {
                n: shape.n as i32,
                c: shape.c as i32,
                hw: i32_of(shape.hw, "hw"),
                eps,
                batch_stats: 1,
            };
            i32_of(x.len(), "len");
            let dims = LaunchDims::new([shape.c as u32, 1, 1], BLOCK);
            let r = k::bn_forward_train(
                &self.driver,
                dims,
                self.ptr(x),
                self.ptr(gamma),
                self.ptr(beta),
                y.ptr(),
                mean.ptr(),
                var.ptr(),
                p,
            );
            self.ok(r, "bn_forward_train");
        }
        (self.wrap(y), self.wrap(mean), self.wrap(var))
    }

    fn batchnorm2d_forward_eval(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> Storage {
        let n = x.len();
        let y = self.alloc(n);
        let p =
            BnArgs { n: shape.n as i32, c: shape.c as i32, hw: i32_of(shape.hw, "hw"), eps, batch_stats: 0 };
        let r = k::bn_forward_eval(
            &self.driver,
            grid1(n),
            self.ptr(x),
            self.ptr(gamma),
            self.ptr(beta),
            self.ptr(mean),
            self.ptr(var),
            y.ptr(),
            p,
        );
        self.ok(r, "bn_forward_eval");
        self.wrap(y)
    }

    fn batchnorm2d_backward(
        &self,
        x: &Storage,
        dy: &Storage,
        gamma: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        batch_stats: bool,
    ) -> (Storage, Storage, Storage) {
        let (dx, dgamma, dbeta) = (self.alloc(x.len()), self.alloc(shape.c), self.alloc(shape.c));
        if shape.c > 0 {
            let p = BnArgs {
                n: shape.n as i32,
                c: shape.c as i32,
                hw: i32_of(shape.hw, "hw"),
                eps,
                batch_stats: batch_stats as i32,
            };
            i32_of(x.len(), "len");
            let dims = LaunchDims::new([shape.c as u32, 1, 1], BLOCK);
            let r = k::bn_backward(
                &self.driver,
                dims,
                self.ptr(x),
                self.ptr(dy),
                self.ptr(gamma),
                self.ptr(mean),
                self.ptr(var),
                dx.ptr(),
                dgamma.ptr(),
                dbeta.ptr(),
                p,
            );
            self.ok(r, "bn_backward");
        }
        (self.wrap(dx), self.wrap(dgamma), self.wrap(dbeta))
    }

    fn bce_with_logits(&self, x: &Storage, target: &Storage) -> Storage {
        let n = x.len();
        let dims = grid1(n);
        let parts = dims.grid[0] as usize;
        let partial = self.alloc(parts);
        let p = RedArgs { n: i32_of(n, "len"), parts: parts as i32, scale: 1.0 };
        self.ok(
            k::bce_partial(&self.driver, dims, self.ptr(x), self.ptr(target), partial.ptr(), p),
            "bce_partial",
        );
        self.finish_sum(&partial, parts, (1.0 / n as f64) as f32)
    }
    fn bce_with_logits_backward(&self, x: &Storage, target: &Storage, dloss: &Storage) -> Storage {
        let n = x.len();
        let dx = self.alloc(n);
        let p = RedArgs { n: i32_of(n, "len"), parts: 0, scale: 1.0 };
        let r = k::bce_backward(
            &self.driver,
            grid1(n),
            self.ptr(x),
            self.ptr(target),
            self.ptr(dloss),
            dx.ptr(),
            p,
        );
        self.ok(r, "bce_backward");
        self.wrap(dx)
    }

    fn adam_step(&self, p: &mut Storage, grad: &Storage, m: &mut Storage, v: &mut Storage, hp: &AdamParams) {
        let n = p.len();
        let t = hp.step as i32;
        let bias1 = 1.0 - (hp.beta1 as f64).powi(t);
        let bias2 = 1.0 - (hp.beta2 as f64).powi(t);
        let a = AdamArgs {
            n: i32_of(n, "len"),
            step_size: (hp.lr as f64 / bias1) as f32,
            bias2_sqrt: bias2.sqrt() as f32,
            beta1: hp.beta1,
            beta2: hp.beta2,
            eps: hp.eps,
            weight_decay: hp.weight_decay,
        };
        let r =
            k::adam_step(&self.driver, grid1(n), self.ptr(p), self.ptr(grad), self.ptr(m), self.ptr(v), a);
        self.ok(r, "adam_step");
    }
    fn sgd_step(
        &self,
        p: &mut Storage,
        grad: &Storage,
        buf: &mut Storage,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) {
        let n = p.len();
        let a = SgdArgs { n: i32_of(n, "len"), lr, momentum, weight_decay, first_step: first_step as i32 };
        let r = k::sgd_step(&self.driver, grid1(n), self.ptr(p), self.ptr(grad), self.ptr(buf), a);
        self.ok(r, "sgd_step");
    }
}
