//! Ahead-of-time compiler from ONNX to dependency-free C99.
//!
//! The pipeline: every node goes through the op [registry](ops::Registry) (an unknown op
//! fails with the list of every unsupported node), becomes a [typed graph](graph::Graph)
//! with every shape inferred and constants folded, is [simplified](passes), and is
//! [emitted](emit) as one `NAME.c` and `NAME.h`: the weights in one aligned image, packed
//! for their kernels (embedded, or an external blob: [`weights`]; optionally int8:
//! [`quant`]), one scratch arena (caller-provided or static, its size in the header), no
//! heap, no I/O, nothing beyond the C99 standard library and libm.

mod dtype;
pub mod emit;
mod emitter;
mod error;
pub mod graph;
pub mod ir;
mod loops;
pub mod ops;
pub mod passes;
mod plan;
pub mod quant;
pub mod weights;

use std::collections::HashMap;
use std::path::Path;

use autocaption_onnx::proto::ModelProto;

pub use dtype::DType;
pub use emit::{CSources, Interface};
pub use error::{CompileError, Options, UnsupportedNode};
pub use passes::PassStats;
pub use quant::Quantize;
pub use weights::WeightStorage;

/// A compiled model.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The generated files.
    pub sources: CSources,
    /// Nodes in the ONNX graph.
    pub onnx_nodes: usize,
    /// Nodes folded into constants while building the graph.
    pub folded: usize,
    /// What the passes removed or fused.
    pub passes: PassStats,
    /// Nodes left to run.
    pub nodes: usize,
    /// Op types of the nodes left, with counts.
    pub op_counts: Vec<(String, usize)>,
}

/// Compiles `model`; `label` names it in the generated comments.
pub fn compile(model: &ModelProto, opts: &Options, label: &str) -> Result<Compiled, CompileError> {
    if !opts
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || opts.name.is_empty()
        || opts.name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(CompileError::Input {
            name: opts.name.clone(),
            message: "is not a C identifier (letters, digits and '_', not starting with a digit)"
                .into(),
        });
    }
    let mut g = graph::import(model, opts)?;
    let onnx_nodes = model.graph.as_ref().map_or(0, |g| g.node.len());
    let passes = passes::simplify(&mut g);
    let sources = emit::emit(&g, &opts.name, label, opts.weights, opts.quantize)?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &g.nodes {
        *counts.entry(&n.op_type).or_default() += 1;
    }
    let mut op_counts: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    op_counts.sort();
    Ok(Compiled {
        sources,
        onnx_nodes,
        folded: g.folded,
        passes,
        nodes: g.nodes.len(),
        op_counts,
    })
}

impl Compiled {
    /// Writes `NAME.c` and `NAME.h` (with external weights `NAME.weights`, and `main.c` and
    /// `Makefile` with `with_main`) into `dir`, each atomically.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        with_main: bool,
    ) -> Result<Vec<std::path::PathBuf>, CompileError> {
        let io = |path: &Path, error| CompileError::Io {
            path: path.to_path_buf(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let staged: Vec<(std::path::PathBuf, Vec<u8>)> = self
            .files(name, with_main)
            .into_iter()
            .map(|(f, b)| (dir.join(f), b.to_vec()))
            .collect();
        autocaption_io::write_files_atomic(&staged).map_err(|e| match e {
            autocaption_io::IoError::Io { path, error } => CompileError::Io { path, error },
            other => io(dir, std::io::Error::other(other.to_string())),
        })?;
        Ok(staged.into_iter().map(|(p, _)| p).collect())
    }

    /// The files [`Compiled::write`] writes (names and contents): `NAME.c`, `NAME.h`,
    /// `NAME.weights` with external weights, and `main.c` and `Makefile` with `with_main`.
    pub fn files(&self, name: &str, with_main: bool) -> Vec<(String, &[u8])> {
        let mut files: Vec<(String, &[u8])> = vec![
            (format!("{name}.c"), self.sources.source.as_bytes()),
            (format!("{name}.h"), self.sources.header.as_bytes()),
        ];
        if let Some(blob) = &self.sources.blob {
            files.push((format!("{name}.weights"), blob));
        }
        if with_main {
            files.push(("main.c".into(), self.sources.main.as_bytes()));
            files.push(("Makefile".into(), self.sources.makefile.as_bytes()));
        }
        files
    }
}
