//! sum and mean, over the whole tensor or per channel of NCHW.

use super::channel_shape;
use crate::autograd::record_op;
use crate::tensor::Tensor;

impl Tensor {
    /// Sum of all elements, as a 0-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        self.sum_scaled("sum", 1.0)
    }

    pub fn mean(&self) -> Tensor {
        self.sum_scaled("mean", 1.0 / self.numel() as f32)
    }

    fn sum_scaled(&self, op: &'static str, scale: f32) -> Tensor {
        let b = self.backend();
        let mut out = b.sum(&self.storage());
        if scale != 1.0 {
            out = b.affine(&out, scale, 0.0);
        }
        let (shape, len) = (self.shape().to_vec(), self.numel());
        record_op(op, out, &[], vec![self.clone()], move |g, _| {
            vec![Some(Tensor::from_storage(g.backend().broadcast_scalar(&g.storage(), scale, len), &shape))]
        })
    }

    /// A one-element tensor repeated to `shape` (the backward of [`Tensor::sum`], whose own
    /// backward is a sum): a device scalar applied elementwise without reading it back.
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        assert_eq!(self.numel(), 1, "broadcast_to: expected one element, got shape {:?}", self.shape());
        let len = shape.iter().product();
        let out = self.backend().broadcast_scalar(&self.storage(), 1.0, len);
        let own = self.shape().to_vec();
        record_op("broadcast", out, shape, vec![self.clone()], move |g, _| {
            vec![Some(Tensor::from_storage(g.backend().sum(&g.storage()), &own))]
        })
    }

    /// Σ over batch, height and width of an NCHW tensor: shape `[C]`.
    pub fn sum_channels(&self) -> Tensor {
        self.sum_channels_scaled("sum_channels", 1.0)
    }

    /// Per-channel mean of an NCHW tensor: shape `[C]`.
    pub fn mean_channels(&self) -> Tensor {
        let s = channel_shape(self, "mean_channels");
        self.sum_channels_scaled("mean_channels", 1.0 / (s.n * s.hw) as f32)
    }

    fn sum_channels_scaled(&self, op: &'static str, scale: f32) -> Tensor {
        let s = channel_shape(self, op);
        let b = self.backend();
        let mut out = b.sum_channels(&self.storage(), s);
        if scale != 1.0 {
            out = b.affine(&out, scale, 0.0);
        }
        let shape = self.shape().to_vec();
        record_op(op, out, &[s.c], vec![self.clone()], move |g, _| {
            let b = g.backend();
            let zeros = b.zeros(s.n * s.c * s.hw);
            let dx = b.add_channels(&zeros, &b.affine(&g.storage(), scale, 0.0), s);
            vec![Some(Tensor::from_storage(dx, &shape))]
        })
    }
}
