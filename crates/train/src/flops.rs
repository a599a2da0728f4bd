use autocaption_model::MergeConfig;

/// Multiply-add work of one training step (forward and backward, 2 FLOPs a multiply-add)
/// over `positions` real positions of `captions` captions: the matrix products only, which
/// are nearly all of it. Backward costs twice the forward (input and weight gradients).
pub fn train_flops_per_batch(c: &MergeConfig, captions: usize, positions: usize) -> f64 {
    let per_position = c.embed_dim * 4 * c.text_lstm
        + c.text_lstm * 4 * c.text_lstm
        + c.text_lstm * c.text_dense
        + (c.image_dense + c.text_dense) * 4 * c.merge_lstm
        + c.merge_lstm * 4 * c.merge_lstm
        + c.merge_lstm * 4 * c.decoder_lstm
        + c.decoder_lstm * 4 * c.decoder_lstm
        + c.decoder_lstm * c.vocab_size;
    let per_caption = c.feature_dim * c.image_dense;
    3.0 * 2.0 * (per_position as f64 * positions as f64 + per_caption as f64 * captions as f64)
}
