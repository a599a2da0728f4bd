//! The op registry: each ONNX op type maps to a builder that reads the node's attributes
//! into a small struct implementing [`Op`] (shape inference, optional compile-time
//! evaluation, C emission).

mod constants;
mod conv;
mod elementwise;
mod linalg;
mod reduce;
mod rnn;
mod select;
mod strided;
mod views;

use std::collections::HashMap;

use autocaption_onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use autocaption_onnx::{Tensor, TensorData};

use crate::dtype::{self, DType};
use crate::emitter::Emitter;
pub use crate::ir::{Fact, InferError, Inputs, NodeIo, Operand, Shaped};

/// One ONNX operation with its attributes.
pub trait Op: std::fmt::Debug {
    /// The type and shape of every output.
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError>;

    /// The outputs computed at compile time, where the op can and its inputs allow
    /// (constant folding); `None` leaves the node to run.
    fn eval(&self, _inputs: &Inputs, _outputs: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        None
    }

    /// Whether output 0 is input 0's bytes under another shape (Reshape, Squeeze, …):
    /// such a node emits no code.
    fn is_view(&self) -> bool {
        false
    }

    /// Whether output 0 equals input 0 and every other output is unused (Identity,
    /// Dropout at inference): such nodes are removed.
    fn is_identity(&self) -> bool {
        false
    }

    /// Bytes of scratch memory the emitted code needs while it runs.
    fn scratch_bytes(&self, _inputs: &Inputs) -> usize {
        0
    }

    /// The op computing this node and `next`, the only reader of its output 0, in one
    /// kernel (a bias, a residual Add, an activation), if this op can absorb it; `None`
    /// leaves the two nodes apart. The passes ask every node, so an op offers its own
    /// fusions.
    fn fuse(&self, _next: &Consumer) -> Option<Fused> {
        None
    }

    /// Writes the C statements computing the outputs.
    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String>;
}

/// The node reading a product, as [`Op::fuse`] sees it.
#[derive(Debug)]
pub struct Consumer<'a> {
    /// Its op type.
    pub op_type: &'a str,
    /// The product it reads (the fusing node's output 0).
    pub product: &'a Fact,
    /// Its one other input, if it has one.
    pub other: Option<&'a Fact>,
    /// Its output 0.
    pub out: &'a Fact,
}

/// A fusion an op offers: the fused op, and the input slot the consumer's other input
/// takes in the fused node (absent slots before it are filled with nothing).
pub struct Fused {
    /// The op computing both nodes.
    pub op: Box<dyn Op>,
    /// Where the consumer's other input goes, if it has one the fused op reads.
    pub slot: Option<usize>,
}

impl Fused {
    /// A fusion that reads no new input (an activation).
    pub fn new(op: impl Op + 'static) -> Self {
        Self {
            op: Box::new(op),
            slot: None,
        }
    }

    /// A fusion that reads the consumer's other input at `slot`.
    pub fn with_input(op: impl Op + 'static, slot: usize) -> Self {
        Self {
            op: Box::new(op),
            slot: Some(slot),
        }
    }
}

/// The node being built: its attributes and the opset it was written for.
pub struct NodeCx<'a> {
    /// The node.
    pub node: &'a NodeProto,
    /// The default-domain opset version of the model.
    pub opset: i64,
}

impl NodeCx<'_> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    fn typed(&self, name: &str, ty: AttributeType) -> Result<Option<&AttributeProto>, String> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type == Some(ty as i32) || a.r#type.is_none() => Ok(Some(a)),
            Some(a) => Err(format!(
                "attribute '{name}' has type {:?}, expected {}",
                a.r#type.and_then(|t| AttributeType::try_from(t).ok()),
                ty.as_str_name()
            )),
        }
    }

    /// An integer attribute.
    pub fn int(&self, name: &str) -> Result<Option<i64>, String> {
        Ok(self.typed(name, AttributeType::Int)?.and_then(|a| a.i))
    }

    /// An integer attribute with a default.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// An integer-list attribute.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    /// A float attribute.
    pub fn float(&self, name: &str) -> Result<Option<f32>, String> {
        Ok(self.typed(name, AttributeType::Float)?.and_then(|a| a.f))
    }

    /// A float-list attribute.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    /// A string attribute (UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .typed(name, AttributeType::String)?
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned()))
    }

    /// A string-list attribute.
    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, String> {
        Ok(self.typed(name, AttributeType::Strings)?.map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        }))
    }

    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, String> {
        self.typed(name, AttributeType::Tensor)?
            .and_then(|a| a.t.as_ref())
            .map(|t| Tensor::from_proto(t).map_err(|e| format!("attribute '{name}': {e}")))
            .transpose()
    }
}

/// Builds an op from a node.
pub type Builder = fn(&NodeCx) -> Result<Box<dyn Op>, String>;

/// Op type → builder, for the default ONNX domain.
pub struct Registry(HashMap<&'static str, Builder>);

impl Registry {
    /// Every op this compiler supports.
    pub fn new() -> Self {
        let mut r = Registry(HashMap::new());
        elementwise::register(&mut r);
        views::register(&mut r);
        strided::register(&mut r);
        select::register(&mut r);
        constants::register(&mut r);
        reduce::register(&mut r);
        linalg::register(&mut r);
        conv::register(&mut r);
        rnn::register(&mut r);
        r
    }

    /// Registers `op_type`.
    pub fn add(&mut self, op_type: &'static str, builder: Builder) {
        self.0.insert(op_type, builder);
    }

    /// The builder of `op_type`, if supported.
    pub fn get(&self, op_type: &str) -> Option<Builder> {
        self.0.get(op_type).copied()
    }

    /// The supported op types, sorted.
    pub fn op_types(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.0.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// The input at `slot` if present.
pub(crate) fn opt<'a>(inputs: &'a Inputs, slot: usize) -> Option<&'a Fact> {
    inputs.get(slot).copied().flatten()
}

/// The input at `slot`, which must be present.
pub(crate) fn req<'a>(inputs: &'a Inputs, slot: usize) -> Result<&'a Fact, InferError> {
    opt(inputs, slot).ok_or_else(|| InferError::Invalid(format!("input {slot} is missing")))
}

/// The integer elements of the input at `slot`, which must be known at compile time;
/// `None` when the optional input is absent.
pub(crate) fn const_ints(inputs: &Inputs, slot: usize) -> Result<Option<Vec<i64>>, InferError> {
    match opt(inputs, slot) {
        None => Ok(None),
        Some(f) => match &f.value {
            None => Err(InferError::NeedsConstant(slot)),
            Some(v) => dtype::to_i64(v)
                .map(Some)
                .ok_or_else(|| InferError::Invalid(format!("input {slot} must hold integers"))),
        },
    }
}

/// Fails unless `x` holds floats.
pub(crate) fn require_float(x: &Fact) -> Result<(), InferError> {
    if x.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("needs a float input, got {}", x.dtype).into())
    }
}

/// `axis` in `-rank..rank` as `0..rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// The shape both `a` and `b` broadcast to (numpy rules).
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < n {
            1
        } else {
            s[i + s.len() - n]
        }
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(format!(
                "shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"
            )),
        })
        .collect()
}

/// Element strides of a row-major tensor of `shape` read as `out` (broadcast dims stride 0).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<isize> {
    let own = contiguous_strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                own[i - lead]
            }
        })
        .collect()
}

/// Row-major element strides of `shape`.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![1isize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as isize;
    }
    s
}

/// An attribute's error naming it as unsupported.
pub(crate) fn unsupported<T>(what: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("unsupported: {what}"))
}
