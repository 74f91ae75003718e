//! The trainer's files: safetensors checkpoints (format compliance, validation of corrupt
//! input, PyTorch state_dict names, save/load of a model), PNG grids, plots, metrics CSV.

use dcgan::gan::{DcganConfig, discriminator, generator};
use dcgan::io::{
    ArrayData, IoError, MetricsCsv, NamedArray, PlotOptions, SaveDtype, grid_pixels, load_module_file,
    load_module_state, module_state, parse_safetensors, plot_series, read_metrics_csv, read_safetensors,
    read_safetensors_with_metadata, save_image_grid, save_module_file, scatter_plot, serialize_safetensors,
    write_atomic, write_json_atomic, write_safetensors,
};
use dcgan::nn::{Module, Sequential};
use dcgan::{Device, Rng, Tensor};
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the target dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("io-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn err_text(r: Result<impl std::fmt::Debug, IoError>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---- safetensors format -----------------------------------------------------------------

#[test]
fn round_trip_every_dtype() {
    let dir = scratch("round_trip");
    let values: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) * 0.173).collect();
    let tensors = vec![
        NamedArray::f32("a.weight", &[2, 3, 4], values.clone()),
        NamedArray::new("b.half", &[4, 6], ArrayData::from_f32(&values, SaveDtype::F16)),
        NamedArray::new("c.brain", &[24], ArrayData::from_f32(&values, SaveDtype::Bf16)),
        NamedArray::scalar_i64("d.num_batches_tracked", 1234567890123),
        NamedArray::f32("e.empty", &[0, 5], vec![]),
        NamedArray::f32("f.scalar", &[], vec![std::f32::consts::PI]),
    ];
    let mut meta = no_metadata();
    meta.insert("format".into(), "dcgan-checkpoint".into());
    meta.insert("quote\"d".into(), "new\nline".into());
    let path = dir.join("t.safetensors");
    write_safetensors(&path, &tensors, &meta).unwrap();
    let back = read_safetensors_with_metadata(&path).unwrap();
    assert_eq!(back.metadata, meta);
    let mut back = back.tensors;
    back.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, tensors, "exact round trip, the stored types preserved");

    // f16 / bf16 keep their precision: relative error ≤ 2^-11 resp. 2^-8.
    let half = back[1].data.to_f32().unwrap();
    let brain = back[2].data.to_f32().unwrap();
    for ((v, h), b) in values.iter().zip(&half).zip(&brain) {
        assert!((v - h).abs() <= v.abs() * 2f32.powi(-11) + 1e-7, "f16 {v} -> {h}");
        assert!((v - b).abs() <= v.abs() * 2f32.powi(-8) + 1e-7, "bf16 {v} -> {b}");
    }
    // Deterministic bytes: the same state gives the same file.
    assert_eq!(std::fs::read(&path).unwrap(), serialize_safetensors(&tensors, &meta));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["t.safetensors"]);
}

/// A file assembled byte by byte from the format's description reads back: this proves
/// compliance with the format, not only agreement of our writer with our reader. The header
/// carries trailing spaces, keys in non-offset order and an unknown extra field, all allowed.
#[test]
fn reads_a_file_built_by_hand_from_the_spec() {
    let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"__metadata__":{"k":"v"},"n":{"dtype":"I64","shape":[],"data_offsets":[0,8],"extra":1},"h":{"dtype":"F16","shape":[1,2],"data_offsets":[16,20]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]}}   "#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&7i64.to_le_bytes()); // n
    bytes.extend_from_slice(&1.5f32.to_le_bytes()); // w[0]
    bytes.extend_from_slice(&[0x00, 0x00, 0x80, 0xbf]); // w[1] = -1.0f32
    bytes.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0]); // h = [1.0, -2.0] as f16
    bytes.extend_from_slice(&[0x80, 0x3f]); // b = [1.0] as bf16
    let parsed = parse_safetensors(&bytes, "hand.safetensors").unwrap();
    assert_eq!(parsed.metadata.get("k").map(String::as_str), Some("v"));
    let by_name = |n: &str| parsed.tensors.iter().find(|t| t.name == n).unwrap().clone();
    assert_eq!(by_name("n"), NamedArray::scalar_i64("n", 7));
    assert_eq!(by_name("w"), NamedArray::f32("w", &[2], vec![1.5, -1.0]));
    assert_eq!(by_name("h").data, ArrayData::F16(vec![f16::from_f32(1.0), f16::from_f32(-2.0)]));
    assert_eq!(by_name("h").shape, [1, 2]);
    assert_eq!(by_name("b").data, ArrayData::Bf16(vec![bf16::from_f32(1.0)]));
    // File order (by offset).
    let order: Vec<_> = parsed.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(order, ["n", "w", "h", "b"]);
}

/// The reference implementation (the `safetensors` crate) reads what we write, and we read
/// what it writes.
#[test]
fn agrees_with_the_reference_implementation() {
    use safetensors::tensor::{Dtype, TensorView};
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let ours = vec![
        NamedArray::f32("main.0.weight", &[3, 4], w.clone()),
        NamedArray::scalar_i64("main.1.num_batches_tracked", 42),
        NamedArray::new("main.1.weight", &[3], ArrayData::from_f32(&[1.0, 2.0, 3.0], SaveDtype::Bf16)),
    ];
    let bytes = serialize_safetensors(&ours, &BTreeMap::from([("a".to_string(), "b".to_string())]));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("the reference reads our file");
    let v = st.tensor("main.0.weight").unwrap();
    assert_eq!((v.dtype(), v.shape()), (Dtype::F32, &[3usize, 4][..]));
    assert_eq!(v.data(), bytemuck::cast_slice::<f32, u8>(&w));
    let n = st.tensor("main.1.num_batches_tracked").unwrap();
    assert_eq!((n.dtype(), n.shape(), n.data()), (Dtype::I64, &[][..], &42i64.to_le_bytes()[..]));
    assert_eq!(st.tensor("main.1.weight").unwrap().dtype(), Dtype::BF16);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap().get("a").map(String::as_str), Some("b"));

    let h: Vec<u8> = [0.5f32, -0.25].iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect();
    let count = 9i64.to_le_bytes();
    let theirs = safetensors::serialize(
        [
            ("x", TensorView::new(Dtype::F32, vec![2, 2], bytemuck::cast_slice(&w[..4])).unwrap()),
            ("y", TensorView::new(Dtype::F16, vec![2], &h).unwrap()),
            ("z", TensorView::new(Dtype::I64, vec![], &count).unwrap()),
        ],
        None,
    )
    .unwrap();
    let mut back = parse_safetensors(&theirs, "ref.safetensors").unwrap().tensors;
    back.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back[0], NamedArray::f32("x", &[2, 2], w[..4].to_vec()));
    assert_eq!(back[1].data.to_f32().unwrap(), [0.5, -0.25]);
    assert_eq!(back[2], NamedArray::scalar_i64("z", 9));
}

/// The layout the reference writer keeps: the header padded to a multiple of 8 bytes, then
/// the tensors in descending element size, so that every tensor's data starts at a file
/// offset that is a multiple of its element size (readers that map the file cast it in place).
/// Names of every length mod 8 move the header's unpadded end through every residue.
#[test]
fn every_tensor_starts_aligned_in_the_file() {
    use safetensors::tensor::Dtype;
    for name_len in 1..=16 {
        let ours = vec![
            NamedArray::new("h", &[3], ArrayData::from_f32(&[1.0, 2.0, 3.0], SaveDtype::F16)),
            NamedArray::f32("w".repeat(name_len), &[3], vec![1.0, 2.0, 3.0]),
            NamedArray::scalar_i64("n", 7),
        ];
        let bytes = serialize_safetensors(&ours, &no_metadata());
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0, "a {n}-byte header leaves the data section unaligned");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("the reference reads our file");
        for (name, view) in st.tensors() {
            let at = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
            let size = match view.dtype() {
                Dtype::I64 => 8,
                Dtype::F32 => 4,
                _ => 2,
            };
            assert_eq!(at % size, 0, "{name} ({:?}) starts at byte {at} of the file", view.dtype());
        }
    }
}

/// A valid two-tensor file to damage.
fn sample_file() -> Vec<u8> {
    serialize_safetensors(
        &[
            NamedArray::f32("a", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            NamedArray::f32("b", &[3], vec![5.0, 6.0, 7.0]),
        ],
        &no_metadata(),
    )
}

/// Replace the header of `file` by `header` (the data section kept).
fn with_header(file: &[u8], header: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&file[8 + n..]);
    out
}

#[test]
fn corrupt_files_give_their_own_error() {
    let good = sample_file();
    assert!(parse_safetensors(&good, "x").is_ok());
    let parse = |bytes: &[u8]| parse_safetensors(bytes, "ckpt/generator.safetensors").map(|_| ());

    // Truncated before the header length, inside the header, inside the data.
    let e = err_text(parse(&good[..5]));
    assert!(e.contains("ckpt/generator.safetensors: truncated") && e.contains("5 bytes"), "{e}");
    let e = err_text(parse(&good[..20]));
    assert!(e.contains("truncated") && e.contains("the header should be"), "{e}");
    let e = err_text(parse(&good[..good.len() - 3]));
    assert!(e.contains("truncated") && e.contains("tensor \"b\"") && e.contains("only"), "{e}");
    assert!(err_text(parse(&[])).contains("truncated"));

    // A header length beyond any sane size, e.g. a text or PNG file.
    let e = err_text(parse(b"\x89PNG\r\n\x1a\n rest of a png"));
    assert!(e.contains("corrupt safetensors header") && e.contains("limit"), "{e}");

    // Corrupted JSON, non-UTF-8, not an object.
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut bad = good.clone();
    bad[8 + 3] = b'#';
    let e = err_text(parse(&bad));
    assert!(e.contains("corrupt safetensors header") && e.contains("not valid JSON"), "{e}");
    let mut bad = good.clone();
    bad[8 + n - 1] = 0xff;
    assert!(err_text(parse(&bad)).contains("not UTF-8"));
    assert!(err_text(parse(&with_header(&good, "[1, 2]          "))).contains("not a JSON object"));

    // Offsets out of range, overlapping, leaving a gap, reversed.
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,4000]}}"#,
    )));
    assert!(e.contains("tensor \"b\"") && e.contains("[16, 4000]") && e.contains("28 bytes"), "{e}");
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]}}"#,
    )));
    assert!(e.contains("tensor \"b\"") && e.contains("overlap"), "{e}");
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[20,28]}}"#,
    )));
    assert!(e.contains("tensor \"b\"") && e.contains("gap"), "{e}");
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#,
    )));
    assert!(e.contains("tensor \"a\"") && e.contains("end before they begin"), "{e}");
    // Data after the last tensor.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    assert!(err_text(parse(&long)).contains("cover 28 bytes of data, but the file holds 32"));

    // Wrong byte count for the shape.
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#,
    )));
    assert!(
        e.contains("tensor \"a\"")
            && e.contains("shape [2, 3] of F32 needs 24 bytes")
            && e.contains("hold 16"),
        "{e}"
    );
    // A shape whose product overflows.
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#,
    )));
    assert!(e.contains("tensor \"a\"") && e.contains("needs"), "{e}");

    // Unknown dtype; a valid dtype this program does not read.
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F31","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#,
    )));
    assert!(e.contains("tensor \"a\": unknown dtype \"F31\""), "{e}");
    let e = err_text(parse(&with_header(
        &good,
        r#"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#,
    )));
    assert!(e.contains("F64 is valid safetensors") && e.contains("F32, F16, BF16 and I64"), "{e}");

    // Malformed fields.
    for (header, expect) in [
        (r#"{"a":{"shape":[4],"data_offsets":[0,16]}}"#, "no \"dtype\""),
        (
            r#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#,
            "\"shape\" is not a list of non-negative",
        ),
        (r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0]}}"#, "\"data_offsets\" is not a list"),
        (r#"{"a":[1,2]}"#, "not an object"),
        (r#"{"__metadata__":{"k":1}}"#, "\"__metadata__\".\"k\" is not a string"),
        // A repeated key would silently override the first; the reference rejects it too.
        (
            r#"{"a":{"dtype":"F32","shape":[2,2],"shape":[4],"data_offsets":[0,16]}}"#,
            "duplicate key \"shape\"",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            "duplicate key \"a\"",
        ),
    ] {
        let e = err_text(parse(&with_header(&good, header)));
        assert!(e.contains(expect), "{header}: {e}");
    }

    // From a path: the OS error names the file.
    let e = err_text(read_safetensors(Path::new("/nonexistent/dir/g.safetensors")));
    assert!(e.starts_with("/nonexistent/dir/g.safetensors: cannot read:"), "{e}");
}

// ---- model state -------------------------------------------------------------------------

fn dcgan64() -> DcganConfig {
    DcganConfig { image_size: 64, channels: 3, nz: 100, ngf: 64, ndf: 64, classes: 0 }
}

/// pytorch/examples dcgan/main.py, `Generator().state_dict().keys()` and shapes (nz=100,
/// ngf=64, nc=3), written out from the class definition.
fn pytorch_generator_state() -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = vec![("main.0.weight".into(), vec![100, 512, 4, 4])];
    for (bn, conv, cin, cout) in [(1, 3, 512, 256), (4, 6, 256, 128), (7, 9, 128, 64), (10, 12, 64, 3)] {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("main.{bn}.{s}"), vec![cin]));
        }
        out.push((format!("main.{bn}.num_batches_tracked"), vec![]));
        out.push((format!("main.{conv}.weight"), vec![cin, cout, 4, 4]));
    }
    out
}

/// pytorch/examples dcgan/main.py, `Discriminator().state_dict()` (ndf=64, nc=3).
fn pytorch_discriminator_state() -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = vec![("main.0.weight".into(), vec![64, 3, 4, 4])];
    for (conv, bn, cin, cout) in [(2, 3, 64, 128), (5, 6, 128, 256), (8, 9, 256, 512)] {
        out.push((format!("main.{conv}.weight"), vec![cout, cin, 4, 4]));
        for s in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("main.{bn}.{s}"), vec![cout]));
        }
        out.push((format!("main.{bn}.num_batches_tracked"), vec![]));
    }
    out.push(("main.11.weight".into(), vec![1, 512, 4, 4]));
    out
}

fn names_and_shapes(state: &[NamedArray]) -> Vec<(String, Vec<usize>)> {
    state.iter().map(|a| (a.name.clone(), a.shape.clone())).collect()
}

#[test]
fn module_state_is_pytorchs_state_dict() {
    let mut rng = Rng::new(0);
    let g = generator(&dcgan64(), &mut rng, Device::Cpu);
    let d = discriminator(&dcgan64(), &mut rng, Device::Cpu);
    let gs = module_state("main", &g, SaveDtype::F32);
    let ds = module_state("main", &d, SaveDtype::F32);
    assert_eq!(names_and_shapes(&gs), pytorch_generator_state());
    assert_eq!(names_and_shapes(&ds), pytorch_discriminator_state());
    for a in gs.iter().chain(&ds) {
        if a.name.ends_with("num_batches_tracked") {
            assert_eq!(a.data, ArrayData::I64(vec![0]), "{}", a.name);
        } else {
            assert!(matches!(a.data, ArrayData::F32(_)), "{}", a.name);
        }
    }
    // Other dtypes change the floats only.
    let half = module_state("main", &g, SaveDtype::F16);
    assert!(half.iter().all(|a| matches!(a.data, ArrayData::F16(_) | ArrayData::I64(_))));
    assert_eq!(names_and_shapes(&half), pytorch_generator_state());
    // Without a prefix, the Sequential's own names.
    assert_eq!(module_state("", &d, SaveDtype::F32)[0].name, "0.weight");
}

fn small() -> DcganConfig {
    DcganConfig { image_size: 16, channels: 3, nz: 8, ngf: 8, ndf: 8, classes: 0 }
}

/// Every tensor's values and every counter, by name.
type State = (Vec<(String, Vec<f32>)>, Vec<(String, u64)>);

fn state_values(m: &Sequential) -> State {
    (m.named_tensors().into_iter().map(|(n, t)| (n, t.to_vec())).collect(), m.counters())
}

#[test]
fn save_then_load_restores_tensors_and_counters() {
    let dir = scratch("save_load");
    let cfg = small();
    let mut rng = Rng::new(1);
    let g = generator(&cfg, &mut rng, Device::Cpu);
    let d = discriminator(&cfg, &mut rng, Device::Cpu);
    // Training-mode passes move the running statistics and the counters.
    for _ in 0..3 {
        let z = Tensor::randn(&[4, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, Device::Cpu);
        d.forward(&g.forward(&z));
    }
    assert!(g.counters().iter().all(|(_, n)| *n == 3), "{:?}", g.counters());

    for (net, name, fresh_seed) in [(&g, "generator", 7u64), (&d, "discriminator", 8)] {
        let path = dir.join(format!("{name}.safetensors"));
        write_safetensors(&path, &module_state("main", net, SaveDtype::F32), &no_metadata()).unwrap();
        let mut fresh_rng = Rng::new(fresh_seed);
        let fresh = if name == "generator" {
            generator(&cfg, &mut fresh_rng, Device::Cpu)
        } else {
            discriminator(&cfg, &mut fresh_rng, Device::Cpu)
        };
        assert_ne!(state_values(&fresh), state_values(net));
        load_module_state("main", &fresh, &read_safetensors(&path).unwrap(), &path).unwrap();
        assert_eq!(state_values(&fresh), state_values(net), "{name}: bit-identical after load");
    }

    // The one-call helpers, with metadata.
    let path = dir.join("g-helper.safetensors");
    let meta = BTreeMap::from([("step".to_string(), "3".to_string())]);
    save_module_file(&path, "main", &g, SaveDtype::F32, &meta).unwrap();
    let fresh = generator(&cfg, &mut Rng::new(10), Device::Cpu);
    assert_eq!(load_module_file(&path, "main", &fresh).unwrap(), meta);
    assert_eq!(state_values(&fresh), state_values(&g));

    // bf16 weights load as f32 values within bf16 precision; counters exact.
    let path = dir.join("g16.safetensors");
    write_safetensors(&path, &module_state("main", &g, SaveDtype::Bf16), &no_metadata()).unwrap();
    let fresh = generator(&cfg, &mut Rng::new(9), Device::Cpu);
    load_module_state("main", &fresh, &read_safetensors(&path).unwrap(), &path).unwrap();
    assert_eq!(fresh.counters(), g.counters());
    for ((name, a), (_, b)) in state_values(&fresh).0.iter().zip(&state_values(&g).0) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= y.abs() * 2f32.powi(-8), "{name}: {x} vs {y}");
        }
    }
}

#[test]
fn loading_into_another_architecture_names_the_tensor_and_both_shapes() {
    let dir = scratch("mismatch");
    let mut rng = Rng::new(2);
    let g64 = generator(&dcgan64(), &mut rng, Device::Cpu);
    let path = dir.join("generator.safetensors");
    write_safetensors(&path, &module_state("main", &g64, SaveDtype::F32), &no_metadata()).unwrap();
    let arrays = read_safetensors(&path).unwrap();
    let p = path.display().to_string();

    // Another width: the first differing tensor, both shapes, and a hint.
    let g32 = generator(&DcganConfig { ngf: 32, ..dcgan64() }, &mut rng, Device::Cpu);
    let before = state_values(&g32);
    let e = err_text(load_module_state("main", &g32, &arrays, &path));
    assert_eq!(
        e,
        format!(
            "{p}: main.0.weight has shape [100, 512, 4, 4], the model expects [100, 256, 4, 4] \
             (a checkpoint of another architecture? check --image-size, --channels, --nz, --ngf and --ndf)"
        )
    );
    assert_eq!(state_values(&g32), before, "a failed load changes nothing");

    // Another image size: 32×32 has fewer layers, the 64×64 file has tensors it lacks.
    let g_small = generator(&DcganConfig { image_size: 32, ngf: 128, ..dcgan64() }, &mut rng, Device::Cpu);
    let e = err_text(load_module_state("main", &g_small, &arrays, &path));
    assert!(e.contains("main.9.weight has shape [128, 64, 4, 4], the model expects [128, 3, 4, 4]"), "{e}");
    // A generator file into a discriminator.
    let d = discriminator(&dcgan64(), &mut rng, Device::Cpu);
    let e = err_text(load_module_state("main", &d, &arrays, &path));
    assert!(e.contains("main.0.weight has shape [100, 512, 4, 4], the model expects [64, 3, 4, 4]"), "{e}");

    // Missing and unexpected names; a wrong prefix.
    let mut missing = arrays.clone();
    missing.retain(|a| a.name != "main.4.running_var");
    let e = err_text(load_module_state("main", &g64, &missing, &path));
    assert!(e.starts_with(&format!("{p}: main.4.running_var is missing")), "{e}");
    let mut extra = arrays.clone();
    extra.push(NamedArray::f32("main.99.weight", &[1], vec![0.0]));
    let e = err_text(load_module_state("main", &g64, &extra, &path));
    assert!(e.contains("unexpected tensor main.99.weight"), "{e}");
    let e = err_text(load_module_state("netG", &g64, &arrays, &path));
    assert!(e.contains("netG.0.weight is missing"), "{e}");
    // A counter stored as a float.
    let mut float_counter = arrays.clone();
    let i = float_counter.iter().position(|a| a.name == "main.1.num_batches_tracked").unwrap();
    float_counter[i] = NamedArray::f32("main.1.num_batches_tracked", &[], vec![3.0]);
    let e = err_text(load_module_state("main", &g64, &float_counter, &path));
    assert!(e.contains("main.1.num_batches_tracked is stored as F32, the model expects an I64 count"), "{e}");
}

// ---- image grid ----------------------------------------------------------------------------

#[test]
fn image_grid_layout_matches_torchvision() {
    // Two 1×2×2 images, nrow 2: torchvision's grid is 6 high, 10 wide, 2-pixel black padding.
    let images = [-1.0, 0.0, 0.5, 1.0, /* second */ 2.0, -2.0, -0.5, 0.25];
    let (w, h, px) = grid_pixels(&images, 2, 1, 2, 2, 2);
    assert_eq!((w, h), (10, 6));
    #[rustfmt::skip]
    let expected: [u8; 60] = [
        0, 0, 0,   0,   0, 0, 0,   0,   0, 0,
        0, 0, 0,   0,   0, 0, 0,   0,   0, 0,
        0, 0, 0,   128, 0, 0, 255, 0,   0, 0,
        0, 0, 191, 255, 0, 0, 64,  159, 0, 0,
        0, 0, 0,   0,   0, 0, 0,   0,   0, 0,
        0, 0, 0,   0,   0, 0, 0,   0,   0, 0,
    ];
    assert_eq!(px, expected);

    // RGB, 3 images in rows of 2: 2 rows, the last cell black; channels interleaved.
    let mut rgb = vec![0.0f32; 3 * 3];
    rgb[0] = 1.0; // image 0, red
    rgb[3 + 1] = 1.0; // image 1, green
    rgb[6 + 2] = 1.0; // image 2, blue
    let (w, h, px) = grid_pixels(&rgb, 3, 3, 1, 1, 2);
    assert_eq!((w, h), (8, 8));
    let at = |x: usize, y: usize| &px[(y * 8 + x) * 3..(y * 8 + x) * 3 + 3];
    assert_eq!(at(2, 2), [255, 128, 128]);
    assert_eq!(at(5, 2), [128, 255, 128]);
    assert_eq!(at(2, 5), [128, 128, 255]);
    assert_eq!(at(5, 5), [0, 0, 0]);

    // One image: no padding, as make_grid.
    assert_eq!(grid_pixels(&[0.0; 4], 1, 1, 2, 2, 8), (2, 2, vec![128; 4]));

    // Written as PNG and decoded back.
    let dir = scratch("grid");
    let path = dir.join("real.png");
    save_image_grid(&path, &images, 2, 1, 2, 2, 2).unwrap();
    let img = image::open(&path).unwrap();
    assert_eq!((img.width(), img.height()), (10, 6));
    assert_eq!(img.to_luma8().into_raw(), expected);
    let path = dir.join("rgb.png");
    save_image_grid(&path, &rgb, 3, 3, 1, 1, 2).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8().into_raw(), grid_pixels(&rgb, 3, 3, 1, 1, 2).2);
    let e = err_text(save_image_grid(Path::new("/nonexistent/x.png"), &images, 2, 1, 2, 2, 2));
    assert!(e.starts_with("/nonexistent/x.png: cannot write: No such file or directory"), "{e}");
}

// ---- plots --------------------------------------------------------------------------------

#[test]
fn plots_are_png_files_of_the_requested_size() {
    let dir = scratch("plot");
    let x: Vec<f64> = (0..500).map(|i| i as f64).collect();
    let loss_d: Vec<f64> = x.iter().map(|s| 1.4 * (-s / 150.0).exp() + 0.3 + 0.1 * (s * 0.7).sin()).collect();
    let loss_g: Vec<f64> =
        x.iter().map(|s| 0.7 + 2.0 * (1.0 - (-s / 100.0).exp()) + 0.2 * (s * 0.3).cos()).collect();
    let dx: Vec<f64> = x.iter().map(|s| 0.5 + 0.3 * (1.0 - (-s / 80.0).exp())).collect();
    let mut dgz: Vec<f64> = x.iter().map(|s| 0.5 - 0.35 * (1.0 - (-s / 80.0).exp())).collect();
    dgz[250] = f64::NAN; // a gap, not a failure
    let path = dir.join("losses.png");
    let opts = PlotOptions::new("DCGAN training", "step", "value").size(900, 500);
    plot_series(
        &path,
        &opts,
        &x,
        &[("loss_D", &loss_d), ("loss_G", &loss_g), ("D(x)", &dx), ("D(G(z))", &dgz)],
    )
    .unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (900, 500));
    let colours: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.contains(&dcgan::io::PALETTE[0]) && colours.contains(&dcgan::io::PALETTE[3]),
        "series drawn"
    );

    // Degenerate input still gives a picture: no points, one point, a flat line.
    plot_series(&dir.join("empty.png"), &PlotOptions::default(), &[], &[("none", &[])]).unwrap();
    plot_series(&dir.join("one.png"), &PlotOptions::default(), &[3.0], &[("one", &[1.0])]).unwrap();
    plot_series(&dir.join("flat.png"), &PlotOptions::default(), &[1.0, 2.0], &[("flat", &[0.0, 0.0])])
        .unwrap();
    // Extreme values and a degenerate fixed range: still a picture, no panic.
    let extreme = [f64::MAX, -f64::MAX, 1e-300, f64::INFINITY];
    plot_series(&dir.join("extreme.png"), &PlotOptions::default(), &[0.0, 1.0, 2.0, 3.0], &[("x", &extreme)])
        .unwrap();
    let bad_range = PlotOptions { y_range: Some((1.0, 1.0)), ..PlotOptions::new("fixed", "step", "loss") };
    plot_series(&dir.join("range.png"), &bad_range, &[1e9, 1e9 + 1.0], &[("flat", &[1.0, 1.0])]).unwrap();

    let a: Vec<(f64, f64)> = (0..200).map(|i| ((i as f64 * 0.1).sin(), (i as f64 * 0.13).cos())).collect();
    let b: Vec<(f64, f64)> =
        (0..200).map(|i| (0.5 * (i as f64 * 0.07).cos() + 1.5, (i as f64 * 0.05).sin())).collect();
    let path = dir.join("scatter.png");
    let opts = PlotOptions::new("samples", "x₁", "x₂").size(640, 480);
    scatter_plot(&path, &opts, &[("real", &a, [31, 119, 180]), ("generated", &b, [255, 127, 14])]).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8().dimensions(), (640, 480));

    let e = err_text(plot_series(&dir.join("tiny.png"), &PlotOptions::default().size(10, 10), &x, &[]));
    assert!(e.contains("plot size 10×10"), "{e}");
}

// ---- metrics CSV and atomic writes --------------------------------------------------------

#[test]
fn metrics_csv_is_bit_faithful_and_truncated_on_resume() {
    let dir = scratch("metrics");
    let path = dir.join("metrics.csv");
    let cols = ["step", "loss_D", "loss_G"];
    let value = |s: u64| (s as f32).sqrt() * 0.1234567 + 1e-9;
    let write = |csv: &mut MetricsCsv, steps: std::ops::RangeInclusive<u64>| {
        for s in steps {
            csv.row(&[&s, &value(s), &(1.0f32 / (s as f32 + 3.0))]).unwrap();
        }
    };

    // The uninterrupted run: steps 1..=10.
    let mut csv = MetricsCsv::open(&path, &cols, None).unwrap();
    write(&mut csv, 1..=10);
    drop(csv);
    let uninterrupted = std::fs::read(&path).unwrap();

    // An interrupted run: steps 1..=7 written, checkpoint after step 5, a half-written row.
    let mut csv = MetricsCsv::open(&path, &cols, None).unwrap();
    write(&mut csv, 1..=7);
    drop(csv);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"8,0.3").unwrap();
    drop(f);
    let mut csv = MetricsCsv::open(&path, &cols, Some(5)).unwrap();
    write(&mut csv, 6..=10);
    drop(csv);
    assert_eq!(std::fs::read(&path).unwrap(), uninterrupted, "resumed file equals the uninterrupted one");

    // Reading back gives the same f32 bits.
    let (names, rows) = read_metrics_csv(&path).unwrap();
    assert_eq!(names, cols);
    assert_eq!(rows.len(), 10);
    for (i, row) in rows.iter().enumerate() {
        let s = i as u64 + 1;
        assert_eq!(row[0], s as f64);
        assert_eq!((row[1] as f32).to_bits(), value(s).to_bits());
    }

    // Resuming a file of another layout is refused, naming the file and both headers.
    let e = err_text(MetricsCsv::open(&path, &["step", "other"], Some(3)));
    assert!(e.starts_with(&format!("{}:1: the header is \"step,loss_D,loss_G\"", path.display())), "{e}");
    // A resume with no file starts afresh.
    let fresh = dir.join("fresh.csv");
    MetricsCsv::open(&fresh, &cols, Some(3)).unwrap();
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "step,loss_D,loss_G\n");
    // NaN and infinities survive.
    let mut csv = MetricsCsv::open(&fresh, &["step", "v"], None).unwrap();
    csv.row(&[&1u64, &f32::NAN]).unwrap();
    csv.row(&[&2u64, &f32::NEG_INFINITY]).unwrap();
    let (_, rows) = read_metrics_csv(&fresh).unwrap();
    assert!(rows[0][1].is_nan() && rows[1][1] == f64::NEG_INFINITY);
    // A malformed line is reported with its number.
    std::fs::write(&fresh, "step,v\n1,0.5\n2,abc\n").unwrap();
    let e = err_text(read_metrics_csv(&fresh));
    assert!(e.ends_with("fresh.csv:3: \"abc\" is not a number"), "{e}");
}

#[test]
fn atomic_writes_replace_whole_files() {
    let dir = scratch("atomic");
    let path = dir.join("state.json");
    write_atomic(&path, b"old").unwrap();
    write_json_atomic(&path, &serde_json::json!({"step": 5, "format_version": 1})).unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["step"], 5);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["state.json"], "no temporary file left");
    let e = err_text(write_atomic(&dir.join("missing-dir").join("f"), b"x"));
    assert!(e.contains("missing-dir/f: cannot write: No such file"), "{e}");
}
