//! The CPU backend: rayon across cores, SIMD inside the gemm micro-kernel.
//!
//! Determinism: every reduction splits its input into chunks of a fixed size (never by the
//! thread count) and combines the partial results in chunk order, so the bits are the same
//! for any number of threads.

pub mod activation;
pub mod amx;
pub mod augment;
pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod reduce;
#[cfg(target_arch = "x86_64")]
mod winograd;

use super::{AdamParams, Backend, Binary, ChannelShape, ConvGeom, Storage, Unary};

/// How the convolutions' matrix products round their inputs. `Bf16` rounds both operands to
/// bf16 and sums in f32, on the AMX tile units where the CPU has them (`amx`), the way
/// PyTorch's `set_float32_matmul_precision("medium")` does; everything else stays f32.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    #[default]
    F32,
    Bf16,
}

impl MatmulPrecision {
    pub fn name(self) -> &'static str {
        match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::Bf16 => "bf16",
        }
    }
}

thread_local! {
    /// Per thread, so that tests (each on its own thread) cannot change each other's
    /// arithmetic; ops read it on the thread that launches them, before any rayon split.
    static MATMUL_PRECISION: std::cell::Cell<MatmulPrecision> = const { std::cell::Cell::new(MatmulPrecision::F32) };
}

/// Sets the convolutions' product precision for ops launched from this thread.
pub fn set_matmul_precision(p: MatmulPrecision) {
    MATMUL_PRECISION.with(|c| c.set(p));
}

pub fn matmul_precision() -> MatmulPrecision {
    MATMUL_PRECISION.with(|c| c.get())
}

/// Sets this thread's product precision until the guard is dropped, then restores the one
/// before: a training run or a bench leaves the thread as it found it.
#[must_use = "the precision is restored when the guard is dropped"]
pub struct MatmulPrecisionScope(MatmulPrecision);

impl MatmulPrecisionScope {
    pub fn new(p: MatmulPrecision) -> MatmulPrecisionScope {
        let before = matmul_precision();
        set_matmul_precision(p);
        MatmulPrecisionScope(before)
    }
}

impl Drop for MatmulPrecisionScope {
    fn drop(&mut self) {
        set_matmul_precision(self.0);
    }
}

/// Elements per parallel task of an elementwise kernel: large enough to amortise rayon's
/// scheduling, small enough to spread a 64×64 activation map over the cores.
pub const CHUNK: usize = 1 << 14;

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn zeros(&self, len: usize) -> Storage {
        Storage::Cpu(pool::zeros(len))
    }
    fn upload(&self, data: Vec<f32>) -> Storage {
        Storage::Cpu(data)
    }
    fn download(&self, s: &Storage) -> Vec<f32> {
        s.cpu().to_vec()
    }
    fn copy(&self, s: &Storage) -> Storage {
        let mut v = pool::take(s.len());
        v.copy_from_slice(s.cpu());
        Storage::Cpu(v)
    }
    fn fill(&self, s: &mut Storage, value: f32) {
        s.cpu_mut().fill(value)
    }

    fn binary(&self, op: Binary, a: &Storage, b: &Storage) -> Storage {
        Storage::Cpu(elementwise::binary(op, a.cpu(), b.cpu()))
    }
    fn affine(&self, x: &Storage, alpha: f32, beta: f32) -> Storage {
        Storage::Cpu(elementwise::affine(x.cpu(), alpha, beta))
    }
    fn axpby(&self, a: f32, x: &Storage, b: f32, y: &mut Storage) {
        elementwise::axpby(a, x.cpu(), b, y.cpu_mut())
    }
    fn unary(&self, op: Unary, x: &Storage) -> Storage {
        Storage::Cpu(activation::forward(op, x.cpu()))
    }
    fn unary_backward(&self, op: Unary, saved: &Storage, dy: &Storage) -> Storage {
        Storage::Cpu(activation::backward(op, saved.cpu(), dy.cpu()))
    }

    fn sum(&self, x: &Storage) -> Storage {
        Storage::Cpu(vec![reduce::sum(x.cpu()) as f32])
    }
    fn broadcast_scalar(&self, s: &Storage, scale: f32, len: usize) -> Storage {
        let mut v = pool::take(len);
        v.fill(s.cpu()[0] * scale);
        Storage::Cpu(v)
    }
    fn sum_channels(&self, x: &Storage, shape: ChannelShape) -> Storage {
        Storage::Cpu(reduce::sum_channels(x.cpu(), shape).into_iter().map(|s| s as f32).collect())
    }
    fn add_channels(&self, x: &Storage, bias: &Storage, shape: ChannelShape) -> Storage {
        Storage::Cpu(elementwise::add_channels(x.cpu(), bias.cpu(), shape))
    }
    fn translate_cutout(&self, x: &Storage, params: &Storage, shape: [usize; 4], backward: bool) -> Storage {
        Storage::Cpu(augment::translate_cutout(x.cpu(), params.cpu(), shape, backward))
    }

    fn matmul(
        &self,
        a: &Storage,
        trans_a: bool,
        b: &Storage,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
    ) -> Storage {
        use gemm::MatRef;
        let a = if trans_a { MatRef::row_major_t(a.cpu(), m) } else { MatRef::row_major(a.cpu(), k) };
        let b = if trans_b { MatRef::row_major_t(b.cpu(), k) } else { MatRef::row_major(b.cpu(), n) };
        let mut c = pool::take(m * n);
        gemm::sgemm(m, n, k, 1.0, a, b, 0.0, &mut c, n);
        Storage::Cpu(c)
    }
    fn conv2d_forward(&self, x: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        Storage::Cpu(conv::forward(x.cpu(), w.cpu(), g, None))
    }
    fn conv2d_forward_act(&self, x: &Storage, w: &Storage, g: &ConvGeom, act: Unary) -> Storage {
        Storage::Cpu(conv::forward(x.cpu(), w.cpu(), g, Some(act)))
    }
    fn conv2d_backward_data(&self, dy: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        Storage::Cpu(conv::backward_data(dy.cpu(), w.cpu(), g))
    }
    fn conv2d_backward_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeom) -> Storage {
        Storage::Cpu(conv::backward_weight(x.cpu(), dy.cpu(), g))
    }

    fn batchnorm2d_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> (Storage, Storage, Storage) {
        let (y, mean, var) = batchnorm::forward_train(x.cpu(), gamma.cpu(), beta.cpu(), shape, eps);
        (Storage::Cpu(y), Storage::Cpu(mean), Storage::Cpu(var))
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
        Storage::Cpu(batchnorm::forward_eval(
            x.cpu(),
            gamma.cpu(),
            beta.cpu(),
            mean.cpu(),
            var.cpu(),
            shape,
            eps,
        ))
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
        let (dx, dgamma, dbeta) = batchnorm::backward(
            x.cpu(),
            dy.cpu(),
            gamma.cpu(),
            mean.cpu(),
            var.cpu(),
            shape,
            eps,
            batch_stats,
        );
        (Storage::Cpu(dx), Storage::Cpu(dgamma), Storage::Cpu(dbeta))
    }

    fn batchnorm2d_act_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
        act: Unary,
    ) -> (Storage, Storage, Storage) {
        let (y, mean, var) = batchnorm::act_forward_train(x.cpu(), gamma.cpu(), beta.cpu(), shape, eps, act);
        (Storage::Cpu(y), Storage::Cpu(mean), Storage::Cpu(var))
    }
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
        Storage::Cpu(batchnorm::act_forward_eval(
            x.cpu(),
            gamma.cpu(),
            beta.cpu(),
            mean.cpu(),
            var.cpu(),
            shape,
            eps,
            act,
        ))
    }
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
        let (dx, dgamma, dbeta) = batchnorm::act_backward(
            x.cpu(),
            dy.cpu(),
            gamma.cpu(),
            beta.cpu(),
            mean.cpu(),
            var.cpu(),
            shape,
            eps,
            batch_stats,
            act,
        );
        (Storage::Cpu(dx), Storage::Cpu(dgamma), Storage::Cpu(dbeta))
    }

    fn bce_with_logits(&self, x: &Storage, target: &Storage) -> Storage {
        Storage::Cpu(vec![loss::bce_with_logits(x.cpu(), target.cpu())])
    }
    fn bce_with_logits_backward(&self, x: &Storage, target: &Storage, dloss: &Storage) -> Storage {
        Storage::Cpu(loss::bce_with_logits_backward(x.cpu(), target.cpu(), dloss.cpu()[0]))
    }

    fn adam_step(&self, p: &mut Storage, grad: &Storage, m: &mut Storage, v: &mut Storage, hp: &AdamParams) {
        optim::adam(p.cpu_mut(), grad.cpu(), m.cpu_mut(), v.cpu_mut(), hp)
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
        optim::sgd(p.cpu_mut(), grad.cpu(), buf.cpu_mut(), lr, momentum, weight_decay, first_step)
    }
}
