//! The offline demo (DESIGN.md section 7): synth → prepare → features → train → evaluate,
//! against a blind baseline, composed from the library's calls in memory (the prepared data
//! and the features are made once and handed on, and written beside the results).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autocaption_data::{load, LoadOptions, PrepareOptions, Prepared, Split};
use autocaption_features::{EncoderSpec, FeatureStore};
use autocaption_io::{AtomicDir, Progress};
use autocaption_synth::{generate, SynthOptions};
use autocaption_tensor::{bf16_is_faster, Precision};
use autocaption_train::TrainConfig;
use autocaption_viz::SheetOptions;

use crate::captioner::Captioner;
use crate::concepts::{train_concepts, ConceptSettings};
use crate::encoder::Encoder;
use crate::evaluate::{evaluate, EvalSettings, Evaluation};
use crate::model_dir::ModelDir;
use crate::sheet::{write_sheet, Candidate};
use crate::training::{train_new, TrainData};
use crate::{summary, Error, Result};

/// Settings of [`run_demo`].
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    /// Report directory.
    pub out: PathBuf,
    /// Replace it if it exists.
    pub replace: bool,
    /// A smaller run, for smoke tests.
    pub quick: bool,
    /// Seed for everything random.
    pub seed: u64,
}

/// What the demo made.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The report directory.
    pub out: PathBuf,
    /// `summary.txt`.
    pub summary: String,
    /// The model's evaluation on the test split.
    pub model: Evaluation,
    /// The blind baseline's.
    pub blind: Evaluation,
}

/// Layer sizes of the demo's model: the synthetic vocabulary is tiny.
const MODEL_CONFIG: &str =
    "{\"embed_dim\": 64, \"text_lstm\": 128, \"decoder_lstm\": 256, \"dropout\": 0.2}\n";

/// Runs the demo into `s.out`, atomically. `step` gets a line per stage.
pub fn run_demo(
    s: &DemoSettings,
    progress: &dyn Progress,
    step: &mut dyn FnMut(&str),
) -> Result<DemoReport> {
    let started = Instant::now();
    let dir = AtomicDir::new(&s.out, s.replace, "summary.txt", &[])?;
    let root = dir.path().to_path_buf();
    // Paths recorded in the models point where the directory will be once committed.
    let dest = std::path::absolute(&s.out).unwrap_or_else(|_| s.out.clone());
    // 2,000 images: with 800 training images the concept CNN learnt shapes less well
    // (held-out BLEU-4 0.35 against 0.51).
    let (count, epochs): (usize, usize) = if s.quick { (300, 4) } else { (2000, 12) };

    let synth = SynthOptions {
        count,
        seed: s.seed,
        ..SynthOptions::default()
    };
    step(&format!(
        "[1/8] synth: {} images of coloured shapes, 5 captions each",
        synth.count
    ));
    let data = root.join("data");
    generate(&data, &synth, false, progress)?;

    step("[2/8] prepare: clean, tokenize, vocabulary from the training split");
    let ds = load(&data, &LoadOptions::default())?;
    let prepared = Prepared::build(&ds, &PrepareOptions::default())?;
    // The prepared directory on disk names the files where they will be once the report is
    // in place; the run reads them where they are now.
    let moved = |p: &Path| {
        p.strip_prefix(&root)
            .map_or_else(|_| p.to_path_buf(), |rel| dest.join(rel))
    };
    let mut on_disk = prepared.clone();
    on_disk.manifest.source.path = moved(&on_disk.manifest.source.path);
    for image in &mut on_disk.images {
        image.path = image.path.as_deref().map(moved);
    }
    on_disk.write(&root.join("prepared"), false, &[])?;

    let resnet = format!(
        "ResNet-50, Keras layout, seeded random weights (seed {})",
        s.seed
    );
    // A third of the images is enough for the probe and spares ResNet-50 a minute (a fifth
    // left too few training rows for its 2,048 dimensions: shape fell below chance).
    let sample: Vec<(String, PathBuf)> = prepared
        .images
        .iter()
        .step_by(3)
        .filter_map(|i| Some((i.name.clone(), i.path.clone()?)))
        .collect();
    step(&format!(
        "[3/8] features of {} images for comparison: {resnet}",
        sample.len()
    ));
    let t = Instant::now();
    let resnet_store = encode_all(&Encoder::random_resnet(s.seed), &sample, progress)?;
    resnet_store.save(&root.join("resnet-features.safetensors"))?;
    let resnet_secs = t.elapsed().as_secs_f64();
    let scenes = data.join("scenes.jsonl");
    let resnet_probe = probe_encoder(&scenes, &resnet_store)?;
    step(&format!(
        "      what a linear probe reads from them: {resnet_probe}"
    ));

    let concept_epochs = if s.quick { 6 } else { 12 };
    let encoder = format!(
        "concept CNN (four 3×3 convolutions on 64×64 images, 4×4 grid of 64 channels), trained {concept_epochs} epochs on the training images to predict the words of their captions"
    );
    step(&format!("[4/8] features: {encoder}"));
    let t = Instant::now();
    let weights_here = root.join("features.encoder.safetensors");
    let concepts = train_concepts(
        &prepared,
        &root.join("prepared"),
        &ConceptSettings {
            epochs: concept_epochs,
            size: 64,
            seed: s.seed,
        },
        &weights_here,
        progress,
        &mut |_, _| {},
    )?;
    // The feature file records the encoder beside it by name (so that runs into other
    // folders give the same bytes); the model records where it will be once the report is
    // in place.
    let mut spec = concepts.encoder.spec().clone();
    spec.weights = Some("features.encoder.safetensors".into());
    concepts
        .features
        .clone()
        .with_encoder(spec.clone())
        .save(&root.join("features.safetensors"))?;
    spec.weights = Some(
        dest.join("features.encoder.safetensors")
            .display()
            .to_string(),
    );
    let store = concepts.features.with_encoder(spec);
    let features_secs = t.elapsed().as_secs_f64();
    let probe = probe_encoder(&scenes, &store)?;
    step(&format!(
        "      what a linear probe reads from them: {probe}"
    ));
    let blind = FeatureStore::new(
        store.names().to_vec(),
        store.dim(),
        vec![0.0; store.len() * store.dim()],
    )
    .with_encoder(EncoderSpec::external(store.dim()));
    blind.save(&root.join("blind-features.safetensors"))?;

    autocaption_io::write_atomic(&root.join("model_config.json"), MODEL_CONFIG.as_bytes())?;
    let overrides = match serde_json::from_str(MODEL_CONFIG).expect("valid JSON") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("the model config is an object"),
    };
    // The blind baseline has only the words to learn: its validation loss levels off within
    // a few epochs (1.16 after 3, best 1.13 after 11), so it gets half as many.
    let blind_epochs = epochs.div_ceil(2);
    let mut evals = Vec::new();
    for (n, name, feats, file, what, epochs) in [
        (
            5,
            "model",
            &store,
            "features.safetensors",
            "the model",
            epochs,
        ),
        (
            6,
            "blind",
            &blind,
            "blind-features.safetensors",
            "the blind baseline (image features all zero)",
            blind_epochs,
        ),
    ] {
        step(&format!(
            "[{n}/8] train and evaluate {what}: {epochs} epochs at most"
        ));
        let model_dir = root.join(name);
        // 800 training images make few batches of 64: smaller batches and a higher rate
        // reach a far lower loss in the same epochs (validation loss 1.13 against 2.86).
        let mut training = TrainConfig {
            epochs,
            batch_size: 16,
            patience: 3,
            seed: s.seed,
            checkpoint_every: 0,
            precision: if bf16_is_faster() {
                Precision::Bf16
            } else {
                Precision::F32
            },
            standardize_features: true,
            ..TrainConfig::default()
        };
        training.adam.lr = 3e-3;
        let data = TrainData {
            prepared: &prepared,
            prepared_path: &dest.join("prepared"),
            features: feats,
            features_path: &dest.join(file),
            encoder_file: Some(&weights_here),
        };
        train_new(
            data,
            &model_dir,
            true,
            &overrides,
            training,
            progress,
            &mut |_| {},
        )?;
        let cap = Captioner::from_model(ModelDir::load(&model_dir)?);
        let settings = EvalSettings::single(Split::Test, 3, 0.7, 20);
        let e = evaluate(&cap, &prepared, feats, &settings, progress)?;
        let eval_dir = model_dir.join("eval-test");
        std::fs::create_dir_all(&eval_dir)
            .map_err(|err| Error::file(&eval_dir, format!("cannot create: {err}")))?;
        e.write(&eval_dir, 6)?;
        evals.push((cap, e));
    }

    step("[7/8] caption held-out images: contact sheet with generated and reference captions");
    let (cap, model_eval) = &evals[0];
    let beam_row = model_eval.rows.last().expect("greedy at least");
    let candidates: Vec<Candidate> = model_eval
        .images
        .iter()
        .zip(&beam_row.captions)
        .filter_map(|(i, generated)| {
            Some(Candidate {
                name: i.name.clone(),
                path: i.path.clone()?,
                captions: vec![
                    format!("model: {}", generated.text),
                    format!("human: {}", i.references[0]),
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

    step("[8/8] report");
    let mut text = summary::prepared(&on_disk.manifest);
    let _ = writeln!(
        text,
        "\nEncoder: {encoder}; trained and run in {features_secs:.1} s. No pretrained weights are\n\
         used or downloaded: the network learns from the demo's own training captions.\n\
         A linear probe (ridge regression, fitted on the training images, scored on the others)\n\
         reads from its features: {probe}.\n\
         For comparison, {resnet} ({resnet_secs:.1} s): {resnet_probe}.\n\
         Random weights keep colour and background but hardly any shape; with pretrained weights\n\
         (see README) ResNet-50 is the encoder to use."
    );
    let _ = writeln!(
        text,
        "Model: the merge model with {} parameters (embedding 64, text LSTM 128, decoder LSTM 256, dropout 0.2), trained with early stopping: at most {epochs} epochs, the blind baseline {blind_epochs}.",
        autocaption_io::thousands(cap.model().model.parameter_count())
    );
    for ((_, e), title) in evals.iter().zip([
        "With the image features",
        "Blind baseline (image features all zero)",
    ]) {
        let _ = writeln!(
            text,
            "\n{title}: test split, {} images\n{}",
            e.images.len(),
            e.table()
        );
    }
    let (ours, blind_score) = (evals[0].1.best_bleu4(), evals[1].1.best_bleu4());
    let _ = writeln!(
        text,
        "Best BLEU-4: {ours:.4} with the image, {blind_score:.4} blind: the image is worth {:+.4}.",
        ours - blind_score
    );
    let _ = writeln!(text, "\nSample captions (beam 3, held-out images):");
    for (i, c) in model_eval.images.iter().zip(&beam_row.captions).take(8) {
        let _ = writeln!(text, "  {:<20} {}", i.name, c.text);
    }
    let _ = writeln!(
        text,
        "\nThe model captions new photos with its own encoder (kept in model/encoder.safetensors):\n  \
         autocaption caption PHOTO --model {}",
        s.out.join("model").display()
    );
    let _ = writeln!(
        text,
        "\nRan in {:.1} s (seed {}).",
        started.elapsed().as_secs_f64(),
        s.seed
    );
    autocaption_io::write_atomic(&root.join("summary.txt"), text.as_bytes())?;
    let out = dir.commit()?;
    let mut evals = evals.into_iter().map(|(_, e)| e);
    Ok(DemoReport {
        out,
        summary: text,
        model: evals.next().expect("two evaluations"),
        blind: evals.next().expect("two evaluations"),
    })
}

/// Features of named image files with `encoder`; any unreadable image is an error.
fn encode_all(
    encoder: &Encoder,
    images: &[(String, PathBuf)],
    progress: &dyn Progress,
) -> Result<FeatureStore> {
    let paths: Vec<PathBuf> = images.iter().map(|(_, p)| p.clone()).collect();
    let mut data = Vec::with_capacity(images.len() * encoder.dim());
    encoder.encode_files(&paths, encoder.batch_size(), false, progress, &mut |b| {
        if let Some((i, why)) = b.failed.into_iter().next() {
            return Err(Error::file(&paths[i], why));
        }
        data.extend(b.features);
        Ok(())
    })?;
    let names = images.iter().map(|(n, _)| n.clone()).collect();
    Ok(FeatureStore::new(names, encoder.dim(), data).with_encoder(encoder.spec().clone()))
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
fn probe_encoder(scenes: &Path, store: &FeatureStore) -> Result<String> {
    let bytes = autocaption_io::read(scenes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let l: SceneLine = serde_json::from_str(line)
            .map_err(|e| Error::file(scenes, format!("line {}: not a scene: {e}", k + 1)))?;
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
