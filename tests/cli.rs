//! The `dcgan` binary end to end: training on the real-data fixture, sampling, resume, and
//! every bad input answered with a clear message, a non-zero exit and no panic.

mod common;
use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

fn dcgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcgan")).args(args).output().expect("run dcgan")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh empty directory for one test, removed after it.
fn scratch(name: &str) -> TempDir {
    TempDir::new("dcgan-cli", name)
}

/// Expects failure whose message contains every needle, and no panic.
fn assert_fails(args: &[&str], needles: &[&str]) {
    let o = dcgan(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "dcgan {args:?} succeeded:\n{err}");
    assert!(!err.contains("panicked"), "dcgan {args:?} panicked:\n{err}");
    for n in needles {
        assert!(err.contains(n), "dcgan {args:?}: message lacks {n:?}:\n{err}");
    }
}

fn fixture() -> String {
    format!("{}/tests/data/fashion-mnist-1k", env!("CARGO_MANIFEST_DIR"))
}

/// A tiny configuration that trains in well under a second a step.
const SMALL: &[&str] =
    &["--image-size", "16", "--batch-size", "16", "--ngf", "8", "--ndf", "8", "--nz", "16", "--no-progress"];

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    dcgan(&args)
}

#[test]
fn trains_on_the_fashion_mnist_fixture_and_writes_every_output() {
    let out = scratch("fixture");
    let data = fixture();
    let o = train(
        &out,
        &[
            "--data",
            &data,
            "--steps",
            "30",
            "--sample-every",
            "10",
            "--checkpoint-every",
            "15",
            "--log-every",
            "10",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("step     30/30"), "log lines:\n{err}");
    for f in [
        "real.png",
        "samples/step_000010.png",
        "samples/step_000030.png",
        "metrics.csv",
        "timing.csv",
        "losses.png",
        "layers.csv",
        "layer_grad_norms.png",
        "config.json",
        "checkpoints/latest",
        "checkpoints/step_000015/generator.safetensors",
        "checkpoints/step_000030/discriminator.safetensors",
        "checkpoints/step_000030/optimizer.safetensors",
        "checkpoints/step_000030/state.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert_eq!(std::fs::read_to_string(out.join("checkpoints/latest")).unwrap().trim(), "step_000030");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31, "header + one row per step");
    // Every parameter's gradient norm at the log steps.
    let (cols, rows) = dcgan::io::read_metrics_csv(&out.join("layers.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), [10.0, 20.0, 30.0]);
    assert!(cols.iter().any(|c| c == "D.0.weight") && cols.iter().any(|c| c == "G.0.weight"), "{cols:?}");
    assert!(rows.iter().flatten().all(|v| v.is_finite() && *v >= 0.0), "{rows:?}");
    let img = image::open(out.join("real.png")).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (8 * 18 + 2, 2 * 18 + 2),
        "16 greyscale 16×16 images, 8 per row, 2 px padding"
    );
}

#[test]
fn resume_continues_bit_for_bit() {
    // bf16 weights files resume from the f32 masters the optimizer file keeps, G's running
    // average's included. Instance noise and DiffAugment are drawn per step, so they need no
    // state to resume.
    for dtype in ["f32", "bf16"] {
        let (a, b) = (scratch(&format!("resume-a-{dtype}")), scratch(&format!("resume-b-{dtype}")));
        let data = fixture();
        let common = [
            ["--data", data.as_str(), "--checkpoint-every", "500", "--ema", "0.9"].as_slice(),
            &[
                "--save-dtype",
                dtype,
                "--instance-noise",
                "0.2",
                "--instance-noise-steps",
                "20",
                "--diffaugment",
            ],
        ]
        .concat();
        let straight: Vec<&str> = common.iter().copied().chain(["--steps", "24"]).collect();
        let half: Vec<&str> = common.iter().copied().chain(["--steps", "12"]).collect();
        assert!(train(&a, &straight).status.success());
        assert!(train(&b, &half).status.success());
        // A setting of what the run learns may not change; how it runs may (the bits do not
        // depend on the thread count).
        assert_fails(
            &["train", "--resume", b.to_str().unwrap(), "--steps", "24", "--lr", "0.001"],
            &["--lr 0.001", "has 0.0002"],
        );
        let resume = ["train", "--resume", b.to_str().unwrap(), "--steps", "24", "--no-progress"];
        let o = dcgan(&[&resume[..], &["--threads", "1", "--log-every", "5"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        for f in [
            "generator.safetensors",
            "discriminator.safetensors",
            "generator_ema.safetensors",
            "optimizer.safetensors",
        ] {
            let x = std::fs::read(a.join("checkpoints/step_000024").join(f)).unwrap();
            let y = std::fs::read(b.join("checkpoints/step_000024").join(f)).unwrap();
            assert!(x == y, "{dtype}: {f} differs between 24 straight steps and 12 + 12 resumed");
        }
        // The weights files hold their float tensors in the dtype --save-dtype asked for.
        let want = if dtype == "bf16" { "BF16" } else { "F32" };
        for f in ["generator.safetensors", "discriminator.safetensors", "generator_ema.safetensors"] {
            let arrays = dcgan::io::read_safetensors(&a.join("checkpoints/step_000024").join(f)).unwrap();
            let floats: Vec<&str> = arrays.iter().map(|t| t.data.dtype()).filter(|&d| d != "I64").collect();
            assert!(!floats.is_empty() && floats.iter().all(|&d| d == want), "{dtype}: {f} holds {floats:?}");
        }
        let metrics = |d: &Path| std::fs::read(d.join("metrics.csv")).unwrap();
        assert_eq!(metrics(&a), metrics(&b), "{dtype}");
        // The layer norms are logged at the log steps, which the resume changed (20 → 5): the
        // steps both runs logged, 20 and 24, hold the same numbers.
        let layers = |d: &Path| {
            let (_, rows) = dcgan::io::read_metrics_csv(&d.join("layers.csv")).unwrap();
            rows.into_iter().filter(|r| r[0] == 20.0 || r[0] == 24.0).collect::<Vec<_>>()
        };
        let straight = layers(&a);
        assert_eq!(straight.len(), 2, "{dtype}");
        assert_eq!(straight, layers(&b), "{dtype}");
        // Asking for no more steps than the checkpoint has is explained, not silently ignored.
        assert_fails(
            &["train", "--resume", b.to_str().unwrap(), "--steps", "24"],
            &["already at step 24", "--steps"],
        );
    }
}

/// `--matmul bf16`: the convolutions' products in bf16. The run trains to other numbers than
/// the f32 one (its products are rounded), resumes bit for bit keeping its precision, and a
/// device without bf16 products refuses it; `bench` names it.
#[test]
fn bf16_matmul_trains_resumes_bit_for_bit_and_is_refused_off_the_cpu() {
    let (f32_run, a, b) = (scratch("matmul-f32"), scratch("matmul-bf16-a"), scratch("matmul-bf16-b"));
    let data = fixture();
    let common = ["--data", data.as_str(), "--checkpoint-every", "500"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        common.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert!(train(&f32_run, &with(&["--steps", "6"])).status.success());
    let o = train(&a, &with(&["--steps", "6", "--matmul", "bf16"]));
    assert!(o.status.success() && stderr(&o).contains("convolution products in bf16"), "{}", stderr(&o));
    let o = train(&b, &with(&["--steps", "3", "--matmul", "bf16"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let resume = ["train", "--resume", b.to_str().unwrap(), "--steps", "6", "--no-progress"];
    let o = dcgan(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = |d: &Path| std::fs::read(d.join("metrics.csv")).unwrap();
    assert_ne!(metrics(&a), metrics(&f32_run), "bf16 products trained to the f32 run's numbers");
    assert_eq!(metrics(&a), metrics(&b), "6 bf16 steps straight against 3 + 3 resumed");
    let weights = |d: &Path| std::fs::read(d.join("checkpoints/step_000006/generator.safetensors")).unwrap();
    assert!(weights(&a) == weights(&b), "G differs between 6 straight bf16 steps and 3 + 3 resumed");
    assert_fails(
        &["train", "--resume", b.to_str().unwrap(), "--steps", "9", "--matmul", "f32"],
        &["--matmul f32", "has bf16"],
    );
    assert_fails(
        &[&["train", "--device", "emu", "--matmul", "bf16", "--steps", "1"], &common[..]].concat(),
        &["--matmul bf16", "--device cpu"],
    );
    assert_fails(&["train", "--matmul", "f16"], &["--matmul", "f16"]);
    assert_fails(&["bench", "--device", "emu", "--matmul", "bf16"], &["--matmul bf16", "--device cpu"]);
    // With AMX the report adds the tile units' measured rate and the convolutions against it.
    let bench = ["--batch-size", "4", "--steps", "1", "--warmup", "0", "--peak", "50"];
    let j = bench_json(&[&bench[..], &["--matmul", "bf16"]].concat());
    assert_eq!(j["matmul"].as_str(), Some("bf16"), "{j}");
    assert_eq!(j["bf16_path"].as_str(), Some(dcgan::backend::cpu::amx::path().name()), "{j}");
    match j["bf16_tile_peak_gflops"].as_f64() {
        Some(tile) => {
            assert!(dcgan::backend::cpu::amx::available() && tile > 0.0, "{j}");
            let pct = j["percent_of_bf16_tile_peak"].as_f64().expect("percent with the peak");
            let gflops = j["gflops"].as_f64().unwrap();
            assert!((pct - 100.0 * gflops / tile).abs() < 1e-6 * pct.max(1.0), "{j}");
            let gemm = j["bf16_tile_gemm_gflops"].as_f64().expect("the tile gemm's rate with the peak");
            assert!(gemm > 0.0 && gemm.is_finite(), "{j}");
        }
        None => {
            assert!(!dcgan::backend::cpu::amx::available(), "AMX present, no tile peak: {j}");
            assert!(j["bf16_tile_gemm_gflops"].is_null(), "{j}");
        }
    }
    let f32_report = bench_json(&bench);
    assert!(f32_report["matmul"] == "f32" && f32_report["bf16_tile_peak_gflops"].is_null(), "{f32_report}");
    assert!(f32_report["bf16_tile_gemm_gflops"].is_null(), "{f32_report}");
}

/// `--spectral-norm`: D's state is PyTorch's spectral_norm names (weight_orig, weight_u,
/// weight_v) without BatchNorm, and the power iteration's u and v resume with it: 3 + 3 steps
/// give the bits of 6 straight.
#[test]
fn spectral_norm_names_its_state_and_resumes_bit_for_bit() {
    let (a, b) = (scratch("sn-a"), scratch("sn-b"));
    let common = ["--spectral-norm", "--loss", "hinge", "--checkpoint-every", "500"];
    assert!(train(&a, &[&common[..], &["--steps", "6"]].concat()).status.success());
    assert!(train(&b, &[&common[..], &["--steps", "3"]].concat()).status.success());
    let o = dcgan(&["train", "--resume", b.to_str().unwrap(), "--steps", "6", "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = |d: &Path| d.join("checkpoints/step_000006/discriminator.safetensors");
    assert!(std::fs::read(file(&a)).unwrap() == std::fs::read(file(&b)).unwrap(), "D differs after resume");
    let names: Vec<String> =
        dcgan::io::read_safetensors(&file(&a)).unwrap().into_iter().map(|t| t.name).collect();
    for want in ["main.0.weight_orig", "main.0.weight_u", "main.0.weight_v"] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("running_mean")), "BatchNorm left in D: {names:?}");
}

/// `--conditional` on the labelled fixture: D keeps its class embedding, 3 + 3 steps give the
/// bits of 6 straight, the training grid has a row per class, `sample` draws a row per class
/// or `--class` throughout (and saves the labels), and the bad cases are named.
#[test]
fn conditional_trains_samples_a_class_and_resumes_bit_for_bit() {
    let (a, b, plain) = (scratch("cond-a"), scratch("cond-b"), scratch("cond-plain"));
    let data = fixture();
    // Two D updates a step, each on its own batch's classes, and G's running average.
    let common = [
        ["--data", data.as_str(), "--conditional", "--checkpoint-every", "500", "--sample-every", "6"]
            .as_slice(),
        &["--d-steps", "2", "--ema", "0.5"],
    ]
    .concat();
    assert!(train(&a, &[&common[..], &["--steps", "6"]].concat()).status.success());
    assert!(train(&b, &[&common[..], &["--steps", "3"]].concat()).status.success());
    let o = dcgan(&["train", "--resume", b.to_str().unwrap(), "--steps", "6", "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["generator", "discriminator", "optimizer", "generator_ema"] {
        let file =
            |d: &Path| std::fs::read(d.join(format!("checkpoints/step_000006/{f}.safetensors"))).unwrap();
        assert!(file(&a) == file(&b), "{f} differs between 6 straight steps and 3 + 3 resumed");
    }
    let d =
        dcgan::io::read_safetensors(&a.join("checkpoints/step_000006/discriminator.safetensors")).unwrap();
    let embed = d.iter().find(|t| t.name == "main.6.embed").expect("D's class embedding");
    assert_eq!(embed.shape, [16 * 16, 10], "(16 channels at 4×4) × 10 classes");
    assert!(embed.data.to_f32().unwrap().iter().any(|&v| v != 0.0), "the embedding never trained");
    let grid = image::open(a.join("samples/step_000006.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (8 * 18 + 2, 10 * 18 + 2), "a row of 8 per class");

    let labels = |out: &Path| -> Vec<i64> {
        let arrays = dcgan::io::read_safetensors(&out.join("samples.safetensors")).unwrap();
        match &arrays.iter().find(|t| t.name == "labels").expect("labels saved").data {
            dcgan::io::ArrayData::I64(v) => v.clone(),
            other => panic!("labels stored as {}", other.dtype()),
        }
    };
    let sample = |out: &Path, extra: &[&str]| {
        let args = [
            &["sample", "--checkpoint", a.to_str().unwrap(), "--out", out.to_str().unwrap(), "--n", "16"][..],
            extra,
        ]
        .concat();
        let o = dcgan(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let (rows, class3) = (scratch("cond-sample"), scratch("cond-sample-3"));
    sample(&rows, &[]);
    assert_eq!(labels(&rows), [[0; 8], [1; 8]].concat(), "row r draws class r");
    sample(&class3, &["--class", "3"]);
    assert_eq!(labels(&class3), [3; 16]);
    let grid = |out: &Path| std::fs::read(out.join("samples.png")).unwrap();
    assert!(grid(&class3) != grid(&rows), "--class 3 drew the same images");
    let ckpt = a.to_str().unwrap();
    assert_fails(&["sample", "--checkpoint", ckpt, "--class", "10"], &["--class 10", "10 classes, 0 to 9"]);

    assert!(train(&plain, &["--steps", "1"]).status.success());
    assert_fails(
        &["sample", "--checkpoint", plain.to_str().unwrap(), "--class", "1"],
        &["--class 1", "unconditional"],
    );
    assert_fails(
        &["train", "--resume", plain.to_str().unwrap(), "--steps", "2", "--conditional"],
        &["--conditional true", "has false"],
    );
    assert_fails(&["train", "--conditional", "--steps", "1"], &["--conditional", "class label", "synthetic"]);
}

/// `--lr-d` is D's learning rate alone: at 1e-30 D's parameters stay put from one step to the
/// next (its BatchNorm statistics still move) while G's move at `--lr`; D's would move as much
/// at `--lr` (the test fails if D's optimizer took `--lr`).
#[test]
fn lr_d_sets_the_discriminators_learning_rate_alone() {
    let run = scratch("lr-d");
    assert!(train(&run, &["--steps", "2", "--checkpoint-every", "1", "--lr-d", "1e-30"]).status.success());
    let state = |step: &str, file: &str| -> Vec<(String, Vec<f32>)> {
        let p = run.join("checkpoints").join(step).join(format!("{file}.safetensors"));
        dcgan::io::read_safetensors(&p)
            .unwrap()
            .into_iter()
            .filter(|a| !a.name.contains("running_") && !a.name.contains("num_batches"))
            .map(|a| (a.name.clone(), a.data.to_f32().unwrap()))
            .collect()
    };
    // The largest change of any parameter between the two steps. (Biases that start at 0 do
    // move, by about 1e-30.)
    let moved = |file: &str| {
        let (a, b) = (state("step_000001", file), state("step_000002", file));
        a.iter()
            .zip(&b)
            .flat_map(|(x, y)| x.1.iter().zip(&y.1).map(|(p, q)| (p - q).abs()))
            .fold(0.0f32, f32::max)
    };
    let (d, g) = (moved("discriminator"), moved("generator"));
    assert!(d < 1e-20, "D's parameters moved by {d} at --lr-d 1e-30");
    assert!(g > 1e-6, "G's parameters moved by only {g} at --lr 2e-4");
}

/// `sample --walk`: the rows of the grid join the noise vectors one after another, ends
/// included, and the ends are the plain samples of the same noise.
#[test]
fn sample_walks_the_latent_space_from_each_noise_vector_to_the_next() {
    let run = scratch("walk-run");
    assert!(train(&run, &["--steps", "3"]).status.success());
    let (plain, walk) = (scratch("walk-plain"), scratch("walk"));
    let sample = |out: &Path, extra: &[&str]| {
        let mut args = vec!["sample", "--checkpoint", run.to_str().unwrap(), "--n", "10", "--seed", "4"];
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = dcgan(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        dcgan::io::read_safetensors(&out.join("samples.safetensors")).unwrap()
    };
    let get = |v: &[dcgan::io::NamedArray], name: &str| {
        let a = v.iter().find(|x| x.name == name).unwrap();
        (a.shape.clone(), a.data.to_f32().unwrap())
    };
    // 9 legs of 8 points: 72 images, generated 64 at a time.
    let (p, w) = (sample(&plain, &[]), sample(&walk, &["--walk", "8"]));
    let ((_, pz), (wz_shape, wz)) = (get(&p, "z"), get(&w, "z"));
    let ((_, pi), (wi_shape, wi)) = (get(&p, "images"), get(&w, "images"));
    assert_eq!(wz_shape, vec![72, 16, 1, 1], "nine legs of 8 points, nz 16");
    assert_eq!(wi_shape, vec![72, 3, 16, 16]);
    let (zr, ir) = (16, 3 * 16 * 16);
    // Leg i is points 8i..8i + 8, from z_i to z_(i+1); leg 8 lies in the second batch of 64.
    for leg in [0, 4, 8] {
        for (walk_row, plain_row) in [(8 * leg, leg), (8 * leg + 7, leg + 1)] {
            assert_eq!(wz[walk_row * zr..][..zr], pz[plain_row * zr..][..zr], "walk point {walk_row}");
            let (a, b) = (&wi[walk_row * ir..][..ir], &pi[plain_row * ir..][..ir]);
            let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "walk image {walk_row} differs from sample {plain_row} by {diff}");
        }
    }
    // Inner points lie between: not equal to either end.
    assert_ne!(wz[zr..2 * zr], pz[..zr]);
    assert_ne!(wz[zr..2 * zr], pz[zr..2 * zr]);
    // The grid has a row per leg, 8 images wide: 8·(16 + 2) + 2 by 9·(16 + 2) + 2 pixels.
    let png = std::fs::read(walk.join("samples.png")).unwrap();
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (146, 164), "samples.png width × height");

    assert_fails(&["sample", "--checkpoint", run.to_str().unwrap(), "--walk", "1"], &["--walk 1"]);
    assert_fails(
        &["sample", "--checkpoint", run.to_str().unwrap(), "--n", "1", "--walk", "4"],
        &["--walk", "2"],
    );
    assert_fails(&["sample", "--checkpoint", run.to_str().unwrap(), "--path", "linear"], &["--walk"]);
}

/// A run trained with `--ema` samples from G's running average unless told `--no-ema`.
#[test]
fn sample_uses_the_running_average_when_the_run_kept_one() {
    let run = scratch("ema-run");
    assert!(train(&run, &["--steps", "3", "--ema", "0.5"]).status.success());
    let sample = |name: &str, extra: &[&str]| {
        let out = scratch(name);
        let mut args =
            vec!["sample", "--checkpoint", run.to_str().unwrap(), "--n", "4", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = dcgan(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let file = dcgan::io::read_safetensors_with_metadata(&out.join("samples.safetensors")).unwrap();
        // The weights file that made the images, for scripts/check_pytorch_generator.py.
        let made_by = file.metadata.get("generator").cloned().unwrap_or_default();
        (stderr(&o), made_by, file.tensors.into_iter().find(|a| a.name == "images").unwrap())
    };
    let ((said_avg, avg_file, avg), (said_raw, raw_file, raw)) =
        (sample("ema-avg", &[]), sample("ema-raw", &["--no-ema"]));
    assert!(said_avg.contains("running average"), "{said_avg}");
    assert!(!said_raw.contains("running average"), "{said_raw}");
    assert_eq!((avg_file.as_str(), raw_file.as_str()), ("generator_ema", "generator"));
    assert_ne!(avg, raw, "the average after 3 steps at decay 0.5 is not G");
}

#[test]
fn sample_writes_a_grid_and_reproduces_from_saved_noise() {
    let run = scratch("sample-run");
    assert!(train(&run, &["--steps", "3"]).status.success());
    let (s1, s2) = (scratch("sample-1"), scratch("sample-2"));
    let ok = |o: Output| assert!(o.status.success(), "{}", stderr(&o));
    ok(dcgan(&[
        "sample",
        "--checkpoint",
        run.to_str().unwrap(),
        "--n",
        "10",
        "--seed",
        "4",
        "--out",
        s1.to_str().unwrap(),
    ]));
    assert!(s1.join("samples.png").is_file());
    let z = s1.join("samples.safetensors");
    ok(dcgan(&[
        "sample",
        "--checkpoint",
        run.to_str().unwrap(),
        "--z",
        z.to_str().unwrap(),
        "--out",
        s2.to_str().unwrap(),
    ]));
    let read = |p: &Path| dcgan::io::read_safetensors(p).unwrap();
    let (a, b) = (read(&z), read(&s2.join("samples.safetensors")));
    let images = |v: &[dcgan::io::NamedArray]| v.iter().find(|x| x.name == "images").unwrap().clone();
    assert_eq!(images(&a).shape, vec![10, 3, 16, 16]);
    assert_eq!(images(&a), images(&b), "the same z must give the same images");
    // A second sample into the first one's folder would write over its files, here the very z
    // it reads: refused, and the file left as it was.
    let before = std::fs::read(&z).unwrap();
    let (r, zs, o1) = (run.to_str().unwrap(), z.to_str().unwrap(), s1.to_str().unwrap());
    assert_fails(
        &["sample", "--checkpoint", r, "--z", zs, "--out", o1],
        &["--out", "samples.png", "earlier sample"],
    );
    assert_eq!(std::fs::read(&z).unwrap(), before, "the earlier sample's file changed");

    // --truncation: every component of z within the threshold; the images those z make.
    let s3 = scratch("sample-3");
    let (ckpt, out3) = (run.to_str().unwrap(), s3.to_str().unwrap());
    ok(dcgan(&["sample", "--checkpoint", ckpt, "--n", "10", "--truncation", "0.5", "--out", out3]));
    let c = read(&s3.join("samples.safetensors"));
    let z = c.iter().find(|x| x.name == "z").unwrap();
    assert_eq!(z.shape[0], 10);
    let z = z.data.to_f32().unwrap();
    assert!(z.iter().all(|v| v.abs() <= 0.5), "a component beyond ±0.5");
    assert_ne!(images(&c), images(&a), "truncated noise is other noise");
    assert_fails(&["sample", "--checkpoint", ckpt, "--truncation", "0", "--out", out3], &["--truncation 0"]);
    let z = s1.join("samples.safetensors");
    assert_fails(
        &["sample", "--checkpoint", ckpt, "--truncation", "0.5", "--z", z.to_str().unwrap()],
        &["--truncation", "--z"],
    );
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    // Every refused run names an --out that must not appear.
    let dir = scratch("bad-flags");
    let never = dir.join("never");
    let never = never.to_str().unwrap();
    for (flag, value, needle) in [
        ("--image-size", "0", "--image-size 0"),
        ("--image-size", "48", "power of two"),
        ("--image-size", "100000", "--image-size 100000"),
        ("--batch-size", "0", "--batch-size 0"),
        ("--batch-size", "1", "--batch-size 1"),
        ("--lr", "0", "--lr 0"),
        ("--lr", "-1", "--lr -1"),
        ("--beta1", "1.5", "--beta1"),
        ("--channels", "2", "--channels 2"),
        ("--device", "tpu", "--device tpu"),
        ("--lr-d", "0", "--lr-d 0"),
        ("--real-label", "0.3", "--real-label 0.3"),
        ("--ema", "1", "--ema 1"),
        ("--ema", "0", "--ema 0"),
        ("--instance-noise", "-0.1", "--instance-noise -0.1"),
        ("--diffaugment", "color,blur", "color, translation and cutout"),
    ] {
        assert_fails(&["train", flag, value, "--steps", "1", "--out", never], &[needle]);
    }
    // `dcgan bench` shares the network and batch flags, and their checks.
    for (flag, value, needle) in [
        ("--image-size", "24", "--image-size 24"),
        ("--channels", "2", "--channels 2"),
        ("--batch-size", "1", "--batch-size 1"),
        ("--ndf", "0", "--ndf 0"),
        ("--steps", "0", "--steps 0"),
        ("--peak", "0", "--peak 0"),
        ("--instance-noise", "0", "--instance-noise 0"),
        ("--conditional", "1", "--conditional 1"),
        ("--diffaugment", "blur", "--diffaugment"),
    ] {
        assert_fails(&["bench", flag, value], &[needle]);
    }
    assert_fails(&["train", "--format", "tiff"], &["tiff"]);
    assert_fails(&["train", "--loss", "wasserstein", "--out", never], &["wasserstein", "hinge"]);
    assert_fails(
        &["train", "--loss", "hinge", "--real-label", "0.9", "--steps", "1", "--out", never],
        &["--real-label 0.9", "hinge"],
    );
    assert_fails(&["train", "--steps", "1", "--epochs", "1"], &["--epochs"]);
    assert_fails(&["train", "--epochs", "1", "--out", never], &["--epochs", "synthetic"]);
    assert_fails(
        &["train", "--data", "synthetic", "--format", "mnist", "--steps", "1", "--out", never],
        &["--format mnist", "--data synthetic"],
    );
    assert!(!Path::new(never).exists(), "a refused run created its --out directory")
}

#[test]
fn bad_datasets_name_the_file_and_the_problem() {
    let dir = scratch("bad-data");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    assert_fails(&["train", "--data", &p("missing"), "--steps", "1"], &["missing", "no such file"]);

    // idx: wrong magic, truncated, dimensions that disagree with the size.
    let header = |magic: u32, n: u32| {
        [magic.to_be_bytes(), n.to_be_bytes(), 28u32.to_be_bytes(), 28u32.to_be_bytes()].concat()
    };
    std::fs::write(p("magic.idx"), [header(0x0000_0999, 1), vec![0; 784]].concat()).unwrap();
    assert_fails(
        &["train", "--data", &p("magic.idx"), "--format", "mnist", "--steps", "1"],
        &["magic.idx", "magic"],
    );
    std::fs::write(p("short.idx"), [header(0x0000_0803, 100), vec![0; 784]].concat()).unwrap();
    assert_fails(
        &["train", "--data", &p("short.idx"), "--format", "mnist", "--steps", "1"],
        &["short.idx", "truncated"],
    );
    std::fs::write(p("long.idx"), [header(0x0000_0803, 1), vec![0; 785]].concat()).unwrap();
    assert_fails(&["train", "--data", &p("long.idx"), "--format", "mnist", "--steps", "1"], &["long.idx"]);

    // CIFAR: size not a multiple of 3073.
    std::fs::create_dir_all(dir.join("cifar")).unwrap();
    std::fs::write(dir.join("cifar/data_batch_1.bin"), vec![0u8; 3073 * 2 + 5]).unwrap();
    assert_fails(&["train", "--data", &p("cifar"), "--steps", "1"], &["data_batch_1.bin", "3073"]);

    // Folders: empty, and one unreadable image among good ones.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    assert_fails(
        &["train", "--data", &p("empty"), "--format", "folder", "--steps", "1"],
        &["empty", "no PNG/JPEG"],
    );
    std::fs::create_dir_all(dir.join("imgs")).unwrap();
    image::RgbImage::new(20, 20).save(dir.join("imgs/good.png")).unwrap();
    std::fs::write(dir.join("imgs/broken.png"), b"not a png at all").unwrap();
    assert_fails(&["train", "--data", &p("imgs"), "--steps", "1"], &["broken.png"]);

    // A batch larger than the dataset.
    assert_fails(
        &["train", "--data", &fixture(), "--batch-size", "2000", "--steps", "1", "--out", &p("o")],
        &["2000", "1000"],
    );
}

#[test]
fn unwritable_out_is_refused() {
    let dir = scratch("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    assert_fails(&["train", "--steps", "1", "--out", out.to_str().unwrap()], &["--out", "a-file"]);
}

#[test]
fn bad_checkpoints_are_refused() {
    let run = scratch("ckpt-run");
    assert!(train(&run, &["--steps", "2"]).status.success());
    let ckpt = run.join("checkpoints/step_000002");
    let copy = |name: &str| {
        let d = scratch(name);
        for f in ["generator.safetensors", "discriminator.safetensors", "optimizer.safetensors", "state.json"]
        {
            std::fs::copy(ckpt.join(f), d.join(f)).unwrap();
        }
        d
    };
    let sample = |d: &Path| {
        vec![
            "sample".to_string(),
            "--checkpoint".into(),
            d.to_str().unwrap().into(),
            "--out".into(),
            d.join("s").to_str().unwrap().into(),
        ]
    };
    let fails = |args: Vec<String>, needles: &[&str]| {
        assert_fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles)
    };

    let truncated = copy("ckpt-truncated");
    let g = std::fs::read(truncated.join("generator.safetensors")).unwrap();
    std::fs::write(truncated.join("generator.safetensors"), &g[..g.len() / 2]).unwrap();
    fails(sample(&truncated), &["generator.safetensors"]);

    let corrupt = copy("ckpt-corrupt");
    std::fs::write(corrupt.join("generator.safetensors"), b"\x10\0\0\0\0\0\0\0{not json at all").unwrap();
    fails(sample(&corrupt), &["generator.safetensors"]);

    let version = copy("ckpt-version");
    let state = std::fs::read_to_string(version.join("state.json")).unwrap();
    std::fs::write(
        version.join("state.json"),
        state.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    fails(sample(&version), &["state.json", "version 99"]);

    // Another architecture: the state says ngf 16 but the weights are ngf 8.
    let arch = copy("ckpt-arch");
    let state = std::fs::read_to_string(arch.join("state.json")).unwrap();
    std::fs::write(arch.join("state.json"), state.replace("\"ngf\": 8", "\"ngf\": 16")).unwrap();
    fails(sample(&arch), &["main.0.weight", "[16, 16, 4, 4]", "[16, 32, 4, 4]"]);

    // A NaN among the weights (a corrupt file): refused by name, not sampled into NaN images.
    let nan = copy("ckpt-nan");
    let weights = nan.join("generator.safetensors");
    let mut arrays = dcgan::io::read_safetensors(&weights).unwrap();
    let w = arrays.iter_mut().find(|a| a.name == "main.0.weight").unwrap();
    let dcgan::io::ArrayData::F32(values) = &mut w.data else { panic!("f32 weights expected") };
    values[3] = f32::NAN;
    dcgan::io::write_safetensors(&weights, &arrays, &Default::default()).unwrap();
    fails(sample(&nan), &["generator.safetensors", "main.0.weight", "NaN or infinity (element 3)"]);

    fails(sample(&run.join("nowhere")), &["nowhere"]);
    let mut resume = vec![
        "train".to_string(),
        "--resume".into(),
        truncated.to_str().unwrap().into(),
        "--steps".into(),
        "5".into(),
        "--out".into(),
    ];
    let out = scratch("ckpt-resume-out");
    resume.push(out.to_str().unwrap().into());
    fails(resume, &["generator.safetensors"]);
}

/// A learning rate that blows the weights up: training stops at the first non-finite loss,
/// names the step, and leaves the last good checkpoint readable.
#[test]
fn nan_stops_training_and_keeps_the_last_checkpoint() {
    let out = scratch("nan");
    // At 1e8 this configuration's gradient norm is NaN at step 4, with steps 1–3 finite.
    let o = train(&out, &["--lr", "1e8", "--steps", "50", "--checkpoint-every", "1"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("training stopped") && err.contains("is NaN"), "{err}");
    assert!(err.contains("the last good checkpoint, step_") && err.contains("Try a lower --lr."), "{err}");
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    let dir = out.join("checkpoints").join(latest.trim());
    assert!(dir.join("state.json").is_file());
    // Everything in it is finite: weights, BatchNorm statistics, Adam's moments.
    for file in ["generator", "discriminator", "optimizer"] {
        let arrays = dcgan::io::read_safetensors(&dir.join(format!("{file}.safetensors"))).unwrap();
        assert!(!arrays.is_empty());
        for a in &arrays {
            assert_eq!(a.data.first_non_finite(), None, "{file} {} holds non-finite values", a.name);
        }
    }
}

/// Finite losses can come with an infinite BatchNorm variance (huge instance noise here; a
/// learning rate of 1e9 does it too): such a state is not saved, the run stops naming the
/// tensor, and says what to lower.
#[test]
fn an_infinite_running_variance_is_not_checkpointed() {
    let out = scratch("inf-var");
    let o = train(&out, &["--instance-noise", "1e30", "--steps", "2"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("discriminator main.3.running_var holds a NaN or infinity"), "{err}");
    assert!(
        err.contains("no checkpoint had been written") && err.contains("--instance-noise below"),
        "{err}"
    );
    assert!(!out.join("checkpoints").exists());
}

/// Ctrl-C (SIGINT) ends the step in flight, writes a checkpoint and exits with 130 (128 +
/// SIGINT, as shells report an interrupted command), so a script can tell it from a finished
/// run.
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    let out = scratch("ctrl-c");
    let mut args =
        vec!["train", "--out", out.to_str().unwrap(), "--steps", "1000000", "--checkpoint-every", "1000000"];
    args.extend_from_slice(SMALL);
    let child = Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training is under way (a few metric rows), then interrupt.
    let metrics = out.join("metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 4 {
        assert!(started.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked") && err.contains("interrupted: checkpoint written"), "{err}");
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    let rows = std::fs::read_to_string(&metrics).unwrap().lines().count() - 1;
    assert_eq!(latest.trim(), format!("step_{rows:06}"), "the checkpoint is of the last completed step");
}

/// The CUDA backend's own code, run by the emulator, trains like the CPU backend.
#[test]
fn train_on_emu_matches_cpu() {
    let (emu, cpu) = (scratch("emu"), scratch("cpu"));
    let args = [
        "--image-size",
        "16",
        "--batch-size",
        "4",
        "--nz",
        "8",
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--steps",
        "3",
        "--no-progress",
    ];
    for (out, dev) in [(&emu, "emu"), (&cpu, "cpu")] {
        let mut a = vec!["train", "--device", dev, "--out", out.to_str().unwrap()];
        a.extend_from_slice(&args);
        let o = dcgan(&a);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
    }
    let (_, e) = dcgan::io::read_metrics_csv(&emu.join("metrics.csv")).unwrap();
    let (_, c) = dcgan::io::read_metrics_csv(&cpu.join("metrics.csv")).unwrap();
    assert_eq!(e.len(), 3);
    for (re, rc) in e.iter().zip(&c) {
        for (x, y) in re.iter().zip(rc) {
            assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "emu {re:?} vs cpu {rc:?}");
        }
    }
}

/// A reader that closes the pipe early (`dcgan bench --json | head -c 10`) ends the run
/// quietly, as with any command-line tool: no EPIPE panic and backtrace.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(["bench", "--image-size", "16", "--batch-size", "4", "--steps", "1", "--warmup", "0", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dcgan");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for dcgan");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "dcgan bench panicked on a closed pipe:\n{err}");
}

/// `dcgan bench --image-size 16 ... --json` with `args` after it: the JSON object it prints.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--image-size", "16", "--json"];
    all.extend_from_slice(args);
    let o = dcgan(&all);
    assert!(o.status.success(), "dcgan {all:?} failed:\n{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("bench --json prints one JSON object")
}

/// The convolutions' milliseconds a step, summed over a `dcgan bench --json` breakdown's rows.
fn conv_ms_per_step(j: &serde_json::Value) -> f64 {
    j["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .filter(|b| b["kernel"].as_str().is_some_and(|k| k.starts_with("conv")))
        .map(|b| b["ms_per_step"].as_f64().expect("ms_per_step"))
        .sum()
}

/// `dcgan bench --json`: one object whose percentages are the convolution rate over the two
/// peaks it names (the given `--peak`, and on an x86 CPU with AVX2 or AVX-512 the FMA loop
/// it measures), with the time split by kernel and by convolution layer.
/// `dcgan bench --loss --spectral-norm --instance-noise` times the step those options make:
/// the report names them, and the spectral norm's matrix products show in the breakdown
/// (a plain DCGAN step has none).
#[test]
fn bench_times_the_step_options_it_is_given() {
    let common = ["--batch-size", "4", "--steps", "1", "--warmup", "0", "--peak", "50"];
    let kernels = |j: &serde_json::Value| -> Vec<String> {
        j["breakdown"].as_array().unwrap().iter().map(|b| b["kernel"].as_str().unwrap().to_string()).collect()
    };
    let plain = bench_json(&common);
    assert_eq!(
        (plain["loss"].as_str(), plain["spectral_norm"].as_bool()),
        (Some("non-saturating"), Some(false))
    );
    assert!(plain["instance_noise"].is_null() && !kernels(&plain).contains(&"matmul".to_string()), "{plain}");
    let sn = bench_json(
        &[&common[..], &["--loss", "hinge", "--spectral-norm", "--instance-noise", "0.2"]].concat(),
    );
    assert_eq!((sn["loss"].as_str(), sn["spectral_norm"].as_bool()), (Some("hinge"), Some(true)));
    assert_eq!(sn["instance_noise"].as_f64(), Some(0.2));
    assert!(kernels(&sn).contains(&"matmul".to_string()), "{sn}");
    assert!(plain["conditional_classes"].is_null(), "{plain}");
    // The conditional step: D's class term is a matmul of the one-hot labels by its embedding.
    let cond = bench_json(&[&common[..], &["--conditional"]].concat());
    assert_eq!(cond["conditional_classes"].as_u64(), Some(10));
    assert!(kernels(&cond).contains(&"matmul".to_string()), "{cond}");
    // DiffAugment's shift and cut have a row of their own; the policy is named.
    let aug = bench_json(&[&common[..], &["--diffaugment"]].concat());
    assert!(
        aug["diffaugment"].as_str() == Some("color,translation,cutout")
            && kernels(&aug).contains(&"augment".to_string()),
        "{aug}"
    );
    let colour = bench_json(&[&common[..], &["--diffaugment", "color"]].concat());
    assert!(!kernels(&colour).contains(&"augment".to_string()), "colour alone needs no shift: {colour}");
    assert!(!kernels(&plain).contains(&"augment".to_string()), "{plain}");
    let o = dcgan(&[&["bench"], &common[..], &["--conditional", "3"]].concat());
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("conditional, 3 classes"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_json_reports_rates_against_both_peaks() {
    let j = bench_json(&["--batch-size", "4", "--steps", "2", "--warmup", "1", "--peak", "50"]);
    let num = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("bench --json lacks the number {k}: {j}"));
    let gflops = num("gflops");
    assert!(gflops > 0.0 && num("ms_per_step_median") > 0.0 && num("peak_rss_mib") > 0.0, "{j}");
    assert_eq!(num("peak_gflops"), 50.0);
    assert!((num("percent_of_peak") - 100.0 * gflops / 50.0).abs() < 1e-9, "{j}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let fma = num("fma_peak_gflops");
        // A core's FMA loop runs at ≥ 8 lanes · 2 FLOPs a cycle: over 10 GFLOP/s at any clock.
        assert!(fma > 10.0, "FMA-loop peak {fma} GFLOP/s: {j}");
        assert!((num("percent_of_fma_peak") - 100.0 * gflops / fma).abs() < 1e-9, "{j}");
        let alone = num("conv_only_gflops");
        assert!((num("conv_only_percent_of_fma_peak") - 100.0 * alone / fma).abs() < 1e-9, "{j}");
    }
    {
        // The rate over the convolutions' own time, as the breakdown's rows give it.
        let conv_ms = conv_ms_per_step(&j);
        let alone = num("conv_only_gflops");
        let want = num("conv_gflop_per_step") / (conv_ms / 1e3);
        assert!((alone - want).abs() <= 1e-6 * want, "conv_only_gflops {alone}, breakdown says {want}: {j}");
    }
    let kernels: Vec<&str> =
        j["breakdown"].as_array().expect("breakdown").iter().filter_map(|b| b["kernel"].as_str()).collect();
    for k in ["conv forward", "conv backward-data", "conv backward-weight", "batchnorm", "adam"] {
        assert!(kernels.contains(&k), "breakdown lacks {k}: {kernels:?}");
    }
    assert!(!j["conv_layers"].as_array().expect("conv_layers").is_empty(), "{j}");
}

/// Without `--peak` the CPU bench measures the engine's gemm beside the FMA loop (alternating,
/// best of each). No gemm can outrun the loop of bare FMAs on the same cores, so a gemm rate
/// well above it means a miscounted product or a loop timed wrong (a factor of 2 at least).
/// The margin is for the tests running beside this one: under them one CI run read the gemm
/// at 212 GFLOP/s and the loop at 184.
#[test]
fn bench_measures_the_gemm_under_the_fma_ceiling() {
    let j = bench_json(&["--batch-size", "4", "--steps", "1", "--warmup", "0"]);
    assert_eq!(j["peak_source"], "measured: engine gemm 2048³ on the CPU", "{j}");
    let peak = j["peak_gflops"].as_f64().expect("peak_gflops");
    assert!(peak > 1.0, "{j}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let fma = j["fma_peak_gflops"].as_f64().expect("fma_peak_gflops");
        assert!(peak < 1.5 * fma, "engine gemm {peak} GFLOP/s far above the FMA loop's {fma}: {j}");
    }
}

/// `dcgan bench` on a GPU backend (the emulator stands in for one): the profiled steps see
/// every op of that device, so the convolution FLOPs and the per-layer split are the CPU's,
/// and the times are the device's (drained before and after each op).
#[test]
fn bench_profiles_the_gpu_backend_like_the_cpu() {
    let run = |device: &str| {
        bench_json(&[
            "--device",
            device,
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--peak",
            "50",
        ])
    };
    let (cpu, emu) = (run("cpu"), run("emu"));
    let flops = |j: &serde_json::Value| j["conv_gflop_per_step"].as_f64().expect("conv_gflop_per_step");
    assert!(flops(&cpu) > 0.0, "{cpu}");
    assert_eq!(flops(&emu), flops(&cpu), "emu {emu}\ncpu {cpu}");
    let layers = |j: &serde_json::Value| {
        let mut v: Vec<String> = j["conv_layers"]
            .as_array()
            .expect("conv_layers")
            .iter()
            .map(|l| format!("{} {}", l["direction"], l["layer"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(layers(&emu), layers(&cpu));
    assert!(conv_ms_per_step(&emu) > 0.0, "{emu}");
    assert_eq!(emu["peak_source"], "--peak");
    assert!(emu["fma_peak_gflops"].is_null(), "the emulator has no fp32 ceiling of its own: {emu}");
    // Device memory: the allocator's blocks hold at least the two networks' weights (G and D
    // at 16×16 have 475 776 parameters, 1.8 MiB), and the CPU reports none.
    let mib = emu["device_memory_mib"].as_f64().expect("device_memory_mib on a GPU device");
    assert!(mib > 1.8, "device memory {mib} MiB: {emu}");
    assert!(cpu["device_memory_mib"].is_null(), "{cpu}");
    // A step reads the device once per number it reports (2 losses, 3 mean D outputs, 2
    // gradient norms), all at its end, whatever the depth of the networks: on a GPU every read
    // waits for the device.
    for j in [&cpu, &emu] {
        let reads = j["breakdown"]
            .as_array()
            .expect("breakdown")
            .iter()
            .find(|b| b["kernel"] == "device reads")
            .unwrap_or_else(|| panic!("no device reads in the breakdown: {j}"));
        assert_eq!(reads["calls_per_step"].as_f64(), Some(7.0), "{j}");
    }
}

// --- train, sample and bench bad input ---

/// A run never writes over another: an --out holding files is refused before anything in it
/// changes, and so is a file.
#[test]
fn out_holding_files_is_refused_and_left_as_it_was() {
    let out = scratch("out-taken");
    assert!(train(&out, &["--steps", "2"]).status.success());
    let config = std::fs::read(out.join("config.json")).unwrap();
    let o = out.to_str().unwrap();
    assert_fails(&["train", "--out", o, "--steps", "2", "--nz", "12"], &["--out", "already holds files"]);
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), config, "config.json was rewritten");
    let file = out.join("config.json");
    assert_fails(&["train", "--out", file.to_str().unwrap(), "--steps", "1"], &["config.json", "is a file"]);
}

/// Continuing a run from an older checkpoint would overwrite its newer ones: refused, naming
/// the newer one; into a new --out it continues.
#[test]
fn resuming_an_older_checkpoint_in_place_is_refused() {
    let run = scratch("resume-older");
    assert!(train(&run, &["--steps", "4", "--checkpoint-every", "2"]).status.success());
    let newest = run.join("checkpoints/step_000004/generator.safetensors");
    let before = std::fs::read(&newest).unwrap();
    let older = run.join("checkpoints/step_000002");
    let older = older.to_str().unwrap();
    assert_fails(
        &["train", "--resume", older, "--steps", "4"],
        &["newer checkpoint", "step_000004", "--out"],
    );
    assert_eq!(std::fs::read(&newest).unwrap(), before, "the newer checkpoint changed");
    let branch = scratch("resume-older-branch");
    let o = dcgan(&["train", "--resume", older, "--steps", "4", "--out", branch.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The branch retraces the original run: the same bits at step 4.
    assert_eq!(std::fs::read(branch.join("checkpoints/step_000004/generator.safetensors")).unwrap(), before);
}

/// Sizes that cannot fit in memory are refused before anything is allocated (an allocation
/// that fails aborts the process), and so are counts that would take forever to start.
#[test]
fn sizes_beyond_the_machine_are_refused() {
    let dir = scratch("too-big");
    let never = dir.join("never");
    let never = never.to_str().unwrap();
    for (flag, value) in
        [("--batch-size", "100000000"), ("--batch-size", "18446744073709551615"), ("--ngf", "100000000")]
    {
        assert_fails(
            &["train", flag, value, "--steps", "1", "--out", never],
            &[&format!("{flag} {value}"), "more than this machine's"],
        );
        assert_fails(&["bench", flag, value, "--steps", "1"], &["more than this machine's"]);
    }
    assert_fails(&["train", "--d-steps", "1000", "--out", never], &["--d-steps 1000", "1 to 100"]);
    assert_fails(&["train", "--threads", "100000", "--out", never], &["--threads 100000"]);
    assert_fails(&["bench", "--threads", "100000"], &["--threads 100000"]);
    assert!(!Path::new(never).exists(), "a refused run created its --out directory");

    let run = scratch("too-big-run");
    assert!(train(&run, &["--steps", "1"]).status.success());
    let r = run.to_str().unwrap();
    let s = dir.join("s");
    let s = s.to_str().unwrap();
    assert_fails(
        &["sample", "--checkpoint", r, "--n", "1000000000000", "--out", s],
        &["--n", "more than this machine's"],
    );
    assert_fails(
        &["sample", "--checkpoint", r, "--n", "2", "--walk", "1000000000000", "--out", s],
        &["--walk 1000000000000", "more than this machine's"],
    );
    assert_fails(
        &["sample", "--checkpoint", r, "--out", &format!("{s}/grid.png")],
        &["grid.png", "directory"],
    );

    // --epochs whose step count would wrap around.
    assert_fails(
        &[
            "train",
            "--data",
            &fixture(),
            "--batch-size",
            "4",
            "--epochs",
            "18446744073709551615",
            "--out",
            never,
        ],
        &["--epochs 18446744073709551615", "more steps than a run can count"],
    );
}

/// Noise from a file must be finite, and `--n` cannot also ask for a count.
#[test]
fn sample_refuses_non_finite_noise() {
    let run = scratch("z-nan");
    assert!(train(&run, &["--steps", "1"]).status.success());
    let z = run.join("z.safetensors");
    let mut values = vec![0.5f32; 2 * 16];
    values[17] = f32::INFINITY;
    let arrays = [dcgan::io::NamedArray::f32("z", &[2, 16, 1, 1], values)];
    dcgan::io::write_safetensors(&z, &arrays, &Default::default()).unwrap();
    let (r, z, s) = (run.to_str().unwrap(), z.to_str().unwrap(), run.join("s"));
    assert_fails(
        &["sample", "--checkpoint", r, "--z", z, "--out", s.to_str().unwrap()],
        &["z.safetensors", "element 17"],
    );
    assert_fails(&["sample", "--checkpoint", r, "--z", z, "--n", "10"], &["--n", "--z"]);
}

/// A negative value reaches the flag's own check, which names it, rather than being taken for
/// a flag.
#[test]
fn negative_values_are_named_with_their_flag() {
    assert_fails(&["train", "--beta1", "-0.5"], &["--beta1 -0.5", "[0, 1)"]);
    assert_fails(&["train", "--batch-size", "-1"], &["--batch-size", "-1"]);
    assert_fails(&["bench", "--peak", "-3"], &["--peak -3"]);
}

/// The dataset's path is kept absolute, so the run resumes from any directory.
#[test]
fn a_run_on_a_relative_data_path_resumes_from_elsewhere() {
    let run = scratch("relative-data");
    let data = Path::new(&fixture()).to_path_buf();
    let (parent, name) = (data.parent().unwrap(), data.file_name().unwrap().to_str().unwrap());
    let args = ["train", "--data", name, "--steps", "2", "--out", run.to_str().unwrap()];
    let small = SMALL.iter().copied();
    let o = Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(args.iter().copied().chain(small))
        .current_dir(parent)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dcgan(&["train", "--resume", run.to_str().unwrap(), "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A dataset moved after training: the resume names its new place with --data, which is
/// refused while the run's own path still holds it (another dataset is not a new place).
#[test]
fn a_moved_dataset_is_named_on_resume() {
    let dir = scratch("moved-data");
    let (old, new, run) = (dir.join("old"), dir.join("new"), scratch("moved-data-run"));
    std::fs::create_dir_all(&old).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, old.join(path.file_name().unwrap())).unwrap();
    }
    assert!(train(&run, &["--data", old.to_str().unwrap(), "--steps", "2"]).status.success());
    let resume = |data: &Path| {
        dcgan(&["train", "--resume", run.to_str().unwrap(), "--steps", "3", "--data", data.to_str().unwrap()])
    };
    let o = resume(Path::new(&fixture()));
    assert!(!o.status.success() && stderr(&o).contains("--data"), "{}", stderr(&o));
    std::fs::rename(&old, &new).unwrap();
    let o = resume(&new);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A library that loads under the CUDA driver's or NVRTC's name but lacks their functions
/// (a stub, or a far older release): cudarc would panic at its first call; the probes say
/// what is missing, and `--device auto` falls back to the CPU.
#[test]
fn a_cuda_library_without_its_functions_is_named_not_a_panic() {
    let stub = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib64/libz.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libz.so.1 to stand in for libcuda");
    let dir = scratch("fake-cuda");
    for name in ["libcuda.so", "libcuda.so.1", "libnvrtc.so", "libnvrtc.so.12", "libnvrtc.so.13"] {
        std::fs::copy(stub, dir.join(name)).unwrap();
    }
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dcgan"))
            .args(args)
            .env("LD_LIBRARY_PATH", dir.as_os_str())
            .output()
            .unwrap()
    };
    let out = dir.join("run");
    let o = run(&["train", "--device", "cuda", "--steps", "1", "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("--device cuda") && err.contains("lacks cuInit"), "{err}");
    let o = run(&["kernels"]);
    let err = stderr(&o);
    assert!(!o.status.success() && !err.contains("panicked") && err.contains("lacks nvrtc"), "{err}");
    let o = run(&[&["train", "--steps", "1", "--out", out.to_str().unwrap()][..], SMALL].concat());
    let err = stderr(&o);
    assert!(o.status.success() && err.contains("using the CPU"), "{err}");
}

// --- data and lab bad input ---

/// A folder of 257 class subfolders cannot be labelled (labels are bytes): `--conditional` on
/// it says so, instead of claiming some image has no class.
#[test]
fn conditional_on_more_than_256_class_folders_names_the_limit() {
    let dir = scratch("classes257");
    for class in 0..257 {
        let folder = dir.join(format!("c{class:03}"));
        std::fs::create_dir_all(&folder).unwrap();
        image::GrayImage::new(2, 2).save(folder.join("a.png")).unwrap();
    }
    let never = dir.join("never");
    assert_fails(
        &[
            "train",
            "--data",
            dir.to_str().unwrap(),
            "--conditional",
            "--steps",
            "1",
            "--out",
            never.to_str().unwrap(),
        ],
        &["--conditional", "257 class subfolders, at most 256 are supported"],
    );
}

/// A FIFO as `--data` is refused by name; it used to block in open() for a writer for ever.
#[test]
fn a_fifo_as_data_is_refused_not_waited_on() {
    let dir = scratch("fifo-data");
    let fifo = dir.join("p.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(["train", "--steps", "1", "--data", fifo.to_str().unwrap(), "--out"])
        .arg(dir.join("never"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("dcgan train --data <fifo> still waiting after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}: is a named pipe (FIFO)", fifo.display())), "{err}");
}

/// The batch-size error names the flag, the data's path and its size.
#[test]
fn batch_larger_than_the_data_names_the_flag_and_the_path() {
    let dir = scratch("one-image");
    let data = dir.join("one");
    std::fs::create_dir_all(&data).unwrap();
    image::RgbImage::new(8, 8).save(data.join("a.png")).unwrap();
    let never = dir.join("never");
    assert_fails(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--out",
            never.to_str().unwrap(),
        ],
        &["--batch-size 4 is larger than the dataset, which has 1 image:", data.to_str().unwrap()],
    );
}

/// One idx label of 200 among 0..=9: `--conditional` is refused, naming the labels file and the
/// label (it used to make a 201-class model); the images still train unconditionally.
#[test]
fn idx_labels_with_a_stray_class_are_not_used_as_classes() {
    let dir = scratch("stray-label");
    std::fs::copy(
        Path::new(&fixture()).join("train-images-idx3-ubyte.gz"),
        dir.join("train-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let mut labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
    labels[7] = 200;
    let labels_file = dir.join("train-labels-idx1-ubyte");
    std::fs::write(&labels_file, [&0x801u32.to_be_bytes()[..], &1000u32.to_be_bytes(), &labels].concat())
        .unwrap();
    let never = dir.join("never");
    let (data, never) = (dir.to_str().unwrap(), never.to_str().unwrap());
    assert_fails(
        &["train", "--data", data, "--conditional", "--steps", "1", "--out", never],
        &[
            "--conditional",
            &format!("labels unused: {}: label 200 (image 7) makes 201 classes", labels_file.display()),
            "0..=N-1",
        ],
    );
    let run = scratch("stray-label-run");
    let o = train(&run, &["--data", data, "--steps", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `lab`: a flag the experiment ignores and a run that diverges both exit 1 with a message
/// naming the flag, not 0 with ignored settings or NaN results.
#[test]
fn lab_refuses_ignored_flags_and_diverged_runs() {
    let dir = scratch("lab-bad");
    let out = dir.join("out");
    let lab = |args: &[&str], needles: &[&str]| {
        let mut all = vec!["lab"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--steps", "10", "--out", out.to_str().unwrap()]);
        assert_fails(&all, needles);
    };
    lab(&["optimal-d", "--loss", "hinge"], &["--loss hinge: lab optimal-d does not use --loss"]);
    lab(&["optimal-d", "--d-steps", "5"], &["--d-steps 5: lab optimal-d does not use --d-steps"]);
    lab(&["shift1d", "--truncation", "0.5"], &["--truncation: lab shift1d does not use --truncation"]);
    lab(&["dirac", "--lr", "1e30"], &["lab dirac diverged", "--lr 1e30"]);
    lab(&["saturation", "--loss", "non-saturating"], &["--loss non-saturating: lab saturation does not use"]);
    lab(&["wasserstein"], &["invalid value 'wasserstein'", "shift1d, optimal-d"]);
}

/// `lab --help` says what each experiment does and the --steps and --lr each one defaults to.
#[test]
fn lab_help_describes_each_experiment_and_its_defaults() {
    let o = dcgan(&["lab", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in ["ring:", "8 Gaussians", "dirac:", "Defaults of --steps and --lr", "ring        5000 steps"]
    {
        assert!(help.contains(needle), "no {needle:?} in:\n{help}");
    }
}
