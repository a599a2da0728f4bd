//! The feature store (DESIGN.md section 5): one safetensors file holding a tensor
//! `features` of shape `[N, D]` (f32) and, in its metadata, the `N` image names in row order
//! (`"names"`, a JSON array). Written atomically.

mod probe;

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
}

/// Image features in memory: row `i` of `data` belongs to `names[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStore {
    names: Vec<String>,
    dim: usize,
    data: Vec<f32>,
    index: HashMap<String, usize>,
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
        }
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
        let bytes = autocaption_io::f32_to_le_bytes(&self.data);
        let view = TensorView::new(Dtype::F32, vec![self.names.len(), self.dim], &bytes)
            .expect("shape matches data");
        // One metadata key only: safetensors writes its metadata map in HashMap order, so
        // two keys would make the same features come out as different bytes run to run.
        let meta: HashMap<String, String> = [(
            "names".to_string(),
            serde_json::to_string(&self.names).expect("names serialise"),
        )]
        .into();
        safetensors::serialize([("features", view)], Some(meta))
            .expect("serialising in memory cannot fail")
    }

    /// Writes the store atomically.
    pub fn save(&self, path: &Path) -> Result<(), FeatureError> {
        autocaption_io::write_atomic(path, &self.to_bytes())?;
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
        let data: Vec<f32> = autocaption_io::f32_from_le_bytes(t.data());
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(bad(format!("image name {dup:?} appears twice")));
        }
        Ok(Self::new(names, dim, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
