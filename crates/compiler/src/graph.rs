//! The typed graph: ONNX nodes turned into ops through the registry, every value's type
//! and shape inferred, constants folded as the graph is built.

use std::collections::HashMap;
use std::rc::Rc;

use autocaption_onnx::proto::{type_proto, ModelProto, ValueInfoProto};
use autocaption_onnx::Tensor;

use crate::dtype::{dtype_of, DType};
use crate::error::{CompileError, Options, UnsupportedNode};
use crate::ops::{Fact, InferError, NodeCx, Op, Registry};

/// A value of the graph: a graph input, a constant, or a node's output.
#[derive(Debug)]
pub struct Value {
    /// The ONNX name.
    pub name: String,
    /// Type, shape and, for constants, elements.
    pub fact: Fact,
}

/// A node that runs (constant nodes were folded away).
#[derive(Debug)]
pub struct Node {
    /// The node's ONNX name, or `#index` when it had none.
    pub name: String,
    /// The ONNX op type.
    pub op_type: String,
    /// The op.
    pub op: Box<dyn Op>,
    /// Value ids of the inputs (None where absent).
    pub inputs: Vec<Option<usize>>,
    /// Value ids of the outputs (None where absent or unused).
    pub outputs: Vec<Option<usize>>,
}

/// The typed graph.
#[derive(Debug)]
pub struct Graph {
    /// Every value.
    pub values: Vec<Value>,
    /// The nodes in execution order.
    pub nodes: Vec<Node>,
    /// Value ids of the runtime inputs, in order.
    pub inputs: Vec<usize>,
    /// Value ids of the outputs, in order.
    pub outputs: Vec<usize>,
    /// Nodes removed by constant folding.
    pub folded: usize,
}

fn input_fact(vi: &ValueInfoProto, opts: &Options) -> Result<Fact, CompileError> {
    let name = vi.name.clone().unwrap_or_default();
    let bad = |message: String| CompileError::Input {
        name: name.clone(),
        message,
    };
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad(
            "is not a tensor (sequences, maps and optionals are not supported)".into(),
        ));
    };
    let code = t.elem_type.unwrap_or(0);
    let dtype = DType::from_onnx(code).ok_or_else(|| {
        bad(format!(
            "has element type {}, which is not supported",
            DType::onnx_name(code)
        ))
    })?;
    let shape = t.shape.as_ref().ok_or_else(|| bad("has no shape".into()))?;
    let mut dims = Vec::new();
    for (k, d) in shape.dim.iter().enumerate() {
        use autocaption_onnx::proto::tensor_shape_proto::dimension::Value as D;
        let batch = opts.batch.filter(|_| k == 0);
        match &d.value {
            Some(D::DimValue(v)) if *v >= 0 => dims.push(*v as usize),
            Some(D::DimParam(p)) => match (opts.dims.get(p), batch) {
                (Some(&v), _) | (None, Some(v)) => dims.push(v),
                (None, None) if k == 0 => {
                    return Err(bad(format!(
                        "has symbolic dimension '{p}': give its size (--batch N, or --dim {p}=N)"
                    )))
                }
                (None, None) => {
                    return Err(bad(format!(
                        "has symbolic dimension '{p}': give its size (--dim {p}=N)"
                    )))
                }
            },
            _ => match batch {
                Some(v) => dims.push(v),
                None if k == 0 => {
                    return Err(bad(
                        "has a leading dimension of unknown size: give it with --batch N".into(),
                    ))
                }
                None => return Err(bad("has a dimension of unknown size".into())),
            },
        }
    }
    if let Some(why) = too_large(&dims, dtype) {
        return Err(bad(why));
    }
    Ok(Fact::new(dtype, dims))
}

/// The most bytes one value may hold (4 GiB): a larger shape (or one whose element count
/// overflows) is refused before anything is allocated for it.
pub const MAX_VALUE_BYTES: u64 = 1 << 32;

/// Why a shape is too large to compile, if it is.
fn too_large(shape: &[usize], dtype: DType) -> Option<String> {
    let bytes = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
    match bytes {
        Some(b) if b <= MAX_VALUE_BYTES => None,
        Some(b) => Some(format!(
            "shape {shape:?} of {dtype} holds {b} bytes, more than the {MAX_VALUE_BYTES} bytes a value may hold"
        )),
        None => Some(format!("shape {shape:?} has more elements than a 64-bit count holds")),
    }
}

/// The symbolic dimension names of the graph's inputs, sorted.
fn symbolic_dims(graph: &autocaption_onnx::proto::GraphProto) -> Vec<String> {
    use autocaption_onnx::proto::tensor_shape_proto::dimension::Value as D;
    let mut names: Vec<String> = graph
        .input
        .iter()
        .filter_map(|vi| match vi.r#type.as_ref()?.value.as_ref()? {
            type_proto::Value::TensorType(t) => t.shape.as_ref(),
            _ => None,
        })
        .flat_map(|s| s.dim.iter())
        .filter_map(|d| match &d.value {
            Some(D::DimParam(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The model's default-domain opset.
pub fn opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1)
}

/// Builds the typed graph of `model`.
pub fn import(model: &ModelProto, opts: &Options) -> Result<Graph, CompileError> {
    let graph = model.graph.as_ref().ok_or(CompileError::NoGraph)?;
    let opset = opset(model);
    let registry = Registry::new();
    let known = symbolic_dims(graph);
    let mut given: Vec<&String> = opts.dims.keys().collect();
    given.sort();
    if let Some(unknown) = given.into_iter().find(|n| !known.contains(n)) {
        return Err(CompileError::Input {
            name: unknown.clone(),
            message: if known.is_empty() {
                "is not a symbolic dimension of the model's inputs (they have none)".into()
            } else {
                format!(
                    "is not a symbolic dimension of the model's inputs (they have: {})",
                    known.join(", ")
                )
            },
        });
    }

    // Every node first, so that one error lists every unsupported op.
    let mut ops: Vec<Box<dyn Op>> = Vec::new();
    let mut unsupported = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let name = node_name(node.name.as_deref(), i);
        let op_type = node.op_type.clone().unwrap_or_default();
        let domain = node.domain.as_deref().unwrap_or("");
        let built = if !matches!(domain, "" | "ai.onnx") {
            Err(format!("domain '{domain}' is not supported"))
        } else if let Some(builder) = registry.get(&op_type) {
            builder(&NodeCx { node, opset })
        } else {
            Err("op type not supported".to_string())
        };
        match built {
            Ok(op) => ops.push(op),
            Err(reason) => unsupported.push(UnsupportedNode {
                node: name,
                op_type,
                reason,
            }),
        }
    }
    if !unsupported.is_empty() {
        return Err(CompileError::Unsupported(unsupported, registry.op_types()));
    }

    let mut values: Vec<Value> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    fn add(
        values: &mut Vec<Value>,
        by_name: &mut HashMap<String, usize>,
        name: &str,
        fact: Fact,
    ) -> usize {
        values.push(Value {
            name: name.to_string(),
            fact,
        });
        by_name.insert(name.to_string(), values.len() - 1);
        values.len() - 1
    }
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        let t = Tensor::from_proto(init).map_err(|message| CompileError::Tensor {
            name: name.clone(),
            message,
        })?;
        let dtype = dtype_of(&t.data);
        add(
            &mut values,
            &mut by_name,
            &name,
            Fact {
                dtype,
                shape: t.dims,
                value: Some(Rc::new(t.data)),
            },
        );
    }
    let mut inputs = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if by_name.contains_key(&name) {
            continue; // an initializer that is also listed as an input
        }
        let mut fact = input_fact(vi, opts)?;
        if let Some(t) = opts.fixed.get(&name) {
            let dtype = dtype_of(&t.data);
            if dtype != fact.dtype || t.dims != fact.shape {
                return Err(CompileError::Input {
                    name,
                    message: format!(
                        "the fixed value is {dtype} {:?}, the input is {} {:?}",
                        t.dims, fact.dtype, fact.shape
                    ),
                });
            }
            fact.value = Some(Rc::new(t.data.clone()));
            add(&mut values, &mut by_name, &name, fact);
        } else {
            let id = add(&mut values, &mut by_name, &name, fact);
            inputs.push(id);
        }
    }

    let mut nodes = Vec::new();
    let mut folded = 0;
    for (i, (node, op)) in graph.node.iter().zip(ops).enumerate() {
        let name = node_name(node.name.as_deref(), i);
        let op_type = node.op_type.clone().unwrap_or_default();
        let fail = |message: String| CompileError::Node {
            node: name.clone(),
            op_type: op_type.clone(),
            message,
        };
        let mut ins = Vec::new();
        for input in &node.input {
            if input.is_empty() {
                ins.push(None);
            } else {
                let id = *by_name.get(input).ok_or_else(|| {
                    fail(format!(
                        "reads '{input}', which no earlier node or input defines"
                    ))
                })?;
                ins.push(Some(id));
            }
        }
        let facts: Vec<Option<&Fact>> = ins.iter().map(|i| i.map(|id| &values[id].fact)).collect();
        let out_facts = match op.infer(&facts) {
            Ok(f) => f,
            Err(InferError::Invalid(m)) => return Err(fail(m)),
            Err(InferError::NeedsConstant(slot)) => {
                let input = node.input[slot].clone();
                return Err(CompileError::NeedsConstant {
                    node: name,
                    op_type,
                    slot,
                    is_graph_input: inputs.iter().any(|&id| values[id].name == input),
                    input,
                });
            }
        };
        for (dtype, shape) in &out_facts {
            if let Some(why) = too_large(shape, *dtype) {
                return Err(fail(format!("an output's {why}")));
            }
        }
        let evaluated = op.eval(&facts, &out_facts);
        let mut outs = Vec::new();
        for (k, (dtype, shape)) in out_facts.into_iter().enumerate() {
            let oname = node.output.get(k).cloned().unwrap_or_default();
            let mut fact = Fact::new(dtype, shape);
            if let Some(vals) = &evaluated {
                fact.value = Some(Rc::new(vals[k].clone()));
            }
            if oname.is_empty() {
                outs.push(None);
            } else {
                outs.push(Some(add(&mut values, &mut by_name, &oname, fact)));
            }
        }
        if evaluated.is_some() {
            folded += 1;
        } else {
            nodes.push(Node {
                name,
                op_type,
                op,
                inputs: ins,
                outputs: outs,
            });
        }
    }
    let mut outputs = Vec::new();
    for vi in &graph.output {
        let name = vi.name.clone().unwrap_or_default();
        let id = *by_name.get(&name).ok_or_else(|| CompileError::Input {
            name: name.clone(),
            message: "is a graph output that nothing computes".into(),
        })?;
        outputs.push(id);
    }
    Ok(Graph {
        values,
        nodes,
        inputs,
        outputs,
        folded,
    })
}

fn node_name(name: Option<&str>, index: usize) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("#{index}"),
    }
}
