//! `autocaption synth`: a captioned image set of its own, made deterministically from a seed.
//! Each image shows coloured shapes (one, a pair in a spatial relation, or a group of the
//! same kind) with five differently worded true captions, written in the Flickr8k layout so
//! that the ordinary dataset readers load it.

mod caption;
mod render;
mod scene;
mod write;

pub use caption::captions;
pub use render::render;
pub use scene::{Background, Colour, Object, Relation, Scene, SceneKind, Shape, Size};
pub use write::{generate, SynthError, SynthOptions, SynthSummary};
