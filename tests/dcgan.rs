//! DCGAN-shaped networks built from the modules: shapes, PyTorch state names, a few Adam
//! steps on one fixed batch, and bit-identical results for the same seed at any thread count.

#[macro_use]
mod common;
use dcgan::gan::{
    DcganConfig, DiffAugment, DiffAugmentPolicy, Gan, GanLoss, GeneratorEma, InstanceNoise, StepMetrics,
    generator,
};
use dcgan::nn::Module;
use dcgan::{Device, Rng, Tensor};

fn config(image_size: usize) -> DcganConfig {
    DcganConfig { image_size, channels: 3, nz: 16, ngf: 8, ndf: 8, classes: 0 }
}

fn build(cfg: &DcganConfig, seed: u64, dev: Device) -> Gan {
    Gan::dcgan(cfg, &mut Rng::new(seed), dev)
}

fn shapes_follow_the_image_size(dev: Device) {
    for size in [16, 32, 64] {
        let cfg = config(size);
        let gan = build(&cfg, 1, dev);
        let z = Tensor::randn(&[2, cfg.nz, 1, 1], 0.0, 1.0, &mut Rng::new(2), dev);
        let img = gan.generator.forward(&z);
        assert_eq!(img.shape(), [2, 3, size, size]);
        assert!(img.to_vec().iter().all(|v| v.abs() < 1.0), "tanh output");
        assert_eq!(gan.discriminator.forward(&img).shape(), [2, 1, 1, 1]);
    }
}

/// The state names of pytorch/examples' dcgan (inside its `main` Sequential), 64×64.
fn state_names_match_pytorch(dev: Device) {
    let cfg = DcganConfig { image_size: 64, channels: 3, nz: 100, ngf: 64, ndf: 64, classes: 0 };
    let gan = build(&cfg, 1, dev);
    let bn = |i: usize| ["weight", "bias", "running_mean", "running_var"].map(|s| format!("{i}.{s}"));
    let mut want_g = vec!["0.weight".to_string()];
    for (bn_i, conv_i) in [(1, 3), (4, 6), (7, 9), (10, 12)] {
        want_g.extend(bn(bn_i));
        want_g.push(format!("{conv_i}.weight"));
    }
    let names_g: Vec<String> = gan.generator.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names_g, want_g);
    let shapes_g: Vec<Vec<usize>> =
        gan.generator.named_tensors().iter().map(|(_, t)| t.shape().to_vec()).collect();
    assert_eq!(shapes_g[0], [100, 512, 4, 4]);
    assert_eq!(shapes_g.last().unwrap(), &[64, 3, 4, 4]);

    let mut want_d = vec!["0.weight".to_string()];
    for (conv_i, bn_i) in [(2, 3), (5, 6), (8, 9)] {
        want_d.push(format!("{conv_i}.weight"));
        want_d.extend(bn(bn_i));
    }
    want_d.push("11.weight".to_string());
    let names_d: Vec<String> = gan.discriminator.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names_d, want_d);
}

/// DCGAN initialisation: conv weights N(0, 0.02), BN weight N(1, 0.02), BN bias 0.
fn initialisation_statistics(dev: Device) {
    let cfg = DcganConfig { image_size: 32, channels: 3, nz: 100, ngf: 64, ndf: 64, classes: 0 };
    let gan = build(&cfg, 5, dev);
    for (name, t) in gan.generator.named_tensors().into_iter().chain(gan.discriminator.named_tensors()) {
        let v = t.to_vec();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (want_mean, want_std) = match name.rsplit('.').next().unwrap() {
            "bias" | "running_mean" => (0.0, 0.0),
            "running_var" => (1.0, 0.0),
            _ if t.shape().len() == 1 => (1.0, 0.02),
            _ => (0.0, 0.02),
        };
        let tol = if want_std == 0.0 { 0.0 } else { 5.0 * want_std / n.sqrt() + 0.1 * want_std };
        assert!((mean - want_mean).abs() <= tol.max(1e-7), "{name}: mean {mean}");
        assert!((std - want_std).abs() <= tol.max(1e-7), "{name}: std {std}");
    }
}

fn run_steps(cfg: &DcganConfig, seed: u64, steps: usize, dev: Device) -> (Vec<StepMetrics>, Vec<f32>) {
    let mut gan = build(cfg, seed, dev);
    let mut rng = Rng::new(seed + 100);
    let real = Tensor::rand_uniform(&[8, 3, cfg.image_size, cfg.image_size], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[8, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
    let metrics = (0..steps).map(|_| gan.step(&real, &z)).collect();
    let weights = gan
        .generator
        .named_tensors()
        .iter()
        .chain(&gan.discriminator.named_tensors())
        .flat_map(|(_, t)| t.to_vec())
        .collect();
    (metrics, weights)
}

/// Five Adam steps on one fixed batch: D learns to tell it from G's output.
fn discriminator_loss_falls(dev: Device) {
    let (m, _) = run_steps(&config(16), 7, 5, dev);
    for s in &m {
        assert!(s.loss_d.is_finite() && s.loss_g.is_finite(), "{s:?}");
    }
    assert!(
        m[4].loss_d < m[0].loss_d,
        "loss_D did not fall: {:?}",
        m.iter().map(|s| s.loss_d).collect::<Vec<_>>()
    );
    assert!(m[4].d_real > m[0].d_real, "D(x) did not rise");
}

/// Same seed, same bits: run to run, and with 1, 2 or 3 worker threads.
fn same_seed_same_bits_at_any_thread_count(dev: Device) {
    let cfg = config(32);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_steps(&cfg, 3, 2, dev))
    };
    let (m1, w1) = run(1);
    let bits = |w: &[f32]| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for threads in [1, 2, 3] {
        let (m, w) = run(threads);
        assert_eq!(m, m1, "metrics differ with {threads} threads");
        assert!(bits(&w) == bits(&w1), "weights differ with {threads} threads");
    }
}

/// `--ema`: after G's t-th step every tensor of the average (weights and BatchNorm statistics)
/// is d · average + (1 − d) · G with d = min(decay, (1 + t) / (10 + t)), starting from G
/// itself, and keeping it changes nothing in the training.
fn generator_ema_averages_every_tensor_and_leaves_training_alone(dev: Device) {
    let cfg = config(16);
    let decay = 0.75;
    let mut with = build(&cfg, 5, dev);
    with.ema = Some(GeneratorEma::new(decay, &with.generator, generator(&cfg, &mut Rng::new(9), dev)));
    let mut without = build(&cfg, 5, dev);
    let state = |m: &dcgan::nn::Sequential| -> Vec<(String, Vec<f32>)> {
        m.named_tensors().into_iter().map(|(n, t)| (n, t.to_vec())).collect()
    };
    let mut expected = state(&with.generator);
    assert_eq!(state(&with.ema.as_ref().unwrap().generator), expected, "the average starts at G");
    let mut rng = Rng::new(6);
    let real = Tensor::rand_uniform(&[8, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[8, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
    for step in 0..3 {
        assert_eq!(
            with.step(&real, &z),
            without.step(&real, &z),
            "step {step}: the average changed training"
        );
        // The decay ramps up as (1 + t) / (10 + t) over G's updates t = 1, 2, ...
        let t = step as f32 + 1.0;
        let d = decay.min((1.0 + t) / (10.0 + t));
        assert_eq!(with.ema.as_ref().unwrap().decay_at(step + 1), d);
        for ((name, avg), (_, g)) in expected.iter_mut().zip(state(&with.generator)) {
            for (a, x) in avg.iter_mut().zip(&g) {
                *a = d * *a + (1.0 - d) * x;
            }
            let got =
                &state(&with.ema.as_ref().unwrap().generator).into_iter().find(|(n, _)| n == name).unwrap().1;
            let err = got.iter().zip(avg.iter()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(err <= 1e-6, "step {step}, {name}: the average is off by {err}");
        }
    }
    assert_eq!(with.ema.as_ref().unwrap().generator.counters(), with.generator.counters());
}

/// Each loss, with `--real-label` 0.9 where it has a target: the loss_D a step reports is that
/// loss on the outputs D gives before its update (computed here from the formulas, not from
/// `GanLoss`), and the reported D(x) is in the loss's units (a probability or a raw score).
/// For the cross-entropy losses, the smoothed target gives a loss far from the hard one.
fn each_loss_is_the_discriminators_objective(dev: Device) {
    let cfg = config(16);
    for loss in GanLoss::ALL {
        let mut gan = build(&cfg, 7, dev);
        gan.loss = loss;
        gan.real_label = if loss.has_real_target() { 0.9 } else { 1.0 };
        let mut rng = Rng::new(8);
        let real = Tensor::rand_uniform(&[8, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
        let z = Tensor::randn(&[8, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
        // As the step sees them: training mode, BatchNorm on the batch's own statistics.
        let (real_out, fake_out) = dcgan::no_grad(|| {
            let fake = gan.generator.forward(&z);
            let d = |x: &Tensor| gan.discriminator.forward(x).to_vec();
            (d(&real), d(&fake))
        });
        let mean = |v: &[f32], f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(f64::from(x))).sum::<f64>() / 8.0;
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        let want = |target: f64| match loss {
            // BCE(l, t) = softplus(l) − t·l
            GanLoss::NonSaturating | GanLoss::Minimax => {
                mean(&real_out, &|l| softplus(l) - target * l) + mean(&fake_out, &softplus)
            }
            GanLoss::LeastSquares => {
                mean(&real_out, &|l| 0.5 * (l - target).powi(2)) + mean(&fake_out, &|l| 0.5 * l * l)
            }
            GanLoss::Hinge => {
                mean(&real_out, &|l| (1.0 - l).max(0.0)) + mean(&fake_out, &|l| (1.0 + l).max(0.0))
            }
        };
        let sigmoid = |l: f64| 1.0 / (1.0 + (-l).exp());
        let d_real =
            if loss.is_probabilistic() { mean(&real_out, &sigmoid) } else { mean(&real_out, &|l| l) };
        let (target, hard) = (f64::from(gan.real_label), want(1.0));
        let m = gan.step(&real, &z);
        let name = loss.name();
        assert!(
            (f64::from(m.loss_d) - want(target)).abs() < 1e-5,
            "{name}: loss_D {} against {}",
            m.loss_d,
            want(target)
        );
        assert!((f64::from(m.d_real) - d_real).abs() < 1e-5, "{name}: D(x) {} against {d_real}", m.d_real);
        if loss.is_probabilistic() {
            assert!(
                (want(target) - hard).abs() > 1e-3,
                "{name}: targets 0.9 and 1 give {} and {hard}",
                want(target)
            );
        }
    }
}

/// One step of `gan` (config(16), batch 8) whose D sees every image through `seen` (the image
/// and which batch it is, as [`InstanceNoise::sample`] numbers them): the reported loss_D is
/// the loss on D's outputs for the transformed real and fake batches, and loss_G the loss of
/// the updated D on G's transformed fakes; both differ from the untransformed values by far
/// more than the tolerance. `what` names the transform in messages.
fn assert_d_sees_every_image_through(
    gan: &mut Gan,
    dev: Device,
    what: &str,
    seen: impl Fn(&Tensor, u64) -> Tensor,
) -> StepMetrics {
    let mut rng = Rng::new(8);
    let real = Tensor::rand_uniform(&[8, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[8, config(16).nz, 1, 1], 0.0, 1.0, &mut rng, dev);
    let softplus = |x: f32| f64::from(x.max(0.0) + (-x.abs()).exp().ln_1p());
    let mean = |v: Vec<f32>, f: &dyn Fn(f32) -> f64| v.into_iter().map(f).sum::<f64>() / 8.0;
    // BCE against 1 and against 0, from the logits.
    let (bce1, bce0) = (|l: Vec<f32>| mean(l, &|x| softplus(-x)), |l: Vec<f32>| mean(l, &softplus));
    let (fake, want_d, clean_d) = dcgan::no_grad(|| {
        let fake = gan.generator.forward(&z);
        let d = |x: &Tensor| gan.discriminator.forward(x).to_vec();
        let want = bce1(d(&seen(&real, 0))) + bce0(d(&seen(&fake, 1)));
        let clean = bce1(d(&real)) + bce0(d(&fake));
        (fake, want, clean)
    });
    let m = gan.step(&real, &z);
    assert!((f64::from(m.loss_d) - want_d).abs() < 1e-5, "loss_D {} against {want_d}", m.loss_d);
    assert!((want_d - clean_d).abs() > 1e-3, "{what} moved loss_D only from {clean_d} to {want_d}");
    let (want_g, clean_g) = dcgan::no_grad(|| {
        let d = |x: &Tensor| gan.discriminator.forward(x).to_vec();
        (bce1(d(&seen(&fake, InstanceNoise::G_BATCH))), bce1(d(&fake)))
    });
    assert!((f64::from(m.loss_g) - want_g).abs() < 1e-5, "loss_G {} against {want_g}", m.loss_g);
    assert!((want_g - clean_g).abs() > 1e-3, "{what} moved loss_G only from {clean_g} to {want_g}");
    m
}

/// `--instance-noise`: D sees noisy images in its step (real and fake, each its own draw) and
/// in G's.
fn instance_noise_reaches_every_image_d_sees(dev: Device) {
    let mut gan = build(&config(16), 7, dev);
    let noise = InstanceNoise { sigma: 0.5, anneal_steps: 4, seed: 3 };
    gan.instance_noise = Some(noise);
    let noisy =
        |x: &Tensor, which: u64| x.add(&noise.sample(x.shape(), 0, which, dev).expect("σ > 0 at t = 0"));
    assert_d_sees_every_image_through(&mut gan, dev, "the noise", noisy);
}

/// DiffAugment (all three transforms) reaches every image D sees, by the draws of its (step,
/// batch), and G's gradient passes back through the augmentation. (tests/augment.rs checks
/// the transforms themselves.)
fn diff_augment_reaches_every_image_d_sees(dev: Device) {
    let mut gan = build(&config(16), 7, dev);
    let augment = DiffAugment { seed: 3, policy: DiffAugmentPolicy::ALL };
    gan.diff_augment = Some(augment);
    let g_before: Vec<f32> = gan.generator.parameters()[0].to_vec();
    let augmented = |x: &Tensor, which: u64| augment.apply(x, 0, which);
    let m = assert_d_sees_every_image_through(&mut gan, dev, "augmenting", augmented);
    assert!(m.grad_norm_g > 0.0 && gan.generator.parameters()[0].to_vec() != g_before, "G did not learn");
}

/// `step_k_with_layers`: one gradient norm per parameter, D's then G's, whose squares add up
/// to the step's total norms of D and of G.
fn layer_gradient_norms_add_up_to_the_totals(dev: Device) {
    let cfg = config(16);
    let mut gan = build(&cfg, 7, dev);
    let mut rng = Rng::new(8);
    let real = Tensor::rand_uniform(&[8, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[8, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
    let shapes = gan.parameter_shapes();
    let (m, norms) = gan.step_k_with_layers(&[real], &[z]);
    assert_eq!(norms.len(), shapes.len());
    let sum_sq = |prefix: &str| -> f64 {
        shapes
            .iter()
            .zip(&norms)
            .filter(|((n, _), _)| n.starts_with(prefix))
            .map(|(_, &v)| f64::from(v).powi(2))
            .sum()
    };
    for (prefix, total) in [("D.", m.grad_norm_d), ("G.", m.grad_norm_g)] {
        let want = f64::from(total).powi(2);
        assert!(
            (sum_sq(prefix) - want).abs() < 1e-4 * want,
            "{prefix}: Σ layer² {} against {want}",
            sum_sq(prefix)
        );
    }
    assert!(shapes.iter().zip(&norms).filter(|((_, s), _)| s.len() == 4).all(|(_, &v)| v > 0.0), "{norms:?}");
}

device_tests!(
    each_loss_is_the_discriminators_objective,
    instance_noise_reaches_every_image_d_sees,
    diff_augment_reaches_every_image_d_sees,
    layer_gradient_norms_add_up_to_the_totals,
    shapes_follow_the_image_size,
    state_names_match_pytorch,
    initialisation_statistics,
    discriminator_loss_falls,
    same_seed_same_bits_at_any_thread_count,
    generator_ema_averages_every_tensor_and_leaves_training_alone
);
