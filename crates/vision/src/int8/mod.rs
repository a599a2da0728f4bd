//! The int8 encoder: ResNet (and the concept CNN's plain chain) with 8-bit per-output-channel
//! weights (7-bit on a CPU without VNNI: [`autocaption_tensor::weight_levels`]) and 8-bit
//! activations, static per-map activation scales from calibration images,
//! exact `i32` sums ([`autocaption_tensor::QuantWeights`]; without VNNI, 3×3 convolutions
//! through an integer Winograd transform with the same sums) and each convolution's bias, residual,
//! ReLU and requantization applied in one pass over its sums. Batch norm is folded into the
//! weights before they are quantized (the f32 network already holds it folded).
//!
//! Every activation a convolution reads is unsigned: the image with a zero point (the
//! preprocessed pixels are signed), every later map with zero point 0 (each follows a
//! ReLU). The last convolution's output stays f32 and is pooled as such.
//!
//! Ranges come from [`Calibration`]: the f32 network's maps on sample images, each map's
//! upper end taken as its largest value or a high percentile of its values, see
//! [`RangeMethod`].

mod calibration;
mod conv;
mod epilogue;
mod nets;

use autocaption_tensor::team;

use crate::{buffers, Maps};

pub use calibration::{Calibration, CalibrationMismatch, Calibrator, RangeMethod};
pub use nets::{Chain, Pool, QuantizedChain, QuantizedResNet};

/// An 8-bit map's quantization: value = `scale · (q − zero)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    /// Size of one step.
    pub scale: f32,
    /// The level that stands for 0.
    pub zero: u8,
}

impl Quant {
    /// Levels 0–255 over `[min, max]` (widened to hold 0).
    pub fn over(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero = (-min / scale).round().clamp(0.0, 255.0) as u8;
        Self { scale, zero }
    }

    fn levels(&self) -> Levels {
        Levels {
            inv: 1.0 / self.scale,
            zero: f32::from(self.zero),
        }
    }
}

/// [`Quant`] ready for many values: the nearest level (halves to even).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Levels {
    inv: f32,
    zero: f32,
}

/// 1.5·2²³: added to a value in [0, 2²²), it leaves the value rounded to an integer in the
/// low bits of the sum's representation (a rounding that vectorises, unlike `as`).
const ROUNDER: f32 = 12_582_912.0;

impl Levels {
    #[inline(always)]
    fn of(self, v: f32) -> u8 {
        level(self.unrounded(v))
    }

    /// `v` in levels, before rounding.
    #[inline(always)]
    fn unrounded(self, v: f32) -> f32 {
        v * self.inv + self.zero
    }
}

/// The nearest of 0–255 to `l` (NaN gives 0).
#[inline(always)]
fn level(l: f32) -> u8 {
    (l.clamp(0.0, 255.0) + ROUNDER).to_bits() as u8
}

/// A batch of 8-bit maps, NHWC.
#[derive(Debug, Clone, PartialEq)]
struct QMaps {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    data: Vec<u8>,
    quant: Quant,
}

/// Preprocessed images in 8 bits.
fn quantize_input(images: &Maps, quant: Quant) -> QMaps {
    let levels = quant.levels();
    let mut data = buffers::take_bytes(images.data.len()); // every value written below
    const PART: usize = 1 << 16;
    let out = Shared::new(&mut data);
    team::for_parts(images.data.len().div_ceil(PART), |p| {
        let v = &images.data[p * PART..images.data.len().min((p + 1) * PART)];
        // SAFETY: each part writes its own values.
        let q = unsafe { out.part(p * PART, v.len()) };
        for (q, &v) in q.iter_mut().zip(v) {
            *q = levels.of(v);
        }
    });
    QMaps {
        n: images.n,
        h: images.h,
        w: images.w,
        c: images.c,
        data,
        quant,
    }
}

/// `k×k` max pooling on 8-bit maps: the same as pooling the values (the levels rise with
/// them); padded positions never win.
fn max_pool_u8(x: &QMaps, k: usize, stride: usize, pad: usize) -> QMaps {
    let oh = (x.h + 2 * pad - k) / stride + 1;
    let ow = (x.w + 2 * pad - k) / stride + 1;
    let c = x.c;
    let mut data = buffers::take_bytes(x.n * oh * ow * c); // every value written below
    let out = Shared::new(&mut data);
    team::for_parts(x.n * oh, |row| {
        let (n, oy) = (row / oh, row % oh);
        // SAFETY: each part writes its own row.
        let dst_row = unsafe { out.part(row * ow * c, ow * c) };
        dst_row.fill(0);
        for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
            for ky in 0..k {
                let iy = (oy * stride + ky) as isize - pad as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * stride + kx) as isize - pad as isize;
                    if ix < 0 || ix >= x.w as isize {
                        continue;
                    }
                    let src = ((n * x.h + iy as usize) * x.w + ix as usize) * c;
                    for (d, &v) in dst.iter_mut().zip(&x.data[src..src + c]) {
                        *d = (*d).max(v);
                    }
                }
            }
        }
    });
    QMaps {
        n: x.n,
        h: oh,
        w: ow,
        c,
        data,
        quant: x.quant,
    }
}

/// A shared output written by tasks in disjoint parts.
struct Shared<T>(*mut T, usize);

// SAFETY: tasks write disjoint parts only (see `Shared::part`).
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn new(v: &mut [T]) -> Self {
        Self(v.as_mut_ptr(), v.len())
    }

    /// `len` values from `at`.
    ///
    /// # Safety
    /// No two live parts may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part(&self, at: usize, len: usize) -> &mut [T] {
        assert!(at + len <= self.1, "part out of bounds");
        // SAFETY: in bounds (asserted); disjointness is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }

    /// A pointer to the value at `at`, where the `len` values from there lie inside.
    fn ptr(&self, at: usize, len: usize) -> *mut T {
        assert!(at + len <= self.1, "part out of bounds");
        self.0.wrapping_add(at)
    }
}

#[cfg(test)]
mod test_support {
    use crate::{Conv, Maps, Padding};
    use autocaption_tensor::Rng;

    /// A `k×k` convolution with ReLU, uniform weights and biases.
    pub(super) fn random_conv(
        rng: &mut Rng,
        k: usize,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> Conv {
        let weight = (0..k * k * cin * cout)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let bias = (0..cout).map(|_| rng.uniform(-2.0, 2.0)).collect();
        Conv::new(
            (k, k),
            (cin, cout),
            stride,
            Padding::same(k / 2),
            weight,
            bias,
            true,
        )
    }

    /// `n` random images of `size × size × 3`, values as Keras preprocessing gives.
    pub(super) fn images(rng: &mut Rng, n: usize, size: usize) -> Maps {
        Maps {
            n,
            h: size,
            w: size,
            c: 3,
            data: (0..n * size * size * 3)
                .map(|_| rng.uniform(-120.0, 150.0))
                .collect(),
        }
    }

    pub(super) fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }
}
