//! Reading pretrained ResNet-50 weights. torchvision / timm `state_dict`s saved as safetensors
//! (`conv1.weight`, `bn1.running_mean`, `layer1.0.downsample.0.weight`, …) give the
//! torchvision layout; batch norm (eps 1e-5) is folded into the convolutions as they load.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::{Conv, Layout, ResNet, ResNetConfig};

/// Why a weights file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not safetensors.
    #[error("{path}: not a safetensors file: {message}")]
    Format {
        /// The weights file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A tensor is missing or has the wrong shape or type.
    #[error("{path}: tensor {name:?}: {message}")]
    Tensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What was wrong.
        message: String,
    },
}

/// torchvision's batch-norm epsilon.
const TORCH_BN_EPS: f32 = 1e-5;

struct Reader<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, name: &str, message: impl Into<String>) -> WeightError {
        WeightError::Tensor {
            path: self.path.to_path_buf(),
            name: name.into(),
            message: message.into(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| self.err(name, "missing"))?;
        if t.shape() != shape {
            return Err(self.err(name, format!("shape {:?}, expected {shape:?}", t.shape())));
        }
        match t.dtype() {
            Dtype::F32 => Ok(autocaption_io::f32_from_le_bytes(t.data())),
            other => Err(self.err(name, format!("dtype {other:?}, expected F32"))),
        }
    }

    /// Fills `conv` from an OIHW convolution weight and the batch norm after it.
    fn conv_bn(&self, conv: &mut Conv, conv_name: &str, bn: &str) -> Result<(), WeightError> {
        let (o, i, kh, kw) = (conv.cout, conv.cin, conv.kh, conv.kw);
        let w = self.read(&format!("{conv_name}.weight"), &[o, i, kh, kw])?;
        for oc in 0..o {
            for ic in 0..i {
                for y in 0..kh {
                    for x in 0..kw {
                        conv.weight[((y * kw + x) * i + ic) * o + oc] =
                            w[((oc * i + ic) * kh + y) * kw + x];
                    }
                }
            }
        }
        conv.bias.iter_mut().for_each(|b| *b = 0.0);
        let p = |n: &str| self.read(&format!("{bn}.{n}"), &[o]);
        conv.fold_batch_norm(
            &p("weight")?,
            &p("bias")?,
            &p("running_mean")?,
            &p("running_var")?,
            TORCH_BN_EPS,
        );
        Ok(())
    }
}

/// Reads a torchvision-layout ResNet from safetensors `bytes` (`path` names it in errors).
/// The width and the blocks per stage come from the file, so ResNet-50 and narrower
/// variants of its topology load alike; `fc.*` and `num_batches_tracked` are ignored.
pub fn load_torchvision(bytes: &[u8], path: &Path) -> Result<ResNet, WeightError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| WeightError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let r = Reader { st, path };
    let stem =
        r.st.tensor("conv1.weight")
            .map_err(|_| r.err("conv1.weight", "missing: not a torchvision ResNet"))?;
    let width = stem.shape()[0];
    let mut blocks = [0usize; 4];
    for (s, count) in blocks.iter_mut().enumerate() {
        while r.has(&format!("layer{}.{}.conv1.weight", s + 1, *count)) {
            *count += 1;
        }
        if *count == 0 {
            return Err(r.err(
                &format!("layer{}.0.conv1.weight", s + 1),
                "missing: not a torchvision ResNet",
            ));
        }
    }
    let mut net = ResNet::empty(ResNetConfig {
        layout: Layout::Torchvision,
        width,
        blocks,
    });
    let mut names = vec![("conv1".to_string(), "bn1".to_string())];
    for (s, &count) in blocks.iter().enumerate() {
        for b in 0..count {
            let p = format!("layer{}.{b}", s + 1);
            for k in 1..=3 {
                names.push((format!("{p}.conv{k}"), format!("{p}.bn{k}")));
            }
            if b == 0 {
                names.push((format!("{p}.downsample.0"), format!("{p}.downsample.1")));
            }
        }
    }
    let convs = net.convs_mut();
    debug_assert_eq!(convs.len(), names.len());
    for (conv, (c, bn)) in convs.into_iter().zip(&names) {
        r.conv_bn(conv, c, bn)?;
    }
    Ok(net)
}

/// Reads a torchvision-layout ResNet from a safetensors file.
pub fn load_torchvision_file(path: &Path) -> Result<ResNet, WeightError> {
    let bytes = autocaption_io::read(path)?;
    load_torchvision(&bytes, path)
}
