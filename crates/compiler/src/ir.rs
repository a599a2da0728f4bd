//! The compiler's shared IR: what is known of a value at compile time ([`Fact`]), how the
//! emitted code sees a value ([`Operand`]) and a node's operands during emission
//! ([`NodeIo`]). The ops, the graph, the passes, the planner and the C writer all speak it;
//! it depends on none of them.

use std::rc::Rc;

use autocaption_onnx::TensorData;

use crate::dtype::DType;

/// Output types and shapes, as shape inference gives them.
pub type Shaped = Vec<(DType, Vec<usize>)>;

/// What is known of a value at compile time: its type, its shape, and its elements when
/// they are constant.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Element type.
    pub dtype: DType,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, when known at compile time.
    pub value: Option<Rc<TensorData>>,
}

impl Fact {
    /// A fact with no known elements.
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        Self {
            dtype,
            shape,
            value: None,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why shape inference failed for a node.
#[derive(Debug)]
pub enum InferError {
    /// Input slot `.0` decides a shape and must be known at compile time.
    NeedsConstant(usize),
    /// The node is invalid for these inputs.
    Invalid(String),
}

impl From<String> for InferError {
    fn from(s: String) -> Self {
        InferError::Invalid(s)
    }
}

/// A node's inputs (None where the optional input is absent).
pub type Inputs<'a> = [Option<&'a Fact>];

/// A value as the emitted code sees it: a pointer expression, type and shape.
#[derive(Debug, Clone)]
pub struct Operand {
    /// C expression of the pointer to the first element.
    pub ptr: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// The elements, when constant.
    pub value: Option<Rc<TensorData>>,
}

impl Operand {
    /// The operand as a fact.
    pub fn fact(&self) -> Fact {
        Fact {
            dtype: self.dtype,
            shape: self.shape.clone(),
            value: self.value.clone(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The operands of one node during emission.
#[derive(Debug)]
pub struct NodeIo {
    /// Inputs (None where absent).
    pub inputs: Vec<Option<Operand>>,
    /// Outputs (None where absent or unused).
    pub outputs: Vec<Option<Operand>>,
    /// Pointer expression of the node's scratch memory (`unsigned char *`), if it asked for some.
    pub scratch: Option<String>,
}

impl NodeIo {
    /// The inputs as facts (for ops whose emission repeats their inference).
    pub fn facts(&self) -> Vec<Option<Fact>> {
        self.inputs
            .iter()
            .map(|o| o.as_ref().map(Operand::fact))
            .collect()
    }

    /// The pointer expression of input `k`, if present.
    pub fn input_ptr(&self, k: usize) -> Option<String> {
        self.inputs
            .get(k)
            .and_then(Option::as_ref)
            .map(|o| o.ptr.clone())
    }

    /// The pointer expression of output `k`, if present and used.
    pub fn output_ptr(&self, k: usize) -> Option<String> {
        self.outputs
            .get(k)
            .and_then(Option::as_ref)
            .map(|o| o.ptr.clone())
    }

    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> Result<&Operand, String> {
        self.inputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("input {i} is missing"))
    }
}
