//! Layers with explicit forward and backward passes, Keras semantics (so Keras weights and
//! results carry over), working on packed batches of variable-length sequences: the batch is
//! sorted by length, longest first, and time step `t` holds the rows of the captions still
//! running, which are a prefix of the batch. Padded positions therefore cost nothing.
//! Every backward is checked against finite differences in the tests.

mod adam;
mod dense;
mod dropout;
mod embedding;
#[cfg(test)]
mod gradcheck;
mod loss;
mod lstm;
mod packed;
mod packing;
mod param;

pub use adam::{Adam, AdamConfig};
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use loss::{softmax_cross_entropy, softmax_rows, CrossEntropy};
pub use lstm::{Lstm, LstmState};
pub use packed::{PackedDense, PackedLstm};
pub use packing::Packing;
pub use param::Param;
