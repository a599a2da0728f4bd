//! The image encoder (DESIGN.md section 4): ResNet-50 to pooled 2048-d features, in both
//! weight layouts — Keras' (stride on the first 1×1 of a stage) and torchvision's v1.5
//! (stride on the 3×3) — with batch norm folded into the convolutions. Tensors are NHWC;
//! convolutions are products with the tensor crate's panel kernel on weights packed once,
//! reading patch rows where they lie in the input (implicit im2col), or Winograd F(2×2,3×3).

mod buffers;
mod conv;
mod derived;
mod int8;
mod load;
mod pool;
mod preprocess;
mod resnet;
mod weights;
mod winograd;

pub use conv::{Conv, Padding, Residual};
pub use int8::{
    Calibration, CalibrationMismatch, Calibrator, Chain, Pool, QuantizedChain, QuantizedResNet,
    RangeMethod,
};
pub use load::{decode_rgb, load_rgb, ImageError, MAX_PIXELS};
pub use pool::{global_average_pool, max_pool};
pub use preprocess::{batch, keras_preprocess, torchvision_preprocess, Preset};
pub use resnet::{Layout, ResNet, ResNetConfig};
pub use weights::{
    load_keras, load_keras_file, load_torchvision, load_torchvision_file, load_weights,
    load_weights_file, WeightError,
};
pub use winograd::set_winograd;

/// A batch of images or feature maps, NHWC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Maps {
    /// Images in the batch.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// `[n, h, w, c]`, row-major.
    pub data: Vec<f32>,
}

impl Maps {
    /// Zeros of the given shape.
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Self {
        Self {
            n,
            h,
            w,
            c,
            data: vec![0.0; n * h * w * c],
        }
    }
}
