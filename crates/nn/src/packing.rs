/// The layout of a packed batch: sequences sorted by length (longest first) and stored
/// time-major, so that step `t` occupies rows `offset(t) .. offset(t) + active(t)`, which
/// belong to sequences `0 .. active(t)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    lengths: Vec<usize>,
    offsets: Vec<usize>,
    active: Vec<usize>,
}

impl Packing {
    /// A packing for sequences of these lengths, which must be sorted longest first and be
    /// at least 1.
    pub fn new(lengths: &[usize]) -> Self {
        assert!(
            lengths.windows(2).all(|w| w[0] >= w[1]),
            "lengths must be sorted longest first"
        );
        assert!(
            lengths.iter().all(|&l| l > 0),
            "every sequence needs at least one step"
        );
        let steps = lengths.first().copied().unwrap_or(0);
        let mut offsets = Vec::with_capacity(steps + 1);
        let mut active = Vec::with_capacity(steps);
        let mut off = 0;
        for t in 0..steps {
            let a = lengths.iter().take_while(|&&l| l > t).count();
            offsets.push(off);
            active.push(a);
            off += a;
        }
        offsets.push(off);
        Self {
            lengths: lengths.to_vec(),
            offsets,
            active,
        }
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.lengths.len()
    }

    /// Time steps (the longest length).
    pub fn steps(&self) -> usize {
        self.active.len()
    }

    /// Total rows (the sum of the lengths).
    pub fn rows(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    /// First row of step `t`.
    pub fn offset(&self, t: usize) -> usize {
        self.offsets[t]
    }

    /// Sequences still running at step `t`.
    pub fn active(&self, t: usize) -> usize {
        self.active[t]
    }

    /// Sequence lengths, longest first.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The row holding step `t` of sequence `b` (which must still be running then).
    pub fn row(&self, t: usize, b: usize) -> usize {
        debug_assert!(b < self.active[t]);
        self.offsets[t] + b
    }

    /// For every row, the sequence it belongs to.
    pub fn sequence_of_rows(&self) -> Vec<usize> {
        (0..self.steps()).flat_map(|t| 0..self.active[t]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = Packing::new(&[3, 2, 2, 1]);
        assert_eq!((p.batch(), p.steps(), p.rows()), (4, 3, 8));
        assert_eq!((p.offset(1), p.active(1)), (4, 3));
        assert_eq!((p.offset(2), p.active(2)), (7, 1));
        assert_eq!(p.row(1, 2), 6);
        assert_eq!(p.sequence_of_rows(), vec![0, 1, 2, 3, 0, 1, 2, 0]);
    }
}
