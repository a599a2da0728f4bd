//! Every model and every input/output tensor of the ONNX backend node tests in
//! `$AUTOCAPTION_SHARED/onnx-node-tests` reads without error, except tensors of data types
//! this crate does not read (FP8, INT4, strings, …), which must say so. Skips when the
//! variable is unset.

use std::path::PathBuf;

use autocaption_onnx::{read_model, read_tensor, OnnxError};

#[test]
fn every_node_test_file_reads() {
    let Some(shared) = std::env::var_os("AUTOCAPTION_SHARED") else {
        eprintln!("skipped: AUTOCAPTION_SHARED is not set");
        return;
    };
    let root = PathBuf::from(shared).join("onnx-node-tests");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 300,
        "{} tests in {}",
        dirs.len(),
        root.display()
    );
    let (mut models, mut tensors, mut unsupported, mut others) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for dir in &dirs {
        let model = match read_model(&dir.join("model.onnx")) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        models += 1;
        // Whether each graph input and output is a tensor (sequences and optionals are
        // stored as other messages).
        let is_tensor = |values: &[autocaption_onnx::proto::ValueInfoProto], k: usize| {
            values
                .get(k)
                .and_then(|v| v.r#type.as_ref())
                .is_some_and(|t| {
                    matches!(
                        t.value,
                        Some(autocaption_onnx::proto::type_proto::Value::TensorType(_))
                    )
                })
        };
        let graph = model.graph.as_ref().expect("read_model checks");
        for set in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            if !set.is_dir() {
                continue;
            }
            for pb in std::fs::read_dir(&set).unwrap().map(|e| e.unwrap().path()) {
                let stem = pb.file_stem().unwrap().to_string_lossy().into_owned();
                let tensor = match stem.split_once('_') {
                    Some(("input", k)) => is_tensor(&graph.input, k.parse().unwrap()),
                    Some(("output", k)) => is_tensor(&graph.output, k.parse().unwrap()),
                    _ => panic!("{}: unexpected file", pb.display()),
                };
                if !tensor {
                    others += 1;
                    continue;
                }
                match read_tensor(&pb) {
                    Ok(_) => tensors += 1,
                    Err(OnnxError::Tensor { message, .. })
                        if message.starts_with("unsupported data type") =>
                    {
                        unsupported += 1
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
        }
    }
    eprintln!(
        "{models} models and {tensors} tensors read; {unsupported} tensors of unsupported \
         types; {others} sequence or optional values not read"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
