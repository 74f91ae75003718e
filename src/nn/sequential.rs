use super::Module;
use crate::tensor::Tensor;

/// Layers applied in order; state names are prefixed with the layer index ("0.weight"), as
/// `nn.Sequential` does.
#[derive(Default)]
pub struct Sequential {
    pub layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// The first `end` layers applied to `x` (fusing as [`Module::forward`] does): the hidden
    /// features a head built from the remaining layers reads.
    pub fn forward_prefix(&self, x: &Tensor, end: usize) -> Tensor {
        assert!(end <= self.layers.len(), "forward_prefix: {end} of {} layers", self.layers.len());
        let mut x = x.clone();
        let mut i = 0;
        while i < end {
            let act = if i + 1 < end { self.layers[i + 1].activation() } else { None };
            match act.and_then(|act| self.layers[i].forward_fused(&x, act)) {
                Some(y) => {
                    x = y;
                    i += 2;
                }
                None => {
                    x = self.layers[i].forward(&x);
                    i += 1;
                }
            }
        }
        x
    }
}

impl Module for Sequential {
    /// Layers in order; a layer directly followed by an activation layer runs with it as one
    /// fused op where it has one ([`Module::forward_fused`]: same values and gradients, one
    /// pass fewer, no intermediate tensor kept).
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_prefix(x, self.layers.len())
    }
    fn kind(&self) -> &'static str {
        "Sequential"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.named_tensors().into_iter().map(|(name, t)| (format!("{i}.{name}"), t)));
        }
        out
    }
    fn parameters(&self) -> Vec<Tensor> {
        self.layers.iter().flat_map(|l| l.parameters()).collect()
    }
    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }
    fn counters(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.counters().into_iter().map(|(name, n)| (format!("{i}.{name}"), n)));
        }
        out
    }
    fn set_counter(&self, name: &str, value: u64) -> bool {
        let Some((index, rest)) = name.split_once('.') else { return false };
        match index.parse::<usize>().ok().and_then(|i| self.layers.get(i)) {
            Some(layer) => layer.set_counter(rest, value),
            None => false,
        }
    }
}
