//! `autocaption train` end to end on a synthetic set, with features made from the images
//! themselves (an 8×8 colour grid, enough for the model to learn something real).

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use autocaption_features::FeatureStore;
use predicates::prelude::*;
use tempfile::TempDir;

fn bin() -> Command {
    Command::cargo_bin("autocaption").unwrap()
}

/// synth → prepare → pixel-grid features; returns (prepared dir, features file).
fn dataset(dir: &Path, count: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("synth");
    bin()
        .args([
            "synth",
            "-q",
            "--size",
            "32",
            "--seed",
            "2",
            "--count",
            &count.to_string(),
            "--out",
        ])
        .arg(&data)
        .assert()
        .success();
    let prep = dir.join("prep");
    bin()
        .args(["prepare", "-q"])
        .arg(&data)
        .arg("--out")
        .arg(&prep)
        .assert()
        .success();
    let mut names = Vec::new();
    let mut values = Vec::new();
    for entry in std::fs::read_dir(data.join("images")).unwrap() {
        let p = entry.unwrap().path();
        let img = image::open(&p)
            .unwrap()
            .resize_exact(8, 8, image::imageops::FilterType::Triangle)
            .to_rgb8();
        names.push(p.file_name().unwrap().to_string_lossy().into_owned());
        values.extend(img.pixels().flat_map(|px| px.0.map(|v| v as f32 / 255.0)));
    }
    let features = dir.join("features.safetensors");
    FeatureStore::new(names, 192, values)
        .save(&features)
        .unwrap();
    (prep, features)
}

/// A synthetic dataset of `count` images with its features, a small model config, and a
/// model trained on them for `epochs` into `dir/name`.
fn trained(dir: &Path, count: usize, epochs: usize, name: &str) -> [PathBuf; 4] {
    let (prep, features) = dataset(dir, count);
    let cfg = small_model(dir);
    let model = dir.join(name);
    bin()
        .args(train_cmd(&prep, &features, &cfg, &model, epochs))
        .assert()
        .success();
    [prep, features, cfg, model]
}

fn small_model(dir: &Path) -> PathBuf {
    let p = dir.join("small.json");
    std::fs::write(
        &p,
        r#"{"embed_dim": 16, "text_lstm": 32, "text_dense": 16, "image_dense": 16, "merge_lstm": 32, "decoder_lstm": 48, "dropout": 0.2}"#,
    )
    .unwrap();
    p
}

fn train_cmd(
    prep: &Path,
    features: &Path,
    config: &Path,
    out: &Path,
    epochs: usize,
) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "train".into(),
        "-q".into(),
        "--data".into(),
        s(prep),
        "--features".into(),
        s(features),
        "--model-config".into(),
        s(config),
        "--out".into(),
        s(out),
        "--epochs".into(),
        epochs.to_string(),
        "--batch-size".into(),
        "16".into(),
        "--checkpoint-every".into(),
        "1".into(),
        "--patience".into(),
        "0".into(),
        "--lr".into(),
        "0.003".into(),
    ]
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn trains_learns_and_is_deterministic() {
    let t = TempDir::new().unwrap();
    let (prep, features) = dataset(t.path(), 60);
    let cfg = small_model(t.path());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for out in [&a, &b] {
        bin()
            .args(train_cmd(&prep, &features, &cfg, out, 4))
            .assert()
            .success();
    }
    for f in [
        "weights.safetensors",
        "history.json",
        "checkpoint.safetensors",
        "config.json",
        "vocab.json",
        "training.png",
    ] {
        assert!(
            read(&a.join(f)) == read(&b.join(f)),
            "{f} differs between two runs with the same seed"
        );
    }
    let history: serde_json::Value =
        serde_json::from_slice(&read(&a.join("history.json"))).unwrap();
    let h = history.as_array().unwrap();
    assert_eq!(h.len(), 4);
    let (first, last) = (
        h[0]["train_loss"].as_f64().unwrap(),
        h[3]["train_loss"].as_f64().unwrap(),
    );
    assert!(last < first, "training loss falls: {first} -> {last}");
    assert!(image::open(a.join("training.png")).is_ok());
    bin()
        .args(["model", "summary", "--model"])
        .arg(&a)
        .assert()
        .success()
        .stdout(predicate::str::contains("Total params"));
    // A run directory is not overwritten by accident.
    bin()
        .args(train_cmd(&prep, &features, &cfg, &a, 1))
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let t = TempDir::new().unwrap();
    let (prep, features) = dataset(t.path(), 200);
    let cfg = small_model(t.path());
    let epochs = 3;
    // Selected by dev CIDEr-D (the default), on a cosine schedule: every batch's rate
    // depends on where the run is, so a resume that lost its place would show.
    let cmd = |out: &Path| {
        let mut args = train_cmd(&prep, &features, &cfg, out, epochs);
        args.extend(["--lr-schedule", "cosine", "--warmup", "1"].map(String::from));
        args
    };
    // A resume takes the run's own settings: only where it is and where the data is.
    let resume = |out: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "train".into(),
            "-q".into(),
            "--resume".into(),
            "--out".into(),
            out.into(),
            "--data".into(),
            prep.clone().into(),
            "--features".into(),
            features.clone().into(),
        ]
    };
    let whole = t.path().join("whole");
    bin().args(cmd(&whole)).assert().success();
    let history: serde_json::Value =
        serde_json::from_slice(&read(&whole.join("history.json"))).unwrap();
    let rates: Vec<f64> = (0..epochs)
        .map(|e| history[e]["lr"].as_f64().unwrap())
        .collect();
    assert!(rates[0] < rates[1] && rates[1] > rates[2], "{rates:?}");
    assert!(history[0]["val_cider"].as_f64().is_some());

    let killed = t.path().join("killed");
    let exe = assert_cmd::cargo::cargo_bin("autocaption");
    let ckpt = killed.join("checkpoint.safetensors");
    let mut kills = 0;
    // SIGKILL the run at a few moments after a checkpoint exists, resuming each time.
    for round in 0..4u64 {
        let args: Vec<std::ffi::OsString> = if killed.join("config.json").exists() {
            resume(&killed)
        } else {
            cmd(&killed).into_iter().map(Into::into).collect()
        };
        let mut child = Process::new(&exe)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let before = std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok();
        let started = Instant::now();
        // Wait for a new checkpoint, then a little more, then kill.
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
            let now = std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok();
            if now.is_some() && now != before {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(5 + 20 * round));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 1, "the run was never interrupted; make it longer");
    bin().args(resume(&killed)).assert().success();
    eprintln!("killed {kills} times");
    for f in [
        "weights.safetensors",
        "checkpoint.safetensors",
        "history.json",
    ] {
        let (a, b) = (read(&whole.join(f)), read(&killed.join(f)));
        if a != b && f == "checkpoint.safetensors" {
            let state = |bytes: &[u8]| {
                let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
                h["__metadata__"]["state"].clone()
            };
            eprintln!("whole:  {}\nkilled: {}", state(&a), state(&b));
        }
        assert!(a == b, "{f} differs after kill and resume");
    }
}

#[test]
fn resume_refuses_other_data_and_missing_runs() {
    let t = TempDir::new().unwrap();
    let (prep, features) = dataset(t.path(), 20);
    let cfg = small_model(t.path());
    bin()
        .args(["train", "--resume", "--out"])
        .arg(t.path().join("nothing"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("config.json is missing"));
    let out = t.path().join("m");
    bin()
        .args(train_cmd(&prep, &features, &cfg, &out, 1))
        .assert()
        .success();
    let other = t.path().join("other.safetensors");
    std::fs::copy(&features, &other).unwrap();
    bin()
        .args(["train", "--resume", "--features"])
        .arg(&other)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("differs from the run"));
    // Features missing for some images: a clear error naming them.
    let few = t.path().join("few.safetensors");
    FeatureStore::new(vec!["synth_00000.png".into()], 192, vec![0.0; 192])
        .save(&few)
        .unwrap();
    bin()
        .args(train_cmd(&prep, &few, &cfg, &t.path().join("x"), 1))
        .assert()
        .failure()
        .stderr(predicate::str::contains("have no features"));
}

#[test]
fn evaluates_and_captions_a_trained_model() {
    let t = TempDir::new().unwrap();
    let [prep, features, _, model] = trained(t.path(), 60, 3, "m");
    // `evaluate` of the model on its data, into `out`, with `extra` arguments.
    let evaluate = |out: &Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("evaluate").args(extra).arg("--model").arg(&model);
        c.arg("--data").arg(&prep).arg("--features").arg(&features);
        c.arg("--out").arg(out);
        c
    };
    let eval = |out: &Path| {
        evaluate(out, &["-q", "--beam", "2"])
            .assert()
            .success()
            .stdout(predicate::str::contains("BLEU-4").and(predicate::str::contains("beam 2")))
    };
    let (e1, e2) = (t.path().join("e1"), t.path().join("e2"));
    eval(&e1);
    eval(&e2);
    for f in [
        "results_greedy.json",
        "results_beam2.json",
        "captions.jsonl",
        "metrics.json",
    ] {
        assert!(
            read(&e1.join(f)) == read(&e2.join(f)),
            "{f} differs between two runs"
        );
    }
    let results: serde_json::Value =
        serde_json::from_slice(&read(&e1.join("results_beam2.json"))).unwrap();
    let results = results.as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["image_id"].as_str().unwrap().starts_with("synth_"));
        assert!(r["caption"].is_string());
    }
    let lines = String::from_utf8(read(&e1.join("captions.jsonl"))).unwrap();
    assert_eq!(lines.lines().count(), results.len());
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["references"].as_array().unwrap().len() == 5);
    assert!(first["generated"]["greedy"]["cider_d"].is_number());
    let html = String::from_utf8(read(&e1.join("samples.html"))).unwrap();
    assert!(html.contains("Worst by CIDEr-D") && html.contains("data:image/png;base64,"));

    // A sweep: greedy and every beam width with every length normalisation, in one table
    // and one results file each; its beam-2, α 0.7 row is the single run's.
    let sweep = t.path().join("sweep");
    let out = evaluate(&sweep, &["--beam", "1,2", "--length-alpha", "0,0.7"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(out).unwrap();
    let labels: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("greedy") || l.starts_with("beam"))
        .map(|l| l.split("  ").next().unwrap().trim())
        .collect();
    assert_eq!(labels, ["greedy", "beam 2 α0", "beam 2 α0.7"], "{table}");
    assert!(table.contains("Best CIDEr-D: "), "{table}");
    assert!(
        read(&sweep.join("results_beam2_alpha0.7.json")) == read(&e1.join("results_beam2.json"))
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&read(&sweep.join("metrics.json"))).unwrap();
    assert_eq!(metrics["decoders"][1]["length_alpha"], 0.0);
    assert_eq!(metrics["decoders"][2]["beam"], 2);
    // Int8 per-word weights: the same files, the format recorded, the same bits twice.
    let (q1, q2) = (t.path().join("q1"), t.path().join("q2"));
    for q in [&q1, &q2] {
        evaluate(q, &["-q", "--beam", "2", "--decoder-weights", "int8"])
            .assert()
            .success()
            .stdout(predicate::str::contains("beam 2"));
    }
    assert!(read(&q1.join("metrics.json")) == read(&q2.join("metrics.json")));
    let metrics: serde_json::Value =
        serde_json::from_slice(&read(&q1.join("metrics.json"))).unwrap();
    assert_eq!(metrics["decoder_weights"], "int8", "{metrics}");
    evaluate(&t.path().join("never"), &["--decoder-weights", "int4"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("expected f32, f16 or int8"));
    bin()
        .args(["caption", "--length-alpha", "0,1", "--features"])
        .arg(&features)
        .arg("--model")
        .arg(&model)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--length-alpha takes one value here",
        ));
    // Widths and lengths that would only exhaust memory are refused up front.
    for (args, says) in [
        (
            ["--beam", "100000"],
            "--beam must be from 1 (greedy) to 64, got 100000",
        ),
        (
            ["--max-words", "0"],
            "--max-words must be from 1 to 200, got 0",
        ),
    ] {
        bin()
            .arg("caption")
            .args(args)
            .arg("--features")
            .arg(&features)
            .arg("--model")
            .arg(&model)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
        evaluate(&t.path().join("never"), &args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
        assert!(!t.path().join("never").exists());
    }

    // caption: from the features file, JSON lines with beam alternatives.
    let out = bin()
        .args([
            "caption",
            "--json",
            "--alternatives",
            "--beam",
            "3",
            "--model",
        ])
        .arg(&model)
        .arg("--features")
        .arg(&features)
        .args(["synth_00000.png", "synth_00001.png", "nonexistent.png"])
        .assert()
        .success()
        .stderr(predicate::str::contains("nonexistent.png"))
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 2);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["image"].as_str().unwrap().starts_with("synth_0000"));
        let caption = v["caption"].as_str().unwrap();
        assert!(!caption.contains("startseq") && !caption.contains("endseq"));
        assert!(v["score"].as_f64().unwrap() <= 0.0);
        assert!(v["alternatives"].as_array().unwrap().len() <= 2);
    }
    // Photos need an encoder whose features the model reads.
    bin()
        .args(["caption", "--weights", "random", "--model"])
        .arg(&model)
        .arg(t.path().join("synth/images/synth_00000.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("the model reads 192-d"));
    bin()
        .args(["caption", "--model"])
        .arg(t.path())
        .arg("--features")
        .arg(&features)
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a model directory"));
}

#[test]
fn force_checks_everything_before_replacing() {
    let t = TempDir::new().unwrap();
    let [prep, features, cfg, out] = trained(t.path(), 20, 1, "m");
    let weights = read(&out.join("weights.safetensors"));
    let bad_config = t.path().join("bad.json");
    std::fs::write(&bad_config, r#"{"dropout": 2.0}"#).unwrap();
    let few = t.path().join("few.safetensors");
    FeatureStore::new(vec!["synth_00000.png".into()], 192, vec![0.0; 192])
        .save(&few)
        .unwrap();
    let with = |extra: &[&str], config: &Path, feats: &Path| {
        let mut args = train_cmd(&prep, feats, config, &out, 1);
        args.push("--force".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    for (args, says) in [
        (with(&["--epochs", "0"], &cfg, &features), "--epochs"),
        (with(&["--lr=-1"], &cfg, &features), "--lr"),
        (with(&[], &bad_config, &features), "dropout"),
        (with(&[], &cfg, &few), "have no features"),
    ] {
        bin()
            .args(&args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
        assert!(
            read(&out.join("weights.safetensors")) == weights,
            "a refused `train --force` ({says}) touched the old model"
        );
    }
    // A folder that is not a model directory is never replaced.
    let mine = t.path().join("my-photos");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("holiday.jpg"), b"precious").unwrap();
    let mut args = train_cmd(&prep, &features, &cfg, &mine, 1);
    args.push("--force".into());
    bin()
        .args(&args)
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a model directory"));
    assert_eq!(read(&mine.join("holiday.jpg")), b"precious");
}

/// `concepts` with `seed` into `dir`/f.safetensors; returns the features file.
fn concept_features(prep: &Path, dir: &Path, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("f.safetensors");
    bin()
        .args(["concepts", "-q", "--epochs", "1", "--size", "16", "--seed"])
        .arg(seed.to_string())
        .arg("--data")
        .arg(prep)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

#[test]
fn a_model_knows_its_encoder_and_refuses_others() {
    let t = TempDir::new().unwrap();
    let (prep, _) = dataset(t.path(), 24);
    let cfg = small_model(t.path());
    let ours = concept_features(&prep, &t.path().join("c1"), 1);
    let theirs = concept_features(&prep, &t.path().join("c2"), 2);
    let sha = |f: &Path| {
        FeatureStore::load(f)
            .unwrap()
            .encoder()
            .unwrap()
            .sha256
            .clone()
            .unwrap()
    };
    let (our_sha, their_sha) = (sha(&ours), sha(&theirs));
    assert_ne!(our_sha, their_sha);
    let model = t.path().join("m");
    bin()
        .args(train_cmd(&prep, &ours, &cfg, &model, 1))
        .assert()
        .success();
    let config: serde_json::Value =
        serde_json::from_slice(&read(&model.join("config.json"))).unwrap();
    assert_eq!(config["encoder"]["kind"], "concept_cnn");
    assert_eq!(config["encoder"]["sha256"], our_sha.as_str());
    // The concept CNN is small: the model keeps a copy.
    assert!(
        read(&model.join("encoder.safetensors"))
            == read(&t.path().join("c1/f.encoder.safetensors"))
    );

    let photo = t.path().join("synth/images/synth_00000.png");
    let caption = |weights: Option<&Path>| {
        let mut cmd = bin();
        cmd.arg("caption").arg(&photo).arg("--model").arg(&model);
        if let Some(w) = weights {
            cmd.arg("--weights").arg(w);
        }
        cmd.assert()
    };
    let found = caption(None).success().get_output().stdout.clone();
    assert!(!found.is_empty());
    let given = caption(Some(&t.path().join("c1/f.encoder.safetensors")))
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(found, given);
    // Other weights: a non-zero exit naming both hashes.
    caption(Some(&t.path().join("c2/f.encoder.safetensors")))
        .failure()
        .stderr(
            predicate::str::contains(our_sha.as_str())
                .and(predicate::str::contains(their_sha.as_str())),
        );
    // Features of another encoder are refused too.
    bin()
        .arg("caption")
        .arg("--model")
        .arg(&model)
        .arg("--features")
        .arg(&theirs)
        .assert()
        .failure()
        .stderr(predicate::str::contains("would be garbage"));
    // With the copy gone and the original moved, the model says what it needs.
    std::fs::remove_file(model.join("encoder.safetensors")).unwrap();
    let moved = t.path().join("moved.safetensors");
    std::fs::rename(t.path().join("c1/f.encoder.safetensors"), &moved).unwrap();
    caption(None).failure().stderr(
        predicate::str::contains("cannot find the model's encoder")
            .and(predicate::str::contains("--weights")),
    );
    let again = caption(Some(&moved)).success().get_output().stdout.clone();
    assert_eq!(found, again);
}

/// A model directory whose config.json holds values out of range (dropout 1, an LSTM of 0
/// units, a size that would allocate terabytes) is refused on load with the field named,
/// by every command that loads it, without a panic; `--model-config` is checked the same
/// way.
#[test]
fn out_of_range_model_configs_are_refused_on_load() {
    let t = TempDir::new().unwrap();
    let [prep, features, _cfg, model] = trained(t.path(), 20, 1, "m");
    let config = model.join("config.json");
    let good: serde_json::Value = serde_json::from_slice(&read(&config)).unwrap();
    for (field, value, says) in [
        (
            "dropout",
            serde_json::json!(1.0),
            "model.dropout is 1; it must be at least 0 and below 1",
        ),
        (
            "merge_lstm",
            serde_json::json!(0),
            "model.merge_lstm is 0; it must be from 1 to 65536",
        ),
        (
            "vocab_size",
            serde_json::json!(4_000_000_000u64),
            "model.vocab_size is 4000000000",
        ),
    ] {
        let mut bad = good.clone();
        bad["model"][field] = value;
        std::fs::write(&config, serde_json::to_vec(&bad).unwrap()).unwrap();
        let s = |p: &Path| p.to_string_lossy().into_owned();
        for args in [
            vec![
                "evaluate".into(),
                "--model".into(),
                s(&model),
                "--data".into(),
                s(&prep),
                "--beam".into(),
                "1".into(),
                "--out".into(),
                s(&t.path().join("ev")),
            ],
            vec![
                "export".into(),
                "--model".into(),
                s(&model),
                "--out".into(),
                s(&t.path().join("ex")),
            ],
            vec![
                "model".into(),
                "summary".into(),
                "--model".into(),
                s(&model),
            ],
        ] {
            bin()
                .args(&args)
                .assert()
                .failure()
                .stderr(predicate::str::contains(says).and(predicate::str::contains("config.json")))
                .stderr(predicate::str::contains("panicked").not());
        }
    }
    std::fs::write(&config, serde_json::to_vec(&good).unwrap()).unwrap();
    // --model-config of a new run: the same check, before anything is written.
    let zero = t.path().join("zero.json");
    std::fs::write(&zero, r#"{"text_lstm": 0}"#).unwrap();
    let out = t.path().join("never");
    bin()
        .args(train_cmd(&prep, &features, &zero, &out, 1))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "text_lstm is 0; it must be from 1 to 65536",
        ));
    assert!(!out.exists());
}
