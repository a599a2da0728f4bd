//! Human-readable summaries of a prepared dataset (what `prepare` prints and the demo's
//! report holds).

use std::fmt::Write as _;

use autocaption_data::{LengthStats, Manifest, Report};

pub use autocaption_io::thousands;

/// The quirk report, or nothing when there was none.
pub fn quirks(report: &Report) -> String {
    if report.is_empty() {
        return String::new();
    }
    let mut s = String::from("Noted while reading:\n");
    for n in report.notes() {
        let _ = writeln!(s, "{:>9}  {}", thousands(n.count), n.kind.describe());
        for e in n.examples.iter().take(2) {
            let _ = writeln!(s, "           e.g. {e}");
        }
    }
    s
}

/// A text histogram of caption lengths, bucketed to at most about 20 rows.
pub fn length_histogram(l: &LengthStats) -> String {
    let top = l.histogram.len();
    if top == 0 {
        return String::new();
    }
    let width = top.div_ceil(20).max(1);
    let buckets: Vec<(usize, u64)> = (l.min / width * width..top)
        .step_by(width)
        .map(|lo| (lo, l.histogram[lo..(lo + width).min(top)].iter().sum()))
        .collect();
    let most = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    let mut s = String::new();
    for (lo, count) in buckets {
        let label = if width == 1 {
            format!("{lo:>7}")
        } else {
            format!("{:>3}-{:<3}", lo, lo + width - 1)
        };
        let bar = "#".repeat(((count as f64 / most as f64) * 40.0).round() as usize);
        let _ = writeln!(s, "  {label} {:>8}  {bar}", thousands(count as usize));
    }
    s
}

/// The statistics block of `prepare`.
pub fn prepared(m: &Manifest) -> String {
    let st = &m.stats;
    let mut s = String::new();
    let file = m.source.path.display();
    let _ = writeln!(
        s,
        "Read {file} ({}): {} caption records for {} image names",
        m.source.format,
        thousands(m.source.records_read),
        thousands(m.source.names_read)
    );
    let images: usize = st.images.values().sum();
    let captions: usize = st.captions.values().sum();
    let _ = writeln!(
        s,
        "Kept {} images with {} captions\n",
        thousands(images),
        thousands(captions)
    );
    let _ = writeln!(s, "  split      images   captions");
    for split in ["train", "dev", "test", "none"] {
        if let Some(n) = st.images.get(split) {
            let _ = writeln!(
                s,
                "  {split:<6} {:>10} {:>10}",
                thousands(*n),
                thousands(st.captions.get(split).copied().unwrap_or(0))
            );
        }
    }
    let _ = writeln!(
        s,
        "\nVocabulary: {} (training words seen at least {} times, padding included); {} with every word",
        thousands(st.vocab_size),
        m.settings.min_count,
        thousands(st.vocab_size_all_words)
    );
    let _ = writeln!(
        s,
        "Dev and test tokens outside the vocabulary: {:.2}%",
        st.heldout_oov_rate * 100.0
    );
    let l = &st.lengths;
    let _ = writeln!(
        s,
        "Caption length in words (start and end tokens included): min {}, mean {:.1}, max {}",
        l.min, l.mean, l.max
    );
    s.push_str(&length_histogram(l));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let l = LengthStats {
            min: 2,
            max: 45,
            mean: 10.0,
            histogram: (0..46).map(|i| i as u64).collect(),
        };
        let h = length_histogram(&l);
        assert!(h.lines().count() <= 23, "{h}");
        assert!(h.contains("  0-2  ") || h.contains("0-2"), "{h}");
    }
}
