//! `autocaption bench compiled`: the generated C against ONNX Runtime and our own engine on
//! the same model and inputs, in one run. Each model is compiled by our compiler, built with
//! the C compiler given, and timed by a small harness (best and median of N calls); ONNX
//! Runtime is timed on the same `.onnx` file with one intra-op thread and with its default,
//! through a Python that has `onnxruntime` (skipped, and said so, without one).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use autocaption_compiler::{compile, Options, Quantize, WeightStorage};
use autocaption_model::{Decoder, MergeConfig, MergeModel};
use autocaption_onnx::proto::ModelProto;
use autocaption_tensor::{Rng, WeightFormat};
use autocaption_vision::{Layout, Maps, ResNet, ResNetConfig};
use serde::Serialize;

use crate::{Error, Result};

/// Which model a row of the benchmark runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CompiledModel {
    /// `decoder.onnx` of the seed's merge model in the seed's interface, one call at N = 1.
    Decoder,
    /// `decoder_step.onnx`: a greedy caption of `words` words, one call a step.
    Step,
    /// `encoder.onnx`: ResNet-50 at 224×224, one image.
    Encoder,
    /// Any ONNX file, one call; its float inputs are filled with values in [-1, 1], its
    /// integer inputs with 0.
    File(PathBuf),
}

impl CompiledModel {
    fn label(&self) -> String {
        match self {
            CompiledModel::Decoder => "decoder.onnx (N=1)".into(),
            CompiledModel::Step => "decoder_step.onnx greedy".into(),
            CompiledModel::Encoder => "encoder.onnx (ResNet-50, N=1)".into(),
            CompiledModel::File(p) => p.display().to_string(),
        }
    }
}

/// Settings of [`bench_compiled`].
#[derive(Debug, Clone)]
pub struct CompiledBench {
    /// The models to run, in order.
    pub models: Vec<CompiledModel>,
    /// Vocabulary of the seed's merge model (4487 for Flickr8k).
    pub vocab: usize,
    /// Words of the greedy caption through `decoder_step.onnx` (one more step checks the end).
    pub words: usize,
    /// Timed calls (after one untimed).
    pub repeats: usize,
    /// The C compiler and its flags.
    pub cc: String,
    /// Flags given to the C compiler.
    pub cflags: Vec<String>,
    /// Where the weights go.
    pub weights: WeightStorage,
    /// Weight quantisation.
    pub quantize: Option<Quantize>,
    /// Symbolic dimensions of `File` models are set to this batch.
    pub batch: usize,
    /// A Python with `onnxruntime` for the reference (None: not timed).
    pub python: Option<String>,
    /// Working folder: the ONNX files, the generated C, the harness and its inputs stay there.
    pub work: PathBuf,
}

/// Best and median seconds of the timed calls.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// Fastest call.
    pub best: f64,
    /// Median call.
    pub median: f64,
}

/// One model's row.
#[derive(Debug, Clone, Serialize)]
pub struct CompiledRow {
    /// What ran.
    pub model: String,
    /// Seconds to compile ONNX → C.
    pub generate: f64,
    /// Seconds the C compiler took.
    pub cc: f64,
    /// Bytes of the generated `NAME.c`.
    pub source_bytes: usize,
    /// Bytes of weights the model holds (after packing and quantisation).
    pub weight_bytes: usize,
    /// Bytes of the external weights blob, if any.
    pub blob_bytes: Option<usize>,
    /// The generated C.
    pub c: Timing,
    /// ONNX Runtime, one intra-op thread.
    pub ort_1: Option<Timing>,
    /// ONNX Runtime, its default threads.
    pub ort_default: Option<Timing>,
    /// Our Rust engine on the same model, one thread.
    pub engine_1: Option<Timing>,
    /// Our Rust engine on the same model, its default threads.
    pub engine_default: Option<Timing>,
}

/// What [`bench_compiled`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct CompiledReport {
    /// ONNX Runtime's version, when it ran.
    pub ort_version: Option<String>,
    /// Why ONNX Runtime did not run, when it did not.
    pub ort_skipped: Option<String>,
    /// One row per model.
    pub rows: Vec<CompiledRow>,
}

/// One input of a harness: its name, ONNX element type and bytes.
struct Input {
    name: String,
    onnx_type: i32,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn failed(what: &str, out: &std::process::Output) -> Error {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let tail: String = text
        .lines()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Error::Invalid(format!("{what} failed ({}):\n{tail}", out.status))
}

fn parse_timing(text: &str, tag: &str) -> Option<Timing> {
    let line = text.lines().find(|l| l.starts_with(tag))?;
    let mut it = line.split_whitespace().skip(1);
    let best = it.next()?.parse().ok()?;
    let median = it.next()?.parse().ok()?;
    Some(Timing { best, median })
}

fn timing_of(mut times: Vec<f64>) -> Timing {
    times.sort_by(f64::total_cmp);
    Timing {
        best: times[0],
        median: times[times.len() / 2],
    }
}

fn time_n(repeats: usize, f: &mut dyn FnMut()) -> Timing {
    f();
    timing_of(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

pub(crate) fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// The seed's merge model with seeded random weights whose end token (2) is out of reach,
/// so that every caption runs its full length.
fn seed_model(vocab: usize) -> MergeModel {
    let mut model = MergeModel::new(MergeConfig::seed(vocab), 0);
    model.output.bias.value[2] = -1e4;
    model
}

/// Runs the benchmark. Nothing is gated on its numbers.
pub fn bench_compiled(s: &CompiledBench) -> Result<CompiledReport> {
    if s.repeats == 0 || s.words == 0 || s.vocab < 3 || s.batch == 0 {
        return Err(Error::Invalid(
            "--repeats, --words and --batch must be at least 1 and --vocab at least 3".into(),
        ));
    }
    std::fs::create_dir_all(&s.work).map_err(|e| io_err(&s.work, e))?;
    let (ort_version, ort_skipped) = match &s.python {
        None => (None, Some("no Python given".to_string())),
        Some(py) => match Command::new(py)
            .args(["-c", "import onnxruntime; print(onnxruntime.__version__)"])
            .output()
        {
            Ok(o) if o.status.success() => (
                Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
                None,
            ),
            _ => (None, Some(format!("{py} cannot import onnxruntime"))),
        },
    };
    let merge = seed_model(s.vocab);
    let mut rows = Vec::new();
    for (k, which) in s.models.iter().enumerate() {
        let dir = s.work.join(format!("m{k}"));
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut rng = Rng::new(7);
        let (proto, inputs, engine): (ModelProto, Vec<Input>, Option<[Timing; 2]>) = match which {
            CompiledModel::Decoder => {
                let c = &merge.config;
                let tokens: Vec<f32> = (0..c.max_len)
                    .map(|t| {
                        if t < 18 {
                            0.0
                        } else {
                            (3 + t * 37 % 200) as f32
                        }
                    })
                    .collect();
                let feats: Vec<f32> = (0..c.feature_dim).map(|_| rng.uniform(0.0, 2.0)).collect();
                let inputs = vec![
                    Input {
                        name: "embedding_input".into(),
                        onnx_type: 1,
                        shape: vec![1, c.max_len],
                        bytes: f32_bytes(&tokens),
                    },
                    Input {
                        name: "dense_input".into(),
                        onnx_type: 1,
                        shape: vec![1, c.feature_dim],
                        bytes: f32_bytes(&feats),
                    },
                ];
                (autocaption_export::decoder(&merge), inputs, None)
            }
            CompiledModel::Step => {
                let c = &merge.config;
                let feats: Vec<f32> = (0..c.feature_dim).map(|_| rng.uniform(0.0, 2.0)).collect();
                let mut inputs = vec![
                    Input {
                        name: "token".into(),
                        onnx_type: 7,
                        shape: vec![1],
                        bytes: 1i64.to_le_bytes().to_vec(),
                    },
                    Input {
                        name: "features".into(),
                        onnx_type: 1,
                        shape: vec![1, c.feature_dim],
                        bytes: f32_bytes(&feats),
                    },
                ];
                for (name, width) in autocaption_export::step_states(&merge) {
                    inputs.push(Input {
                        name: name.into(),
                        onnx_type: 1,
                        shape: vec![1, width],
                        bytes: vec![0; 4 * width],
                    });
                }
                let decoder = Decoder::with_format(&merge, 1, 2, WeightFormat::F32)?;
                let mut run = || {
                    let h = decoder.greedy(&feats, s.words);
                    assert_eq!(h[0].tokens.len(), s.words, "full-length caption");
                };
                let one = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .map_err(|e| Error::Invalid(e.to_string()))?
                    .install(|| time_n(s.repeats, &mut run));
                let default = time_n(s.repeats, &mut run);
                (
                    autocaption_export::decoder_step(&merge),
                    inputs,
                    Some([one, default]),
                )
            }
            CompiledModel::Encoder => {
                let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), 0);
                let data: Vec<f32> = (0..224 * 224 * 3)
                    .map(|_| rng.uniform(-120.0, 150.0))
                    .collect();
                let maps = Maps {
                    n: 1,
                    h: 224,
                    w: 224,
                    c: 3,
                    data: data.clone(),
                };
                let one = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .map_err(|e| Error::Invalid(e.to_string()))?
                    .install(|| {
                        time_n(s.repeats, &mut || {
                            net.forward(&maps);
                        })
                    });
                let default = time_n(s.repeats, &mut || {
                    net.forward(&maps);
                });
                let inputs = vec![Input {
                    name: "images".into(),
                    onnx_type: 1,
                    shape: vec![1, 224, 224, 3],
                    bytes: f32_bytes(&data),
                }];
                (
                    autocaption_export::encoder(&net, 224),
                    inputs,
                    Some([one, default]),
                )
            }
            CompiledModel::File(path) => {
                let proto = autocaption_onnx::read_model(path).map_err(|e| Error::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let inputs = file_inputs(&proto, s.batch, &mut rng).map_err(|m| Error::File {
                    path: path.clone(),
                    message: m,
                })?;
                (proto, inputs, None)
            }
        };
        let onnx_path = dir.join("model.onnx");
        autocaption_onnx::write_model(&onnx_path, &proto, None).map_err(|e| Error::File {
            path: onnx_path.clone(),
            message: e.to_string(),
        })?;
        for (j, input) in inputs.iter().enumerate() {
            let p = dir.join(format!("input{j}.bin"));
            std::fs::write(&p, &input.bytes).map_err(|e| io_err(&p, e))?;
        }

        // Compile and build.
        let t = Instant::now();
        let opts = Options {
            name: "model".into(),
            batch: Some(s.batch),
            weights: s.weights,
            quantize: s.quantize,
            ..Options::default()
        };
        let compiled = compile(&proto, &opts, &which.label())
            .map_err(|e| Error::Invalid(format!("compiling {}: {e}", which.label())))?;
        compiled
            .write(&dir, "model", false)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let generate = t.elapsed().as_secs_f64();
        let harness = harness_c(which, &inputs, &compiled, s.words);
        let hpath = dir.join("bench.c");
        std::fs::write(&hpath, harness).map_err(|e| io_err(&hpath, e))?;
        let t = Instant::now();
        let out = Command::new(&s.cc)
            .args(&s.cflags)
            .args(["-o", "bench", "model.c", "bench.c", "-lm"])
            .current_dir(&dir)
            .output()
            .map_err(|e| Error::Invalid(format!("cannot run the C compiler '{}': {e}", s.cc)))?;
        if !out.status.success() {
            return Err(failed(&format!("{} on {}", s.cc, dir.display()), &out));
        }
        let cc = t.elapsed().as_secs_f64();
        let mut args = vec![s.repeats.to_string()];
        args.push(if compiled.sources.blob.is_some() {
            "model.weights".into()
        } else {
            "-".into()
        });
        args.extend((0..inputs.len()).map(|j| format!("input{j}.bin")));
        let out = Command::new(dir.join("bench"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .map_err(|e| Error::Invalid(format!("cannot run the harness: {e}")))?;
        if !out.status.success() {
            return Err(failed("the compiled harness", &out));
        }
        let c = parse_timing(&String::from_utf8_lossy(&out.stdout), "c")
            .ok_or_else(|| failed("reading the harness's timing", &out))?;

        // ONNX Runtime on the same file and inputs.
        let (mut ort_1, mut ort_default) = (None, None);
        if let (Some(py), None) = (&s.python, &ort_skipped) {
            let script = dir.join("ort_bench.py");
            std::fs::write(&script, ORT_SCRIPT).map_err(|e| io_err(&script, e))?;
            let spec: Vec<serde_json::Value> = inputs
                .iter()
                .enumerate()
                .map(|(j, i)| {
                    serde_json::json!({"name": i.name, "type": i.onnx_type, "shape": i.shape, "file": format!("input{j}.bin")})
                })
                .collect();
            let spec_path = dir.join("inputs.json");
            std::fs::write(&spec_path, serde_json::to_string(&spec).unwrap_or_default())
                .map_err(|e| io_err(&spec_path, e))?;
            let mode = if *which == CompiledModel::Step {
                "greedy"
            } else {
                "single"
            };
            let out = Command::new(py)
                .args([
                    "ort_bench.py",
                    "model.onnx",
                    "inputs.json",
                    mode,
                    &s.words.to_string(),
                    &s.repeats.to_string(),
                ])
                .current_dir(&dir)
                .output()
                .map_err(|e| Error::Invalid(format!("cannot run {py}: {e}")))?;
            if !out.status.success() {
                return Err(failed("ONNX Runtime", &out));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            ort_1 = parse_timing(&text, "ort1");
            ort_default = parse_timing(&text, "ortdefault");
        }
        rows.push(CompiledRow {
            model: which.label(),
            generate,
            cc,
            source_bytes: compiled.sources.source.len(),
            weight_bytes: compiled.sources.const_bytes,
            blob_bytes: compiled.sources.blob.as_ref().map(Vec::len),
            c,
            ort_1,
            ort_default,
            engine_1: engine.map(|e| e[0]),
            engine_default: engine.map(|e| e[1]),
        });
    }
    Ok(CompiledReport {
        ort_version,
        ort_skipped,
        rows,
    })
}

/// Inputs for any model: floats in [-1, 1], integers 0, symbolic dimensions `batch`.
fn file_inputs(
    proto: &ModelProto,
    batch: usize,
    rng: &mut Rng,
) -> std::result::Result<Vec<Input>, String> {
    use autocaption_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let g = proto.graph.as_ref().ok_or("the model has no graph")?;
    let inits: std::collections::HashSet<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let mut inputs = Vec::new();
    for vi in &g.input {
        let name = vi.name.clone().unwrap_or_default();
        if inits.contains(name.as_str()) {
            continue;
        }
        let Some(type_proto::Value::TensorType(t)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(format!("input '{name}' is not a tensor"));
        };
        let elem = t.elem_type.unwrap_or(0);
        let shape: Vec<usize> = t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Value::DimValue(v)) if v > 0 => v as usize,
                        _ => batch,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let n: usize = shape.iter().product();
        let size = match elem {
            1 | 6 => 4,
            7 => 8,
            9 | 2 | 3 => 1,
            other => {
                return Err(format!(
                    "input '{name}' has element type {other}, not timed here"
                ))
            }
        };
        let bytes = if elem == 1 {
            f32_bytes(&(0..n).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<_>>())
        } else {
            vec![0; n * size]
        };
        inputs.push(Input {
            name,
            onnx_type: elem,
            shape,
            bytes,
        });
    }
    Ok(inputs)
}

/// The timing harness: reads each input from a raw file, calls `model_run` once untimed and
/// `repeats` times timed (for the step model: a whole greedy caption a call), prints `c BEST
/// MEDIAN` in seconds.
fn harness_c(
    which: &CompiledModel,
    inputs: &[Input],
    compiled: &autocaption_compiler::Compiled,
    words: usize,
) -> String {
    let io = &compiled.sources.interface;
    let mut c = String::from(HARNESS_HEAD);
    let mut body = String::new();
    let mut args = Vec::new();
    if compiled.sources.blob.is_some() {
        body.push_str(
            "    size_t wbytes = 0;\n    void *weights = load(argv[2], 0, &wbytes);\n    if (model_check_weights(weights, wbytes) != MODEL_OK) { fprintf(stderr, \"weights refused\\n\"); return 1; }\n",
        );
        args.push("weights".to_string());
    }
    for (j, (name, bytes)) in io.inputs.iter().enumerate() {
        let _ = name;
        body.push_str(&format!(
            "    void *x{j} = load(argv[{}], {bytes}, 0);\n",
            j + 3
        ));
        args.push(format!("x{j}"));
    }
    for (j, (_, bytes)) in io.outputs.iter().enumerate() {
        body.push_str(&format!("    void *y{j} = calloc({bytes} + 64, 1);\n"));
        args.push(format!("y{j}"));
    }
    body.push_str("    void *arena = aligned(MODEL_ARENA_BYTES + 64);\n");
    args.push("arena".into());
    let call = format!("model_run({})", args.join(", "));
    let step = if *which == CompiledModel::Step {
        // token, features, 6 states in; log_probs, 6 states out.
        let vocab = io.outputs[0].1 / 4;
        let mut s = format!(
            "        *(int64_t *)x0 = 1;\n        for (int j = 2; j < {n}; ++j) memset(xs[j], 0, xb[j]);\n        for (int w = 0; w <= {words}; ++w) {{\n            if ({call} != MODEL_OK) return 1;\n            const float *p = (const float *)y0; int64_t best = 0;\n            for (int64_t v = 1; v < {vocab}; ++v) if (p[v] > p[best]) best = v;\n            *(int64_t *)x0 = best;\n",
            n = inputs.len()
        );
        for j in 2..inputs.len() {
            s.push_str(&format!("            memcpy(x{j}, y{}, xb[{j}]);\n", j - 1));
        }
        s.push_str("        }\n");
        let ptrs: Vec<String> = (0..inputs.len()).map(|j| format!("x{j}")).collect();
        let sizes: Vec<String> = io.inputs.iter().map(|(_, b)| b.to_string()).collect();
        body.push_str(&format!(
            "    void *xs[] = {{{}}};\n    size_t xb[] = {{{}}};\n",
            ptrs.join(", "),
            sizes.join(", ")
        ));
        s
    } else {
        format!("        if ({call} != MODEL_OK) return 1;\n")
    };
    c.push_str(
        "int main(int argc, char **argv)\n{\n    (void)argc;\n    int repeats = atoi(argv[1]);\n",
    );
    c.push_str(&body);
    c.push_str(&format!(
        "    double *t = calloc(repeats + 1, sizeof(double));\n    for (int r = 0; r <= repeats; ++r) {{\n        double t0 = now();\n{step}        t[r] = now() - t0;\n    }}\n    qsort(t + 1, repeats, sizeof(double), cmp);\n    printf(\"c %.9f %.9f\\n\", t[1], t[1 + repeats / 2]);\n    return 0;\n}}\n"
    ));
    c
}

const HARNESS_HEAD: &str = r#"/* Timing harness written by `autocaption bench compiled`. */
#define _POSIX_C_SOURCE 199309L
#include "model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void *aligned(size_t bytes)
{
    unsigned char *p = calloc(bytes + 64, 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p + (64 - (size_t)p % 64) % 64;
}

/* Reads a whole file; with want > 0 it must hold exactly that many bytes. */
static void *load(const char *path, size_t want, size_t *got)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = aligned((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n || (want && (size_t)n != want)) {
        fprintf(stderr, "%s: %ld bytes, expected %zu\n", path, n, want);
        exit(1);
    }
    fclose(f);
    if (got) *got = (size_t)n;
    return p;
}

"#;

/// ONNX Runtime on the same file: `ort1`/`ortdefault BEST MEDIAN` lines, in seconds.
const ORT_SCRIPT: &str = r#"import json, sys, time
import numpy as np
import onnxruntime as ort

path, spec, mode, words, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
types = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 2: np.uint8, 3: np.int8}
feeds = {}
for i in json.load(open(spec)):
    feeds[i["name"]] = np.fromfile(i["file"], dtype=types[i["type"]]).reshape(i["shape"])

def timed(sess):
    def once():
        if mode == "single":
            sess.run(None, feeds)
            return
        f = dict(feeds)
        names = [o.name for o in sess.get_outputs()]
        for _ in range(words + 1):
            out = dict(zip(names, sess.run(None, f)))
            f["token"] = np.array([int(np.argmax(out["log_probs"][0]))], dtype=np.int64)
            for k in list(f):
                if k + "_out" in out:
                    f[k] = out[k + "_out"]
    once()
    t = []
    for _ in range(repeats):
        s = time.perf_counter()
        once()
        t.append(time.perf_counter() - s)
    t.sort()
    return t[0], t[len(t) // 2]

for tag, threads in (("ort1", 1), ("ortdefault", 0)):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1 if threads else 0
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    b, m = timed(s)
    print(f"{tag} {b:.9f} {m:.9f}")
"#;
