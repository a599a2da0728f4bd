//! What a compilation is asked to do ([`Options`]) and why it can fail ([`CompileError`]).

use std::collections::HashMap;

use autocaption_onnx::Tensor;

use crate::quant::Quantize;
use crate::weights::WeightStorage;

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
    /// Nodes whose op or attributes are not supported: all of them, and the op types the
    /// compiler supports.
    #[error("{} unsupported node(s): {}; supported op types: {}", .0.len(), list_unsupported(.0), .1.join(", "))]
    Unsupported(Vec<UnsupportedNode>, Vec<&'static str>),
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
