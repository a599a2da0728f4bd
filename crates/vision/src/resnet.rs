use std::time::Duration;

use autocaption_tensor::Rng;
use serde::{Deserialize, Serialize};

use crate::{buffers, global_average_pool, max_pool, Conv, Maps, Padding, Residual};

/// Where a stage's downsampling stride sits in its first bottleneck block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Keras `applications.ResNet50` (the seed's): on the first 1×1 convolution.
    Keras,
    /// torchvision / timm ResNet-50 v1.5: on the 3×3 convolution.
    Torchvision,
}

/// The shape of a ResNet: ResNet-50 is width 64 with blocks [3, 4, 6, 3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Where the stride sits.
    pub layout: Layout,
    /// Channels of the stem; stage `i` has `width·2^i` bottleneck channels and 4× that out.
    pub width: usize,
    /// Bottleneck blocks per stage.
    pub blocks: [usize; 4],
}

impl ResNetConfig {
    /// ResNet-50 in the given layout.
    pub fn resnet50(layout: Layout) -> Self {
        Self {
            layout,
            width: 64,
            blocks: [3, 4, 6, 3],
        }
    }

    /// Floating-point operations (a multiply-add is two) of one forward pass on an
    /// `h × w` image, convolutions only: 7.71 G for ResNet-50 at 224×224 in the Keras
    /// layout, 8.17 G in torchvision's (its strided 3×3 sees the larger map).
    pub fn flops(&self, h: usize, w: usize) -> u64 {
        let mut net = ResNet::empty(*self);
        let (mut h, mut w) = (h, w);
        let mut total = 0u64;
        let mut count = |c: &Conv, h: usize, w: usize| {
            let (oh, ow) = c.out_size(h, w);
            total += 2 * (oh * ow * c.kh * c.kw * c.cin * c.cout) as u64;
            (oh, ow)
        };
        let convs = net.convs_mut();
        (h, w) = count(convs[0], h, w);
        (h, w) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
        for b in &net.blocks {
            if let Some(s) = &b.shortcut {
                count(s, h, w);
            }
            let (h1, w1) = count(&b.conv1, h, w);
            let (h2, w2) = count(&b.conv2, h1, w1);
            (h, w) = count(&b.conv3, h2, w2);
        }
        total
    }

    /// Width of the pooled features (2048 for ResNet-50).
    pub fn features(&self) -> usize {
        self.width * 32
    }
}

/// One bottleneck block: 1×1 → 3×3 → 1×1, plus the shortcut, then ReLU.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub conv1: Conv,
    pub conv2: Conv,
    pub conv3: Conv,
    pub shortcut: Option<Conv>,
}

/// A ResNet with batch norm folded into its convolutions.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNet {
    /// Its shape.
    pub config: ResNetConfig,
    pub(crate) stem: Conv,
    pub(crate) blocks: Vec<Block>,
}

fn conv(k: usize, cin: usize, cout: usize, stride: usize, relu: bool) -> Conv {
    Conv {
        kh: k,
        kw: k,
        cin,
        cout,
        stride,
        pad: Padding::same(k / 2),
        weight: vec![0.0; k * k * cin * cout],
        bias: vec![0.0; cout],
        relu,
        derived: Default::default(),
    }
}

impl ResNet {
    /// The network's convolutions with zero weights, in order: stem, then for every block
    /// conv1, conv2, conv3 and the shortcut where there is one. Loaders fill them in.
    pub fn empty(config: ResNetConfig) -> Self {
        let w = config.width;
        let stem = conv(7, 3, w, 2, true);
        let mut blocks = Vec::new();
        let mut cin = w;
        for (stage, &count) in config.blocks.iter().enumerate() {
            let mid = w << stage;
            let out = mid * 4;
            for b in 0..count {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let (s1, s2) = match config.layout {
                    Layout::Keras => (stride, 1),
                    Layout::Torchvision => (1, stride),
                };
                blocks.push(Block {
                    conv1: conv(1, cin, mid, s1, true),
                    conv2: conv(3, mid, mid, s2, true),
                    conv3: conv(1, mid, out, 1, true),
                    shortcut: (b == 0).then(|| conv(1, cin, out, stride, false)),
                });
                cin = out;
            }
        }
        Self {
            config,
            stem,
            blocks,
        }
    }

    /// Seeded random weights (He-normal; each residual branch's last convolution scaled down
    /// so that activations stay of order one through the 16 blocks without batch statistics).
    pub fn random(config: ResNetConfig, seed: u64) -> Self {
        let mut net = Self::empty(config);
        let mut rng = Rng::new(seed);
        let mut init = |c: &mut Conv, scale: f32| {
            let std = (2.0 / (c.kh * c.kw * c.cin) as f32).sqrt() * scale;
            for w in &mut c.weight {
                *w = rng.normal() * std;
            }
        };
        init(&mut net.stem, 1.0);
        for b in &mut net.blocks {
            init(&mut b.conv1, 1.0);
            init(&mut b.conv2, 1.0);
            init(&mut b.conv3, 0.2);
            if let Some(s) = &mut b.shortcut {
                init(s, 1.0);
            }
        }
        net
    }

    /// All convolutions in loader order (see [`ResNet::empty`]).
    pub fn convs_mut(&mut self) -> Vec<&mut Conv> {
        // Whatever the caller changes, derived weights are recomputed on next use.
        self.stem.derived = Default::default();
        for b in &mut self.blocks {
            for c in [&mut b.conv1, &mut b.conv2, &mut b.conv3] {
                c.derived = Default::default();
            }
            if let Some(s) = &mut b.shortcut {
                s.derived = Default::default();
            }
        }
        let mut out = vec![&mut self.stem];
        for b in &mut self.blocks {
            out.push(&mut b.conv1);
            out.push(&mut b.conv2);
            out.push(&mut b.conv3);
            if let Some(s) = &mut b.shortcut {
                out.push(s);
            }
        }
        out
    }

    /// The stem convolution (7×7, stride 2, ReLU), before the 3×3 max pool.
    pub fn stem(&self) -> &Conv {
        &self.stem
    }

    /// Every bottleneck block in order as (conv1, conv2, conv3, shortcut): the block's
    /// output is `ReLU(conv3(conv2(conv1(x))) + shortcut(x) or x)` (exporters read this).
    pub fn block_convs(&self) -> Vec<(&Conv, &Conv, &Conv, Option<&Conv>)> {
        self.blocks
            .iter()
            .map(|b| (&b.conv1, &b.conv2, &b.conv3, b.shortcut.as_ref()))
            .collect()
    }

    /// Pooled features `[n, features]` of preprocessed images `[n, h, w, 3]`.
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        self.forward_profiled(images, &mut |_, _, _| {})
    }

    /// [`ResNet::forward`], reporting each convolution's shape (`conv3x3/1 64→64 @56x56`;
    /// `conv1x1/1 64→256 +s →64 @56x56` for a block's last made with its shortcut's sums
    /// and the next block's first),
    /// floating-point operations and wall time to `report`: where the time goes, for
    /// `bench encode --layers`.
    pub fn forward_profiled(
        &self,
        images: &Maps,
        report: &mut dyn FnMut(String, u64, Duration),
    ) -> Vec<f32> {
        let shape = |c: &Conv| format!("conv{}x{}/{} {}→{}", c.kh, c.kw, c.stride, c.cin, c.cout);
        let label = |c: &Conv, y: &Maps| format!("{} @{}x{}", shape(c), y.h, y.w);
        let flops =
            |c: &Conv, y: &Maps| 2 * (y.n * y.h * y.w * c.kh * c.kw * c.cin * c.cout) as u64;
        let conv = |c: &Conv, x: &Maps, report: &mut dyn FnMut(String, u64, Duration)| {
            let t = std::time::Instant::now();
            let y = c.forward(x, None);
            report(label(c, &y), flops(c, &y), t.elapsed());
            y
        };
        // Finished maps go back to the buffer pool as soon as nothing reads them.
        let stem = conv(&self.stem, images, report);
        let mut x = max_pool(&stem, 3, 2, Padding::same(1));
        buffers::give(stem.data);
        // The first convolution of an identity block, already made by the block before.
        let mut first: Option<Maps> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let y1 = match first.take() {
                Some(y1) => y1,
                None => conv(&b.conv1, &x, report),
            };
            let y2 = conv(&b.conv2, &y1, report);
            buffers::give(y1.data);
            // The last convolution adds onto the shortcut (made tile by tile alongside) or
            // onto the block's input in place, which nothing reads afterwards; an identity
            // block next reads its output tile by tile as it is made.
            let then = self
                .blocks
                .get(i + 1)
                .filter(|n| n.shortcut.is_none())
                .map(|n| &n.conv1);
            let t = std::time::Instant::now();
            let (out, z) = match &b.shortcut {
                Some(s) => b
                    .conv3
                    .forward_block_end(&y2, Residual::Shortcut(s, &x), then),
                None => {
                    let input = std::mem::take(&mut x);
                    b.conv3.forward_block_end(&y2, Residual::Map(input), then)
                }
            };
            // `conv1x1/1 64→256 +s →64 @56x56`: with the shortcut's sums, and the next
            // block's first convolution.
            let c = &b.conv3;
            let (mut name, mut ops) = (shape(c), flops(c, &out));
            if let Some(s) = &b.shortcut {
                name += " +s";
                ops += flops(s, &out);
            }
            if let (Some(n), Some(z)) = (then, &z) {
                name += &format!(" →{}", n.cout);
                ops += flops(n, z);
            }
            report(format!("{name} @{}x{}", out.h, out.w), ops, t.elapsed());
            buffers::give(std::mem::replace(&mut x, out).data);
            first = z;
            buffers::give(y2.data);
        }
        let features = global_average_pool(&x);
        buffers::give(x.data);
        features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(layout: Layout) -> ResNetConfig {
        ResNetConfig {
            layout,
            width: 4,
            blocks: [1, 2, 1, 1],
        }
    }

    #[test]
    fn resnet50_has_the_published_parameter_count() {
        // torchvision resnet50 without fc: 25,557,032 − 2,049,000 = 23,508,032 parameters,
        // of which 53,120 are batch-norm (gamma, beta) pairs folded here into 26,560 biases.
        let mut net = ResNet::empty(ResNetConfig::resnet50(Layout::Torchvision));
        let weights: usize = net.convs_mut().iter().map(|c| c.weight.len()).sum();
        let bn_channels: usize = net.convs_mut().iter().map(|c| c.cout).sum();
        assert_eq!(weights + 2 * bn_channels, 23_508_032);
        assert_eq!(ResNetConfig::resnet50(Layout::Keras).features(), 2048);
        // Independently counted (a Python loop over the blocks): 7.712 and 8.174 GFLOP.
        assert_eq!(
            ResNetConfig::resnet50(Layout::Keras).flops(224, 224),
            7_711_850_496
        );
        assert_eq!(
            ResNetConfig::resnet50(Layout::Torchvision).flops(224, 224),
            8_174_272_512
        );
    }

    #[test]
    fn batch_equals_one_by_one_and_layouts_differ() {
        let mut rng = Rng::new(1);
        let x = Maps {
            n: 3,
            h: 40,
            w: 36,
            c: 3,
            data: (0..3 * 40 * 36 * 3)
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect(),
        };
        let net = ResNet::random(small(Layout::Keras), 7);
        let all = net.forward(&x);
        assert_eq!(all.len(), 3 * 128);
        assert!(all.iter().all(|v| v.is_finite()));
        let per = 40 * 36 * 3;
        for i in 0..3 {
            let one = Maps {
                n: 1,
                h: 40,
                w: 36,
                c: 3,
                data: x.data[i * per..(i + 1) * per].to_vec(),
            };
            let f = net.forward(&one);
            for (a, b) in f.iter().zip(&all[i * 128..(i + 1) * 128]) {
                assert!((a - b).abs() < 1e-4);
            }
        }
        let other = ResNet::random(small(Layout::Torchvision), 7).forward(&x);
        assert_ne!(all, other);
    }

    #[test]
    fn random_resnet50_features_are_of_order_one() {
        let mut rng = Rng::new(2);
        let x = Maps {
            n: 1,
            h: 224,
            w: 224,
            c: 3,
            data: (0..224 * 224 * 3).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        };
        let f = ResNet::random(ResNetConfig::resnet50(Layout::Keras), 1).forward(&x);
        let mean = f.iter().sum::<f32>() / f.len() as f32;
        assert!(f.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(mean > 1e-3 && mean < 1e3, "mean feature {mean}");
    }
}
