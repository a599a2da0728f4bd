//! The compiler on small graphs built here: errors (every unsupported node listed at once,
//! shape inputs that must be fixed), the passes, and generated C run against numbers
//! worked out by hand (when a C compiler is installed).

use std::process::Command;

use autocaption_compiler::{compile, CompileError, Options};
use autocaption_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value as Dim, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use autocaption_onnx::{Tensor, TensorData};

fn info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(
                            |&d| autocaption_onnx::proto::tensor_shape_proto::Dimension {
                                value: Some(if d < 0 {
                                    Dim::DimParam("N".into())
                                } else {
                                    Dim::DimValue(d)
                                }),
                                ..Default::default()
                            },
                        )
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<(&str, Tensor)>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits.into_iter().map(|(n, t)| t.to_proto(n)).collect(),
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let m = model(
        vec![
            node("Relu", "ok", &["x"], &["a"]),
            node("FancyOp", "first", &["a"], &["b"]),
            node("Relu", "fine", &["b"], &["c"]),
            node("OtherOp", "second", &["c"], &["d"]),
            node("FancyOp", "third", &["d"], &["y"]),
        ],
        vec![],
        vec![info("x", 1, &[2])],
        vec![info("y", 1, &[2])],
    );
    let err = compile(&m, &Options::default(), "test").unwrap_err();
    let CompileError::Unsupported(nodes) = &err else {
        panic!("{err}")
    };
    let names: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.node.as_str(), n.op_type.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("first", "FancyOp"),
            ("second", "OtherOp"),
            ("third", "FancyOp")
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("3 unsupported node(s): 'first' (FancyOp"),
        "{text}"
    );
    assert!(text.contains("supported op types: Abs, Add"), "{text}");
}

#[test]
fn symbolic_dimensions_and_shape_inputs_must_be_given() {
    let relu = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![],
        vec![info("x", 1, &[-1, 3])],
        vec![info("y", 1, &[-1, 3])],
    );
    let err = compile(&relu, &Options::default(), "test")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "'x' has symbolic dimension 'N': give its size (--batch N, or --dim N=N)"
    );
    let mut opts = Options::default();
    opts.dims.insert("N".into(), 4);
    assert!(compile(&relu, &opts, "test").is_ok());
    // --batch sizes every symbolic leading dimension; --dim wins over it.
    let batched = Options {
        batch: Some(2),
        ..Options::default()
    };
    let c = compile(&relu, &batched, "test").unwrap();
    assert_eq!(c.sources.interface.inputs, [("x".to_string(), 2 * 3 * 4)]);
    let mut both = batched.clone();
    both.dims.insert("N".into(), 5);
    let c = compile(&relu, &both, "test").unwrap();
    assert_eq!(c.sources.interface.inputs, [("x".to_string(), 5 * 3 * 4)]);
    // Only the leading dimension is the batch.
    let inner = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![],
        vec![info("x", 1, &[3, -1])],
        vec![info("y", 1, &[3, -1])],
    );
    let err = compile(&inner, &batched, "test").unwrap_err().to_string();
    assert_eq!(
        err,
        "'x' has symbolic dimension 'N': give its size (--dim N=N)"
    );

    let reshape = model(
        vec![node("Reshape", "rs", &["x", "shape"], &["y"])],
        vec![],
        vec![info("x", 1, &[2, 3]), info("shape", 7, &[2])],
        vec![info("y", 1, &[3, 2])],
    );
    let err = compile(&reshape, &Options::default(), "test").unwrap_err();
    assert!(
        matches!(&err, CompileError::NeedsConstant { input, is_graph_input: true, .. } if input == "shape"),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("fix it with --fix shape=FILE.pb"),
        "{err}"
    );
    opts.fixed.insert(
        "shape".into(),
        Tensor::new(vec![2], TensorData::I64(vec![3, -1])),
    );
    let c = compile(&reshape, &opts, "test").unwrap();
    // A view: no code, the output is a copy of the input's bytes.
    assert!(
        c.sources.header.contains("out_y: output 'y', FLOAT [3, 2]"),
        "{}",
        c.sources.header
    );
}

#[test]
fn a_wrong_shape_names_the_node() {
    let m = model(
        vec![node("MatMul", "mm", &["x", "w"], &["y"])],
        vec![("w", Tensor::new(vec![4, 2], TensorData::F32(vec![0.0; 8])))],
        vec![info("x", 1, &[1, 3])],
        vec![info("y", 1, &[1, 2])],
    );
    let err = compile(&m, &Options::default(), "test")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "node 'mm' (MatMul): inner dimensions differ: [1, 3] @ [4, 2]"
    );
}

/// y = softmax(relu(x·W + b)) through Dropout and Identity: the passes fuse the bias and
/// drop the no-ops, and the C output matches the numbers worked out here.
#[test]
fn passes_and_generated_code() {
    let axis = AttributeProto {
        name: Some("axis".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(-1),
        ..Default::default()
    };
    let mut softmax = node("Softmax", "sm", &["r"], &["y"]);
    softmax.attribute.push(axis);
    let m = model(
        vec![
            node("Dropout", "drop", &["x"], &["xd"]),
            node("MatMul", "mm", &["xd", "w"], &["p"]),
            node("Add", "bias", &["p", "b"], &["q"]),
            node("Identity", "id", &["q"], &["qi"]),
            node("Relu", "relu", &["qi"], &["r"]),
            softmax,
        ],
        vec![
            (
                "w",
                Tensor::new(
                    vec![2, 3],
                    TensorData::F32(vec![1.0, 0.0, -1.0, 0.5, 2.0, 0.0]),
                ),
            ),
            (
                "b",
                Tensor::new(vec![3], TensorData::F32(vec![0.0, -1.0, 0.25])),
            ),
        ],
        vec![info("x", 1, &[2, 2])],
        vec![info("y", 1, &[2, 3])],
    );
    let c = compile(&m, &Options::default(), "test").unwrap();
    assert_eq!((c.passes.identities, c.passes.fused, c.nodes), (2, 1, 3));
    let Some((dir, exe, text)) = run_c(&c, &[&[1.0, 2.0, -1.0, 0.5]]) else {
        return;
    };
    let got: Vec<f64> = text.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    // Row 1: x·W + b = [2, 3, -0.75] → relu [2, 3, 0]; row 2: [-0.75, 0, 1.25] → [0, 0, 1.25].
    let softmax = |r: [f64; 3]| {
        let s: f64 = r.iter().map(|v| v.exp()).sum();
        r.map(|v| v.exp() / s)
    };
    let want: Vec<f64> = [softmax([2.0, 3.0, 0.0]), softmax([0.0, 0.0, 1.25])].concat();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    assert!(text.starts_with("output y 1 2 3\n"), "{text}");
    // A missing input file is an error naming it, not a crash.
    let out = Command::new(&exe)
        .arg(dir.path().join("missing.pb"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pb: cannot open"));
}

/// The same model with `--weights external`: the blob gives the same numbers; a truncated
/// or corrupted blob, or another model's, is refused with the documented error code, by
/// `model_check_weights` and (header) by `model_run` itself.
#[test]
fn external_weights_are_checked() {
    let mk = |w: Vec<f32>| {
        model(
            vec![node("MatMul", "mm", &["x", "w"], &["y"])],
            vec![("w", Tensor::new(vec![2, 2], TensorData::F32(w)))],
            vec![info("x", 1, &[1, 2])],
            vec![info("y", 1, &[1, 2])],
        )
    };
    let opts = Options {
        weights: autocaption_compiler::WeightStorage::External,
        ..Options::default()
    };
    let c = compile(&mk(vec![1.0, 2.0, 3.0, 4.0]), &opts, "test").unwrap();
    let blob = c.sources.blob.clone().unwrap();
    assert_eq!(&blob[..8], b"ACWEIGHT");
    assert_eq!(blob.len(), 64 + c.sources.const_bytes);
    assert!(c.sources.header.contains("#define MODEL_ERR_WEIGHTS 4"));
    let embedded = compile(&mk(vec![1.0, 2.0, 3.0, 4.0]), &Options::default(), "test").unwrap();
    assert!(embedded.sources.blob.is_none());
    let Some((dir, exe, text)) = run_c(&c, &[&[1.0, -1.0]]) else {
        return;
    };
    assert_eq!(text, "output y 1 1 2\n-2\n-2\n", "x·W = [1-3, 2-4]");
    assert_eq!(run_c(&embedded, &[&[1.0, -1.0]]).unwrap().2, text);
    let input = dir.path().join("in0.bin");
    let refused = |bytes: &[u8], what: &str| {
        let f = dir.path().join("bad.weights");
        std::fs::write(&f, bytes).unwrap();
        let out = Command::new(&exe).arg(&f).arg(&input).output().unwrap();
        assert!(!out.status.success(), "{what} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not the weights of this code (error 4"),
            "{what}: {err}"
        );
    };
    refused(&blob[..blob.len() - 1], "a truncated blob");
    refused(&blob[..10], "a header cut short");
    let mut bad = blob.clone();
    bad[64] ^= 1;
    refused(&bad, "a flipped weight bit");
    let other = compile(&mk(vec![1.0, 2.0, 3.0, 5.0]), &opts, "test").unwrap();
    refused(other.sources.blob.as_ref().unwrap(), "another model's blob");
    // model_run checks the header itself: a blob of another model is refused there too.
    let driver = dir.path().join("driver.c");
    std::fs::write(
        &driver,
        "#include \"model.h\"\n#include <stdio.h>\n#include <string.h>\n\
         static unsigned long long good[64], bad[64];\n\
         int main(int argc, char **argv) { (void)argc;\n\
         FILE *f = fopen(argv[1], \"rb\"); size_t n = fread(good, 1, sizeof good, f); fclose(f);\n\
         memcpy(bad, good, n); ((unsigned char *)bad)[24] ^= 1;\n\
         float x[2] = {1, -1}, y[2]; static double arena[64];\n\
         printf(\"%d %d %d %d %d\\n\", model_check_weights(good, n), model_check_weights(good, n - 1),\n\
         model_run(good, x, y, arena), model_run(bad, x, y, arena), model_run((const char *)good + 1, x, y, arena));\n\
         return 0; }\n",
    )
    .unwrap();
    let drv = dir.path().join("driver");
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&drv)
        .arg(dir.path().join("model.c"))
        .arg(&driver)
        .arg("-lm")
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(&drv)
        .arg(dir.path().join("model.weights"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 4 0 4 4\n");
}

/// Builds the compiled model with the strict flags and runs it on raw f32 inputs: the
/// temporary directory, the executable and its output; None without a C compiler.
fn run_c(
    c: &autocaption_compiler::Compiled,
    inputs: &[&[f32]],
) -> Option<(tempfile::TempDir, std::path::PathBuf, String)> {
    if !Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped running the C: no C compiler");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    c.write(dir.path(), "model", true).unwrap();
    let exe = dir.path().join("model");
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(dir.path().join("model.c"))
        .arg(dir.path().join("main.c"))
        .arg("-lm")
        .status()
        .unwrap();
    assert!(status.success());
    let mut files = Vec::new();
    if c.sources.blob.is_some() {
        files.push(dir.path().join("model.weights"));
    }
    for (k, x) in inputs.iter().enumerate() {
        let f = dir.path().join(format!("in{k}.bin"));
        std::fs::write(
            &f,
            x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        files.push(f);
    }
    let out = Command::new(&exe).args(&files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some((dir, exe, text))
}

/// Pad in its four modes (the node-test set has no Pad tests): numbers worked out by hand
/// as numpy.pad gives them.
#[test]
fn pad_modes() {
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    for (mode, want) in [
        (
            "constant",
            [9.0, 1.0, 2.0, 3.0, 9.0, 9.0, 4.0, 5.0, 6.0, 9.0],
        ),
        (
            "reflect",
            [2.0, 1.0, 2.0, 3.0, 2.0, 5.0, 4.0, 5.0, 6.0, 5.0],
        ),
        ("edge", [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0, 6.0]),
        ("wrap", [3.0, 1.0, 2.0, 3.0, 1.0, 6.0, 4.0, 5.0, 6.0, 4.0]),
    ] {
        let mut pad = node("Pad", "pad", &["x", "pads", "value"], &["y"]);
        pad.attribute.push(AttributeProto {
            name: Some("mode".into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(mode.as_bytes().to_vec()),
            ..Default::default()
        });
        let m = model(
            vec![pad],
            vec![
                (
                    "pads",
                    Tensor::new(vec![4], TensorData::I64(vec![0, 1, 0, 1])),
                ),
                ("value", Tensor::new(vec![], TensorData::F32(vec![9.0]))),
            ],
            vec![info("x", 1, &[2, 3])],
            vec![info("y", 1, &[2, 5])],
        );
        let c = compile(&m, &Options::default(), "test").unwrap();
        let Some((_dir, _, text)) = run_c(&c, &[&x]) else {
            return;
        };
        let got: Vec<f64> = text.lines().skip(1).map(|l| l.parse().unwrap()).collect();
        assert_eq!(got, want.map(f64::from), "mode {mode}");
    }
}
