//! Contact sheets: images with their captions in a grid, written as one PNG.

use std::path::{Path, PathBuf};

use autocaption_data::Split;
use autocaption_io::write_atomic;
use autocaption_viz::{contact_sheet, SheetItem, SheetOptions};
use image::DynamicImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{Error, Result};

/// An image that can go on a sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Shown as the cell's heading.
    pub name: String,
    /// The image file.
    pub path: PathBuf,
    /// Its captions.
    pub captions: Vec<String>,
}

/// The images of a dataset (or prepared directory) that can go on a sheet: those of `split`
/// (all where `None`) whose file was found, in order, or shuffled with `seed`. Also returns
/// how many images `split` holds, found or not.
pub fn pick_for_sheet(
    images: impl IntoIterator<Item = (String, Option<PathBuf>, Option<Split>, Vec<String>)>,
    split: Option<Split>,
    seed: Option<u64>,
) -> (Vec<Candidate>, usize) {
    let mut total = 0;
    let mut found = Vec::new();
    for (name, path, image_split, captions) in images {
        if split.is_some() && image_split != split {
            continue;
        }
        total += 1;
        if let Some(path) = path {
            found.push(Candidate {
                name,
                path,
                captions,
            });
        }
    }
    if let Some(seed) = seed {
        found.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    }
    (found, total)
}

/// What [`write_sheet`] drew.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetOutcome {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Images on the sheet.
    pub images: usize,
    /// Images that could not be decoded (skipped), with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Decodes an image as every command does (size limits, EXIF orientation) and scales it
/// down to fit a `thumb` square at once, so that only one full image is in memory.
fn open(path: &Path, thumb: u32) -> Result<DynamicImage, String> {
    let rgb = autocaption_vision::load_rgb(path).map_err(|e| e.to_string())?;
    let img = DynamicImage::ImageRgb8(rgb);
    Ok(if img.width() > thumb || img.height() > thumb {
        img.resize(thumb, thumb, image::imageops::FilterType::Triangle)
    } else {
        img
    })
}

/// What marks a PNG written by [`write_sheet`] (its `Software` text chunk), so that `show
/// --force` replaces only a sheet it drew.
pub const SHEET_SOFTWARE: &str = "autocaption show";

fn encode_png(sheet: &image::RgbImage) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut png_bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut png_bytes, sheet.width(), sheet.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.add_text_chunk("Software".into(), SHEET_SOFTWARE.into())?;
    let mut w = enc.write_header()?;
    w.write_image_data(sheet.as_raw())?;
    w.finish()?;
    Ok(png_bytes)
}

/// Decodes up to `count` of `found` (skipping any that fail), lays them out and writes the
/// PNG atomically.
pub fn write_sheet(
    found: Vec<Candidate>,
    count: usize,
    opts: SheetOptions,
    out: &Path,
) -> Result<SheetOutcome> {
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for c in found {
        if items.len() == count {
            break;
        }
        match open(&c.path, opts.thumb) {
            Ok(image) => items.push(SheetItem {
                image,
                title: c.name,
                captions: c.captions,
            }),
            Err(e) => skipped.push((c.path, e)),
        }
    }
    if items.is_empty() {
        return Err(Error::Invalid(format!(
            "no image could be decoded ({} tried; the first: {})",
            skipped.len(),
            skipped
                .first()
                .map_or(String::new(), |(_, why)| why.clone())
        )));
    }
    let sheet = contact_sheet(&items, opts).map_err(|e| Error::file(out, e))?;
    let png = encode_png(&sheet)
        .map_err(|e| Error::file(out, format!("cannot encode the contact sheet: {e}")))?;
    write_atomic(out, &png)?;
    Ok(SheetOutcome {
        width: sheet.width(),
        height: sheet.height(),
        images: items.len(),
        skipped,
    })
}
