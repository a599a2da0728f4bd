//! Throughput measurements in the units a user thinks in (`autocaption bench`): training
//! speed of the merge model, image-encoder speed, caption-generation speed. Each returns
//! its numbers; nothing is gated on them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use autocaption_data::{load, LoadOptions, PrepareOptions, Prepared, Split};
use autocaption_model::{DecodeOptions, Decoder, MergeConfig, MergeModel};
use autocaption_nn::{Adam, AdamConfig};
use autocaption_tensor::{Precision, Rng, WeightFormat};
use autocaption_train::{bucketed_batches, train_flops_per_batch};
use autocaption_vision::{
    batch, load_rgb, Calibrator, Layout, Maps, Preset, QuantizedResNet, ResNet, ResNetConfig,
};
use serde::Serialize;

use crate::{Encoder, Error, Result};

/// The best of `repeats` timed runs of `f`, after one untimed run.
fn best_of(repeats: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// Settings of [`bench_caption`].
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionBench {
    /// Vocabulary size (the seed's Flickr8k vocabulary is 4487).
    pub vocab: usize,
    /// Words a caption gets.
    pub words: usize,
    /// Timed captions at batch 1 (batches of 64 at batch 64).
    pub repeats: usize,
    /// How the per-word layers hold their weights.
    pub format: WeightFormat,
    /// Photo for the end-to-end time (`None`: a generated 500×375 image).
    pub photo: Option<PathBuf>,
}

/// What [`bench_caption`] measured (seconds).
#[derive(Debug, Clone, Serialize)]
pub struct CaptionBenchReport {
    /// Parameters of the model.
    pub parameters: usize,
    /// Bytes of weights a step reads.
    pub step_bytes: usize,
    /// Read bandwidth measured here, bytes/s.
    pub read_bandwidth: f64,
    /// The memory floor of one caption at batch 1: its steps' bytes at that bandwidth.
    pub floor: f64,
    /// Greedy, batch 1, a caption.
    pub greedy: f64,
    /// Beam 3, batch 1, a caption.
    pub beam3: f64,
    /// Greedy, a batch of 64 captions.
    pub greedy_batch64: f64,
    /// Photo → caption: decode, preprocess, ResNet-50, greedy.
    pub end_to_end: f64,
}

/// Caption-generation speed of the seed's merge model (seeded random weights, every caption
/// run to its full length), and photo → caption end to end with ResNet-50.
pub fn bench_caption(s: &CaptionBench) -> Result<CaptionBenchReport> {
    if s.repeats == 0 || s.vocab < 3 || s.words == 0 {
        return Err(Error::Invalid(
            "--repeats and --words must be at least 1 and --vocab at least 3".into(),
        ));
    }
    let mut model = MergeModel::new(MergeConfig::seed(s.vocab), 0);
    // Token 2 ends captions; pushed out of reach so every caption runs its full length.
    let end = 2;
    model.output.bias.value[end as usize] = -1e4;
    let decoder = Decoder::with_format(&model, 1, end, s.format)?;
    let dim = model.config.feature_dim;
    let mut rng = Rng::new(1);
    let feats: Vec<f32> = (0..64 * dim).map(|_| rng.uniform(0.0, 2.0)).collect();
    let steps = s.words + 1;
    let mut i = 0;
    let one = |i: &mut usize| {
        *i = (*i + 1) % 64;
        &feats[*i * dim..(*i + 1) * dim]
    };
    let greedy = best_of(s.repeats, &mut || {
        let h = decoder.greedy(one(&mut i), s.words);
        assert_eq!(
            h[0].tokens.len(),
            s.words,
            "every caption runs its full length"
        );
    });
    let beam_opts = DecodeOptions {
        max_words: s.words,
        beam: 3,
        ..DecodeOptions::default()
    };
    let beam3 = best_of(s.repeats, &mut || {
        decoder.beam(one(&mut i), &beam_opts);
    });
    let greedy_batch64 = best_of(s.repeats, &mut || {
        decoder.greedy(&feats, s.words);
    });
    // At batch 1 every step streams the weights of the LSTMs, the text Dense and the output
    // layer from memory: the floor is that many bytes at this machine's read bandwidth.
    let streamed: Vec<&[f32]> = model
        .named_params()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("embedding") && !n.starts_with("image_dense"))
        .map(|(_, p)| p.value.as_slice())
        .collect();
    let bytes: usize = streamed.iter().map(|p| 4 * p.len()).sum();
    let read = best_of(s.repeats, &mut || {
        use rayon::prelude::*;
        let sum: f32 = streamed
            .par_iter()
            .flat_map(|p| p.par_chunks(1 << 14))
            .map(|c| {
                let mut acc = [0.0f32; 16];
                for v in c.chunks_exact(16) {
                    for (a, &x) in acc.iter_mut().zip(v) {
                        *a += x;
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(sum);
    });
    let read_bandwidth = bytes as f64 / read;
    let step_bytes = decoder.step_bytes();

    // End to end: decode the photo, preprocess, ResNet-50, greedy caption.
    let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), 0);
    let preset = Preset::for_layout(Layout::Keras);
    let generated = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut end_to_end = f64::MAX;
    for r in 0..=s.repeats.min(10) {
        let t = Instant::now();
        let img = match &s.photo {
            Some(p) => load_rgb(p)?,
            None => generated.clone(),
        };
        let f = net.forward(&batch(&[preset.apply(&img)], preset.size()));
        decoder.greedy(&f, s.words);
        if r > 0 {
            end_to_end = end_to_end.min(t.elapsed().as_secs_f64());
        }
    }
    Ok(CaptionBenchReport {
        parameters: model.parameter_count(),
        step_bytes,
        read_bandwidth,
        floor: step_bytes as f64 / read_bandwidth * steps as f64,
        greedy,
        beam3,
        greedy_batch64,
        end_to_end,
    })
}

/// Settings of [`bench_encode`].
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeBench {
    /// Weight layout (the arithmetic is the same; the stride placement differs slightly).
    pub layout: Layout,
    /// Timed repetitions of each measurement.
    pub repeats: usize,
    /// Use the Winograd transform for 3×3 convolutions where it pays.
    pub winograd: bool,
    /// Also measure time per convolution shape (f32 only).
    pub layers: bool,
    /// Run the network in int8, calibrated on these photos (preprocessed for the layout),
    /// or, when there are none, on the bench's own batch of 8 random images.
    pub int8: Option<Vec<PathBuf>>,
}

/// Time spent in one convolution shape (summed over the blocks that share it).
#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    /// The shape.
    pub name: String,
    /// Seconds a pass.
    pub seconds: f64,
    /// Share of the pass.
    pub share: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
}

/// What [`bench_encode`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeBenchReport {
    /// GFLOP an image.
    pub gflop: f64,
    /// Seconds an image at batch 1.
    pub batch1: f64,
    /// Seconds a batch of 8.
    pub batch8: f64,
    /// With `layers`: per-shape times at batch 1 and at batch 8.
    pub layers: Option<[Vec<LayerTime>; 2]>,
}

/// Image-encoder speed: ResNet-50 (seeded random weights, the same arithmetic as real ones)
/// on 224×224 inputs.
pub fn bench_encode(s: &EncodeBench) -> Result<EncodeBenchReport> {
    if s.repeats == 0 {
        return Err(Error::Invalid("--repeats must be at least 1".into()));
    }
    if s.layers && s.int8.is_some() {
        return Err(Error::Invalid(
            "--layers times the f32 network; leave it out with --precision int8".into(),
        ));
    }
    autocaption_vision::set_winograd(s.winograd);
    let config = ResNetConfig::resnet50(s.layout);
    let net = ResNet::random(config, 0);
    let gflop = config.flops(224, 224) as f64 / 1e9;
    let mut rng = Rng::new(0);
    let image = |n: usize, rng: &mut Rng| Maps {
        n,
        h: 224,
        w: 224,
        c: 3,
        data: (0..n * 224 * 224 * 3)
            .map(|_| rng.uniform(-120.0, 150.0))
            .collect(),
    };
    let (one, eight) = (image(1, &mut rng), image(8, &mut rng));
    let int8 = match &s.int8 {
        None => None,
        Some(paths) => {
            let calibration = if paths.is_empty() {
                let mut c = Calibrator::new(crate::encoder::DEFAULT_RANGES);
                rayon::scope(|_| c.observe(&net, &eight));
                c.finish().expect("eight images observed")
            } else if s.layout != Layout::Keras {
                return Err(Error::Invalid(
                    "int8 calibration photos are read for the Keras layout; leave out --layout"
                        .into(),
                ));
            } else {
                let encoder = Encoder::random_resnet(0);
                encoder.calibrate(
                    paths,
                    crate::encoder::DEFAULT_RANGES,
                    &autocaption_io::NoProgress,
                )?
            };
            Some(
                QuantizedResNet::new(&net, &calibration)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            )
        }
    };
    let forward = |x: &Maps| match &int8 {
        Some(q) => q.forward(x),
        None => net.forward(x),
    };
    Ok(rayon::scope(|_| {
        let batch1 = best_of(s.repeats, &mut || {
            forward(&one);
        });
        let batch8 = best_of(s.repeats, &mut || {
            forward(&eight);
        });
        let layers = s.layers.then(|| {
            [
                profile_layers(&net, &one, s.repeats),
                profile_layers(&net, &eight, s.repeats),
            ]
        });
        EncodeBenchReport {
            gflop,
            batch1,
            batch8,
            layers,
        }
    }))
}

/// Time and GFLOP/s per distinct convolution shape, in network order, averaged over
/// `repeats` passes on `x`.
fn profile_layers(net: &ResNet, x: &Maps, repeats: usize) -> Vec<LayerTime> {
    let mut rows: Vec<(String, f64, u64)> = Vec::new();
    for _ in 0..repeats {
        net.forward_profiled(
            x,
            &mut |name, flops, d| match rows.iter_mut().find(|r| r.0 == name) {
                Some(r) => {
                    r.1 += d.as_secs_f64();
                    r.2 += flops;
                }
                None => rows.push((name, d.as_secs_f64(), flops)),
            },
        );
    }
    let total: f64 = rows.iter().map(|r| r.1).sum();
    rows.into_iter()
        .map(|(name, secs, flops)| LayerTime {
            name,
            seconds: secs / repeats as f64,
            share: secs / total,
            gflops: flops as f64 / secs / 1e9,
        })
        .collect()
}

/// Settings of [`bench_train`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBench {
    /// Captions per batch.
    pub batch: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Timed batches (after 2 warm-up batches).
    pub batches: usize,
    /// Give every caption this many positions instead of real lengths.
    pub fixed_len: Option<usize>,
    /// Flickr8k directory to take caption lengths from (`None`: a built-in histogram).
    pub lengths_from: Option<PathBuf>,
    /// Arithmetic of the matrix products.
    pub precision: Precision,
    /// Seed.
    pub seed: u64,
}

/// What [`bench_train`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchReport {
    /// Parameters of the model.
    pub parameters: usize,
    /// Where the caption lengths came from.
    pub lengths_source: String,
    /// Captions a second.
    pub captions_per_second: f64,
    /// Positions (predicted words) a second.
    pub positions_per_second: f64,
    /// Mean positions a caption.
    pub mean_positions: f64,
    /// Achieved GFLOP/s of the matrix products, forward and backward.
    pub gflops: f64,
    /// Seconds a batch.
    pub seconds_per_batch: f64,
    /// Peak resident memory, MB (Linux).
    pub peak_rss_mb: Option<f64>,
}

/// Flickr8k caption lengths in words, start and end tokens included (training split, seed
/// cleaning): `FLICKR8K_LENGTHS[n]` captions have `n` words. Mean 11.2, max 34.
const FLICKR8K_LENGTHS: [u64; 35] = [
    0, 0, 2, 5, 103, 471, 1382, 2767, 4029, 4732, 5188, 4855, 4344, 3524, 2768, 2011, 1446, 970,
    657, 399, 297, 191, 108, 65, 49, 35, 21, 11, 13, 5, 4, 2, 0, 0, 1,
];

/// Histogram of the training captions' lengths (tokens) of the dataset in `dir`.
fn caption_lengths(dir: Option<&Path>) -> Result<(Vec<u64>, String)> {
    let Some(dir) = dir else {
        return Ok((
            FLICKR8K_LENGTHS.to_vec(),
            "built-in Flickr8k length histogram".into(),
        ));
    };
    let ds = load(dir, &LoadOptions::default())?;
    let p = Prepared::build(&ds, &PrepareOptions::default())?;
    let mut hist = vec![0u64; 1];
    for img in p.images.iter().filter(|i| i.split == Some(Split::Train)) {
        for t in &img.tokens {
            if hist.len() <= t.len() {
                hist.resize(t.len() + 1, 0);
            }
            hist[t.len()] += 1;
        }
    }
    Ok((
        hist,
        format!("Flickr8k training captions in {}", dir.display()),
    ))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Training speed of the seed's merge model on random features, with caption lengths drawn
/// from Flickr8k's (or fixed).
pub fn bench_train(s: &TrainBench) -> Result<TrainBenchReport> {
    if s.batch == 0 || s.batches == 0 || s.vocab < 3 {
        return Err(Error::Invalid(
            "--batch and --batches must be at least 1, --vocab at least 3".into(),
        ));
    }
    if s.batch > 4096 || s.batches > 100_000 || s.vocab > 1_000_000 {
        return Err(Error::Invalid(
            "--batch is at most 4096, --batches at most 100000, --vocab at most 1000000".into(),
        ));
    }
    if let Some(steps) = s.fixed_len.filter(|&l| l == 0 || l > 1000) {
        return Err(Error::Invalid(format!(
            "--fixed-len {steps}: expected 1 to 1000 positions"
        )));
    }
    let mut rng = Rng::new(s.seed);
    let (hist, lengths_source) = caption_lengths(s.lengths_from.as_deref())?;
    let total: u64 = hist.iter().sum();
    let sample_len = |rng: &mut Rng| -> usize {
        let mut k = (rng.uniform(0.0, 1.0) * total as f32) as u64;
        for (len, &c) in hist.iter().enumerate() {
            if k < c {
                return len;
            }
            k -= c;
        }
        hist.len() - 1
    };
    let n = s.batch * (s.batches + 2);
    let lengths: Vec<usize> = (0..n)
        .map(|_| match s.fixed_len {
            Some(steps) => steps + 1,
            None => sample_len(&mut rng).max(2),
        })
        .collect();
    let captions: Vec<Vec<u32>> = lengths
        .iter()
        .map(|&l| (0..l).map(|_| 1 + rng.below(s.vocab - 1) as u32).collect())
        .collect();
    let config = MergeConfig::seed(s.vocab);
    let features: Vec<f32> = (0..s.batch * config.feature_dim)
        .map(|_| rng.uniform(0.0, 2.0))
        .collect();
    let mut model = MergeModel::new(config.clone(), s.seed);
    model.set_precision(s.precision);
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(AdamConfig::default(), &sizes);
    let batches = bucketed_batches(&lengths, s.batch, &mut rng);
    let (mut timed_caps, mut timed_pos, mut flops) = (0usize, 0usize, 0.0f64);
    // Run on a worker of the thread pool, so that the products' parallel parts fork from a
    // worker rather than waking the pool from outside for every product.
    let started = rayon::scope(|_| {
        let mut started = Instant::now();
        for (k, batch) in batches.iter().enumerate() {
            if k == 2 {
                started = Instant::now();
            }
            let refs: Vec<&[u32]> = batch.iter().map(|&i| captions[i].as_slice()).collect();
            let feats = &features[..batch.len() * config.feature_dim];
            model.zero_grad();
            model.train_batch(&refs, feats, &mut rng);
            adam.update(&mut model.params_mut());
            if k >= 2 {
                let positions: usize = refs.iter().map(|c| c.len() - 1).sum();
                timed_caps += batch.len();
                timed_pos += positions;
                flops += train_flops_per_batch(&config, batch.len(), positions);
            }
        }
        started
    });
    let secs = started.elapsed().as_secs_f64();
    Ok(TrainBenchReport {
        parameters: model.parameter_count(),
        lengths_source,
        captions_per_second: timed_caps as f64 / secs,
        positions_per_second: timed_pos as f64 / secs,
        mean_positions: timed_pos as f64 / timed_caps as f64,
        gflops: flops / secs / 1e9,
        seconds_per_batch: secs / (batches.len() - 2) as f64,
        peak_rss_mb: peak_rss_mb(),
    })
}
