//! The concept network's weights as safetensors, its shape in the metadata, so that a file
//! alone makes the network again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::{ConceptConfig, ConceptNet};

/// Why concept-network weights could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConceptWeightsError {
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not the concept network's weights.
    #[error("{path}: not concept-network weights: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl ConceptNet {
    /// Parameter names and values, in a fixed order.
    fn named(&self) -> Vec<(String, &autocaption_nn::Param)> {
        let mut out = Vec::new();
        for (i, (w, b)) in self.convs.iter().enumerate() {
            out.push((format!("conv{i}.kernel"), w));
            out.push((format!("conv{i}.bias"), b));
        }
        out.push(("head.kernel".into(), &self.head.kernel));
        out.push(("head.bias".into(), &self.head.bias));
        out
    }

    /// The weights as safetensors bytes, the configuration in the metadata (`"config"`);
    /// the same network gives the same bytes.
    pub fn weights_bytes(&self) -> Vec<u8> {
        let named = self.named();
        let bytes: Vec<Vec<u8>> = named
            .iter()
            .map(|(_, p)| autocaption_io::f32_to_le_bytes(&p.value))
            .collect();
        let views: Vec<(String, TensorView<'_>)> = named
            .iter()
            .zip(&bytes)
            .map(|((n, p), b)| {
                let view = TensorView::new(Dtype::F32, p.shape.clone(), b).expect("shape matches");
                (n.clone(), view)
            })
            .collect();
        // One metadata key: safetensors writes its metadata map in HashMap order.
        let meta: HashMap<String, String> = [(
            "config".to_string(),
            serde_json::to_string(&self.config).expect("the config serialises"),
        )]
        .into();
        safetensors::serialize(views, Some(meta)).expect("serialising in memory cannot fail")
    }

    /// Writes the weights atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConceptWeightsError> {
        autocaption_io::write_atomic(path, &self.weights_bytes())?;
        Ok(())
    }

    /// The network in safetensors `bytes` written by [`ConceptNet::save`]; `path` names the
    /// source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ConceptWeightsError> {
        let bad = |message: String| ConceptWeightsError::Format {
            path: path.to_path_buf(),
            message,
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let config: ConceptConfig = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .ok_or_else(|| bad("no \"config\" in the metadata".into()))
            .and_then(|c| serde_json::from_str(c).map_err(|e| bad(format!("\"config\": {e}"))))?;
        if config.size < 16 || !config.size.is_multiple_of(16) || config.words == 0 {
            return Err(bad(format!(
                "input size {} (a multiple of 16 is needed) or {} words is not a network",
                config.size, config.words
            )));
        }
        if config.channels.contains(&0) || config.channels.iter().any(|&c| c > 4096) {
            return Err(bad(format!("channels {:?} out of range", config.channels)));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut net = ConceptNet::new(config, 0);
        let names: Vec<(String, Vec<usize>)> = net
            .named()
            .into_iter()
            .map(|(n, p)| (n, p.shape.clone()))
            .collect();
        for ((name, shape), p) in names.into_iter().zip(net.params_mut()) {
            let t = st
                .tensor(&name)
                .map_err(|_| bad(format!("tensor {name} missing")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            p.value = autocaption_io::f32_from_le_bytes(t.data());
            if let Some((i, x)) = autocaption_io::first_non_finite(&p.value) {
                return Err(bad(format!(
                    "tensor {name}: value {i} is {x}; every value must be finite"
                )));
            }
        }
        Ok(net)
    }

    /// Reads weights written by [`ConceptNet::save`].
    pub fn load(path: &Path) -> Result<Self, ConceptWeightsError> {
        let bytes = autocaption_io::read(path)?;
        Self::from_bytes(&bytes, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_gives_the_same_network() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.safetensors");
        let net = ConceptNet::new(
            ConceptConfig {
                size: 16,
                ..ConceptConfig::small(9)
            },
            3,
        );
        net.save(&p).unwrap();
        let back = ConceptNet::load(&p).unwrap();
        assert_eq!(back.config, net.config);
        assert_eq!(back.weights_bytes(), net.weights_bytes());
        let x: Vec<f32> = (0..2 * 16 * 16 * 3).map(|i| (i % 7) as f32 * 0.1).collect();
        assert_eq!(back.features(&x, 2), net.features(&x, 2));
        std::fs::write(&p, b"nonsense").unwrap();
        let e = ConceptNet::load(&p).unwrap_err().to_string();
        assert!(e.contains("not concept-network weights"), "{e}");
    }
}
