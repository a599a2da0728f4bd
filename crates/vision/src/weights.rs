//! Reading pretrained ResNet-50 weights, with batch norm folded into the convolutions as
//! they load:
//! - torchvision / timm `state_dict`s saved as safetensors (`conv1.weight`,
//!   `bn1.running_mean`, `layer1.0.downsample.0.weight`, …) give the torchvision layout
//!   (batch-norm eps 1e-5);
//! - Keras HDF5 weight files (`save_weights`, the format of
//!   `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`: a group per layer such as
//!   `conv1_conv`, `conv2_block1_1_bn`, datasets `kernel:0`, `moving_mean:0`, …) give the
//!   Keras layout (eps 1.001e-5, convolutions with biases), read by a pure-Rust HDF5 decoder.
//!
//! [`load_weights_file`] tells the two apart by content, not by name.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::{Conv, Layout, ResNet, ResNetConfig};

/// Why a weights file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The file is not safetensors (or not HDF5, for the Keras loader).
    #[error("{path}: not a {format} file: {message}")]
    Format {
        /// The format expected.
        format: &'static str,
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
        let v = match t.dtype() {
            Dtype::F32 => autocaption_io::f32_from_le_bytes(t.data()),
            other => return Err(self.err(name, format!("dtype {other:?}, expected F32"))),
        };
        match autocaption_io::first_non_finite(&v) {
            Some((i, x)) => Err(self.err(
                name,
                format!("value {i} is {x}; every value must be finite"),
            )),
            None => Ok(v),
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
        format: "safetensors",
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let r = Reader { st, path };
    let stem =
        r.st.tensor("conv1.weight")
            .map_err(|_| r.err("conv1.weight", "missing: not a torchvision ResNet"))?;
    let width = stem.shape()[0];
    let blocks = count_blocks(
        |s, b| format!("layer{}.{b}.conv1.weight", s + 1),
        |name| r.has(name),
        |name| r.err(name, "missing: not a torchvision ResNet"),
    )?;
    let config = ResNetConfig {
        layout: Layout::Torchvision,
        width,
        blocks,
    };
    fill(
        config,
        ("conv1", "bn1"),
        |s, b, k| {
            let p = format!("layer{}.{b}", s + 1);
            match k {
                0 => (format!("{p}.downsample.0"), format!("{p}.downsample.1")),
                k => (format!("{p}.conv{k}"), format!("{p}.bn{k}")),
            }
        },
        |conv, c, bn| r.conv_bn(conv, c, bn),
    )
}

/// Blocks per stage: for each of the 4 stages, how many blocks `b = 0, 1, …` have the
/// entry `name(stage, b)` (`has`); a stage with none is the error `missing(name)`.
fn count_blocks(
    name: impl Fn(usize, usize) -> String,
    has: impl Fn(&str) -> bool,
    missing: impl Fn(&str) -> WeightError,
) -> Result<[usize; 4], WeightError> {
    let mut blocks = [0usize; 4];
    for (s, count) in blocks.iter_mut().enumerate() {
        while has(&name(s, *count)) {
            *count += 1;
        }
        if *count == 0 {
            return Err(missing(&name(s, 0)));
        }
    }
    Ok(blocks)
}

/// An empty network of `config` with every convolution filled by `load(conv, conv_name,
/// batch_norm_name)`, in [`ResNet::convs_mut`] order: the stem is named `stem`, and
/// `block(stage, block, k)` names a block's convolutions, k = 1..=3 for the bottleneck and
/// 0 for the shortcut.
fn fill(
    config: ResNetConfig,
    stem: (&str, &str),
    block: impl Fn(usize, usize, usize) -> (String, String),
    mut load: impl FnMut(&mut Conv, &str, &str) -> Result<(), WeightError>,
) -> Result<ResNet, WeightError> {
    let mut names = vec![(stem.0.to_string(), stem.1.to_string())];
    for (s, &count) in config.blocks.iter().enumerate() {
        for b in 0..count {
            names.extend([1, 2, 3].map(|k| block(s, b, k)));
            if b == 0 {
                names.push(block(s, b, 0));
            }
        }
    }
    let mut net = ResNet::empty(config);
    let convs = net.convs_mut();
    debug_assert_eq!(convs.len(), names.len());
    for (conv, (c, bn)) in convs.into_iter().zip(&names) {
        load(conv, c, bn)?;
    }
    Ok(net)
}

/// Reads a torchvision-layout ResNet from a safetensors file.
pub fn load_torchvision_file(path: &Path) -> Result<ResNet, WeightError> {
    let bytes = autocaption_io::read(path)?;
    load_torchvision(&bytes, path)
}

/// Keras' batch-norm epsilon in `applications.ResNet50`.
const KERAS_BN_EPS: f32 = 1.001e-5;

/// The first bytes of an HDF5 file.
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

struct KerasReader<'a> {
    file: hdf5_reader::Hdf5File,
    path: &'a Path,
}

impl KerasReader<'_> {
    fn err(&self, name: &str, message: impl Into<String>) -> WeightError {
        WeightError::Tensor {
            path: self.path.to_path_buf(),
            name: name.into(),
            message: message.into(),
        }
    }

    fn has_layer(&self, layer: &str) -> bool {
        self.file.group(layer).is_ok()
    }

    /// The dataset holding weight `what` (`kernel`, `moving_mean`, …) of `layer`: the one
    /// the layer's `weight_names` attribute lists, else `<layer>/<layer>/<what>:0`.
    fn dataset_path(&self, layer: &str, what: &str) -> String {
        let listed = self
            .file
            .group(layer)
            .and_then(|g| g.attribute("weight_names"))
            .and_then(|a| a.read_strings())
            .ok()
            .and_then(|names| {
                names.into_iter().find(|n| {
                    let last = n.rsplit('/').next().unwrap_or(n);
                    last.split(':').next() == Some(what)
                })
            });
        format!("{layer}/{}", listed.unwrap_or(format!("{layer}/{what}:0")))
    }

    fn read(&self, layer: &str, what: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let name = self.dataset_path(layer, what);
        let d = self
            .file
            .dataset(&name)
            .map_err(|_| self.err(&name, "missing"))?;
        let got: Vec<usize> = d.shape().iter().map(|&v| v as usize).collect();
        if got != shape {
            return Err(self.err(&name, format!("shape {got:?}, expected {shape:?}")));
        }
        match d.dtype() {
            hdf5_reader::Datatype::FloatingPoint { size: 4, .. } => {}
            other => return Err(self.err(&name, format!("type {other:?}, expected float32"))),
        }
        let mut v = vec![0.0f32; shape.iter().product()];
        d.read_into(&mut v)
            .map_err(|e| self.err(&name, format!("unreadable: {e}")))?;
        if let Some((i, x)) = autocaption_io::first_non_finite(&v) {
            return Err(self.err(
                &name,
                format!("value {i} is {x}; every value must be finite"),
            ));
        }
        Ok(v)
    }

    /// Fills `conv` from a Keras Conv2D (HWIO kernel, as ours, and a bias) and the
    /// BatchNormalization after it.
    fn conv_bn(&self, conv: &mut Conv, conv_layer: &str, bn: &str) -> Result<(), WeightError> {
        let (o, i, kh, kw) = (conv.cout, conv.cin, conv.kh, conv.kw);
        conv.weight = self.read(conv_layer, "kernel", &[kh, kw, i, o])?;
        conv.bias = self.read(conv_layer, "bias", &[o])?;
        let p = |n: &str| self.read(bn, n, &[o]);
        conv.fold_batch_norm(
            &p("gamma")?,
            &p("beta")?,
            &p("moving_mean")?,
            &p("moving_variance")?,
            KERAS_BN_EPS,
        );
        Ok(())
    }
}

/// Reads a Keras-layout ResNet from the bytes of a Keras HDF5 weights file (`path` names
/// it in errors). The width and the blocks per stage come from the file, so ResNet-50 and
/// narrower variants of its topology load alike; layers without weights are ignored.
pub fn load_keras(bytes: Vec<u8>, path: &Path) -> Result<ResNet, WeightError> {
    let file = hdf5_reader::Hdf5File::from_vec(bytes).map_err(|e| WeightError::Format {
        format: "HDF5",
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let r = KerasReader { file, path };
    if !r.has_layer("conv1_conv") {
        return Err(r.err(
            "conv1_conv",
            "missing: not the weights of a Keras ResNet (applications.ResNet50 names layers \
             conv1_conv, conv2_block1_1_conv, ...)",
        ));
    }
    let stem = r.dataset_path("conv1_conv", "kernel");
    let shape = r
        .file
        .dataset(&stem)
        .map_err(|_| r.err(&stem, "missing"))?
        .shape()
        .to_vec();
    if shape.len() != 4 || shape[..3] != [7, 7, 3] {
        return Err(r.err(&stem, format!("shape {shape:?}, expected [7, 7, 3, width]")));
    }
    let width = shape[3] as usize;
    let blocks = count_blocks(
        |s, b| format!("conv{}_block{}_1_conv", s + 2, b + 1),
        |name| r.has_layer(name),
        |name| r.err(name, "missing: not the weights of a Keras ResNet"),
    )?;
    let config = ResNetConfig {
        layout: Layout::Keras,
        width,
        blocks,
    };
    fill(
        config,
        ("conv1_conv", "conv1_bn"),
        |s, b, k| {
            let p = format!("conv{}_block{}", s + 2, b + 1);
            (format!("{p}_{k}_conv"), format!("{p}_{k}_bn"))
        },
        |conv, c, bn| r.conv_bn(conv, c, bn),
    )
}

/// Reads a Keras HDF5 weights file.
pub fn load_keras_file(path: &Path) -> Result<ResNet, WeightError> {
    let bytes = autocaption_io::read(path)?;
    load_keras(bytes, path)
}

/// Reads a ResNet weights file of either kind, told apart by content: HDF5 (Keras layout)
/// or safetensors (torchvision layout). The layout decides the preprocessing preset.
pub fn load_weights_file(path: &Path) -> Result<ResNet, WeightError> {
    load_weights(autocaption_io::read(path)?, path)
}

/// [`load_weights_file`] on the file's bytes, already read (`path` names it in errors).
pub fn load_weights(bytes: Vec<u8>, path: &Path) -> Result<ResNet, WeightError> {
    if bytes.starts_with(HDF5_SIGNATURE) {
        load_keras(bytes, path)
    } else {
        load_torchvision(&bytes, path).map_err(|e| match e {
            WeightError::Format { path, message, .. } => WeightError::Format {
                format: "weights",
                path,
                message: format!(
                    "neither Keras HDF5 nor safetensors ({message}); expected \
                     resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 or a torchvision / timm \
                     ResNet-50 state dict saved as safetensors"
                ),
            },
            other => other,
        })
    }
}
