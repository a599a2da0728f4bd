//! Image features without pretrained weights: a small CNN trained on a dataset's own
//! training images to predict which words their captions use (visual concept detectors, as
//! in Fang et al. 2015). Where no pretrained encoder can be had (the demo, built offline),
//! a random-weight ResNet-50 keeps colour but loses shape; detectors trained from the
//! captions keep what the captions talk about.

mod net;
mod ops;
mod train;
mod weights;

pub use net::{ConceptConfig, ConceptNet};
pub use train::{train, Epoch, Examples, TrainOptions};
pub use weights::ConceptWeightsError;

/// An RGB image as the network's input: resized to `size × size` (bilinear, without
/// keeping the aspect ratio) and scaled to [−0.5, 0.5], NHWC.
pub fn pixels(img: &image::RgbImage, size: u32) -> Vec<f32> {
    let small = image::imageops::resize(img, size, size, image::imageops::FilterType::Triangle);
    small
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0 - 0.5)
        .collect()
}

/// Word targets of one image from its encoded captions: for each word index below `words`,
/// the fraction of the captions that use it. Indices in `skip` (padding, start and end
/// tokens) stay 0.
pub fn word_targets(captions: &[Vec<u32>], words: usize, skip: &[u32]) -> Vec<f32> {
    let mut t = vec![0.0f32; words];
    if captions.is_empty() {
        return t;
    }
    for cap in captions {
        let mut seen = vec![false; words];
        for &w in cap {
            if (w as usize) < words && !skip.contains(&w) {
                seen[w as usize] = true;
            }
        }
        for (t, s) in t.iter_mut().zip(seen) {
            *t += f32::from(u8::from(s));
        }
    }
    let share = 1.0 / captions.len() as f32;
    t.iter_mut().for_each(|v| *v *= share);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_count_captions_not_repeats() {
        let caps = vec![vec![1, 5, 5, 2], vec![1, 5, 6, 2]];
        let t = word_targets(&caps, 8, &[0, 1, 2]);
        assert_eq!(t, vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0]);
    }

    #[test]
    fn pixels_are_centred_and_sized() {
        let img = image::RgbImage::from_pixel(30, 20, image::Rgb([255, 0, 128]));
        let p = pixels(&img, 16);
        assert_eq!(p.len(), 16 * 16 * 3);
        assert_eq!((p[0], p[1]), (0.5, -0.5));
    }
}
