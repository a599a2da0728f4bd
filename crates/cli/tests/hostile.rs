//! Issue 22: hostile input and faults. Every case gets a clear error (or a sane result), a
//! non-zero exit where it fails, and leaves nothing deleted and nothing half-written.

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

fn exe() -> PathBuf {
    assert_cmd::cargo::cargo_bin("autocaption")
}

fn synth(dir: &Path, count: usize) -> PathBuf {
    let out = dir.join("synth");
    bin()
        .args(["synth", "-q", "--size", "32", "--count", &count.to_string()])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

fn prepare(data: &Path, out: &Path) {
    bin()
        .args(["prepare", "-q"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

/// Trains a model of width `w` everywhere for one epoch into `out`.
fn train_tiny(dir: &Path, prep: &Path, features: &Path, out: &Path, w: usize) {
    let cfg = dir.join("tiny.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"embed_dim": {w}, "text_lstm": {w}, "text_dense": {w}, "image_dense": {w}, "merge_lstm": {w}, "decoder_lstm": {w}}}"#
        ),
    )
    .unwrap();
    bin()
        .args(["train", "-q", "--epochs", "1", "--data"])
        .arg(prep)
        .arg("--features")
        .arg(features)
        .arg("--model-config")
        .arg(&cfg)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

/// Every file under `dir` with its bytes, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Names in `dir` that are staging or temporary files.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-") || n.starts_with(".autocaption-"))
        .collect()
}

#[test]
fn force_never_replaces_an_input_or_a_foreign_folder() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), 20);
    let before = snapshot(&data);
    // prepare DIR/captions --force --out DIR: the output holds the input.
    bin()
        .arg("prepare")
        .arg(data.join("Flickr8k.token.txt"))
        .arg("--out")
        .arg(&data)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    // Through a symbolic link to the folder, too.
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&link)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    // A folder of the user's that is not a prepared dataset.
    let photos = t.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("holiday.jpg"), b"precious").unwrap();
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--out")
        .arg(&photos)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to replace it, even with --force",
        ));
    assert_eq!(
        std::fs::read(photos.join("holiday.jpg")).unwrap(),
        b"precious"
    );
    assert_eq!(snapshot(&data), before, "the dataset is untouched");
    // features --out naming the image folder.
    bin()
        .args(["features", "--weights", "random", "--images"])
        .arg(data.join("images"))
        .arg("--out")
        .arg(data.join("images"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    assert_eq!(snapshot(&data), before, "the dataset is untouched");

    // train --force --out D --data D; evaluate --force --out M --model M.
    let prep = t.path().join("prep");
    prepare(&data, &prep);
    let names: Vec<String> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let n = names.len();
    let features = t.path().join("f.safetensors");
    FeatureStore::new(names, 4, vec![0.5; n * 4])
        .save(&features)
        .unwrap();
    let prep_before = snapshot(&prep);
    bin()
        .args(["train", "--epochs", "1", "--force", "--data"])
        .arg(&prep)
        .arg("--features")
        .arg(&features)
        .arg("--out")
        .arg(&prep)
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    assert_eq!(snapshot(&prep), prep_before);
    let model = t.path().join("model");
    train_tiny(t.path(), &prep, &features, &model, 4);
    let model_before = snapshot(&model);
    bin()
        .args(["evaluate", "--force", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&prep)
        .arg("--out")
        .arg(&model)
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    assert_eq!(snapshot(&model), model_before);
}

#[test]
fn show_compile_and_export_need_force_and_replace_only_their_own_files() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), 12);
    // show: an existing file needs --force; --force replaces only a sheet it drew.
    let notes = t.path().join("notes.png");
    std::fs::write(&notes, b"\x89PNG\r\n\x1a\nnot a sheet").unwrap();
    bin()
        .args(["show", "-n", "2"])
        .arg(&data)
        .arg("--out")
        .arg(&notes)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists (pass --force"));
    bin()
        .args(["show", "-n", "2", "--force"])
        .arg(&data)
        .arg("--out")
        .arg(&notes)
        .assert()
        .failure()
        .stderr(predicate::str::contains("even with --force"));
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        b"\x89PNG\r\n\x1a\nnot a sheet"
    );
    let sheet = t.path().join("sheet.png");
    for force in [false, true] {
        let mut c = bin();
        c.args(["show", "-q", "-n", "2"])
            .arg(&data)
            .arg("--out")
            .arg(&sheet);
        if force {
            c.arg("--force");
        }
        c.assert().success();
    }
    // An input image as --out: not a sheet, never replaced; the images folder itself.
    let first = std::fs::read_dir(data.join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let photo = std::fs::read(&first).unwrap();
    bin()
        .args(["show", "-n", "2", "--force"])
        .arg(&data)
        .arg("--out")
        .arg(&first)
        .assert()
        .failure()
        .stderr(predicate::str::contains("even with --force"));
    assert_eq!(std::fs::read(&first).unwrap(), photo);
    bin()
        .args(["show", "-n", "2", "--force", "--images"])
        .arg(data.join("images"))
        .arg(&data)
        .arg("--out")
        .arg(data.join("images"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    assert_eq!(std::fs::read(&first).unwrap(), photo);

    // compile: the user's own model.c is never replaced; generated files need --force.
    let onnx = t.path().join("m.onnx");
    write_tiny_onnx(&onnx);
    let out = t.path().join("c");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("model.c"), "int main(void) { return 0; }\n").unwrap();
    for force in [false, true] {
        let mut c = bin();
        c.arg("compile").arg(&onnx).arg("--out").arg(&out);
        if force {
            c.arg("--force");
        }
        c.assert()
            .failure()
            .stderr(predicate::str::contains(if force {
                "even with --force"
            } else {
                "already exists"
            }));
    }
    assert_eq!(
        std::fs::read_to_string(out.join("model.c")).unwrap(),
        "int main(void) { return 0; }\n"
    );
    let out2 = t.path().join("c2");
    bin()
        .args(["compile", "-q"])
        .arg(&onnx)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    bin()
        .arg("compile")
        .arg(&onnx)
        .arg("--out")
        .arg(&out2)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    bin()
        .args(["compile", "-q", "--force"])
        .arg(&onnx)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    // The model itself as an output file (an ONNX file named like the weights).
    let odd = t.path().join("x.weights");
    std::fs::copy(&onnx, &odd).unwrap();
    bin()
        .args(["compile", "--force", "--name", "x", "--weights", "external"])
        .arg(&odd)
        .arg("--out")
        .arg(t.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains("is or contains the input"));
    assert_eq!(std::fs::read(&odd).unwrap(), std::fs::read(&onnx).unwrap());
}

/// A one-node ONNX model (Relu of a [1, 4] input), built with the compiler's own proto types.
fn write_tiny_onnx(path: &Path) {
    write_onnx(path, 0);
}

/// Relu of a [1, 4] input, then (with `width` > 0) a MatMul by a constant [4, width].
fn write_onnx(path: &Path, width: i64) {
    use autocaption_onnx::proto::{
        tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto,
        OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let info = |name: &str, cols: i64| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: [1, cols]
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: if width > 0 {
                vec![
                    NodeProto {
                        op_type: Some("Relu".into()),
                        input: vec!["x".into()],
                        output: vec!["r".into()],
                        ..Default::default()
                    },
                    NodeProto {
                        op_type: Some("MatMul".into()),
                        input: vec!["r".into(), "w".into()],
                        output: vec!["y".into()],
                        ..Default::default()
                    },
                ]
            } else {
                vec![NodeProto {
                    op_type: Some("Relu".into()),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }]
            },
            initializer: if width > 0 {
                vec![TensorProto {
                    name: Some("w".into()),
                    dims: vec![4, width],
                    data_type: Some(DataType::Float as i32),
                    float_data: (0..4 * width).map(|i| i as f32 * 0.001).collect(),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            input: vec![info("x", 4)],
            output: vec![info("y", if width > 0 { width } else { 4 })],
            ..Default::default()
        }),
        ..Default::default()
    };
    autocaption_onnx::write_model(path, &model, None).unwrap();
}

#[test]
fn numeric_flags_out_of_range_are_refused_before_anything_is_read() {
    let t = TempDir::new().unwrap();
    let x = t.path().join("missing");
    let x = x.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "features",
                "--weights",
                "random",
                "--images",
                x,
                "--out",
                x,
                "--batch-size",
                "1000",
            ],
            "--batch-size 1000: expected 1 to 256",
        ),
        (
            vec![
                "train",
                "--data",
                x,
                "--features",
                x,
                "--out",
                x,
                "--epochs",
                "200000",
            ],
            "expected 1 to 100000 epochs",
        ),
        (
            vec!["evaluate", "--model", x, "--data", x, "--samples", "5000"],
            "--samples 5000: expected 0 to 1000",
        ),
        (
            vec![
                "evaluate",
                "--model",
                x,
                "--data",
                x,
                "--beam",
                "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
            ],
            "at most 16 values",
        ),
        (
            vec!["export", "--model", x, "--out", x, "--image-size", "10000"],
            "--image-size must be 32 to 4096",
        ),
        (
            vec!["show", x, "--out", x, "--count", "20000"],
            "--count must be 1 to 10000",
        ),
    ] {
        bin()
            .args(&args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
    }
    assert!(!t.path().join("missing").exists());
}

#[test]
fn fifos_huge_files_and_limits_are_refused() {
    let t = TempDir::new().unwrap();
    let fifo = t.path().join("captions.txt");
    let made = Process::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let started = Instant::now();
        bin()
            .arg("prepare")
            .arg(&fifo)
            .arg("--out")
            .arg(t.path().join("p"))
            .timeout(Duration::from_secs(30))
            .assert()
            .failure()
            .stderr(predicate::str::contains("FIFO"));
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    // /dev/zero as a caption file: a device, refused at once.
    bin()
        .args(["prepare", "/dev/zero", "--format", "flickr8k", "--out"])
        .arg(t.path().join("p"))
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is a device"));
    // A file over --max-file-bytes names the limit.
    let data = synth(t.path(), 10);
    bin()
        .args(["prepare", "--max-file-bytes", "100"])
        .arg(&data)
        .arg("--out")
        .arg(t.path().join("p"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("limit of 100 bytes"));
    assert!(!t.path().join("p").exists());
    // show: a sheet over 100 million pixels, and a header claiming 20000×20000 pixels.
    bin()
        .args(["show", "-n", "10", "--columns", "1000", "--thumb", "4096"])
        .arg(&data)
        .arg("--out")
        .arg(t.path().join("s.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("more than the limit"));
    assert!(!t.path().join("s.png").exists());
    let bomb = t.path().join("bomb");
    std::fs::create_dir(&bomb).unwrap();
    std::fs::write(bomb.join("big.png"), png_header(20_000, 20_000)).unwrap();
    std::fs::write(
        bomb.join("captions.csv"),
        format!(
            "image,caption\nbig.png,{}\n",
            "a very long caption ".repeat(50_000)
        ),
    )
    .unwrap();
    bin()
        .args(["show"])
        .arg(bomb.join("captions.csv"))
        .arg("--out")
        .arg(t.path().join("b.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("more than the limit of 89478485"));
}

/// A PNG claiming `w`×`h` RGB pixels, with an empty image data chunk: a decompression bomb
/// as far as its header goes.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn non_finite_features_and_weights_are_refused_by_name() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), 20);
    let prep = t.path().join("prep");
    prepare(&data, &prep);
    let names: Vec<String> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut values = vec![0.25f32; names.len() * 4];
    values[2 * 4 + 3] = f32::NAN;
    let bad = t.path().join("nan.safetensors");
    FeatureStore::new(names.clone(), 4, values)
        .save(&bad)
        .unwrap();
    bin()
        .args(["train", "--epochs", "1", "--data"])
        .arg(&prep)
        .arg("--features")
        .arg(&bad)
        .arg("--out")
        .arg(t.path().join("m"))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains(format!("row 2 ({:?}) has NaN at column 3", names[2]))
                .and(predicate::str::contains("nan.safetensors")),
        );
    assert!(!t.path().join("m").exists());

    // A model whose weights hold an infinity.
    let good = t.path().join("f.safetensors");
    FeatureStore::new(names.clone(), 4, vec![0.25; names.len() * 4])
        .save(&good)
        .unwrap();
    let model = t.path().join("model");
    train_tiny(t.path(), &prep, &good, &model, 4);
    let ckpt = model.join("checkpoint.safetensors");
    let ckpt_tensor = poison(&ckpt, f32::NAN, "adam_v/");
    let target = poison(&model.join("weights.safetensors"), f32::INFINITY, "");
    bin()
        .args(["caption", "--model"])
        .arg(&model)
        .arg("--features")
        .arg(&good)
        .assert()
        .failure()
        .stderr(predicate::str::contains(target).and(predicate::str::contains("value 0 is inf")));
    // A checkpoint with a NaN in Adam's state, read by a resume.
    bin()
        .args(["train", "--resume", "--out"])
        .arg(&model)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains(ckpt_tensor).and(predicate::str::contains("value 0 is NaN")),
        );
    // Encoder weights (the concept CNN's) with a NaN.
    let f = t.path().join("c.safetensors");
    bin()
        .args(["concepts", "-q", "--epochs", "1", "--size", "16", "--data"])
        .arg(&prep)
        .arg("--out")
        .arg(&f)
        .assert()
        .success();
    let enc = t.path().join("c.encoder.safetensors");
    let enc_tensor = poison(&enc, f32::NAN, "");
    bin()
        .args(["features", "--images"])
        .arg(data.join("images"))
        .arg("--weights")
        .arg(&enc)
        .arg("--out")
        .arg(t.path().join("x.safetensors"))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains(enc_tensor).and(predicate::str::contains("value 0 is NaN")),
        );
}

/// Rewrites the safetensors file `path` (metadata kept) with the first value of its first
/// tensor (by name) starting with `prefix` set to `value`; returns that tensor's name.
fn poison(path: &Path, value: f32, prefix: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort();
    let k = tensors
        .iter()
        .position(|(n, _, _)| n.starts_with(prefix))
        .unwrap();
    tensors[k].2[..4].copy_from_slice(&value.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .unwrap();
            (n.clone(), v)
        })
        .collect();
    let out = safetensors::serialize(views, meta.metadata().clone()).unwrap();
    std::fs::write(path, out).unwrap();
    tensors[k].0.clone()
}

#[test]
fn caption_files_with_quirks_and_options_that_leave_no_vocabulary() {
    let t = TempDir::new().unwrap();
    let dir = t.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    // Classic Mac line endings: three records, not one.
    let mut text = String::new();
    for i in 0..3 {
        text.push_str(&format!("img{i}.jpg#0\ta dog runs on the grass\r"));
    }
    std::fs::write(dir.join("cr.txt"), &text).unwrap();
    let out = bin()
        .args([
            "prepare",
            "--json",
            "--auto-split",
            "0.6,0.2,0.2",
            "--format",
            "flickr8k",
        ])
        .arg(dir.join("cr.txt"))
        .arg("--out")
        .arg(t.path().join("cr"))
        .assert()
        .success();
    let m: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(m["source"]["records_read"], 3, "{m}");

    // A NUL in an image name: the record is dropped and reported.
    std::fs::write(
        dir.join("nul.txt"),
        "a\0b.jpg#0\ta cat\nok.jpg#0\ta dog runs\nok2.jpg#0\ta dog sits\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "prepare",
            "--json",
            "--auto-split",
            "0.6,0.2,0.2",
            "--format",
            "flickr8k",
        ])
        .args(["--min-count", "1"])
        .arg(dir.join("nul.txt"))
        .arg("--out")
        .arg(t.path().join("nul"))
        .assert()
        .success();
    let m: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(m["source"]["names_read"], 2, "{m}");
    assert!(m["report"].to_string().contains("control character"), "{m}");

    // Zero usable records: says so, not "pass --auto-split".
    std::fs::write(dir.join("none.txt"), "just some text\nwith no tabs\n").unwrap();
    bin()
        .args(["prepare", "--lenient", "--format", "flickr8k"])
        .arg(dir.join("none.txt"))
        .arg("--out")
        .arg(t.path().join("none"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no usable caption was read"));

    // Options that leave no vocabulary.
    let data = synth(t.path(), 10);
    for (args, says) in [
        (vec!["--max-words", "1"], "no word is left"),
        (vec!["--min-word-len", "1000"], "drops every word"),
        (
            vec!["--start-token", "x", "--end-token", "x"],
            "must differ",
        ),
    ] {
        bin()
            .arg("prepare")
            .args(&args)
            .arg(&data)
            .arg("--out")
            .arg(t.path().join("v"))
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
        assert!(!t.path().join("v").exists());
    }

    // A symbolic link loop, and --images naming a file.
    let a = t.path().join("loop_a");
    std::os::unix::fs::symlink(t.path().join("loop_b"), &a).unwrap();
    std::os::unix::fs::symlink(&a, t.path().join("loop_b")).unwrap();
    bin()
        .arg("prepare")
        .arg(&a)
        .arg("--out")
        .arg(t.path().join("l"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("symbolic links"));
    bin()
        .arg("prepare")
        .arg(&data)
        .arg("--images")
        .arg(data.join("Flickr8k.token.txt"))
        .arg("--out")
        .arg(t.path().join("l"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "is a file; --images takes the directory",
        ));

    // --resume with flags it would ignore.
    bin()
        .args(["train", "--resume", "--lr", "0.1", "--out"])
        .arg(t.path().join("m"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "'--resume' cannot be used with '--lr",
        ));
}

#[test]
fn interrupted_and_killed_runs_leave_no_staging_behind() {
    let t = TempDir::new().unwrap();
    // A staging folder of a dead process (pid far above any real one) is swept.
    let host = autocaption_io::host_tag();
    let stale = t.path().join(format!(".out.partial-4000000000@{host}-abc"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("x"), b"half").unwrap();
    let stale_tmp = t
        .path()
        .join(format!(".autocaption-4000000000@{host}-xyz.tmp"));
    std::fs::write(&stale_tmp, b"half").unwrap();
    // Another host's (or container's) entry: its process may be alive there; kept.
    let foreign = t.path().join(".autocaption-4000000000@0badf00d-xyz.tmp");
    std::fs::write(&foreign, b"in use elsewhere").unwrap();
    bin()
        .args(["synth", "-q", "--count", "10", "--size", "16", "--out"])
        .arg(t.path().join("out"))
        .assert()
        .success();
    assert!(!stale.exists(), "stale staging folder swept");
    assert!(foreign.exists(), "another host's temporary file kept");
    std::fs::remove_file(&foreign).unwrap();
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));

    // SIGINT and SIGTERM: the staging folder is removed, the old output is kept.
    for signal in ["INT", "TERM"] {
        let out = t.path().join(format!("big-{signal}"));
        let mut child = Process::new(exe())
            .args(["synth", "-q", "--count", "20000", "--size", "64", "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the staging folder to appear, then interrupt.
        let started = Instant::now();
        while leftovers(t.path()).is_empty() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        Process::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{signal}");
        assert!(!out.exists());
        assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    }
}

/// SIGKILL at several moments (milliseconds after the start) of a run; `check` looks at the
/// outputs after each kill (no half-written file).
fn kill_at_moments(cmd: &[&std::ffi::OsStr], moments_ms: &[u64], check: &dyn Fn()) {
    for &ms in moments_ms {
        let mut child = Process::new(exe())
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        check();
    }
}

#[test]
fn killed_features_compile_export_and_prepare_leave_complete_outputs() {
    let t = TempDir::new().unwrap();
    let data = synth(t.path(), 400);
    let prep = t.path().join("prep");
    prepare(&data, &prep);
    // Concept CNN weights: a real encoder that is fast enough for a kill test.
    let f0 = t.path().join("f0.safetensors");
    bin()
        .args(["concepts", "-q", "--epochs", "1", "--size", "32", "--data"])
        .arg(&prep)
        .arg("--out")
        .arg(&f0)
        .assert()
        .success();
    let weights = t.path().join("f0.encoder.safetensors");
    let images = data.join("images");

    // features: killed mid-run, then rerun: the same bytes as one uninterrupted run.
    let whole = t.path().join("whole.safetensors");
    let features = |out: &Path| {
        let mut c = Process::new(exe());
        c.args([
            "features",
            "-q",
            "--batch-size",
            "2",
            "--save-every",
            "4",
            "--images",
        ])
        .arg(&images)
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(out);
        c
    };
    assert!(features(&whole).status().unwrap().success());
    let total = FeatureStore::load(&whole).unwrap().len();
    let killed = t.path().join("killed.safetensors");
    let mut partial = Vec::new();
    let parts = t.path().join("killed.safetensors.parts");
    for ms in [20, 40, 60, 90, 130] {
        let mut child = features(&killed)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        // What is there is complete: the saved parts (the file is written once, at the end).
        let mut rows = 0;
        if killed.exists() {
            rows = FeatureStore::load(&killed).unwrap().len();
        }
        if parts.is_dir() {
            for p in std::fs::read_dir(&parts).unwrap() {
                let p = p.unwrap().path();
                if p.extension().is_some_and(|e| e == "safetensors") {
                    rows += FeatureStore::load(&p).unwrap().len();
                }
            }
        }
        partial.push(rows);
    }
    eprintln!("rows saved after each kill: {partial:?} of {total}");
    assert!(
        partial.iter().any(|&n| n > 0 && n < total),
        "no kill landed mid-run: {partial:?} of {total}"
    );
    assert!(features(&killed).status().unwrap().success());
    assert_eq!(
        std::fs::read(&killed).unwrap(),
        std::fs::read(&whole).unwrap()
    );

    // prepare: killed at any moment, --out is absent or complete.
    let p = t.path().join("p");
    let args: Vec<&std::ffi::OsStr> = vec![
        "prepare".as_ref(),
        "-q".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        p.as_os_str(),
    ];
    kill_at_moments(&args, &[2, 5, 10, 20], &|| {
        if p.exists() {
            autocaption_data::Prepared::load(&p).unwrap();
        }
    });

    // export and compile of a model: killed while writing over an earlier output, every
    // file is the earlier one or the new one, never a mix within a set, never cut short.
    let model = t.path().join("model");
    train_tiny(t.path(), &prep, &f0, &model, 8);
    let onnx = t.path().join("onnx");
    bin()
        .args(["export", "-q", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&onnx)
        .assert()
        .success();
    let exported = snapshot(&onnx);
    bin()
        .args(["export", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&onnx)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists (pass --force"));
    let args: Vec<&std::ffi::OsStr> = vec![
        "export".as_ref(),
        "-q".as_ref(),
        "--force".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        onnx.as_os_str(),
    ];
    kill_at_moments(&args, &[2, 10, 30], &|| {
        let now: Vec<_> = snapshot(&onnx)
            .into_iter()
            .filter(|(p, _)| !p.to_string_lossy().contains(".autocaption-"))
            .collect();
        assert_eq!(
            now, exported,
            "export writes the same bytes again, or nothing"
        );
    });

    let c = t.path().join("c");
    let decoder = onnx.join("decoder.onnx");
    let compile = |weights: &str| -> Vec<String> {
        vec![
            "compile".into(),
            "-q".into(),
            "--force".into(),
            "--batch".into(),
            "1".into(),
            "--weights".into(),
            weights.into(),
            decoder.to_string_lossy().into_owned(),
            "--out".into(),
            c.to_string_lossy().into_owned(),
        ]
    };
    assert!(Process::new(exe())
        .args(compile("external"))
        .status()
        .unwrap()
        .success());
    let first = snapshot(&c);
    let args = compile("external");
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
    kill_at_moments(&args, &[5, 30, 100], &|| {
        let now: Vec<_> = snapshot(&c)
            .into_iter()
            .filter(|(p, _)| !p.to_string_lossy().contains(".autocaption-"))
            .collect();
        assert_eq!(
            now, first,
            "compile writes the same bytes again, or nothing"
        );
    });
    // The rerun sweeps what the killed runs left.
    assert!(Process::new(exe())
        .args(compile("external"))
        .status()
        .unwrap()
        .success());
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    bin()
        .args(["export", "-q", "--force", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&onnx)
        .assert()
        .success();
    assert!(leftovers(&onnx).is_empty(), "{:?}", leftovers(&onnx));
    assert_eq!(snapshot(&onnx), exported);
}

#[test]
fn a_full_disk_is_a_clear_error_and_keeps_the_previous_output() {
    // `ulimit -f` with SIGXFSZ ignored makes writes past the limit fail with EFBIG, as a
    // full disk makes them fail with ENOSPC.
    if Process::new("sh").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no sh");
        return;
    }
    let t = TempDir::new().unwrap();
    let onnx = t.path().join("m.onnx");
    write_onnx(&onnx, 4096);
    let c = t.path().join("c");
    bin()
        .args(["compile", "-q", "--weights", "external"])
        .arg(&onnx)
        .arg("--out")
        .arg(&c)
        .assert()
        .success();
    let before = snapshot(&c);
    let data = synth(t.path(), 30);
    let p = t.path().join("p");
    prepare(&data, &p);
    let prepared_before = snapshot(&p);
    let limited = |args: &str| {
        Process::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f 8; exec '{}' {args}",
                exe().display()
            ))
            .output()
            .unwrap()
    };
    // 8 blocks (4 or 8 kB): the weights (64 kB) do not fit.
    let out = limited(&format!(
        "compile -q --force --weights external '{}' --out '{}'",
        onnx.display(),
        c.display()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("File too large") && err.contains("model."),
        "{err}"
    );
    assert_eq!(snapshot(&c), before, "the previous output is kept");
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    let out = limited(&format!(
        "prepare -q --force '{}' --out '{}'",
        data.display(),
        p.display()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(snapshot(&p), prepared_before, "the previous output is kept");
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}
