//! Turning an RGB image into network input.

use image::RgbImage;

use crate::Maps;

/// Keras' ResNet-50 channel means, BGR order (`resnet50.preprocess_input`, "caffe" mode).
const KERAS_BGR_MEAN: [f32; 3] = [103.939, 116.779, 123.68];

/// Source indices of PIL's NEAREST resize from `from` to `to` pixels. PIL steps an f64
/// coordinate by `from/to` starting at half a step and truncates; computing `(x + 0.5)·from/to`
/// directly differs for 16 of the input widths 1..1200 (checked against Pillow).
fn pil_nearest(from: u32, to: u32) -> Vec<usize> {
    let step = from as f64 / to as f64;
    let mut xx = step * 0.5;
    (0..to)
        .map(|_| {
            let i = (xx as usize).min(from as usize - 1);
            xx += step;
            i
        })
        .collect()
}

/// The seed's preprocessing: `load_img(target_size=(224, 224))` (PIL nearest-neighbour resize,
/// no aspect preservation) then `resnet50.preprocess_input` (RGB→BGR, subtract the channel
/// means, no scaling). Returns `[size, size, 3]` in BGR.
pub fn keras_preprocess(img: &RgbImage, size: u32) -> Vec<f32> {
    let xs = pil_nearest(img.width(), size);
    let ys = pil_nearest(img.height(), size);
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for &y in &ys {
        for &x in &xs {
            let p = img.get_pixel(x as u32, y as u32).0;
            out.push(p[2] as f32 - KERAS_BGR_MEAN[0]);
            out.push(p[1] as f32 - KERAS_BGR_MEAN[1]);
            out.push(p[0] as f32 - KERAS_BGR_MEAN[2]);
        }
    }
    out
}

/// ImageNet channel means and standard deviations, RGB (torchvision's `Normalize`).
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Pillow's fixed-point precision for 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's resampling weights along one axis for `from` → `to` pixels with the bilinear
/// (triangle) filter, widened by the scale when shrinking (antialiasing): for each output
/// pixel the first input pixel and the integer weights (`PRECISION_BITS` fractional bits).
/// Follows `precompute_coeffs` and `normalize_coeffs_8bpc` in Pillow's Resample.c
/// operation for operation, so the rounding is the same.
fn pil_bilinear_coeffs(from: usize, to: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = from as f64 / to as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    let ss = 1.0 / filterscale;
    (0..to)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(from as i64) - xmin;
            let mut w: Vec<f64> = (0..xmax)
                .map(|x| {
                    let t = (((x + xmin) as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            let one = (1u32 << PRECISION_BITS) as f64;
            let k = w
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (xmin as usize, k)
        })
        .collect()
}

/// Rounds a fixed-point sum to a byte as Pillow's `clip8` does.
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img.resize((w, h), Image.BILINEAR)` as Pillow does it for RGB: a horizontal pass over
/// the rows the vertical pass will read, rounded to bytes, then a vertical pass; a pass is
/// skipped when its size does not change.
fn pil_resize_bilinear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let (w, h) = (w as usize, h as usize);
    let vert = pil_bilinear_coeffs(ih, h);
    let half = 1i32 << (PRECISION_BITS - 1);
    let (mut src, mut sw, mut sh) = (img.as_raw().clone(), iw, ih);
    let mut row_offset = 0;
    if w != iw {
        // Only the rows the vertical pass uses: from the first output row's first input row
        // to the last output row's last.
        let first = vert[0].0;
        let last = vert[h - 1].0 + vert[h - 1].1.len();
        let horiz = pil_bilinear_coeffs(iw, w);
        let mut out = vec![0u8; (last - first) * w * 3];
        for (y, dst) in out.chunks_exact_mut(w * 3).enumerate() {
            let row = &src[(first + y) * iw * 3..(first + y + 1) * iw * 3];
            for (x, (xmin, k)) in horiz.iter().enumerate() {
                for c in 0..3 {
                    let mut sum = half;
                    for (i, &kv) in k.iter().enumerate() {
                        sum += row[(xmin + i) * 3 + c] as i32 * kv;
                    }
                    dst[x * 3 + c] = clip8(sum);
                }
            }
        }
        (src, sw, sh, row_offset) = (out, w, last - first, first);
    }
    if h != ih {
        let mut out = vec![0u8; h * sw * 3];
        for (y, dst) in out.chunks_exact_mut(sw * 3).enumerate() {
            let (ymin, k) = &vert[y];
            let ymin = ymin - row_offset;
            for (x, d) in dst.iter_mut().enumerate() {
                let mut sum = half;
                for (i, &kv) in k.iter().enumerate() {
                    sum += src[(ymin + i) * sw * 3 + x] as i32 * kv;
                }
                *d = clip8(sum);
            }
        }
        (src, sh) = (out, h);
    }
    RgbImage::from_raw(sw as u32, sh as u32, src).expect("sizes match the buffer")
}

/// Python's `round` (halves to even) of `x / 2`, for torchvision's centre-crop offset.
fn half_rounded_to_even(x: usize) -> usize {
    if x % 4 == 1 {
        x / 2 // e.g. 1/2 = 0.5 → 0, 5/2 = 2.5 → 2
    } else {
        x.div_ceil(2) // 3/2 = 1.5 → 2; even x exact
    }
}

/// torchvision's ImageNet evaluation transform, `Resize(resize)` (shorter side to `resize`,
/// the longer `int(resize·long/short)`, PIL bilinear), `CenterCrop(crop)`, `ToTensor()` and
/// `Normalize(ImageNet mean, std)`, on a PIL image: reproduced exactly, with Pillow's
/// integer resampling and the float32 arithmetic of `ToTensor` and `Normalize`. Returns
/// `[crop, crop, 3]` in RGB (HWC, where torchvision gives CHW).
pub fn torchvision_preprocess(img: &RgbImage, resize: u32, crop: u32) -> Vec<f32> {
    let (w, h) = (img.width(), img.height());
    let (short, long) = (w.min(h), w.max(h));
    let new_long = (resize as f64 * long as f64 / short as f64) as u32;
    let (nw, nh) = if w <= h {
        (resize, new_long)
    } else {
        (new_long, resize)
    };
    let resized;
    let src = if (nw, nh) == (w, h) {
        img
    } else {
        resized = pil_resize_bilinear(img, nw, nh);
        &resized
    };
    let top = half_rounded_to_even((nh.saturating_sub(crop)) as usize);
    let left = half_rounded_to_even((nw.saturating_sub(crop)) as usize);
    let mut out = Vec::with_capacity((crop * crop * 3) as usize);
    for y in 0..crop as usize {
        for x in 0..crop as usize {
            // Outside the image (only when it is smaller than the crop) torchvision pads
            // with zeros before normalising.
            let p = if y + top < nh as usize && x + left < nw as usize {
                src.get_pixel((x + left) as u32, (y + top) as u32).0
            } else {
                [0, 0, 0]
            };
            for c in 0..3 {
                out.push((p[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
            }
        }
    }
    out
}

/// The preprocessing a network's weights were trained with; chosen by the weights file's
/// layout (Keras HDF5 → Keras, torchvision safetensors → torchvision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// [`keras_preprocess`] at 224: nearest resize to 224×224, BGR, minus the means.
    Keras,
    /// [`torchvision_preprocess`] with resize 256 and crop 224: bilinear, centre crop,
    /// ImageNet mean/std, RGB.
    Torchvision,
}

impl Preset {
    /// The preset weights of this layout expect.
    pub fn for_layout(layout: crate::Layout) -> Self {
        match layout {
            crate::Layout::Keras => Self::Keras,
            crate::Layout::Torchvision => Self::Torchvision,
        }
    }

    /// Side of the square input it produces.
    pub fn size(&self) -> usize {
        224
    }

    /// `[224, 224, 3]` network input.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        match self {
            Self::Keras => keras_preprocess(img, 224),
            Self::Torchvision => torchvision_preprocess(img, 256, 224),
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Keras => "keras (load_img 224×224 nearest + resnet50.preprocess_input, BGR)",
            Self::Torchvision => {
                "torchvision (Resize 256 bilinear + CenterCrop 224 + ToTensor + ImageNet Normalize, RGB)"
            }
        }
    }
}

/// Stacks preprocessed images of one size into a batch.
pub fn batch(images: &[Vec<f32>], size: usize) -> Maps {
    let mut data = Vec::with_capacity(images.len() * size * size * 3);
    for i in images {
        data.extend_from_slice(i);
    }
    Maps {
        n: images.len(),
        h: size,
        w: size,
        c: 3,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_pillow_samples() {
        // From Pillow: Image.resize((224, 1), NEAREST) on ramps of these widths.
        assert_eq!(&pil_nearest(500, 224)[..8], &[1, 3, 5, 7, 10, 12, 14, 16]);
        assert_eq!(&pil_nearest(375, 224)[..8], &[0, 2, 4, 5, 7, 9, 10, 12]);
        assert_eq!(&pil_nearest(100, 224)[..8], &[0, 0, 1, 1, 2, 2, 2, 3]);
        assert_eq!(pil_nearest(7, 3), vec![1, 3, 5]);
        assert_eq!(pil_nearest(224, 224), (0..224).collect::<Vec<_>>());
    }

    #[test]
    fn centre_crop_offsets_round_halves_to_even() {
        // Python: [round(x / 2) for x in range(8)]
        let want = [0, 0, 1, 2, 2, 2, 3, 4];
        for (x, w) in want.iter().enumerate() {
            assert_eq!(half_rounded_to_even(x), *w, "x = {x}");
        }
    }

    #[test]
    fn bilinear_weights_sum_to_one_and_identity_is_exact() {
        for (from, to) in [(500, 256), (37, 256), (1000, 3), (256, 256)] {
            for (_, k) in pil_bilinear_coeffs(from, to) {
                let total: i64 = k.iter().map(|&v| v as i64).sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= k.len() as i64);
            }
        }
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(pil_resize_bilinear(&img, 7, 5), img);
    }

    #[test]
    fn bgr_and_means() {
        let img = RgbImage::from_pixel(3, 3, image::Rgb([10, 20, 30]));
        let x = keras_preprocess(&img, 2);
        assert_eq!(x.len(), 12);
        assert_eq!(&x[..3], &[30.0 - 103.939, 20.0 - 116.779, 10.0 - 123.68]);
    }
}
