use super::Optimizer;
use crate::tensor::Tensor;

/// torch.optim.SGD with momentum (dampening 0, no Nesterov).
pub struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Tensor>,
    started: Vec<bool>,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, lr: f32, momentum: f32) -> Self {
        Sgd {
            momentum_buffers: params.iter().map(|p| Tensor::zeros(p.shape(), p.device())).collect(),
            started: vec![false; params.len()],
            params,
            lr,
            momentum,
            weight_decay: 0.0,
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        for (i, p) in self.params.iter().enumerate() {
            let Some(grad) = p.grad() else { continue };
            p.backend().sgd_step(
                &mut p.storage_mut(),
                &grad.storage(),
                &mut self.momentum_buffers[i].storage_mut(),
                self.lr,
                self.momentum,
                self.weight_decay,
                !self.started[i],
            );
            self.started[i] = true;
        }
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
}
