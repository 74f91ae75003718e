//! `dcgan lab score`: the headline numbers on the real Fashion-MNIST at a fixed seed, the
//! classifier cache, the whole command on the 1k fixture, and every bad input answered with
//! a message naming the flag or file, exit status 1 and no panic.
//!
//! The Fréchet arithmetic itself is unit-tested in src/lab/frechet.rs.

mod common;
use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

use dcgan::lab::{LabOptions, run};

const DATA: &str = "/usr/share/datasets/fashion-mnist";

fn dcgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcgan")).args(args).output().expect("run dcgan")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh empty directory for one test, removed after it.
fn scratch(name: &str) -> TempDir {
    TempDir::new("dcgan-score", name)
}

fn fixture() -> String {
    format!("{}/tests/data/fashion-mnist-1k", env!("CARGO_MANIFEST_DIR"))
}

/// A tiny generator trained for `steps` steps at 16×16 on `data`, checkpointed every step.
fn tiny_run(out: &Path, data: &str, steps: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--image-size",
        "16",
        "--batch-size",
        "16",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--nz",
        "16",
        "--no-progress",
        "--steps",
        steps,
        "--checkpoint-every",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = dcgan(&args);
    assert!(o.status.success(), "training the test checkpoint failed:\n{}", stderr(&o));
}

/// Expects failure whose message contains every needle, and no panic.
fn assert_fails(args: &[&str], needles: &[&str]) {
    let o = dcgan(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "dcgan {args:?} did not exit with 1:\n{err}");
    assert!(!err.contains("panicked"), "dcgan {args:?} panicked:\n{err}");
    for n in needles {
        assert!(err.contains(n), "dcgan {args:?}: message lacks {n:?}:\n{err}");
    }
}

/// The real Fashion-MNIST at seed 0 (16×16 and 1000 samples, to keep the test cheap): the
/// classifier learns (test accuracy), held-out real images sit near the test set (the
/// floor), a 2-step generator is far from it and collapsed onto few classes, and a second
/// run reuses the cached classifier and reproduces every number.
///
/// Measured, identical in release and in debug (plain `cargo test`, ~30 s there): accuracy
/// 85.5%, floor 2.68, 2-step generator FD 875, 1/10 classes covered.
#[test]
fn fashion_mnist_score_separates_real_from_untrained() {
    if !Path::new(DATA).join("t10k-images-idx3-ubyte.gz").is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {DATA} is missing: .ci/run installs it (apt-get install dataset-fashion-mnist)"
        );
        eprintln!(
            "SKIPPED fashion_mnist_score_separates_real_from_untrained: {DATA} not installed (apt-get install dataset-fashion-mnist)"
        );
        return;
    }
    let dir = scratch("real");
    let run_dir = dir.join("run");
    tiny_run(&run_dir, DATA, "2", &[]);
    let opts = LabOptions {
        out: dir.join("out"),
        checkpoint: Some(run_dir.join("checkpoints/step_000002")),
        data: Some(DATA.into()),
        samples: Some(1000),
        cache: Some(dir.join("cache")),
        ..LabOptions::default()
    };
    let s = run("score", &opts).unwrap();
    eprintln!("{}", s.headline);
    let j = &s.json;
    let accuracy = j["classifier"]["test_accuracy"].as_f64().unwrap();
    let floor = j["floor"].as_f64().unwrap();
    let fd = j["frechet"].as_f64().unwrap();
    assert!(j["frechet_ema"].is_null(), "a run without --ema has no average to score: {j}");
    assert!(j["checkpoints"][0]["class_counts_ema"].is_null(), "{j}");
    assert!(!j["classifier"]["cached"].as_bool().unwrap());
    assert!(accuracy >= 0.82, "classifier test accuracy {accuracy}: {}", s.headline);
    assert!(floor > 0.0 && floor < 5.0, "real-vs-real floor {floor}: {}", s.headline);
    assert!(fd > 50.0 * floor, "2-step generator FD {fd} vs floor {floor}: {}", s.headline);
    assert_eq!(j["test_images"].as_u64(), Some(10_000));
    assert_eq!(j["classes"].as_u64(), Some(10));
    assert_eq!(j["floor_classes_covered"].as_u64(), Some(10), "{}", s.headline);
    assert!(j["classes_covered"].as_u64().unwrap() <= 5, "{}", s.headline);
    assert!(s.headline.contains("Fréchet") && s.headline.contains("floor"), "{}", s.headline);
    for f in ["score.csv", "frechet.png", "class_histogram.png", "samples.png"] {
        assert!(opts.out.join(f).is_file(), "missing {f}");
    }

    let again = run("score", &opts).unwrap();
    assert!(again.json["classifier"]["cached"].as_bool().unwrap(), "{}", again.headline);
    for key in ["frechet", "floor"] {
        assert_eq!(again.json[key], j[key], "{key} differs with the cached classifier");
    }
    assert_eq!(again.json["classifier"]["test_accuracy"], j["classifier"]["test_accuracy"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scores_every_checkpoint_of_a_run_on_the_fixture() {
    let dir = scratch("fixture");
    let run_dir = dir.join("run");
    // With G's running average, which is scored beside G.
    tiny_run(&run_dir, &fixture(), "2", &["--ema", "0.5"]);
    let out = dir.join("out");
    let cache = dir.join("cache");
    let args = [
        "lab",
        "score",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--data",
        &fixture(),
        "--samples",
        "100",
        "--steps",
        "20",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let o = dcgan(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON line expected:\n{stdout}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let steps: Vec<u64> =
        j["checkpoints"].as_array().unwrap().iter().map(|c| c["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2]);
    // One labelled file: its last sixth is the test set, the sixth before it the floor's.
    assert_eq!(j["test_images"].as_u64(), Some(166));
    assert_eq!(j["floor_samples"].as_u64(), Some(100));
    assert_eq!(j["classifier"]["train_images"].as_u64(), Some(668));
    for c in j["checkpoints"].as_array().unwrap() {
        let counts: u64 = c["class_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(counts, 100);
        let (fd, fd_avg) = (c["frechet"].as_f64().unwrap(), c["frechet_ema"].as_f64().unwrap());
        assert!(fd.is_finite() && fd_avg.is_finite(), "{c}");
        assert_ne!(fd, fd_avg, "the average after 1 or 2 steps is not G: {c}");
        // The average's samples are classified too: its histogram counts every one of them.
        let counts: u64 = c["class_counts_ema"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(counts, 100, "{c}");
    }
    let csv = std::fs::read_to_string(out.join("score.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let fields = |line: &str| line.split(',').count();
    assert!(csv.lines().all(|l| fields(l) == fields(csv.lines().next().unwrap())), "ragged rows:\n{csv}");
    assert!(csv.starts_with("step,frechet,floor,classifier_accuracy,samples,class_0,"), "{csv}");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",frechet_ema,classes_covered_ema,class_agreement,class_agreement_ema,intra_frechet,intra_frechet_ema"),
        "{csv}"
    );
    assert!(j["class_agreement"].is_null(), "an unconditional G has no class to agree with");
    assert!(j["intra_frechet"].is_null() && j["intra_floor"].is_null(), "{j}");
    for f in ["frechet.png", "class_histogram.png", "samples.png"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1, "one cached classifier");
    // The summary line without --json names the distance, the floor and the accuracy.
    let o = dcgan(&args[..args.len() - 1]);
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(line.contains("2 checkpoints") && line.contains("floor") && line.contains("cached"), "{line}");
    // --truncation scores other samples of the same generators, and says so.
    let o = dcgan(&[&args[..], &["--truncation", "0.5"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t["truncation"].as_f64(), Some(0.5));
    assert_ne!(t["frechet"], j["frechet"], "truncated noise gives other samples");

    // A conditional G is asked for every class in turn and scored on how often the
    // classifier agrees: at most the overlap of the predicted and requested histograms.
    let cond_dir = dir.join("cond");
    tiny_run(&cond_dir, &fixture(), "2", &["--conditional"]);
    let cond_args = [&args[..3], &[cond_dir.to_str().unwrap()], &args[4..]].concat();
    let o = dcgan(&cond_args);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for ck in c["checkpoints"].as_array().unwrap() {
        let agreement = ck["class_agreement"].as_f64().expect("a conditional G's class agreement");
        let overlap: u64 =
            ck["class_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap().min(10)).sum();
        assert!(
            (0.0..=overlap as f64 / 100.0).contains(&agreement),
            "agreement {agreement}, overlap {overlap}: {ck}"
        );
    }
    let o = dcgan(&cond_args[..cond_args.len() - 1]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("class agreement"), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("score.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let intra = rows[0].iter().position(|&c| c == "intra_frechet").unwrap();
    assert!(rows[1..].iter().all(|r| r.len() == rows[0].len() && r[intra].parse::<f64>().is_ok()), "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_score_inputs_are_refused_with_the_flag_named() {
    let dir = scratch("bad");
    let grey = dir.join("grey");
    tiny_run(&grey, &fixture(), "1", &[]);
    let grey_s = grey.to_str().unwrap();
    let out = dir.join("out");
    let cache = dir.join("cache");
    let common = ["--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--steps", "2"];
    let score = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["lab", "score"];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        assert_fails(&args, needles);
    };
    let fx = fixture();

    score(&["--data", &fx], &["--checkpoint"]);
    score(&["--checkpoint", grey_s], &["--data"]);
    let nowhere = dir.join("nowhere");
    score(&["--checkpoint", nowhere.to_str().unwrap(), "--data", &fx], &["--checkpoint", "nowhere"]);
    let empty = scratch("bad-empty");
    score(&["--checkpoint", empty.to_str().unwrap(), "--data", &fx], &["--checkpoint", "not a checkpoint"]);
    score(&["--checkpoint", grey_s, "--data", &fx, "--samples", "5"], &["--samples 5"]);
    score(&["--checkpoint", grey_s, "--data", &fx, "--samples", "100000000000"], &["--samples 100000000000"]);
    score(&["--checkpoint", grey_s, "--data", &fx, "--truncation", "0"], &["--truncation 0"]);
    score(&["--checkpoint", grey_s, "--data", nowhere.to_str().unwrap()], &["--data", "nowhere"]);

    // Images without their labels file.
    let unlabelled = scratch("bad-unlabelled");
    std::fs::copy(
        Path::new(&fx).join("train-images-idx3-ubyte.gz"),
        unlabelled.join("train-images-idx3-ubyte.gz"),
    )
    .unwrap();
    score(
        &["--checkpoint", grey_s, "--data", unlabelled.to_str().unwrap()],
        &["--data", "bad-unlabelled", "labelled", "labels-idx1-ubyte"],
    );

    // An RGB generator against grey data.
    let rgb = dir.join("rgb");
    tiny_run(&rgb, "synthetic", "1", &["--channels", "3"]);
    score(
        &["--checkpoint", rgb.to_str().unwrap(), "--data", &fx],
        &["--checkpoint", "3-channel", "--data", "has 1"],
    );

    // An unknown experiment still lists score among the known ones.
    // An unknown experiment is clap's usage error (status 2), which lists the experiments.
    let o = dcgan(&["lab", "scores"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(["invalid value 'scores'", "score", "ring"].iter().all(|n| err.contains(n)), "{err}");
    assert!(
        !cache.exists() || std::fs::read_dir(&cache).unwrap().count() == 0,
        "no classifier for bad input"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(&unlabelled);
}

/// `lab score --json` with `extra` flags: the exit status, stderr and the JSON printed.
fn score_json(extra: &[&str]) -> (Output, serde_json::Value) {
    let o = dcgan(&[&["lab", "score", "--json"], extra].concat());
    let j = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, j)
}

/// A cheap score of `checkpoint` on the fixture (10 samples, a 20-step classifier), caching
/// and writing under `dir`.
fn cheap_score_args(checkpoint: &Path, dir: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    let (cache, out) = (path(&dir.join("cache")), path(&dir.join("out")));
    let flags = ["--checkpoint", &path(checkpoint), "--data", &fixture(), "--samples", "10", "--steps", "20"];
    flags.into_iter().chain(["--cache", &cache, "--out", &out]).map(String::from).collect()
}

/// Overwrites the first 100 values of the largest tensor of an f32 safetensors file with `value`.
fn fill_largest_tensor(file: &Path, value: f32) {
    let mut bytes = std::fs::read(file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = |t: &serde_json::Value| {
        let o = t["data_offsets"].as_array().unwrap();
        (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize)
    };
    let largest = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, t)| offsets(t))
        .max_by_key(|(start, end)| end - start)
        .unwrap();
    let start = 8 + header_len + largest.0;
    for v in bytes[start..start + 400].chunks_exact_mut(4) {
        v.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(file, bytes).unwrap();
}

/// A cache is a shortcut, never a source of numbers: a cached classifier with NaN weights is
/// reported (naming the file), retrained and rewritten, and scores what a fresh one scores.
/// "cached in" is said only once the file is written; a cache that cannot be written says so.
#[test]
fn a_corrupt_classifier_cache_is_retrained_and_an_unwritable_one_is_named() {
    let dir = scratch("cache");
    let run_dir = dir.join("run");
    tiny_run(&run_dir, &fixture(), "1", &[]);
    let cache = dir.join("cache");
    let out = dir.join("out");
    let fx = fixture();
    let args = |cache: &Path| {
        ["--checkpoint", run_dir.to_str().unwrap(), "--data", &fx, "--samples", "10", "--steps", "20"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--cache".into(), cache.display().to_string(), "--out".into(), out.display().to_string()])
            .collect::<Vec<String>>()
    };
    let score = |cache: &Path| {
        let a = args(cache);
        let (o, j) = score_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        (stderr(&o), j)
    };

    let (err, fresh) = score(&cache);
    let file = fresh["classifier"]["cache_file"].as_str().unwrap().to_string();
    assert!(err.contains(&format!("score: classifier cached in {file}")), "{err}");
    assert_eq!(fresh["classifier"]["cached"], false);
    let frechet = fresh["frechet"].as_f64().unwrap();
    assert!(frechet > 0.0, "{fresh}");

    fill_largest_tensor(Path::new(&file), f32::NAN);
    let (err, retrained) = score(&cache);
    assert!(err.contains(&format!("not using the cached classifier {file}")), "{err}");
    assert!(err.contains("non-finite values") && err.contains("training a new one"), "{err}");
    assert_eq!(retrained["classifier"]["cached"], false, "the corrupt cache was trusted: {retrained}");
    assert_eq!(retrained["frechet"].as_f64(), Some(frechet), "{retrained}");
    let (err, reused) = score(&cache);
    assert_eq!(reused["classifier"]["cached"], true, "the cache was not rewritten: {err}");
    assert_eq!(reused["frechet"].as_f64(), Some(frechet));

    // A cache folder under a regular file cannot be made.
    let a_file = dir.join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let (err, _) = score(&a_file.join("cache"));
    assert!(
        err.contains(&format!("cannot cache the classifier in {}", a_file.join("cache").display())),
        "{err}"
    );
    assert!(!err.contains("cached in"), "claims a cache it could not write:\n{err}");
}

/// A conditional G scored with fewer than 2 samples a class has no intra-class distance to
/// report: null in the JSON and "n/a" in the summary, never the empty mean "-0.00".
#[test]
fn too_few_samples_a_class_give_no_intra_class_distance() {
    let dir = scratch("intra");
    let run_dir = dir.join("run");
    tiny_run(&run_dir, &fixture(), "1", &["--conditional"]);
    let args = cheap_score_args(&run_dir, &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, j) = score_json(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(j["class_agreement"].is_f64(), "a conditional G: {j}");
    assert!(j["intra_frechet"].is_null(), "1 sample a class: {j}");
    assert!(j["checkpoints"][0]["intra_frechet"].is_null(), "{j}");
    let o = dcgan(&[&["lab", "score"], &args[..]].concat());
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(line.contains("intra-class Fréchet n/a, --samples under 2 a class"), "{line}");
    assert!(!line.contains("-0.00") && !stderr(&o).contains("-0.00"), "{line}\n{}", stderr(&o));
}

/// A generator whose (finite) weights make NaN images: score refuses to grade them, naming the
/// checkpoint, instead of printing a distance.
#[test]
fn a_generator_that_makes_non_finite_pixels_is_refused() {
    let dir = scratch("nan-generator");
    let run_dir = dir.join("run");
    tiny_run(&run_dir, &fixture(), "1", &[]);
    let checkpoint = run_dir.join("checkpoints/step_000001");
    // Finite weights (a NaN would be refused on load) that overflow G's activations.
    fill_largest_tensor(&checkpoint.join("generator.safetensors"), f32::MAX);
    let args = cheap_score_args(&checkpoint, &dir);
    let args: Vec<&str> = ["lab", "score"].into_iter().chain(args.iter().map(String::as_str)).collect();
    assert_fails(&args, &["--checkpoint", "step_000001", "generator makes non-finite pixels"]);
}
