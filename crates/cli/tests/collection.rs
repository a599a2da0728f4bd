//! Photo collections: captions into a resumable record, CSV, an HTML gallery and XMP
//! sidecars; sharded `features` and `caption` runs merged into the bytes of one run.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use tempfile::TempDir;

mod common;
use common::{bin, concept_model};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn four_shards_and_merge_give_the_bytes_of_one_run() {
    let (model, images) = concept_model();
    let t = TempDir::new().unwrap();
    let out = |n: &str| t.path().join(n);
    let weights = model.join("encoder.safetensors");
    // Features: one run, then four shards joined.
    bin()
        .args(["features", "-q", "--batch-size", "4", "--weights"])
        .arg(&weights)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out("one.safetensors"))
        .assert()
        .success();
    let mut shards = Vec::new();
    for i in 0..4 {
        let s = out(&format!("f{i}.safetensors"));
        bin()
            .args([
                "features",
                "-q",
                "--batch-size",
                "4",
                "--shard",
                &format!("{i}/4"),
                "--weights",
            ])
            .arg(&weights)
            .arg("--images")
            .arg(images)
            .arg("--out")
            .arg(&s)
            .assert()
            .success();
        shards.push(s);
    }
    let sizes: Vec<usize> = shards
        .iter()
        .map(|s| autocaption_features::FeatureStore::load(s).unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 60, "{sizes:?}");
    // Shards of unequal sizes, some ending in a short batch (which is padded).
    assert!(sizes.iter().all(|&n| n > 5), "{sizes:?}");
    assert!(sizes.iter().any(|&n| n % 4 != 0), "{sizes:?}");
    bin()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(out("merged.safetensors"))
        .assert()
        .success()
        .stderr(predicate::str::contains("Merged 4 features files"));
    assert_eq!(
        read(&out("merged.safetensors")),
        read(&out("one.safetensors"))
    );

    // Captions: the record, the CSV and the gallery.
    let caption = |extra: &[&str], record: &Path, csv: &Path, html: &Path| {
        bin()
            .args(["caption", "-q", "--model"])
            .arg(model)
            .arg(images)
            .args(extra)
            .arg("--out")
            .arg(record)
            .arg("--csv")
            .arg(csv)
            .arg("--html")
            .arg(html)
            .assert()
            .success();
    };
    caption(&[], &out("one.jsonl"), &out("one.csv"), &out("one.html"));
    let mut records = Vec::new();
    for i in 0..4 {
        let r = out(&format!("c{i}.jsonl"));
        caption(
            &["--shard", &format!("{i}/4")],
            &r,
            &out(&format!("c{i}.csv")),
            &out(&format!("c{i}.html")),
        );
        records.push(r);
    }
    bin()
        .arg("merge")
        .args(&records)
        .arg("--out")
        .arg(out("merged.jsonl"))
        .arg("--csv")
        .arg(out("merged.csv"))
        .arg("--html")
        .arg(out("merged.html"))
        .assert()
        .success();
    for (a, b) in [
        ("merged.jsonl", "one.jsonl"),
        ("merged.csv", "one.csv"),
        ("merged.html", "one.html"),
    ] {
        assert_eq!(read(&out(a)), read(&out(b)), "{a} against {b}");
    }
    // The record: one line a photo, in the order of their paths, each as `caption` says.
    let lines: Vec<serde_json::Value> = String::from_utf8(read(&out("one.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    let names: Vec<&str> = lines.iter().map(|l| l["image"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(lines[0]["alternatives"].as_array().unwrap().len(), 2);
    let first = bin()
        .args(["caption", "--json", "--model"])
        .arg(model)
        .arg(names[0])
        .assert()
        .success();
    let alone: serde_json::Value = serde_json::from_slice(&first.get_output().stdout).unwrap();
    assert_eq!(alone["caption"], lines[0]["caption"]);
    // The gallery: every photo with its caption as alt text, linked relatively.
    let html = String::from_utf8(read(&out("one.html"))).unwrap();
    assert_eq!(html.matches("<img src=\"").count(), 60);
    let cap = lines[0]["caption"].as_str().unwrap();
    assert!(html.contains(&format!("alt=\"{cap}\"")), "{cap}");
    assert!(html.contains("src=\"../"), "relative links");
    // Shards of different runs do not mix.
    let other = out("other.jsonl");
    std::fs::write(
        &other,
        String::from_utf8(read(&records[0])).unwrap().replacen(
            "\"caption\":\"",
            "\"caption\":\"x",
            1,
        ),
    )
    .unwrap();
    bin()
        .arg("merge")
        .arg(&records[0])
        .arg(&other)
        .arg("--out")
        .arg(out("bad.jsonl"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("captioned differently"));
    assert!(!out("bad.jsonl").exists());
    // An existing output needs --force, and is replaced only by its own kind.
    bin()
        .arg("merge")
        .args(&records)
        .arg("--out")
        .arg(out("merged.jsonl"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("--force"));
    bin()
        .args(["merge", "--force"])
        .args(&records)
        .arg("--out")
        .arg(out("merged.jsonl"))
        .assert()
        .success();
    bin()
        .args(["merge", "--force"])
        .args(&records)
        .arg("--out")
        .arg(out("one.safetensors"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("not an earlier output"));
    assert_eq!(read(&out("merged.jsonl")), read(&out("one.jsonl")));
}

#[test]
fn a_killed_caption_run_resumes_to_the_same_record() {
    // Enough photos for several chunks of the concept CNN's 64-image batches.
    let t = TempDir::new().unwrap();
    let (model, _) = concept_model();
    let images = t.path().join("many");
    bin()
        .args([
            "synth", "-q", "--count", "400", "--seed", "9", "--size", "64", "--out",
        ])
        .arg(&images)
        .assert()
        .success();
    let images = images.join("images");
    let whole = t.path().join("whole.jsonl");
    let run = |out: &Path| {
        let mut c = Process::new(assert_cmd::cargo::cargo_bin("autocaption"));
        c.args(["caption", "-q", "--save-every", "64", "--model"])
            .arg(model)
            .arg(&images)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    assert!(run(&whole).status().unwrap().success());
    assert!(
        !autocaption_pipeline::parts_dir(&whole).exists(),
        "parts are removed at the end"
    );

    // SIGKILL once the first part is saved; the rerun does only the rest.
    let killed = t.path().join("killed.jsonl");
    let parts = autocaption_pipeline::parts_dir(&killed);
    let mut child = run(&killed).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while !parts.join("part-000000.jsonl").exists() && Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    let saved = std::fs::read_dir(&parts).map(|d| d.count()).unwrap_or(0);
    eprintln!("killed with {saved} part(s) saved");
    let rerun = bin()
        .args(["caption", "--save-every", "64", "--model"])
        .arg(model)
        .arg(&images)
        .arg("--out")
        .arg(&killed)
        .assert()
        .success();
    let said = String::from_utf8_lossy(&rerun.get_output().stderr).into_owned();
    if saved > 0 {
        assert!(!said.contains("(0 from an earlier run"), "{said}");
    }
    assert_eq!(read(&killed), read(&whole));
    assert!(!parts.exists());

    // A rerun over a finished record does nothing and changes nothing.
    bin()
        .args(["caption", "--model"])
        .arg(model)
        .arg(&images)
        .arg("--out")
        .arg(&killed)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "Captioned 0 photos (400 from an earlier run",
        ));
    assert_eq!(read(&killed), read(&whole));

    // A record that is not ours is refused before anything is read.
    let foreign = t.path().join("notes.jsonl");
    std::fs::write(&foreign, "my own notes\n").unwrap();
    bin()
        .args(["caption", "--model"])
        .arg(model)
        .arg(&images)
        .arg("--out")
        .arg(&foreign)
        .assert()
        .failure()
        .stderr(predicate::str::contains("line 1: not a caption record"));
    assert_eq!(read(&foreign), b"my own notes\n");
}

const DARKTABLE: &str = include_str!("../../../fixtures/xmp/darktable.jpg.xmp");

#[test]
fn xmp_sidecars_are_written_beside_the_photos_and_merged() {
    let (model, images) = concept_model();
    let t = TempDir::new().unwrap();
    let photos = t.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for n in ["synth_00000.png", "synth_00001.png"] {
        std::fs::copy(images.join(n), photos.join(n)).unwrap();
    }
    // One photo already has darktable's sidecar.
    let dt = photos.join("synth_00000.png.xmp");
    std::fs::write(&dt, DARKTABLE).unwrap();
    let before: Vec<Vec<u8>> = ["synth_00000.png", "synth_00001.png"]
        .iter()
        .map(|n| read(&photos.join(n)))
        .collect();
    bin()
        .args(["caption", "--xmp", "--model"])
        .arg(model)
        .arg(&photos)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 XMP sidecars"));
    let side = String::from_utf8(read(&dt)).unwrap();
    for kept in [
        "xmp:Rating=\"3\"",
        "darktable:operation=\"exposure\"",
        "<rdf:li>holiday</rdf:li>",
        "At the beach &amp; after",
    ] {
        assert!(side.contains(kept), "{kept} lost");
    }
    let line = bin()
        .args(["caption", "--model"])
        .arg(model)
        .arg(photos.join("synth_00000.png"))
        .assert()
        .success();
    let caption = String::from_utf8(line.get_output().stdout.clone()).unwrap();
    assert!(side.contains(&format!(
        "<rdf:li xml:lang=\"x-default\">{}</rdf:li>",
        caption.trim()
    )));
    let new = String::from_utf8(read(&photos.join("synth_00001.png.xmp"))).unwrap();
    assert!(new.starts_with("<?xpacket"));
    // The photos are untouched; a rerun leaves the sidecars as they are.
    for (n, b) in ["synth_00000.png", "synth_00001.png"].iter().zip(&before) {
        assert_eq!(&read(&photos.join(n)), b);
    }
    bin()
        .args(["caption", "-q", "--xmp", "--xmp-naming", "ext", "--model"])
        .arg(model)
        .arg(&photos)
        .assert()
        .success();
    assert_eq!(String::from_utf8(read(&dt)).unwrap(), side);
    // Lightroom's naming: photo.xmp.
    bin()
        .args(["caption", "-q", "--xmp", "--xmp-naming", "base", "--model"])
        .arg(model)
        .arg(photos.join("synth_00001.png"))
        .assert()
        .success();
    assert!(photos.join("synth_00001.xmp").is_file());
    // A broken sidecar stops the run with its name and is left alone.
    std::fs::write(photos.join("synth_00001.png.xmp"), "<broken").unwrap();
    bin()
        .args(["caption", "--xmp", "--model"])
        .arg(model)
        .arg(&photos)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "synth_00001.png.xmp: not a readable XMP sidecar",
        ));
    assert_eq!(read(&photos.join("synth_00001.png.xmp")), b"<broken");
}

#[test]
fn collection_flags_are_checked_before_anything_is_written() {
    let (model, images) = concept_model();
    let t = TempDir::new().unwrap();
    for (args, needle) in [
        (
            vec!["--shard", "4/4", "--out", "x.jsonl"],
            "expected I/N with 0 ≤ I < N",
        ),
        (
            vec!["--out", "a.jsonl", "--csv", "a.jsonl"],
            "is named for two outputs",
        ),
        (
            vec!["--save-every", "0", "--out", "x.jsonl"],
            "--save-every 0",
        ),
        (vec!["--json", "--out", "x.jsonl"], "--json prints captions"),
    ] {
        bin()
            .current_dir(t.path())
            .args(["caption", "--model"])
            .arg(model)
            .arg(images)
            .args(&args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(needle));
    }
    // A CSV or gallery of someone else's is never replaced.
    let mine = t.path().join("mine.html");
    std::fs::write(&mine, "<html>my page</html>").unwrap();
    bin()
        .args(["caption", "--model"])
        .arg(model)
        .arg(images)
        .arg("--html")
        .arg(&mine)
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not an earlier output"));
    assert_eq!(read(&mine), b"<html>my page</html>");
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
}

#[test]
fn a_model_reads_int8_features_of_its_concept_encoder() {
    let (model, images) = concept_model();
    let t = TempDir::new().unwrap();
    let q = t.path().join("q.safetensors");
    bin()
        .args(["features", "-q", "--precision", "int8", "--weights"])
        .arg(model.join("encoder.safetensors"))
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(&q)
        .assert()
        .success();
    let store = autocaption_features::FeatureStore::load(&q).unwrap();
    let spec = store.encoder().unwrap();
    assert_eq!(spec.int8.as_ref().map(|c| c.ranges.len()), Some(4));
    // The model was trained on f32 features of the same weights: it reads these, with
    // int8 decoder weights too, and writes its metrics.
    let prep = model.parent().unwrap().join("prep");
    let out = t.path().join("eval");
    bin()
        .args(["evaluate", "-q", "--decoder-weights", "int8", "--model"])
        .arg(model)
        .arg("--data")
        .arg(&prep)
        .arg("--features")
        .arg(&q)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("metrics.json").is_file());
}
