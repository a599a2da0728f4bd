//! The feature store (DESIGN.md section 5): one safetensors file holding a tensor
//! `features` of shape `[N, D]` (f32) and, in its metadata, the `N` image names in row order
//! (`"names"`, a JSON array) and, where known, the encoder that made them (`"encoder"`, an
//! [`EncoderSpec`] as JSON). Written atomically.

mod encoder_spec;
mod probe;

pub use encoder_spec::{calibration_id, sha256_id, EncoderKind, EncoderSpec};
pub use probe::linear_probe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

/// Why a feature file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not a feature store.
    #[error("{path}: not a feature file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Rows were asked for by name and some names are not in the store.
    #[error("{count} image(s) have no features{source_note} (e.g. {examples}); extract features for them first", count = .names.len(), examples = .names.iter().take(3).cloned().collect::<Vec<_>>().join(", "), source_note = .file.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Missing {
        /// Every missing name, in the order asked.
        names: Vec<String>,
        /// The feature file, when the store came from one.
        file: Option<PathBuf>,
    },
}

/// Image features in memory: row `i` of `data` belongs to `names[i]`. Two stores are equal
/// when their names, rows and encoder record are (wherever they were read from).
#[derive(Debug, Clone)]
pub struct FeatureStore {
    names: Vec<String>,
    dim: usize,
    data: Vec<f32>,
    index: HashMap<String, usize>,
    encoder: Option<EncoderSpec>,
    source: Option<PathBuf>,
}

impl PartialEq for FeatureStore {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
            && self.dim == other.dim
            && self.data == other.data
            && self.encoder == other.encoder
    }
}

impl FeatureStore {
    /// A store from names and row-major `[names.len(), dim]` data. Panics if the sizes
    /// disagree or a name repeats (callers build these from their own, checked data).
    pub fn new(names: Vec<String>, dim: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            names.len() * dim,
            data.len(),
            "features: {} names × {dim} ≠ {} values",
            names.len(),
            data.len()
        );
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        assert_eq!(
            index.len(),
            names.len(),
            "features: image names must be unique"
        );
        Self {
            names,
            dim,
            data,
            index,
            encoder: None,
            source: None,
        }
    }

    /// The same store, recording the encoder that made it.
    pub fn with_encoder(mut self, encoder: EncoderSpec) -> Self {
        self.encoder = Some(encoder);
        self
    }

    /// The encoder that made the features, when the file records it.
    pub fn encoder(&self) -> Option<&EncoderSpec> {
        self.encoder.as_ref()
    }

    /// The file the store was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The rows of `names`, in that order, as one `[names.len(), dim]` buffer; every missing
    /// name is listed in the error.
    pub fn gather<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<f32>, FeatureError> {
        let mut out = Vec::with_capacity(names.len() * self.dim);
        let mut missing = Vec::new();
        for n in names {
            match self.get(n.as_ref()) {
                Some(row) => out.extend_from_slice(row),
                None => missing.push(n.as_ref().to_string()),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(FeatureError::Missing {
                names: missing,
                file: self.source.clone(),
            })
        }
    }

    /// All rows, row-major `[len, dim]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Appends the rows of `other` (same width; names not already here).
    pub fn extend(&mut self, other: FeatureStore) {
        assert_eq!(
            self.dim, other.dim,
            "features: appending rows of another width"
        );
        for n in other.names {
            let i = self.names.len();
            assert!(
                self.index.insert(n.clone(), i).is_none(),
                "features: image name {n:?} appended twice"
            );
            self.names.push(n);
        }
        self.data.extend_from_slice(&other.data);
    }

    /// Appends the rows of `other` (same width) whose names are not here yet; returns how
    /// many. For resuming: a run killed after writing its merged file and before removing
    /// its parts leaves the same rows in both.
    pub fn extend_new(&mut self, other: FeatureStore) -> usize {
        assert_eq!(
            self.dim, other.dim,
            "features: appending rows of another width"
        );
        let dim = self.dim;
        let mut added = 0;
        for (k, n) in other.names.into_iter().enumerate() {
            if self.index.contains_key(&n) {
                continue;
            }
            self.index.insert(n.clone(), self.names.len());
            self.names.push(n);
            self.data
                .extend_from_slice(&other.data[k * dim..(k + 1) * dim]);
            added += 1;
        }
        added
    }

    /// Feature width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no image is stored.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Image names in row order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The row of `name`, if stored.
    pub fn row_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The features of `name`, if stored.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.row_of(name).map(|i| self.row(i))
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes_with(self.encoder.as_ref())
    }

    fn bytes_with(&self, encoder: Option<&EncoderSpec>) -> Vec<u8> {
        let bytes = autocaption_io::f32_to_le_bytes(&self.data);
        let view = TensorView::new(Dtype::F32, vec![self.names.len(), self.dim], &bytes)
            .expect("shape matches data");
        let mut meta: HashMap<String, String> = [(
            "names".to_string(),
            serde_json::to_string(&self.names).expect("names serialise"),
        )]
        .into();
        if let Some(e) = encoder {
            meta.insert(
                "encoder".into(),
                serde_json::to_string(e).expect("the encoder record serialises"),
            );
        }
        let bytes = safetensors::serialize([("features", view)], Some(meta))
            .expect("serialising in memory cannot fail");
        sorted_header(bytes)
    }

    /// Writes the store atomically. Encoder weights in the file's own directory are
    /// recorded by file name alone (read back as a path beside the file), so that a folder
    /// of features and weights can move, and the same run into another folder gives the
    /// same bytes.
    pub fn save(&self, path: &Path) -> Result<(), FeatureError> {
        let encoder = recorded_beside(self.encoder.as_ref(), path);
        autocaption_io::write_atomic(path, &self.bytes_with(encoder.as_ref()))?;
        Ok(())
    }

    /// Writes the file [`FeatureStore::save`] would write for rows named `names` of width
    /// `dim`, without holding the rows: `rows` writes them, in order, as little-endian f32
    /// (`names.len() × dim` values in all). Memory stays that of the names, whatever the
    /// number of rows.
    pub fn save_streamed(
        path: &Path,
        names: &[String],
        dim: usize,
        encoder: Option<&EncoderSpec>,
        rows: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), FeatureError> {
        let encoder = recorded_beside(encoder, path);
        let head = header(names, dim, encoder.as_ref());
        autocaption_io::write_atomic_with(path, &mut |w| {
            w.write_all(&head)?;
            rows(w)
        })?;
        Ok(())
    }

    /// Reads a store written by [`FeatureStore::save`].
    pub fn load(path: &Path) -> Result<Self, FeatureError> {
        let bytes = autocaption_io::read(path)?;
        let bad = |message: String| FeatureError::Format {
            path: path.to_path_buf(),
            message,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let names: Vec<String> = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("names"))
            .ok_or_else(|| bad("no \"names\" in the metadata".into()))
            .and_then(|n| {
                serde_json::from_str(n)
                    .map_err(|e| bad(format!("\"names\" is not a JSON list of strings: {e}")))
            })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let t = st
            .tensor("features")
            .map_err(|_| bad("no tensor named \"features\"".into()))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 2 {
            return Err(bad(format!(
                "\"features\" is {:?} {:?}, expected F32 [N, D]",
                t.dtype(),
                t.shape()
            )));
        }
        let (n, dim) = (t.shape()[0], t.shape()[1]);
        if n != names.len() {
            return Err(bad(format!("{n} feature rows but {} names", names.len())));
        }
        let mut encoder = match meta.metadata().as_ref().and_then(|m| m.get("encoder")) {
            Some(e) => Some(
                serde_json::from_str::<EncoderSpec>(e)
                    .map_err(|err| bad(format!("\"encoder\" is not an encoder record: {err}")))?,
            ),
            None => None,
        };
        if let Some(e) = encoder.as_mut() {
            // A weights path recorded by name alone is beside the file.
            if let Some(w) = e.weights.as_mut() {
                if Path::new(w.as_str()).is_relative() {
                    let dir = std::path::absolute(path)
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .unwrap_or_default();
                    *w = dir.join(w.as_str()).display().to_string();
                }
            }
            if e.feature_dim != dim {
                return Err(bad(format!(
                    "the encoder record says {}-d features, the tensor is {dim}-d",
                    e.feature_dim
                )));
            }
        }
        let data: Vec<f32> = autocaption_io::f32_from_le_bytes(t.data());
        if let Some((i, x)) = autocaption_io::first_non_finite(&data) {
            let (row, col) = (i / dim.max(1), i % dim.max(1));
            return Err(bad(format!(
                "row {row} ({:?}) has {x} at column {col}; features must be finite",
                names.get(row).map_or("?", String::as_str)
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(bad(format!("image name {dup:?} appears twice")));
        }
        let mut store = Self::new(names, dim, data);
        store.encoder = encoder;
        store.source = Some(path.to_path_buf());
        Ok(store)
    }
}

/// The same safetensors bytes with the JSON header's keys sorted (metadata included), so
/// that the same store gives the same bytes: safetensors writes its maps in `HashMap` order.
/// Sorting keeps the header's length, so the data offsets stay valid.
/// The encoder record as a file at `path` stores it: weights beside the file by name alone.
fn recorded_beside(encoder: Option<&EncoderSpec>, path: &Path) -> Option<EncoderSpec> {
    let mut encoder = encoder.cloned();
    if let Some(e) = encoder.as_mut() {
        let beside = |w: &str| {
            let w = Path::new(w);
            let dir = std::path::absolute(path).ok()?.parent()?.to_path_buf();
            (w.is_absolute() && w.parent() == Some(dir.as_path()))
                .then(|| w.file_name().map(|n| n.to_string_lossy().into_owned()))
                .flatten()
        };
        if let Some(name) = e.weights.as_deref().and_then(beside) {
            e.weights = Some(name);
        }
    }
    encoder
}

/// The bytes before the data of a file of `names.len()` rows of width `dim`: the length, then
/// the JSON header with sorted keys, padded with spaces to a multiple of 8 (as `safetensors`
/// pads it).
fn header(names: &[String], dim: usize, encoder: Option<&EncoderSpec>) -> Vec<u8> {
    let mut meta = serde_json::Map::new();
    meta.insert(
        "names".into(),
        serde_json::to_string(names)
            .expect("names serialise")
            .into(),
    );
    if let Some(e) = encoder {
        meta.insert(
            "encoder".into(),
            serde_json::to_string(e)
                .expect("the encoder record serialises")
                .into(),
        );
    }
    let json = serde_json::json!({
        "__metadata__": meta,
        "features": {
            "dtype": "F32",
            "shape": [names.len(), dim],
            "data_offsets": [0, names.len() * dim * 4],
        }
    });
    let mut h = serde_json::to_vec(&json).expect("JSON serialises");
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out
}

fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote valid JSON");
    // serde_json's maps are ordered by key (the `preserve_order` feature is not used).
    let mut sorted = serde_json::to_vec(&header).expect("JSON serialises");
    assert!(
        sorted.len() <= n,
        "a sorted header is no longer than the original"
    );
    sorted.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&sorted);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_saves_write_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        for (n, dim) in [(0, 3), (1, 1), (2, 5), (7, 16), (13, 2048)] {
            let names: Vec<String> = (0..n)
                .map(|i| format!("img_{i}_{}.jpg", "x".repeat(i)))
                .collect();
            let data: Vec<f32> = (0..n * dim).map(|i| i as f32 * 0.25 - 3.0).collect();
            let mut s = FeatureStore::new(names.clone(), dim, data.clone());
            if n % 2 == 1 {
                s = s.with_encoder(EncoderSpec::external(dim));
            }
            let (a, b) = (d.path().join("a"), d.path().join("b"));
            s.save(&a).unwrap();
            FeatureStore::save_streamed(&b, &names, dim, s.encoder(), &mut |w| {
                for row in data.chunks(dim.max(1)) {
                    w.write_all(&autocaption_io::f32_to_le_bytes(row))?;
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{n}×{dim}"
            );
        }
    }

    #[test]
    fn same_store_same_bytes() {
        let s = FeatureStore::new(vec!["a.jpg".into(), "b.jpg".into()], 1, vec![1.0, 2.0]);
        let first = s.to_bytes();
        // HashMap order differs between maps (and processes): build the bytes many times.
        assert!((0..50).all(|_| s.clone().to_bytes() == first));
    }

    #[test]
    fn round_trip_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let s = FeatureStore::new(
            vec!["a.jpg".into(), "b.jpg".into()],
            3,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        s.save(&p).unwrap();
        let back = FeatureStore::load(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.get("b.jpg"), Some(&[4.0, 5.0, 6.0][..]));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(FeatureStore::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a feature file"));
        assert!(FeatureStore::load(&d.path().join("none")).is_err());
    }

    #[test]
    fn encoder_record_round_trips_and_bytes_repeat() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.safetensors");
        let spec = EncoderSpec {
            kind: EncoderKind::Resnet50Random,
            weights: None,
            sha256: None,
            seed: Some(7),
            preprocessing: "keras".into(),
            feature_dim: 1,
            int8: None,
        };
        let s = FeatureStore::new(vec!["a".into(), "b".into()], 1, vec![1.0, 2.0])
            .with_encoder(spec.clone());
        let first = s.to_bytes();
        assert!((0..50).all(|_| s.clone().to_bytes() == first));
        s.save(&p).unwrap();
        let back = FeatureStore::load(&p).unwrap();
        assert_eq!(back.encoder(), Some(&spec));
        assert_eq!(back.source(), Some(p.as_path()));
    }

    #[test]
    fn weights_beside_the_file_are_recorded_by_name() {
        let spec_in = |dir: &Path| EncoderSpec {
            kind: crate::EncoderKind::ConceptCnn,
            weights: Some(dir.join("f.encoder.safetensors").display().to_string()),
            sha256: Some("sha256:00".into()),
            seed: None,
            preprocessing: "pixels".into(),
            feature_dim: 1,
            int8: None,
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let save = |dir: &Path| {
            let p = dir.join("f.safetensors");
            FeatureStore::new(vec!["x".into()], 1, vec![1.0])
                .with_encoder(spec_in(dir))
                .save(&p)
                .unwrap();
            p
        };
        let (pa, pb) = (save(a.path()), save(b.path()));
        // The same run in two folders: the same bytes, and each reads back its own path.
        assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert_eq!(
            FeatureStore::load(&pb).unwrap().encoder(),
            Some(&spec_in(b.path()))
        );
        // Weights elsewhere keep their absolute path.
        let elsewhere =
            FeatureStore::new(vec!["x".into()], 1, vec![1.0]).with_encoder(spec_in(b.path()));
        elsewhere.save(&pa).unwrap();
        assert_eq!(
            FeatureStore::load(&pa).unwrap().encoder(),
            Some(&spec_in(b.path()))
        );
    }

    #[test]
    fn gather_names_every_missing_row() {
        let s = FeatureStore::new(vec!["a".into(), "b".into()], 2, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.gather(&["b", "a"]).unwrap(), vec![3.0, 4.0, 1.0, 2.0]);
        match s.gather(&["a", "x", "y"]).unwrap_err() {
            FeatureError::Missing { names, .. } => assert_eq!(names, vec!["x", "y"]),
            e => panic!("{e}"),
        }
    }
}
