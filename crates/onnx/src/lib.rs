//! ONNX models in and out: the protobuf messages generated from the official `onnx.proto`,
//! reading a model with its external data, writing one with large tensors moved to a data
//! file beside it (atomically), and tensors as typed arrays.
//!
//! Every failure names the file and, for a tensor, the tensor: a truncated file, bytes that
//! are not protobuf, a tensor whose data does not match its dimensions, or an external-data
//! reference that leaves the model's directory or its file.

mod tensor;

use std::path::{Component, Path, PathBuf};

use prost::Message;

pub use tensor::{Tensor, TensorData};

/// The ONNX protobuf messages (`ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`, …),
/// generated from the official `onnx.proto` (ONNX 1.17.0).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};

/// What went wrong reading or writing an ONNX file.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The bytes are not the protobuf message expected (truncated, or another format).
    #[error("{path}: not a valid ONNX {what} ({message})")]
    Decode {
        /// The file.
        path: PathBuf,
        /// `model` or `tensor`.
        what: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// A tensor's data does not fit its type and dimensions, or its external data is
    /// missing or out of bounds.
    #[error("{path}: tensor '{name}': {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written (too large, not a regular file, …).
    #[error(transparent)]
    File(autocaption_io::IoError),
}

impl From<autocaption_io::IoError> for OnnxError {
    fn from(e: autocaption_io::IoError) -> Self {
        match e {
            autocaption_io::IoError::Io { path, error } => OnnxError::Io { path, error },
            other => OnnxError::File(other),
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, OnnxError> {
    Ok(autocaption_io::read(path)?)
}

/// External data files, each read once however many tensors it holds.
type DataFiles = std::collections::HashMap<PathBuf, Vec<u8>>;

/// Reads a model, loads its external data (paths relative to the model's directory) into
/// the tensors, and checks that every tensor of the graph (initializers and tensor
/// attributes, subgraphs included) holds exactly the data its type and dimensions call for.
pub fn read_model(path: &Path) -> Result<ModelProto, OnnxError> {
    let bytes = read_bytes(path)?;
    let mut model = ModelProto::decode(bytes.as_slice()).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        what: "model",
        message: e.to_string(),
    })?;
    if model.graph.is_none() {
        return Err(OnnxError::Decode {
            path: path.to_path_buf(),
            what: "model",
            message: "it has no graph".into(),
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut result = Ok(());
    let mut files = DataFiles::new();
    for_each_tensor(&mut model, &mut |t| {
        if result.is_ok() {
            result = load_external(t, dir, path, &mut files).and_then(|()| check(t, path));
        }
    });
    result.map(|()| model)
}

/// Reads one serialised `TensorProto` (the `.pb` files of the ONNX backend tests) as a
/// typed tensor.
pub fn read_tensor(path: &Path) -> Result<(String, Tensor), OnnxError> {
    let bytes = read_bytes(path)?;
    let t = TensorProto::decode(bytes.as_slice()).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        what: "tensor",
        message: e.to_string(),
    })?;
    let name = t.name.clone().unwrap_or_default();
    let tensor = Tensor::from_proto(&t).map_err(|message| OnnxError::Tensor {
        path: path.to_path_buf(),
        name: name.clone(),
        message,
    })?;
    Ok((name, tensor))
}

/// Writes `model` atomically to `path`. Tensors whose data exceeds `external_above` bytes
/// (when given) go into one data file beside it, `<file name>.data`, each at a 64-byte
/// aligned offset, referenced by relative location, offset and length as the ONNX external
/// data format prescribes; protobuf caps a message at 2 GiB, so large models need this.
pub fn write_model(
    path: &Path,
    model: &ModelProto,
    external_above: Option<usize>,
) -> Result<(), OnnxError> {
    Ok(autocaption_io::write_files_atomic(&model_files(
        path,
        model,
        external_above,
    ))?)
}

/// The files [`write_model`] writes, with their bytes: the model, and its external data
/// when there is any.
pub fn model_files(
    path: &Path,
    model: &ModelProto,
    external_above: Option<usize>,
) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut model = model.clone();
    let mut data = Vec::new();
    if let Some(limit) = external_above {
        let file_name = path
            .file_name()
            .map(|f| format!("{}.data", f.to_string_lossy()))
            .unwrap_or_else(|| "model.onnx.data".into());
        for_each_tensor(&mut model, &mut |t| {
            let raw = match &t.raw_data {
                Some(r) if r.len() > limit => r,
                _ => return,
            };
            data.resize(data.len().next_multiple_of(64), 0);
            let offset = data.len();
            data.extend_from_slice(raw);
            let entry = |k: &str, v: String| StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            };
            t.external_data = vec![
                entry("location", file_name.clone()),
                entry("offset", offset.to_string()),
                entry("length", raw.len().to_string()),
            ];
            t.raw_data = None;
            t.data_location = Some(DataLocation::External as i32);
        });
        if !data.is_empty() {
            files.push((path.with_file_name(&file_name), data));
        }
    }
    files.push((path.to_path_buf(), model.encode_to_vec()));
    files
}

/// Calls `f` on every tensor of the model: initializers and tensor-valued attributes of the
/// main graph and of every subgraph.
fn for_each_tensor(model: &mut ModelProto, f: &mut dyn FnMut(&mut TensorProto)) {
    fn graph(g: &mut proto::GraphProto, f: &mut dyn FnMut(&mut TensorProto)) {
        g.initializer.iter_mut().for_each(&mut *f);
        for node in &mut g.node {
            for a in &mut node.attribute {
                if let Some(t) = &mut a.t {
                    f(t);
                }
                a.tensors.iter_mut().for_each(&mut *f);
                if let Some(sub) = &mut a.g {
                    graph(sub, f);
                }
                for sub in &mut a.graphs {
                    graph(sub, f);
                }
            }
        }
    }
    if let Some(g) = &mut model.graph {
        graph(g, f);
    }
}

fn tensor_error(path: &Path, t: &TensorProto, message: String) -> OnnxError {
    OnnxError::Tensor {
        path: path.to_path_buf(),
        name: t.name.clone().unwrap_or_default(),
        message,
    }
}

/// Replaces an external-data reference with the bytes it points at.
fn load_external(
    t: &mut TensorProto,
    dir: &Path,
    model: &Path,
    files: &mut DataFiles,
) -> Result<(), OnnxError> {
    if t.data_location != Some(DataLocation::External as i32) {
        return Ok(());
    }
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(k))
            .and_then(|e| e.value.clone())
    };
    let location = get("location")
        .ok_or_else(|| tensor_error(model, t, "external data without a location".into()))?;
    let rel = Path::new(&location);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(tensor_error(
            model,
            t,
            format!("external data location '{location}' leaves the model's directory"),
        ));
    }
    let number = |k: &str| -> Result<Option<usize>, OnnxError> {
        get(k)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    tensor_error(model, t, format!("external data {k} '{v}' is not a number"))
                })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let file = dir.join(rel);
    if !files.contains_key(&file) {
        let bytes = read_bytes(&file)?;
        files.insert(file.clone(), bytes);
    }
    let bytes = &files[&file];
    let end = match length {
        Some(l) => offset.checked_add(l),
        None => Some(bytes.len()),
    };
    let slice = end
        .filter(|&e| offset <= e && e <= bytes.len())
        .map(|e| &bytes[offset..e])
        .ok_or_else(|| {
            tensor_error(
                model,
                t,
                format!(
                    "external data at offset {offset}, length {} is beyond the {} bytes of {}",
                    length.map_or("(rest)".into(), |l| l.to_string()),
                    bytes.len(),
                    file.display()
                ),
            )
        })?;
    t.raw_data = Some(slice.to_vec());
    t.external_data.clear();
    t.data_location = None;
    Ok(())
}

/// Checks that the tensor's data matches its type and dimensions (for the types [`Tensor`]
/// reads; others are left for whoever uses them).
fn check(t: &TensorProto, path: &Path) -> Result<(), OnnxError> {
    match Tensor::from_proto(t) {
        Err(message) if !message.starts_with(tensor::UNSUPPORTED) => {
            Err(tensor_error(path, t, message))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
