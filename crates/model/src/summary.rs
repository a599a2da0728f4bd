use autocaption_io::thousands;

use crate::MergeModel;

/// A Keras-style summary table: layer, output shape, parameter count, input.
pub fn summary(model: &MergeModel) -> String {
    let c = &model.config;
    let t = c.max_len;
    let count = |name: &str| -> usize {
        model
            .named_params()
            .iter()
            .filter(|(n, _)| n.split('.').next() == Some(name))
            .map(|(_, p)| p.len())
            .sum()
    };
    let rows: Vec<(String, String, usize, &str)> = vec![
        ("tokens (Input)".into(), format!("(None, {t})"), 0, ""),
        (
            "features (Input)".into(),
            format!("(None, {})", c.feature_dim),
            0,
            "",
        ),
        (
            "embedding (Embedding)".into(),
            format!("(None, {t}, {})", c.embed_dim),
            count("embedding"),
            "tokens",
        ),
        (
            "image_dense (Dense, relu)".into(),
            format!("(None, {})", c.image_dense),
            count("image_dense"),
            "features",
        ),
        (
            "text_lstm (LSTM)".into(),
            format!("(None, {t}, {})", c.text_lstm),
            count("text_lstm"),
            "embedding",
        ),
        (
            "image_dropout (Dropout)".into(),
            format!("(None, {})", c.image_dense),
            0,
            "image_dense",
        ),
        (
            "text_dropout (Dropout)".into(),
            format!("(None, {t}, {})", c.text_lstm),
            0,
            "text_lstm",
        ),
        (
            "repeat (RepeatVector)".into(),
            format!("(None, {t}, {})", c.image_dense),
            0,
            "image_dropout",
        ),
        (
            "text_dense (TimeDistributed)".into(),
            format!("(None, {t}, {})", c.text_dense),
            count("text_dense"),
            "text_dropout",
        ),
        (
            "concatenate (Concatenate)".into(),
            format!("(None, {t}, {})", c.image_dense + c.text_dense),
            0,
            "repeat, text_dense",
        ),
        (
            "merge_lstm (LSTM)".into(),
            format!("(None, {t}, {})", c.merge_lstm),
            count("merge_lstm"),
            "concatenate",
        ),
        (
            "decoder_lstm (LSTM)".into(),
            format!("(None, {})", c.decoder_lstm),
            count("decoder_lstm"),
            "merge_lstm",
        ),
        (
            "output (Dense)".into(),
            format!("(None, {})", c.vocab_size),
            count("output"),
            "decoder_lstm",
        ),
        (
            "softmax (Activation)".into(),
            format!("(None, {})", c.vocab_size),
            0,
            "output",
        ),
    ];
    let line = "_".repeat(98);
    let mut s = format!(
        "Model: \"merge\"\n{line}\n{:<32}{:<22}{:>12}   {}\n{}\n",
        "Layer (type)",
        "Output Shape",
        "Param #",
        "Connected to",
        "=".repeat(98)
    );
    for (i, (layer, shape, n, input)) in rows.iter().enumerate() {
        s.push_str(&format!(
            "{layer:<32}{shape:<22}{:>12}   {input}\n",
            thousands(*n)
        ));
        s.push_str(if i + 1 < rows.len() { &line } else { "" });
        if i + 1 < rows.len() {
            s.push('\n');
        }
    }
    let total = model.parameter_count();
    s.push_str(&format!(
        "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: 0\n{line}\n",
        "=".repeat(98),
        thousands(total),
        thousands(total)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MergeConfig;

    #[test]
    fn seed_table_totals() {
        let s = summary(&MergeModel::new(MergeConfig::seed(4487), 0));
        assert!(s.contains("Total params: 5,075,463"), "{s}");
        assert!(s.contains("2,301,831") && s.contains("1,312,768") && s.contains("574,336"));
    }
}
