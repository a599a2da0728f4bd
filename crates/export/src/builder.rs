//! A small helper to write ONNX graphs: initializers, nodes with generated output names,
//! attributes, typed inputs and outputs.

use autocaption_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value as Dim, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use autocaption_onnx::{Tensor, TensorData};

/// The ONNX opset the exported graphs use (LSTM with `layout`, Squeeze/Unsqueeze with axes
/// as inputs).
pub const OPSET: i64 = 17;

/// A graph under construction.
#[derive(Default)]
pub struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<autocaption_onnx::proto::TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    count: usize,
}

/// A dimension of a graph input or output: fixed, or named (the batch `N`).
pub enum D {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size.
    Named(&'static str),
}

fn value_info(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| autocaption_onnx::proto::tensor_shape_proto::Dimension {
            value: Some(match d {
                D::Fixed(n) => Dim::DimValue(*n as i64),
                D::Named(s) => Dim::DimParam((*s).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An attribute.
pub enum A<'a> {
    /// Integer.
    Int(&'a str, i64),
    /// Integers.
    Ints(&'a str, Vec<i64>),
}

impl A<'_> {
    fn proto(&self) -> AttributeProto {
        let mut a = AttributeProto::default();
        match self {
            A::Int(n, v) => {
                a.name = Some((*n).into());
                a.r#type = Some(AttributeType::Int as i32);
                a.i = Some(*v);
            }
            A::Ints(n, v) => {
                a.name = Some((*n).into());
                a.r#type = Some(AttributeType::Ints as i32);
                a.ints = v.clone();
            }
        }
        a
    }
}

impl Builder {
    /// Adds an initializer and returns its name.
    pub fn init(&mut self, name: &str, dims: Vec<usize>, data: TensorData) -> String {
        self.inits.push(Tensor::new(dims, data).to_proto(name));
        name.to_string()
    }

    /// Adds a 1-D INT64 initializer.
    pub fn ints(&mut self, name: &str, v: &[i64]) -> String {
        self.init(name, vec![v.len()], TensorData::I64(v.to_vec()))
    }

    /// Adds a node with `outputs` outputs named after `name`; returns their names.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: &[A],
    ) -> Vec<String> {
        self.count += 1;
        let outs: Vec<String> = (0..outputs).map(|k| format!("{name}:{k}")).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name: Some(name.into()),
            op_type: Some(op.into()),
            attribute: attrs.iter().map(A::proto).collect(),
            ..Default::default()
        });
        outs
    }

    /// Adds a single-output node and returns its output's name.
    pub fn op(&mut self, op: &str, name: &str, inputs: &[&str], attrs: &[A]) -> String {
        self.node(op, name, inputs, 1, attrs).remove(0)
    }

    /// Declares a graph input (`elem`: ONNX type code).
    pub fn input(&mut self, name: &str, elem: i32, dims: &[D]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Names `value` as graph output `name` (through an Identity).
    pub fn output(&mut self, value: &str, name: &str, elem: i32, dims: &[D]) {
        self.nodes.push(NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: Some(format!("{name}_output")),
            op_type: Some("Identity".into()),
            ..Default::default()
        });
        self.outputs.push(value_info(name, elem, dims));
    }

    /// The finished model.
    pub fn model(self, graph_name: &str, doc: &str) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            producer_name: Some("autocaption".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(doc.into()),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            graph: Some(GraphProto {
                node: self.nodes,
                name: Some(graph_name.into()),
                initializer: self.inits,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
