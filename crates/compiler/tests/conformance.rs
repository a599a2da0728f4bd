//! ONNX backend node tests: compile each model to C, build it with the host C compiler,
//! run it on the test's inputs and compare with the expected outputs.
//!
//! Runs when `AUTOCAPTION_SHARED` points at the shared data (it reads
//! `$AUTOCAPTION_SHARED/onnx-node-tests`); `tests/conformance.tsv` lists every test of the
//! supported ops with the outcome expected (`pass`, or `unsupported`/`fail` and why). The
//! test fails if an expected pass fails, and prints pass/fail counts per op.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use autocaption_compiler::{compile, CompileError, Options};
use autocaption_onnx::{read_model, read_tensor, Tensor, TensorData};
use rayon::prelude::*;

/// The ONNX backend test runner's defaults (`onnx/backend/test/runner`): rtol 1e-3, atol 1e-7.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pass,
    /// Types or attributes the compiler refuses, with the reason.
    Unsupported(String),
    /// Compiled but gave other numbers, or failed to build or run.
    Fail(String),
}

fn values(t: &TensorData) -> Vec<f64> {
    match t {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x) as f64).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U16(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

/// Compiles with the inputs that decide shapes fixed to the test's values, as an AOT
/// compiler must; returns the runtime inputs' files.
fn compile_fixing(
    model: &autocaption_onnx::proto::ModelProto,
    inputs: &[(String, PathBuf, Tensor)],
) -> Result<(autocaption_compiler::Compiled, Vec<PathBuf>), CompileError> {
    let mut opts = Options {
        name: "model".into(),
        ..Options::default()
    };
    loop {
        match compile(model, &opts, "node test") {
            Ok(c) => {
                let files = inputs
                    .iter()
                    .filter(|(n, _, _)| !opts.fixed.contains_key(n))
                    .map(|(_, p, _)| p.clone())
                    .collect();
                return Ok((c, files));
            }
            Err(CompileError::NeedsConstant {
                input,
                is_graph_input: true,
                ..
            }) if !opts.fixed.contains_key(&input) => {
                let t = inputs
                    .iter()
                    .find(|(n, _, _)| *n == input)
                    .map(|(_, _, t)| t.clone());
                match t {
                    Some(t) => {
                        opts.fixed.insert(input, t);
                    }
                    None => return compile(model, &opts, "node test").map(|c| (c, vec![])),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether every tensor of the test is FLOAT, INT64, INT32 or BOOL (the tests the target
/// rate is measured on; others use FP8, INT4, FLOAT16, sequences, …).
fn is_float32_test(dir: &Path) -> bool {
    let data = dir.join("test_data_set_0");
    let Ok(entries) = std::fs::read_dir(&data) else {
        return false;
    };
    entries.flatten().all(|e| {
        matches!(
            read_tensor(&e.path()).map(|(_, t)| t.data),
            Ok(TensorData::F32(_) | TensorData::I64(_) | TensorData::I32(_) | TensorData::Bool(_))
        )
    })
}

/// The ops the compiler is required to support (the list); RNN is extra.
const REQUIRED: &[&str] = &[
    "Gather",
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Concat",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Tile",
    "Slice",
    "Shape",
    "Cast",
    "Identity",
    "Dropout",
    "Flatten",
    "LSTM",
    "GRU",
    "Conv",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Pad",
    "ArgMax",
];

fn run_test(dir: &Path, work: &Path) -> Outcome {
    let model = match read_model(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return Outcome::Unsupported(e.to_string()),
    };
    let data = dir.join("test_data_set_0");
    let graph = model.graph.as_ref().expect("node tests have graphs");
    let init: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let names: Vec<String> = graph
        .input
        .iter()
        .filter_map(|i| i.name.clone())
        .filter(|n| !init.contains(&n.as_str()))
        .collect();
    use autocaption_onnx::proto::type_proto::Value;
    if let Some(vi) = graph.input.iter().chain(&graph.output).find(|vi| {
        !matches!(
            vi.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(Value::TensorType(_))
        )
    }) {
        return Outcome::Unsupported(format!(
            "'{}' is not a tensor (sequence or optional)",
            vi.name.as_deref().unwrap_or("")
        ));
    }
    let mut inputs = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let path = data.join(format!("input_{k}.pb"));
        match read_tensor(&path) {
            Ok((_, t)) => inputs.push((name.clone(), path, t)),
            Err(e) => return Outcome::Unsupported(format!("input {k}: {e}")),
        }
    }
    let mut expected = Vec::new();
    for k in 0..graph.output.len() {
        match read_tensor(&data.join(format!("output_{k}.pb"))) {
            Ok((_, t)) => expected.push(t),
            Err(e) => return Outcome::Unsupported(format!("output {k}: {e}")),
        }
    }
    let (compiled, files) = match compile_fixing(&model, &inputs) {
        Ok(c) => c,
        Err(CompileError::Unsupported(nodes, _)) => {
            return Outcome::Unsupported(nodes[0].reason.clone())
        }
        Err(e) => return Outcome::Unsupported(e.to_string()),
    };
    if let Err(e) = compiled.write(work, "model", true) {
        return Outcome::Fail(e.to_string());
    }
    let exe = work.join("model");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(work.join("model.c"))
        .arg(work.join("main.c"))
        .arg("-lm")
        .output();
    match cc {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Outcome::Fail(format!(
                "cc: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ))
        }
        Err(e) => return Outcome::Fail(format!("cc: {e}")),
    }
    let out = match Command::new(&exe).args(&files).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            return Outcome::Fail(format!(
                "run: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Outcome::Fail(format!("run: {e}")),
    };
    let mut got: Vec<(Vec<usize>, Vec<f64>)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("output ") {
            let dims = rest
                .split(' ')
                .skip(2)
                .filter_map(|d| d.parse().ok())
                .collect();
            got.push((dims, Vec::new()));
        } else if let Some(last) = got.last_mut() {
            let v: f64 = match line.trim() {
                "nan" | "-nan" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                s => s.parse().unwrap_or(f64::NAN),
            };
            last.1.push(v);
        }
    }
    if got.len() != expected.len() {
        return Outcome::Fail(format!(
            "{} outputs, expected {}",
            got.len(),
            expected.len()
        ));
    }
    for (k, ((dims, v), want)) in got.iter().zip(&expected).enumerate() {
        if *dims != want.dims {
            return Outcome::Fail(format!(
                "output {k}: shape {dims:?}, expected {:?}",
                want.dims
            ));
        }
        let w = values(&want.data);
        for (i, (&a, &b)) in v.iter().zip(&w).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs();
            if !ok {
                return Outcome::Fail(format!("output {k}[{i}] = {a}, expected {b}"));
            }
        }
    }
    Outcome::Pass
}

fn read_expectations(path: &Path) -> HashMap<String, (String, String)> {
    let text = std::fs::read_to_string(path).expect("conformance.tsv is in the repository");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let test = f.next().unwrap_or("").to_string();
            let status = f.next().unwrap_or("").to_string();
            let why = f.next().unwrap_or("").to_string();
            (test, (status, why))
        })
        .collect()
}

#[test]
fn onnx_node_tests() {
    let Some(shared) = std::env::var_os("AUTOCAPTION_SHARED") else {
        eprintln!("skipped: AUTOCAPTION_SHARED is not set");
        return;
    };
    let root = PathBuf::from(shared).join("onnx-node-tests");
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let expect_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance.tsv");
    let expectations = read_expectations(&expect_path);
    let tests: Vec<(String, String)> = manifest
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .filter(|(_, t)| expectations.contains_key(t))
        .collect();
    assert!(
        !tests.is_empty(),
        "no test of conformance.tsv found in {}",
        root.display()
    );
    let work = tempfile::tempdir().expect("temp dir");
    let results: Vec<(String, String, Outcome)> = tests
        .par_iter()
        .map(|(op, test)| {
            let dir = work.path().join(test);
            (op.clone(), test.clone(), run_test(&root.join(test), &dir))
        })
        .collect();
    let mut per_op: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    let mut regressions = Vec::new();
    for (op, test, outcome) in &results {
        let slot = match outcome {
            Outcome::Pass => 0,
            Outcome::Fail(_) => 1,
            Outcome::Unsupported(_) => 2,
        };
        per_op.entry(op).or_default()[slot] += 1;
        let (status, _) = &expectations[test];
        match outcome {
            Outcome::Pass if status != "pass" => {
                eprintln!("{test}: passes now (listed as {status}); update conformance.tsv")
            }
            Outcome::Pass => {}
            Outcome::Fail(why) | Outcome::Unsupported(why) => {
                eprintln!(
                    "{test}: {outcome:?}",
                    outcome = if slot == 1 { "FAIL" } else { "unsupported" }
                );
                eprintln!("    {why}");
                if status == "pass" {
                    regressions.push(test.clone());
                }
            }
        }
    }
    let float32: Vec<&(String, String, Outcome)> = results
        .iter()
        .filter(|(op, test, _)| {
            REQUIRED.contains(&op.as_str()) && is_float32_test(&root.join(test))
        })
        .collect();
    let passed = float32.iter().filter(|r| r.2 == Outcome::Pass).count();
    let rate = passed as f64 / float32.len().max(1) as f64;
    let (mut p, mut f, mut u) = (0, 0, 0);
    println!(
        "{:<20} {:>5} {:>5} {:>12}",
        "op", "pass", "fail", "unsupported"
    );
    for (op, [a, b, c]) in &per_op {
        println!("{op:<20} {a:>5} {b:>5} {c:>12}");
        p += a;
        f += b;
        u += c;
    }
    println!("{:<20} {p:>5} {f:>5} {u:>12}", "total");
    println!(
        "float32/int64/bool tests of the required ops: {passed} of {} pass ({:.1}%)",
        float32.len(),
        100.0 * rate
    );
    for op in ["LSTM", "GRU", "Gather"] {
        let all = results.iter().filter(|r| r.0 == op).count();
        let ok = results
            .iter()
            .filter(|r| r.0 == op && r.2 == Outcome::Pass)
            .count();
        println!("{op}: {ok} of {all} pass");
    }
    assert!(
        regressions.is_empty(),
        "expected to pass but did not: {regressions:?}"
    );
    assert!(
        rate >= 0.95,
        "only {:.1}% of the float32 tests pass",
        100.0 * rate
    );
}
