//! The seed's own Keras model: a Keras 2 HDF5 file (`model.save("model.h5")`) read into the
//! merge model, and a Keras `Tokenizer.to_json()` file read into a tokenizer.
//!
//! The file's `model_config` JSON gives the graph. Every layer must be one the seed's merge
//! model is built from (InputLayer, Embedding, Dense, LSTM, Dropout, RepeatVector,
//! TimeDistributed(Dense), Concatenate, Activation); anything else is one error listing every
//! unsupported layer. The graph is then matched against the seed's: an image branch (Dense
//! with ReLU, RepeatVector) and a text branch (Embedding, LSTM, TimeDistributed Dense)
//! concatenated into two LSTMs and a softmax Dense, dropouts anywhere in between. Weights are
//! read from `model_weights/LAYER/…` through the pure-Rust HDF5 reader. Keras 3 `.keras`
//! files (a zip) are not read: save with Keras 2 (TensorFlow ≤ 2.15) as `.h5`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use autocaption_model::{MergeConfig, MergeModel};
use autocaption_text::Tokenizer;
use serde_json::Value;

/// Why a Keras file could not be imported. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KerasError {
    /// Reading the file failed (missing, too large, not a regular file, …).
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not a Keras 2 HDF5 model (not HDF5, cut short, no `model_config`, …).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Layers that the merge model has no counterpart for: all of them, named.
    #[error("{path}: {} unsupported layer(s): {}; supported are InputLayer, Embedding, Dense, LSTM, Dropout, RepeatVector, TimeDistributed(Dense), Concatenate and Activation", layers.len(), layers.join(", "))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// `name (Class)` of each.
        layers: Vec<String>,
    },
    /// The layers are supported but do not form the seed's merge graph.
    #[error("{path}: not the seed's merge model: {message}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// Where the graph differs.
        message: String,
    },
    /// A weight is missing, misshapen or not finite.
    #[error("{path}: weight {name}: {message}")]
    Weight {
        /// The file.
        path: PathBuf,
        /// The HDF5 dataset (or layer) involved.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer JSON is not a usable Keras tokenizer.
    #[error("{path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A Keras model read into the merge model.
#[derive(Debug)]
pub struct KerasModel {
    /// The model, with the file's weights.
    pub model: MergeModel,
    /// Embedding's `mask_zero`: with it, padding is skipped (our incremental decoding gives
    /// the same captions); without it, as in the seed, the model was trained on pre-padded
    /// windows and must be decoded by re-running the whole window for every word.
    pub mask_zero: bool,
    /// The `keras_version` attribute, where present.
    pub keras_version: Option<String>,
    /// Layer names of the file, in its order, with the part each plays.
    pub layers: Vec<(String, String)>,
}

/// Layer kinds the merge model is built from.
const SUPPORTED: &[&str] = &[
    "InputLayer",
    "Embedding",
    "Dense",
    "LSTM",
    "Dropout",
    "RepeatVector",
    "TimeDistributed",
    "Concatenate",
    "Activation",
];

/// One layer of `model_config`.
#[derive(Debug)]
struct Layer {
    class: String,
    name: String,
    config: Value,
    inputs: Vec<String>,
}

impl Layer {
    fn str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }

    fn usize(&self, key: &str) -> Option<usize> {
        self.config
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    }

    fn bool(&self, key: &str) -> Option<bool> {
        self.config.get(key).and_then(Value::as_bool)
    }

    /// The last dimension of an InputLayer's `batch_input_shape`.
    fn input_width(&self) -> Option<usize> {
        self.config
            .get("batch_input_shape")
            .or_else(|| self.config.get("batch_shape"))
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    }
}

struct Reader<'a> {
    path: &'a Path,
    layers: HashMap<String, Layer>,
    order: Vec<String>,
}

impl Reader<'_> {
    fn graph(&self, message: impl Into<String>) -> KerasError {
        KerasError::Graph {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn layer(&self, name: &str) -> Result<&Layer, KerasError> {
        self.layers
            .get(name)
            .ok_or_else(|| self.graph(format!("layer {name} is used but not defined")))
    }

    /// The single input of `l`.
    fn input_of(&self, l: &Layer) -> Result<&Layer, KerasError> {
        match l.inputs.as_slice() {
            [one] => self.layer(one),
            other => Err(self.graph(format!(
                "{} ({}) has {} inputs, expected one",
                l.name,
                l.class,
                other.len()
            ))),
        }
    }

    /// `l`, or the first layer before it that is not a Dropout; the Dropout rates seen.
    fn skip_dropouts<'b>(
        &'b self,
        mut l: &'b Layer,
        rates: &mut Vec<f64>,
    ) -> Result<&'b Layer, KerasError> {
        while l.class == "Dropout" {
            // A chain longer than the model is a cycle (a layer fed by itself).
            if rates.len() > self.layers.len() {
                return Err(self.graph(format!("{} is part of a cycle", l.name)));
            }
            rates.push(l.config.get("rate").and_then(Value::as_f64).unwrap_or(0.0));
            l = self.input_of(l)?;
        }
        Ok(l)
    }

    fn want_class(&self, l: &Layer, class: &str, role: &str) -> Result<(), KerasError> {
        if l.class == class {
            Ok(())
        } else {
            Err(self.graph(format!(
                "expected the {role} to be a {class} layer, found {} ({})",
                l.name, l.class
            )))
        }
    }

    fn check_dense(&self, l: &Layer, activation: &str, role: &str) -> Result<(), KerasError> {
        let act = l.str("activation").unwrap_or("linear");
        if act != activation {
            return Err(self.graph(format!(
                "the {role} {} has activation {act}, expected {activation}",
                l.name
            )));
        }
        if l.bool("use_bias") == Some(false) {
            return Err(self.graph(format!("the {role} {} has no bias", l.name)));
        }
        Ok(())
    }

    fn check_lstm(&self, l: &Layer, sequences: bool, role: &str) -> Result<(), KerasError> {
        self.want_class(l, "LSTM", role)?;
        let checks = [
            (l.str("activation") == Some("tanh"), "activation tanh"),
            (
                l.str("recurrent_activation") == Some("sigmoid"),
                "recurrent_activation sigmoid",
            ),
            (l.bool("use_bias") != Some(false), "use_bias"),
            (l.bool("go_backwards") != Some(true), "go_backwards false"),
            (l.bool("stateful") != Some(true), "stateful false"),
            (l.bool("return_state") != Some(true), "return_state false"),
            (
                l.bool("return_sequences").unwrap_or(false) == sequences,
                if sequences {
                    "return_sequences true"
                } else {
                    "return_sequences false"
                },
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                return Err(self.graph(format!("the {role} {} needs {what}", l.name)));
            }
        }
        Ok(())
    }
}

/// What the graph matching found: the layer playing each part of the merge model.
struct Parts {
    embedding: String,
    text_lstm: String,
    text_dense: String,
    image_dense: String,
    merge_lstm: String,
    decoder_lstm: String,
    output: String,
    /// The Concatenate puts the text branch first (the merge LSTM's kernel rows are then
    /// reordered to ours, image first).
    text_first: bool,
    config: MergeConfig,
    mask_zero: bool,
}

fn parse_layers(path: &Path, config: &Value) -> Result<(Vec<Layer>, String), KerasError> {
    let bad = |message: String| KerasError::Format {
        path: path.to_path_buf(),
        message,
    };
    let class = config
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    if class == "Sequential" {
        return Err(KerasError::Graph {
            path: path.to_path_buf(),
            message: "a Sequential model has one input; the merge model has two (tokens and \
                      image features)"
                .into(),
        });
    }
    let body = config
        .get("config")
        .ok_or_else(|| bad("model_config has no \"config\"".into()))?;
    let raw = body
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("model_config has no layer list".into()))?;
    let mut layers = Vec::new();
    for (k, l) in raw.iter().enumerate() {
        let class = l
            .get("class_name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("layer {k} has no class_name")))?
            .to_string();
        let config = l.get("config").cloned().unwrap_or(Value::Null);
        let name = l
            .get("name")
            .or_else(|| config.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("layer {k} ({class}) has no name")))?
            .to_string();
        // Keras 2: [[[inbound_layer, node_index, tensor_index, kwargs], …]] per call.
        let mut inputs = Vec::new();
        if let Some(nodes) = l.get("inbound_nodes").and_then(Value::as_array) {
            if nodes.len() > 1 {
                return Err(KerasError::Graph {
                    path: path.to_path_buf(),
                    message: format!(
                        "layer {name} is called {} times (shared layers are not the seed's)",
                        nodes.len()
                    ),
                });
            }
            for node in nodes {
                let Some(tensors) = node.as_array() else {
                    return Err(bad(format!(
                        "layer {name}: inbound nodes in a format other than Keras 2's (a Keras 3 file?)"
                    )));
                };
                for t in tensors {
                    let from = t
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("layer {name}: unreadable inbound node")))?;
                    inputs.push(from.to_string());
                }
            }
        }
        layers.push(Layer {
            class,
            name,
            config,
            inputs,
        });
    }
    let outputs = body
        .get("output_layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("model_config has no output_layers".into()))?;
    let [out] = outputs.as_slice() else {
        return Err(KerasError::Graph {
            path: path.to_path_buf(),
            message: format!("{} outputs, expected one", outputs.len()),
        });
    };
    let out = out
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| bad("unreadable output_layers".into()))?
        .to_string();
    Ok((layers, out))
}

fn match_graph(r: &Reader<'_>, output: &str) -> Result<Parts, KerasError> {
    let mut rates = Vec::new();
    // Output: Dense(linear) + Activation(softmax), or Dense(softmax).
    let mut l = r.layer(output)?;
    let out_dense = if l.class == "Activation" {
        if l.str("activation") != Some("softmax") {
            return Err(r.graph(format!("the output {} is not a softmax", l.name)));
        }
        let d = r.skip_dropouts(r.input_of(l)?, &mut rates)?;
        r.want_class(d, "Dense", "output layer")?;
        r.check_dense(d, "linear", "output layer")?;
        d
    } else {
        r.want_class(l, "Dense", "output layer")?;
        r.check_dense(l, "softmax", "output layer")?;
        l
    };
    let vocab = out_dense
        .usize("units")
        .ok_or_else(|| r.graph("the output Dense has no units"))?;
    l = r.skip_dropouts(r.input_of(out_dense)?, &mut rates)?;
    r.check_lstm(l, false, "last LSTM")?;
    let decoder = l;
    l = r.skip_dropouts(r.input_of(decoder)?, &mut rates)?;
    r.check_lstm(l, true, "merging LSTM")?;
    let merge = l;
    let concat = r.skip_dropouts(r.input_of(merge)?, &mut rates)?;
    r.want_class(concat, "Concatenate", "layer before the merging LSTM")?;
    let axis = concat
        .config
        .get("axis")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    if axis != -1 && axis != 2 {
        return Err(r.graph(format!(
            "{} concatenates on axis {axis}, expected -1",
            concat.name
        )));
    }
    let [a, b] = concat.inputs.as_slice() else {
        return Err(r.graph(format!(
            "{} joins {} inputs, expected two (image and text)",
            concat.name,
            concat.inputs.len()
        )));
    };
    let a = r.skip_dropouts(r.layer(a)?, &mut rates)?;
    let b = r.skip_dropouts(r.layer(b)?, &mut rates)?;
    let (repeat, td, text_first) = match (a.class.as_str(), b.class.as_str()) {
        ("RepeatVector", "TimeDistributed") => (a, b, false),
        ("TimeDistributed", "RepeatVector") => (b, a, true),
        _ => {
            return Err(r.graph(format!(
                "{} joins {} ({}) and {} ({}); expected a RepeatVector (image) and a \
                 TimeDistributed Dense (text)",
                concat.name, a.name, a.class, b.name, b.class
            )))
        }
    };
    // Image branch.
    let steps = repeat
        .usize("n")
        .ok_or_else(|| r.graph("the RepeatVector has no n"))?;
    let image_dense = r.skip_dropouts(r.input_of(repeat)?, &mut rates)?;
    r.want_class(image_dense, "Dense", "image layer")?;
    r.check_dense(image_dense, "relu", "image Dense")?;
    let image_in = r.skip_dropouts(r.input_of(image_dense)?, &mut rates)?;
    r.want_class(image_in, "InputLayer", "image input")?;
    let feature_dim = image_in
        .input_width()
        .ok_or_else(|| r.graph(format!("the input {} has no width", image_in.name)))?;
    // Text branch.
    let inner = td
        .config
        .get("layer")
        .ok_or_else(|| r.graph(format!("{} wraps no layer", td.name)))?;
    let inner_class = inner
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    if inner_class != "Dense" {
        return Err(r.graph(format!(
            "{} wraps a {inner_class}, expected a Dense",
            td.name
        )));
    }
    let inner = Layer {
        class: "Dense".into(),
        name: td.name.clone(),
        config: inner.get("config").cloned().unwrap_or(Value::Null),
        inputs: Vec::new(),
    };
    r.check_dense(&inner, "linear", "text TimeDistributed Dense")?;
    let text_lstm = r.skip_dropouts(r.input_of(td)?, &mut rates)?;
    r.check_lstm(text_lstm, true, "text LSTM")?;
    let embedding = r.skip_dropouts(r.input_of(text_lstm)?, &mut rates)?;
    r.want_class(embedding, "Embedding", "layer before the text LSTM")?;
    let token_in = r.input_of(embedding)?;
    r.want_class(token_in, "InputLayer", "token input")?;
    let window = token_in.input_width();
    if window.is_some_and(|w| w != steps) {
        return Err(r.graph(format!(
            "the token input is {} long but the RepeatVector repeats {steps} times",
            window.unwrap_or(0)
        )));
    }
    if embedding.usize("input_dim") != Some(vocab) {
        return Err(r.graph(format!(
            "the Embedding has {} words but the output {vocab}",
            embedding.usize("input_dim").unwrap_or(0)
        )));
    }
    let units = |l: &Layer| {
        l.usize("units")
            .or_else(|| l.usize("output_dim"))
            .ok_or_else(|| r.graph(format!("{} has no width", l.name)))
    };
    let dropout = rates.iter().copied().fold(0.0f64, f64::max) as f32;
    let config = MergeConfig {
        vocab_size: vocab,
        feature_dim,
        embed_dim: units(embedding)?,
        text_lstm: units(text_lstm)?,
        text_dense: units(&inner)?,
        image_dense: units(image_dense)?,
        merge_lstm: units(merge)?,
        decoder_lstm: units(decoder)?,
        dropout,
        max_len: steps,
    };
    config
        .check()
        .map_err(|e| r.graph(format!("its sizes do not make a model: {e}")))?;
    Ok(Parts {
        embedding: embedding.name.clone(),
        text_lstm: text_lstm.name.clone(),
        text_dense: td.name.clone(),
        image_dense: image_dense.name.clone(),
        merge_lstm: merge.name.clone(),
        decoder_lstm: decoder.name.clone(),
        output: out_dense.name.clone(),
        text_first,
        config,
        mask_zero: embedding.bool("mask_zero").unwrap_or(false),
    })
}

/// One weight read from the file: our name for it, its dataset path, its values.
type Weight = (String, String, Vec<f32>);

/// Reads the weights of one layer that play `ours` (`text_lstm`, …): (our name, dataset
/// path, values) for each entry of its `weight_names` that the model has, after checking its
/// shape against the model's (`expected`, by our name), so that a file claiming a huge
/// dataset is refused before anything is allocated.
fn layer_weights(
    file: &hdf5_reader::Hdf5File,
    base: &str,
    layer: &str,
    ours: &str,
    expected: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<Vec<Weight>, KerasError> {
    let err = |name: &str, message: String| KerasError::Weight {
        path: path.to_path_buf(),
        name: name.to_string(),
        message,
    };
    let group = format!("{base}{layer}");
    let names = file
        .group(&group)
        .and_then(|g| g.attribute("weight_names"))
        .and_then(|a| a.read_strings())
        .map_err(|e| err(&group, format!("no weight_names: {e}")))?;
    let mut out = Vec::new();
    for n in names {
        let ds_path = format!("{group}/{n}");
        let d = file
            .dataset(&ds_path)
            .map_err(|e| err(&ds_path, format!("missing: {e}")))?;
        match d.dtype() {
            hdf5_reader::Datatype::FloatingPoint { size: 4, .. } => {}
            other => return Err(err(&ds_path, format!("type {other:?}, expected float32"))),
        }
        let short = n.rsplit('/').next().unwrap_or(&n).trim_end_matches(":0");
        let key = format!("{ours}.{short}");
        let Some(want) = expected.get(&key) else {
            continue;
        };
        let shape: Vec<usize> = d.shape().iter().map(|&v| v as usize).collect();
        if &shape != want {
            return Err(err(&ds_path, format!("shape {shape:?}, expected {want:?}")));
        }
        let mut v = vec![0.0f32; want.iter().product()];
        d.read_into(&mut v)
            .map_err(|e| err(&ds_path, format!("unreadable: {e}")))?;
        if let Some((i, x)) = autocaption_io::first_non_finite(&v) {
            return Err(err(
                &ds_path,
                format!("value {i} is {x}; every value must be finite"),
            ));
        }
        out.push((key, ds_path, v));
    }
    Ok(out)
}

/// Reads a Keras 2 HDF5 model (`model.save("model.h5")`) of the seed's merge graph from its
/// bytes; `path` names it in errors.
pub fn read_model(bytes: Vec<u8>, path: &Path) -> Result<KerasModel, KerasError> {
    let format = |message: String| KerasError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(format(
            "a Keras 3 .keras file (a zip archive); this reads Keras 2 HDF5 models: save with \
             TensorFlow 2.15 or earlier as model.h5"
                .into(),
        ));
    }
    if !bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Err(format("not an HDF5 file (no HDF5 signature)".into()));
    }
    let file_len = bytes.len() as u64;
    let file = hdf5_reader::Hdf5File::from_vec(bytes)
        .map_err(|e| format(format!("unreadable HDF5 (cut short?): {e}")))?;
    let root = file
        .root_group()
        .map_err(|e| format(format!("unreadable HDF5: {e}")))?;
    let config_text = root
        .attribute("model_config")
        .and_then(|a| a.read_string())
        .map_err(|_| {
            format(
                "no model_config attribute: a weights-only file (save_weights); the whole model \
                 (model.save) is needed"
                    .into(),
            )
        })?;
    let keras_version = root
        .attribute("keras_version")
        .and_then(|a| a.read_string())
        .ok();
    let config: Value = serde_json::from_str(&config_text)
        .map_err(|e| format(format!("model_config is not JSON: {e}")))?;
    let (layers, output) = parse_layers(path, &config)?;
    let unsupported: Vec<String> = layers
        .iter()
        .filter(|l| !SUPPORTED.contains(&l.class.as_str()))
        .map(|l| format!("{} ({})", l.name, l.class))
        .collect();
    if !unsupported.is_empty() {
        return Err(KerasError::Unsupported {
            path: path.to_path_buf(),
            layers: unsupported,
        });
    }
    let order: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let reader = Reader {
        path,
        layers: layers.into_iter().map(|l| (l.name.clone(), l)).collect(),
        order,
    };
    let parts = match_graph(&reader, &output)?;
    // Keras stores weights uncompressed: a file smaller than its weights is cut short or
    // lies about its sizes (and the model is not allocated for it).
    let weight_bytes = parts.config.parameters() * 4;
    if weight_bytes > file_len {
        return Err(format(format!(
            "its configuration calls for {} parameters ({weight_bytes} bytes) but the file is \
             {file_len} bytes: cut short, or not the file its configuration describes",
            parts.config.parameters()
        )));
    }

    let base = if file.group("model_weights").is_ok() {
        "model_weights/"
    } else {
        ""
    };
    let mut model = MergeModel::new(parts.config.clone(), 0);
    let roles = [
        ("embedding", &parts.embedding),
        ("text_lstm", &parts.text_lstm),
        ("text_dense", &parts.text_dense),
        ("image_dense", &parts.image_dense),
        ("merge_lstm", &parts.merge_lstm),
        ("decoder_lstm", &parts.decoder_lstm),
        ("output", &parts.output),
    ];
    let names: Vec<(String, Vec<usize>)> = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.shape.clone()))
        .collect();
    let expected: HashMap<String, Vec<usize>> = names.iter().cloned().collect();
    let mut values: HashMap<String, (String, Vec<f32>)> = HashMap::new();
    for (ours, theirs) in roles {
        for (key, ds, v) in layer_weights(&file, base, theirs, ours, &expected, path)? {
            values.insert(key, (ds, v));
        }
    }
    let (img, txt) = (parts.config.image_dense, parts.config.text_dense);
    for ((name, shape), param) in names.into_iter().zip(model.params_mut()) {
        let layer = name.split('.').next().unwrap_or("");
        let (_, mut v) = values.remove(&name).ok_or_else(|| KerasError::Weight {
            path: path.to_path_buf(),
            name: format!(
                "{base}{}",
                roles.iter().find(|r| r.0 == layer).map_or("?", |r| r.1)
            ),
            message: format!("has no {}", name.split('.').nth(1).unwrap_or("")),
        })?;
        if name == "merge_lstm.kernel" && parts.text_first {
            // Rows are [text, image] in the file; ours are [image, text].
            let cols = shape[1];
            let (text_rows, image_rows) = v.split_at(txt * cols);
            let mut reordered = image_rows.to_vec();
            reordered.extend_from_slice(text_rows);
            debug_assert_eq!(reordered.len(), (img + txt) * cols);
            v = reordered;
        }
        param.value = v;
    }
    let role_of: HashMap<&str, &str> = roles.iter().map(|(o, t)| (t.as_str(), *o)).collect();
    let layers = reader
        .order
        .iter()
        .map(|n| {
            let l = &reader.layers[n];
            let role = role_of
                .get(n.as_str())
                .copied()
                .unwrap_or(match l.class.as_str() {
                    "InputLayer" => "input",
                    "Dropout" => "dropout (training only)",
                    "RepeatVector" => "repeats the image",
                    "Concatenate" => "joins image and text",
                    "Activation" => "softmax",
                    _ => "",
                });
            (format!("{n} ({})", l.class), role.to_string())
        })
        .collect();
    Ok(KerasModel {
        model,
        mask_zero: parts.mask_zero,
        keras_version,
        layers,
    })
}

/// [`read_model`] on a file.
pub fn read_model_file(path: &Path) -> Result<KerasModel, KerasError> {
    read_model(autocaption_io::read(path)?, path)
}

/// Reads a Keras `Tokenizer.to_json()` file into a tokenizer with the seed's cleaning
/// (lowercase, punctuation removed, one-letter words dropped, wrapped in `start` … `end`):
/// the words keep Keras' indices, so the model's output rows keep their meaning. With
/// `num_words`, only indices below it are kept (as Keras' `texts_to_sequences` does).
pub fn read_tokenizer(
    text: &str,
    path: &Path,
    start: &str,
    end: &str,
) -> Result<Tokenizer, KerasError> {
    let bad = |message: String| KerasError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.get("class_name").and_then(Value::as_str) != Some("Tokenizer") {
        return Err(bad(
            "not a Keras Tokenizer (class_name is not \"Tokenizer\")".into(),
        ));
    }
    let config = v.get("config").ok_or_else(|| bad("no \"config\"".into()))?;
    // word_index and word_counts are JSON strings inside the JSON.
    let inner = |key: &str| -> Result<serde_json::Map<String, Value>, KerasError> {
        let s = config
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("no {key}")))?;
        match serde_json::from_str(s) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(bad(format!("{key} is not a JSON object"))),
        }
    };
    let index = inner("word_index")?;
    let counts = inner("word_counts").unwrap_or_default();
    let num_words = config.get("num_words").and_then(Value::as_u64);
    let oov = config
        .get("oov_token")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut words: Vec<(u64, String)> = Vec::with_capacity(index.len());
    for (w, i) in &index {
        let i = i
            .as_u64()
            .filter(|&i| i >= 1)
            .ok_or_else(|| bad(format!("word {w:?} has index {i}, expected 1 or more")))?;
        if num_words.is_none_or(|n| i < n) {
            words.push((i, w.clone()));
        }
    }
    words.sort();
    for (k, (i, w)) in words.iter().enumerate() {
        if *i != k as u64 + 1 {
            return Err(bad(format!(
                "word {w:?} has index {i} but {} was expected (indices must run 1, 2, 3, …)",
                k + 1
            )));
        }
    }
    for t in [start, end] {
        if !words.iter().any(|(_, w)| w == t) {
            return Err(bad(format!(
                "the token {t:?} is not in the word index (pass the start and end tokens the \
                 captions were wrapped in)"
            )));
        }
    }
    let counts: Vec<u64> = words
        .iter()
        .map(|(_, w)| counts.get(w).and_then(Value::as_u64).unwrap_or(0))
        .collect();
    let words: Vec<String> = words.into_iter().map(|(_, w)| w).collect();
    Tokenizer::from_words(words, counts, oov, start, end).map_err(bad)
}

/// [`read_tokenizer`] on a file.
pub fn read_tokenizer_file(path: &Path, start: &str, end: &str) -> Result<Tokenizer, KerasError> {
    let text = autocaption_io::read_to_string(path)?;
    read_tokenizer(&text, path, start, end)
}
