use serde::{Deserialize, Serialize};

/// Which end of a sequence padding or truncation applies to, as in Keras' `pad_sequences`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PadSide {
    /// At the start (Keras' default).
    #[default]
    Pre,
    /// At the end.
    Post,
}

/// Keras `pad_sequences`: every sequence made exactly `maxlen` long (the longest sequence's
/// length when `None`), returned row-major as `[sequences.len(), maxlen]` with the width.
pub fn pad_sequences<S: AsRef<[u32]>>(
    sequences: &[S],
    maxlen: Option<usize>,
    padding: PadSide,
    truncating: PadSide,
    value: u32,
) -> (Vec<u32>, usize) {
    let width = maxlen.unwrap_or_else(|| {
        sequences
            .iter()
            .map(|s| s.as_ref().len())
            .max()
            .unwrap_or(0)
    });
    let mut out = vec![value; sequences.len() * width];
    for (row, seq) in out.chunks_mut(width.max(1)).zip(sequences) {
        let seq = seq.as_ref();
        let kept = if seq.len() > width {
            match truncating {
                PadSide::Pre => &seq[seq.len() - width..],
                PadSide::Post => &seq[..width],
            }
        } else {
            seq
        };
        let start = match padding {
            PadSide::Pre => width - kept.len(),
            PadSide::Post => 0,
        };
        row[start..start + kept.len()].copy_from_slice(kept);
    }
    (out, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_keras_defaults_and_options() {
        // from keras.preprocessing.sequence import pad_sequences
        // pad_sequences([[1,2,3],[4],[5,6,7,8,9]], maxlen=4)
        // -> [[0,1,2,3],[0,0,0,4],[6,7,8,9]]
        let seqs = vec![vec![1, 2, 3], vec![4], vec![5, 6, 7, 8, 9]];
        let (p, w) = pad_sequences(&seqs, Some(4), PadSide::Pre, PadSide::Pre, 0);
        assert_eq!(w, 4);
        assert_eq!(p, vec![0, 1, 2, 3, 0, 0, 0, 4, 6, 7, 8, 9]);
        // pad_sequences(..., maxlen=4, padding='post', truncating='post')
        // -> [[1,2,3,0],[4,0,0,0],[5,6,7,8]]
        let (p, _) = pad_sequences(&seqs, Some(4), PadSide::Post, PadSide::Post, 0);
        assert_eq!(p, vec![1, 2, 3, 0, 4, 0, 0, 0, 5, 6, 7, 8]);
        let (p, w) = pad_sequences(&seqs, None, PadSide::Post, PadSide::Pre, 7);
        assert_eq!(w, 5);
        assert_eq!(&p[5..10], &[4, 7, 7, 7, 7]);
    }

    #[test]
    fn zero_width_and_empty_input() {
        let (p, w) = pad_sequences::<Vec<u32>>(&[], None, PadSide::Pre, PadSide::Pre, 0);
        assert!(p.is_empty() && w == 0);
        let (p, w) = pad_sequences(&[vec![1u32]], Some(0), PadSide::Pre, PadSide::Pre, 0);
        assert!(p.is_empty() && w == 0);
    }
}
