//! Caption text: the cleaning pipeline, the Keras-`Tokenizer`-compatible vocabulary, Keras
//! `pad_sequences`, and the tokenizer that ties them together and saves to one JSON file.
//! Nothing here knows about tensors or images.

mod clean;
mod pad;
mod tokenizer;
mod vocab;

pub use clean::{CleanPipeline, Stage};
pub use pad::{pad_sequences, PadSide};
pub use tokenizer::{TextError, Tokenizer};
pub use vocab::{VocabBuilder, Vocabulary, PAD_INDEX};
