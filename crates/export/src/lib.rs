//! Export to ONNX in standard ops, so that ONNX Runtime, other runtimes and our own
//! compiler take the models: the caption model in the seed's interface (`decoder.onnx`,
//! with the ONNX `LSTM` op), one incremental decoding step (`decoder_step.onnx`), and the
//! image encoder (`encoder.onnx`).

mod builder;
mod decoder;
mod encoder;

use std::path::{Path, PathBuf};

use autocaption_model::MergeModel;
use autocaption_onnx::{model_files, OnnxError};
use autocaption_vision::ResNet;

pub use builder::OPSET;
pub use decoder::{decoder, decoder_step, step_states};
pub use encoder::{concept_encoder, encoder};

/// Tensors above this many bytes go to the model's external data file.
pub const EXTERNAL_ABOVE: usize = 1 << 20;

/// Writes `decoder.onnx` and `decoder_step.onnx` for `model` when one is given, and
/// `encoder.onnx` when an encoder is given (with its input size), into `dir`; returns the
/// files written.
pub fn export(
    model: Option<&MergeModel>,
    encoder_net: Option<(&ResNet, usize)>,
    dir: &Path,
) -> Result<Vec<PathBuf>, OnnxError> {
    std::fs::create_dir_all(dir).map_err(|error| OnnxError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    // Every file is built first and all are written together (see write_files_atomic).
    let mut bytes = Vec::new();
    let mut files = Vec::new();
    let decoders = model.map(|model| {
        [
            ("decoder.onnx", decoder(model)),
            ("decoder_step.onnx", decoder_step(model)),
        ]
    });
    for (name, m) in decoders.into_iter().flatten() {
        let path = dir.join(name);
        bytes.extend(model_files(&path, &m, None));
        files.push(path);
    }
    if let Some((net, size)) = encoder_net {
        let path = dir.join("encoder.onnx");
        bytes.extend(model_files(
            &path,
            &encoder(net, size),
            Some(EXTERNAL_ABOVE),
        ));
        files.push(path);
    }
    autocaption_io::write_files_atomic(&bytes)?;
    Ok(files)
}
