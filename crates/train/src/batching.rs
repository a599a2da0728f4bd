use autocaption_tensor::Rng;

/// Captions per sorting window, in batches: large enough that batches come out with nearly
/// equal lengths, small enough that batch composition still varies between epochs.
const WINDOW_BATCHES: usize = 50;

/// Splits captions `0..lengths.len()` into batches of at most `batch` whose lengths are
/// close: shuffle, sort windows of `batch·50` by length, cut into batches, shuffle the batch
/// order. Deterministic for a given `rng` state.
pub fn bucketed_batches(lengths: &[usize], batch: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    assert!(batch > 0, "batch size must be positive");
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch));
    for window in order.chunks_mut(batch * WINDOW_BATCHES) {
        window.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(window.chunks(batch).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caption_once_and_batches_are_tight() {
        let mut rng = Rng::new(1);
        let lengths: Vec<usize> = (0..10_000).map(|_| 2 + rng.below(30)).collect();
        let batches = bucketed_batches(&lengths, 64, &mut Rng::new(2));
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(
            (padded as f64) < 1.05 * real as f64,
            "padding overhead {padded} vs {real}"
        );
        assert_eq!(batches, bucketed_batches(&lengths, 64, &mut Rng::new(2)));
    }
}
