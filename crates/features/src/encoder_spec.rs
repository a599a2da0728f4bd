//! What made a set of features: recorded in the feature file and in every model trained on
//! it, so that a model can be fed features from its own encoder only.

use autocaption_vision::Calibration;
use serde::{Deserialize, Serialize};

/// The kinds of image encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    /// ResNet-50 in Keras' layout (stride on the first 1×1), from a Keras HDF5 file.
    Resnet50Keras,
    /// ResNet-50 in torchvision's layout (stride on the 3×3), from a safetensors state dict.
    Resnet50Torchvision,
    /// ResNet-50 (Keras layout) with seeded random weights.
    Resnet50Random,
    /// The concept CNN trained from a dataset's captions (`autocaption concepts`).
    ConceptCnn,
    /// Features made elsewhere: no encoder is known, so only feature files can be captioned.
    External,
}

impl EncoderKind {
    /// For people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Resnet50Keras => "ResNet-50 (Keras layout)",
            Self::Resnet50Torchvision => "ResNet-50 (torchvision layout)",
            Self::Resnet50Random => "ResNet-50 with seeded random weights",
            Self::ConceptCnn => "concept CNN",
            Self::External => "external features",
        }
    }
}

/// The identity of an encoder: enough to find it again and to tell it from any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// What it is.
    pub kind: EncoderKind,
    /// The weights file, as an absolute path when it was recorded (absent for random
    /// weights and external features). A feature file records weights beside it by file
    /// name alone; [`crate::FeatureStore::load`] makes that absolute again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// `sha256:<hex>` of the weights file's bytes: what identifies the weights wherever the
    /// file has moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The seed of random weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The preprocessing preset, as its description (`keras caffe …`, `torchvision …`).
    pub preprocessing: String,
    /// Width of the features.
    pub feature_dim: usize,
    /// For an int8 encoder, the activation ranges it was quantized with (absent: f32).
    /// Part of the identity: int8 features and f32 ones are never mixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Calibration>,
}

impl EncoderSpec {
    /// Features of width `dim` from an unknown encoder.
    pub fn external(dim: usize) -> Self {
        Self {
            kind: EncoderKind::External,
            weights: None,
            sha256: None,
            seed: None,
            preprocessing: "unknown".into(),
            feature_dim: dim,
            int8: None,
        }
    }

    /// What tells two encoders of the same kind apart: the weights' hash, or the seed, and
    /// for int8 the calibration's hash.
    pub fn identity(&self) -> String {
        let weights = self.weights_identity();
        match &self.int8 {
            Some(c) => format!("{weights}, int8 with calibration {}", calibration_id(c)),
            None => weights,
        }
    }

    /// The weights' hash, or the seed: [`EncoderSpec::identity`] whatever the precision.
    pub fn weights_identity(&self) -> String {
        match (&self.sha256, self.seed) {
            (Some(h), _) => h.clone(),
            (None, Some(s)) => format!("seed {s}"),
            (None, None) => "unknown weights".into(),
        }
    }

    /// True when `other` runs the same network and weights, at whatever precision: a model
    /// trained on one's features reads the other's (int8 features approximate f32 ones).
    pub fn same_weights(&self, other: &EncoderSpec) -> bool {
        self.kind == other.kind
            && self.feature_dim == other.feature_dim
            && self.weights_identity() == other.weights_identity()
    }

    /// True when features from `other` are features from this encoder.
    pub fn same_encoder(&self, other: &EncoderSpec) -> bool {
        self.kind == other.kind
            && self.feature_dim == other.feature_dim
            && self.identity() == other.identity()
    }

    /// One line for people: kind, weights and identity.
    pub fn describe(&self) -> String {
        let mut s = self.kind.describe().to_string();
        if let Some(w) = &self.weights {
            s.push_str(&format!(", {w}"));
        }
        s.push_str(&format!(" ({}, {}-d)", self.identity(), self.feature_dim));
        s
    }
}

/// `sha256:<first 16 hex digits>` of a calibration's JSON: what tells calibrations apart.
pub fn calibration_id(c: &Calibration) -> String {
    let json = serde_json::to_vec(c).expect("a calibration serialises");
    sha256_id(&json)[..7 + 16].to_string()
}

/// `sha256:<hex>` of `bytes`, the form [`EncoderSpec::sha256`] records.
pub fn sha256_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{:x}", Sha256::digest(bytes))
}
