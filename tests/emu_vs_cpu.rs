//! The CUDA kernels (run by the emulator, `Device::Emu`) against the CPU backend, method by
//! method of `Backend`, on random inputs and awkward shapes (odd sizes, tile edges, stride 2,
//! padding, batch 1, more than 64 channels, split-K weight gradients); then three DCGAN
//! training steps on both devices.
//!
//! Tolerance: 1e-5 relative, where "relative" is to max(|expected|, rms of the whole
//! expected array): the GPU accumulates in f32 in tile / tree order, the CPU in another order
//! (f64 for its reductions), so a near-zero entry of a large result carries the absolute
//! rounding of its terms, not of itself. Whole-tensor sums are judged against Σ|x| (their
//! condition number), for the same reason. Elementwise kernels and conversions are exact.

use dcgan::backend::cuda::{CudaBackend, forward_splits, weight_grad_splits};
use dcgan::backend::emu::{self, EmuDriver};
use dcgan::backend::{AdamParams, Backend, Binary, ChannelShape, ConvGeom, Storage, Unary};
use dcgan::gan::{DcganConfig, Gan};
use dcgan::nn::Module;
use dcgan::{Device, Rng, Tensor};

fn cpu() -> &'static dyn Backend {
    Device::Cpu.backend()
}
fn emu() -> &'static CudaBackend<EmuDriver> {
    emu::backend()
}

fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// The same data on both devices.
fn both(v: &[f32]) -> (Storage, Storage) {
    (cpu().upload(v.to_vec()), emu().upload(v.to_vec()))
}

fn close(what: &str, got: &Storage, want: &Storage, rtol: f64) {
    let g = emu().download(got);
    let w = cpu().download(want);
    assert_eq!(g.len(), w.len(), "{what}: length");
    let rms = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len().max(1) as f64).sqrt();
    for (i, (&a, &e)) in g.iter().zip(&w).enumerate() {
        let tol = rtol * (e as f64).abs().max(rms).max(1e-30);
        assert!(
            ((a - e) as f64).abs() <= tol,
            "{what}[{i}]: emu {a}, cpu {e} (|diff| {:.3e} > {tol:.3e})",
            ((a - e) as f64).abs()
        );
    }
}

fn exact(what: &str, got: &Storage, want: &Storage) {
    let g = emu().download(got);
    let w = cpu().download(want);
    assert_eq!(g.len(), w.len(), "{what}: length");
    for (i, (a, e)) in g.iter().zip(&w).enumerate() {
        assert!(a.to_bits() == e.to_bits(), "{what}[{i}]: emu {a}, cpu {e}");
    }
}

const RTOL: f64 = 1e-5;

#[test]
fn memory_ops() {
    let mut rng = Rng::new(1);
    for n in [0, 1, 7, 256, 1000, 70_001] {
        let v = rand(n, &mut rng);
        let (c, e) = both(&v);
        assert_eq!(emu().download(&e), v, "upload/download {n}");
        exact("copy", &emu().copy(&e), &cpu().copy(&c));
        exact("zeros", &emu().zeros(n), &cpu().zeros(n));
        let (mut c2, mut e2) = both(&v);
        cpu().fill(&mut c2, 0.25);
        emu().fill(&mut e2, 0.25);
        exact("fill", &e2, &c2);
    }
}

#[test]
fn elementwise_and_activations() {
    let mut rng = Rng::new(2);
    for n in [1, 33, 257, 300_001] {
        let (a, b) = (rand(n, &mut rng), rand(n, &mut rng));
        let ((ca, ea), (cb, eb)) = (both(&a), both(&b));
        for op in [Binary::Add, Binary::Sub, Binary::Mul] {
            exact(&format!("{op:?}"), &emu().binary(op, &ea, &eb), &cpu().binary(op, &ca, &cb));
        }
        exact("affine", &emu().affine(&ea, 1.5, -0.25), &cpu().affine(&ca, 1.5, -0.25));
        let (mut cy, mut ey) = both(&b);
        cpu().axpby(0.3, &ca, 0.9, &mut cy);
        emu().axpby(0.3, &ea, 0.9, &mut ey);
        exact("axpby", &ey, &cy);
        for op in [Unary::Relu, Unary::LeakyRelu(0.2), Unary::Tanh, Unary::Sigmoid] {
            let (cf, ef) = (cpu().unary(op, &ca), emu().unary(op, &ea));
            // tanhf / expf of the host libm on both sides: equal within an ulp or two.
            close(&format!("{op:?} forward"), &ef, &cf, RTOL);
            let (cs, es) = if op.backward_uses_output() { (&cf, &ef) } else { (&ca, &ea) };
            close(
                &format!("{op:?} backward"),
                &emu().unary_backward(op, es, &eb),
                &cpu().unary_backward(op, cs, &cb),
                RTOL,
            );
        }
    }
}

#[test]
fn reductions_and_channels() {
    let mut rng = Rng::new(3);
    for n in [1, 255, 257, 10_000, 300_001] {
        let v = rand(n, &mut rng);
        let (c, e) = both(&v);
        let got = emu().download(&emu().sum(&e))[0] as f64;
        let want = cpu().download(&cpu().sum(&c))[0] as f64;
        let cond: f64 = v.iter().map(|x| x.abs() as f64).sum();
        assert!((got - want).abs() <= RTOL * cond.max(1e-30), "sum of {n}: emu {got}, cpu {want}");
        let (cs, es) = (cpu().upload(vec![2.5]), emu().upload(vec![2.5]));
        exact(
            "broadcast_scalar",
            &emu().broadcast_scalar(&es, -0.5, n),
            &cpu().broadcast_scalar(&cs, -0.5, n),
        );
    }
    for s in [
        ChannelShape { n: 1, c: 1, hw: 1 },
        ChannelShape { n: 3, c: 5, hw: 7 },
        ChannelShape { n: 2, c: 3, hw: 300 },
        ChannelShape { n: 5, c: 70, hw: 16 },
    ] {
        let v = rand(s.n * s.c * s.hw, &mut rng);
        let bias = rand(s.c, &mut rng);
        let ((c, e), (cb, eb)) = (both(&v), both(&bias));
        close("sum_channels", &emu().sum_channels(&e, s), &cpu().sum_channels(&c, s), RTOL);
        exact("add_channels", &emu().add_channels(&e, &eb, s), &cpu().add_channels(&c, &cb, s));
    }
}

/// DiffAugment's shift and cut, both ways, on a batch larger than one grid-stride pass, with
/// the draws `train --diffaugment` makes: the same bits (each element is one read or zero).
#[test]
fn translate_cutout_matches_exactly() {
    let shape = [16, 3, 32, 32];
    let v = rand(shape.iter().product(), &mut Rng::new(4));
    let augment = dcgan::gan::DiffAugment { seed: 1, policy: dcgan::gan::DiffAugmentPolicy::ALL };
    let params = augment.params(16, 32, 5, 0);
    let ((c, e), (cp, ep)) = (both(&v), both(&params));
    for backward in [false, true] {
        exact(
            "translate_cutout",
            &emu().translate_cutout(&e, &ep, shape, backward),
            &cpu().translate_cutout(&c, &cp, shape, backward),
        );
    }
}

#[test]
fn matmul_all_transposes() {
    let mut rng = Rng::new(4);
    for (m, n, k) in [(1, 1, 1), (70, 65, 33), (3, 130, 200), (64, 64, 16), (129, 5, 7)] {
        let (a, b) = (rand(m * k, &mut rng), rand(k * n, &mut rng));
        let ((ca, ea), (cb, eb)) = (both(&a), both(&b));
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            close(
                &format!("matmul {m}x{n}x{k} ta={ta} tb={tb}"),
                &emu().matmul(&ea, ta, &eb, tb, m, n, k),
                &cpu().matmul(&ca, ta, &cb, tb, m, n, k),
                RTOL,
            );
        }
    }
}

/// [n, c_in, h, w, c_out, k, stride, pad]
fn geom([n, c_in, h, w, c_out, k, s, p]: [usize; 8]) -> ConvGeom {
    ConvGeom {
        n,
        c_in,
        h_in: h,
        w_in: w,
        c_out,
        h_out: (h + 2 * p - k) / s + 1,
        w_out: (w + 2 * p - k) / s + 1,
        kh: k,
        kw: k,
        stride: s,
        pad: p,
    }
}

#[test]
fn convolutions_three_directions() {
    let mut rng = Rng::new(5);
    let geoms = [
        geom([2, 3, 9, 7, 5, 3, 1, 1]),
        geom([1, 4, 8, 8, 6, 4, 2, 1]),   // DCGAN layer, batch 1
        geom([3, 2, 5, 6, 3, 2, 3, 0]),   // stride larger than the kernel: some inputs get no tap
        geom([2, 70, 4, 4, 66, 4, 2, 1]), // more than one 64-channel tile both ways
        geom([2, 3, 5, 5, 4, 1, 1, 0]),   // 1x1
        geom([8, 3, 16, 16, 8, 4, 2, 1]), // split-K weight gradient
        geom([1, 2, 7, 5, 3, 5, 2, 2]),   // odd sizes, pad 2, k 5
        geom([4, 300, 4, 4, 1, 4, 1, 0]), // a discriminator's last layer: split-K forward
        // Backward-data's three routes: c_in <= 4 computes pixels directly (two weight
        // chunks here: 40 output channels of 4 · 7 · 7 weights, 31 a chunk); a kernel that
        // covers the input is one matmul; these c_in 5 twins of the shapes above keep the
        // phase GEMM on odd sizes, strides and paddings.
        geom([1, 4, 9, 9, 40, 7, 2, 3]),
        geom([3, 6, 4, 4, 5, 4, 1, 0]),
        geom([2, 5, 9, 7, 5, 3, 1, 1]),
        geom([3, 5, 5, 6, 3, 2, 3, 0]),
        geom([1, 5, 7, 5, 3, 5, 2, 2]),
    ];
    assert!(weight_grad_splits(&geoms[5]) > 1, "one geometry must exercise split-K");
    // 19 slices of 256 over K = 4800: the last one ragged.
    assert_eq!(forward_splits(&geoms[7]), 19, "the last geometry must exercise split-K forward");
    for g in &geoms {
        let x = rand(g.x_len(), &mut rng);
        let w = rand(g.w_len(), &mut rng);
        let dy = rand(g.y_len(), &mut rng);
        let ((cx, ex), (cw, ew), (cdy, edy)) = (both(&x), both(&w), both(&dy));
        close(
            &format!("conv fwd {g:?}"),
            &emu().conv2d_forward(&ex, &ew, g),
            &cpu().conv2d_forward(&cx, &cw, g),
            RTOL,
        );
        close(
            &format!("conv bwd data {g:?}"),
            &emu().conv2d_backward_data(&edy, &ew, g),
            &cpu().conv2d_backward_data(&cdy, &cw, g),
            RTOL,
        );
        close(
            &format!("conv bwd weight {g:?}"),
            &emu().conv2d_backward_weight(&ex, &edy, g),
            &cpu().conv2d_backward_weight(&cx, &cdy, g),
            RTOL,
        );
    }
}

#[test]
fn batchnorm_train_eval_backward() {
    let mut rng = Rng::new(6);
    for s in [
        ChannelShape { n: 3, c: 5, hw: 7 },
        ChannelShape { n: 1, c: 2, hw: 300 },
        ChannelShape { n: 4, c: 3, hw: 1 },
    ] {
        // An offset mean: one-pass statistics must not lose the variance to cancellation.
        let x: Vec<f32> = rand(s.n * s.c * s.hw, &mut rng).iter().map(|v| v * 2.0 + 3.0).collect();
        let dy = rand(x.len(), &mut rng);
        let gamma: Vec<f32> = rand(s.c, &mut rng).iter().map(|v| 1.0 + 0.1 * v).collect();
        let beta = rand(s.c, &mut rng);
        let ((cx, ex), (cdy, edy), (cg, eg), (cb, eb)) = (both(&x), both(&dy), both(&gamma), both(&beta));
        let (cy, cm, cv) = cpu().batchnorm2d_forward_train(&cx, &cg, &cb, s, 1e-5);
        let (ey, em, ev) = emu().batchnorm2d_forward_train(&ex, &eg, &eb, s, 1e-5);
        close("bn train y", &ey, &cy, RTOL);
        close("bn train mean", &em, &cm, RTOL);
        close("bn train var", &ev, &cv, RTOL);
        close(
            "bn eval",
            &emu().batchnorm2d_forward_eval(&ex, &eg, &eb, &em, &ev, s, 1e-5),
            &cpu().batchnorm2d_forward_eval(&cx, &cg, &cb, &cm, &cv, s, 1e-5),
            RTOL,
        );
        for batch_stats in [true, false] {
            let (cdx, cdg, cdb) = cpu().batchnorm2d_backward(&cx, &cdy, &cg, &cm, &cv, s, 1e-5, batch_stats);
            let (edx, edg, edb) = emu().batchnorm2d_backward(&ex, &edy, &eg, &em, &ev, s, 1e-5, batch_stats);
            // dx with batch statistics is dy minus two means: a difference of O(1) terms, so
            // its error is absolute at the scale of the array (the rms floor covers it).
            close(&format!("bn dx (batch_stats {batch_stats})"), &edx, &cdx, RTOL);
            close("bn dgamma", &edg, &cdg, RTOL);
            close("bn dbeta", &edb, &cdb, RTOL);
        }
    }
}

#[test]
fn bce_forward_backward() {
    let mut rng = Rng::new(7);
    for n in [1, 4, 300, 70_000] {
        let x: Vec<f32> = rand(n, &mut rng).iter().map(|v| v * 8.0).collect();
        let t: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let ((cx, ex), (ct, et)) = (both(&x), both(&t));
        close("bce", &emu().bce_with_logits(&ex, &et), &cpu().bce_with_logits(&cx, &ct), RTOL);
        let (cd, ed) = both(&[0.7]);
        close(
            "bce backward",
            &emu().bce_with_logits_backward(&ex, &et, &ed),
            &cpu().bce_with_logits_backward(&cx, &ct, &cd),
            RTOL,
        );
    }
}

#[test]
fn optimiser_steps() {
    let mut rng = Rng::new(8);
    let n = 1000;
    let p = rand(n, &mut rng);
    let (mut cp, mut ep) = both(&p);
    let (mut cm, mut em) = (cpu().zeros(n), emu().zeros(n));
    let (mut cv, mut ev) = (cpu().zeros(n), emu().zeros(n));
    for step in 1..=4 {
        let g = rand(n, &mut rng);
        let (cg, eg) = both(&g);
        let hp = AdamParams { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, step };
        cpu().adam_step(&mut cp, &cg, &mut cm, &mut cv, &hp);
        emu().adam_step(&mut ep, &eg, &mut em, &mut ev, &hp);
    }
    close("adam p", &ep, &cp, RTOL);
    close("adam m", &em, &cm, RTOL);
    close("adam v", &ev, &cv, RTOL);
    for momentum in [0.0, 0.9] {
        let (mut cp, mut ep) = both(&p);
        let (mut cb, mut eb) = (cpu().zeros(n), emu().zeros(n));
        for step in 0..3 {
            let (cg, eg) = both(&rand(n, &mut rng));
            cpu().sgd_step(&mut cp, &cg, &mut cb, 0.1, momentum, 1e-3, step == 0);
            emu().sgd_step(&mut ep, &eg, &mut eb, 0.1, momentum, 1e-3, step == 0);
        }
        close(&format!("sgd p (momentum {momentum})"), &ep, &cp, RTOL);
        close("sgd buf", &eb, &cb, RTOL);
    }
}

#[test]
fn half_precision_conversions_round_like_the_half_crate() {
    let mut rng = Rng::new(9);
    let mut v: Vec<f32> = rand(5000, &mut rng).iter().map(|x| x * 70_000.0).collect();
    v.extend(rand(5000, &mut rng).iter().map(|x| x * 1e-5)); // f16 subnormals
    v.extend([
        0.0,
        -0.0,
        1.0,
        65504.0,
        65519.0,
        65520.0,
        1e-8,
        -1e-8,
        5.96e-8,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3.0e38,
    ]);
    v.extend([1.0 + f32::EPSILON, 0.1, 1.0 / 3.0]);
    let e = emu().upload(v.clone());
    let h = emu().to_f16(&e);
    let b = emu().to_bf16(&e);
    for (i, &x) in v.iter().enumerate() {
        assert_eq!(h[i].to_bits(), half::f16::from_f32(x).to_bits(), "f16 of {x}");
        assert_eq!(b[i].to_bits(), half::bf16::from_f32(x).to_bits(), "bf16 of {x}");
    }
    let nan = emu().to_f16(&emu().upload(vec![f32::NAN]));
    assert!(nan[0].is_nan());
    let back = emu().download(&emu().from_f16(&h));
    let back_b = emu().download(&emu().from_bf16(&b));
    for i in 0..v.len() {
        assert_eq!(back[i].to_bits(), h[i].to_f32().to_bits(), "f16 -> f32 of {:?}", h[i]);
        assert_eq!(back_b[i].to_bits(), b[i].to_f32().to_bits(), "bf16 -> f32 of {:?}", b[i]);
    }
}

fn gan(cfg: &DcganConfig, dev: Device) -> Gan {
    Gan::dcgan(cfg, &mut Rng::new(11), dev)
}

/// Three training steps of a small DCGAN: losses, D outputs and every weight and running
/// statistic match the CPU within 1e-4 (relative to max(|value|, 1e-2)).
#[test]
fn three_dcgan_steps_match_the_cpu() {
    let cfg = DcganConfig { image_size: 16, channels: 3, nz: 8, ngf: 4, ndf: 4, classes: 0 };
    let run = |dev: Device| {
        let mut gan = gan(&cfg, dev);
        let mut rng = Rng::new(12);
        let mut metrics = Vec::new();
        for _ in 0..3 {
            let real = Tensor::rand_uniform(&[4, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
            let z = Tensor::randn(&[4, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
            metrics.push(gan.step(&real, &z));
        }
        let weights: Vec<(String, Vec<f32>)> = gan
            .generator
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (format!("G.{n}"), t.to_vec()))
            .chain(gan.discriminator.named_tensors().into_iter().map(|(n, t)| (format!("D.{n}"), t.to_vec())))
            .collect();
        (metrics, weights)
    };
    let (mc, wc) = run(Device::Cpu);
    let (me, we) = run(Device::Emu);
    let near = |a: f32, b: f32| ((a - b) as f64).abs() <= 1e-4 * (b as f64).abs().max(1e-2);
    for (step, (c, e)) in mc.iter().zip(&me).enumerate() {
        for (what, a, b) in [
            ("loss_d", e.loss_d, c.loss_d),
            ("loss_g", e.loss_g, c.loss_g),
            ("d_real", e.d_real, c.d_real),
            ("d_fake_before", e.d_fake_before, c.d_fake_before),
            ("d_fake_after", e.d_fake_after, c.d_fake_after),
        ] {
            assert!(near(a, b), "step {step} {what}: emu {a}, cpu {b}");
        }
    }
    assert_eq!(wc.len(), we.len());
    for ((name, c), (_, e)) in wc.iter().zip(&we) {
        for (i, (&a, &b)) in e.iter().zip(c).enumerate() {
            assert!(near(a, b), "{name}[{i}]: emu {a}, cpu {b}");
        }
    }
}
