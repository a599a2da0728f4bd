//! Counters, gauges and histograms in Prometheus' text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds (cumulative when written).
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            state: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    pub(crate) fn observe(&self, value: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            s.0[i] += 1;
        }
        s.1 += value;
        s.2 += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&s.0) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.2);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", s.1, s.2);
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// What the server counts.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Seconds from a caption request's start to its response.
    pub(crate) latency: Histogram,
    /// Images in each batch the engine ran.
    pub(crate) batch: Histogram,
    /// Images waiting for the engine.
    pub(crate) queue_depth: AtomicUsize,
    /// Caption requests admitted and not yet answered.
    pub(crate) in_flight: AtomicUsize,
    /// Images captioned.
    pub(crate) images: AtomicU64,
    /// Requests refused because the queue was full.
    pub(crate) rejected: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(LATENCY_BOUNDS),
            batch: Histogram::new(BATCH_BOUNDS),
            queue_depth: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            images: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Counts one answered request on `route` (a route of ours, or "other").
    pub(crate) fn count(&self, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_default() += 1;
    }

    /// Everything, in Prometheus' text format.
    pub(crate) fn render(&self, ready: bool) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP autocaption_requests_total HTTP requests answered, by route and status.\n\
             # TYPE autocaption_requests_total counter\n",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "autocaption_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        self.latency.write(
            &mut out,
            "autocaption_request_duration_seconds",
            "Time from a caption request's arrival to its response.",
        );
        self.batch.write(
            &mut out,
            "autocaption_batch_size",
            "Images encoded and captioned together.",
        );
        let gauges = [
            (
                "autocaption_queue_depth",
                "gauge",
                "Images decoded and waiting for the engine.",
                self.queue_depth.load(Ordering::Relaxed) as u64,
            ),
            (
                "autocaption_requests_in_flight",
                "gauge",
                "Caption requests admitted and not yet answered.",
                self.in_flight.load(Ordering::Relaxed) as u64,
            ),
            (
                "autocaption_images_captioned_total",
                "counter",
                "Images captioned.",
                self.images.load(Ordering::Relaxed),
            ),
            (
                "autocaption_requests_rejected_total",
                "counter",
                "Caption requests refused with 503 because the queue was full.",
                self.rejected.load(Ordering::Relaxed),
            ),
            (
                "autocaption_ready",
                "gauge",
                "1 when the model is loaded and requests are taken.",
                ready as u64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::new();
        m.batch.observe(1.0);
        m.batch.observe(3.0);
        m.batch.observe(300.0);
        m.count("/v1/captions", 200);
        m.count("/v1/captions", 200);
        let text = m.render(true);
        assert!(text.contains("autocaption_batch_size_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("autocaption_batch_size_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("autocaption_batch_size_bucket{le=\"256\"} 2\n"));
        assert!(text.contains("autocaption_batch_size_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("autocaption_batch_size_sum 304\n"));
        assert!(
            text.contains("autocaption_requests_total{route=\"/v1/captions\",status=\"200\"} 2\n")
        );
        assert!(text.contains("autocaption_ready 1\n"));
    }
}
