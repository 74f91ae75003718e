//! The class term of a projection discriminator (Miyato & Koyama 2018, "cGANs with Projection
//! Discriminator"): D(x, y) = ψ(φ(x)) + ⟨e_y, φ(x)⟩, where φ(x) is D's last hidden feature
//! map, ψ its last (unconditional) layer and e_y a learned embedding of class y, one column
//! of `embed` per class. DCGAN's ψ is a 4×4 convolution over the whole 4×4 map, a linear map of
//! the flattened φ, so e_y is the same size: in effect each class adds its own kernel to ψ's.
//! The embeddings are stored as the columns of a [features, classes] matrix, so that one
//! small matmul φ·E scores every class and the label picks its score: nothing of φ's size is
//! built beyond φ itself.
//!
//! It is the last layer of a conditional D's [`super::Sequential`], so everything that walks
//! D's state (checkpoints, Adam, gradient norms, freezing D for G's step) carries the
//! embedding. Its plain [`Module::forward`] passes D's logits through unchanged: with no label
//! the class term is zero. The labelled forward is [`ClassProjection::class_term`].

use super::{Module, parameter};
use crate::backend::Device;
use crate::tensor::Tensor;

pub struct ClassProjection {
    /// [features, classes]: column y is e_y.
    pub embed: Tensor,
}

impl ClassProjection {
    /// Zero embeddings: D starts as the unconditional one and learns what each class adds.
    pub fn new(classes: usize, features: usize, device: Device) -> Self {
        ClassProjection { embed: parameter(Tensor::zeros(&[features, classes], device)) }
    }

    /// ⟨e_y, φ⟩ for each sample, \[n\]: `features` φ \[n, ...\] (flattened), `one_hot` \[n, classes\]
    /// the labels y. The gradient reaches both φ and the embedding.
    pub fn class_term(embed: &Tensor, features: &Tensor, one_hot: &Tensor) -> Tensor {
        let n = features.shape()[0];
        let (f, classes) = (features.numel() / n, embed.shape()[1]);
        assert_eq!(
            (one_hot.shape(), embed.shape()[0]),
            (&[n, classes][..], f),
            "class_term: one-hot {:?} and embedding {:?} for features {:?}",
            one_hot.shape(),
            embed.shape(),
            features.shape()
        );
        // Every class's score [n, classes]; the one-hot row keeps the label's, summed as the
        // per-channel sum of an [1, n, classes, 1] tensor.
        let scores = features.reshape(&[n, f]).matmul(embed);
        scores.mul(one_hot).reshape(&[1, n, classes, 1]).sum_channels()
    }
}

impl Module for ClassProjection {
    fn forward(&self, logits: &Tensor) -> Tensor {
        logits.clone()
    }
    fn kind(&self) -> &'static str {
        "ClassProjection"
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        vec![("embed".to_string(), self.embed.clone())]
    }
    fn parameters(&self) -> Vec<Tensor> {
        vec![self.embed.clone()]
    }
}
