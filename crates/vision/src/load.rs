//! Decoding images to RGB. JPEG goes through libjpeg-turbo's decoder (the `mozjpeg` crate),
//! which gives exactly the pixels PIL — and so Keras' `load_img` — gives (checked on the 105
//! real Flickr8k photos: all identical; the `image` crate's decoder differs by up to 3 levels).
//! Other formats go through the `image` crate. EXIF orientation is honoured (Keras does not).

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Largest image accepted, in pixels: PIL's decompression-bomb threshold.
pub const MAX_PIXELS: u64 = 89_478_485;

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not a decodable image.
    #[error("{path}: cannot decode: {message}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's complaint.
        message: String,
    },
    /// The image is larger than [`MAX_PIXELS`] (a decompression bomb, or absurd).
    #[error("{path}: {width}×{height} pixels is more than the limit of {limit}")]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
        /// The limit it broke.
        limit: u64,
    },
}

fn decode_err(path: &Path, message: impl ToString) -> ImageError {
    ImageError::Decode {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn check_size(path: &Path, width: u64, height: u64, limit: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(decode_err(path, "the image is empty"));
    }
    if width * height > limit {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit,
        });
    }
    Ok(())
}

/// True when a JPEG has its end-of-image marker after its last start-of-scan: libjpeg decodes
/// a cut-off file by filling the rest with grey (and only warns), where PIL refuses it. Inside
/// scan data a 0xFF byte is always followed by 0x00 or a restart marker, so `FF D9` there is
/// the real end, and an EXIF thumbnail's own end marker (before the main scan) does not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn decode_jpeg(path: &Path, bytes: &[u8], limit: u64) -> Result<RgbImage, ImageError> {
    if !jpeg_is_complete(bytes) {
        return Err(decode_err(
            path,
            "the JPEG data is truncated (no end-of-image marker after the last scan)",
        ));
    }
    // libjpeg reports errors by unwinding; the crate turns them into io::Error, and
    // catch_unwind is a second guard so that a corrupt file never takes the process down.
    let result = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = (d.width(), d.height());
        if (w as u64) * (h as u64) > limit || w == 0 || h == 0 {
            return Ok((w, h, Vec::new()));
        }
        let mut rgb = d.rgb()?;
        let px: Vec<[u8; 3]> = rgb.read_scanlines()?;
        rgb.finish()?;
        Ok((w, h, px.into_iter().flatten().collect()))
    });
    let (w, h, data) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(decode_err(path, e)),
        Err(_) => return Err(decode_err(path, "corrupt JPEG data")),
    };
    check_size(path, w as u64, h as u64, limit)?;
    if data.len() != w * h * 3 {
        return Err(decode_err(path, "truncated JPEG data"));
    }
    RgbImage::from_raw(w as u32, h as u32, data)
        .ok_or_else(|| decode_err(path, "truncated JPEG data"))
}

/// Decodes `path` to 8-bit RGB (greyscale replicated, alpha dropped, as PIL's
/// `convert("RGB")`), with its EXIF orientation applied.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = autocaption_io::read(path)?;
    decode_rgb(&bytes, path, MAX_PIXELS)
}

/// Decodes an image held in memory as [`load_rgb`] does; `name` names it in errors, and an
/// image of more than `max_pixels` pixels (at most [`MAX_PIXELS`]) is refused from its header,
/// before any pixel is decoded.
pub fn decode_rgb(bytes: &[u8], name: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let path = name;
    let format = image::guess_format(bytes).map_err(|e| decode_err(path, e))?;
    let reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let (w, h) = decoder.dimensions();
    check_size(path, w as u64, h as u64, max_pixels.min(MAX_PIXELS))?;
    let orientation = decoder.orientation().map_err(|e| decode_err(path, e))?;
    let rgb = if format == image::ImageFormat::Jpeg {
        match decode_jpeg(path, bytes, max_pixels.min(MAX_PIXELS)) {
            Ok(rgb) => rgb,
            Err(e) if !jpeg_is_complete(bytes) => return Err(e),
            // CMYK and other colour spaces libjpeg cannot turn into RGB.
            Err(ImageError::Decode { .. }) => DynamicImage::from_decoder(decoder)
                .map_err(|e| decode_err(path, e))?
                .to_rgb8(),
            Err(e) => return Err(e),
        }
    } else {
        DynamicImage::from_decoder(decoder)
            .map_err(|e| decode_err(path, e))?
            .to_rgb8()
    };
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}
