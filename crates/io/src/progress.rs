/// How a library reports progress on long work; the binary decides how (or whether) to show it.
pub trait Progress: Sync {
    /// A new phase of `total` items (0 when unknown), described by `what`.
    fn start(&self, what: &str, total: u64);
    /// `n` more items are done.
    fn advance(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
}

/// A progress sink that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
