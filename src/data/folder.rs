//! A folder of PNG/JPEG images (CelebA, a photo collection, ...), searched recursively in sorted
//! order so that index `i` is the same image on every machine. Grey, RGB, RGBA, palette and 16-bit
//! images mix freely: each is converted to the target channels, never refused. Decoding runs in
//! parallel; the order is the sorted path order regardless.
//!
//! Laid out as torchvision's `ImageFolder` (`root/<class>/<image>`, every image in a
//! subfolder, at least two of them), the images are labelled by their first subfolder,
//! numbered in sorted name order, so `train --conditional` can train on them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::ImageReader;
use rayon::prelude::*;

use super::{DataError, Dataset, ImageSet, check_params, list_dir, resize};

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Every image file under `dir`, sorted by path. Only regular files count: a FIFO or device named
/// like an image would block or never end. Directory symlinks are followed, but each real
/// directory is visited once, and a link to a directory that holds the one being scanned (`..`,
/// the dataset folder itself, a folder above it) is not followed: it would lead the scan out of
/// the dataset and round in a loop.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let real = std::fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?;
    let mut seen = HashSet::from([real.clone()]);
    let mut out = Vec::new();
    walk_into(dir, &real, &real, &mut seen, &mut out)?;
    Ok(out)
}

/// Scans `dir`, whose canonical path is `real`, inside the dataset at canonical `root`.
fn walk_into(
    dir: &Path,
    real: &Path,
    root: &Path,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), DataError> {
    for p in list_dir(dir)? {
        if p.is_dir() {
            let target = std::fs::canonicalize(&p).map_err(|e| DataError::io(&p, e))?;
            if root.starts_with(&target) || real.starts_with(&target) || !seen.insert(target.clone()) {
                continue;
            }
            walk_into(&p, &target, root, seen, out)?;
        } else if p.is_file() && is_image_name(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// The most classes a folder's subfolders can label: labels are bytes.
const MAX_FOLDER_CLASSES: usize = 256;

/// ImageFolder's classes: each image's first subfolder under `dir`, numbered in sorted order.
enum SubfolderClasses {
    /// Not laid out as ImageFolder: an image outside every subfolder, or one subfolder alone.
    None,
    /// Each image's label, and the subfolders' names in label order.
    Labels(Vec<u8>, Vec<String>),
    /// Laid out as ImageFolder, but with more subfolders than [`MAX_FOLDER_CLASSES`].
    TooMany(usize),
}

fn subfolder_classes(dir: &Path, files: &[PathBuf]) -> SubfolderClasses {
    let first: Option<Vec<String>> = files
        .iter()
        .map(|f| {
            let mut parts = f.strip_prefix(dir).ok()?.components();
            let class = parts.next()?.as_os_str().to_string_lossy().into_owned();
            parts.next().map(|_| class)
        })
        .collect();
    let Some(first) = first else { return SubfolderClasses::None };
    let mut names = first.clone();
    names.sort();
    names.dedup();
    match names.len() {
        0 | 1 => SubfolderClasses::None,
        n if n > MAX_FOLDER_CLASSES => SubfolderClasses::TooMany(n),
        _ => {
            let labels = first.iter().map(|c| names.binary_search(c).expect("a listed name") as u8).collect();
            SubfolderClasses::Labels(labels, names)
        }
    }
}

pub(crate) fn has_images(dir: &Path) -> Result<bool, DataError> {
    Ok(!walk(dir)?.is_empty())
}

/// One decoded image at the target size: planar pixels, and whether the source had colour.
struct Decoded {
    pixels: Vec<u8>,
    has_color: bool,
}

fn decode_one(path: &Path, to_c: Option<usize>, size: usize) -> Result<Decoded, DataError> {
    let err =
        |reason: String| DataError::Decode { path: path.display().to_string(), reason, also: String::new() };
    let img = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| err(e.to_string()))?;
    let has_color = img.color().has_color();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(err(format!("image is {w}×{h}, expected at least 1×1")));
    }
    // Unknown target (None): keep RGB for now; an all-grey folder is reduced to one plane later.
    let pixels = match (to_c, has_color) {
        (Some(1), false) => resize::prepare_hwc(img.to_luma8().as_raw(), h, w, 1, 1, size),
        (Some(1), true) => resize::prepare_hwc(img.to_rgb8().as_raw(), h, w, 3, 1, size),
        _ => resize::prepare_hwc(img.to_rgb8().as_raw(), h, w, 3, 3, size),
    };
    Ok(Decoded { pixels, has_color })
}

pub(crate) fn open(
    dir: &Path,
    image_size: usize,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>, DataError> {
    check_params(image_size, channels)?;
    let files = if dir.is_dir() {
        walk(dir)?
    } else {
        return Err(DataError::WrongFormat {
            path: dir.display().to_string(),
            what: "is a file; the folder format expects a directory of PNG/JPEG images".into(),
        });
    };
    if files.is_empty() {
        return Err(DataError::NoImages { path: dir.display().to_string() });
    }
    let decoded: Vec<Result<Decoded, DataError>> =
        files.par_iter().map(|p| decode_one(p, channels, image_size)).collect();
    // The first failure in path order, so the message does not depend on thread timing; the
    // count of the others, so the user fixes them all in one go.
    let failures = decoded.iter().filter(|d| d.is_err()).count();
    if failures > 0 {
        let mut first = decoded.into_iter().find_map(Result::err).expect("a failure");
        if let DataError::Decode { also, .. } = &mut first
            && failures > 1
        {
            *also = format!(
                " (and {} more unreadable image{})",
                failures - 1,
                if failures > 2 { "s" } else { "" }
            );
        }
        return Err(first);
    }
    let decoded: Vec<Decoded> = decoded.into_iter().map(|d| d.expect("checked above")).collect();
    let any_color = decoded.iter().any(|d| d.has_color);
    let to_c = channels.unwrap_or(if any_color { 3 } else { 1 });
    let plane = image_size * image_size;
    let mut pixels = Vec::with_capacity(decoded.len() * to_c * plane);
    for d in &decoded {
        // Only the all-grey folder with channels unspecified needs reducing: R = G = B there.
        pixels.extend_from_slice(if d.pixels.len() == to_c * plane { &d.pixels } else { &d.pixels[..plane] });
    }
    let grey = decoded.len() - decoded.iter().filter(|d| d.has_color).count();
    let (labels, classes, unlabelled) = match subfolder_classes(dir, &files) {
        SubfolderClasses::Labels(labels, names) => {
            let shown: Vec<String> =
                names.iter().take(10).enumerate().map(|(i, n)| format!("{i} {n}")).collect();
            let more = if names.len() > 10 { ", ..." } else { "" };
            let classes = format!(" in {} classes by subfolder ({}{more})", names.len(), shown.join(", "));
            (Some(labels), classes, String::new())
        }
        // Said plainly, so that `--conditional` on it tells why the images have no labels.
        SubfolderClasses::TooMany(n) => (
            None,
            String::new(),
            format!("; unlabelled: {n} class subfolders, at most {MAX_FOLDER_CLASSES} are supported"),
        ),
        SubfolderClasses::None => (None, String::new(), String::new()),
    };
    let count = decoded.len();
    let description = format!(
        "image folder ({}): {count} image{} ({} colour, {grey} greyscale){classes} -> {to_c}×{image_size}×{image_size}{unlabelled}",
        dir.display(),
        if count == 1 { "" } else { "s" },
        count - grey,
    );
    Ok(Box::new(ImageSet::new(to_c, to_c, image_size, pixels, labels, description)))
}
