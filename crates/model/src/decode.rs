//! Caption generation on the incremental LSTM step (DESIGN.md section 3): each new word costs
//! one step of each LSTM, with the states carried over, instead of re-running the model over
//! the whole prefix as the seed's loop does. Greedy and beam search, batched over images.
//!
//! Both work on the same log-probabilities (log-softmax of the output layer, in f32), with
//! running sums in f64 and ties broken towards the lower word index, so a beam of width 1
//! takes exactly the greedy path.

use autocaption_nn::{LstmState, PackedDense, PackedLstm};
use autocaption_tensor::{exp, team, OutOfRange, WeightFormat};

use crate::{MergeModel, ModelError};

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Most words a caption may have, the end token not counted.
    pub max_words: usize,
    /// Beam width; 1 is greedy.
    pub beam: usize,
    /// Length normalisation for choosing among finished beams: a hypothesis scores
    /// `log p / length^alpha` (length counting the end token). 0 compares raw
    /// log-probabilities (favouring short captions); 1 is the per-word mean.
    pub length_alpha: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_words: 30,
            beam: 1,
            length_alpha: 0.7,
        }
    }
}

/// One generated caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Word indices, without the start and end tokens.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the words chosen (and of the end token, if reached).
    pub log_prob: f64,
    /// Whether the end token was generated (false: cut at `max_words`).
    pub finished: bool,
    /// `log_prob / length^alpha`: what beams are ranked by.
    pub score: f64,
}

impl Hypothesis {
    pub(crate) fn new(tokens: Vec<u32>, log_prob: f64, finished: bool, alpha: f64) -> Self {
        let length = (tokens.len() + usize::from(finished)).max(1) as f64;
        Self {
            score: log_prob / length.powf(alpha),
            tokens,
            log_prob,
            finished,
        }
    }
}

/// Decodes captions with a trained model. The start and end tokens are the vocabulary's
/// `startseq` and `endseq` (or whatever the prepared data wrapped captions in).
///
/// The per-word layers are packed once for the small products of decoding (see
/// `autocaption_nn::PackedLstm`), in f32 or, with [`Decoder::with_format`], in half
/// precision: half the bytes to stream at every word, for captions that almost always come
/// out the same (words are argmaxes over log-probabilities that move by about 1e-4).
#[derive(Debug)]
pub struct Decoder<'a> {
    model: &'a MergeModel,
    start: u32,
    end: u32,
    step: StepLayers,
}

/// The layers each word runs through, packed. The text LSTM's input share comes from a table
/// (`embedding · kernel`, one row per word) and the merge LSTM's image share is computed once
/// per image, so neither kernel is read at every word.
#[derive(Debug)]
struct StepLayers {
    format: WeightFormat,
    /// The image branch, run once per image; packed (in f32 whatever the format) so that,
    /// like every layer here, a row's result does not depend on the rows beside it: an
    /// image gets the same caption and score in any batch (and so in any shard of a run).
    image_dense: PackedDense,
    word_table: Vec<f32>,
    text_lstm: PackedLstm,
    text_dense: PackedDense,
    merge_lstm: PackedLstm,
    decoder_lstm: PackedLstm,
    output: PackedDense,
}

impl StepLayers {
    fn new(m: &MergeModel, format: WeightFormat) -> Result<Self, ModelError> {
        let err = |layer: &str| {
            let layer = layer.to_string();
            move |e: OutOfRange| match format {
                WeightFormat::Int8 => ModelError::NotFinite {
                    layer,
                    row: e.row,
                    column: e.column,
                    value: e.value,
                },
                _ => ModelError::HalfPrecision {
                    layer,
                    row: e.row,
                    column: e.column,
                    value: e.value,
                },
            }
        };
        let c = &m.config;
        let text_lstm =
            PackedLstm::new(&m.text_lstm, format, c.embed_dim).map_err(err("text_lstm"))?;
        Ok(Self {
            format,
            image_dense: PackedDense::new(&m.image_dense, WeightFormat::F32)
                .map_err(err("image_dense"))?,
            word_table: text_lstm.project(&m.embedding.table.value, c.vocab_size),
            text_lstm,
            text_dense: PackedDense::new(&m.text_dense, format).map_err(err("text_dense"))?,
            merge_lstm: PackedLstm::new(&m.merge_lstm, format, c.image_dense)
                .map_err(err("merge_lstm"))?,
            decoder_lstm: PackedLstm::new(&m.decoder_lstm, format, 0)
                .map_err(err("decoder_lstm"))?,
            output: PackedDense::new(&m.output, format).map_err(err("output"))?,
        })
    }

    fn bytes(&self) -> usize {
        self.text_lstm.bytes()
            + self.text_dense.bytes()
            + self.merge_lstm.bytes()
            + self.decoder_lstm.bytes()
            + self.output.bytes()
    }
}

/// The decoder's running state for a set of rows (one per image, or per beam).
struct Rows {
    /// The image's share of the merge LSTM's pre-activations.
    image: Vec<f32>,
    text_units: usize,
    text: LstmState,
    merge: LstmState,
    dec: LstmState,
}

impl Rows {
    /// Keeps rows `keep` (in that order; an index may repeat).
    fn select(&mut self, keep: &[usize], m: &MergeModel, image_width: usize) {
        let c = &m.config;
        let pick = |v: &[f32], w: usize| -> Vec<f32> {
            keep.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect()
        };
        self.image = pick(&self.image, image_width);
        for (s, w) in [
            (&mut self.text, c.text_lstm),
            (&mut self.merge, c.merge_lstm),
            (&mut self.dec, c.decoder_lstm),
        ] {
            s.h = pick(&s.h, w);
            s.c = pick(&s.c, w);
        }
    }

    fn len(&self) -> usize {
        self.text.h.len() / self.text_units
    }
}

impl<'a> Decoder<'a> {
    /// A decoder for `model` with the given start and end token indices.
    pub fn new(model: &'a MergeModel, start: u32, end: u32) -> Self {
        Self::with_format(model, start, end, WeightFormat::F32)
            .expect("packing in f32 keeps every value")
    }

    /// A decoder whose per-word layers hold their weights in `format`; half precision fails
    /// on a weight beyond its range (±65504), int8 on one that is not finite, naming it.
    pub fn with_format(
        model: &'a MergeModel,
        start: u32,
        end: u32,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let v = model.config.vocab_size as u32;
        assert!(
            start < v && end < v,
            "start and end tokens must be in the vocabulary"
        );
        Ok(Self {
            model,
            start,
            end,
            step: StepLayers::new(model, format)?,
        })
    }

    /// How the per-word layers store their weights.
    pub fn format(&self) -> WeightFormat {
        self.step.format
    }

    /// Bytes of weights each word reads (at batch 1, the bound on its speed).
    pub fn step_bytes(&self) -> usize {
        self.step.bytes()
    }

    /// The initial rows for `features` (`[n, feature_dim]`): the image branch, zero states.
    fn rows(&self, features: &[f32]) -> Rows {
        let c = &self.model.config;
        assert_eq!(features.len() % c.feature_dim, 0, "feature rows");
        let n = features.len() / c.feature_dim;
        let mut image = Vec::new();
        self.step.image_dense.forward(features, n, &mut image);
        Rows {
            image: self.step.merge_lstm.project(&image, n),
            text_units: c.text_lstm,
            text: LstmState::zeros(n, c.text_lstm),
            merge: LstmState::zeros(n, c.merge_lstm),
            dec: LstmState::zeros(n, c.decoder_lstm),
        }
    }

    /// Feeds one token to every row and returns the log-probabilities of the next word,
    /// `[rows, vocab]`.
    fn step(&self, rows: &mut Rows, tokens: &[u32]) -> Vec<f32> {
        let m = self.model;
        let c = &m.config;
        let n = tokens.len();
        let l = &self.step;
        let w = l.text_lstm.projection_width();
        let words: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| &l.word_table[t as usize * w..(t as usize + 1) * w])
            .copied()
            .collect();
        l.text_lstm.step(&[], &words, &mut rows.text);
        let mut text = Vec::new();
        l.text_dense.forward(&rows.text.h, n, &mut text);
        l.merge_lstm.step(&text, &rows.image, &mut rows.merge);
        l.decoder_lstm.step(&rows.merge.h, &[], &mut rows.dec);
        let mut logits = Vec::new();
        l.output.forward(&rows.dec.h, n, &mut logits);
        for row in logits.chunks_mut(c.vocab_size) {
            log_softmax(row);
        }
        logits
    }

    /// Greedy decoding of every feature row: the most probable word at each step until the
    /// end token or `max_words`. Images that finish drop out of the batch.
    pub fn greedy(&self, features: &[f32], max_words: usize) -> Vec<Hypothesis> {
        // On a worker of the thread pool, with the others kept awake between the words'
        // products and each taking the same share of every product's weights (see
        // `autocaption_tensor::team`).
        team::run(|| self.greedy_here(features, max_words))
    }

    fn greedy_here(&self, features: &[f32], max_words: usize) -> Vec<Hypothesis> {
        let v = self.model.config.vocab_size;
        let mut rows = self.rows(features);
        let n = rows.len();
        let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut log_prob = vec![0.0f64; n];
        let mut done = vec![false; n];
        let mut active: Vec<usize> = (0..n).collect(); // image of each row
        let mut feed = vec![self.start; n];
        for t in 0..=max_words {
            if active.is_empty() {
                break;
            }
            let lp = self.step(&mut rows, &feed);
            let mut keep = Vec::new();
            let mut next_active = Vec::new();
            feed.clear();
            for (r, &img) in active.iter().enumerate() {
                let row = &lp[r * v..(r + 1) * v];
                // At the last step only the end token may follow; a caption cut here is
                // marked unfinished.
                let w = argmax(row);
                if w == self.end {
                    log_prob[img] += row[w as usize] as f64;
                    done[img] = true;
                } else if t == max_words {
                    // Out of words: cut without an end token.
                } else {
                    log_prob[img] += row[w as usize] as f64;
                    tokens[img].push(w);
                    keep.push(r);
                    next_active.push(img);
                    feed.push(w);
                }
            }
            if keep.len() != active.len() {
                rows.select(&keep, self.model, self.step.merge_lstm.projection_width());
            }
            active = next_active;
        }
        tokens
            .into_iter()
            .zip(log_prob)
            .zip(done)
            .map(|((t, lp), d)| Hypothesis::new(t, lp, d, 0.0))
            .collect()
    }

    /// Beam search of width `opts.beam` for every feature row. Returns, per image, the
    /// hypotheses found (up to `beam`), best first by length-normalised score.
    ///
    /// At each step the `beam` best continuations of the live beams are kept; those that
    /// end become finished hypotheses and leave the beam (which narrows). An image stops
    /// when no live beam is left, when it has `beam` finished hypotheses and no live beam
    /// can still beat the worst of them (log-probabilities only fall, so a live beam's
    /// best possible score is its log-probability normalised by the longest length), or
    /// at `max_words`, where live beams are kept as unfinished hypotheses.
    pub fn beam(&self, features: &[f32], opts: &DecodeOptions) -> Vec<Vec<Hypothesis>> {
        team::run(|| self.beam_here(features, opts))
    }

    fn beam_here(&self, features: &[f32], opts: &DecodeOptions) -> Vec<Vec<Hypothesis>> {
        let rows = self.rows(features);
        let n = rows.len();
        let mut steps = IncrementalSteps {
            decoder: self,
            rows,
        };
        let v = self.model.config.vocab_size;
        beam_search(&mut steps, n, self.start, self.end, v, opts)
    }
}

/// What beam search needs from a way of decoding: one step for every live row, and the
/// rows kept.
pub(crate) trait Steps {
    /// Next-word log-probabilities, `[rows, vocab]`, after feeding each row its token.
    fn step(&mut self, feed: &[u32]) -> Vec<f32>;
    /// Keeps rows `keep` (in that order; an index may repeat).
    fn select(&mut self, keep: &[usize]);
}

/// The incremental decoder's steps: LSTM states carried from word to word.
struct IncrementalSteps<'a, 'm> {
    decoder: &'a Decoder<'m>,
    rows: Rows,
}

impl Steps for IncrementalSteps<'_, '_> {
    fn step(&mut self, feed: &[u32]) -> Vec<f32> {
        self.decoder.step(&mut self.rows, feed)
    }

    fn select(&mut self, keep: &[usize]) {
        let d = self.decoder;
        self.rows
            .select(keep, d.model, d.step.merge_lstm.projection_width());
    }
}

/// Beam search of width `opts.beam` over `n` images whose rows `steps` holds, one per image
/// to start with (see [`Decoder::beam`]).
pub(crate) fn beam_search(
    steps: &mut dyn Steps,
    n: usize,
    start: u32,
    end: u32,
    v: usize,
    opts: &DecodeOptions,
) -> Vec<Vec<Hypothesis>> {
    let k = opts.beam.max(1);
    let alpha = opts.length_alpha;
    struct Live {
        img: usize,
        tokens: Vec<u32>,
        log_prob: f64,
    }
    let mut live: Vec<Live> = (0..n)
        .map(|img| Live {
            img,
            tokens: Vec::new(),
            log_prob: 0.0,
        })
        .collect();
    let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); n];
    let mut feed = vec![start; n];
    let best_possible = (opts.max_words + 1) as f64;
    for t in 0..=opts.max_words {
        if live.is_empty() {
            break;
        }
        let lp = steps.step(&feed);
        // The live beams of each image are contiguous rows.
        let mut next: Vec<Live> = Vec::new();
        let mut keep = Vec::new();
        feed.clear();
        let mut r0 = 0;
        while r0 < live.len() {
            let img = live[r0].img;
            let r1 = r0 + live[r0..].iter().take_while(|l| l.img == img).count();
            // Top k candidates over (beam, word), by total log-probability, ties to
            // the earlier beam and then the lower word.
            let mut cand: Vec<(f64, usize, u32)> = Vec::with_capacity(k * (r1 - r0));
            for (r, beam) in live.iter().enumerate().take(r1).skip(r0) {
                let row = &lp[r * v..(r + 1) * v];
                let last = t == opts.max_words;
                for w in top_k(row, k) {
                    if last && w != end {
                        continue;
                    }
                    cand.push((beam.log_prob + row[w as usize] as f64, r, w));
                }
                if last && !cand.iter().any(|c| c.1 == r) {
                    // Out of words: the beam is kept, unfinished.
                    finished[img].push(Hypothesis::new(
                        beam.tokens.clone(),
                        beam.log_prob,
                        false,
                        alpha,
                    ));
                }
            }
            cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            cand.truncate(k);
            for (total, r, w) in cand {
                let mut tokens = live[r].tokens.clone();
                if w == end {
                    finished[img].push(Hypothesis::new(tokens, total, true, alpha));
                } else {
                    tokens.push(w);
                    next.push(Live {
                        img,
                        tokens,
                        log_prob: total,
                    });
                    keep.push(r);
                    feed.push(w);
                }
            }
            // Stop this image when no live beam can beat the worst of k finished.
            let f = &finished[img];
            if f.len() >= k {
                let mut scores: Vec<f64> = f.iter().map(|h| h.score).collect();
                scores.sort_by(|a, b| b.total_cmp(a));
                let worst_kept = scores[k - 1];
                let from = next.len() - next.iter().rev().take_while(|l| l.img == img).count();
                let can_beat = next[from..]
                    .iter()
                    .any(|l| l.log_prob / best_possible.powf(alpha) > worst_kept);
                if !can_beat {
                    next.truncate(from);
                    keep.truncate(from);
                    feed.truncate(from);
                }
            }
            r0 = r1;
        }
        steps.select(&keep);
        live = next;
    }
    finished
        .into_iter()
        .map(|mut f| {
            f.sort_by(|a, b| b.score.total_cmp(&a.score));
            f.truncate(k);
            f
        })
        .collect()
}

autocaption_tensor::simd_fn! {
    /// `x ← x − log Σ exp x`, in place. Sixteen running maxima and sums, combined in a fixed
    /// order, let the loops vectorise and keep the result independent of the machine's
    /// vector width.
    fn log_softmax(x: &mut [f32]) {
        const L: usize = 16;
        let mut lane_max = [f32::NEG_INFINITY; L];
        let chunks = x.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for (m, &v) in lane_max.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        let max = lane_max.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut lane_sum = [0.0f32; L];
        let chunks = x.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for (s, &v) in lane_sum.iter_mut().zip(c) {
                *s += exp(v - max);
            }
        }
        let sum = lane_sum.iter().sum::<f32>() + tail.iter().map(|&v| exp(v - max)).sum::<f32>();
        let lse = max + sum.ln();
        for v in x {
            *v -= lse;
        }
    }
}

/// Index of the largest value, the lowest index among equals.
fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
fn top_k(x: &[f32], k: usize) -> Vec<u32> {
    if k == 1 {
        return vec![argmax(x)];
    }
    let mut idx: Vec<u32> = Vec::with_capacity(k + 1);
    for (i, &v) in x.iter().enumerate() {
        if idx.len() == k && v <= x[idx[k - 1] as usize] {
            continue;
        }
        let at = idx.partition_point(|&j| x[j as usize] >= v);
        idx.insert(at, i as u32);
        idx.truncate(k);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MergeConfig;
    use autocaption_tensor::Rng;

    fn tiny(vocab: usize) -> MergeConfig {
        MergeConfig {
            vocab_size: vocab,
            ..crate::merge::tests::tiny()
        }
    }

    /// A random model whose output bias makes the end token (2) likely enough that
    /// captions end at varied lengths.
    fn model(seed: u64, vocab: usize) -> MergeModel {
        let mut m = MergeModel::new(tiny(vocab), seed);
        let mut rng = Rng::new(seed + 100);
        for p in m.params_mut() {
            for v in &mut p.value {
                *v *= 3.0;
                *v += rng.uniform(-0.2, 0.2);
            }
        }
        m.output.bias.value[2] += 1.0;
        m
    }

    fn features(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n * 6).map(|_| rng.uniform(0.0, 2.0)).collect()
    }

    #[test]
    fn beam_of_one_is_greedy() {
        for seed in 0..40 {
            let m = model(seed, 9 + seed as usize % 5);
            let d = Decoder::new(&m, 1, 2);
            let f = features(seed, 7);
            let max_words = 1 + seed as usize % 9;
            let greedy = d.greedy(&f, max_words);
            let opts = DecodeOptions {
                max_words,
                beam: 1,
                length_alpha: 0.7,
            };
            let beam = d.beam(&f, &opts);
            for (g, b) in greedy.iter().zip(&beam) {
                assert_eq!(b.len(), 1, "seed {seed}");
                assert_eq!(g.tokens, b[0].tokens, "seed {seed}");
                assert_eq!(g.finished, b[0].finished, "seed {seed}");
                assert_eq!(g.log_prob, b[0].log_prob, "seed {seed}");
            }
        }
    }

    #[test]
    fn greedy_matches_the_full_forward() {
        // Each greedy word is the argmax of the packed full-sequence forward (checked
        // against Keras) over the caption so far: the incremental state is right.
        for seed in 0..10 {
            let mut m = model(seed, 12);
            let f = features(seed, 3);
            let out = Decoder::new(&m, 1, 2).greedy(&f, 6);
            for (i, h) in out.iter().enumerate() {
                let mut prefix = vec![1u32];
                prefix.extend(&h.tokens);
                let steps = prefix.len();
                let probs = m.predict_all_positions(&prefix, steps, &f[i * 6..(i + 1) * 6]);
                let mut lp = 0.0f64;
                for t in 0..steps {
                    let row = &probs[t * 12..(t + 1) * 12];
                    let w = argmax(row);
                    if t < h.tokens.len() {
                        assert_eq!(w, h.tokens[t], "seed {seed} image {i} step {t}");
                    } else if h.finished {
                        assert_eq!(w, 2, "seed {seed} image {i}: should end");
                    }
                    if t < h.tokens.len() || h.finished {
                        lp += (row[w as usize] as f64).ln();
                    }
                }
                assert!((lp - h.log_prob).abs() < 1e-4, "{lp} vs {}", h.log_prob);
            }
        }
    }

    #[test]
    fn batched_equals_one_at_a_time_and_is_deterministic() {
        let m = model(3, 11);
        let d = Decoder::new(&m, 1, 2);
        let f = features(4, 6);
        let opts = DecodeOptions {
            max_words: 7,
            beam: 3,
            length_alpha: 0.7,
        };
        let all = d.beam(&f, &opts);
        assert_eq!(all, d.beam(&f, &opts));
        // Every product here is row-independent (panel products, the image branch too), so
        // an image's hypotheses are the same bits alone or in a batch.
        let same = |a: &Hypothesis, b: &Hypothesis| a == b;
        for i in 0..6 {
            let one = d.beam(&f[i * 6..(i + 1) * 6], &opts);
            assert_eq!(one[0].len(), all[i].len());
            for (a, b) in one[0].iter().zip(&all[i]) {
                assert!(same(a, b), "image {i}: {a:?} vs {b:?}");
            }
        }
        let g = d.greedy(&f, 7);
        assert_eq!(g, d.greedy(&f, 7));
        for i in 0..6 {
            assert!(same(&d.greedy(&f[i * 6..(i + 1) * 6], 7)[0], &g[i]));
        }
    }

    #[test]
    fn a_beam_wide_enough_finds_the_most_probable_caption() {
        // With alpha 0 (raw log-probability), a beam wide enough to hold every prefix is
        // an exhaustive search: it must find the most probable caption, which enumeration
        // over a tiny vocabulary gives independently.
        let m = model(7, 4);
        let d = Decoder::new(&m, 1, 2);
        let f = features(8, 3);
        let max_words = 4;
        for i in 0..3 {
            let fi = &f[i * 6..(i + 1) * 6];
            let opts = |beam| DecodeOptions {
                max_words,
                beam,
                length_alpha: 0.0,
            };
            let wide = &d.beam(fi, &opts(256))[0][0];
            let best = exhaustive(&d, fi, max_words);
            assert!(wide.finished);
            assert!(
                (wide.log_prob - best).abs() < 1e-9,
                "{} vs {best}",
                wide.log_prob
            );
        }
    }

    /// The most probable finished caption of at most `max_words` words, by enumeration.
    fn exhaustive(d: &Decoder, f: &[f32], max_words: usize) -> f64 {
        let v = d.model.config.vocab_size;
        let mut best = f64::NEG_INFINITY;
        let mut stack: Vec<(Vec<u32>, f64)> = vec![(vec![], 0.0)];
        while let Some((tokens, lp)) = stack.pop() {
            let mut rows = d.rows(f);
            let mut probs = d.step(&mut rows, &[d.start]);
            for &w in &tokens {
                probs = d.step(&mut rows, &[w]);
            }
            best = best.max(lp + probs[d.end as usize] as f64);
            if tokens.len() < max_words {
                for w in 0..v as u32 {
                    if w != d.end {
                        let mut t = tokens.clone();
                        t.push(w);
                        stack.push((t, lp + probs[w as usize] as f64));
                    }
                }
            }
        }
        best
    }

    #[test]
    fn half_precision_weights_give_the_same_captions() {
        // Rounding the per-word weights to f16 moves log-probabilities by ~1e-4: on these
        // random models (steeper than trained ones) every caption stays the same.
        for seed in 0..20 {
            let m = model(seed, 15);
            let f = features(seed, 5);
            let exact = Decoder::new(&m, 1, 2);
            let half = Decoder::with_format(&m, 1, 2, WeightFormat::F16).unwrap();
            assert_eq!(half.step_bytes() * 2, exact.step_bytes());
            let opts = DecodeOptions {
                max_words: 8,
                beam: 3,
                length_alpha: 0.7,
            };
            for (a, b) in exact.beam(&f, &opts).iter().zip(&half.beam(&f, &opts)) {
                for (a, b) in a.iter().zip(b) {
                    assert_eq!(a.tokens, b.tokens, "seed {seed}");
                    assert!((a.log_prob - b.log_prob).abs() < 1e-2, "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn int8_weights_keep_most_captions_and_a_row_its_bits_in_any_batch() {
        // Int8 per-word weights move log-probabilities a little on these steep random models:
        // nearly every caption stays the same, and a row decodes alike alone or in a batch.
        let (mut same, mut all) = (0, 0);
        for seed in 0..20 {
            let m = model(seed, 15);
            let f = features(seed, 5);
            let exact = Decoder::new(&m, 1, 2);
            let q = Decoder::with_format(&m, 1, 2, WeightFormat::Int8).unwrap();
            assert_eq!(q.format(), WeightFormat::Int8);
            assert!(q.step_bytes() * 3 < exact.step_bytes());
            let opts = DecodeOptions {
                max_words: 8,
                beam: 3,
                length_alpha: 0.7,
            };
            let (a, b) = (exact.beam(&f, &opts), q.beam(&f, &opts));
            for (a, b) in a.iter().zip(&b) {
                all += 1;
                same += usize::from(a[0].tokens == b[0].tokens);
                if a[0].tokens == b[0].tokens {
                    assert!((a[0].log_prob - b[0].log_prob).abs() < 0.1, "seed {seed}");
                }
            }
            let alone = q.beam(&f[6..12], &opts);
            assert_eq!(alone[0].len(), b[1].len());
            for (x, y) in alone[0].iter().zip(&b[1]) {
                assert_eq!(x.tokens, y.tokens, "seed {seed}");
                assert_eq!(x.log_prob.to_bits(), y.log_prob.to_bits(), "seed {seed}");
            }
        }
        // 100 of 100 when written.
        assert!(same * 20 >= all * 19, "{same} of {all} captions as f32");
    }

    #[test]
    fn a_weight_that_is_not_finite_is_refused_for_int8_by_name() {
        let mut m = model(1, 9);
        m.output.kernel.value[3] = f32::NAN;
        let err = Decoder::with_format(&m, 1, 2, WeightFormat::Int8).unwrap_err();
        assert!(
            err.to_string()
                .contains("layer output: weight [0, 3] = NaN is not finite"),
            "{err}"
        );
    }

    #[test]
    fn a_weight_beyond_half_precision_is_refused_by_name() {
        let mut m = model(1, 9);
        m.output.kernel.value[3] = 1e6;
        let err = Decoder::with_format(&m, 1, 2, WeightFormat::F16).unwrap_err();
        assert!(
            err.to_string().contains("layer output: weight [0, 3]"),
            "{err}"
        );
    }

    #[test]
    fn top_k_orders_and_breaks_ties_low() {
        let x = [0.5, 2.0, 2.0, -1.0, 3.0];
        assert_eq!(top_k(&x, 3), vec![4, 1, 2]);
        assert_eq!(top_k(&x, 1), vec![4]);
        assert_eq!(top_k(&x, 9), vec![4, 1, 2, 0, 3]);
        assert_eq!(argmax(&[1.0, 1.0]), 0);
    }
}
