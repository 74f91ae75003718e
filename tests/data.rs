//! The data side: the Fashion-MNIST fixture, idx/CIFAR/folder readers and their errors, the
//! synthetic shapes, and the loader's order, determinism and resume.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dcgan::data::{
    self, BatchInfo, DataError, DataFormat, Dataset, Loader, LoaderState, SYNTHETIC_EPOCH_IMAGES, Synthetic,
};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fashion-mnist-1k");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dcgan-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x803, count, rows, cols] {
        v.extend_from_slice(&u32::to_be_bytes(x));
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn image_of(ds: &dyn Dataset, i: usize) -> Vec<f32> {
    let s = ds.image_size();
    let mut out = vec![0f32; ds.channels() * s * s];
    ds.image(i, &mut out);
    out
}

fn byte(v: u8) -> f32 {
    (v as f32 - 127.5) / 127.5
}

fn open_err(path: &Path, format: DataFormat) -> String {
    match data::open(path, format, 32, None) {
        Ok(ds) => panic!("expected an error for {}, got {}", path.display(), ds.describe()),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

// ---------------------------------------------------------------- the fixture

#[test]
fn fixture_loads_resized_to_32_with_labels() {
    let ds = data::open(Path::new(FIXTURE), DataFormat::Auto, 32, None).unwrap();
    assert_eq!(ds.len(), Some(1000));
    assert_eq!(ds.channels(), 1);
    assert_eq!(ds.image_size(), 32);
    assert_contains(&ds.describe(), &["MNIST-family idx", "1000 images 1×28×28", "-> 1×32×32"]);
    let labels: Vec<u8> = (0..1000).map(|i| ds.label(i).unwrap()).collect();
    assert_eq!(&labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [107, 105, 111, 93, 115, 87, 97, 95, 95, 95]);
    let mut sum = 0f64;
    let (mut lo, mut hi) = (f32::MAX, f32::MIN);
    for i in 0..1000 {
        for v in image_of(&*ds, i) {
            sum += v as f64;
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    assert!(lo >= -1.0 && hi <= 1.0, "range [{lo}, {hi}]");
    assert_eq!(lo, -1.0, "background is exactly 0 -> -1");
    assert!(hi > 0.99, "max {hi}");
    // Resampling keeps the mean: 74.0231 of 255 in the raw bytes.
    let mean = sum / (1000.0 * 32.0 * 32.0);
    let raw_mean = 74.0231 / 127.5 - 1.0;
    assert!((mean - raw_mean).abs() < 0.01, "mean {mean}, raw {raw_mean}");
}

#[test]
fn fixture_at_native_size_is_exactly_the_bytes() {
    let ds = data::open(Path::new(FIXTURE), DataFormat::Mnist, 28, None).unwrap();
    let at = |i: usize, r: usize, c: usize| image_of(&*ds, i)[r * 28 + c];
    assert_eq!(at(0, 14, 14), byte(110));
    assert_eq!(at(1, 5, 14), byte(242));
    assert_eq!(at(999, 14, 14), byte(200));
    let sum: f64 = (0..1000).flat_map(|i| image_of(&*ds, i)).map(|v| v as f64).sum();
    let mean_byte = (sum / 784_000.0 + 1.0) * 127.5;
    assert!((mean_byte - 74.0231).abs() < 1e-3, "{mean_byte}");
}

#[test]
fn fixture_as_rgb_replicates_the_grey_plane() {
    let ds = data::open(Path::new(FIXTURE), DataFormat::Auto, 32, Some(3)).unwrap();
    assert_eq!(ds.channels(), 3);
    let img = image_of(&*ds, 3);
    let (r, rest) = img.split_at(32 * 32);
    assert_eq!(&rest[..1024], r);
    assert_eq!(&rest[1024..], r);
}

#[test]
fn raw_and_gz_give_identical_data_and_the_images_file_can_be_named_directly() {
    let dir = TempDir::new("raw");
    let fixture = Path::new(FIXTURE);
    let images = dir.write("train-images-idx3-ubyte", &gunzip(&fixture.join("train-images-idx3-ubyte.gz")));
    dir.write("train-labels-idx1-ubyte", &gunzip(&fixture.join("train-labels-idx1-ubyte.gz")));
    let gz = data::open(fixture, DataFormat::Auto, 32, None).unwrap();
    for raw in [
        data::open(dir.path(), DataFormat::Auto, 32, None).unwrap(),
        data::open(&images, DataFormat::Auto, 32, None).unwrap(),
        data::open(&fixture.join("train-images-idx3-ubyte.gz"), DataFormat::Mnist, 32, None).unwrap(),
    ] {
        assert_eq!(raw.len(), Some(1000));
        for i in (0..1000).step_by(37) {
            assert_eq!(image_of(&*raw, i), image_of(&*gz, i), "image {i}");
            assert_eq!(raw.label(i), gz.label(i));
        }
    }
}

#[test]
fn idx_without_a_labels_file_loads_unlabelled() {
    let dir = TempDir::new("nolabels");
    dir.write("train-images-idx3-ubyte", &idx_images(2, 2, 3, &[0, 255, 0, 255, 0, 255, 1, 2, 3, 4, 5, 6]));
    let ds = data::open(dir.path(), DataFormat::Auto, 2, None).unwrap();
    assert_eq!(ds.len(), Some(2));
    assert_eq!(ds.label(0), None);
}

#[test]
fn emnist_images_are_transposed_upright() {
    let dir = TempDir::new("emnist");
    // Stored column-major: pixel (row r, col c) of the upright image is byte c·3 + r.
    let stored: Vec<u8> = (0..9).map(|i| i * 20).collect();
    dir.write("emnist-letters-train-images-idx3-ubyte", &idx_images(1, 3, 3, &stored));
    // EMNIST letters numbers its classes from 1 ("a").
    dir.write("emnist-letters-train-labels-idx1-ubyte", &idx_labels(&[1]));
    let ds = data::open(dir.path(), DataFormat::Auto, 3, None).unwrap();
    assert_eq!(ds.label(0), Some(1));
    assert!(ds.describe().contains("EMNIST: transposed"), "{}", ds.describe());
    let img = image_of(&*ds, 0);
    for r in 0..3 {
        for c in 0..3 {
            assert_eq!(img[r * 3 + c], byte(stored[c * 3 + r]), "({r}, {c})");
        }
    }
}

// ---------------------------------------------------------------- idx errors

#[test]
fn idx_wrong_magic() {
    let dir = TempDir::new("magic");
    let mut bytes = idx_images(1, 2, 2, &[0; 4]);
    bytes[..4].copy_from_slice(&[0, 0, 0, 0]);
    let p = dir.write("train-images-idx3-ubyte", &bytes);
    let msg = open_err(&p, DataFormat::Mnist);
    assert_contains(&msg, &["train-images-idx3-ubyte: idx magic 0x00000000, expected 0x00000803 (images)"]);
    let any = data::parse_idx_bytes(&bytes, "x").unwrap_err().to_string();
    assert_eq!(any, "x: idx magic 0x00000000, expected 0x00000803 (images) or 0x00000801 (labels)");
    // The same through gzip.
    let p = dir.write("gz/train-images-idx3-ubyte.gz", &gzip(&bytes));
    assert_contains(&open_err(&p, DataFormat::Auto), &["idx magic 0x00000000"]);
}

#[test]
fn idx_labels_file_in_place_of_images() {
    let dir = TempDir::new("swapped");
    let p = dir.write("t", &idx_labels(&[1, 2]));
    assert_contains(
        &open_err(&p, DataFormat::Mnist),
        &["idx magic 0x00000801, expected 0x00000803 (images)"],
    );
    assert_contains(&open_err(&p, DataFormat::Auto), &["idx labels file"]);
}

#[test]
fn idx_truncated() {
    let dir = TempDir::new("trunc");
    let p = dir.write("train-images-idx3-ubyte", &idx_images(60000, 28, 28, &[7; 1200]));
    let msg = open_err(dir.path(), DataFormat::Auto);
    assert_contains(
        &msg,
        &[
            &p.display().to_string(),
            "truncated: header says 60000×28×28 = 47040000 bytes, file has 1200 after its 16-byte header",
        ],
    );
    let gz = dir.write("train-images-idx3-ubyte.gz", &gzip(&idx_images(60000, 28, 28, &[7; 1200])));
    std::fs::remove_file(&p).unwrap();
    assert_contains(
        &open_err(&gz, DataFormat::Auto),
        &["truncated: header says 60000×28×28 = 47040000 bytes, decompressed data has 1200"],
    );
}

#[test]
fn idx_huge_dims_in_a_tiny_file_are_refused_without_allocating() {
    // 4·10⁹ × 65535 × 65535 bytes claimed by a 20-byte file.
    let bytes = idx_images(u32::MAX, u16::MAX as u32, u16::MAX as u32, &[1, 2, 3, 4]);
    let msg = data::parse_idx_images(&bytes, "huge").unwrap_err().to_string();
    assert_contains(&msg, &["huge: truncated", "file has 4 after"]);
    let msg = data::parse_idx_images(&gzip(&bytes), "huge.gz").unwrap_err().to_string();
    assert_contains(&msg, &["huge.gz: truncated", "decompressed data has 4 after"]);
}

#[test]
fn idx_trailing_bytes() {
    let dir = TempDir::new("trailing");
    dir.write("train-images-idx3-ubyte", &idx_images(2, 2, 2, &[9; 13]));
    assert_contains(
        &open_err(dir.path(), DataFormat::Auto),
        &["trailing data: header says 2×2×2 = 8 bytes, file has 13 after its 16-byte header"],
    );
}

#[test]
fn idx_dims_that_disagree_with_the_size() {
    // 3 images of 28×28 written, header claims 30×30 rows/cols.
    let dir = TempDir::new("dims");
    dir.write("train-images-idx3-ubyte", &idx_images(3, 30, 30, &[1; 3 * 28 * 28]));
    assert_contains(&open_err(dir.path(), DataFormat::Auto), &["3×30×30 = 2700 bytes, file has 2352"]);
    dir.write("train-images-idx3-ubyte", &idx_images(3, 0, 28, &[]));
    assert_contains(&open_err(dir.path(), DataFormat::Auto), &["idx dimension rows is 0"]);
    dir.write("train-images-idx3-ubyte", &[0, 0, 8, 3, 0, 0]);
    assert_contains(&open_err(dir.path(), DataFormat::Auto), &["shorter than the 16-byte idx header"]);
}

#[test]
fn idx_label_count_mismatch() {
    let dir = TempDir::new("labelcount");
    dir.write("train-images-idx3-ubyte.gz", &gzip(&idx_images(3, 2, 2, &[0; 12])));
    dir.write("train-labels-idx1-ubyte.gz", &gzip(&idx_labels(&[1, 2])));
    assert_contains(
        &open_err(dir.path(), DataFormat::Auto),
        &["train-labels-idx1-ubyte.gz: 2 labels, but ", "train-images-idx3-ubyte.gz has 3 images"],
    );
}

/// Labels must number the classes densely to be used: one stray label of 200 among 0..=9 would
/// make a 201-class conditional model. Such labels are left unused, the description saying
/// why (the images still train unconditionally). EMNIST letters' 1..=26 (class 0 unused) is
/// accepted.
#[test]
fn idx_labels_with_classes_left_empty_are_not_used() {
    let dir = TempDir::new("sparselabels");
    let images = idx_images(12, 2, 2, &[0; 48]);
    let open_with = |labels: &[u8]| {
        let labels = idx_labels(labels);
        data::idx_dataset_from_bytes(&images, "imgs", Some((&labels, "labs")), 2, None)
    };
    let mut stray: Vec<u8> = (0..10).chain([3]).collect();
    stray.insert(4, 200);
    let unused = |labels: &[u8]| {
        let ds = open_with(labels).expect("sparse labels do not stop the images");
        assert_eq!(data::class_count(&*ds), None, "{labels:?}");
        assert_eq!(ds.label(0), None);
        ds.describe()
    };
    assert_contains(
        &unused(&stray),
        &[
            "labels unused: labs: label 200 (image 4) makes 201 classes",
            "190 of them have no image (the first: class 10)",
        ],
    );
    assert_contains(
        &unused(&[0, 1, 1, 3, 0, 1, 3, 3, 0, 0, 1, 1]),
        &["label 3 (image 3) makes 4 classes, but 1 of them has no image (the first: class 2)"],
    );

    let dense = open_with(&[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]).unwrap();
    assert_eq!(data::class_count(&*dense), Some(6));
    assert_contains(&dense.describe(), &["with labels (6 classes)"]);
    let from_one = open_with(&[1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(data::class_count(&*from_one), Some(7), "EMNIST letters: class 0 unused");

    // Read from files, the description names the labels file.
    dir.write("train-images-idx3-ubyte", &images);
    let labels = dir.write("train-labels-idx1-ubyte", &idx_labels(&stray));
    let ds = data::open(dir.path(), DataFormat::Auto, 2, None).unwrap();
    assert_contains(&ds.describe(), &[&format!("{}: label 200", labels.display())]);
}

#[test]
fn idx_corrupt_gzip() {
    let dir = TempDir::new("corruptgz");
    let mut gz = gzip(&idx_images(3, 2, 2, &[0; 12]));
    let n = gz.len();
    gz[12..n - 8].iter_mut().for_each(|b| *b ^= 0x5a);
    dir.write("train-images-idx3-ubyte.gz", &gz);
    let msg = open_err(dir.path(), DataFormat::Auto);
    assert!(msg.contains("train-images-idx3-ubyte.gz: "), "{msg}");
}

// ---------------------------------------------------------------- CIFAR-10

fn cifar_pixel(record: usize, c: usize, y: usize, x: usize) -> u8 {
    ((record * 50 + c * 80 + y * 3 + x) % 256) as u8
}

fn cifar_records(labels: &[u8], first_record: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for (r, &l) in labels.iter().enumerate() {
        v.push(l);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    v.push(cifar_pixel(first_record + r, c, y, x));
                }
            }
        }
    }
    v
}

#[test]
fn cifar_two_records_round_trip() {
    let dir = TempDir::new("cifar");
    let p = dir.write("one.bin", &cifar_records(&[3, 7], 0));
    let ds = data::open(&p, DataFormat::Auto, 32, None).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.image_size()), (Some(2), 3, 32));
    assert_eq!((ds.label(0), ds.label(1)), (Some(3), Some(7)));
    for r in 0..2 {
        let img = image_of(&*ds, r);
        for (c, y, x) in [(0, 0, 0), (1, 5, 7), (2, 31, 31), (0, 31, 0), (2, 0, 31)] {
            assert_eq!(img[c * 1024 + y * 32 + x], byte(cifar_pixel(r, c, y, x)), "r{r} c{c} y{y} x{x}");
        }
    }
    // Greyscale: BT.601 luma of the planes.
    let grey = data::open(&p, DataFormat::Cifar10, 32, Some(1)).unwrap();
    let luma = |r, y, x| {
        // PIL's convert("L") fixed point for 0.299 R + 0.587 G + 0.114 B.
        let [rr, gg, bb] = [0, 1, 2].map(|c| cifar_pixel(r, c, y, x) as u32);
        ((rr * 19595 + gg * 38470 + bb * 7471 + 0x8000) >> 16) as u8
    };
    assert_eq!(image_of(&*grey, 1)[3 * 32 + 4], byte(luma(1, 3, 4)));
    // Resized.
    assert_eq!(image_of(&*data::open(&p, DataFormat::Cifar10, 16, None).unwrap(), 0).len(), 3 * 16 * 16);
}

#[test]
fn cifar_directory_reads_batches_in_numeric_order() {
    let dir = TempDir::new("cifardir");
    dir.write("data_batch_10.bin", &cifar_records(&[9], 2));
    dir.write("data_batch_2.bin", &cifar_records(&[1, 2], 0));
    dir.write("test_batch.bin", &cifar_records(&[5], 7));
    dir.write("readme.html", b"<html>");
    let ds = data::open(dir.path(), DataFormat::Auto, 32, None).unwrap();
    assert_eq!(ds.len(), Some(3));
    assert_eq!((0..3).map(|i| ds.label(i).unwrap()).collect::<Vec<_>>(), vec![1, 2, 9]);
    assert_eq!(image_of(&*ds, 2)[0], byte(cifar_pixel(2, 0, 0, 0)));
    assert_contains(&ds.describe(), &["CIFAR-10 binary", "3 images"]);
}

#[test]
fn cifar_size_not_a_multiple_of_3073() {
    let dir = TempDir::new("cifarsize");
    let mut bytes = cifar_records(&[1; 10], 0);
    bytes.truncate(30730 - 3073 + 3072);
    let p = dir.write("data_batch_1.bin", &bytes);
    assert_contains(
        &open_err(dir.path(), DataFormat::Auto),
        &[&format!("{}: size 30729 is not a multiple of 3073 bytes (CIFAR-10 record", p.display())],
    );
    assert_contains(&open_err(&p, DataFormat::Cifar10), &["size 30729 is not a multiple of 3073"]);
    let mut bad_label = cifar_records(&[1, 2], 0);
    bad_label[3073] = 42;
    let p = dir.write("data_batch_1.bin", &bad_label);
    assert_contains(&open_err(&p, DataFormat::Cifar10), &["record 1 has label 42, expected 0..=9"]);
}

// ---------------------------------------------------------------- folders

/// A palette (indexed-colour) PNG, written by hand since the `image` crate only reads them.
fn palette_png(w: u32, h: u32, palette: &[[u8; 3]], index_of: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]); // 8-bit, palette, deflate, adaptive, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"PLTE", &palette.concat());
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        raw.extend((0..w).map(|x| index_of(x, y)));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn write_mixed_folder(dir: &TempDir) {
    let p = dir.path();
    std::fs::create_dir_all(p.join("sub/deeper")).unwrap();
    // Sorted order: a_grey.png, b_red.png, c_rgba.png, d_palette.png, e_grey16.png, sub/deeper/f.JPG, sub/g.jpeg
    image::GrayImage::from_pixel(20, 30, image::Luma([200])).save(p.join("a_grey.png")).unwrap();
    image::RgbImage::from_pixel(40, 40, image::Rgb([255, 0, 0])).save(p.join("b_red.png")).unwrap();
    image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 0, 255, 128])).save(p.join("c_rgba.png")).unwrap();
    dir.write("d_palette.png", &palette_png(12, 12, &[[0, 255, 0], [0, 0, 0]], |_, _| 0));
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(8, 8, image::Luma([65535]))
        .save(p.join("e_grey16.png"))
        .unwrap();
    let jpeg = |path: PathBuf, w, h| {
        let img = image::RgbImage::from_fn(w, h, |x, _| image::Rgb([(x * 4) as u8, 128, 60]));
        img.save_with_format(path, image::ImageFormat::Jpeg).unwrap();
    };
    jpeg(p.join("sub/deeper/f.JPG"), 50, 20);
    jpeg(p.join("sub/g.jpeg"), 17, 33);
    dir.write("notes.txt", b"not an image");
}

#[test]
fn folder_with_mixed_grey_rgb_png_and_jpeg_loads_at_the_requested_size() {
    let dir = TempDir::new("folder");
    write_mixed_folder(&dir);
    let ds = data::open(dir.path(), DataFormat::Auto, 16, None).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.image_size()), (Some(7), 3, 16));
    assert_contains(&ds.describe(), &["image folder", "7 images (5 colour, 2 greyscale)"]);
    let px = |i: usize, c: usize| image_of(&*ds, i)[c * 256 + 8 * 16 + 8];
    assert_eq!([px(0, 0), px(0, 1), px(0, 2)], [byte(200); 3], "grey replicated");
    assert_eq!([px(1, 0), px(1, 1), px(1, 2)], [1.0, -1.0, -1.0], "red");
    assert_eq!([px(2, 0), px(2, 2)], [-1.0, 1.0], "RGBA: alpha dropped");
    assert_eq!([px(3, 0), px(3, 1), px(3, 2)], [-1.0, 1.0, -1.0], "palette green");
    assert_eq!(px(4, 0), 1.0, "16-bit white");
    assert!((px(5, 1) - byte(128)).abs() < 0.05, "jpeg green ~128: {}", px(5, 1));
    for i in 0..7 {
        assert!(image_of(&*ds, i).iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    assert_eq!(ds.label(0), None);

    let grey = data::open(dir.path(), DataFormat::Folder, 8, Some(1)).unwrap();
    assert_eq!((grey.channels(), grey.image_size()), (1, 8));
    assert_eq!(image_of(&*grey, 1)[0], byte(76), "BT.601 luma of pure red");
    assert_eq!(image_of(&*grey, 0)[0], byte(200));
}

/// Laid out as ImageFolder (every image in a subfolder, two or more of them), a folder is
/// labelled by its first subfolder in sorted order; an image at the top, or one subfolder
/// alone, leaves it unlabelled.
#[test]
fn image_folder_subfolders_are_its_classes() {
    let dir = TempDir::new("classfolder");
    let p = dir.path();
    for (i, path) in
        ["cats/b.png", "dogs/a.png", "cats/a.png", "birds/deep/er/x.png", "dogs/z.png"].iter().enumerate()
    {
        std::fs::create_dir_all(p.join(path).parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([10 * i as u8])).save(p.join(path)).unwrap();
    }
    let ds = data::open(p, DataFormat::Folder, 4, None).unwrap();
    // Sorted paths: birds/deep/er/x, cats/a, cats/b, dogs/a, dogs/z.
    assert_eq!((0..5).map(|i| ds.label(i)).collect::<Vec<_>>(), [0, 1, 1, 2, 2].map(Some));
    assert_eq!(image_of(&*ds, 1)[0], byte(20), "cats/a.png is image 1");
    assert_eq!(data::class_count(&*ds), Some(3));
    assert_contains(&ds.describe(), &["in 3 classes by subfolder (0 birds, 1 cats, 2 dogs)"]);

    image::GrayImage::from_pixel(4, 4, image::Luma([0])).save(p.join("top.png")).unwrap();
    let ds = data::open(p, DataFormat::Folder, 4, None).unwrap();
    assert_eq!((ds.label(0), data::class_count(&*ds)), (None, None), "an image outside every class");

    let one = TempDir::new("oneclass");
    std::fs::create_dir_all(one.path().join("only")).unwrap();
    image::GrayImage::from_pixel(4, 4, image::Luma([0])).save(one.path().join("only/a.png")).unwrap();
    assert_eq!(data::open(one.path(), DataFormat::Folder, 4, None).unwrap().label(0), None);
}

/// Labels are bytes: a folder of 257 class subfolders is left unlabelled, and its description
/// (which `train --conditional` quotes) says why; 256 still label.
#[test]
fn image_folder_with_more_than_256_class_subfolders_says_so() {
    let dir = TempDir::new("classes257");
    let mut png = Vec::new();
    image::GrayImage::from_pixel(1, 1, image::Luma([7]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    for class in 0..256 {
        dir.write(&format!("c{class:03}/a.png"), &png);
    }
    let ds = data::open(dir.path(), DataFormat::Folder, 1, None).unwrap();
    assert_eq!(data::class_count(&*ds), Some(256));
    dir.write("c256/a.png", &png);
    let ds = data::open(dir.path(), DataFormat::Folder, 1, None).unwrap();
    assert_eq!(data::class_count(&*ds), None);
    assert_contains(&ds.describe(), &["unlabelled: 257 class subfolders, at most 256 are supported"]);
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo").success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A FIFO given as the data is refused by name instead of blocking in open() for a writer that
/// never comes; one named like an image inside a folder is not an image and is skipped.
#[test]
fn a_fifo_is_refused_as_data_and_skipped_in_a_folder() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path().join("p.png");
    mkfifo(&fifo);
    // On a thread, so that a hang fails the test instead of stalling it.
    let (send, receive) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || send.send(open_err(&path, DataFormat::Auto)).unwrap());
    let msg = receive.recv_timeout(std::time::Duration::from_secs(20)).expect("open blocked on the FIFO");
    assert_eq!(
        msg,
        format!("{}: is a named pipe (FIFO), expected a regular dataset file or a directory", fifo.display())
    );

    image::GrayImage::from_pixel(4, 4, image::Luma([9])).save(dir.path().join("real.png")).unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        send.send(data::open(&path, DataFormat::Auto, 4, None).map(|d| d.len())).unwrap()
    });
    let len = receive.recv_timeout(std::time::Duration::from_secs(20)).expect("the folder scan blocked");
    assert_eq!(len.unwrap(), Some(1), "the FIFO is not an image");
}

/// The scan follows directory links, but not one to the dataset folder or above it (`..`),
/// which would take it out of the dataset; a link to a folder elsewhere is followed.
#[test]
fn folder_scan_does_not_follow_links_out_through_its_parents() {
    let outer = TempDir::new("linkscan");
    let (data_dir, elsewhere) = (outer.path().join("data"), outer.path().join("elsewhere"));
    std::fs::create_dir_all(data_dir.join("sub")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let save = |p: PathBuf| image::GrayImage::from_pixel(4, 4, image::Luma([1])).save(p).unwrap();
    save(data_dir.join("a.png"));
    save(data_dir.join("sub/b.png"));
    save(outer.path().join("beside.png")); // beside the dataset, reached only through `..`
    save(elsewhere.join("c.png"));
    std::os::unix::fs::symlink("..", data_dir.join("up")).unwrap();
    std::os::unix::fs::symlink(".", data_dir.join("self")).unwrap();
    std::os::unix::fs::symlink("../..", data_dir.join("sub/upup")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, data_dir.join("linked")).unwrap();
    let ds = data::open(&data_dir, DataFormat::Folder, 4, None).unwrap();
    // a.png, linked/c.png and sub/b.png: nothing through up/, self/ or sub/upup/.
    assert_eq!(ds.len(), Some(3), "{}", ds.describe());
}

#[test]
fn all_grey_folder_is_one_channel() {
    let dir = TempDir::new("greyfolder");
    image::GrayImage::from_pixel(20, 30, image::Luma([10])).save(dir.path().join("x.png")).unwrap();
    image::GrayImage::from_pixel(64, 64, image::Luma([250])).save(dir.path().join("y.PNG")).unwrap();
    let ds = data::open(dir.path(), DataFormat::Auto, 32, None).unwrap();
    assert_eq!((ds.len(), ds.channels()), (Some(2), 1));
    assert!(image_of(&*ds, 1).iter().all(|&v| v == byte(250)));
}

#[test]
fn empty_folder_unreadable_image_and_missing_path() {
    let dir = TempDir::new("badfolder");
    std::fs::create_dir_all(dir.path().join("empty/inner")).unwrap();
    dir.write("empty/readme.txt", b"hi");
    let empty = dir.path().join("empty");
    assert_contains(
        &open_err(&empty, DataFormat::Folder),
        &["no PNG/JPEG images found (searched recursively"],
    );
    assert_contains(&open_err(&empty, DataFormat::Auto), &["no dataset found", "data_batch_*.bin"]);

    image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])).save(dir.path().join("ok.png")).unwrap();
    let bad = dir.write("sub/a.png", b"this is not a png");
    let msg = open_err(dir.path(), DataFormat::Auto);
    assert!(msg.starts_with(&format!("{}: cannot decode: ", bad.display())), "{msg}");
    let bad2 = dir.write("sub/b.jpg", b"nor is this a jpeg");
    let bad3 = dir.write("sub/c.png", b"");
    let msg = open_err(dir.path(), DataFormat::Auto);
    assert!(msg.starts_with(&format!("{}: cannot decode: ", bad.display())), "{msg}");
    assert!(msg.ends_with(" (and 2 more unreadable images)"), "{msg}");
    std::fs::remove_file(&bad2).unwrap();
    std::fs::remove_file(&bad3).unwrap();
    // A PNG cut short is named too.
    std::fs::remove_file(&bad).unwrap();
    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let cut = dir.write("sub/cut.png", &png[..png.len() / 2]);
    assert_contains(
        &open_err(dir.path(), DataFormat::Folder),
        &[&format!("{}: cannot decode", cut.display())],
    );

    let missing = dir.path().join("nope");
    assert_eq!(
        open_err(&missing, DataFormat::Auto),
        format!("{}: no such file or directory", missing.display())
    );
    assert_contains(&open_err(&missing, DataFormat::Mnist), &["no such file or directory"]);
}

#[test]
fn wrong_explicit_format_and_bad_parameters() {
    let fixture = Path::new(FIXTURE);
    assert_contains(&open_err(fixture, DataFormat::Cifar10), &["no CIFAR-10 binary batches"]);
    assert_contains(&open_err(fixture, DataFormat::Folder), &["no PNG/JPEG images found"]);
    let dir = TempDir::new("params");
    assert_contains(&open_err(dir.path(), DataFormat::Mnist), &["no MNIST-family idx images file"]);
    let err = |size, ch| data::open(fixture, DataFormat::Auto, size, ch).err().unwrap().to_string();
    assert_eq!(err(0, None), "image size 0 is out of range, expected 1..=8192");
    assert_eq!(err(100_000, None), "image size 100000 is out of range, expected 1..=8192");
    assert_eq!(err(32, Some(2)), "channels 2 is not supported, expected 1 (greyscale) or 3 (RGB)");
    let junk = dir.write("junk.dat", b"hello world");
    assert_contains(
        &open_err(&junk, DataFormat::Auto),
        &[
            "junk.dat: not a recognised dataset file: starts with 0x68656c6c",
            "size 11 is not a multiple of 3073",
        ],
    );
    // A .bin file goes to the CIFAR reader, which says what is wrong with its size.
    let bin = dir.write("odd.bin", &[0; 3000]);
    assert_contains(&open_err(&bin, DataFormat::Auto), &["odd.bin: size 3000 is not a multiple of 3073"]);
}

// ---------------------------------------------------------------- synthetic

#[test]
fn synthetic_is_a_function_of_seed_and_index() {
    let a = data::synthetic(7, 64);
    let b = data::synthetic(7, 64);
    assert_eq!((a.len(), a.channels(), a.image_size()), (None, 3, 64));
    assert_eq!(image_of(&*a, 12345), image_of(&*b, 12345));
    assert_ne!(image_of(&*a, 0), image_of(&*a, 1));
    assert_ne!(image_of(&*a, 5), image_of(&*data::synthetic(8, 64), 5));
    assert_eq!(a.label(3), None);
    assert!(a.describe().contains("synthetic"));
}

#[test]
fn synthetic_has_a_dark_background_and_bright_shapes() {
    let ds = data::synthetic(1, 64);
    let mut dark_share = 0f64;
    for i in 0..200 {
        let img = image_of(&*ds, i);
        assert!(img.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Brightest pixel (max over channels) and the share of dark pixels.
        let plane = 64 * 64;
        let value = |p: usize| (0..3).map(|c| img[c * plane + p]).fold(f32::MIN, f32::max);
        let max = (0..plane).map(value).fold(f32::MIN, f32::max);
        assert!(max > 0.5, "image {i}: brightest channel {max}");
        let dark = (0..plane).filter(|&p| value(p) < -0.6).count();
        assert!(dark > plane / 4, "image {i}: only {dark} dark pixels");
        // Some anti-aliased pixels: values strictly between background and shape.
        dark_share += dark as f64 / plane as f64;
    }
    let mean_dark = dark_share / 200.0;
    assert!((0.5..0.97).contains(&mean_dark), "mean dark share {mean_dark}");
}

#[test]
fn synthetic_edges_are_anti_aliased() {
    let ds = data::synthetic(3, 64);
    let img = image_of(&*ds, 0);
    let bg = img[0];
    let mut distinct = img[..4096].to_vec();
    distinct.sort_by(f32::total_cmp);
    distinct.dedup();
    assert!(distinct.len() > 4, "only {} levels in the red plane (bg {bg})", distinct.len());
}

#[test]
fn synthetic_grey_is_the_luma_of_rgb() {
    let rgb = Synthetic::new(5, 32);
    let grey = Synthetic::new(5, 32).with_channels(1);
    assert_eq!(grey.channels(), 1);
    let (c, g) = (image_of(&rgb, 9), image_of(&grey, 9));
    for p in [0, 100, 517, 1023] {
        let y = 0.299 * c[p] + 0.587 * c[1024 + p] + 0.114 * c[2048 + p];
        assert!((g[p] - y).abs() < 1e-4, "pixel {p}: {} vs {y}", g[p]);
    }
}

#[test]
fn synthetic_batches_do_not_depend_on_the_thread_count() {
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut loader = Loader::new(Arc::from(data::synthetic(11, 32)), 64, 4).unwrap();
            let mut out = Vec::new();
            let mut all = Vec::new();
            for _ in 0..3 {
                loader.next_batch(&mut out);
                all.extend_from_slice(&out);
            }
            all
        })
    };
    let one = run(1);
    assert_eq!(one.len(), 3 * 64 * 3 * 32 * 32);
    assert!(one == run(2), "1 vs 2 threads differ");
}

// ---------------------------------------------------------------- loader

/// Image `i` is the constant (i as f32), so a batch reveals its indices.
struct Indexed(usize);

impl Dataset for Indexed {
    fn len(&self) -> Option<usize> {
        Some(self.0)
    }
    fn channels(&self) -> usize {
        1
    }
    fn image_size(&self) -> usize {
        2
    }
    fn image(&self, index: usize, out: &mut [f32]) {
        assert!(index < self.0);
        out.fill(index as f32);
    }
    fn label(&self, _: usize) -> Option<u8> {
        None
    }
    fn describe(&self) -> String {
        format!("{} indexed images", self.0)
    }
}

fn batch_indices(loader: &mut Loader) -> (BatchInfo, Vec<usize>) {
    let mut out = Vec::new();
    let info = loader.next_batch(&mut out);
    assert_eq!(out.len(), loader.batch_len());
    (info, out.chunks(4).map(|c| c[0] as usize).collect())
}

#[test]
fn each_epoch_is_a_permutation_and_epochs_differ() {
    let mut loader = Loader::new(Arc::new(Indexed(105)), 10, 42).unwrap();
    assert_eq!(loader.batches_per_epoch(), 10);
    let mut epochs = Vec::new();
    for epoch in 0..3u64 {
        let mut seen = Vec::new();
        for step in 0..10u64 {
            let (info, idx) = batch_indices(&mut loader);
            assert_eq!(info, BatchInfo { epoch, step_in_epoch: step });
            seen.extend(idx);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "100 distinct indices in epoch {epoch} (5 dropped)");
        assert!(sorted.iter().all(|&i| i < 105));
        epochs.push(seen);
    }
    assert_ne!(epochs[0], epochs[1]);
    assert_ne!(epochs[1], epochs[2]);
    assert_eq!(loader.state(), LoaderState { epoch: 3, cursor: 0 });

    // Exactly once each when the batch divides the dataset.
    let mut loader = Loader::new(Arc::new(Indexed(100)), 20, 1).unwrap();
    let mut seen: Vec<usize> = (0..5).flat_map(|_| batch_indices(&mut loader).1).collect();
    seen.sort();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
}

#[test]
fn the_order_depends_on_seed_and_epoch_only() {
    let first = |seed| batch_indices(&mut Loader::new(Arc::new(Indexed(1000)), 50, seed).unwrap()).1;
    assert_eq!(first(9), first(9));
    assert_ne!(first(9), first(10));
    // Epoch 2 reached by playing or by restoring gives the same order.
    let mut played = Loader::new(Arc::new(Indexed(1000)), 50, 9).unwrap();
    for _ in 0..40 {
        batch_indices(&mut played);
    }
    let mut restored =
        Loader::restore(Arc::new(Indexed(1000)), 50, 9, LoaderState { epoch: 2, cursor: 0 }).unwrap();
    assert_eq!(batch_indices(&mut played), batch_indices(&mut restored));
}

#[test]
fn restore_from_mid_epoch_reproduces_the_next_batches() {
    for dataset in [Arc::new(Indexed(250)) as Arc<dyn Dataset>, Arc::from(data::synthetic(2, 16))] {
        let mut a = Loader::new(dataset.clone(), 32, 77).unwrap();
        let mut out = Vec::new();
        for _ in 0..5 {
            a.next_batch(&mut out);
        }
        let state = a.state();
        assert_eq!(state, LoaderState { epoch: 0, cursor: 160 });
        let json = serde_json::to_string(&state).unwrap();
        let state: LoaderState = serde_json::from_str(&json).unwrap();
        let mut b = Loader::restore(dataset.clone(), 32, 77, state).unwrap();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let (ia, ib) = (a.next_batch(&mut oa), b.next_batch(&mut ob));
            assert_eq!(ia, ib);
            assert!(oa == ob, "batch {ia:?} differs after restore");
        }
        assert_eq!(a.state(), b.state());
    }
}

#[test]
fn synthetic_loader_reads_consecutive_indices_in_nominal_epochs() {
    let ds: Arc<dyn Dataset> = Arc::from(data::synthetic(3, 16));
    let mut loader = Loader::new(ds.clone(), 128, 0).unwrap();
    assert_eq!(loader.batches_per_epoch(), SYNTHETIC_EPOCH_IMAGES / 128);
    assert_eq!(loader.peek_indices(), (0..128).collect::<Vec<_>>());
    let mut out = Vec::new();
    loader.next_batch(&mut out);
    assert_eq!(&out[16 * 16 * 3..2 * 16 * 16 * 3], image_of(&*ds, 1).as_slice());
    let last = loader.batches_per_epoch() as u64 - 1;
    let mut l = Loader::restore(ds, 128, 0, LoaderState { epoch: 0, cursor: last * 128 }).unwrap();
    assert_eq!(l.next_batch(&mut out), BatchInfo { epoch: 0, step_in_epoch: last });
    assert_eq!(l.state(), LoaderState { epoch: 1, cursor: 0 });
    assert_eq!(l.peek_indices()[0], (last as usize + 1) * 128, "no gap between epochs");
}

#[test]
fn loader_errors() {
    let msg = |r: Result<Loader, DataError>| r.err().expect("an error").to_string();
    // The flag and the dataset (whose description names its path) both named.
    assert_eq!(
        msg(Loader::new(Arc::new(Indexed(100)), 256, 0)),
        "--batch-size 256 is larger than the dataset, which has 100 images: 100 indexed images"
    );
    assert_contains(&msg(Loader::new(Arc::new(Indexed(1)), 4, 0)), &["which has 1 image:"]);
    assert_eq!(
        msg(Loader::new(Arc::new(Indexed(100)), 0, 0)),
        "batch size 0: a batch needs at least one image"
    );
    assert!(Loader::new(Arc::new(Indexed(100)), 100, 0).is_ok());
    let bad = |cursor| msg(Loader::restore(Arc::new(Indexed(100)), 10, 0, LoaderState { epoch: 0, cursor }));
    assert_contains(&bad(15), &["loader state cursor 15 does not fit", "multiple of the batch size 10"]);
    assert_contains(&bad(100), &["cursor 100 does not fit"]);
    assert_contains(&bad(u64::MAX), &["does not fit"]);
}

#[test]
fn the_fixture_trains_through_the_loader() {
    let ds: Arc<dyn Dataset> = Arc::from(data::open(Path::new(FIXTURE), DataFormat::Auto, 32, None).unwrap());
    let mut loader = Loader::new(ds, 128, 0).unwrap();
    assert_eq!(loader.batches_per_epoch(), 7);
    let mut out = Vec::new();
    let info = loader.next_batch(&mut out);
    assert_eq!(info, BatchInfo { epoch: 0, step_in_epoch: 0 });
    assert_eq!(out.len(), 128 * 32 * 32);
    assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
}

/// `with_mirror`: every image of a batch is its dataset image or that image's left-right
/// mirror, both happen, the choice comes from the seed, epoch and position alone (a restored
/// loader flips the same images), and without it nothing is flipped.
#[test]
fn mirror_flips_about_half_the_images_and_resumes_the_same() {
    let dataset: Arc<dyn Dataset> = Arc::from(data::synthetic(3, 16));
    let (side, per) = (16, 3 * 16 * 16);
    let mirror =
        |img: &[f32]| -> Vec<f32> { img.chunks(side).flat_map(|row| row.iter().rev().copied()).collect() };
    let mut loader = Loader::new(dataset.clone(), 64, 5).unwrap().with_mirror(true);
    let mut plain = Loader::new(dataset.clone(), 64, 5).unwrap();
    let (mut flipped, mut kept) = (0, 0);
    let (mut out, mut out_plain) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let indices = loader.peek_indices();
        assert_eq!(indices, plain.peek_indices(), "mirroring leaves the order alone");
        loader.next_batch(&mut out);
        plain.next_batch(&mut out_plain);
        for ((img, img_plain), &i) in out.chunks(per).zip(out_plain.chunks(per)).zip(&indices) {
            let mut original = vec![0.0; per];
            dataset.image(i, &mut original);
            assert_eq!(img_plain, &original[..], "without --mirror nothing is flipped");
            let mirrored = mirror(&original);
            if mirrored == original {
                continue; // a symmetric image says nothing
            }
            if img == &mirrored[..] {
                flipped += 1;
            } else {
                assert_eq!(img, &original[..], "image {i} is neither itself nor its mirror");
                kept += 1;
            }
        }
    }
    let n = flipped + kept;
    assert!(n > 100 && flipped > n / 3 && kept > n / 3, "{flipped} flipped, {kept} kept");
    // Restored mid-run, the loader flips the same images.
    let state = loader.state();
    let mut next = Vec::new();
    loader.next_batch(&mut next);
    let mut restored = Loader::restore(dataset, 64, 5, state).unwrap().with_mirror(true);
    let mut again = Vec::new();
    restored.next_batch(&mut again);
    assert_eq!(next, again);
}
