//! Ahead-of-time compiler from ONNX to dependency-free C99.
//!
//! The pipeline: every node goes through the op [registry](ops::Registry) (an unknown op
//! fails with the list of every unsupported node), becomes a [typed graph](graph::Graph)
//! with every shape inferred and constants folded, is [simplified](passes), and is
//! [emitted](emit) as one `NAME.c` and `NAME.h`: weights as `static const` arrays, one
//! scratch arena (caller-provided or static, its size in the header), no heap, no I/O,
//! nothing beyond the C99 standard library and libm.

mod dtype;
pub mod emit;
pub mod graph;
mod loops;
pub mod ops;
pub mod passes;
pub mod quant;
pub mod weights;

use std::collections::HashMap;
use std::path::Path;

use autocaption_onnx::proto::ModelProto;
use autocaption_onnx::Tensor;

pub use dtype::DType;
pub use emit::{CSources, Interface};
pub use passes::PassStats;
pub use quant::Quantize;
pub use weights::WeightStorage;

/// Settings of one compilation.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifier prefix and file stem of the output (`NAME.c`, `NAME_run`).
    pub name: String,
    /// Sizes of symbolic dimensions (`N` → 1).
    pub dims: HashMap<String, usize>,
    /// Inputs fixed at compile time (an input deciding a shape must be).
    pub fixed: HashMap<String, Tensor>,
    /// Size of every symbolic (or unknown) leading dimension not named in `dims`.
    pub batch: Option<usize>,
    /// Where the weights go.
    pub weights: WeightStorage,
    /// Weight quantisation (None: float32 as given).
    pub quantize: Option<Quantize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            name: "model".into(),
            dims: HashMap::new(),
            fixed: HashMap::new(),
            batch: None,
            weights: WeightStorage::Embed,
            quantize: None,
        }
    }
}

/// A node the compiler cannot build.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedNode {
    /// The node's name (or `#index`).
    pub node: String,
    /// Its op type.
    pub op_type: String,
    /// Why.
    pub reason: String,
}

/// Why a model does not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// Nodes whose op or attributes are not supported: all of them.
    #[error("{} unsupported node(s): {}; supported op types: {}", .0.len(), list_unsupported(.0), ops::Registry::new().op_types().join(", "))]
    Unsupported(Vec<UnsupportedNode>),
    /// A graph input or output that cannot be used.
    #[error("'{name}' {message}")]
    Input {
        /// The input's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An initializer that cannot be read.
    #[error("initializer '{name}': {message}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A node whose inputs or attributes are invalid.
    #[error("node '{node}' ({op_type}): {message}")]
    Node {
        /// The node.
        node: String,
        /// Its op type.
        op_type: String,
        /// What is wrong.
        message: String,
    },
    /// A node input that decides a shape is not known at compile time.
    #[error("node '{node}' ({op_type}): input {slot} ('{input}') decides an output shape and must be known at compile time{}", if *.is_graph_input { format!("; fix it with --fix {input}=FILE.pb") } else { String::new() })]
    NeedsConstant {
        /// The node.
        node: String,
        /// Its op type.
        op_type: String,
        /// The input slot.
        slot: usize,
        /// The value's name.
        input: String,
        /// Whether the value is a graph input (and can be fixed).
        is_graph_input: bool,
    },
    /// Writing the output failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
}

fn list_unsupported(nodes: &[UnsupportedNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("'{}' ({}: {})", n.node, n.op_type, n.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

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
        let mut written = Vec::new();
        for (file, bytes) in files {
            let path = dir.join(file);
            autocaption_io::write_atomic(&path, bytes).map_err(|e| match e {
                autocaption_io::IoError::Io { path, error } => CompileError::Io { path, error },
                other => io(&path, std::io::Error::other(other.to_string())),
            })?;
            written.push(path);
        }
        Ok(written)
    }
}
