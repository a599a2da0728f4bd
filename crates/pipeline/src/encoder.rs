//! One encoder type for every encoder (DESIGN.md section 8): ResNet-50 in both layouts,
//! ResNet-50 with seeded random weights, and the concept CNN; images in, feature rows out,
//! with the identity that a model records.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use autocaption_concepts::{pixels, ConceptNet};
use autocaption_features::{sha256_id, EncoderKind, EncoderSpec};
use autocaption_io::Progress;
use autocaption_vision::{
    batch, load_rgb, Calibration, Calibrator, Chain, Conv, Layout, Maps, Padding, Pool, Preset,
    QuantizedChain, QuantizedResNet, RangeMethod, ResNet, ResNetConfig,
};
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model_dir::{files, ModelDir};
use crate::{Error, Result};

/// How int8 calibration chooses activation ranges unless told otherwise: each map's largest
/// value. Measured (README, "int8 encoder"): as close to f32 as the 99.99th percentile on
/// ResNet-50's features, and closer in caption quality with the concept CNN, whose rare
/// large activations are its word detections (clipping them cost BLEU-4).
pub const DEFAULT_RANGES: RangeMethod = RangeMethod::MinMax;

/// The percentile `--calibration-method percentile` takes.
pub const PERCENTILE_RANGES: RangeMethod = RangeMethod::Percentile { percent: 99.99 };

/// The network inside an [`Encoder`].
#[derive(Debug, Clone)]
pub enum Network {
    /// ResNet-50 (either layout; random or pretrained weights).
    ResNet(ResNet),
    /// The concept CNN.
    Concept(ConceptNet),
}

/// An encoder's network in int8.
#[derive(Debug, Clone)]
enum Int8Network {
    ResNet(Box<QuantizedResNet>),
    Concept(QuantizedChain),
}

/// The concept CNN as a chain of convolutions (the same arithmetic as its own forward).
fn concept_chain(net: &ConceptNet) -> Chain {
    let channels = net.config.channels;
    Chain {
        layers: net
            .convs
            .iter()
            .enumerate()
            .map(|(i, (w, b))| {
                let cin = if i == 0 { 3 } else { channels[i - 1] };
                let conv = Conv::new(
                    (3, 3),
                    (cin, channels[i]),
                    1,
                    Padding::same(1),
                    w.value.clone(),
                    b.value.clone(),
                    true,
                );
                (
                    conv,
                    if i + 1 < net.convs.len() {
                        Pool::Max2
                    } else {
                        Pool::Avg2
                    },
                )
            })
            .collect(),
    }
}

/// A batch of the concept CNN's inputs.
fn concept_batch(net: &ConceptNet, inputs: &[Vec<f32>]) -> Maps {
    let size = net.config.size;
    Maps {
        n: inputs.len(),
        h: size,
        w: size,
        c: 3,
        data: inputs.concat(),
    }
}

/// Where an encoder's weights come from, as a user names them (`--weights`).
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderSource {
    /// A weights file: Keras HDF5 or torchvision safetensors (ResNet-50), or the concept
    /// CNN's safetensors; told apart by content.
    File(PathBuf),
    /// ResNet-50 (Keras layout) with random weights from this seed.
    Random(u64),
}

impl EncoderSource {
    /// `random` (with `seed`) or a file path.
    pub fn parse(weights: &str, seed: u64) -> Self {
        if weights == "random" {
            Self::Random(seed)
        } else {
            Self::File(PathBuf::from(weights))
        }
    }
}

/// An image encoder and what identifies it. `Send + Sync`: one encoder serves many threads.
#[derive(Debug, Clone)]
pub struct Encoder {
    net: Network,
    spec: EncoderSpec,
    /// The network in int8, when the spec records a calibration.
    int8: Option<Int8Network>,
}

/// What [`Encoder::encode_files`] hands over after each batch.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    /// Indices (into the paths given) of the images encoded, in order.
    pub done: Vec<usize>,
    /// Their features, `[done.len(), dim]`.
    pub features: Vec<f32>,
    /// Indices of the images that could not be read, with why.
    pub failed: Vec<(usize, String)>,
}

impl Encoder {
    /// ResNet-50, Keras layout, random weights from `seed`.
    pub fn random_resnet(seed: u64) -> Self {
        let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), seed);
        let spec = EncoderSpec {
            kind: EncoderKind::Resnet50Random,
            weights: None,
            sha256: None,
            seed: Some(seed),
            preprocessing: Preset::Keras.describe().into(),
            feature_dim: net.config.features(),
            int8: None,
        };
        Self {
            net: Network::ResNet(net),
            spec,
            int8: None,
        }
    }

    /// The concept CNN, its weights saved at `weights` (whose bytes are `bytes`).
    pub fn concept(net: ConceptNet, weights: &Path, bytes: &[u8]) -> Self {
        let spec = EncoderSpec {
            kind: EncoderKind::ConceptCnn,
            weights: Some(shown(weights)),
            sha256: Some(sha256_id(bytes)),
            seed: None,
            preprocessing: concept_preprocessing(net.config.size),
            feature_dim: net.config.feature_dim(),
            int8: None,
        };
        Self {
            net: Network::Concept(net),
            spec,
            int8: None,
        }
    }

    /// The encoder a source names.
    pub fn load(source: &EncoderSource) -> Result<Self> {
        match source {
            EncoderSource::Random(seed) => Ok(Self::random_resnet(*seed)),
            EncoderSource::File(path) => Self::from_file(path),
        }
    }

    /// An encoder from a weights file, told apart by content: the concept CNN's safetensors,
    /// Keras HDF5 or torchvision safetensors (ResNet-50).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = autocaption_io::read(path)?;
        Self::from_bytes(bytes, path)
    }

    fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        if is_concept_weights(&bytes) {
            let net = ConceptNet::from_bytes(&bytes, path)?;
            return Ok(Self::concept(net, path, &bytes));
        }
        let sha256 = Some(sha256_id(&bytes));
        let net = autocaption_vision::load_weights(bytes, path)?;
        let layout = net.config.layout;
        let spec = EncoderSpec {
            kind: match layout {
                Layout::Keras => EncoderKind::Resnet50Keras,
                Layout::Torchvision => EncoderKind::Resnet50Torchvision,
            },
            weights: Some(shown(path)),
            sha256,
            seed: None,
            preprocessing: Preset::for_layout(layout).describe().into(),
            feature_dim: net.config.features(),
            int8: None,
        };
        Ok(Self {
            net: Network::ResNet(net),
            spec,
            int8: None,
        })
    }

    /// The encoder of a model: `given` (checked against the model's record), or else the one
    /// the model records, found beside the model (`encoder.safetensors`, or a file of the
    /// recorded name) or at its recorded path, and checked by hash.
    pub fn for_model(model: &ModelDir, given: Option<&EncoderSource>) -> Result<Self> {
        let recorded = model.config.encoder.as_ref();
        let encoder = match (given, recorded) {
            (Some(source), _) => {
                let mut e = Self::load(source)?;
                if let Some(c) = recorded.and_then(|r| r.int8.as_ref()) {
                    e = e.quantized(c.clone())?;
                }
                if let Some(r) = recorded {
                    if r.kind != EncoderKind::External && !r.same_encoder(&e.spec) {
                        return Err(Error::EncoderMismatch {
                            model_dir: model.path.clone(),
                            expected: r.describe(),
                            given: e.spec.describe(),
                        });
                    }
                }
                e
            }
            (None, None) => {
                return Err(Error::Invalid(format!(
                    "{}: the model does not record its encoder (trained before autocaption \
                     recorded it): pass --weights with the encoder its features were made with",
                    model.path.display()
                )))
            }
            (None, Some(r)) => Self::find(model, r)?,
        };
        if encoder.dim() != model.feature_dim() {
            return Err(Error::Invalid(format!(
                "the encoder gives {}-d features, but the model reads {}-d",
                encoder.dim(),
                model.feature_dim()
            )));
        }
        Ok(encoder)
    }

    fn find(model: &ModelDir, r: &EncoderSpec) -> Result<Self> {
        let not_found = |why: String| Error::EncoderNotFound {
            model_dir: model.path.clone(),
            expected: r.describe(),
            why,
        };
        match r.kind {
            EncoderKind::External => {
                return Err(not_found(
                    "the model was trained on features made elsewhere; caption a features \
                     file with --features, or pass --weights"
                        .into(),
                ))
            }
            EncoderKind::Resnet50Random => {
                let seed = r.seed.ok_or_else(|| not_found("no seed recorded".into()))?;
                return Self::random_resnet(seed).with_precision_of(r);
            }
            _ => {}
        }
        let mut candidates = vec![model.path.join(files::ENCODER)];
        if let Some(w) = &r.weights {
            let recorded = PathBuf::from(w);
            if let Some(name) = recorded.file_name() {
                candidates.push(model.path.join(name));
            }
            candidates.push(recorded);
        }
        candidates.dedup();
        let mut looked = Vec::new();
        for c in candidates {
            if !c.is_file() {
                looked.push(format!("{} (absent)", c.display()));
                continue;
            }
            let bytes = autocaption_io::read(&c)?;
            let id = sha256_id(&bytes);
            if Some(&id) == r.sha256.as_ref() {
                let mut e = Self::from_bytes(bytes, &c)?.with_precision_of(r)?;
                // The model's record stays the identity, wherever the file was found.
                e.spec.weights.clone_from(&r.weights);
                return Ok(e);
            }
            looked.push(format!("{} ({id}, other weights)", c.display()));
        }
        Err(not_found(format!(
            "looked at {}; pass --weights FILE",
            looked.join(", ")
        )))
    }

    /// This encoder run in int8 with the activation ranges of `calibration` (measured on
    /// this network with [`Encoder::calibrate`]); recorded in its identity.
    pub fn quantized(&self, calibration: Calibration) -> Result<Self> {
        let q = match &self.net {
            Network::ResNet(net) => {
                QuantizedResNet::new(net, &calibration).map(|q| Int8Network::ResNet(Box::new(q)))
            }
            Network::Concept(net) => {
                QuantizedChain::new(&concept_chain(net), &calibration).map(Int8Network::Concept)
            }
        }
        .map_err(|e| Error::Invalid(format!("the int8 calibration does not fit: {e}")))?;
        let mut spec = self.spec.clone();
        spec.int8 = Some(calibration);
        Ok(Self {
            net: self.net.clone(),
            spec,
            int8: Some(q),
        })
    }

    /// Quantized as the record `r` says, if it does.
    fn with_precision_of(self, r: &EncoderSpec) -> Result<Self> {
        match &r.int8 {
            Some(c) => self.quantized(c.clone()),
            None => Ok(self),
        }
    }

    /// Activation ranges of this encoder (f32) on the images at `paths`, read and
    /// preprocessed as for features, in batches of 8; `progress` counts images. An image
    /// that cannot be read is an error naming it.
    pub fn calibrate(
        &self,
        paths: &[PathBuf],
        method: RangeMethod,
        progress: &dyn Progress,
    ) -> Result<Calibration> {
        if paths.is_empty() {
            return Err(Error::Invalid("no calibration images".into()));
        }
        let chain = match &self.net {
            Network::Concept(net) => Some(concept_chain(net)),
            Network::ResNet(_) => None,
        };
        let mut calibrator = Calibrator::new(method);
        progress.start("calibrate", paths.len() as u64);
        for chunk in paths.chunks(8) {
            let inputs = chunk
                .par_iter()
                .map(|p| {
                    load_rgb(p)
                        .map(|img| self.preprocess(&img))
                        .map_err(|e| Error::Invalid(format!("calibration image: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            rayon::scope(|_| match (&self.net, &chain) {
                (Network::ResNet(net), _) => {
                    let size = Preset::for_layout(net.config.layout).size();
                    calibrator.observe(net, &batch(&inputs, size));
                }
                (Network::Concept(net), Some(chain)) => {
                    calibrator.observe_chain(chain, &concept_batch(net, &inputs));
                }
                (Network::Concept(_), None) => unreachable!("the chain was made above"),
            });
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        Ok(calibrator
            .finish()
            .expect("at least one image was observed"))
    }

    /// `int8` or `f32`.
    pub fn precision(&self) -> &'static str {
        if self.int8.is_some() {
            "int8"
        } else {
            "f32"
        }
    }

    /// What identifies the encoder (recorded in feature files and models).
    pub fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        self.spec.feature_dim
    }

    /// Images a forward pass takes at once (bounded memory, full cores).
    pub fn batch_size(&self) -> usize {
        match self.net {
            Network::ResNet(_) => 8,
            Network::Concept(_) => 64,
        }
    }

    /// One image as the network's input.
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        match &self.net {
            Network::ResNet(net) => Preset::for_layout(net.config.layout).apply(img),
            Network::Concept(net) => pixels(img, net.config.size as u32),
        }
    }

    /// Features of preprocessed images: `[inputs.len(), dim]`.
    pub fn forward(&self, inputs: &[Vec<f32>]) -> Vec<f32> {
        if inputs.is_empty() {
            return Vec::new();
        }
        // On a worker of the pool: the products' parallel parts then fork from a worker.
        rayon::scope(|_| match (&self.net, &self.int8) {
            (Network::ResNet(net), int8) => {
                let size = Preset::for_layout(net.config.layout).size();
                match int8 {
                    Some(Int8Network::ResNet(q)) => q.forward(&batch(inputs, size)),
                    _ => net.forward(&batch(inputs, size)),
                }
            }
            (Network::Concept(net), Some(Int8Network::Concept(q))) => {
                q.forward(&concept_batch(net, inputs))
            }
            (Network::Concept(net), _) => net.features(&inputs.concat(), inputs.len()),
        })
    }

    /// Features of decoded images, `[images.len(), dim]`, in batches; `progress` counts
    /// images.
    pub fn encode(&self, images: &[RgbImage], progress: &dyn Progress) -> Vec<f32> {
        progress.start("encode", images.len() as u64);
        let mut out = Vec::with_capacity(images.len() * self.dim());
        for chunk in images.chunks(self.batch_size()) {
            let inputs: Vec<Vec<f32>> = chunk.par_iter().map(|i| self.preprocess(i)).collect();
            out.extend(self.forward(&inputs));
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        out
    }

    /// Encodes image files in batches of `batch_size`: the files are decoded in parallel on
    /// a second thread while the network runs, and `sink` gets each batch (features of the
    /// images read, and the others with why). An error from `sink` stops the work.
    /// `progress` counts images, read or not.
    ///
    /// With `fixed_batches`, a short batch (the last one) is filled up to `batch_size` with
    /// copies of its last image, whose features are dropped: every forward pass then has the
    /// same shape, and the matrix products round an image's features the same whatever
    /// images share its batch. So the features of a photo do not depend on which other photos
    /// a run (or a shard of it) holds, and sharded runs merge to the bytes of one run.
    pub fn encode_files(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        fixed_batches: bool,
        progress: &dyn Progress,
        sink: &mut dyn FnMut(EncodedBatch) -> Result<()>,
    ) -> Result<()> {
        let batch_size = batch_size.max(1);
        progress.start("features", paths.len() as u64);
        type Decoded = Vec<(usize, Result<Vec<f32>, String>)>;
        let (tx, rx) = mpsc::sync_channel::<Decoded>(2);
        // Decoding runs in a pool of its own (half the cores): in the network's pool, a
        // worker busy with a JPEG would hold up every parallel product of the forward pass.
        let decoders = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(decoders)
            .thread_name(|i| format!("autocaption-decode-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start the decoding threads: {e}")))?;
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                let indexed: Vec<(usize, &PathBuf)> = paths.iter().enumerate().collect();
                for chunk in indexed.chunks(batch_size) {
                    let decoded: Decoded = pool.install(|| {
                        chunk
                            .par_iter()
                            .map(|&(i, p)| {
                                let r = load_rgb(p)
                                    .map(|img| self.preprocess(&img))
                                    .map_err(|e| e.to_string());
                                (i, r)
                            })
                            .collect()
                    });
                    if tx.send(decoded).is_err() {
                        return;
                    }
                }
            });
            for decoded in rx {
                let count = decoded.len();
                let mut b = EncodedBatch::default();
                let mut inputs = Vec::new();
                for (i, r) in decoded {
                    match r {
                        Ok(x) => {
                            b.done.push(i);
                            inputs.push(x);
                        }
                        Err(e) => b.failed.push((i, e)),
                    }
                }
                let real = inputs.len();
                if fixed_batches && real > 0 && real < batch_size {
                    let last = inputs[real - 1].clone();
                    inputs.resize(batch_size, last);
                }
                b.features = self.forward(&inputs);
                b.features.truncate(real * self.dim());
                progress.advance(count as u64);
                // Returning drops the receiver, which stops the decoding thread.
                sink(b)?;
            }
            Ok(())
        });
        progress.finish();
        result
    }
}

/// Where an int8 encoder's activation ranges come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationSource {
    /// Measured on these images.
    Images(Vec<PathBuf>),
    /// Read from a calibration file written earlier ([`save_calibration`]).
    File(PathBuf),
}

/// Images of a folder (sorted by name) to calibrate on when none are named: `count` of them,
/// spread evenly.
pub fn calibration_sample(dir: &Path, count: usize) -> Result<Vec<PathBuf>> {
    let names = crate::list_images(dir)?;
    if names.is_empty() {
        return Err(Error::file(dir, "no images to calibrate on in this folder"));
    }
    let count = count.clamp(1, names.len());
    Ok((0..count)
        .map(|i| dir.join(&names[i * names.len() / count]))
        .collect())
}

/// A calibration file: the encoder it was measured on, and the ranges.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalibrationFile {
    format: String,
    /// [`EncoderSpec::identity`] of the f32 encoder.
    weights: String,
    calibration: Calibration,
}

const CALIBRATION_FORMAT: &str = "autocaption int8 calibration 1";

/// The int8 encoder of `encoder` with ranges from `source`, and the ranges; a calibration
/// file measured on other weights is an error naming both.
pub fn int8_encoder(
    encoder: &Encoder,
    source: &CalibrationSource,
    method: RangeMethod,
    progress: &dyn Progress,
) -> Result<Encoder> {
    let calibration = match source {
        CalibrationSource::Images(paths) => encoder.calibrate(paths, method, progress)?,
        CalibrationSource::File(path) => {
            let bytes = autocaption_io::read(path)?;
            let file: CalibrationFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::file(path, format!("not a calibration file: {e}")))?;
            if file.format != CALIBRATION_FORMAT {
                return Err(Error::file(
                    path,
                    format!("format {:?}, expected {CALIBRATION_FORMAT:?}", file.format),
                ));
            }
            let ours = encoder.spec().identity();
            if file.weights != ours {
                return Err(Error::file(
                    path,
                    format!(
                        "measured on the encoder {}, but these weights are {ours}",
                        file.weights
                    ),
                ));
            }
            file.calibration
        }
    };
    encoder.quantized(calibration)
}

/// Writes the calibration of an int8 encoder atomically, for `--calibration` to read.
pub fn save_calibration(path: &Path, encoder: &Encoder) -> Result<()> {
    let Some(calibration) = encoder.spec().int8.clone() else {
        return Err(Error::Invalid("the encoder is not int8".into()));
    };
    let mut f32_spec = encoder.spec().clone();
    f32_spec.int8 = None;
    let file = CalibrationFile {
        format: CALIBRATION_FORMAT.into(),
        weights: f32_spec.identity(),
        calibration,
    };
    let json = serde_json::to_string_pretty(&file).expect("a calibration serialises") + "\n";
    autocaption_io::write_atomic(path, json.as_bytes())?;
    Ok(())
}

fn concept_preprocessing(size: usize) -> String {
    format!("concept ({size}×{size} bilinear, RGB scaled to [-0.5, 0.5])")
}

/// The path as recorded: absolute where it can be made so.
fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// True for safetensors whose metadata holds a concept-network configuration.
fn is_concept_weights(bytes: &[u8]) -> bool {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref().map(|m| m.contains_key("config")))
        .unwrap_or(false)
        && safetensors::SafeTensors::deserialize(bytes)
            .map(|st| st.tensor("conv0.kernel").is_ok())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concept_chain_is_the_concept_network() {
        let net = ConceptNet::new(autocaption_concepts::ConceptConfig::small(7), 3);
        let mut rng = autocaption_tensor::Rng::new(4);
        let inputs: Vec<Vec<f32>> = (0..2)
            .map(|_| (0..64 * 64 * 3).map(|_| rng.uniform(-0.5, 0.5)).collect())
            .collect();
        let want = net.features(&inputs.concat(), 2);
        let got = concept_chain(&net).forward(&concept_batch(&net, &inputs));
        assert_eq!(want.len(), got.len());
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-5 * scale, "{a} against {b}");
        }
    }

    #[test]
    fn encoders_and_captioners_can_be_shared() {
        fn shared<T: Send + Sync>() {}
        shared::<Encoder>();
        shared::<crate::Captioner>();
    }
}
