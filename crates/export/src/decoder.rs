//! The caption model as ONNX: `decoder.onnx` in the seed's fixed-length interface and
//! `decoder_step.onnx`, one incremental step with the LSTM states carried outside.

use autocaption_model::MergeModel;
use autocaption_onnx::proto::ModelProto;
use autocaption_onnx::TensorData;

use crate::builder::{Builder, A, D};

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// ONNX orders an LSTM's gates i, o, f, c; Keras i, f, c, o: Keras' index of each ONNX gate.
const KERAS_GATE: [usize; 4] = [0, 3, 1, 2];

/// Adds a Keras LSTM's weights as ONNX `W [1, 4u, in]`, `R [1, 4u, u]`, `B [1, 8u]`.
fn lstm_weights(b: &mut Builder, name: &str, l: &autocaption_nn::Lstm) -> [String; 3] {
    let (inp, u) = (l.inputs(), l.units());
    let reorder = |m: &[f32], rows: usize| {
        let mut out = vec![0.0f32; 4 * u * rows];
        for (g, &kg) in KERAS_GATE.iter().enumerate() {
            for j in 0..u {
                for k in 0..rows {
                    out[(g * u + j) * rows + k] = m[k * 4 * u + kg * u + j];
                }
            }
        }
        out
    };
    let mut bias = vec![0.0f32; 8 * u];
    for (g, &kg) in KERAS_GATE.iter().enumerate() {
        bias[g * u..(g + 1) * u].copy_from_slice(&l.bias.value[kg * u..(kg + 1) * u]);
    }
    [
        b.init(
            &format!("{name}.W"),
            vec![1, 4 * u, inp],
            TensorData::F32(reorder(&l.kernel.value, inp)),
        ),
        b.init(
            &format!("{name}.R"),
            vec![1, 4 * u, u],
            TensorData::F32(reorder(&l.recurrent.value, u)),
        ),
        b.init(&format!("{name}.B"), vec![1, 8 * u], TensorData::F32(bias)),
    ]
}

/// `x·W + b` (and ReLU) as MatMul + Add (+ Relu).
fn dense(b: &mut Builder, name: &str, x: &str, d: &autocaption_nn::Dense) -> String {
    let w = b.init(
        &format!("{name}.kernel"),
        vec![d.inputs(), d.outputs()],
        TensorData::F32(d.kernel.value.clone()),
    );
    let bias = b.init(
        &format!("{name}.bias"),
        vec![d.outputs()],
        TensorData::F32(d.bias.value.clone()),
    );
    let y = b.op("MatMul", &format!("{name}/MatMul"), &[x, &w], &[]);
    let y = b.op("Add", &format!("{name}/Add"), &[&y, &bias], &[]);
    if d.relu {
        b.op("Relu", &format!("{name}/Relu"), &[&y], &[])
    } else {
        y
    }
}

/// `decoder.onnx`: inputs `embedding_input` `[N, max_len]` (token ids as floats, pre-padded
/// with 0, as the seed's Keras model takes them) and `dense_input` `[N, feature_dim]`;
/// output `activation_3` `[N, vocab]`, the next word's probabilities after the last
/// position. Every position is computed (the seed's model has no mask).
pub fn decoder(m: &MergeModel) -> ModelProto {
    let c = &m.config;
    let mut b = Builder::default();
    let n = || D::Named("N");
    let tokens = b.input("embedding_input", FLOAT, &[n(), D::Fixed(c.max_len)]);
    let features = b.input("dense_input", FLOAT, &[n(), D::Fixed(c.feature_dim)]);
    let table = b.init(
        "embedding.embeddings",
        vec![c.vocab_size, c.embed_dim],
        TensorData::F32(m.embedding.table.value.clone()),
    );
    let ids = b.op(
        "Cast",
        "embedding/Cast",
        &[&tokens],
        &[A::Int("to", INT64 as i64)],
    );
    let emb = b.op("Gather", "embedding/Gather", &[&table, &ids], &[]);
    // [N, T, E] → [T, N, E], the LSTM's default layout.
    let x = b.op(
        "Transpose",
        "lstm/Transpose",
        &[&emb],
        &[A::Ints("perm", vec![1, 0, 2])],
    );
    let axis0 = b.ints("axes_0", &[0]);
    let axis1 = b.ints("axes_1", &[1]);
    let [w, r, bias] = lstm_weights(&mut b, "lstm", &m.text_lstm);
    let u1 = c.text_lstm as i64;
    let y = b
        .node(
            "LSTM",
            "lstm",
            &[&x, &w, &r, &bias],
            1,
            &[A::Int("hidden_size", u1)],
        )
        .remove(0);
    let h1 = b.op("Squeeze", "lstm/Squeeze", &[&y, &axis1], &[]);
    let h1 = b.op("Dropout", "dropout_1", &[&h1], &[]);
    let text = dense(&mut b, "time_distributed", &h1, &m.text_dense);
    let image = dense(&mut b, "dense", &features, &m.image_dense);
    let image = b.op("Dropout", "dropout", &[&image], &[]);
    let image = b.op(
        "Unsqueeze",
        "repeat_vector/Unsqueeze",
        &[&image, &axis0],
        &[],
    );
    let reps = b.ints("repeat_vector.repeats", &[c.max_len as i64, 1, 1]);
    let image = b.op("Tile", "repeat_vector", &[&image, &reps], &[]);
    let merged = b.op(
        "Concat",
        "concatenate_3",
        &[&image, &text],
        &[A::Int("axis", 2)],
    );
    let [w, r, bias] = lstm_weights(&mut b, "lstm_7", &m.merge_lstm);
    let y = b
        .node(
            "LSTM",
            "lstm_7",
            &[&merged, &w, &r, &bias],
            1,
            &[A::Int("hidden_size", c.merge_lstm as i64)],
        )
        .remove(0);
    let h2 = b.op("Squeeze", "lstm_7/Squeeze", &[&y, &axis1], &[]);
    let [w, r, bias] = lstm_weights(&mut b, "lstm_8", &m.decoder_lstm);
    let outs = b.node(
        "LSTM",
        "lstm_8",
        &[&h2, &w, &r, &bias],
        2,
        &[A::Int("hidden_size", c.decoder_lstm as i64)],
    );
    let h3 = b.op("Squeeze", "lstm_8/Squeeze", &[&outs[1], &axis0], &[]);
    let logits = dense(&mut b, "dense_5", &h3, &m.output);
    let probs = b.op(
        "Softmax",
        "activation_3/Softmax",
        &[&logits],
        &[A::Int("axis", -1)],
    );
    b.output(
        &probs,
        "activation_3",
        FLOAT,
        &[n(), D::Fixed(c.vocab_size)],
    );
    b.model(
        "autocaption_decoder",
        "autocaption merge model, the seed's interface: token ids [N, max_len] (pre-padded with 0) and image features [N, feature_dim] -> next-word probabilities [N, vocab]",
    )
}

/// The names of `decoder_step.onnx`'s state inputs (outputs add `_out`), with their widths.
pub fn step_states(m: &MergeModel) -> [(&'static str, usize); 6] {
    let c = &m.config;
    [
        ("text_h", c.text_lstm),
        ("text_c", c.text_lstm),
        ("merge_h", c.merge_lstm),
        ("merge_c", c.merge_lstm),
        ("decoder_h", c.decoder_lstm),
        ("decoder_c", c.decoder_lstm),
    ]
}

/// `decoder_step.onnx`: one step for a batch. Inputs `token` `[N]` (INT64), `features`
/// `[N, feature_dim]` and the six LSTM states `[N, units]` (zeros before the first word);
/// outputs `log_probs` `[N, vocab]` and the states after the step (`text_h_out`, …).
pub fn decoder_step(m: &MergeModel) -> ModelProto {
    let c = &m.config;
    let mut b = Builder::default();
    let n = || D::Named("N");
    let token = b.input("token", INT64, &[n()]);
    let features = b.input("features", FLOAT, &[n(), D::Fixed(c.feature_dim)]);
    let states: Vec<String> = step_states(m)
        .iter()
        .map(|(s, w)| b.input(s, FLOAT, &[n(), D::Fixed(*w)]))
        .collect();
    let axis0 = b.ints("axes_0", &[0]);
    let table = b.init(
        "embedding.embeddings",
        vec![c.vocab_size, c.embed_dim],
        TensorData::F32(m.embedding.table.value.clone()),
    );
    let emb = b.op("Gather", "embedding", &[&table, &token], &[]);
    let x = b.op("Unsqueeze", "embedding/Unsqueeze", &[&emb, &axis0], &[]);
    let mut new_states = Vec::new();
    let mut lstm =
        |b: &mut Builder, name: &str, x: &str, l: &autocaption_nn::Lstm, h: &str, cs: &str| {
            let [w, r, bias] = lstm_weights(b, name, l);
            let h0 = b.op("Unsqueeze", &format!("{name}/h0"), &[h, &axis0], &[]);
            let c0 = b.op("Unsqueeze", &format!("{name}/c0"), &[cs, &axis0], &[]);
            let outs = b.node(
                "LSTM",
                name,
                &[x, &w, &r, &bias, "", &h0, &c0],
                3,
                &[A::Int("hidden_size", l.units() as i64)],
            );
            let h = b.op("Squeeze", &format!("{name}/h"), &[&outs[1], &axis0], &[]);
            let cc = b.op("Squeeze", &format!("{name}/c"), &[&outs[2], &axis0], &[]);
            new_states.push(h.clone());
            new_states.push(cc);
            (outs[1].clone(), h)
        };
    let (_, h1) = lstm(&mut b, "lstm", &x, &m.text_lstm, &states[0], &states[1]);
    let text = dense(&mut b, "time_distributed", &h1, &m.text_dense);
    let image = dense(&mut b, "dense", &features, &m.image_dense);
    let merged = b.op(
        "Concat",
        "concatenate_3",
        &[&image, &text],
        &[A::Int("axis", 1)],
    );
    let merged = b.op(
        "Unsqueeze",
        "concatenate_3/Unsqueeze",
        &[&merged, &axis0],
        &[],
    );
    let (h2_seq, _) = lstm(
        &mut b,
        "lstm_7",
        &merged,
        &m.merge_lstm,
        &states[2],
        &states[3],
    );
    let (_, h3) = lstm(
        &mut b,
        "lstm_8",
        &h2_seq,
        &m.decoder_lstm,
        &states[4],
        &states[5],
    );
    let logits = dense(&mut b, "dense_5", &h3, &m.output);
    let lp = b.op(
        "LogSoftmax",
        "log_probs/LogSoftmax",
        &[&logits],
        &[A::Int("axis", -1)],
    );
    b.output(&lp, "log_probs", FLOAT, &[n(), D::Fixed(c.vocab_size)]);
    for ((name, w), v) in step_states(m).iter().zip(new_states) {
        b.output(&v, &format!("{name}_out"), FLOAT, &[n(), D::Fixed(*w)]);
    }
    b.model(
        "autocaption_decoder_step",
        "autocaption merge model, one incremental step: token [N], features and six LSTM states -> log-probabilities of the next word and the new states",
    )
}
