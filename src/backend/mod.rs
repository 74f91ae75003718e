//! The kernel-level op set. Each device implements [`Backend`]; tensors hold a [`Storage`]
//! and ops reach the kernels through `device.backend()`. Shapes are checked by the ops in
//! `crate::ops` before they get here, so kernels trust their sizes.

pub mod cpu;
pub mod cuda;
pub mod emu;
pub mod profile;

use std::fmt;

/// Where a tensor's data lives: the host (`Cpu`), a CUDA GPU by ordinal, or the emulator
/// (`Emu`: the CUDA backend's kernels compiled for the host, for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
    Emu,
}

/// A device request that cannot be met: what was asked and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    pub request: String,
    pub reason: String,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--device {}: {}", self.request, self.reason)
    }
}

impl std::error::Error for DeviceError {}

impl Device {
    /// The device's kernels. `Cuda(n)` must have been checked (`Device::parse` / `auto`);
    /// reaching an unusable GPU here is a programming error, hence the panic.
    pub fn backend(self) -> &'static dyn Backend {
        if profile::is_enabled() {
            return profile::profiled(self);
        }
        self.unprofiled_backend()
    }

    fn unprofiled_backend(self) -> &'static dyn Backend {
        match self {
            Device::Cpu => &cpu::CpuBackend,
            Device::Emu => emu::backend(),
            Device::Cuda(i) => cuda::real::backend(i).unwrap_or_else(|e| panic!("cuda:{i}: {e}")),
        }
    }

    /// `auto`, `cpu`, `cuda`, `cuda:N` or `emu`. A CUDA request is checked now (driver, GPU,
    /// NVRTC) and refused with the reason, never a panic.
    pub fn parse(s: &str) -> Result<Device, DeviceError> {
        let fail = |reason: String| DeviceError { request: s.to_string(), reason };
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "emu" => Ok(Device::Emu),
            "auto" => Ok(Device::auto().0),
            "cuda" => Device::check_cuda(0).map_err(|r| fail(format!("{r}; use --device cpu"))),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Device::check_cuda(i).map_err(|r| fail(format!("{r}; use --device cpu"))),
                Some(Err(_)) => Err(fail("expected cuda:N with N a GPU number, e.g. cuda:0".into())),
                None => Err(fail("unknown device (expected auto, cpu, cuda, cuda:N or emu)".into())),
            },
        }
    }

    fn check_cuda(ordinal: usize) -> Result<Device, String> {
        cuda::real::probe(ordinal)?;
        cuda::real::backend(ordinal)?;
        Ok(Device::Cuda(ordinal))
    }

    /// Bytes of device memory the engine holds on a GPU device (its caching allocator's live
    /// and cached blocks; it never gives blocks back during training, so after a run this is
    /// the run's peak). None for the CPU, and for a GPU that cannot be used.
    pub fn device_memory_reserved(self) -> Option<usize> {
        match self {
            Device::Cpu => None,
            Device::Emu => Some(emu::backend().alloc_stats().bytes_reserved),
            Device::Cuda(i) => cuda::real::backend(i).ok().map(|b| b.alloc_stats().bytes_reserved),
        }
    }

    /// CUDA device 0 when a driver, a GPU and NVRTC are present, else the CPU; the string
    /// says which was picked and why.
    pub fn auto() -> (Device, String) {
        match cuda::real::probe(0).and_then(|info| cuda::real::backend(0).map(|_| info)) {
            Ok(info) => (Device::Cuda(0), format!("using cuda:0 ({info})")),
            Err(why) => (Device::Cpu, format!("using the CPU: {why}")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Emu => write!(f, "emu"),
        }
    }
}

/// A flat f32 buffer on one device.
pub enum Storage {
    Cpu(Vec<f32>),
    /// Device memory of a CUDA GPU or of the emulator (the buffer knows which).
    Gpu(cuda::alloc::GpuBuffer),
}

impl Drop for Storage {
    /// A CPU buffer goes back to the CPU backend's pool for the next op of the same size.
    fn drop(&mut self) {
        if let Storage::Cpu(v) = self {
            cpu::pool::give(std::mem::take(v));
        }
    }
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Gpu(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(b) => b.device(),
        }
    }

    /// The host slice of a CPU buffer. Kernels of the CPU backend use it; a buffer of another
    /// device reaching them is an engine bug, hence the panic.
    pub fn cpu(&self) -> &[f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Gpu(b) => panic!("engine bug: a {} buffer reached a CPU kernel", b.device()),
        }
    }

    pub fn cpu_mut(&mut self) -> &mut [f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Gpu(b) => panic!("engine bug: a {} buffer reached a CPU kernel", b.device()),
        }
    }

    /// The device buffer of a CUDA / emulator storage (panics on a CPU one: engine bug).
    pub fn gpu(&self) -> &cuda::alloc::GpuBuffer {
        match self {
            Storage::Gpu(b) => b,
            Storage::Cpu(_) => panic!("engine bug: a cpu buffer reached a CUDA kernel"),
        }
    }
}

/// Geometry of a 2-D convolution seen from the convolution's side: `x` [n, c_in, h_in, w_in]
/// is the large image, `y` [n, c_out, h_out, w_out] the result, the weight [c_out, c_in, kh, kw].
/// A transposed convolution is this convolution's adjoint with the roles swapped: its input is
/// `y`, its output is `x`, and PyTorch's ConvTranspose2d weight [c_in_t, c_out_t, kh, kw] is
/// exactly this weight layout. So three kernels serve both ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h_in * self.w_in
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out * self.w_out
    }
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }
    /// Multiply-adds of one pass (forward, backward-data and backward-weight cost the same).
    pub fn macs(&self) -> u64 {
        (self.n * self.c_out * self.h_out * self.w_out) as u64 * (self.c_in * self.kh * self.kw) as u64
    }

    /// The convolution by its definition: `f(x index, y index, w index)` for every
    /// multiply-add, taps in the padding skipped, in a fixed order (image, output channel,
    /// output pixel, input channel, tap). The naive references of the tests and benches.
    pub fn for_each_mac(&self, mut f: impl FnMut(usize, usize, usize)) {
        let g = self;
        for b in 0..g.n {
            for co in 0..g.c_out {
                for oy in 0..g.h_out {
                    for ox in 0..g.w_out {
                        let yi = ((b * g.c_out + co) * g.h_out + oy) * g.w_out + ox;
                        for c in 0..g.c_in {
                            for ki in 0..g.kh {
                                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                if iy < 0 || iy >= g.h_in as isize {
                                    continue;
                                }
                                for kj in 0..g.kw {
                                    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                    if ix >= 0 && ix < g.w_in as isize {
                                        let xi =
                                            ((b * g.c_in + c) * g.h_in + iy as usize) * g.w_in + ix as usize;
                                        f(xi, yi, ((co * g.c_in + c) * g.kh + ki) * g.kw + kj);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// NCHW extents for per-channel ops (batchnorm, bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
    /// √x (for x ≥ 0; spectral normalisation's vector norms).
    Sqrt,
}

impl Unary {
    /// Whether the backward rule reads the forward output (else it reads the input).
    /// relu and leaky_relu with a slope ≥ 0 read the output too: y > 0 exactly when x > 0,
    /// so the rule is the same, and the layer's input (a conv output, the largest tensor of
    /// D's first layer) can be freed as soon as the forward pass has used it.
    pub fn backward_uses_output(self) -> bool {
        match self {
            Unary::Tanh | Unary::Sigmoid | Unary::Relu | Unary::Sqrt => true,
            Unary::LeakyRelu(slope) => slope >= 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count, for the bias corrections.
    pub step: u64,
}

/// The kernels. Scalars that the graph produces (a loss, a sum) stay in 1-element storages so
/// they never force a device-to-host copy in the middle of a step.
pub trait Backend: Send + Sync {
    fn zeros(&self, len: usize) -> Storage;
    fn upload(&self, data: Vec<f32>) -> Storage;
    fn download(&self, s: &Storage) -> Vec<f32>;
    fn copy(&self, s: &Storage) -> Storage;
    fn fill(&self, s: &mut Storage, value: f32);

    // Elementwise.
    fn binary(&self, op: Binary, a: &Storage, b: &Storage) -> Storage;
    /// alpha * x + beta
    fn affine(&self, x: &Storage, alpha: f32, beta: f32) -> Storage;
    /// y = a * x + b * y, in place (gradient accumulation, running statistics).
    fn axpby(&self, a: f32, x: &Storage, b: f32, y: &mut Storage);
    fn unary(&self, op: Unary, x: &Storage) -> Storage;
    /// `saved` is the forward input or output, as [`Unary::backward_uses_output`] says.
    fn unary_backward(&self, op: Unary, saved: &Storage, dy: &Storage) -> Storage;

    // Reductions and broadcasts.
    /// Sum of all elements, into a 1-element storage.
    fn sum(&self, x: &Storage) -> Storage;
    /// A `len`-element storage filled with `scale * s[0]`.
    fn broadcast_scalar(&self, s: &Storage, scale: f32, len: usize) -> Storage;
    /// Per-channel sums of an NCHW tensor: `[c]`.
    fn sum_channels(&self, x: &Storage, shape: ChannelShape) -> Storage;
    /// `x + bias[c]` for every (n, c, hw).
    fn add_channels(&self, x: &Storage, bias: &Storage, shape: ChannelShape) -> Storage;

    // Augmentation.
    /// Each NCHW image of `shape` shifted and then cut, by its six `params` (dy, dx, and the
    /// cut rectangle's rows and columns [y0, y1) × [x0, x1)); with `backward`, the adjoint
    /// (kernels/augment.cu states both).
    fn translate_cutout(&self, x: &Storage, params: &Storage, shape: [usize; 4], backward: bool) -> Storage;

    // Matrix product and convolutions.
    /// C[m×n] = op(A) op(B), A and B row-major, op = transpose when the flag is set.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        a: &Storage,
        trans_a: bool,
        b: &Storage,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
    ) -> Storage;
    fn conv2d_forward(&self, x: &Storage, w: &Storage, g: &ConvGeom) -> Storage;
    /// act(conv2d(x, w)) for an elementwise activation (a DCGAN's discriminator puts a
    /// LeakyReLU straight after its first convolution). The default composes the two kernels;
    /// a backend overrides it to apply act while the output is still in cache, sparing a pass
    /// over a large tensor.
    fn conv2d_forward_act(&self, x: &Storage, w: &Storage, g: &ConvGeom, act: Unary) -> Storage {
        let z = self.conv2d_forward(x, w, g);
        self.unary(act, &z)
    }
    fn conv2d_backward_data(&self, dy: &Storage, w: &Storage, g: &ConvGeom) -> Storage;
    fn conv2d_backward_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeom) -> Storage;

    // BatchNorm over (n, hw) per channel.
    /// Training mode: returns (y, batch mean, biased batch variance).
    fn batchnorm2d_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> (Storage, Storage, Storage);
    /// Normalise with the given per-channel mean and variance (eval mode).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm2d_forward_eval(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> Storage;
    /// Returns (dx, dgamma, dbeta). `batch_stats` says whether mean/var were computed from
    /// this batch (training mode: dx includes their dependence on x) or fixed (eval mode).
    #[allow(clippy::too_many_arguments)]
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
    ) -> (Storage, Storage, Storage);

    // BatchNorm fused with the ReLU / LeakyReLU that follows it (`act`). The defaults compose
    // the unfused kernels; a backend overrides them to make one pass and store no
    // pre-activation.
    /// Training mode: returns (act(batchnorm(x)), batch mean, biased batch variance).
    fn batchnorm2d_act_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
        act: Unary,
    ) -> (Storage, Storage, Storage) {
        let (z, mean, var) = self.batchnorm2d_forward_train(x, gamma, beta, shape, eps);
        (self.unary(act, &z), mean, var)
    }
    /// Eval mode: act(batchnorm(x)) with the given statistics.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm2d_act_forward_eval(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        act: Unary,
    ) -> Storage {
        let z = self.batchnorm2d_forward_eval(x, gamma, beta, mean, var, shape, eps);
        self.unary(act, &z)
    }
    /// Returns (dx, dgamma, dbeta) of y = act(batchnorm(x)) from the BatchNorm's input `x`
    /// (the pre-activation is recomputed from it), as `batchnorm2d_backward` does.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm2d_act_backward(
        &self,
        x: &Storage,
        dy: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        batch_stats: bool,
        act: Unary,
    ) -> (Storage, Storage, Storage) {
        let z = self.batchnorm2d_forward_eval(x, gamma, beta, mean, var, shape, eps);
        let dz = self.unary_backward(act, &z, dy);
        self.batchnorm2d_backward(x, &dz, gamma, mean, var, shape, eps, batch_stats)
    }

    // Loss.
    /// Mean over all elements of max(x,0) − x·t + log(1 + e^−|x|), into 1 element.
    fn bce_with_logits(&self, x: &Storage, target: &Storage) -> Storage;
    /// `dx = dloss[0] · (sigmoid(x) − t) / len`
    fn bce_with_logits_backward(&self, x: &Storage, target: &Storage, dloss: &Storage) -> Storage;

    // Optimisers, in place.
    fn adam_step(&self, p: &mut Storage, grad: &Storage, m: &mut Storage, v: &mut Storage, hp: &AdamParams);
    /// buf = momentum·buf + (grad + wd·p) (buf = grad on the first step); p −= lr·buf.
    #[allow(clippy::too_many_arguments)]
    fn sgd_step(
        &self,
        p: &mut Storage,
        grad: &Storage,
        buf: &mut Storage,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    );

    /// Waits until every op issued so far has finished. A GPU backend queues its kernels, so
    /// a host clock reads their time only after this; the CPU runs each op to completion.
    fn synchronize(&self) {}
}
