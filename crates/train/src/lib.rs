//! Training the merge model (DESIGN.md section 2): one pass per caption with the loss at
//! every real position, batches of similar lengths so padded positions cost nothing, Adam
//! with Keras' defaults, validation each epoch, early stopping, atomic checkpoints and an
//! exact resume.

mod batching;
mod flops;

pub use batching::bucketed_batches;
pub use flops::train_flops_per_batch;
