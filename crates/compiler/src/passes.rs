//! Simplification passes over the typed graph. Constant folding and shape-op elimination
//! happen as the graph is built (a `Shape` or any op whose inputs are all known becomes a
//! constant); views (`Reshape`, `Squeeze`, `Flatten`, …) cost nothing at emission. Here:
//! dropping `Identity`/`Dropout`, fusing the nodes an op offers to absorb (`MatMul` + a
//! bias `Add`; `Conv` + a residual `Add` + `Relu`) into one kernel, and removing nodes whose
//! outputs nobody reads.

use crate::graph::Graph;
use crate::ops::Consumer;

/// What the passes did, for the compile summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    /// Identity and inference-mode Dropout nodes removed.
    pub identities: usize,
    /// Nodes fused into the node before them (a bias, a residual Add, an activation).
    pub fused: usize,
    /// Nodes removed because nothing reads their outputs.
    pub dead: usize,
}

/// Runs every pass.
pub fn simplify(g: &mut Graph) -> PassStats {
    let identities = drop_identities(g);
    let fused = fuse(g);
    let dead = remove_dead(g);
    PassStats {
        identities,
        fused,
        dead,
    }
}

fn replace_uses(g: &mut Graph, from: usize, to: usize) {
    for n in &mut g.nodes {
        for i in n.inputs.iter_mut().flatten() {
            if *i == from {
                *i = to;
            }
        }
    }
}

fn drop_identities(g: &mut Graph) -> usize {
    let mut removed = 0;
    let mut k = 0;
    while k < g.nodes.len() {
        let n = &g.nodes[k];
        let (Some(Some(src)), Some(Some(dst))) = (n.inputs.first(), n.outputs.first()) else {
            k += 1;
            continue;
        };
        let (src, dst) = (*src, *dst);
        // A graph output keeps its node: the value must be copied to the caller's buffer.
        let extra_read = n.outputs[1..].iter().flatten().any(|&o| uses(g, o) > 0);
        if !n.op.is_identity() || extra_read || g.outputs.contains(&dst) {
            k += 1;
            continue;
        }
        replace_uses(g, dst, src);
        g.nodes.remove(k);
        removed += 1;
    }
    removed
}

fn uses(g: &Graph, value: usize) -> usize {
    g.nodes
        .iter()
        .flat_map(|n| n.inputs.iter().flatten())
        .filter(|&&i| i == value)
        .count()
        + g.outputs.iter().filter(|&&o| o == value).count()
}

/// Offers every node the node reading its output 0 (when that is the only reader) until no
/// op takes one: the fused node takes the reader's place, so every input it reads is
/// computed before it.
fn fuse(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut k = 0;
    while k < g.nodes.len() {
        let Some(product) = g.nodes[k].outputs.first().copied().flatten() else {
            k += 1;
            continue;
        };
        let extra_outputs = g.nodes[k].outputs[1..]
            .iter()
            .flatten()
            .any(|&o| uses(g, o) > 0);
        let reader = (uses(g, product) == 1 && !extra_outputs && !g.outputs.contains(&product))
            .then(|| {
                g.nodes
                    .iter()
                    .position(|m| m.inputs.iter().flatten().any(|&i| i == product))
            })
            .flatten();
        let Some(m) = reader.filter(|&m| m > k) else {
            k += 1;
            continue;
        };
        let others: Vec<usize> = g.nodes[m]
            .inputs
            .iter()
            .flatten()
            .copied()
            .filter(|&i| i != product)
            .collect();
        let Some(out) = g.nodes[m].outputs.first().copied().flatten() else {
            k += 1;
            continue;
        };
        let reader_extra = g.nodes[m].outputs[1..]
            .iter()
            .flatten()
            .any(|&o| uses(g, o) > 0);
        if others.len() > 1 || reader_extra {
            k += 1;
            continue;
        }
        let consumer = Consumer {
            op_type: &g.nodes[m].op_type,
            product: &g.values[product].fact,
            other: others.first().map(|&o| &g.values[o].fact),
            out: &g.values[out].fact,
        };
        let Some(f) = g.nodes[k].op.fuse(&consumer) else {
            k += 1;
            continue;
        };
        let mut node = g.nodes.remove(k);
        let m = m - 1;
        let reader = &g.nodes[m];
        if let (Some(slot), Some(&other)) = (f.slot, others.first()) {
            if node.inputs.len() <= slot {
                node.inputs.resize(slot + 1, None);
            }
            node.inputs[slot] = Some(other);
        }
        node.op = f.op;
        node.outputs = vec![Some(out)];
        node.name = format!("{}+{}", node.name, reader.name);
        g.nodes[m] = node;
        fused += 1;
        // The fused node may take its new reader too; look at it again where it now is.
        k = k.min(m);
    }
    fused
}

fn remove_dead(g: &mut Graph) -> usize {
    let mut live = vec![false; g.values.len()];
    for &o in &g.outputs {
        live[o] = true;
    }
    let before = g.nodes.len();
    let mut keep = vec![false; g.nodes.len()];
    for (k, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().flatten().any(|&o| live[o]) {
            keep[k] = true;
            for &i in n.inputs.iter().flatten() {
                live[i] = true;
            }
        }
    }
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    // Outputs nobody reads are not computed (ops treat them as absent).
    for n in &mut g.nodes {
        for o in &mut n.outputs {
            if o.is_some_and(|id| !live[id]) {
                *o = None;
            }
        }
    }
    before - g.nodes.len()
}
