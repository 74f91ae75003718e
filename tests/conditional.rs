//! The class-conditional DCGAN (`train --conditional`): the projection discriminator's class
//! term and its gradients against f64 references, the conditional D's logits, and a step that
//! trains exactly the embeddings of the classes in its batch, on every device.

#[macro_use]
mod common;
use common::{assert_close, check_gradients, random, tensor};
use dcgan::gan::models::{conditional_logits, generator_input, one_hot};
use dcgan::gan::{ClassLabels, DcganConfig, Gan};
use dcgan::nn::{ClassProjection, Module};
use dcgan::{Device, Rng, Tensor};

const N: usize = 5;
const CLASSES: usize = 4;
/// Features of 3 channels at 2×2.
const F: usize = 12;
const LABELS: [u8; N] = [2, 0, 2, 3, 0];

/// ⟨e_y, φ⟩ for each sample in f64.
fn class_term_reference(features: &[f64], embed: &[f64]) -> Vec<f64> {
    (0..N)
        .map(|b| {
            let y = usize::from(LABELS[b]);
            (0..F).map(|f| features[b * F + f] * embed[f * CLASSES + y]).sum()
        })
        .collect()
}

/// The term's values, and its gradients for φ and the embedding against central differences
/// (the one-hot rows are data, not differentiated).
fn class_term_is_the_label_rows_dot_the_features(dev: Device) {
    let mut rng = Rng::new(7);
    let (features, embed) = (random(N * F, &mut rng), random(CLASSES * F, &mut rng));
    let y = one_hot(&LABELS, CLASSES, dev);
    let term = ClassProjection::class_term(
        &tensor(&embed, &[F, CLASSES], dev),
        &tensor(&features, &[N, 3, 2, 2], dev),
        &y,
    );
    assert_eq!(term.shape(), [N]);
    assert_close(&term.to_vec(), &class_term_reference(&features, &embed), 1e-5, "class term");
    check_gradients(
        "class term",
        &[(features, vec![N, 3, 2, 2]), (embed, vec![F, CLASSES])],
        &[true, true],
        dev,
        |t| ClassProjection::class_term(&t[1], &t[0], &y),
        |v| class_term_reference(&v[0], &v[1]),
    );
}

fn small(classes: usize) -> DcganConfig {
    DcganConfig { image_size: 16, channels: 1, nz: 8, ngf: 4, ndf: 4, classes }
}

/// A conditional D's logit is its unconditional one plus ⟨e_y, φ(x)⟩ over the last hidden
/// features; with the embedding at its zero start it is the unconditional logit exactly.
fn conditional_logits_add_the_class_term(dev: Device) {
    let gan = Gan::dcgan(&small(CLASSES), &mut Rng::new(1), dev);
    let d = &gan.discriminator;
    let x = Tensor::randn(&[N, 1, 16, 16], 0.0, 1.0, &mut Rng::new(2), dev);
    let y = one_hot(&LABELS, CLASSES, dev);
    let plain = d.forward(&x).to_vec();
    assert_eq!(conditional_logits(d, &x, &y).to_vec(), plain, "zero embeddings add nothing");

    let embed = d.parameters().last().unwrap().clone();
    // Last hidden features: 8 channels at 4×4.
    let f = 8 * 16;
    assert_eq!(embed.shape(), [f, CLASSES]);
    let e = random(CLASSES * f, &mut Rng::new(3));
    embed.copy_from_slice(&common::to_f32(&e));
    let features: Vec<f64> =
        d.forward_prefix(&x, d.layers.len() - 2).to_vec().iter().map(|&v| f64::from(v)).collect();
    let expected: Vec<f64> = (0..N)
        .map(|b| {
            let row = usize::from(LABELS[b]);
            f64::from(plain[b]) + (0..f).map(|k| features[b * f + k] * e[k * CLASSES + row]).sum::<f64>()
        })
        .collect();
    assert_close(&conditional_logits(d, &x, &y).to_vec(), &expected, 1e-4, "conditional logits");
}

/// One conditional step: D(x) is reported through the class term, and only the embeddings
/// of the classes in the batch (real and fake share them) get a gradient, so class 1, absent,
/// keeps its zero row while the others move.
fn a_step_trains_the_embeddings_of_the_batchs_classes(dev: Device) {
    let cfg = small(CLASSES);
    let mut gan = Gan::dcgan(&cfg, &mut Rng::new(1), dev);
    let embed = gan.discriminator.parameters().last().unwrap().clone();
    embed.copy_from_slice(&common::to_f32(&random(CLASSES * 8 * 16, &mut Rng::new(4))));
    let before = embed.to_vec();
    let mut rng = Rng::new(5);
    let real = Tensor::rand_uniform(&[N, 1, 16, 16], -1.0, 1.0, &mut rng, dev);
    let mut z = vec![0.0; N * cfg.nz];
    rng.fill_normal(&mut z, 0.0, 1.0);
    let zs = [generator_input(z, cfg.nz, &LABELS, CLASSES, dev)];
    assert_eq!(zs[0].shape(), [N, cfg.nz + CLASSES, 1, 1]);
    let y = one_hot(&LABELS, CLASSES, dev);
    let d_real: f64 = dcgan::no_grad(|| conditional_logits(&gan.discriminator, &real, &y))
        .to_vec()
        .iter()
        .map(|&l| 1.0 / (1.0 + (-f64::from(l)).exp()))
        .sum::<f64>()
        / N as f64;
    let labels = [ClassLabels { real: y.clone(), fake: y }];
    let (m, _) = gan.step_with(std::slice::from_ref(&real), &zs, &labels, false);
    assert!((f64::from(m.d_real) - d_real).abs() < 1e-5, "D(x) {} against {d_real}", m.d_real);
    let after = embed.to_vec();
    let f = 8 * 16;
    for c in 0..CLASSES {
        let moved = (0..f).filter(|&k| after[k * CLASSES + c] != before[k * CLASSES + c]).count();
        if LABELS.contains(&(c as u8)) {
            assert!(moved > f / 2, "class {c}'s embedding barely moved ({moved} of {f})");
        } else {
            assert_eq!(moved, 0, "class {c} is not in the batch but its embedding moved");
        }
    }
}

device_tests!(
    class_term_is_the_label_rows_dot_the_features,
    conditional_logits_add_the_class_term,
    a_step_trains_the_embeddings_of_the_batchs_classes,
);

/// G's input is the noise with the one-hot class appended; without classes, the noise alone.
#[test]
fn generator_input_appends_the_one_hot_class() {
    let z: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let x = generator_input(z.clone(), 3, &[1, 0], 2, Device::Cpu);
    assert_eq!(x.shape(), [2, 5, 1, 1]);
    assert_eq!(x.to_vec(), [0.0, 1.0, 2.0, 0.0, 1.0, 3.0, 4.0, 5.0, 1.0, 0.0]);
    let plain = generator_input(z.clone(), 3, &[], 0, Device::Cpu);
    assert_eq!((plain.shape(), plain.to_vec()), (&[2, 3, 1, 1][..], z));
}
