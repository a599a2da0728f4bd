//! Whole networks in int8: ResNet's bottleneck blocks and the concept CNN's chain.

use super::calibration::check_calibration;
use super::conv::{QConv, Then};
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
    /// With, where the next block's first convolution followed this block's last tile by
    /// tile, its output.
    Q(QMaps, Option<QMaps>),
    F(Maps),
}

impl QBlock {
    /// `ReLU(conv3(conv2(conv1(x))) + shortcut(x) or x)`: block by block of conv3's
    /// columns, the projection's sums made beside its own and added in registers (see
    /// `epilogue`). `y1`: conv1's output, where the block before made it. `next`: the
    /// block after, whose conv1 then runs tile by tile after this block's conv3 where it
    /// can ([`QConv::run_direct_then`]).
    fn forward(&self, x: &QMaps, y1: Option<QMaps>, next: Option<&QBlock>) -> BlockOut {
        let y1 = y1.unwrap_or_else(|| self.conv1.forward(x, self.q1));
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
        // The next block's conv1, where it can follow.
        let next = next.filter(|b| self.out.is_some() && c3.can_be_followed_by(&b.conv1, &y2));
        let mut next_y1 = next.map(|b| buffers::take_bytes(rows * b.conv1.cout)); // all written
        let next_shared = next_y1.as_deref_mut().map(Shared::new);
        let then = match (next, &next_shared, self.out) {
            (Some(b), Some(out), Some(input)) => Some(Then {
                conv: &b.conv1,
                input,
                out,
                quant: b.q1,
            }),
            _ => None,
        };
        c3.run_direct_then(&y2, shortcut, sink, then);
        let (n, h, w, c) = (y2.n, oh, ow, cout);
        buffers::give_bytes(y2.data);
        match self.out {
            Some(quant) => BlockOut::Q(
                QMaps {
                    n,
                    h,
                    w,
                    c,
                    data: q,
                    quant,
                },
                next.zip(next_y1).map(|(b, data)| QMaps {
                    n,
                    h,
                    w,
                    c: b.conv1.cout,
                    data,
                    quant: b.q1,
                }),
            ),
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
        if !calibration.channels.is_empty() {
            return Err(CalibrationMismatch(
                "the calibration holds ranges per channel, as a chain's does (calibrated on \
                 another network?)"
                    .into(),
            ));
        }
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
        team::run(|| self.forward_in_pass(images, true).0)
    }

    /// The features, and how many blocks' first convolutions followed the block before
    /// tile by tile (none unless `follow`).
    fn forward_in_pass(&self, images: &Maps, follow: bool) -> (Vec<f32>, usize) {
        let x = quantize_input(images, self.input);
        let stem = self.stem.forward(&x, self.stem_out);
        buffers::give_bytes(x.data);
        let mut x = max_pool_u8(&stem, 3, 2, 1);
        buffers::give_bytes(stem.data);
        let (mut y1, mut followed) = (None, 0);
        for (i, b) in self.blocks.iter().enumerate() {
            let next = self.blocks.get(i + 1).filter(|_| follow);
            match b.forward(&x, y1.take(), next) {
                BlockOut::Q(y, next_y1) => {
                    buffers::give_bytes(std::mem::replace(&mut x, y).data);
                    followed += usize::from(next_y1.is_some());
                    y1 = next_y1;
                }
                BlockOut::F(y) => {
                    buffers::give_bytes(x.data);
                    let features = global_average_pool(&y);
                    buffers::give(y.data);
                    return (features, followed);
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

/// `chain` with the channels of each map it stores in 8 bits evened out, and each map's
/// range: where `calibration` has each channel's upper end `u_c` (the widest `U`), channel
/// `c` is scaled by `s_c = √(U / u_c)` (at most 16), its convolution's weights and bias
/// multiplied and the next convolution's weights of that input channel divided by it. The
/// ReLU and the max pooling between commute with a positive scale, so the f32 function is
/// the same; but a narrow channel now spans more of the map's 256 levels, at the price of
/// coarser steps for its weights in the next convolution (rounded per output channel), and
/// the square root balances the two. A channel still has `√(U / u_c)` times its calibrated
/// range before it clips.
///
/// On the demo's concept CNN (heavy-tailed maps: the last convolution's input ranges to
/// 13.2 while 90% of it lies under 0.32, its channels' ranges 0.24–13.2), the error of the
/// features as the caption model's image Dense sees them, mean over the dev split, in a
/// numpy simulation of this arithmetic: 0.0148 → 0.0071 (scaling by `(U / u_c)^α`: α = 0,
/// 0.25, 0.5, 0.75, 1 gave 0.0148, 0.0122, 0.0071, 0.0106, 0.0178); measured here, 0.0163 →
/// 0.0096 on the dev split and 0.0166 → 0.0091 on the test split. A map's range is then its widest channel's: with
/// min-max the map's own, with a percentile that channel's percentile. Without ranges per
/// channel (a calibration written before them) the chain is returned as it is, with the
/// map ranges of `calibration`.
fn equalized(
    chain: &Chain,
    calibration: &Calibration,
) -> Result<(Chain, Vec<f32>), CalibrationMismatch> {
    let layers = &chain.layers;
    let channels = &calibration.channels;
    if channels.is_empty() {
        return Ok((chain.clone(), calibration.ranges.clone()));
    }
    if channels.len() != layers.len()
        || channels
            .iter()
            .zip(layers)
            .any(|(u, (c, _))| u.len() != c.cout)
    {
        return Err(CalibrationMismatch(
            "the calibration's ranges per channel do not fit this network's channels \
             (calibrated on another network?)"
                .into(),
        ));
    }
    if let Some((i, u)) = channels
        .iter()
        .enumerate()
        .find(|(_, u)| u.iter().any(|&v| !v.is_finite() || v < 0.0))
    {
        return Err(CalibrationMismatch(format!(
            "a range per channel of map {i} of the calibration is not a finite value ≥ 0: \
             {:?}",
            u.iter().find(|&&v| !v.is_finite() || v < 0.0)
        )));
    }
    let mut weights: Vec<(Vec<f32>, Vec<f32>)> = layers
        .iter()
        .map(|(c, _)| (c.weight.clone(), c.bias.clone()))
        .collect();
    let mut ranges = calibration.ranges.clone();
    // Every map but the last, which stays f32.
    for i in 0..layers.len().saturating_sub(1) {
        let u = &channels[i];
        let widest = u.iter().fold(0.0f32, |m, &v| m.max(v));
        if widest == 0.0 {
            continue;
        }
        let scale: Vec<f32> = u
            .iter()
            .map(|&v| (widest / v.max(widest / 256.0)).sqrt())
            .collect();
        let cout = layers[i].0.cout;
        let (w, b) = &mut weights[i];
        for row in w.chunks_exact_mut(cout) {
            row.iter_mut().zip(&scale).for_each(|(w, s)| *w *= s);
        }
        b.iter_mut().zip(&scale).for_each(|(b, s)| *b *= s);
        let next = &layers[i + 1].0;
        for (r, row) in weights[i + 1].0.chunks_exact_mut(next.cout).enumerate() {
            let s = scale[r % next.cin];
            row.iter_mut().for_each(|w| *w /= s);
        }
        // √(u_c · U) ≤ U, with U itself at the widest channel.
        ranges[i] = widest;
    }
    let layers = layers
        .iter()
        .zip(weights)
        .map(|((c, p), (w, b))| {
            let conv = Conv::new((c.kh, c.kw), (c.cin, c.cout), c.stride, c.pad, w, b, c.relu);
            (conv, *p)
        })
        .collect();
    Ok((Chain { layers }, ranges))
}

/// A [`Chain`] run in int8: every convolution's input in 8 bits, max pooling on the
/// levels; the last convolution's output stays f32 for its pooling. Where the calibration
/// has ranges per channel the maps' channels are evened out first ([`equalized`]).
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
        let (chain, ranges) = equalized(chain, calibration)?;
        Ok(Self {
            input: Quant::over(calibration.input[0], calibration.input[1]),
            layers: chain
                .layers
                .iter()
                .zip(ranges)
                .map(|((c, p), r)| (QConv::new(c), *p, Quant::over(0.0, r)))
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

    /// A block's first convolution run tile by tile after the block before gives the bits
    /// it gives run on its own: both layouts (Keras strides the first convolution of a
    /// stage's first block, so it cannot follow; torchvision's can), on 1 thread (every
    /// tile whole rows) and 3 (the first stage's rows shared by rows, the last's by columns).
    #[test]
    fn a_convolution_run_tile_by_tile_after_another_gives_the_same_bits() {
        let mut rng = Rng::new(51);
        for (layout, seed) in [(Layout::Keras, 5), (Layout::Torchvision, 6)] {
            let config = ResNetConfig {
                layout,
                width: 8,
                blocks: [2, 2, 1, 2],
            };
            let net = ResNet::random(config, seed);
            let mut cal = Calibrator::new(RangeMethod::MinMax);
            cal.observe(&net, &images(&mut rng, 2, 96));
            let q = QuantizedResNet::new(&net, &cal.finish().unwrap()).unwrap();
            let x = images(&mut rng, 2, 96);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let ((apart, none), (along, followed)) =
                    pool.install(|| (q.forward_in_pass(&x, false), q.forward_in_pass(&x, true)));
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&apart), bits(&along), "{layout:?}, {threads} threads");
                // Within each stage, and in torchvision's layout also into the next; on 3
                // threads only from the first stage, whose rows are shared by rows.
                let want = match (layout, threads) {
                    (Layout::Keras, 1) => 3,
                    (Layout::Torchvision, 1) => 6,
                    (Layout::Keras, _) => 1,
                    (Layout::Torchvision, _) => 2,
                };
                assert_eq!((none, followed), (0, want), "{layout:?}, {threads} threads");
            }
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

    /// A chain of three 3×3 convolutions through `channels` (He-scaled weights, small
    /// biases), max pooling between and average pooling at the end.
    fn chain(rng: &mut Rng, channels: [usize; 4]) -> Chain {
        let layers = (0..3)
            .map(|i| {
                let mut c = random_conv(rng, 3, channels[i], channels[i + 1], 1);
                c.bias.iter_mut().for_each(|b| *b *= 0.1);
                let scale = (2.0 / (9 * channels[i]) as f32).sqrt();
                c.weight.iter_mut().for_each(|w| *w *= scale);
                (c, if i < 2 { Pool::Max2 } else { Pool::Avg2 })
            })
            .collect();
        Chain { layers }
    }

    /// `n` images of 32×32 pixels in [−0.5, 0.5], as the concept CNN takes them.
    fn pixels(rng: &mut Rng, n: usize) -> Maps {
        Maps {
            n,
            h: 32,
            w: 32,
            c: 3,
            data: (0..n * 32 * 32 * 3)
                .map(|_| rng.uniform(-0.5, 0.5))
                .collect(),
        }
    }

    #[test]
    fn an_int8_chain_follows_the_f32_one() {
        let mut rng = Rng::new(31);
        let chain = chain(&mut rng, [3, 8, 16, 16]);
        let mut cal = Calibrator::new(RangeMethod::Percentile { percent: 99.99 });
        cal.observe_chain(&chain, &pixels(&mut rng, 4));
        let cal = cal.finish().unwrap();
        assert_eq!(cal.ranges.len(), 3);
        let widths: Vec<usize> = cal.channels.iter().map(Vec::len).collect();
        assert_eq!(widths, [8, 16, 16]);
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
        let mut bad = cal.clone();
        bad.channels[1].pop();
        let e = QuantizedChain::new(&chain, &bad).unwrap_err();
        assert!(e.to_string().contains("per channel"), "{e}");
        bad.channels[1].push(f32::NAN);
        assert!(QuantizedChain::new(&chain, &bad).is_err());
        assert!(QuantizedResNet::new(
            &ResNet::random(
                ResNetConfig {
                    layout: Layout::Keras,
                    width: 4,
                    blocks: [1, 0, 0, 0],
                },
                1
            ),
            &Calibration {
                ranges: vec![1.0; 4],
                ..cal.clone()
            }
        )
        .is_err());
    }

    /// A chain whose stored maps have channels of very different ranges (a few 40 times
    /// wider than the rest, with the next layer's weights shrunk to match, as trained
    /// detectors come out): evening the channels out keeps the f32 function, and brings
    /// the int8 features far closer to it than quantizing the maps as they are.
    #[test]
    fn evened_out_channels_keep_the_function_and_lose_less() {
        let mut rng = Rng::new(41);
        let mut layers = chain(&mut rng, [3, 16, 24, 16]).layers;
        for i in 0..2 {
            let (cout, next_cin) = (layers[i].0.cout, layers[i + 1].0.cin);
            let wide = |c: usize| if c.is_multiple_of(5) { 40.0 } else { 1.0 };
            let conv = &mut layers[i].0;
            for (j, w) in conv.weight.iter_mut().enumerate() {
                *w *= wide(j % cout);
            }
            for (c, b) in conv.bias.iter_mut().enumerate() {
                *b *= wide(c);
            }
            let next = &mut layers[i + 1].0.weight;
            let next_cout = next.len() / (9 * next_cin);
            for (j, w) in next.iter_mut().enumerate() {
                *w /= wide((j / next_cout) % next_cin);
            }
        }
        let chain = Chain { layers };
        let mut cal = Calibrator::new(RangeMethod::MinMax);
        cal.observe_chain(&chain, &pixels(&mut rng, 6));
        let cal = cal.finish().unwrap();
        let x = pixels(&mut rng, 4);
        let want = chain.forward(&x);
        let (even, ranges) = equalized(&chain, &cal).unwrap();
        // Min-max: the widest channel keeps its scale, so each map keeps its range.
        assert_eq!(ranges, cal.ranges);
        for (a, b) in even.forward(&x).iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let error = |cal: &Calibration| {
            let got = QuantizedChain::new(&chain, cal).unwrap().forward(&x);
            let diff: f64 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            let norm: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
            (diff / norm).sqrt()
        };
        let as_they_are = Calibration {
            channels: Vec::new(),
            ..cal.clone()
        };
        let (plain, evened) = (error(&as_they_are), error(&cal));
        assert!(
            evened < 0.5 * plain,
            "relative error {evened} evened out, {plain} not"
        );
    }
}
