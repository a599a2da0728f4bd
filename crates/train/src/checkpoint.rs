//! Checkpoints: weights, Adam's moments and the loop's position, in one safetensors file
//! written atomically, so a run killed at any moment resumes exactly.

use std::collections::HashMap;
use std::path::Path;

use autocaption_model::MergeModel;
use autocaption_nn::Adam;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::{History, TrainError};

/// Where a run stands; with the tensors, everything needed to continue it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches completed in the current epoch.
    pub next_batch: usize,
    /// Summed loss of the current epoch's completed batches.
    pub loss_sum: f64,
    /// Correct predictions in them.
    pub correct: usize,
    /// Positions scored in them.
    pub rows: usize,
    /// Metrics of the completed epochs.
    pub history: History,
    /// Best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// Epochs since the best validation loss.
    pub epochs_without_improvement: usize,
    /// Early stopping has ended the run.
    pub stopped_early: bool,
    /// Adam's step count.
    pub adam_step: u64,
    /// Identifies the run's settings and data; a checkpoint only resumes the same run.
    pub run: String,
}

impl Checkpoint {
    /// A fresh start for the run identified by `run`.
    pub fn start(run: String) -> Self {
        Self {
            epoch: 0,
            next_batch: 0,
            loss_sum: 0.0,
            correct: 0,
            rows: 0,
            history: Vec::new(),
            best_val_loss: None,
            epochs_without_improvement: 0,
            stopped_early: false,
            adam_step: 0,
            run,
        }
    }

    /// Writes the checkpoint with the model's weights and the optimiser's moments.
    pub fn save(&self, path: &Path, model: &MergeModel, adam: &Adam) -> Result<(), TrainError> {
        let named = model.named_params();
        let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(3 * named.len());
        let bytes = autocaption_io::f32_to_le_bytes;
        for (k, (name, p)) in named.iter().enumerate() {
            blobs.push((format!("weights/{name}"), p.shape.clone(), bytes(&p.value)));
            blobs.push((format!("adam_m/{name}"), p.shape.clone(), bytes(&adam.m[k])));
            blobs.push((format!("adam_v/{name}"), p.shape.clone(), bytes(&adam.v[k])));
        }
        let views: Vec<(String, TensorView<'_>)> = blobs
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches data"),
                )
            })
            .collect();
        let state = serde_json::to_string(self).expect("a checkpoint serialises");
        let meta: HashMap<String, String> = [("state".to_string(), state)].into();
        let data =
            safetensors::serialize(views, Some(meta)).expect("serialising in memory cannot fail");
        autocaption_io::write_atomic(path, &data)?;
        Ok(())
    }

    /// Reads a checkpoint into `model` and `adam`, which must have the run's shapes.
    pub fn load(path: &Path, model: &mut MergeModel, adam: &mut Adam) -> Result<Self, TrainError> {
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let data = autocaption_io::read(path)?;
        let (_, meta) =
            SafeTensors::read_metadata(&data).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        let state = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("state"))
            .ok_or_else(|| bad("no training state in it".into()))?;
        let ckpt: Checkpoint = serde_json::from_str(state)
            .map_err(|e| bad(format!("unreadable training state: {e}")))?;
        let st = SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
        let names: Vec<(String, Vec<usize>)> = model
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.shape.clone()))
            .collect();
        let read = |key: String, shape: &[usize]| -> Result<Vec<f32>, TrainError> {
            let t = st
                .tensor(&key)
                .map_err(|_| bad(format!("tensor {key:?} is missing")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(bad(format!(
                    "tensor {key:?} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            let v = autocaption_io::f32_from_le_bytes(t.data());
            match autocaption_io::first_non_finite(&v) {
                Some((i, x)) => Err(bad(format!(
                    "tensor {key:?}: value {i} is {x}; every value must be finite"
                ))),
                None => Ok(v),
            }
        };
        let mut values = Vec::with_capacity(names.len());
        for (k, (name, shape)) in names.iter().enumerate() {
            values.push(read(format!("weights/{name}"), shape)?);
            adam.m[k] = read(format!("adam_m/{name}"), shape)?;
            adam.v[k] = read(format!("adam_v/{name}"), shape)?;
        }
        for (p, v) in model.params_mut().into_iter().zip(values) {
            p.value = v;
        }
        adam.step = ckpt.adam_step;
        Ok(ckpt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the running loss is an f64 in the JSON state; it must read back to the
    /// same bits, or a resumed run logs a loss one ulp off an uninterrupted one.
    #[test]
    fn state_floats_read_back_exactly() {
        let mut x = 0.0f64;
        for i in 0..20_000u64 {
            x += (i as f64).sin().abs() * 3.7 + 1e-3;
            let mut c = Checkpoint::start("r".into());
            c.loss_sum = x;
            c.best_val_loss = Some(x / 7.0);
            let back: Checkpoint =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back.loss_sum.to_bits(), x.to_bits());
            assert_eq!(back.best_val_loss.unwrap().to_bits(), (x / 7.0).to_bits());
        }
    }
}
