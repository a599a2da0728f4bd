//! Whole networks in int8: ResNet's bottleneck blocks and the concept CNN's chain.

use super::calibration::check_calibration;
use super::conv::QConv;
use super::epilogue::{Shortcut, Sink};
use super::{max_pool_u8, quantize_input, QMaps, Quant, Shared};
use super::{Calibration, CalibrationMismatch};
use crate::{buffers, global_average_pool, max_pool, Conv, Maps, Padding, ResNet, ResNetConfig};
use autocaption_tensor::team;

/// One bottleneck block on 8-bit maps.
#[derive(Debug, Clone)]
struct QBlock {
    conv1: QConv,
    conv2: QConv,
    conv3: QConv,
    shortcut: Option<QConv>,
    /// Scales of the first two convolutions' outputs and of the block's (`None`: the last
    /// block, whose output stays f32).
    q1: Quant,
    q2: Quant,
    out: Option<Quant>,
}

/// A block's output: 8-bit, or f32 for the last.
enum BlockOut {
    Q(QMaps),
    F(Maps),
}

impl QBlock {
    /// `ReLU(conv3(conv2(conv1(x))) + shortcut(x) or x)`: block by block of conv3's
    /// columns, the projection's sums made beside its own and added in registers (see
    /// `epilogue`).
    fn forward(&self, x: &QMaps) -> BlockOut {
        let y1 = self.conv1.forward(x, self.q1);
        let y2 = self.conv2.forward(&y1, self.q2);
        buffers::give_bytes(y1.data);
        let c3 = &self.conv3;
        let (oh, ow) = c3.out_size(y2.h, y2.w);
        let rows = y2.n * oh * ow;
        let cout = c3.cout;
        // Every value written below.
        let mut q = buffers::take_bytes(if self.out.is_some() { rows * cout } else { 0 });
        let mut f = buffers::take(if self.out.is_some() { 0 } else { rows * cout });
        let (qs, fs) = (Shared::new(&mut q), Shared::new(&mut f));
        let shortcut = match &self.shortcut {
            Some(s) => Shortcut::Conv(s, x),
            None => Shortcut::Identity(x),
        };
        let sink = match self.out {
            Some(quant) => Sink::Levels(&qs, quant.levels(), 0.0),
            None => Sink::Values(&fs, 0.0),
        };
        c3.run_direct(&y2, shortcut, sink);
        let (n, h, w, c) = (y2.n, oh, ow, cout);
        buffers::give_bytes(y2.data);
        match self.out {
            Some(quant) => BlockOut::Q(QMaps {
                n,
                h,
                w,
                c,
                data: q,
                quant,
            }),
            None => BlockOut::F(Maps {
                n,
                h,
                w,
                c,
                data: f,
            }),
        }
    }
}

/// A ResNet run in int8 (see the module notes).
#[derive(Debug, Clone)]
pub struct QuantizedResNet {
    /// Its shape.
    pub config: ResNetConfig,
    input: Quant,
    stem: QConv,
    stem_out: Quant,
    blocks: Vec<QBlock>,
}

impl QuantizedResNet {
    /// `net` quantized with the ranges of `calibration` (measured on `net`).
    pub fn new(net: &ResNet, calibration: &Calibration) -> Result<Self, CalibrationMismatch> {
        check_calibration(calibration, 1 + 3 * net.blocks.len())?;
        let [lo, hi] = calibration.input;
        let relu = |i: usize| Quant::over(0.0, calibration.ranges[i]);
        let last = net.blocks.len() - 1;
        Ok(Self {
            config: net.config,
            input: Quant::over(lo, hi),
            stem: QConv::new(&net.stem),
            stem_out: relu(0),
            blocks: net
                .blocks
                .iter()
                .enumerate()
                .map(|(i, b)| QBlock {
                    conv1: QConv::new(&b.conv1),
                    conv2: QConv::new(&b.conv2),
                    conv3: QConv::new(&b.conv3),
                    shortcut: b.shortcut.as_ref().map(QConv::new),
                    q1: relu(1 + 3 * i),
                    q2: relu(2 + 3 * i),
                    out: (i < last).then(|| relu(3 + 3 * i)),
                })
                .collect(),
        })
    }

    /// Pooled features `[n, features]` of preprocessed images `[n, h, w, 3]`.
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        team::run(|| self.forward_in_pass(images))
    }

    fn forward_in_pass(&self, images: &Maps) -> Vec<f32> {
        let x = quantize_input(images, self.input);
        let stem = self.stem.forward(&x, self.stem_out);
        buffers::give_bytes(x.data);
        let mut x = max_pool_u8(&stem, 3, 2, 1);
        buffers::give_bytes(stem.data);
        for b in &self.blocks {
            match b.forward(&x) {
                BlockOut::Q(y) => buffers::give_bytes(std::mem::replace(&mut x, y).data),
                BlockOut::F(y) => {
                    buffers::give_bytes(x.data);
                    let features = global_average_pool(&y);
                    buffers::give(y.data);
                    return features;
                }
            }
        }
        unreachable!("the last block's output is f32")
    }
}

/// What follows a convolution of a [`Chain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// 2×2 max pooling, stride 2.
    Max2,
    /// 2×2 average pooling, stride 2.
    Avg2,
}

/// A plain CNN: convolutions (each with its ReLU) each followed by a 2×2 pooling, the last
/// one's output flattened (NHWC) as the features. The concept CNN has this shape.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The layers in order.
    pub layers: Vec<(Conv, Pool)>,
}

impl Chain {
    /// The f32 forward pass, showing `observe` each convolution's output `(i, values)`.
    pub fn observe(&self, images: &Maps, observe: &mut dyn FnMut(usize, &[f32])) -> Vec<f32> {
        let mut x = images.clone();
        for (i, (conv, pool)) in self.layers.iter().enumerate() {
            let y = conv.forward(&x, None);
            observe(i, &y.data);
            x = pool_f32(&y, *pool);
            buffers::give(y.data);
        }
        x.data
    }

    /// Features `[n, h·w·c of the last map]` in f32.
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        self.observe(images, &mut |_, _| {})
    }
}

/// 2×2 pooling of stride 2 (odd edges dropped).
fn pool_f32(x: &Maps, pool: Pool) -> Maps {
    match pool {
        Pool::Max2 => max_pool(x, 2, 2, Padding::same(0)),
        Pool::Avg2 => {
            let (oh, ow, c) = (x.h / 2, x.w / 2, x.c);
            let mut y = Maps::zeros(x.n, oh, ow, c);
            for n in 0..x.n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = &mut y.data[((n * oh + oy) * ow + ox) * c..][..c];
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let i = ((n * x.h + 2 * oy + dy) * x.w + 2 * ox + dx) * c;
                            for (o, v) in o.iter_mut().zip(&x.data[i..i + c]) {
                                *o += 0.25 * v;
                            }
                        }
                    }
                }
            }
            y
        }
    }
}

/// A [`Chain`] run in int8: every convolution's input in 8 bits, max pooling on the
/// levels; the last convolution's output stays f32 for its pooling.
#[derive(Debug, Clone)]
pub struct QuantizedChain {
    input: Quant,
    layers: Vec<(QConv, Pool, Quant)>,
}

impl QuantizedChain {
    /// `chain` quantized with the ranges of `calibration` (measured on `chain`).
    pub fn new(chain: &Chain, calibration: &Calibration) -> Result<Self, CalibrationMismatch> {
        check_calibration(calibration, chain.layers.len())?;
        let last = chain.layers.len().saturating_sub(1);
        if let Some(i) = (0..last).find(|&i| chain.layers[i].1 != Pool::Max2) {
            return Err(CalibrationMismatch(format!(
                "layer {i} is followed by average pooling: only the last layer's may be"
            )));
        }
        if let Some(i) = chain.layers.iter().position(|(c, _)| !c.relu) {
            return Err(CalibrationMismatch(format!(
                "layer {i} has no ReLU: every map an int8 chain stores must be ≥ 0"
            )));
        }
        Ok(Self {
            input: Quant::over(calibration.input[0], calibration.input[1]),
            layers: chain
                .layers
                .iter()
                .zip(&calibration.ranges)
                .map(|((c, p), &r)| (QConv::new(c), *p, Quant::over(0.0, r)))
                .collect(),
        })
    }

    /// Features of preprocessed images, as [`Chain::forward`].
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        team::run(|| self.forward_in_pass(images))
    }

    fn forward_in_pass(&self, images: &Maps) -> Vec<f32> {
        let mut x = quantize_input(images, self.input);
        let last = self.layers.len() - 1;
        for (i, (conv, pool, quant)) in self.layers.iter().enumerate() {
            if i == last {
                let y = conv.forward_f32(&x);
                buffers::give_bytes(x.data);
                let out = pool_f32(&y, *pool);
                buffers::give(y.data);
                return out.data;
            }
            let y = conv.forward(&x, *quant);
            buffers::give_bytes(
                std::mem::replace(
                    &mut x,
                    match pool {
                        Pool::Max2 => max_pool_u8(&y, 2, 2, 0),
                        Pool::Avg2 => unreachable!("average pooling ends a chain (checked)"),
                    },
                )
                .data,
            );
            buffers::give_bytes(y.data);
        }
        unreachable!("the last layer returns")
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cosine, images, random_conv};
    use super::super::{Calibrator, RangeMethod};
    use super::*;
    use crate::Layout;
    use autocaption_tensor::Rng;

    #[test]
    fn the_int8_network_follows_the_f32_one_and_a_row_does_not_depend_on_its_batch() {
        let config = ResNetConfig {
            layout: Layout::Keras,
            width: 8,
            blocks: [1, 2, 1, 1],
        };
        let net = ResNet::random(config, 3);
        let mut rng = Rng::new(4);
        for method in [
            RangeMethod::MinMax,
            RangeMethod::Percentile { percent: 99.99 },
        ] {
            let mut cal = Calibrator::new(method);
            cal.observe(&net, &images(&mut rng, 3, 48));
            cal.observe(&net, &images(&mut rng, 2, 48));
            let cal = cal.finish().unwrap();
            assert_eq!((cal.images, cal.ranges.len()), (5, 16));
            assert!(cal.input[0] >= -120.0 && cal.input[1] <= 150.0);
            let q = QuantizedResNet::new(&net, &cal).unwrap();
            let x = images(&mut rng, 4, 48);
            let (want, got) = (net.forward(&x), q.forward(&x));
            let f = config.features();
            for i in 0..4 {
                let c = cosine(&want[i * f..(i + 1) * f], &got[i * f..(i + 1) * f]);
                assert!(c > 0.995, "{method:?} image {i}: cosine {c}");
            }
            let one = Maps {
                n: 1,
                data: x.data[..48 * 48 * 3].to_vec(),
                ..x.clone()
            };
            assert_eq!(q.forward(&one), got[..f].to_vec(), "batch of one");
        }
    }

    #[test]
    fn calibration_ranges_clip_outliers_only_when_asked() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i % 100) as f32 / 10.0).collect();
        values[5] = 1000.0;
        assert_eq!(RangeMethod::MinMax.upper(&values), 1000.0);
        let p = RangeMethod::Percentile { percent: 99.0 }.upper(&values);
        assert!((9.8..=9.9).contains(&p), "{p}");
        let net = ResNet::random(
            ResNetConfig {
                layout: Layout::Keras,
                width: 4,
                blocks: [1, 1, 1, 1],
            },
            1,
        );
        let mut cal = Calibrator::new(RangeMethod::MinMax).finish();
        assert!(cal.is_none());
        let mut c = Calibrator::new(RangeMethod::MinMax);
        c.observe(&net, &images(&mut Rng::new(1), 1, 32));
        cal = c.finish();
        let mut cal = cal.unwrap();
        cal.ranges.pop();
        let e = QuantizedResNet::new(&net, &cal).unwrap_err();
        assert!(e.to_string().contains("12 ranges"), "{e}");
    }

    #[test]
    fn an_int8_chain_follows_the_f32_one() {
        let mut rng = Rng::new(31);
        let mut layers = Vec::new();
        let channels = [3, 8, 16, 16];
        for i in 0..3 {
            let mut c = random_conv(&mut rng, 3, channels[i], channels[i + 1], 1);
            c.bias.iter_mut().for_each(|b| *b *= 0.1);
            let scale = (2.0 / (9 * channels[i]) as f32).sqrt();
            c.weight.iter_mut().for_each(|w| *w *= scale);
            layers.push((c, if i < 2 { Pool::Max2 } else { Pool::Avg2 }));
        }
        let chain = Chain { layers };
        let pixels = |rng: &mut Rng, n: usize| Maps {
            n,
            h: 32,
            w: 32,
            c: 3,
            data: (0..n * 32 * 32 * 3)
                .map(|_| rng.uniform(-0.5, 0.5))
                .collect(),
        };
        let mut cal = Calibrator::new(RangeMethod::Percentile { percent: 99.99 });
        cal.observe_chain(&chain, &pixels(&mut rng, 4));
        let cal = cal.finish().unwrap();
        assert_eq!(cal.ranges.len(), 3);
        let q = QuantizedChain::new(&chain, &cal).unwrap();
        let x = pixels(&mut rng, 3);
        let (want, got) = (chain.forward(&x), q.forward(&x));
        let f = 4 * 4 * 16;
        assert_eq!((want.len(), got.len()), (3 * f, 3 * f));
        for i in 0..3 {
            let c = cosine(&want[i * f..(i + 1) * f], &got[i * f..(i + 1) * f]);
            assert!(c > 0.995, "image {i}: cosine {c}");
        }
        let mut bad = chain.clone();
        bad.layers[0].1 = Pool::Avg2;
        assert!(QuantizedChain::new(&bad, &cal).is_err());
    }
}
