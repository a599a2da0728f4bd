//! What `compile --quantize int8` does to the caption model's weights, simulated in the
//! engine: every Dense and LSTM kernel rounded to per-output-channel symmetric int8 with
//! equalised input channels (the compiler's own rule, see `autocaption_compiler::quant`)
//! and widened back to f32. The compiled int8 decoder computes with
//! exactly these weights (to float rounding), so evaluating them measures what int8 costs
//! in caption quality without building C. The embedding table becomes int8 rows with a
//! scale each, as the compiled Gather stores it.

use autocaption_compiler::quant::{
    dequantized, dequantized_equalized, int8_channels, int8_equalized,
};
use autocaption_model::MergeModel;
use autocaption_nn::Param;

/// Rounds a `[in, out]` kernel to equalised per-output-column int8 and back.
fn per_column(p: &mut Param) {
    let (rows, cols) = (p.shape[0], p.shape[1]);
    let v = &p.value;
    let (q, c, r) = int8_equalized(rows, cols, |k, j| v[k * cols + j]);
    p.value = dequantized_equalized(&q, &c, &r);
}

/// Replaces `model`'s Dense and LSTM kernels and its embedding table by the int8 weights
/// they compile to.
pub fn simulate_int8(model: &mut MergeModel) {
    let t = &mut model.embedding.table;
    let (rows, len) = (t.shape[0], t.shape[1]);
    let (q, s) = int8_channels(rows, len, |r, c| t.value[r * len + c]);
    t.value = dequantized(&q, &s);
    for l in [
        &mut model.text_lstm,
        &mut model.merge_lstm,
        &mut model.decoder_lstm,
    ] {
        per_column(&mut l.kernel);
        per_column(&mut l.recurrent);
    }
    for d in [
        &mut model.text_dense,
        &mut model.image_dense,
        &mut model.output,
    ] {
        per_column(&mut d.kernel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_model::MergeConfig;

    #[test]
    fn kernels_move_by_at_most_half_a_step() {
        let config = MergeConfig {
            vocab_size: 50,
            ..MergeConfig::seed(50)
        };
        let before = MergeModel::new(config, 3);
        let mut after = before.clone();
        simulate_int8(&mut after);
        let (k0, k1) = (&before.output.kernel, &after.output.kernel);
        let (rows, cols) = (k0.shape[0], k0.shape[1]);
        let mut moved = 0.0f32;
        for r in 0..rows {
            let row_max = (0..cols)
                .map(|c| k0.value[r * cols + c].abs())
                .fold(0.0, f32::max);
            for c in 0..cols {
                let col_max = (0..rows)
                    .map(|rr| {
                        k0.value[rr * cols + c].abs()
                            / (0..cols)
                                .map(|cc| k0.value[rr * cols + cc].abs())
                                .fold(0.0, f32::max)
                    })
                    .fold(0.0, f32::max);
                let step = row_max * col_max / 127.0;
                let (a, b) = (k0.value[r * cols + c], k1.value[r * cols + c]);
                assert!((a - b).abs() <= step / 2.0 * 1.001 + 1e-7, "{a} → {b}");
                moved = moved.max((a - b).abs());
            }
        }
        assert!(moved > 0.0);
        assert_ne!(before.embedding.table.value, after.embedding.table.value);
    }
}
