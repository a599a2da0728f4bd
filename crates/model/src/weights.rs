//! Weights as safetensors, with the Keras-style names of [`MergeModel::named_params`].

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::{MergeModel, ModelError};

impl MergeModel {
    /// The weights as safetensors bytes (deterministic: names are written sorted).
    pub fn weights_bytes(&self) -> Vec<u8> {
        let params = self.named_params();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = params
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    p.shape.clone(),
                    autocaption_io::f32_to_le_bytes(&p.value),
                )
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches data"),
                )
            })
            .collect();
        let meta: HashMap<String, String> =
            [("format".to_string(), "autocaption-merge".to_string())].into();
        safetensors::serialize(views, Some(meta)).expect("serialising in memory cannot fail")
    }

    /// Writes the weights atomically.
    pub fn save_weights(&self, path: &Path) -> Result<(), ModelError> {
        autocaption_io::write_atomic(path, &self.weights_bytes())?;
        Ok(())
    }

    /// Replaces the weights with those in safetensors `bytes`; every tensor must be present
    /// with its exact shape, as f32. `path` names the source in errors.
    pub fn load_weights_bytes(&mut self, bytes: &[u8], path: &Path) -> Result<(), ModelError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let names: Vec<String> = self.named_params().into_iter().map(|(n, _)| n).collect();
        let mut loaded = Vec::with_capacity(names.len());
        for (name, (_, param)) in names.iter().zip(self.named_params()) {
            let err = |message: String| ModelError::Tensor {
                path: path.to_path_buf(),
                name: name.clone(),
                message,
            };
            let t = st.tensor(name).map_err(|_| err("missing".into()))?;
            if t.dtype() != Dtype::F32 {
                return Err(err(format!("dtype {:?}, expected F32", t.dtype())));
            }
            if t.shape() != param.shape.as_slice() {
                return Err(err(format!(
                    "shape {:?}, expected {:?}",
                    t.shape(),
                    param.shape
                )));
            }
            let v = autocaption_io::f32_from_le_bytes(t.data());
            if let Some((i, x)) = autocaption_io::first_non_finite(&v) {
                return Err(err(format!("value {i} is {x}; every value must be finite")));
            }
            loaded.push(v);
        }
        for (p, v) in self.params_mut().into_iter().zip(loaded) {
            p.value = v;
        }
        Ok(())
    }

    /// Reads weights written by [`MergeModel::save_weights`] (or the Keras fixture script).
    pub fn load_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        let bytes = autocaption_io::read(path)?;
        self.load_weights_bytes(&bytes, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MergeConfig;

    #[test]
    fn save_load_round_trip_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.safetensors");
        let a = MergeModel::new(MergeConfig::seed(50), 1);
        a.save_weights(&p).unwrap();
        let mut b = MergeModel::new(MergeConfig::seed(50), 2);
        b.load_weights(&p).unwrap();
        assert_eq!(a.weights_bytes(), b.weights_bytes());
        let mut c = MergeModel::new(MergeConfig::seed(51), 2);
        let e = c.load_weights(&p).unwrap_err().to_string();
        assert!(
            e.contains("embedding.embeddings") && e.contains("shape [50, 128], expected [51, 128]"),
            "{e}"
        );
        std::fs::write(&p, b"not safetensors").unwrap();
        assert!(c
            .load_weights(&p)
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors"));
    }
}
