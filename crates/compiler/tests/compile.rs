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
    let CompileError::Unsupported(nodes, _) = &err else {
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
    // This model has no symbolic dimension: a --dim for one is an error, so none is given.
    opts.dims.clear();
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
    let raw: Vec<Vec<u8>> = inputs
        .iter()
        .map(|x| x.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    run_c_with(c, &raw, &[])
}

fn has_cc() -> bool {
    let ok = Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped running the C: no C compiler");
    }
    ok
}

/// `run_c` with raw input bytes and extra C compiler flags.
fn run_c_with(
    c: &autocaption_compiler::Compiled,
    inputs: &[Vec<u8>],
    flags: &[&str],
) -> Option<(tempfile::TempDir, std::path::PathBuf, String)> {
    if !has_cc() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    c.write(dir.path(), "model", true).unwrap();
    let exe = dir.path().join("model");
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Werror"])
        .args(flags)
        .arg("-o")
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
        std::fs::write(&f, x).unwrap();
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

/// The C flag sets the kernels' paths need: the portable C, the vector extensions, the
/// default build (on x86, both tiles with a run-time choice), and AVX2 + FMA built in where
/// this CPU has them.
fn kernel_paths() -> Vec<Vec<&'static str>> {
    let mut v = vec![
        vec!["-DAUTOCAPTION_PORTABLE"],
        vec!["-DAUTOCAPTION_NO_DISPATCH"],
        vec![],
    ];
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if cfg!(target_arch = "x86_64") && cpu.contains(" avx2") && cpu.contains(" fma") {
        v.push(vec!["-mavx2", "-mfma"]);
    } else {
        eprintln!("the AVX2 path is not run: this CPU lacks AVX2 or FMA");
    }
    v
}

/// Compares two runner outputs: the same header lines, numbers within `tol`.
fn assert_close(got: &str, want: &str, tol: f64, what: &str) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    assert_eq!(g.len(), w.len(), "{what}");
    let mut worst = 0.0f64;
    for (a, b) in g.iter().zip(&w) {
        match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => worst = worst.max((x - y).abs()),
            _ => assert_eq!(a, b, "{what}"),
        }
    }
    assert!(worst <= tol, "{what}: max |Δ| = {worst:e} > {tol:e}");
}

struct Lcg(u64);

impl Lcg {
    fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// What per-row int8 weights stand for (Conv: one channel a row): `rows` rows of `len`,
/// each quantised by the compiler's rule and widened back.
fn dq_rows(v: &[f32], rows: usize, len: usize) -> Vec<f32> {
    let (q, s) = autocaption_compiler::quant::int8_channels(rows, len, |c, i| v[c * len + i]);
    autocaption_compiler::quant::dequantized(&q, &s)
}

/// What the int8 weights of a product stand for: a K×N matrix (row-major), equalised by
/// row and quantised by column.
fn dq_kn(v: &[f32], k: usize, n: usize) -> Vec<f32> {
    use autocaption_compiler::quant::{dequantized_equalized, int8_equalized};
    let (q, c, r) = int8_equalized(k, n, |kk, j| v[kk * n + j]);
    dequantized_equalized(&q, &c, &r)
}

/// The same for an LSTM's `[directions, 4·hidden, len]` weights: each direction's
/// transpose is the product's K×N.
fn dq_lstm(v: &[f32], directions: usize, gates: usize, len: usize) -> Vec<f32> {
    let mut out = v.to_vec();
    for d in 0..directions {
        let off = d * gates * len;
        let t: Vec<f32> = (0..len * gates)
            .map(|x| v[off + (x % gates) * len + x / gates])
            .collect();
        let dq = dq_kn(&t, len, gates);
        for j in 0..gates {
            for kk in 0..len {
                out[off + j * len + kk] = dq[kk * gates + j];
            }
        }
    }
    out
}

fn int8() -> Options {
    Options {
        quantize: Some(autocaption_compiler::Quantize::Int8),
        ..Options::default()
    }
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// The fused LSTM (constant weights: packed, gate-interleaved, one product a step) against
/// the general kernel (the same weights as graph inputs), on every kernel path: forward,
/// reverse and bidirectional, both layouts, batches of 1 and 3, hidden sizes that are and
/// are not multiples of 16, sequence lengths and initial states. Tolerance 1e-5.
#[test]
fn fused_lstm_matches_the_general_kernel() {
    if !has_cc() {
        return;
    }
    let mut rng = Lcg(11);
    let cases = [
        ("forward", 0, 1, 16, false, false),
        ("reverse", 0, 3, 20, true, true),
        ("bidirectional", 1, 3, 48, true, false),
        ("forward", 1, 2, 7, false, true),
    ];
    for (direction, layout, b, h, lens, init) in cases {
        let (t, i) = (5usize, 6usize);
        let d = if direction == "bidirectional" { 2 } else { 1 };
        let w = rng.f32s(d * 4 * h * i, 0.5);
        let r = rng.f32s(d * 4 * h * h, 0.5);
        let bias = rng.f32s(d * 8 * h, 0.5);
        let x = rng.f32s(t * b * i, 1.0);
        let x_dims: Vec<i64> = if layout == 0 {
            vec![t as i64, b as i64, i as i64]
        } else {
            vec![b as i64, t as i64, i as i64]
        };
        let s_dims: Vec<i64> = if layout == 0 {
            vec![d as i64, b as i64, h as i64]
        } else {
            vec![b as i64, d as i64, h as i64]
        };
        let y_dims: Vec<i64> = if layout == 0 {
            vec![t as i64, d as i64, b as i64, h as i64]
        } else {
            vec![b as i64, t as i64, d as i64, h as i64]
        };
        let seq: Vec<i32> = (0..b).map(|k| (t - k % 3) as i32).collect();
        let h0 = rng.f32s(d * b * h, 1.0);
        let c0 = rng.f32s(d * b * h, 1.0);
        let build = |constant: bool, w: &Vec<f32>, r: &Vec<f32>, opts: &Options| {
            let mut n = node(
                "LSTM",
                "lstm",
                &[
                    "x",
                    "w",
                    "r",
                    "b",
                    if lens { "lens" } else { "" },
                    if init { "h0" } else { "" },
                    if init { "c0" } else { "" },
                ],
                &["y", "yh", "yc"],
            );
            n.attribute.push(attr_int("hidden_size", h as i64));
            n.attribute.push(attr_int("layout", layout));
            n.attribute.push(AttributeProto {
                name: Some("direction".into()),
                r#type: Some(AttributeType::String as i32),
                s: Some(direction.as_bytes().to_vec()),
                ..Default::default()
            });
            let weights = [
                ("w", vec![d, 4 * h, i], w),
                ("r", vec![d, 4 * h, h], r),
                ("b", vec![d, 8 * h], &bias),
            ];
            let mut inits = Vec::new();
            let mut inputs = vec![info("x", 1, &x_dims)];
            let mut raw = vec![bytes(&x)];
            for (name, dims, v) in weights {
                if constant {
                    inits.push((name, Tensor::new(dims, TensorData::F32(v.clone()))));
                } else {
                    let dims: Vec<i64> = dims.iter().map(|&k| k as i64).collect();
                    inputs.push(info(name, 1, &dims));
                    raw.push(bytes(v));
                }
            }
            if lens {
                inputs.push(info("lens", 6, &[b as i64]));
                raw.push(seq.iter().flat_map(|v| v.to_le_bytes()).collect());
            }
            if init {
                inputs.push(info("h0", 1, &s_dims));
                inputs.push(info("c0", 1, &s_dims));
                raw.push(bytes(&h0));
                raw.push(bytes(&c0));
            }
            let m = model(
                vec![n],
                inits,
                inputs,
                vec![
                    info("y", 1, &y_dims),
                    info("yh", 1, &s_dims),
                    info("yc", 1, &s_dims),
                ],
            );
            (compile(&m, opts, "test").unwrap(), raw)
        };
        let f32_opts = Options::default();
        let (fused, fused_in) = build(true, &w, &r, &f32_opts);
        let (general, general_in) = build(false, &w, &r, &f32_opts);
        assert!(fused.sources.source.contains("model_lstmf_f32("));
        assert!(!general.sources.source.contains("model_lstmf_f32("));
        let want = run_c_with(&general, &general_in, &[]).unwrap().2;
        // int8: against the general kernel on the weights the int8 ones stand for.
        let (quantized, q_in) = build(true, &w, &r, &int8());
        let (wq, rq) = (dq_lstm(&w, d, 4 * h, i), dq_lstm(&r, d, 4 * h, h));
        let (general_q, general_q_in) = build(false, &wq, &rq, &f32_opts);
        let want_q = run_c_with(&general_q, &general_q_in, &[]).unwrap().2;
        assert!(quantized.sources.const_bytes < fused.sources.const_bytes);
        for flags in kernel_paths() {
            let got = run_c_with(&fused, &fused_in, &flags).unwrap().2;
            let what = format!("{direction}, layout {layout}, batch {b}, hidden {h}, {flags:?}");
            assert_close(&got, &want, 1e-5, &what);
            let got = run_c_with(&quantized, &q_in, &flags).unwrap().2;
            assert_close(&got, &want_q, 1e-5, &format!("int8 {what}"));
        }
    }
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

/// The packed product (a constant B: MatMul, MatMul + bias, Gemm with transB) against the
/// general one (B a graph input), on every kernel path, across tile edges: rows 1 to 9
/// (4-row tiles and lone rows), columns 1 to 40 (partial panels), depths crossing the
/// 256-deep blocks. Tolerance 1e-4 relative to the depth.
#[test]
fn packed_products_match_the_general_kernel() {
    if !has_cc() {
        return;
    }
    let mut rng = Lcg(5);
    for (m, k, n, gemm) in [
        (1, 5, 1, false),
        (3, 300, 17, false),
        (4, 16, 16, true),
        (9, 513, 40, false),
        (6, 7, 33, true),
    ] {
        let a = rng.f32s(m * k, 1.0);
        let bmat = rng.f32s(k * n, 1.0);
        let bias = rng.f32s(n, 1.0);
        let build = |constant: bool, bmat: &Vec<f32>, opts: &Options| {
            let mut nodes = Vec::new();
            let b_dims = if gemm {
                [n as i64, k as i64]
            } else {
                [k as i64, n as i64]
            };
            if gemm {
                let mut g = node("Gemm", "g", &["a", "b", "c"], &["y"]);
                g.attribute.push(attr_int("transB", 1));
                nodes.push(g);
            } else {
                nodes.push(node("MatMul", "mm", &["a", "b"], &["p"]));
                nodes.push(node("Add", "add", &["p", "c"], &["y"]));
            }
            let mut inits = vec![("c", Tensor::new(vec![n], TensorData::F32(bias.clone())))];
            let mut inputs = vec![info("a", 1, &[m as i64, k as i64])];
            let mut raw = vec![bytes(&a)];
            // Gemm reads B as [N, K]: the same numbers, transposed.
            let bv: Vec<f32> = if gemm {
                (0..n * k).map(|x| bmat[(x % k) * n + x / k]).collect()
            } else {
                bmat.clone()
            };
            if constant {
                inits.push((
                    "b",
                    Tensor::new(
                        b_dims.iter().map(|&d| d as usize).collect(),
                        TensorData::F32(bv),
                    ),
                ));
            } else {
                inputs.push(info("b", 1, &b_dims));
                raw.push(bytes(&bv));
            }
            let mdl = model(
                nodes,
                inits,
                inputs,
                vec![info("y", 1, &[m as i64, n as i64])],
            );
            (compile(&mdl, opts, "test").unwrap(), raw)
        };
        let f32_opts = Options::default();
        let (packed, packed_in) = build(true, &bmat, &f32_opts);
        let (general, general_in) = build(false, &bmat, &f32_opts);
        assert!(packed.sources.source.contains("model_mm_f32("));
        assert!(!general.sources.source.contains("model_mm_f32("));
        let want = run_c_with(&general, &general_in, &[]).unwrap().2;
        // int8 per output column, against the weights it stands for.
        let (quantized, q_in) = build(true, &bmat, &int8());
        assert!(quantized.sources.source.contains("model_mmq_f32("));
        let (general_q, general_q_in) = build(false, &dq_kn(&bmat, k, n), &f32_opts);
        let want_q = run_c_with(&general_q, &general_q_in, &[]).unwrap().2;
        for flags in kernel_paths() {
            let what = format!("{m}×{k}·{k}×{n}, gemm {gemm}, {flags:?}");
            let tol = 1e-6 * k as f64 + 1e-6;
            let got = run_c_with(&packed, &packed_in, &flags).unwrap().2;
            assert_close(&got, &want, tol, &what);
            let got = run_c_with(&quantized, &q_in, &flags).unwrap().2;
            assert_close(&got, &want_q, tol, &format!("int8 {what}"));
        }
    }
}

/// Conv as a packed product (constant weights: 6-row panels, an unfolded input unless 1×1,
/// blocks of B packed at run time) with the residual Add and Relu fused, against the direct
/// kernel (the weights a graph input), on every kernel path: strides, padding, dilation,
/// batches of 2, no bias, depths past one 256-deep block and widths past one 256-wide block.
#[test]
fn packed_convolutions_match_the_direct_kernel() {
    if !has_cc() {
        return;
    }
    let mut rng = Lcg(3);
    // batch, channels, height, width, filters, kernel, stride, pad, dilation, bias, residual, relu
    let cases = [
        (2, 3, 9, 9, 8, 3, 2, 1, 1, true, true, true),
        (1, 5, 7, 6, 13, 1, 1, 0, 1, true, false, true),
        (1, 4, 8, 8, 7, 3, 1, 2, 2, false, true, false),
        (1, 40, 5, 5, 6, 3, 1, 1, 1, true, false, false),
        (1, 2, 17, 17, 3, 1, 1, 0, 1, true, true, true),
    ];
    for (n, c, h, w, m, k, s, p, d, with_bias, residual, relu) in cases {
        let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
        let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
        let x = rng.f32s(n * c * h * w, 1.0);
        let wt = rng.f32s(m * c * k * k, 0.5);
        let b = rng.f32s(m, 0.5);
        let z = rng.f32s(n * m * oh * ow, 1.0);
        let y_dims = [n as i64, m as i64, oh as i64, ow as i64];
        let build = |constant: bool, wt: &Vec<f32>, opts: &Options| {
            let mut conv = node(
                "Conv",
                "conv",
                if with_bias {
                    &["x", "w", "b"][..]
                } else {
                    &["x", "w"][..]
                },
                &["c"],
            );
            for (name, v) in [
                ("kernel_shape", vec![k as i64; 2]),
                ("strides", vec![s as i64; 2]),
                ("pads", vec![p as i64; 4]),
                ("dilations", vec![d as i64; 2]),
            ] {
                conv.attribute.push(AttributeProto {
                    name: Some(name.into()),
                    r#type: Some(AttributeType::Ints as i32),
                    ints: v,
                    ..Default::default()
                });
            }
            let mut nodes = vec![conv];
            let mut last = "c";
            if residual {
                nodes.push(node("Add", "add", &["z", last], &["a"]));
                last = "a";
            }
            if relu {
                nodes.push(node("Relu", "relu", &[last], &["y"]));
            } else {
                nodes.push(node("Identity", "id", &[last], &["y"]));
            }
            let mut inits = Vec::new();
            let mut inputs = vec![info("x", 1, &[n as i64, c as i64, h as i64, w as i64])];
            let mut raw = vec![bytes(&x)];
            let w_dims = vec![m, c, k, k];
            if constant {
                inits.push(("w", Tensor::new(w_dims, TensorData::F32(wt.clone()))));
            } else {
                let dims: Vec<i64> = w_dims.iter().map(|&v| v as i64).collect();
                inputs.push(info("w", 1, &dims));
                raw.push(bytes(wt));
            }
            if with_bias {
                inits.push(("b", Tensor::new(vec![m], TensorData::F32(b.clone()))));
            }
            if residual {
                inputs.push(info("z", 1, &y_dims));
                raw.push(bytes(&z));
            }
            let mdl = model(nodes, inits, inputs, vec![info("y", 1, &y_dims)]);
            (compile(&mdl, opts, "test").unwrap(), raw)
        };
        let f32_opts = Options::default();
        let (packed, packed_in) = build(true, &wt, &f32_opts);
        let (direct, direct_in) = build(false, &wt, &f32_opts);
        let (quantized, q_in) = build(true, &wt, &int8());
        let (direct_q, direct_q_in) = build(false, &dq_rows(&wt, m, c * k * k), &f32_opts);
        let want_q = run_c_with(&direct_q, &direct_q_in, &[]).unwrap().2;
        assert!(packed.sources.source.contains("model_mmw_f32("));
        assert!(!direct.sources.source.contains("model_mmw_f32("));
        let fused = usize::from(residual) + usize::from(relu);
        assert_eq!(
            packed.passes.fused, fused,
            "residual Add and Relu fused into Conv"
        );
        let want = run_c_with(&direct, &direct_in, &[]).unwrap().2;
        for flags in kernel_paths() {
            let got = run_c_with(&packed, &packed_in, &flags).unwrap().2;
            let what = format!("conv {n}×{c}×{h}×{w} → {m}, k {k} s {s} p {p} d {d}, {flags:?}");
            assert_close(&got, &want, 1e-5, &what);
            let got = run_c_with(&quantized, &q_in, &flags).unwrap().2;
            assert_close(&got, &want_q, 1e-5, &format!("int8 {what}"));
        }
    }
}

/// Hostile shapes: a --dim name the model does not have is named with the ones it has; an
/// input or an inferred output too large to hold (or whose element count overflows) is
/// refused before anything is allocated for it.
#[test]
fn unknown_dims_and_huge_shapes_are_refused() {
    let relu = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![],
        vec![info("x", 1, &[-1, 3])],
        vec![info("y", 1, &[-1, 3])],
    );
    let mut opts = Options::default();
    opts.dims.insert("N".into(), 1);
    opts.dims.insert("batch".into(), 2);
    let err = compile(&relu, &opts, "test").unwrap_err().to_string();
    assert_eq!(
        err,
        "'batch' is not a symbolic dimension of the model's inputs (they have: N)"
    );
    let mut opts = Options::default();
    opts.dims.insert("N".into(), usize::MAX / 2);
    let err = compile(&relu, &opts, "test").unwrap_err().to_string();
    assert!(
        err.contains("more elements than a 64-bit count holds"),
        "{err}"
    );
    opts.dims.insert("N".into(), 1 << 30);
    let err = compile(&relu, &opts, "test").unwrap_err().to_string();
    assert!(err.contains("more than the 4294967296 bytes"), "{err}");
    // ConstantOfShape asked for 2^40 floats: refused at inference, never evaluated.
    let huge = model(
        vec![node("ConstantOfShape", "c", &["shape"], &["y"])],
        vec![(
            "shape",
            Tensor::new(vec![2], TensorData::I64(vec![1 << 20, 1 << 20])),
        )],
        vec![],
        vec![info("y", 1, &[1 << 20, 1 << 20])],
    );
    let err = compile(&huge, &Options::default(), "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node 'c' (ConstantOfShape): an output's shape [1048576, 1048576]"),
        "{err}"
    );
}
