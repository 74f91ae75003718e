use super::Optimizer;
use crate::backend::AdamParams;
use crate::tensor::Tensor;

/// torch.optim.Adam: per-parameter first and second moments and step counts.
pub struct Adam {
    params: Vec<Tensor>,
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
    pub steps: Vec<u64>,
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, lr: f32, betas: (f32, f32)) -> Self {
        let zeros = |p: &Tensor| Tensor::zeros(p.shape(), p.device());
        Adam {
            exp_avg: params.iter().map(zeros).collect(),
            exp_avg_sq: params.iter().map(zeros).collect(),
            steps: vec![0; params.len()],
            params,
            lr,
            betas,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self) {
        for (i, p) in self.params.iter().enumerate() {
            let Some(grad) = p.grad() else { continue };
            self.steps[i] += 1;
            let hp = AdamParams {
                lr: self.lr,
                beta1: self.betas.0,
                beta2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                step: self.steps[i],
            };
            p.backend().adam_step(
                &mut p.storage_mut(),
                &grad.storage(),
                &mut self.exp_avg[i].storage_mut(),
                &mut self.exp_avg_sq[i].storage_mut(),
                &hp,
            );
        }
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
}
