//! `autocaption demo`: the offline pipeline on data of its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use autocaption_data::{load, LoadOptions, PrepareOptions, Prepared, PreparedImage, Split};
use autocaption_features::FeatureStore;
use autocaption_io::AtomicDir;
use autocaption_synth::{generate, SynthOptions};
use autocaption_tensor::WeightFormat;
use autocaption_viz::SheetOptions;

use crate::captioner::Captioner;
use crate::cmd;
use crate::cmd::evaluate::{evaluate, table, Evaluation, Settings};
use crate::cmd::show::{write_sheet, Candidate};
use crate::progress::Bar;
use crate::report::{self, thousands};
use crate::Global;

/// Run the pipeline end to end, offline, on a synthetic dataset it generates itself:
/// synth → prepare → features → train → evaluate, against a blind baseline.
///
/// No pretrained weights can be downloaded here, so the image features come from the concept
/// CNN (`autocaption concepts`), trained on the demo's own training images and captions;
/// ResNet-50 with seeded random weights runs too, and a linear probe shows what each passes
/// on. Everything goes into one report directory: data/ (the generated images and captions),
/// prepared/, features.safetensors (the concept features), resnet-features.safetensors,
/// model/ and model/eval-test/ (metrics, COCO result files,
/// per-image captions, samples.html), blind/ (the same training with every image feature set
/// to zero, and its evaluation), test_samples.png (held-out images with generated and
/// reference captions) and summary.txt. The blind baseline shows how much of the score
/// comes from looking at the image. The same --seed gives the same bytes.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Report directory.
    #[arg(long, short, default_value = "autocaption-demo")]
    out: PathBuf,

    /// Replace the report directory if it exists.
    #[arg(long)]
    force: bool,

    /// A smaller run, for smoke tests (under a minute).
    #[arg(long)]
    quick: bool,

    /// Seed for everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `demo`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = AtomicDir::new(&args.out, args.force)?;
    let root = dir.path().to_path_buf();
    let say = |s: &str| {
        if !global.quiet {
            println!("{s}");
        }
    };
    // Inner commands keep their progress bars but not their summaries.
    let inner = Global { quiet: true };
    // 2,000 images: with 800 training images the concept CNN learnt shapes less well
    // (held-out BLEU-4 0.35 against 0.51).
    let (count, epochs): (usize, usize) = if args.quick { (300, 4) } else { (2000, 12) };

    let synth = SynthOptions {
        count,
        seed: args.seed,
        ..SynthOptions::default()
    };
    say(&format!(
        "[1/8] synth: {} images of coloured shapes, 5 captions each",
        synth.count
    ));
    let data = root.join("data");
    generate(&data, &synth, false, &Bar::new(global.quiet))?;

    say("[2/8] prepare: clean, tokenize, vocabulary from the training split");
    let ds = load(&data, &LoadOptions::default())?;
    let prepared = Prepared::build(&ds, &PrepareOptions::default())?;
    let prepared_dir = root.join("prepared");
    prepared.write(&prepared_dir, false)?;

    let resnet = format!(
        "ResNet-50, Keras layout, seeded random weights (seed {})",
        args.seed
    );
    // A third of the images is enough for the probe and spares ResNet-50 a minute (a fifth
    // left too few training rows for its 2,048 dimensions: shape fell below chance).
    let sample: Vec<&PreparedImage> = prepared.images.iter().step_by(3).collect();
    say(&format!(
        "[3/8] features of {} images for comparison: {resnet}",
        sample.len()
    ));
    let t = Instant::now();
    let resnet_store = resnet_features(&sample, args.seed)?;
    resnet_store.save(&root.join("resnet-features.safetensors"))?;
    let resnet_secs = t.elapsed().as_secs_f64();
    let scenes = data.join("scenes.jsonl");
    let resnet_probe = probe_encoder(&scenes, &resnet_store)?;
    say(&format!(
        "      what a linear probe reads from them: {resnet_probe}"
    ));

    let concept_epochs = if args.quick { 6 } else { 12 };
    let encoder = format!(
        "concept CNN (four 3×3 convolutions on 64×64 images, 4×4 grid of 64 channels), trained {concept_epochs} epochs on the training images to predict the words of their captions"
    );
    say(&format!("[4/8] features: {encoder}"));
    let t = Instant::now();
    let features = root.join("features.safetensors");
    cmd::concepts::run(
        cmd::concepts::Args::new(
            prepared_dir.clone(),
            features.clone(),
            concept_epochs,
            args.seed,
        ),
        inner,
    )?;
    let store = FeatureStore::load(&features)?;
    let features_secs = t.elapsed().as_secs_f64();
    let probe = probe_encoder(&scenes, &store)?;
    say(&format!(
        "      what a linear probe reads from them: {probe}"
    ));
    let blind_features = root.join("blind-features.safetensors");
    FeatureStore::new(
        store.names().to_vec(),
        store.dim(),
        vec![0.0; store.len() * store.dim()],
    )
    .save(&blind_features)?;

    // A smaller model than the seed's: the synthetic vocabulary is tiny.
    let model_config = root.join("model_config.json");
    std::fs::write(
        &model_config,
        "{\"embed_dim\": 64, \"text_lstm\": 128, \"decoder_lstm\": 256, \"dropout\": 0.2}\n",
    )
    .with_context(|| format!("cannot write {}", model_config.display()))?;
    let mut evals = Vec::new();
    // The blind baseline has only the words to learn: its validation loss levels off within
    // a few epochs (1.16 after 3, best 1.13 after 11), so it gets half as many.
    let blind_epochs = epochs.div_ceil(2);
    for (step, name, feats, what, epochs) in [
        (5, "model", &features, "the model", epochs),
        (
            6,
            "blind",
            &blind_features,
            "the blind baseline (image features all zero)",
            blind_epochs,
        ),
    ] {
        say(&format!(
            "[{step}/8] train and evaluate {what}: {epochs} epochs at most"
        ));
        let model_dir = root.join(name);
        let mut train = cmd::train::Args::new(
            prepared_dir.clone(),
            feats.clone(),
            model_dir.clone(),
            epochs,
            args.seed,
            Some(model_config.clone()),
        );
        // 800 training images make few batches of 64: smaller batches and a higher rate
        // reach a far lower loss in the same epochs (validation loss 1.13 against 2.86).
        (train.batch_size, train.lr) = (16, 3e-3);
        cmd::train::run(train, inner)?;
        let cap = Captioner::load(&model_dir)?;
        let eval_dir = model_dir.join("eval-test");
        std::fs::create_dir_all(&eval_dir)
            .with_context(|| format!("cannot create {}", eval_dir.display()))?;
        let settings = Settings {
            split: Split::Test,
            beam: 3,
            max_words: 20,
            length_alpha: 0.7,
            samples: 6,
            decoder_weights: WeightFormat::F32,
        };
        let store = FeatureStore::load(feats)?;
        let e = evaluate(
            &cap,
            &prepared,
            &store,
            &settings,
            &eval_dir,
            &Bar::new(global.quiet),
        )?;
        evals.push((cap, e));
    }

    say("[7/8] caption held-out images: contact sheet with generated and reference captions");
    let (cap, model_eval) = &evals[0];
    let test: Vec<_> = prepared
        .images
        .iter()
        .filter(|i| i.split == Some(Split::Test) && !i.captions.is_empty())
        .collect();
    let beam_row = model_eval.rows.last().expect("greedy at least");
    let candidates: Vec<Candidate> = test
        .iter()
        .zip(&beam_row.captions)
        .filter_map(|(i, generated)| {
            Some(Candidate {
                name: i.name.clone(),
                path: i.path.clone()?,
                captions: vec![
                    format!("model: {generated}"),
                    format!("human: {}", cap.reference_words(&i.captions[0]).join(" ")),
                ],
            })
        })
        .collect();
    let sheet_opts = SheetOptions {
        columns: 4,
        thumb: 192,
        ..SheetOptions::default()
    };
    write_sheet(candidates, 8, sheet_opts, &root.join("test_samples.png"))?;

    say("[8/8] report");
    let mut summary = report::prepared(&prepared.manifest);
    let _ = writeln!(
        summary,
        "\nEncoder: {encoder}; trained and run in {features_secs:.1} s. No pretrained weights are\n\
         used or downloaded: the network learns from the demo's own training captions.\n\
         A linear probe (ridge regression, fitted on the training images, scored on the others)\n\
         reads from its features: {probe}.\n\
         For comparison, {resnet} ({resnet_secs:.1} s): {resnet_probe}.\n\
         Random weights keep colour and background but hardly any shape; with pretrained weights\n\
         (see README) ResNet-50 is the encoder to use."
    );
    let _ = writeln!(
        summary,
        "Model: the merge model with {} parameters (embedding 64, text LSTM 128, decoder LSTM 256, dropout 0.2), trained with early stopping: at most {epochs} epochs, the blind baseline {blind_epochs}.",
        thousands(cap.model.parameter_count())
    );
    for ((_, e), title) in evals.iter().zip([
        "With the image features",
        "Blind baseline (image features all zero)",
    ]) {
        let _ = writeln!(
            summary,
            "\n{title}: test split, {} images\n{}",
            e.images,
            table(e)
        );
    }
    let bleu4 = |e: &Evaluation| {
        e.rows
            .iter()
            .map(|r| r.scores.bleu.corpus[3])
            .fold(0.0, f64::max)
    };
    let (ours, blind) = (bleu4(&evals[0].1), bleu4(&evals[1].1));
    let _ = writeln!(
        summary,
        "Best BLEU-4: {ours:.4} with the image, {blind:.4} blind: the image is worth {:+.4}.",
        ours - blind
    );
    let _ = writeln!(summary, "\nSample captions (beam 3, held-out images):");
    for (i, c) in test.iter().zip(&beam_row.captions).take(8) {
        let _ = writeln!(summary, "  {:<20} {c}", i.name);
    }
    let _ = writeln!(
        summary,
        "\nRan in {:.1} s (seed {}).",
        started.elapsed().as_secs_f64(),
        args.seed
    );
    let p = root.join("summary.txt");
    std::fs::write(&p, &summary).with_context(|| format!("cannot write {}", p.display()))?;
    let out = dir.commit()?;
    say(&format!("\n{summary}"));
    say(&format!(
        "Report in {}/ (summary.txt, test_samples.png, model/eval-test/samples.html, model/training.png)",
        out.display()
    ));
    Ok(())
}

/// One line of a scene file (`synth`'s scenes.jsonl).
#[derive(serde::Deserialize)]
struct SceneLine {
    image: String,
    split: String,
    #[serde(flatten)]
    scene: autocaption_synth::Scene,
}

/// Held-out accuracy of a linear probe on the features for what the scenes show (background,
/// the first object's colour and shape, the object count), each with its chance level: how
/// much of the picture the encoder passes on.
fn probe_encoder(scenes: &std::path::Path, store: &FeatureStore) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(scenes)
        .with_context(|| format!("cannot read {}", scenes.display()))?;
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let l: SceneLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a scene", scenes.display(), k + 1))?;
        if let (Some(r), false) = (store.row_of(&l.image), l.scene.objects.is_empty()) {
            rows.extend_from_slice(store.row(r));
            lines.push(l);
        }
    }
    let train: Vec<bool> = lines.iter().map(|l| l.split == "train").collect();
    let mut out = Vec::new();
    type Attribute = fn(&autocaption_synth::Scene) -> String;
    let attributes: [(&str, Attribute); 4] = [
        ("background", |s| format!("{:?}", s.background)),
        ("colour", |s| format!("{:?}", s.objects[0].colour)),
        ("shape", |s| format!("{:?}", s.objects[0].shape)),
        ("object count", |s| s.objects.len().to_string()),
    ];
    for (name, attribute) in attributes {
        let values: Vec<String> = lines.iter().map(|l| attribute(&l.scene)).collect();
        let mut classes: Vec<&String> = values.iter().collect();
        classes.sort();
        classes.dedup();
        let labels: Vec<usize> = values
            .iter()
            .map(|v| classes.binary_search(&v).expect("listed"))
            .collect();
        if let Some((acc, chance)) =
            autocaption_features::linear_probe(&rows, store.dim(), &labels, &train, 10.0)
        {
            out.push(format!(
                "{name} {:.0}% (chance {:.0}%)",
                100.0 * acc,
                100.0 * chance
            ));
        }
    }
    Ok(out.join(", "))
}

/// ResNet-50 features (Keras layout and preprocessing, seeded random weights) of `images`.
fn resnet_features(images: &[&PreparedImage], seed: u64) -> anyhow::Result<FeatureStore> {
    use autocaption_vision::{batch, load_rgb, Layout, Preset, ResNet, ResNetConfig};
    let config = ResNetConfig::resnet50(Layout::Keras);
    let net = ResNet::random(config, seed);
    let preset = Preset::for_layout(Layout::Keras);
    let mut names = Vec::new();
    let mut data = Vec::new();
    for chunk in images.chunks(8) {
        let mut pixels = Vec::new();
        for im in chunk {
            let Some(path) = &im.path else { continue };
            pixels.push(preset.apply(&load_rgb(path)?));
            names.push(im.name.clone());
        }
        if !pixels.is_empty() {
            data.extend(net.forward(&batch(&pixels, preset.size())));
        }
    }
    Ok(FeatureStore::new(names, config.features(), data))
}
