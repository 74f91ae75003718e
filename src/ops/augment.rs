//! translate_cutout: DiffAugment's shift and cut (Zhao et al. 2020, "Differentiable
//! Augmentation for Data-Efficient GAN Training"). Each image of x [n, c, h, w] is shifted by
//! whole pixels (dy, dx), zero-filled, and then a rectangle of the result is set to zero; its
//! six `params` [n, 6] are dy, dx and the rectangle's rows [y0, y1) and columns [x0, x1), in
//! output coordinates. The map is linear, so the gradient is its adjoint: the same gather the
//! other way round, which the generator's gradient passes through.

use crate::autograd::record_op;
use crate::tensor::Tensor;

pub fn translate_cutout(x: &Tensor, params: &Tensor) -> Tensor {
    let shape = x.dims4("translate_cutout");
    assert_eq!(
        params.shape(),
        [shape[0], 6],
        "translate_cutout: params of shape {:?} for {} images (expected [n, 6])",
        params.shape(),
        shape[0]
    );
    let out = x.backend().translate_cutout(&x.storage(), &params.storage(), shape, false);
    let params = params.detach();
    record_op("translate_cutout", out, &shape, vec![x.clone()], move |g, _| {
        let dx = g.backend().translate_cutout(&g.storage(), &params.storage(), shape, true);
        vec![Some(Tensor::from_storage(dx, &shape))]
    })
}
