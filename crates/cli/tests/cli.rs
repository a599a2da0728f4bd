//! End-to-end tests of the `autocaption` binary on data the tests make themselves.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

fn bin() -> Command {
    Command::cargo_bin("autocaption").unwrap()
}

/// A small synthetic set in `dir/name`.
fn synth(dir: &Path, name: &str, count: usize, seed: u64) -> PathBuf {
    let out = dir.join(name);
    bin()
        .args([
            "synth",
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--size",
            "64",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn help_explains_every_command() {
    bin().arg("--help").assert().success().stdout(
        predicate::str::contains("prepare")
            .and(predicate::str::contains("synth"))
            .and(predicate::str::contains("show")),
    );
    for cmd in ["prepare", "synth", "show"] {
        bin()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: autocaption"));
    }
}

#[test]
fn synth_prepare_show_pipeline() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), "synth", 50, 3);
    let prep = t.path().join("prep");
    bin()
        .args(["prepare"])
        .arg(&data)
        .arg("--out")
        .arg(&prep)
        .assert()
        .success()
        .stdout(predicate::str::contains("Vocabulary:").and(predicate::str::contains("train")));
    let m = read_json(&prep.join("manifest.json"));
    assert_eq!(m["stats"]["images"]["train"], 40);
    assert_eq!(m["stats"]["images"]["dev"], 5);
    assert_eq!(m["stats"]["captions"]["test"], 25);
    assert_eq!(m["source"]["format"], "flickr8k");
    let vocab = read_json(&prep.join("vocab.json"));
    assert_eq!(vocab["vocab"]["words"][0], "startseq");
    let lines = std::fs::read_to_string(prep.join("captions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 50);

    let sheet = t.path().join("sheet.png");
    bin()
        .args(["show"])
        .arg(&prep)
        .arg("--out")
        .arg(&sheet)
        .args(["-n", "6", "--columns", "3", "--thumb", "64"])
        .assert()
        .success();
    let img = image::open(&sheet).unwrap();
    assert_eq!(img.width(), 3 * (64 + 12) + 12);
    let sheet2 = t.path().join("sheet2.png");
    bin()
        .args(["show"])
        .arg(&data)
        .arg("--out")
        .arg(&sheet2)
        .args(["--split", "test", "--seed", "1", "-n", "2"])
        .assert()
        .success();
}

#[test]
fn same_seed_same_bytes() {
    let t = TempDir::new().unwrap();
    let a = synth(t.path(), "a", 20, 7);
    let b = synth(t.path(), "b", 20, 7);
    for f in [
        "Flickr8k.token.txt",
        "scenes.jsonl",
        "images/synth_00013.png",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // The same source prepared twice gives the same files.
    for out in ["pa", "pb"] {
        bin()
            .arg("prepare")
            .arg(&a)
            .arg("--out")
            .arg(t.path().join(out))
            .arg("-q")
            .assert()
            .success()
            .stdout("");
    }
    for f in ["vocab.json", "captions.jsonl", "manifest.json"] {
        let pa = std::fs::read_to_string(t.path().join("pa").join(f)).unwrap();
        let pb = std::fs::read_to_string(t.path().join("pb").join(f)).unwrap();
        assert!(pa == pb, "{f} differs between two identical runs");
    }
}

#[test]
fn pipeline_file_reproduces_the_vocabulary() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), "s", 30, 1);
    let p1 = t.path().join("p1");
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&p1)
        .args(["--drop-numbers", "--min-word-len", "3", "-q"])
        .assert()
        .success();
    let p2 = t.path().join("p2");
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&p2)
        .arg("--pipeline")
        .arg(p1.join("vocab.json"))
        .arg("-q")
        .assert()
        .success();
    assert_eq!(
        std::fs::read(p1.join("vocab.json")).unwrap(),
        std::fs::read(p2.join("vocab.json")).unwrap()
    );
    let v = read_json(&p1.join("vocab.json"));
    assert!(v["vocab"]["words"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w.as_str().unwrap().len() >= 3));
}

#[test]
fn refuses_to_overwrite_without_force() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), "s", 10, 1);
    let out = t.path().join("p");
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--force", "-q"])
        .assert()
        .success();
    bin()
        .args(["synth", "--count", "5", "--out"])
        .arg(&data)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
}

/// Each bad input gives one line on stderr naming the file (and line), a non-zero exit, and
/// no output directory.
#[test]
fn bad_input_is_one_clear_line() {
    let t = TempDir::new().unwrap();
    let d = t.path();
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("trunc.token.txt", b"a.jpg#0\tA dog .\nb.jpg#", "trunc.token.txt line 2"),
        ("tabs.token.txt", b"a.jpg#0\tA dog .\na.jpg#1 A cat .\n", "tabs.token.txt line 2: expected"),
        ("utf.token.txt", b"a.jpg#0\tA dog .\na.jpg#1\tA \xff cat\n", "utf.token.txt line 2: invalid UTF-8"),
        ("empty.txt", b"", "empty.txt: file is empty"),
        ("captions.txt", b"image,caption\na.jpg,ok\na.jpg,one, two\n", "captions.txt line 3: expected 2 fields"),
        ("semi.txt", b"image;caption\na.jpg;A dog\n", "semi.txt: cannot tell the caption format"),
        ("trunc.json", b"{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}], \"annotations\": [{\"image_id\"", "trunc.json line 1, column"),
    ];
    for (name, bytes, expected) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = d.join(format!("out-{name}"));
        let assert = bin()
            .arg("prepare")
            .arg(&p)
            .arg("--out")
            .arg(&out)
            .assert()
            .failure()
            .code(1);
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(!out.exists(), "{name}: output written");
    }
    // A directory where a file is expected, and one with no caption file in it.
    let dir = d.join("dir.token.txt");
    std::fs::create_dir(&dir).unwrap();
    bin()
        .arg("prepare")
        .arg(&dir)
        .args(["--format", "flickr8k", "--out"])
        .arg(d.join("o1"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no caption file found"));
    bin()
        .args(["prepare", "--splits"])
        .arg(&dir)
        .arg(d.join("semi.txt"))
        .args(["--format", "csv", "--out"])
        .arg(d.join("o2"))
        .assert()
        .failure();
    // A missing file.
    bin()
        .arg("prepare")
        .arg(d.join("nope.txt"))
        .arg("--out")
        .arg(d.join("o3"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope.txt"));
}

#[test]
fn lenient_skips_and_counts() {
    let t = TempDir::new().unwrap();
    let p = t.path().join("c.token.txt");
    std::fs::write(
        &p,
        "a.jpg#0\tA dog .\na.jpg#1 broken\nb.jpg#0\tA cat .\nx.jpg.1#0\tghost\n",
    )
    .unwrap();
    bin()
        .arg("prepare")
        .arg(&p)
        .args([
            "--lenient",
            "--auto-split",
            "1,0,0",
            "--min-count",
            "1",
            "--out",
        ])
        .arg(t.path().join("o"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("malformed lines (skipped, --lenient)")
                .and(predicate::str::contains("not an image file")),
        );
}

#[test]
fn every_format_through_the_cli() {
    let t = TempDir::new().unwrap();
    let d = t.path();
    let files: Vec<(&str, &str, usize, usize)> = vec![
        ("captions.txt", "image,caption\na.jpg,A dog runs .\na.jpg,\"A dog, running .\"\nb.jpg,A cat sits .\n", 2, 3),
        ("results.csv", "image_name| comment_number| comment\n1.jpg| 0| A dog runs .\n1.jpg| 1 A dog .\n2.jpg| 0| A cat .\n", 2, 3),
        ("dataset_flickr8k.json", r#"{"images":[{"filename":"a.jpg","split":"train","sentences":[{"raw":"A dog ."},{"raw":"A dog runs ."}]},{"filename":"b.jpg","split":"test","sentences":[{"raw":"A cat ."}]}]}"#, 2, 3),
        ("captions_val2017.json", r#"{"images":[{"id":1,"file_name":"1.jpg"},{"id":2,"file_name":"2.jpg"}],"annotations":[{"image_id":1,"caption":"A dog ."},{"image_id":2,"caption":"A cat ."},{"image_id":2,"caption":"Cat ."}]}"#, 2, 3),
    ];
    for (name, text, images, captions) in files {
        let sub = d.join(name.replace('.', "_"));
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join(name), text).unwrap();
        let out = sub.join("prep");
        bin()
            .arg("prepare")
            .arg(&sub)
            .args([
                "--auto-split",
                "1,0,0",
                "--min-count",
                "1",
                "-q",
                "--json",
                "--out",
            ])
            .arg(&out)
            .assert()
            .success();
        let m = read_json(&out.join("manifest.json"));
        let got_images: u64 = m["stats"]["images"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        let got_caps: u64 = m["stats"]["captions"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            (got_images as usize, got_caps as usize),
            (images, captions),
            "{name}"
        );
    }
    // A folder of images with its own CSV: captions for missing files are dropped.
    let folder = d.join("folder");
    std::fs::create_dir(&folder).unwrap();
    image::RgbImage::new(8, 8)
        .save(folder.join("x.png"))
        .unwrap();
    std::fs::write(
        folder.join("captions.csv"),
        "x.png,A black square\ny.png,Missing\n",
    )
    .unwrap();
    let out = d.join("folder-prep");
    bin()
        .arg("prepare")
        .arg(&folder)
        .args(["--auto-split", "1,0,0", "--min-count", "1", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("no image file (dropped)"));
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["stats"]["images"]["train"], 1);
}

#[test]
fn flickr8k_real_files_when_present() {
    let Some(shared) = std::env::var_os("AUTOCAPTION_SHARED") else {
        eprintln!("AUTOCAPTION_SHARED is unset: skipping");
        return;
    };
    let t = TempDir::new().unwrap();
    let out = t.path().join("prep");
    let flickr = PathBuf::from(shared).join("data/flickr8k");
    bin()
        .arg("prepare")
        .arg(flickr.join("Flickr8k.token.txt"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("40,460 caption records for 8,092 image names")
                .and(predicate::str::contains(
                    "Kept 8,091 images with 40,455 captions",
                ))
                .and(predicate::str::contains("Vocabulary: 4,487"))
                .and(predicate::str::contains("7,614 with every word")),
        );
    let sheet = t.path().join("sheet.png");
    bin()
        .arg("show")
        .arg(&flickr)
        .arg("--out")
        .arg(&sheet)
        .args(["-n", "4", "--thumb", "96"])
        .assert()
        .success();
    assert!(image::open(&sheet).is_ok());
}

#[test]
fn demo_quick_writes_a_report_and_is_reproducible() {
    let t = TempDir::new().unwrap();
    for name in ["d1", "d2"] {
        bin()
            .args(["demo", "--quick", "--seed", "4", "--out"])
            .arg(t.path().join(name))
            .assert()
            .success()
            .stdout(
                predicate::str::contains("Report in")
                    .and(predicate::str::contains("Blind baseline")),
            );
    }
    let d1 = t.path().join("d1");
    for f in [
        "summary.txt",
        "test_samples.png",
        "prepared/manifest.json",
        "data/Flickr8k.token.txt",
        "model/eval-test/metrics.json",
        "model/eval-test/samples.html",
        "blind/eval-test/results_beam3.json",
    ] {
        assert!(d1.join(f).is_file(), "{f}");
    }
    for f in [
        "test_samples.png",
        "prepared/vocab.json",
        "data/Flickr8k.token.txt",
        "features.safetensors",
        "resnet-features.safetensors",
        "model/weights.safetensors",
        "model/eval-test/results_beam3.json",
    ] {
        let a = std::fs::read(d1.join(f)).unwrap();
        let b = std::fs::read(t.path().join("d2").join(f)).unwrap();
        assert!(a == b, "{f} differs between runs with the same seed");
    }
    // Nothing in the report names the folder it was written in before it was put in place.
    let summary = std::fs::read_to_string(d1.join("summary.txt")).unwrap();
    for f in [
        "summary.txt",
        "prepared/manifest.json",
        "prepared/captions.jsonl",
    ] {
        let text = std::fs::read_to_string(d1.join(f)).unwrap();
        assert!(
            !text.contains(".partial"),
            "{f} names the unfinished folder"
        );
    }
    bin()
        .args(["show", "-n", "2", "--out"])
        .arg(t.path().join("sheet.png"))
        .arg(d1.join("prepared"))
        .assert()
        .success();
    // The demo's model captions a held-out photo by itself (its encoder is kept with it),
    // with the caption the report shows.
    let sample = summary
        .lines()
        .skip_while(|l| !l.starts_with("Sample captions"))
        .nth(1)
        .expect("a sample caption");
    let (name, shown) = sample.trim().split_once(' ').unwrap();
    let photo = d1.join("data/images").join(name);
    let out = bin()
        .arg("caption")
        .arg(&photo)
        .arg("--model")
        .arg(d1.join("model"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap().trim(), shown.trim());
    // Other encoder weights: refused, naming both.
    bin()
        .args(["caption", "--weights", "random", "--model"])
        .arg(d1.join("model"))
        .arg(&photo)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("concept CNN")
                .and(predicate::str::contains("(sha256:"))
                .and(predicate::str::contains("random weights (seed 0")),
        );
}

#[test]
fn concepts_trains_from_the_captions_and_repeats_itself() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), "s", 30, 2);
    let prep = t.path().join("prep");
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&prep)
        .assert()
        .success();
    let run = |out: &Path| {
        bin()
            .args(["concepts", "--epochs", "2", "--size", "32", "--data"])
            .arg(&prep)
            .arg("--out")
            .arg(out)
            .assert()
            .success()
            .stdout(
                predicate::str::contains("epoch   2: loss").and(predicate::str::contains("dev")),
            )
    };
    // The same run into two folders: the same bytes (the features name the network's
    // weights beside them by file name).
    for d in ["1", "2"] {
        std::fs::create_dir(t.path().join(d)).unwrap();
    }
    let (a, b) = (
        t.path().join("1/f.safetensors"),
        t.path().join("2/f.safetensors"),
    );
    run(&a);
    run(&b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let weights = t.path().join("1/f.encoder.safetensors");
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        std::fs::read(t.path().join("2/f.encoder.safetensors")).unwrap()
    );
    let recorded = autocaption_features::FeatureStore::load(&a).unwrap();
    let spec = recorded.encoder().expect("the features record the network");
    assert_eq!(spec.weights.as_deref(), Some(weights.to_str().unwrap()));
    // 30 images, a 2×2 grid of 64 channels each.
    let meta = std::fs::read(&a).unwrap();
    let header_len = u64::from_le_bytes(meta[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&meta[8..8 + header_len]).unwrap();
    let shape = &header
        .as_object()
        .unwrap()
        .values()
        .find(|v| v.get("shape").is_some())
        .unwrap()["shape"];
    assert_eq!(shape, &serde_json::json!([30, 256]));
    bin()
        .args(["concepts", "--size", "40", "--data"])
        .arg(&prep)
        .arg("--out")
        .arg(t.path().join("c.safetensors"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--size must be a multiple of 16 from 16 to 1024, got 40",
        ));
    assert!(!t.path().join("c.safetensors").exists());
}

#[test]
fn features_skip_corrupt_images_and_resume() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), "s", 5, 1);
    let images = data.join("images");
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let out = t.path().join("f.safetensors");
    bin()
        .args(["features", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("no encoder weights given"));
    bin()
        .args(["features", "--weights", "random", "--seed", "3", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("broken.png"));
    let store = autocaption_features::FeatureStore::load(&out).unwrap();
    assert_eq!((store.len(), store.dim()), (5, 2048));
    assert!(store
        .get("synth_00000.png")
        .unwrap()
        .iter()
        .all(|v| v.is_finite()));
    let report = read_json(&t.path().join("f.report.json"));
    assert_eq!(report["failed"][0]["image"], "broken.png");
    let first = std::fs::read(&out).unwrap();
    // A rerun has nothing left to do and leaves the same bytes.
    bin()
        .args([
            "features",
            "-q",
            "--weights",
            "random",
            "--seed",
            "3",
            "--images",
        ])
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert!(std::fs::read(&out).unwrap() == first);
    assert_eq!(
        read_json(&t.path().join("f.report.json"))["already_done"],
        5
    );
}

#[test]
fn int8_features_record_their_calibration_and_are_never_mixed_with_f32() {
    let t = TempDir::new().unwrap();
    let images = synth(t.path(), "s", 4, 2).join("images");
    let run = |out: &Path, extra: &[&str]| {
        let mut c = bin();
        c.args(["features", "-q", "--weights", "random", "--seed", "3"])
            .args(extra)
            .arg("--images")
            .arg(&images)
            .arg("--out")
            .arg(out);
        c.assert()
    };
    let (f32_out, q) = (
        t.path().join("f.safetensors"),
        t.path().join("q.safetensors"),
    );
    run(&f32_out, &[]).success();
    run(&q, &["--precision", "int8"]).success();
    let calibration = t.path().join("q.safetensors.calibration.json");
    assert!(calibration.is_file());
    let (f, qs) = (
        autocaption_features::FeatureStore::load(&f32_out).unwrap(),
        autocaption_features::FeatureStore::load(&q).unwrap(),
    );
    let (fe, qe) = (f.encoder().unwrap(), qs.encoder().unwrap());
    assert!(fe.int8.is_none());
    let cal = qe.int8.as_ref().expect("int8 features record their ranges");
    assert_eq!((cal.images, cal.ranges.len()), (4, 49));
    assert!(qe.identity().contains("int8 with calibration sha256:"));
    assert!(fe.same_weights(qe) && !fe.same_encoder(qe));
    // Close to the f32 features, image by image.
    for name in f.names() {
        let (a, b) = (f.get(name).unwrap(), qs.get(name).unwrap());
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        assert!(cosine > 0.99, "{name}: cosine {cosine}");
    }
    // The same calibration read back gives the same bytes; so does measuring it again.
    let q2 = t.path().join("q2.safetensors");
    run(&q2, &["--precision", "int8"]).success();
    let cal_arg = calibration.to_str().unwrap();
    let q3 = t.path().join("q3.safetensors");
    run(&q3, &["--precision", "int8", "--calibration", cal_arg]).success();
    assert!(std::fs::read(&q3).unwrap() == std::fs::read(&q).unwrap());
    assert!(std::fs::read(&q2).unwrap() == std::fs::read(&q).unwrap());
    // int8 into the f32 file, and f32 into the int8 file: refused, nothing changed.
    let before = std::fs::read(&f32_out).unwrap();
    run(&f32_out, &["--precision", "int8"])
        .failure()
        .stderr(predicate::str::contains("made with another encoder"));
    run(&q, &[])
        .failure()
        .stderr(predicate::str::contains("made with another encoder"));
    assert!(std::fs::read(&f32_out).unwrap() == before);
    // A calibration of other weights names the file and both encoders.
    let other = t.path().join("o.safetensors");
    let mut c = bin();
    c.args(["features", "-q", "--weights", "random", "--seed", "4"])
        .args(["--precision", "int8", "--calibration", cal_arg])
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&other)
        .assert()
        .failure()
        .stderr(predicate::str::contains("q.safetensors.calibration.json"))
        .stderr(predicate::str::contains("seed 3"));
    assert!(!other.exists());
    // Calibration flags without int8, and a folder without images: refused before any work.
    run(&other, &["--calibrate", images.to_str().unwrap()])
        .failure()
        .stderr(predicate::str::contains("go with --precision int8"));
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run(
        &other,
        &[
            "--precision",
            "int8",
            "--calibrate",
            empty.to_str().unwrap(),
        ],
    )
    .failure()
    .stderr(predicate::str::contains("empty"));
    assert!(!other.exists());
}

#[test]
fn features_from_weight_files_match_keras_and_pick_the_preset() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let t = TempDir::new().unwrap();
    let images = t.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for n in ["rgb_37x23.png", "smooth_130x90.jpg"] {
        std::fs::copy(
            fixtures.join("keras_preprocess/images").join(n),
            images.join(n),
        )
        .unwrap();
    }
    // The Keras HDF5 file: Keras preprocessing, the fixture's Keras features.
    let out = t.path().join("keras.safetensors");
    bin()
        .args(["features", "-q", "--weights"])
        .arg(fixtures.join("resnet/keras_w4.h5"))
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let store = autocaption_features::FeatureStore::load(&out).unwrap();
    assert_eq!((store.len(), store.dim()), (2, 128));
    let expected = read_json(&fixtures.join("resnet/keras_w4.json"));
    let want: Vec<Vec<f32>> = (0..2)
        .map(|i| {
            let row = expected["features"][i].as_array().unwrap();
            row.iter().map(|v| v.as_f64().unwrap() as f32).collect()
        })
        .collect();
    // Tolerance 1e-4 relative to the largest feature.
    let scale = want.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    for (name, want) in ["rgb_37x23.png", "smooth_130x90.jpg"].iter().zip(&want) {
        for (a, b) in store.get(name).unwrap().iter().zip(want) {
            assert!((a - b).abs() <= 1e-4 * scale, "{name}: {a} vs {b}");
        }
    }
    let report = read_json(&t.path().join("keras.report.json"));
    assert_eq!(report["encoder"]["kind"], "resnet50_keras");
    assert!(report["encoder"]["sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // The file records its encoder, as the report does.
    let recorded = store.encoder().expect("the features record their encoder");
    assert_eq!(
        serde_json::to_value(recorded).unwrap()["sha256"],
        report["encoder"]["sha256"]
    );
    // The torchvision safetensors file into the same output: refused, features differ.
    bin()
        .args(["features", "--weights"])
        .arg(fixtures.join("resnet/torchvision_w4.safetensors"))
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("made with another encoder"));
    let out2 = t.path().join("tv.safetensors");
    bin()
        .args(["features", "-q", "--weights"])
        .arg(fixtures.join("resnet/torchvision_w4.safetensors"))
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    let report = read_json(&t.path().join("tv.report.json"));
    assert_eq!(report["encoder"]["kind"], "resnet50_torchvision");
    assert!(report["encoder"]["preprocessing"]
        .as_str()
        .unwrap()
        .starts_with("torchvision"));
    // Not a weights file: one line naming it, nothing written.
    let junk = t.path().join("junk.bin");
    std::fs::write(&junk, b"nothing useful").unwrap();
    let out3 = t.path().join("none.safetensors");
    let assert = bin()
        .args(["features", "--weights"])
        .arg(&junk)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out3)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("junk.bin") && stderr.contains("neither Keras HDF5 nor safetensors"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!out3.exists());
}

#[test]
fn compile_refuses_malformed_onnx_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    // Not protobuf at all, and a truncated model (a valid one cut short).
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff\xff this is not a model").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let model = autocaption_onnx::proto::ModelProto {
        producer_name: Some("x".repeat(200)),
        ..Default::default()
    };
    use prost::Message;
    let bytes = model.encode_to_vec();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for (file, what) in [
        (&garbage, "not a valid ONNX model"),
        (&truncated, "not a valid ONNX model"),
    ] {
        bin()
            .arg("compile")
            .arg(file)
            .arg("--out")
            .arg(&out)
            .assert()
            .failure()
            .stderr(
                predicate::str::contains(file.display().to_string())
                    .and(predicate::str::contains(what)),
            )
            .stderr(predicate::str::contains("panicked").not());
    }
    // A tensor whose data does not match its dimensions.
    let wrong = dir.path().join("wrong.onnx");
    let mut t =
        autocaption_onnx::Tensor::new(vec![2], autocaption_onnx::TensorData::F32(vec![1.0, 2.0]))
            .to_proto("w");
    t.dims = vec![3];
    let model = autocaption_onnx::proto::ModelProto {
        graph: Some(autocaption_onnx::proto::GraphProto {
            initializer: vec![t],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(&wrong, model.encode_to_vec()).unwrap();
    bin()
        .arg("compile")
        .arg(&wrong)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("tensor 'w'").and(predicate::str::contains(
                "8 bytes of data for dimensions [3]",
            )),
        );
    assert!(
        !out.exists(),
        "nothing is written for a model that does not compile"
    );
}

/// `compile --weights external --quantize int8 --batch 1 --cc cc`: the blob beside the
/// code, the runner checks it (a truncated blob is one clear line, exit 1), and `bench
/// compiled` times the same file end to end.
#[test]
fn compile_external_int8_and_bench_compiled() {
    if !std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no C compiler (cc)");
        return;
    }
    let dir = TempDir::new().unwrap();
    let config = autocaption_model::MergeConfig {
        vocab_size: 20,
        feature_dim: 8,
        embed_dim: 4,
        text_lstm: 16,
        text_dense: 6,
        image_dense: 6,
        merge_lstm: 8,
        decoder_lstm: 16,
        dropout: 0.5,
        max_len: 5,
    };
    let model = autocaption_model::MergeModel::new(config, 1);
    let onnx = dir.path().join("decoder.onnx");
    autocaption_onnx::write_model(&onnx, &autocaption_export::decoder(&model), None).unwrap();
    let out = dir.path().join("c");
    bin()
        .arg("compile")
        .arg(&onnx)
        .args([
            "--batch",
            "1",
            "--weights",
            "external",
            "--quantize",
            "int8",
            "--cc",
            "cc",
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote").and(predicate::str::contains("model.weights")));
    let blob = std::fs::read(out.join("model.weights")).unwrap();
    assert_eq!(&blob[..8], b"ACWEIGHT");
    let floats = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tokens = dir.path().join("t.bin");
    std::fs::write(&tokens, floats(&[0.0, 0.0, 1.0, 4.0, 7.0])).unwrap();
    let feats = dir.path().join("f.bin");
    std::fs::write(&feats, floats(&[0.5; 8])).unwrap();
    let run = std::process::Command::new(out.join("model"))
        .arg(out.join("model.weights"))
        .arg(&tokens)
        .arg(&feats)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let probs: Vec<f64> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(probs.len(), 20);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    let cut = dir.path().join("cut.weights");
    std::fs::write(&cut, &blob[..blob.len() - 4]).unwrap();
    let bad = std::process::Command::new(out.join("model"))
        .arg(&cut)
        .arg(&tokens)
        .arg(&feats)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("cut.weights") && err.contains("error 4"),
        "{err}"
    );

    bin()
        .args([
            "bench",
            "compiled",
            "--repeats",
            "2",
            "--python",
            "none",
            "--model",
        ])
        .arg(&onnx)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("generated C")
                .and(predicate::str::contains("onnxruntime: not timed")),
        );
}

/// Values that used to panic, run away or pass silently: `bench train --fixed-len 0`,
/// `synth --count` in the billions, `compile --dim N=0`, and a `--dim` name the model does
/// not have (named, with the ones it has).
#[test]
fn out_of_range_flags_are_one_clear_line() {
    let dir = TempDir::new().unwrap();
    bin()
        .args(["bench", "train", "--fixed-len", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--fixed-len 0: expected 1 to 1000",
        ))
        .stderr(predicate::str::contains("panicked").not());
    // Billions of images: refused before anything is written.
    let many = dir.path().join("many");
    bin()
        .args(["synth", "--count", "3000000000", "--out"])
        .arg(&many)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--count 3000000000: expected 1 to 1000000",
        ));
    assert!(!many.exists());
    let config = autocaption_model::MergeConfig {
        vocab_size: 10,
        feature_dim: 4,
        embed_dim: 4,
        text_lstm: 4,
        text_dense: 4,
        image_dense: 4,
        merge_lstm: 4,
        decoder_lstm: 4,
        dropout: 0.5,
        max_len: 3,
    };
    let onnx = dir.path().join("decoder.onnx");
    let model = autocaption_model::MergeModel::new(config, 1);
    autocaption_onnx::write_model(&onnx, &autocaption_export::decoder(&model), None).unwrap();
    let out = dir.path().join("c");
    for (dim, says) in [
        ("N=0", "--dim N=0: expected a size from 1 to 1048576"),
        (
            "X=3",
            "'X' is not a symbolic dimension of the model's inputs (they have: N)",
        ),
    ] {
        bin()
            .arg("compile")
            .arg(&onnx)
            .args(["--dim", dim, "--out"])
            .arg(&out)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
    }
    assert!(!out.exists());
}
