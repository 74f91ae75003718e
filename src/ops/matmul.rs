//! 2-D matrix product.

use crate::autograd::record_op;
use crate::tensor::Tensor;

/// [m, k] · [k, n] -> [m, n].
pub fn matmul(a: &Tensor, b: &Tensor) -> Tensor {
    let (&[m, k], &[k2, n]) = (a.shape(), b.shape()) else {
        panic!("matmul: expected two matrices, got shapes {:?} and {:?}", a.shape(), b.shape());
    };
    assert_eq!(k, k2, "matmul: inner dimensions differ: {:?} · {:?}", a.shape(), b.shape());
    let out = a.backend().matmul(&a.storage(), false, &b.storage(), false, m, n, k);
    record_op("matmul", out, &[m, n], vec![a.clone(), b.clone()], move |g, inputs| {
        let be = g.backend();
        let (a, b) = (&inputs[0], &inputs[1]);
        // dA = g · Bᵀ, dB = Aᵀ · g
        let da = a.requires_grad().then(|| {
            Tensor::from_storage(be.matmul(&g.storage(), false, &b.storage(), true, m, k, n), &[m, k])
        });
        let db = b.requires_grad().then(|| {
            Tensor::from_storage(be.matmul(&a.storage(), true, &g.storage(), false, k, n, m), &[k, n])
        });
        vec![da, db]
    })
}

impl Tensor {
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        matmul(self, other)
    }
}
