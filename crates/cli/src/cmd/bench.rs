//! `autocaption bench`: throughput in the units a user thinks in.

use std::path::PathBuf;

use autocaption_pipeline::bench::{
    bench_caption, bench_encode, bench_train, CaptionBench, EncodeBench, LayerTime, TrainBench,
};
use autocaption_pipeline::summary::thousands;
use autocaption_tensor::{has_bf16_kernel, Precision, WeightFormat};
use autocaption_vision::Layout;

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
    /// Generated C against ONNX Runtime and our engine on the same model and inputs:
    /// compiles each model, builds it with --cc and --cflags, times a call (best and median),
    /// and times ONNX Runtime (1 intra-op thread and its default) through a Python that has
    /// `onnxruntime`, and our engine where it runs the same model; prints the ratios.
    Compiled(CompiledArgs),
    /// The C captioner of `compile --captioner` against the Rust engine, photo → caption on
    /// one thread each, on the same decoded pixels: identical captions, and the time a call.
    Captioner(CaptionerArgs),
    /// `serve` under load, on loopback in this process: throughput and p50/p95/p99 latency
    /// at each concurrency, without and with batching, beside `caption` on the same photos
    /// in one batch run and one photo a call (the library calls `caption` makes).
    Serve(ServeArgs),
}

/// Options of `bench serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Model directory.
    #[arg(long, short)]
    model: PathBuf,

    /// The encoder weights (see `caption --weights`); by default the model's.
    #[arg(long)]
    weights: Option<String>,

    /// Seed of `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Photos (files or folders) sent in turn; by default the Flickr8k photos under
    /// $AUTOCAPTION_SHARED/data/flickr8k/images.
    photos: Vec<PathBuf>,

    /// Concurrent clients (one keep-alive connection each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,

    /// Requests a cell.
    #[arg(long, default_value_t = 210)]
    requests: usize,

    /// Most seconds a cell runs.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,

    /// Beam width of every request.
    #[arg(long, default_value_t = 3)]
    beam: usize,

    /// Most images a batch, with batching.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,

    /// Batch window, ms, with batching.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
}

fn serve(args: ServeArgs, global: Global) -> anyhow::Result<()> {
    use autocaption_serve::bench::{bench_serve, ServeBench};
    use autocaption_serve::ServeSettings;
    let photos = if args.photos.is_empty() {
        let Some(dir) = std::env::var_os("AUTOCAPTION_SHARED")
            .map(|d| PathBuf::from(d).join("data/flickr8k/images"))
            .filter(|d| d.is_dir())
        else {
            anyhow::bail!("name the photos to send (files or folders), or set AUTOCAPTION_SHARED");
        };
        autocaption_pipeline::expand_photos(&[dir])?
    } else {
        autocaption_pipeline::expand_photos(&args.photos)?
    };
    let options = autocaption_pipeline::CaptionOptions {
        beam: args.beam,
        ..Default::default()
    };
    let settings = ServeSettings {
        max_batch: args.max_batch,
        batch_wait: std::time::Duration::from_millis(args.batch_wait_ms),
        defaults: options,
        ..Default::default()
    };
    let s = ServeBench {
        concurrency: args.concurrency.clone(),
        requests: args.requests,
        seconds: args.seconds,
        settings,
        options,
    };
    s.settings.validate()?;
    let weights = args
        .weights
        .as_deref()
        .map(|w| autocaption_pipeline::EncoderSource::parse(w, args.seed));
    let captioner = std::sync::Arc::new(autocaption_pipeline::Captioner::load(
        &args.model,
        weights.as_ref(),
    )?);
    let bar = crate::progress::Bar::new(global.quiet);
    let r = bench_serve(captioner, &photos, &s, &bar)?;
    println!(
        "bench serve: {} photos, {}, {} requests a cell (at most {} s), loopback",
        r.photos,
        options.label(),
        args.requests,
        args.seconds
    );
    println!(
        "caption, one batch run:   {:>7.1} captions/s",
        r.batch_per_second
    );
    println!(
        "caption, one photo a call: median {:.1} ms, p99 {:.1} ms",
        r.single_median_ms, r.single_p99_ms
    );
    println!(
        "{:<9} {:>5} {:>6} {:>6} {:>10} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "batching",
        "conc",
        "ok",
        "failed",
        "captions/s",
        "÷ batch",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "batch"
    );
    for row in &r.rows {
        println!(
            "{:<9} {:>5} {:>6} {:>6} {:>10.1} {:>8.2}× {:>8.1} {:>8.1} {:>8.1} {:>7.2}",
            if row.batching { "on" } else { "off" },
            row.concurrency,
            row.ok,
            row.failed,
            row.per_second,
            row.per_second / r.batch_per_second,
            row.p50_ms,
            row.p95_ms,
            row.p99_ms,
            row.mean_batch
        );
    }
    for row in r.rows.iter().filter(|r| r.concurrency == 1) {
        println!(
            "batching {}: p99 at concurrency 1 is {:.2}× one photo's median, {:.2}× its p99",
            if row.batching { "on" } else { "off" },
            row.p99_ms / r.single_median_ms,
            row.p99_ms / r.single_p99_ms
        );
    }
    Ok(())
}

/// Options of `bench compiled`.
#[derive(Debug, clap::Args)]
struct CompiledArgs {
    /// What to run: `decoder` (the seed's decoder.onnx at N=1), `step` (a greedy caption
    /// through decoder_step.onnx), `encoder` (ResNet-50 encoder.onnx), or an ONNX file
    /// (repeatable; default: decoder and step).
    #[arg(long = "model", value_name = "WHICH|FILE.onnx")]
    models: Vec<String>,

    /// Where the weights go: embed (in the C file) or external (a NAME.weights blob).
    #[arg(long, default_value = "embed")]
    weights: autocaption_compiler::WeightStorage,

    /// Store the weights as per-output-channel int8 (see `compile --quantize`).
    #[arg(long, value_name = "int8")]
    quantize: Option<autocaption_compiler::Quantize>,

    /// The C compiler.
    #[arg(long, default_value = "cc")]
    cc: String,

    /// Flags for the C compiler, one string (e.g. "-O2 -march=native").
    #[arg(long, default_value = "-std=c99 -O2", allow_hyphen_values = true)]
    cflags: String,

    /// Timed calls (after one untimed); best and median are reported.
    #[arg(long, default_value_t = 20)]
    repeats: usize,

    /// Words of the greedy caption (one more step checks for the end, as the engine does).
    #[arg(long, default_value_t = 10)]
    words: usize,

    /// Vocabulary of the seed's merge model.
    #[arg(long, default_value_t = 4487)]
    vocab: usize,

    /// Leading symbolic dimension of an ONNX file's inputs.
    #[arg(long, default_value_t = 1)]
    batch: usize,

    /// A Python with `onnxruntime` for the reference (default: python3, then skipped if it
    /// lacks onnxruntime).
    #[arg(long, default_value = "python3")]
    python: String,

    /// Keep the generated code, harness and inputs here (default: a temporary folder).
    #[arg(long)]
    keep: Option<PathBuf>,
}

fn compiled(args: CompiledArgs, global: Global) -> anyhow::Result<()> {
    use autocaption_pipeline::bench_compiled::{bench_compiled, CompiledBench, CompiledModel};
    if args.repeats == 0 || args.repeats > 100_000 {
        anyhow::bail!("--repeats {}: expected 1 to 100000", args.repeats);
    }
    if args.words == 0 || args.words > 200 {
        anyhow::bail!("--words {}: expected 1 to 200", args.words);
    }
    if !(3..=1_000_000).contains(&args.vocab) {
        anyhow::bail!("--vocab {}: expected 3 to 1000000", args.vocab);
    }
    if args.batch == 0 || args.batch > 4096 {
        anyhow::bail!("--batch {}: expected 1 to 4096", args.batch);
    }
    let names = if args.models.is_empty() {
        vec!["decoder".to_string(), "step".to_string()]
    } else {
        args.models.clone()
    };
    let mut models = Vec::new();
    for m in &names {
        models.push(match m.as_str() {
            "decoder" => CompiledModel::Decoder,
            "step" => CompiledModel::Step,
            "encoder" => CompiledModel::Encoder,
            file => {
                let p = PathBuf::from(file);
                if !p.is_file() {
                    anyhow::bail!(
                        "--model {file}: not decoder, step, encoder or an existing ONNX file"
                    );
                }
                CompiledModel::File(p)
            }
        });
    }
    let (_temp, work) = work_dir(args.keep.as_deref())?;
    let s = CompiledBench {
        models,
        vocab: args.vocab,
        words: args.words,
        repeats: args.repeats,
        cc: args.cc.clone(),
        cflags: args.cflags.split_whitespace().map(String::from).collect(),
        weights: args.weights,
        quantize: args.quantize,
        batch: args.batch,
        python: Some(args.python.clone()),
        work,
    };
    if !global.quiet {
        println!(
            "bench compiled: {} {}, weights {}{}, best and median of {} calls, seconds as ms",
            args.cc,
            args.cflags,
            args.weights,
            if args.quantize.is_some() { " int8" } else { "" },
            args.repeats
        );
    }
    let r = bench_compiled(&s)?;
    if let Some(why) = &r.ort_skipped {
        println!("onnxruntime: not timed ({why})");
    }
    let ms = |t: &autocaption_pipeline::bench_compiled::Timing| {
        format!("{:>8.3} {:>8.3}", t.best * 1e3, t.median * 1e3)
    };
    for row in &r.rows {
        println!(
            "{}: generated {:.1} s, cc {:.1} s, source {:.1} MB for {:.1} MB of weights ({:.2}×){}",
            row.model,
            row.generate,
            row.cc,
            row.source_bytes as f64 / 1e6,
            row.weight_bytes as f64 / 1e6,
            row.source_bytes as f64 / row.weight_bytes.max(1) as f64,
            row.blob_bytes
                .map(|b| format!(", blob {b} bytes"))
                .unwrap_or_default()
        );
        println!(
            "  {:<28} {:>8} {:>8} {:>9}",
            "", "best", "median", "C ÷ this"
        );
        println!("  {:<28} {}", "generated C", ms(&row.c));
        let others = [
            (
                format!(
                    "onnxruntime {} 1 thread",
                    r.ort_version.as_deref().unwrap_or("")
                ),
                row.ort_1,
            ),
            ("onnxruntime default".to_string(), row.ort_default),
            ("our engine, 1 thread".to_string(), row.engine_1),
            ("our engine, default".to_string(), row.engine_default),
        ];
        for (label, t) in others {
            if let Some(t) = t {
                println!("  {:<28} {} {:>8.2}×", label, ms(&t), row.c.best / t.best);
            }
        }
    }
    Ok(())
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

    /// How the per-word layers hold their weights: f32, f16 (half the bytes a word) or int8
    /// (a quarter, summed in integers).
    #[arg(long, default_value = "f32")]
    format: WeightFormat,

    /// Photo for the end-to-end time; by default one from
    /// $AUTOCAPTION_SHARED/data/flickr8k/images when set, else a generated image.
    #[arg(long, value_name = "FILE")]
    photo: Option<PathBuf>,
}

/// The first Flickr8k photo under $AUTOCAPTION_SHARED, if it is set.
fn shared_photo() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("AUTOCAPTION_SHARED")?).join("data/flickr8k/images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    names.into_iter().next()
}

fn caption(args: CaptionArgs, global: Global) -> anyhow::Result<()> {
    let s = CaptionBench {
        vocab: args.vocab,
        words: args.words,
        repeats: args.repeats,
        format: args.format,
        photo: args.photo.or_else(shared_photo),
    };
    let r = bench_caption(&s)?;
    if !global.quiet {
        println!(
            "bench caption: merge model, vocabulary {}, {} parameters, per-word weights in {}; {} words a caption ({} steps), best of {} repeats",
            s.vocab,
            thousands(r.parameters),
            s.format,
            s.words,
            s.words + 1,
            s.repeats
        );
    }
    println!(
        "memory floor       {:>9.2} ms per caption ({:.1} MB of weights a step, read at {:.1} GB/s here)",
        r.floor * 1e3,
        r.step_bytes as f64 / 1e6,
        r.read_bandwidth / 1e9
    );
    println!("greedy, batch 1    {:>9.2} ms per caption", r.greedy * 1e3);
    println!("beam 3, batch 1    {:>9.2} ms per caption", r.beam3 * 1e3);
    println!(
        "greedy, batch 64   {:>9.0} captions/s",
        64.0 / r.greedy_batch64
    );
    println!(
        "photo → caption    {:>9.1} ms ({}: decode, preprocess, ResNet-50, greedy)",
        r.end_to_end * 1e3,
        s.photo
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
    /// and at batch 8 (f32).
    #[arg(long)]
    layers: bool,

    /// Arithmetic of the network: f32, or int8 (8-bit per-channel weights, 7-bit on a CPU
    /// without VNNI; 8-bit activations with ranges from calibration; see `features
    /// --precision`).
    #[arg(long, default_value = "f32", value_parser = ["f32", "int8"])]
    precision: String,

    /// With --precision int8: calibrate on the images of this folder (the Keras layout's
    /// preprocessing), as `features --calibrate` does; by default on the bench's own batch of
    /// 8 random images.
    #[arg(long, value_name = "DIR")]
    calibrate: Option<PathBuf>,

    /// Then run `features` end to end (decoding on one thread while the network runs,
    /// batch 8, seeded random Keras-layout weights) on the images of this folder, in the same
    /// sitting, and compare its images/s with the network's alone at batch 8.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
}

fn encode(args: EncodeArgs, global: Global) -> anyhow::Result<()> {
    if args.images.is_some() && args.layout != "keras" {
        anyhow::bail!("--images runs the Keras layout; leave out --layout");
    }
    let int8 = args.precision == "int8";
    if args.calibrate.is_some() && !int8 {
        anyhow::bail!("--calibrate goes with --precision int8");
    }
    let int8 = match (int8, &args.calibrate) {
        (false, _) => None,
        (true, None) => Some(Vec::new()),
        (true, Some(dir)) => Some(autocaption_pipeline::expand_photos(std::slice::from_ref(
            dir,
        ))?),
    };
    let s = EncodeBench {
        layout: if args.layout == "keras" {
            Layout::Keras
        } else {
            Layout::Torchvision
        },
        repeats: args.repeats,
        winograd: !args.no_winograd,
        layers: args.layers,
        int8,
    };
    if !global.quiet {
        let arithmetic = match &s.int8 {
            None => format!(
                "f32, 3×3 convolutions {}",
                if args.no_winograd {
                    "direct"
                } else {
                    "Winograd F(2×2,3×3) where it pays"
                }
            ),
            Some(photos) => format!(
                "int8 ({} kernel, {}-bit weights), calibrated on {}",
                autocaption_tensor::int8_kernel_name(),
                autocaption_tensor::weight_bits(),
                match photos.len() {
                    0 => "its 8 random images".to_string(),
                    n => format!("{n} photos"),
                }
            ),
        };
        println!(
            "bench encode: ResNet-50 ({} layout), 224×224, {arithmetic}, {} repeats, best of",
            args.layout, args.repeats
        );
    }
    let r = bench_encode(&s)?;
    println!("batch 1           {:>10.1} ms per image", r.batch1 * 1e3);
    println!("batch 8           {:>10.1} images/s", 8.0 / r.batch8);
    println!(
        "achieved          {:>10.1} GFLOP/s at batch 8 ({:.2} GFLOP an image)",
        8.0 * r.gflop / r.batch8,
        r.gflop
    );
    if let Some(layers) = &r.layers {
        for (batch, rows) in [1, 8].into_iter().zip(layers) {
            print_layers(batch, rows);
        }
    }
    if let Some(images) = &args.images {
        let dir = tempfile::tempdir()?;
        let settings = autocaption_pipeline::ExtractSettings {
            images: images.clone(),
            out: dir.path().join("features.safetensors"),
            batch_size: 8,
            save_every: 256,
            shard: None,
        };
        settings.validate()?;
        let encoder = autocaption_pipeline::Encoder::random_resnet(0);
        let bar = crate::progress::Bar::new(global.quiet);
        let t = std::time::Instant::now();
        let report = autocaption_pipeline::extract(&encoder, &settings, &bar, &mut |_| {})?;
        let per_second = report.extracted as f64 / t.elapsed().as_secs_f64();
        println!(
            "features, end to end {:>7.1} images/s ({} images of {}, decoded as it runs): {:.2}× the network alone at batch 8",
            per_second,
            report.extracted,
            images.display(),
            per_second * r.batch8 / 8.0
        );
    }
    if !global.quiet {
        println!(
            "references: run tools/bench_ort_resnet50.py for ONNX Runtime and TensorFlow on this machine"
        );
    }
    Ok(())
}

fn print_layers(batch: usize, rows: &[LayerTime]) {
    println!(
        "{:<32} {:>10} {:>8} {:>10}",
        format!("batch {batch}, per pass"),
        "ms",
        "share",
        "GFLOP/s"
    );
    println!("  (a block's last 1×1 with its shortcut (+s) and the next block's first (→c): made tile by tile where that pays)");
    for r in rows {
        println!(
            "{:<32} {:>10.2} {:>7.1}% {:>10.1}",
            r.name,
            r.seconds * 1e3,
            100.0 * r.share,
            r.gflops
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
    /// fixed teacher-forcing window): Keras' teacher-forcing work, every position computed
    /// and scored.
    #[arg(long, value_name = "STEPS")]
    fixed_len: Option<usize>,

    /// With --fixed-len: say so in the heading (every caption is full length there, so
    /// masking skips nothing; kept for the scripts that pass it).
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

fn train(args: TrainArgs, global: Global) -> anyhow::Result<()> {
    let s = TrainBench {
        batch: args.batch,
        vocab: args.vocab,
        batches: args.batches,
        fixed_len: args.fixed_len,
        lengths_from: args.lengths_from.clone().or_else(|| {
            std::env::var_os("AUTOCAPTION_SHARED").map(|d| PathBuf::from(d).join("data/flickr8k"))
        }),
        precision: args.precision,
        seed: args.seed,
    };
    let r = bench_train(&s)?;
    if !global.quiet {
        let mode = match args.fixed_len {
            Some(n) => format!(
                "fixed {n} positions, softmax at every one{}",
                if args.no_mask { " (no mask)" } else { "" }
            ),
            None => format!("real lengths from the {}, masked", r.lengths_source),
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
            args.vocab, r.parameters, args.batch
        );
    }
    println!("captions/s        {:>10.1}", r.captions_per_second);
    println!("positions/s       {:>10.1}", r.positions_per_second);
    println!("mean positions    {:>10.2} per caption", r.mean_positions);
    println!(
        "achieved          {:>10.1} GFLOP/s (matrix products, forward + backward)",
        r.gflops
    );
    println!("time per batch    {:>10.1} ms", r.seconds_per_batch * 1e3);
    if let Some(mb) = r.peak_rss_mb {
        println!("peak memory       {mb:>10.0} MB (resident)");
    }
    if !global.quiet {
        println!("reference, same machine class: Keras 2.15 teacher forcing at 30 fixed steps, batch 64: 198 captions/s; the seed's prefix-sample training: 363 samples/s (~33 captions/s)");
    }
    Ok(())
}

/// Runs `bench`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    match args.what {
        What::Train(a) => train(a, global),
        What::Encode(a) => encode(a, global),
        What::Caption(a) => caption(a, global),
        What::Compiled(a) => compiled(a, global),
        What::Captioner(a) => captioner(a, global),
        What::Serve(a) => serve(a, global),
    }
}

/// Options of `bench captioner`.
#[derive(Debug, clap::Args)]
struct CaptionerArgs {
    /// Model directory (its own encoder is used).
    #[arg(long, short)]
    model: PathBuf,

    /// Photos (files or folders); by default the Flickr8k photos under
    /// $AUTOCAPTION_SHARED/data/flickr8k/images.
    photos: Vec<PathBuf>,

    /// Beam width (1: greedy).
    #[arg(long, default_value_t = 3)]
    beam: usize,

    /// Most words in a caption.
    #[arg(long, default_value_t = 30)]
    max_words: usize,

    /// Length normalisation of beam scores.
    #[arg(long, default_value_t = 0.7)]
    length_alpha: f64,

    /// Where the weights go: external (NAME.weights blobs, read by the program; quick to
    /// build) or embed (in the C files: about 2.5× their size in source, slow to build for
    /// ResNet-50).
    #[arg(long, default_value = "external")]
    weights: autocaption_compiler::WeightStorage,

    /// Generate int8 weights (see `compile --quantize`): the captions are then compared with
    /// the f32 engine's, and differ where int8 moves them.
    #[arg(long, value_name = "int8")]
    quantize: Option<autocaption_compiler::Quantize>,

    /// The C compiler.
    #[arg(long, default_value = "cc")]
    cc: String,

    /// Flags for the C compiler, one string (-ffp-contract=off is always added).
    #[arg(long, default_value = "-std=c99 -O3", allow_hyphen_values = true)]
    cflags: String,

    /// Calls a photo on each side (the mean is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,

    /// Keep the generated code, PPMs and program here (default: a temporary folder).
    #[arg(long)]
    keep: Option<PathBuf>,
}

fn captioner(args: CaptionerArgs, global: Global) -> anyhow::Result<()> {
    use autocaption_pipeline::device::{bench_captioner, DeviceBench, DeviceSettings};
    if args.repeats == 0 || args.repeats > 10_000 {
        anyhow::bail!("--repeats {}: expected 1 to 10000", args.repeats);
    }
    let options = autocaption_pipeline::CaptionOptions {
        beam: args.beam,
        max_words: args.max_words,
        length_alpha: args.length_alpha,
        ..Default::default()
    };
    options.validate()?;
    let photos = if args.photos.is_empty() {
        let shared = std::env::var_os("AUTOCAPTION_SHARED").ok_or_else(|| {
            anyhow::anyhow!("give photos, or set AUTOCAPTION_SHARED for the Flickr8k photos")
        })?;
        vec![PathBuf::from(shared).join("data/flickr8k/images")]
    } else {
        args.photos.clone()
    };
    let photos = autocaption_pipeline::expand_photos(&photos)?;
    let (_temp, work) = work_dir(args.keep.as_deref())?;
    let b = DeviceBench {
        model: args.model.clone(),
        photos,
        settings: DeviceSettings {
            int8: args.quantize.is_some(),
            external: args.weights == autocaption_compiler::WeightStorage::External,
            ..DeviceSettings::default()
        },
        options,
        cc: args.cc.clone(),
        cflags: args.cflags.split_whitespace().map(String::from).collect(),
        repeats: args.repeats,
        work,
    };
    let r = bench_captioner(&b)?;
    let n = r.photos.len();
    let same = r.photos.iter().filter(|p| p.c.0 == p.rust.0).count();
    let mean = |f: &dyn Fn(&autocaption_pipeline::device::DevicePhoto) -> f64| {
        r.photos.iter().map(f).sum::<f64>() / n.max(1) as f64
    };
    let (c, rust) = (mean(&|p| p.c_seconds), mean(&|p| p.rust_seconds));
    let score = r
        .photos
        .iter()
        .filter(|p| p.c.0 == p.rust.0)
        .map(|p| (p.c.1 - p.rust.1).abs())
        .fold(0.0f64, f64::max);
    if !global.quiet {
        for p in r.photos.iter().filter(|p| p.c.0 != p.rust.0) {
            println!(
                "{}: C \"{}\" ({:.4}), Rust \"{}\" ({:.4})",
                p.name, p.c.0, p.c.1, p.rust.0, p.rust.1
            );
        }
    }
    let z = &r.sizes;
    println!(
        "bench captioner: {} photos, {} {} ({}, weights {}), {} calls each, one thread; generated in {:.1} s, built in {:.1} s",
        n,
        args.cc,
        args.cflags,
        if b.settings.int8 { "int8" } else { "f32" },
        args.weights,
        args.repeats,
        r.generate,
        r.build
    );
    println!("  identical captions: {same}/{n} (largest score difference among them {score:.2e})");
    println!(
        "  photo → caption: C {:.2} ms, Rust engine {:.2} ms a photo (mean), C ÷ Rust {:.2}×",
        c * 1e3,
        rust * 1e3,
        c / rust
    );
    println!(
        "  sizes: decoder weights {} bytes, encoder weights {} bytes, C source {} bytes, arena {} bytes (features path {} bytes)",
        z.decoder_weights, z.encoder_weights, z.source, z.arena, z.features_arena
    );
    Ok(())
}

/// The folder a benchmark works in: `keep`, or a temporary one (removed when the first value
/// is dropped).
fn work_dir(
    keep: Option<&std::path::Path>,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    Ok(match keep {
        Some(dir) => (None, dir.to_path_buf()),
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    })
}
