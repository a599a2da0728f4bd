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
    fn bgr_and_means() {
        let img = RgbImage::from_pixel(3, 3, image::Rgb([10, 20, 30]));
        let x = keras_preprocess(&img, 2);
        assert_eq!(x.len(), 12);
        assert_eq!(&x[..3], &[30.0 - 103.939, 20.0 - 116.779, 10.0 - 123.68]);
    }
}
