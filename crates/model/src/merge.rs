use autocaption_nn::{
    softmax_cross_entropy, softmax_rows, CrossEntropy, Dense, Dropout, Embedding, Lstm, Packing,
    Param,
};
use autocaption_tensor::Rng;

use crate::MergeConfig;

/// The merge model with its parameters and the activations of the last training forward.
#[derive(Debug, Clone)]
pub struct MergeModel {
    /// Layer sizes.
    pub config: MergeConfig,
    /// Word embedding (`embedding`).
    pub embedding: Embedding,
    /// Text LSTM (`text_lstm`).
    pub text_lstm: Lstm,
    /// Per-step Dense after the text LSTM (`text_dense`, Keras' TimeDistributed).
    pub text_dense: Dense,
    /// Image Dense with ReLU (`image_dense`).
    pub image_dense: Dense,
    /// LSTM over [image, text] (`merge_lstm`).
    pub merge_lstm: Lstm,
    /// Last LSTM (`decoder_lstm`).
    pub decoder_lstm: Lstm,
    /// Output Dense to the vocabulary (`output`).
    pub output: Dense,
    text_dropout: Dropout,
    image_dropout: Dropout,
    act: Activations,
}

/// Everything the backward pass needs from the forward, in packed layout.
#[derive(Debug, Clone, Default)]
struct Activations {
    packing: Option<Packing>,
    ids: Vec<u32>,
    targets: Vec<u32>,
    seq_of_row: Vec<usize>,
    features: Vec<f32>,
    emb: Vec<f32>,
    h1: Vec<f32>,
    h1_dropped: Vec<f32>,
    text: Vec<f32>,
    image: Vec<f32>,
    image_dropped: Vec<f32>,
    merged: Vec<f32>,
    h2: Vec<f32>,
    h3: Vec<f32>,
    logits: Vec<f32>,
}

impl MergeModel {
    /// A model with Keras' initialisation, from `seed`.
    pub fn new(config: MergeConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let c = &config;
        Self {
            embedding: Embedding::new(c.vocab_size, c.embed_dim, &mut rng),
            text_lstm: Lstm::new(c.embed_dim, c.text_lstm, &mut rng),
            text_dense: Dense::new(c.text_lstm, c.text_dense, false, &mut rng),
            image_dense: Dense::new(c.feature_dim, c.image_dense, true, &mut rng),
            merge_lstm: Lstm::new(c.image_dense + c.text_dense, c.merge_lstm, &mut rng),
            decoder_lstm: Lstm::new(c.merge_lstm, c.decoder_lstm, &mut rng),
            output: Dense::new(c.decoder_lstm, c.vocab_size, false, &mut rng),
            text_dropout: Dropout::new(c.dropout),
            image_dropout: Dropout::new(c.dropout),
            act: Activations::default(),
            config,
        }
    }

    /// Parameters with their Keras-style names (`layer.weight`), in a fixed order.
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        out.push(("embedding.embeddings".to_string(), &self.embedding.table));
        for (name, l) in [
            ("text_lstm", &self.text_lstm),
            ("merge_lstm", &self.merge_lstm),
            ("decoder_lstm", &self.decoder_lstm),
        ] {
            out.push((format!("{name}.kernel"), &l.kernel));
            out.push((format!("{name}.recurrent_kernel"), &l.recurrent));
            out.push((format!("{name}.bias"), &l.bias));
        }
        for (name, d) in [
            ("text_dense", &self.text_dense),
            ("image_dense", &self.image_dense),
            ("output", &self.output),
        ] {
            out.push((format!("{name}.kernel"), &d.kernel));
            out.push((format!("{name}.bias"), &d.bias));
        }
        out
    }

    /// The same parameters as [`MergeModel::named_params`], mutable, in the same order.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut out: Vec<&mut Param> = vec![&mut self.embedding.table];
        for l in [
            &mut self.text_lstm,
            &mut self.merge_lstm,
            &mut self.decoder_lstm,
        ] {
            out.extend([&mut l.kernel, &mut l.recurrent, &mut l.bias]);
        }
        for d in [
            &mut self.text_dense,
            &mut self.image_dense,
            &mut self.output,
        ] {
            out.extend([&mut d.kernel, &mut d.bias]);
        }
        out
    }

    /// Total number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_params().iter().map(|(_, p)| p.len()).sum()
    }

    /// Folds a per-dimension map of the image features, `(x − mean) · scale`, into the image
    /// Dense, so that the model then takes raw features `x` and computes what it computed on
    /// mapped ones: `W'[i, j] = scale[i]·W[i, j]`, `b'[j] = b[j] − Σ_i mean[i]·W'[i, j]`.
    pub fn fold_feature_scaling(&mut self, mean: &[f32], scale: &[f32]) {
        let d = &mut self.image_dense;
        let (i, o) = (d.inputs(), d.outputs());
        assert_eq!(
            (mean.len(), scale.len()),
            (i, i),
            "one mean and scale per feature"
        );
        let mut shift = vec![0f64; o];
        for (r, row) in d.kernel.value.chunks_mut(o).enumerate() {
            for (j, w) in row.iter_mut().enumerate() {
                *w *= scale[r];
                shift[j] += f64::from(mean[r]) * f64::from(*w);
            }
        }
        for (b, s) in d.bias.value.iter_mut().zip(shift) {
            *b = (f64::from(*b) - s) as f32;
        }
    }

    /// Runs the model over a batch of input sequences (each of length ≥ 1) with one feature
    /// row each, stores the activations, and returns the packing used. `targets` (if given)
    /// are packed alongside for the loss.
    fn forward(
        &mut self,
        inputs: &[&[u32]],
        targets: Option<&[&[u32]]>,
        features: &[f32],
        training: bool,
        rng: &mut Rng,
    ) -> Packing {
        let p = self.forward_hidden(inputs, targets, features, training, rng);
        let a = &mut self.act;
        self.output.forward(&a.h3, p.rows(), &mut a.logits);
        a.packing = Some(p.clone());
        p
    }

    /// [`MergeModel::forward`] up to the last LSTM's outputs (`self.act.h3`).
    fn forward_hidden(
        &mut self,
        inputs: &[&[u32]],
        targets: Option<&[&[u32]]>,
        features: &[f32],
        training: bool,
        rng: &mut Rng,
    ) -> Packing {
        let c = self.config.clone();
        let b = inputs.len();
        assert_eq!(
            features.len(),
            b * c.feature_dim,
            "one feature row per sequence"
        );
        // Longest first, stable: step t's rows are then a prefix of the batch.
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
        let lengths: Vec<usize> = order.iter().map(|&i| inputs[i].len()).collect();
        let p = Packing::new(&lengths);
        let a = &mut self.act;
        a.ids.clear();
        a.targets.clear();
        for t in 0..p.steps() {
            for &i in &order[..p.active(t)] {
                let id = inputs[i][t];
                assert!(
                    (id as usize) < c.vocab_size,
                    "token {id} is outside the vocabulary of {}",
                    c.vocab_size
                );
                a.ids.push(id);
                if let Some(tg) = targets {
                    a.targets.push(tg[i][t]);
                }
            }
        }
        a.seq_of_row = p.sequence_of_rows();
        a.features.clear();
        for &i in &order {
            a.features
                .extend_from_slice(&features[i * c.feature_dim..(i + 1) * c.feature_dim]);
        }
        let n = p.rows();

        // Text branch.
        self.embedding.forward(&a.ids, &mut a.emb);
        self.text_lstm.forward(&a.emb, &p, &mut a.h1);
        a.h1_dropped.clone_from(&a.h1);
        self.text_dropout.forward(&mut a.h1_dropped, training, rng);
        self.text_dense.forward(&a.h1_dropped, n, &mut a.text);

        // Image branch: Dense + ReLU, dropout once per image (before RepeatVector, as in Keras).
        self.image_dense.forward(&a.features, b, &mut a.image);
        a.image_dropped.clone_from(&a.image);
        self.image_dropout
            .forward(&mut a.image_dropped, training, rng);

        // Concatenate, image first, repeating the image vector at every step.
        let (wi, wt) = (c.image_dense, c.text_dense);
        a.merged.clear();
        a.merged.reserve(n * (wi + wt));
        for (r, &s) in a.seq_of_row.iter().enumerate() {
            a.merged
                .extend_from_slice(&a.image_dropped[s * wi..(s + 1) * wi]);
            a.merged.extend_from_slice(&a.text[r * wt..(r + 1) * wt]);
        }
        self.merge_lstm.forward(&a.merged, &p, &mut a.h2);
        self.decoder_lstm.forward(&a.h2, &p, &mut a.h3);
        p
    }

    /// The seed model's output: next-word probabilities after the last of `steps` tokens of
    /// each pre-padded window (`tokens` `[batch, steps]`, no mask), `[batch, vocab]`. Only the
    /// last position goes through the output layer.
    pub fn predict_last(&mut self, tokens: &[u32], steps: usize, features: &[f32]) -> Vec<f32> {
        let b = tokens.len() / steps;
        let rows: Vec<&[u32]> = tokens.chunks(steps).collect();
        let p = self.forward_hidden(&rows, None, features, false, &mut Rng::new(0));
        let h = self.config.decoder_lstm;
        let a = &mut self.act;
        // Equal lengths: packed row t·b + i is step t of sequence i.
        let mut last = Vec::with_capacity(b * h);
        for i in 0..b {
            let r = p.row(steps - 1, i);
            last.extend_from_slice(&a.h3[r * h..(r + 1) * h]);
        }
        let mut out = Vec::new();
        self.output.forward(&last, b, &mut out);
        softmax_rows(&mut out, self.config.vocab_size);
        out
    }

    /// Backward from `self.act.logits`, which must hold the gradient of the loss with respect
    /// to the logits. Accumulates every parameter's gradient.
    fn backward(&mut self) {
        let c = self.config.clone();
        let a = &mut self.act;
        let p = a.packing.as_ref().expect("backward follows a forward");
        let (n, b) = (p.rows(), p.batch());
        let mut dh3 = Vec::new();
        self.output
            .backward(&a.h3, &[], &mut a.logits, n, Some(&mut dh3));
        let mut dh2 = Vec::new();
        self.decoder_lstm
            .backward(&a.h2, &a.h3, &dh3, p, Some(&mut dh2));
        let mut dmerged = Vec::new();
        self.merge_lstm
            .backward(&a.merged, &a.h2, &dh2, p, Some(&mut dmerged));

        // Split the concatenation; the repeated image vector's gradient sums over steps.
        let (wi, wt) = (c.image_dense, c.text_dense);
        let mut dimage = vec![0.0f32; b * wi];
        let mut dtext = vec![0.0f32; n * wt];
        for (r, &s) in a.seq_of_row.iter().enumerate() {
            let row = &dmerged[r * (wi + wt)..(r + 1) * (wi + wt)];
            for (d, g) in dimage[s * wi..(s + 1) * wi].iter_mut().zip(&row[..wi]) {
                *d += g;
            }
            dtext[r * wt..(r + 1) * wt].copy_from_slice(&row[wi..]);
        }
        self.image_dropout.backward(&mut dimage);
        self.image_dense
            .backward(&a.features, &a.image, &mut dimage, b, None);

        let mut dh1 = Vec::new();
        self.text_dense
            .backward(&a.h1_dropped, &a.text, &mut dtext, n, Some(&mut dh1));
        self.text_dropout.backward(&mut dh1);
        let mut demb = Vec::new();
        self.text_lstm
            .backward(&a.emb, &a.h1, &dh1, p, Some(&mut demb));
        self.embedding.backward(&a.ids, &demb);
    }

    /// Chooses the arithmetic of every matrix product (f32, or bf16 with f32 accumulation).
    pub fn set_precision(&mut self, precision: autocaption_tensor::Precision) {
        for l in [
            &mut self.text_lstm,
            &mut self.merge_lstm,
            &mut self.decoder_lstm,
        ] {
            l.precision = precision;
        }
        for d in [
            &mut self.text_dense,
            &mut self.image_dense,
            &mut self.output,
        ] {
            d.precision = precision;
        }
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in self.params_mut() {
            p.zero_grad();
        }
    }

    /// One training pass over whole captions: for each caption (start token … end token) the
    /// model reads tokens 0..L−1 and is scored on predicting tokens 1..L, at real positions
    /// only. Computes the mean cross-entropy over those positions and accumulates its
    /// gradient (call [`MergeModel::zero_grad`] first). `features` is `[captions, feature_dim]`.
    pub fn train_batch(
        &mut self,
        captions: &[&[u32]],
        features: &[f32],
        rng: &mut Rng,
    ) -> CrossEntropy {
        let ce = self.score(captions, features, true, rng);
        self.backward();
        ce
    }

    /// Loss and accuracy of the same work without dropout and without gradients.
    pub fn evaluate_batch(&mut self, captions: &[&[u32]], features: &[f32]) -> CrossEntropy {
        self.score(captions, features, false, &mut Rng::new(0))
    }

    fn score(
        &mut self,
        captions: &[&[u32]],
        features: &[f32],
        training: bool,
        rng: &mut Rng,
    ) -> CrossEntropy {
        assert!(
            captions.iter().all(|c| c.len() >= 2),
            "a caption needs a start and an end token"
        );
        let inputs: Vec<&[u32]> = captions.iter().map(|c| &c[..c.len() - 1]).collect();
        let targets: Vec<&[u32]> = captions.iter().map(|c| &c[1..]).collect();
        let p = self.forward(&inputs, Some(&targets), features, training, rng);
        let v = self.config.vocab_size;
        let scale = 1.0 / p.rows() as f32;
        softmax_cross_entropy(&mut self.act.logits, v, &self.act.targets, scale)
    }

    /// The seed's fixed-length interface without a mask: `tokens` is `[batch, steps]`
    /// (pre-padded with 0, as the seed feeds it) and every position is computed. Returns the
    /// next-word probabilities at every position, `[batch, steps, vocab]`; the last position
    /// is the seed model's output.
    pub fn predict_all_positions(
        &mut self,
        tokens: &[u32],
        steps: usize,
        features: &[f32],
    ) -> Vec<f32> {
        let b = tokens.len() / steps;
        let rows: Vec<&[u32]> = tokens.chunks(steps).collect();
        let p = self.forward(&rows, None, features, false, &mut Rng::new(0));
        let v = self.config.vocab_size;
        softmax_rows(&mut self.act.logits, v);
        // All sequences have the same length, so the sort kept the batch order and packed
        // row t·b + i is step t of sequence i.
        let mut out = vec![0.0f32; b * steps * v];
        for t in 0..steps {
            for i in 0..b {
                let r = p.row(t, i);
                out[(i * steps + t) * v..(i * steps + t + 1) * v]
                    .copy_from_slice(&self.act.logits[r * v..(r + 1) * v]);
            }
        }
        out
    }

    /// Beam search (as [`crate::Decoder::beam`]) for models decoded over pre-padded windows
    /// (see [`MergeModel::greedy_prefix`]): every live beam's window goes through the whole
    /// model at every word, all beams of all images in one batch.
    pub fn beam_prefix(
        &mut self,
        features: &[f32],
        start: u32,
        end: u32,
        opts: &crate::DecodeOptions,
    ) -> Vec<Vec<crate::Hypothesis>> {
        let f = self.config.feature_dim;
        let n = features.len() / f.max(1);
        let v = self.config.vocab_size;
        let mut steps = PrefixSteps {
            model: self,
            history: vec![Vec::new(); n],
            features: features.to_vec(),
        };
        crate::decode::beam_search(&mut steps, n, start, end, v, opts)
    }

    /// The seed's greedy decoding, for models trained on pre-padded windows (the seed's
    /// (prefix, next word) pairs, no mask): for every word, the last `max_len` tokens (the
    /// start token and the words so far, pre-padded with 0) go through the whole model again
    /// and the most probable next word is taken (the first of equals, as `np.argmax`).
    /// Batched over the images of `features` (`[n, feature_dim]`). At most `words` words are
    /// chosen (the end token counted, as in the seed's loop of `max_length` predictions); a
    /// caption also stops when the padding index wins (the seed's `word is None`), and is
    /// then unfinished. With `last_only_end`, the last prediction may only end the caption:
    /// another word there cuts it (unfinished, that word neither kept nor scored), as
    /// [`crate::Decoder::greedy`] treats `max_words`. Tokens exclude start and end, as
    /// that decoder's do.
    pub fn greedy_prefix(
        &mut self,
        features: &[f32],
        start: u32,
        end: u32,
        words: usize,
        last_only_end: bool,
    ) -> Vec<crate::Hypothesis> {
        let f = self.config.feature_dim;
        let (steps, v) = (self.config.max_len, self.config.vocab_size);
        let n = features.len() / f.max(1);
        let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut log_prob = vec![0.0f64; n];
        let mut done = vec![false; n];
        let mut active: Vec<usize> = (0..n).collect();
        for t in 0..words {
            if active.is_empty() {
                break;
            }
            let cut_here = last_only_end && t + 1 == words;
            let mut window = vec![0u32; active.len() * steps];
            let mut feats = Vec::with_capacity(active.len() * f);
            for (k, &i) in active.iter().enumerate() {
                let seq: Vec<u32> = std::iter::once(start)
                    .chain(tokens[i].iter().copied())
                    .collect();
                let keep = &seq[seq.len().saturating_sub(steps)..];
                window[k * steps + steps - keep.len()..(k + 1) * steps].copy_from_slice(keep);
                feats.extend_from_slice(&features[i * f..(i + 1) * f]);
            }
            let probs = self.predict_last(&window, steps, &feats);
            let mut still = Vec::with_capacity(active.len());
            for (k, &i) in active.iter().enumerate() {
                let last = &probs[k * v..(k + 1) * v];
                let mut best = 0;
                for (j, &p) in last.iter().enumerate() {
                    if p > last[best] {
                        best = j;
                    }
                }
                if best == 0 || (cut_here && best as u32 != end) {
                    continue;
                }
                log_prob[i] += f64::from(last[best].max(f32::MIN_POSITIVE).ln());
                if best as u32 == end {
                    done[i] = true;
                } else {
                    tokens[i].push(best as u32);
                    still.push(i);
                }
            }
            active = still;
        }
        tokens
            .into_iter()
            .zip(log_prob)
            .zip(done)
            .map(|((t, lp), d)| crate::Hypothesis::new(t, lp, d, 0.0))
            .collect()
    }
}

/// Decoding over pre-padded windows, one row per live beam: its tokens so far and its
/// image's features.
struct PrefixSteps<'a> {
    model: &'a mut MergeModel,
    history: Vec<Vec<u32>>,
    features: Vec<f32>,
}

impl crate::decode::Steps for PrefixSteps<'_> {
    fn step(&mut self, feed: &[u32]) -> Vec<f32> {
        let steps = self.model.config.max_len;
        let mut window = vec![0u32; feed.len() * steps];
        for (k, (h, &w)) in self.history.iter_mut().zip(feed).enumerate() {
            h.push(w);
            let keep = &h[h.len().saturating_sub(steps)..];
            window[k * steps + steps - keep.len()..(k + 1) * steps].copy_from_slice(keep);
        }
        let mut lp = self.model.predict_last(&window, steps, &self.features);
        for p in &mut lp {
            *p = p.max(f32::MIN_POSITIVE).ln();
        }
        lp
    }

    fn select(&mut self, keep: &[usize]) {
        let f = self.model.config.feature_dim;
        self.history = keep.iter().map(|&r| self.history[r].clone()).collect();
        self.features = keep
            .iter()
            .flat_map(|&r| self.features[r * f..(r + 1) * f].iter().copied())
            .collect();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A model small enough for finite differences and exhaustive searches.
    pub(crate) fn tiny() -> MergeConfig {
        MergeConfig {
            vocab_size: 11,
            feature_dim: 6,
            embed_dim: 4,
            text_lstm: 5,
            text_dense: 3,
            image_dense: 4,
            merge_lstm: 5,
            decoder_lstm: 6,
            dropout: 0.5,
            max_len: 8,
        }
    }

    #[test]
    fn seed_parameter_count() {
        assert_eq!(
            MergeModel::new(MergeConfig::seed(4487), 0).parameter_count(),
            5_075_463
        );
    }

    #[test]
    fn whole_model_gradient_matches_finite_differences() {
        let mut m = MergeModel::new(tiny(), 3);
        m.config.dropout = 0.0;
        m.text_dropout = Dropout::new(0.0);
        m.image_dropout = Dropout::new(0.0);
        let caps: Vec<Vec<u32>> = vec![vec![1, 4, 5, 2], vec![1, 7, 2], vec![1, 3, 9, 10, 6, 2]];
        let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
        let mut rng = Rng::new(1);
        let feats: Vec<f32> = (0..3 * 6).map(|_| rng.uniform(0.0, 2.0)).collect();
        m.zero_grad();
        m.train_batch(&refs, &feats, &mut rng);
        let base = m.clone();
        let names: Vec<String> = base.named_params().into_iter().map(|(n, _)| n).collect();
        for (k, name) in names.iter().enumerate() {
            let analytic = base.named_params()[k].1.grad.clone();
            let values = base.named_params()[k].1.value.clone();
            let stride = (values.len() / 40).max(1);
            let (mut diff, mut norm, mut probed) = (0.0f64, 0.0f64, 0usize);
            for i in (0..values.len()).step_by(stride) {
                let keep = values[i];
                let loss_at = |v: f32| {
                    let mut e = base.clone();
                    e.params_mut()[k].value[i] = v;
                    e.evaluate_batch(&refs, &feats).loss_sum / e.act.targets.len() as f64
                };
                let fd = (loss_at(keep + 1e-2) - loss_at(keep - 1e-2)) / 2e-2;
                diff += (fd - analytic[i] as f64).powi(2);
                norm += fd * fd;
                probed += 1;
            }
            // Relative error below 1e-3, above a floor for the f32 forward's own noise: a
            // difference quotient of the whole model in f32 is good to about 5e-6 absolute
            // (measured), which is all the gradient there is for the deepest kernels of this
            // tiny model. Each layer's backward is checked at 1e-3 alone in autocaption-nn.
            let floor = 1e-5 * (probed as f64).sqrt();
            assert!(
                diff.sqrt() <= 1e-3 * norm.sqrt() + floor,
                "{name}: error {:.2e}, gradient norm {:.2e}",
                diff.sqrt(),
                norm.sqrt()
            );
        }
    }

    #[test]
    fn folded_feature_scaling_equals_scaling_the_features() {
        let c = tiny();
        let mut rng = Rng::new(3);
        let mut model = MergeModel::new(c.clone(), 5);
        let caps: Vec<Vec<u32>> = (0..3)
            .map(|k| {
                (0..4 + k)
                    .map(|_| 1 + rng.below(c.vocab_size - 1) as u32)
                    .collect()
            })
            .collect();
        let caps: Vec<&[u32]> = caps.iter().map(Vec::as_slice).collect();
        let raw: Vec<f32> = (0..3 * c.feature_dim)
            .map(|_| 40.0 + 30.0 * rng.normal())
            .collect();
        let mean: Vec<f32> = (0..c.feature_dim).map(|_| 40.0 + rng.normal()).collect();
        let scale: Vec<f32> = (0..c.feature_dim)
            .map(|_| rng.uniform(0.02, 0.07))
            .collect();
        let mapped: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(k, x)| (x - mean[k % c.feature_dim]) * scale[k % c.feature_dim])
            .collect();
        let want = model.evaluate_batch(&caps, &mapped);
        let want_logits = model.act.logits.clone();
        model.fold_feature_scaling(&mean, &scale);
        let got = model.evaluate_batch(&caps, &raw);
        assert!((got.loss_sum - want.loss_sum).abs() < 1e-4 * want.loss_sum.abs());
        for (a, b) in model.act.logits.iter().zip(&want_logits) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn batch_result_equals_one_by_one() {
        let mut m = MergeModel::new(tiny(), 9);
        let caps: Vec<Vec<u32>> = vec![vec![1, 4, 2], vec![1, 7, 8, 9, 2], vec![1, 3, 2]];
        let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
        let feats: Vec<f32> = (0..18).map(|i| i as f32 / 10.0).collect();
        let all = m.evaluate_batch(&refs, &feats);
        let mut sum = 0.0;
        for i in 0..3 {
            sum += m
                .evaluate_batch(&refs[i..i + 1], &feats[i * 6..(i + 1) * 6])
                .loss_sum;
        }
        assert!(
            (all.loss_sum - sum).abs() < 1e-4,
            "{} vs {sum}",
            all.loss_sum
        );
    }
}
