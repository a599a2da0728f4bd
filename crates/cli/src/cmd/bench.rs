//! `autocaption bench`: throughput in the units a user thinks in.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use autocaption_data::{load, LoadOptions, PrepareOptions, Prepared, Split};
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_nn::{Adam, AdamConfig};
use autocaption_tensor::{has_bf16_kernel, Precision, Rng};
use autocaption_train::{bucketed_batches, train_flops_per_batch};

use crate::Global;

/// Measure throughput on this machine (nothing is gated on the numbers).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Training speed of the seed's merge model on synthetic features, with caption lengths
    /// drawn from Flickr8k: captions/s, achieved GFLOP/s, peak memory.
    Train(TrainArgs),
    /// Image-encoder speed: ResNet-50 (seeded random weights, same arithmetic as real ones)
    /// on 224×224 inputs: ms per image at batch 1 and images/s at batch 8.
    Encode(EncodeArgs),
    /// Caption-generation speed of the seed's merge model (vocabulary 4487, seeded random
    /// weights, every caption run to its full length): ms per caption greedy and beam-3 at
    /// batch 1, captions/s at batch 64, and photo → caption end to end.
    Caption(CaptionArgs),
}

/// Options of `bench caption`.
#[derive(Debug, clap::Args)]
struct CaptionArgs {
    /// Vocabulary size (the seed's Flickr8k vocabulary is 4487).
    #[arg(long, default_value_t = 4487)]
    vocab: usize,

    /// Words a caption gets (Flickr8k's mean is 9.2 words, plus the end token: 10 steps).
    #[arg(long, default_value_t = 9)]
    words: usize,

    /// Timed captions at batch 1 (batches of 64 at batch 64).
    #[arg(long, default_value_t = 50)]
    repeats: usize,

    /// How the per-word layers hold their weights: f32, or f16 (half the bytes a word).
    #[arg(long, default_value = "f32")]
    format: autocaption_tensor::WeightFormat,

    /// Photo for the end-to-end time; by default one from
    /// $AUTOCAPTION_SHARED/data/flickr8k/images when set, else a generated image.
    #[arg(long, value_name = "FILE")]
    photo: Option<PathBuf>,
}

fn bench_caption(args: CaptionArgs, global: Global) -> anyhow::Result<()> {
    use autocaption_model::{DecodeOptions, Decoder};
    use autocaption_vision::{batch, load_rgb, Layout, Preset, ResNet, ResNetConfig};
    if args.repeats == 0 || args.vocab < 3 {
        bail!("--repeats must be at least 1 and --vocab at least 3");
    }
    let mut model = MergeModel::new(MergeConfig::seed(args.vocab), 0);
    // Token 2 ends captions; pushed out of reach so every caption runs its full length.
    let end = 2;
    model.output.bias.value[end as usize] = -1e4;
    let decoder = Decoder::with_format(&model, 1, end, args.format)?;
    let dim = model.config.feature_dim;
    let mut rng = Rng::new(1);
    let feats: Vec<f32> = (0..64 * dim).map(|_| rng.uniform(0.0, 2.0)).collect();
    let steps = args.words + 1;
    if !global.quiet {
        println!(
            "bench caption: merge model, vocabulary {}, {} parameters, per-word weights in {}; {} words a caption ({} steps), best of {} repeats",
            args.vocab,
            autocaption_pipeline::summary::thousands(model.parameter_count()),
            args.format,
            args.words,
            steps,
            args.repeats
        );
    }
    let best = |f: &mut dyn FnMut()| {
        f();
        (0..args.repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let mut i = 0;
    let one = |i: &mut usize| {
        *i = (*i + 1) % 64;
        &feats[*i * dim..(*i + 1) * dim]
    };
    let greedy = best(&mut || {
        let h = decoder.greedy(one(&mut i), args.words);
        assert_eq!(h[0].tokens.len(), args.words);
    });
    let beam_opts = DecodeOptions {
        max_words: args.words,
        beam: 3,
        ..DecodeOptions::default()
    };
    let beam = best(&mut || {
        decoder.beam(one(&mut i), &beam_opts);
    });
    let batch64 = best(&mut || {
        decoder.greedy(&feats, args.words);
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
    let read = best(&mut || {
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
    // The floor for the bytes the decoder really reads a step (half as many in f16).
    let rate = bytes as f64 / read;
    let step_bytes = decoder.step_bytes() as f64;
    println!(
        "memory floor       {:>9.2} ms per caption ({:.1} MB of weights a step, read at {:.1} GB/s here)",
        step_bytes / rate * steps as f64 * 1e3,
        step_bytes / 1e6,
        rate / 1e9
    );
    println!("greedy, batch 1    {:>9.2} ms per caption", greedy * 1e3);
    println!("beam 3, batch 1    {:>9.2} ms per caption", beam * 1e3);
    println!("greedy, batch 64   {:>9.0} captions/s", 64.0 / batch64);

    // End to end: decode the photo, preprocess, ResNet-50, greedy caption.
    let photo = match &args.photo {
        Some(p) => Some(p.clone()),
        None => std::env::var_os("AUTOCAPTION_SHARED").and_then(|d| {
            let dir = PathBuf::from(d).join("data/flickr8k/images");
            let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
                .collect();
            names.sort();
            names.into_iter().next()
        }),
    };
    let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), 0);
    let preset = Preset::for_layout(Layout::Keras);
    let generated = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let encode_and_caption = |img: &image::RgbImage| {
        let x = batch(&[preset.apply(img)], preset.size());
        let f = net.forward(&x);
        decoder.greedy(&f, args.words)
    };
    let repeats = args.repeats.min(10);
    let mut e2e = f64::MAX;
    for r in 0..=repeats {
        let t = Instant::now();
        let img = match &photo {
            Some(p) => load_rgb(p)?,
            None => generated.clone(),
        };
        encode_and_caption(&img);
        if r > 0 {
            e2e = e2e.min(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "photo → caption    {:>9.1} ms ({}: decode, preprocess, ResNet-50, greedy)",
        e2e * 1e3,
        photo
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "a generated 500×375 image".into())
    );
    Ok(())
}

/// Options of `bench encode`.
#[derive(Debug, clap::Args)]
struct EncodeArgs {
    /// Weight layout (the arithmetic is the same; the stride placement differs slightly).
    #[arg(long, default_value = "keras", value_parser = ["keras", "torchvision"])]
    layout: String,

    /// Timed repetitions of each measurement.
    #[arg(long, default_value_t = 10)]
    repeats: usize,

    /// Run every 3×3 convolution as a direct product, without the Winograd transform.
    #[arg(long)]
    no_winograd: bool,

    /// Also print where the time goes: time and GFLOP/s per convolution shape, at batch 1
    /// and at batch 8.
    #[arg(long)]
    layers: bool,
}

fn bench_encode(args: EncodeArgs, global: Global) -> anyhow::Result<()> {
    use autocaption_vision::{Layout, Maps, ResNet, ResNetConfig};
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let layout = if args.layout == "keras" {
        Layout::Keras
    } else {
        Layout::Torchvision
    };
    autocaption_vision::set_winograd(!args.no_winograd);
    let config = ResNetConfig::resnet50(layout);
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
    if !global.quiet {
        println!(
            "bench encode: ResNet-50 ({} layout), 224×224, f32, 3×3 convolutions {}, {} repeats, best of",
            args.layout,
            if args.no_winograd { "direct" } else { "Winograd F(2×2,3×3) where it pays" },
            args.repeats
        );
    }
    rayon::scope(|_| {
        let time = |x: &Maps| {
            net.forward(x);
            (0..args.repeats)
                .map(|_| {
                    let t = Instant::now();
                    net.forward(x);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let t1 = time(&one);
        let t8 = time(&eight);
        println!("batch 1           {:>10.1} ms per image", t1 * 1e3);
        println!("batch 8           {:>10.1} images/s", 8.0 / t8);
        println!(
            "achieved          {:>10.1} GFLOP/s at batch 8 ({:.2} GFLOP an image)",
            8.0 * gflop / t8,
            gflop
        );
        if args.layers {
            profile_layers(&net, &one, args.repeats);
            profile_layers(&net, &eight, args.repeats);
        }
    });
    if !global.quiet {
        println!(
            "references: run tools/bench_ort_resnet50.py for ONNX Runtime and TensorFlow on this machine"
        );
    }
    Ok(())
}

/// Prints time and GFLOP/s per distinct convolution shape (summed over the blocks that
/// share it), in network order, averaged over `repeats` passes on `x`.
fn profile_layers(net: &autocaption_vision::ResNet, x: &autocaption_vision::Maps, repeats: usize) {
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
    println!(
        "{:<32} {:>10} {:>8} {:>10}",
        format!("batch {}, per pass", x.n),
        "ms",
        "share",
        "GFLOP/s"
    );
    println!("  (a block's last 1×1 with its shortcut (+s) and the next block's first (→c): made tile by tile where that pays)");
    for (name, secs, flops) in &rows {
        println!(
            "{name:<32} {:>10.2} {:>7.1}% {:>10.1}",
            secs / repeats as f64 * 1e3,
            100.0 * secs / total,
            *flops as f64 / secs / 1e9
        );
    }
}

/// Options of `bench train`.
#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// Captions per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,

    /// Vocabulary size (the seed's Flickr8k vocabulary is 4487).
    #[arg(long, default_value_t = 4487)]
    vocab: usize,

    /// Timed batches (after 2 warm-up batches).
    #[arg(long, default_value_t = 30)]
    batches: usize,

    /// Give every caption this many positions instead of real lengths (30 = the seed's
    /// fixed teacher-forcing window).
    #[arg(long, value_name = "STEPS")]
    fixed_len: Option<usize>,

    /// With --fixed-len: do exactly Keras' teacher-forcing work, every position computed and
    /// scored (our masked path computes nothing past a caption's end; this turns that off by
    /// making every caption full length).
    #[arg(long, requires = "fixed_len")]
    no_mask: bool,

    /// Flickr8k directory to take caption lengths from; by default
    /// $AUTOCAPTION_SHARED/data/flickr8k when set, else a built-in histogram of the same.
    #[arg(long, value_name = "DIR")]
    lengths_from: Option<PathBuf>,

    /// Arithmetic of the matrix products: f32, or bf16 with f32 accumulation.
    #[arg(long, default_value = "f32")]
    precision: Precision,

    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Flickr8k caption lengths in words, start and end tokens included (training split, seed
/// cleaning): `FLICKR8K_LENGTHS[n]` captions have `n` words. Mean 11.2, max 34.
const FLICKR8K_LENGTHS: [u64; 35] = [
    0, 0, 2, 5, 103, 471, 1382, 2767, 4029, 4732, 5188, 4855, 4344, 3524, 2768, 2011, 1446, 970,
    657, 399, 297, 191, 108, 65, 49, 35, 21, 11, 13, 5, 4, 2, 0, 0, 1,
];

fn caption_lengths(args: &TrainArgs) -> anyhow::Result<(Vec<u64>, String)> {
    let dir = args.lengths_from.clone().or_else(|| {
        std::env::var_os("AUTOCAPTION_SHARED").map(|s| PathBuf::from(s).join("data/flickr8k"))
    });
    if let Some(dir) = dir {
        let ds = load(&dir, &LoadOptions::default())?;
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
        return Ok((
            hist,
            format!("Flickr8k training captions in {}", dir.display()),
        ));
    }
    Ok((
        FLICKR8K_LENGTHS.to_vec(),
        "built-in Flickr8k length histogram".into(),
    ))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn bench_train(args: TrainArgs, global: Global) -> anyhow::Result<()> {
    if args.batch == 0 || args.batches == 0 || args.vocab < 3 {
        bail!("--batch and --batches must be at least 1, --vocab at least 3");
    }
    let mut rng = Rng::new(args.seed);
    let (hist, source) = caption_lengths(&args)?;
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
    let n = args.batch * (args.batches + 2);
    let lengths: Vec<usize> = (0..n)
        .map(|_| match args.fixed_len {
            Some(steps) => steps + 1,
            None => sample_len(&mut rng).max(2),
        })
        .collect();
    let captions: Vec<Vec<u32>> = lengths
        .iter()
        .map(|&l| {
            (0..l)
                .map(|_| 1 + rng.below(args.vocab - 1) as u32)
                .collect()
        })
        .collect();
    let config = MergeConfig::seed(args.vocab);
    let features: Vec<f32> = (0..args.batch * config.feature_dim)
        .map(|_| rng.uniform(0.0, 2.0))
        .collect();
    let mut model = MergeModel::new(config.clone(), args.seed);
    model.set_precision(args.precision);
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(AdamConfig::default(), &sizes);
    let batches = bucketed_batches(&lengths, args.batch, &mut rng);

    if !global.quiet {
        let mode = match args.fixed_len {
            Some(s) => format!(
                "fixed {s} positions, softmax at every one{}",
                if args.no_mask { " (no mask)" } else { "" }
            ),
            None => format!("real lengths from the {source}, masked"),
        };
        let precision = match args.precision {
            Precision::F32 => "f32".to_string(),
            Precision::Bf16 if has_bf16_kernel() => {
                "bf16 operands, f32 accumulation (AVX512_BF16 kernel)".into()
            }
            Precision::Bf16 => {
                "bf16 operands, f32 accumulation (no AVX512_BF16 here: emulated, slow)".into()
            }
        };
        println!(
            "bench train: seed model (V = {}, {} parameters), batch {}, {mode}, {precision}",
            args.vocab,
            model.parameter_count(),
            args.batch
        );
    }
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
    println!("captions/s        {:>10.1}", timed_caps as f64 / secs);
    println!("positions/s       {:>10.1}", timed_pos as f64 / secs);
    println!(
        "mean positions    {:>10.2} per caption",
        timed_pos as f64 / timed_caps as f64
    );
    println!(
        "achieved          {:>10.1} GFLOP/s (matrix products, forward + backward)",
        flops / secs / 1e9
    );
    println!(
        "time per batch    {:>10.1} ms",
        secs * 1e3 / (batches.len() - 2) as f64
    );
    if let Some(mb) = peak_rss_mb() {
        println!("peak memory       {:>10.0} MB (resident)", mb);
    }
    if !global.quiet {
        println!("reference, same machine class: Keras 2.15 teacher forcing at 30 fixed steps, batch 64: 198 captions/s; the seed's prefix-sample training: 363 samples/s (~33 captions/s)");
    }
    Ok(())
}

/// Runs `bench`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    match args.what {
        What::Train(a) => bench_train(a, global),
        What::Encode(a) => bench_encode(a, global),
        What::Caption(a) => bench_caption(a, global),
    }
}
