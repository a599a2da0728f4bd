//! Activation ranges measured on sample images, the scales of an int8 network.

use serde::{Deserialize, Serialize};

use super::Chain;
use crate::{max_pool, Maps, Padding, ResNet};

/// How a map's range is chosen from its values on the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RangeMethod {
    /// The largest value seen: no value is ever clipped, but one outlier coarsens every
    /// step of the map.
    MinMax,
    /// The given percentile of the map's values (`99.99`): the few values above are
    /// clipped, and every other value gets finer steps.
    Percentile {
        /// Percent of values at or below the range's upper end.
        percent: f64,
    },
}

impl RangeMethod {
    /// For people: `min-max` or `percentile 99.99`.
    pub fn describe(&self) -> String {
        match self {
            Self::MinMax => "min-max".into(),
            Self::Percentile { percent } => format!("percentile {percent}"),
        }
    }

    pub(super) fn upper(&self, values: &[f32]) -> f32 {
        let max = values.iter().fold(0.0f32, |m, &v| m.max(v));
        match *self {
            Self::MinMax => max,
            Self::Percentile { percent } => {
                if values.is_empty() {
                    return 0.0;
                }
                let mut v = values.to_vec();
                let at = ((percent / 100.0 * v.len() as f64) as usize).min(v.len() - 1);
                *v.select_nth_unstable_by(at, f32::total_cmp).1
            }
        }
    }
}

/// Activation ranges of a ResNet, measured on calibration images: what
/// [`QuantizedResNet::new`] turns into scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// How each range was chosen.
    pub method: RangeMethod,
    /// Images it was measured on.
    pub images: usize,
    /// The preprocessed input's smallest and largest value.
    pub input: [f32; 2],
    /// The upper end of each map after a ReLU (all start at 0), in order: the stem's
    /// output, then each block's first and second convolutions' outputs and its output.
    pub ranges: Vec<f32>,
    /// A chain's only ([`Calibrator::observe_chain`]): for each map, each channel's upper
    /// end, by which [`super::QuantizedChain`] evens out the channels' ranges before
    /// quantizing. Empty for a ResNet, and in calibrations written before it (whose maps
    /// are then quantized as they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Vec<f32>>,
}

/// What a forward pass shows each map to: `(index, values)`.
type Observer<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// Accumulates [`Calibration`] ranges batch by batch.
#[derive(Debug, Clone)]
pub struct Calibrator {
    method: RangeMethod,
    images: usize,
    input: [f32; 2],
    /// Per map: the largest value, and the images-weighted sum of per-batch ranges.
    maps: Vec<(f32, f64)>,
    /// Per map of a chain, the same for each channel.
    channels: Vec<Vec<(f32, f64)>>,
}

impl Calibrator {
    /// An empty calibration with the given method.
    pub fn new(method: RangeMethod) -> Self {
        Self {
            method,
            images: 0,
            input: [f32::INFINITY, f32::NEG_INFINITY],
            maps: Vec::new(),
            channels: Vec::new(),
        }
    }

    /// Runs `net` (f32) on a batch of preprocessed images and takes in its maps' values.
    /// A batch's range of a map is its percentile over the batch; the calibration's is the
    /// mean over batches, weighted by images (min-max: the largest value over all).
    pub fn observe(&mut self, net: &ResNet, images: &Maps) {
        self.take(images, None, &mut |f| net.observe(images, f));
    }

    /// [`Calibrator::observe`] for a [`Chain`]: each convolution's output, after its ReLU
    /// and before its pooling, and each of its channels.
    pub fn observe_chain(&mut self, chain: &Chain, images: &Maps) {
        let widths: Vec<usize> = chain.layers.iter().map(|(c, _)| c.cout).collect();
        self.take(images, Some(&widths), &mut |f| {
            chain.observe(images, f);
        });
    }

    /// Takes in the input and the maps `run` shows (and their channels, where `widths`
    /// gives each map's channel count).
    fn take(&mut self, images: &Maps, widths: Option<&[usize]>, run: &mut dyn FnMut(Observer<'_>)) {
        if images.n == 0 {
            return;
        }
        for &v in &images.data {
            self.input[0] = self.input[0].min(v);
            self.input[1] = self.input[1].max(v);
        }
        let n = images.n as f64;
        let method = self.method;
        let (maps, channels) = (&mut self.maps, &mut self.channels);
        let take = |range: &mut (f32, f64), values: &[f32]| {
            let max = values.iter().fold(0.0f32, |m, &v| m.max(v));
            range.0 = range.0.max(max);
            range.1 += n * f64::from(method.upper(values));
        };
        run(&mut |i, values| {
            if maps.len() <= i {
                maps.resize(i + 1, (0.0, 0.0));
            }
            take(&mut maps[i], values);
            if let Some(&c) = widths.and_then(|w| w.get(i)) {
                if channels.len() <= i {
                    channels.resize(i + 1, Vec::new());
                }
                channels[i].resize(c, (0.0, 0.0));
                let mut one = Vec::with_capacity(values.len() / c.max(1));
                for (ch, range) in channels[i].iter_mut().enumerate() {
                    one.clear();
                    one.extend(values.iter().skip(ch).step_by(c));
                    take(range, &one);
                }
            }
        });
        self.images += images.n;
    }

    /// The ranges measured; `None` before any image.
    pub fn finish(&self) -> Option<Calibration> {
        (self.images > 0).then(|| Calibration {
            method: self.method,
            images: self.images,
            input: self.input,
            ranges: self.maps.iter().map(|&r| self.upper(r)).collect(),
            channels: self
                .channels
                .iter()
                .map(|map| map.iter().map(|&r| self.upper(r)).collect())
                .collect(),
        })
    }

    /// A range from its largest value and its images-weighted sum of per-batch ranges.
    fn upper(&self, (max, sum): (f32, f64)) -> f32 {
        match self.method {
            RangeMethod::MinMax => max,
            RangeMethod::Percentile { .. } => (sum / self.images as f64) as f32,
        }
    }
}

impl ResNet {
    /// The f32 forward pass, showing `observe` each map after a ReLU as it is made:
    /// `(0, stem output)`, then for block `b` `(1 + 3b, first convolution's output)`,
    /// `(2 + 3b, second's)` and `(3 + 3b, the block's output)`.
    pub fn observe(&self, images: &Maps, observe: &mut dyn FnMut(usize, &[f32])) {
        let stem = self.stem.forward(images, None);
        observe(0, &stem.data);
        let mut x = max_pool(&stem, 3, 2, Padding::same(1));
        for (i, b) in self.blocks.iter().enumerate() {
            let y1 = b.conv1.forward(&x, None);
            observe(1 + 3 * i, &y1.data);
            let y2 = b.conv2.forward(&y1, None);
            observe(2 + 3 * i, &y2.data);
            let res = match &b.shortcut {
                Some(s) => s.forward(&x, None),
                None => x,
            };
            x = b.conv3.forward(&y2, Some(&res));
            observe(3 + 3 * i, &x.data);
        }
    }
}

/// Checks that `calibration` holds `want` usable ranges.
pub(super) fn check_calibration(
    calibration: &Calibration,
    want: usize,
) -> Result<(), CalibrationMismatch> {
    if calibration.ranges.len() != want {
        return Err(CalibrationMismatch(format!(
            "the calibration holds {} ranges, but this network has {want} maps to quantize \
             (calibrated on another network?)",
            calibration.ranges.len()
        )));
    }
    let bad = |v: f32| !v.is_finite() || v < 0.0;
    if let Some(i) = calibration.ranges.iter().position(|&v| bad(v)) {
        return Err(CalibrationMismatch(format!(
            "range {i} of the calibration is {}, not a finite value ≥ 0",
            calibration.ranges[i]
        )));
    }
    let [lo, hi] = calibration.input;
    if !lo.is_finite() || !hi.is_finite() || lo > hi {
        return Err(CalibrationMismatch(format!(
            "the calibration's input range [{lo}, {hi}] is not a range"
        )));
    }
    Ok(())
}

/// Why a calibration does not fit a network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CalibrationMismatch(pub(super) String);
