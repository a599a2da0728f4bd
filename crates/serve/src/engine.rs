//! The batching engine: one thread, off the async runtime, takes decoded images from a
//! channel, gathers the requests that arrive together, encodes them in one forward pass and
//! captions them in one decoder batch per set of options.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autocaption_io::NoProgress;
use autocaption_pipeline::{Caption, CaptionOptions, Captioner};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// One image, preprocessed for the encoder, and where its captions go.
pub(crate) struct Job {
    pub input: Vec<f32>,
    pub opts: CaptionOptions,
    pub reply: oneshot::Sender<Result<Done, String>>,
    pub queued_at: Instant,
}

/// One image's captions and what they cost.
#[derive(Debug)]
pub(crate) struct Done {
    pub captions: Vec<Caption>,
    pub queue: Duration,
    pub encode: Duration,
    pub caption: Duration,
    pub batch: usize,
}

/// The engine thread and the way in.
pub(crate) struct Engine {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the engine. `upstream` counts requests admitted whose images are not yet in
    /// the channel (being read or decoded): while it is not zero, a batch waits up to `wait`
    /// for them; when it is zero, a batch goes at once, so a lone request never waits.
    pub(crate) fn start(
        captioner: Arc<Captioner>,
        max_batch: usize,
        wait: Duration,
        upstream: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("autocaption-engine".into())
            .spawn(move || run(&captioner, &rx, max_batch, wait, &upstream, &m))
            .expect("spawning the engine thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
            metrics,
        }
    }

    /// Queues one image; false when the engine has stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        let Some(tx) = &self.tx else { return false };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        if tx.send(job).is_err() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queued jobs are done.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    captioner: &Captioner,
    rx: &mpsc::Receiver<Job>,
    max_batch: usize,
    wait: Duration,
    upstream: &AtomicUsize,
    metrics: &Metrics,
) {
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + wait;
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            if let Ok(j) = rx.try_recv() {
                jobs.push(j);
                continue;
            }
            if upstream.load(Ordering::Acquire) == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_micros(500))) {
                Ok(j) => jobs.push(j),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queue_depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        // A request that timed out or whose client left is not worth computing.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        metrics.batch.observe(jobs.len() as f64);
        let result = catch_unwind(AssertUnwindSafe(|| batch(captioner, &mut jobs)));
        if result.is_err() {
            for j in jobs.drain(..) {
                let _ = j.reply.send(Err("the engine failed on this batch".into()));
            }
        }
    }
}

/// Encodes every job's image in one pass, then captions each set of options in one batch.
fn batch(captioner: &Captioner, jobs: &mut Vec<Job>) {
    let started = Instant::now();
    let encoder = captioner
        .encoder()
        .expect("a serving captioner has an encoder");
    let inputs: Vec<Vec<f32>> = jobs
        .iter_mut()
        .map(|j| std::mem::take(&mut j.input))
        .collect();
    let features = encoder.forward(&inputs);
    drop(inputs);
    let encode = started.elapsed();
    let dim = encoder.dim();
    let n = jobs.len();
    // Each job's captions and the time its group took to caption, or why it failed.
    type Answer = Result<(Vec<Caption>, Duration), String>;
    let mut answers: Vec<Option<Answer>> = (0..n).map(|_| None).collect();
    let mut todo: Vec<usize> = (0..n).collect();
    while let Some(&lead) = todo.first() {
        let opts = jobs[lead].opts;
        let (group, rest): (Vec<usize>, Vec<usize>) =
            todo.iter().partition(|&&i| jobs[i].opts == opts);
        todo = rest;
        let rows: Vec<f32> = group
            .iter()
            .flat_map(|&i| features[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let t = Instant::now();
        let captions = captioner.caption_features(&rows, &opts, &NoProgress);
        let took = t.elapsed();
        match captions {
            Ok(c) => {
                for (&i, c) in group.iter().zip(c) {
                    answers[i] = Some(Ok((c, took)));
                }
            }
            Err(e) => {
                for &i in &group {
                    answers[i] = Some(Err(e.to_string()));
                }
            }
        }
    }
    for (j, a) in jobs.drain(..).zip(answers) {
        let done = match a.expect("every job is in one group") {
            Ok((captions, caption)) => Ok(Done {
                captions,
                queue: started.saturating_duration_since(j.queued_at),
                encode,
                caption,
                batch: n,
            }),
            Err(e) => Err(e),
        };
        let _ = j.reply.send(done);
    }
}
