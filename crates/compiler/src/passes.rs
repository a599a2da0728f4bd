//! Simplification passes over the typed graph. Constant folding and shape-op elimination
//! happen as the graph is built (a `Shape` or any op whose inputs are all known becomes a
//! constant); views (`Reshape`, `Squeeze`, `Flatten`, …) cost nothing at emission. Here:
//! dropping `Identity`/`Dropout`, fusing `MatMul` + `Add` into one product with a bias,
//! and removing nodes whose outputs nobody reads.

use crate::graph::Graph;
use crate::ops::MatMul;

/// What the passes did, for the compile summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    /// Identity and inference-mode Dropout nodes removed.
    pub identities: usize,
    /// MatMul + Add pairs fused.
    pub fused: usize,
    /// Nodes removed because nothing reads their outputs.
    pub dead: usize,
}

/// Runs every pass.
pub fn simplify(g: &mut Graph) -> PassStats {
    let identities = drop_identities(g);
    let fused = fuse_matmul_add(g);
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

fn fuse_matmul_add(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut k = 0;
    while k < g.nodes.len() {
        let n = &g.nodes[k];
        let Some(product) = n.outputs.first().copied().flatten() else {
            k += 1;
            continue;
        };
        let fusable = n.op_type == "MatMul" && n.inputs.len() == 2 && uses(g, product) == 1;
        let add = fusable
            .then(|| {
                g.nodes.iter().position(|m| {
                    m.op_type == "Add" && m.inputs.iter().flatten().any(|&i| i == product)
                })
            })
            .flatten();
        let Some(a) = add else {
            k += 1;
            continue;
        };
        let other = g.nodes[a]
            .inputs
            .iter()
            .flatten()
            .copied()
            .find(|&i| i != product);
        let Some(bias) = other else {
            k += 1;
            continue;
        };
        let pf = &g.values[product].fact;
        let bf = &g.values[bias].fact;
        let n_cols = pf.shape.last().copied().unwrap_or(1);
        // A bias over the last dimension only, of the product's type, not widening it.
        let is_row = bf.dtype == pf.dtype
            && bf.len() == n_cols
            && bf.shape.len() <= pf.shape.len()
            && bf.shape.last().copied().unwrap_or(1) == n_cols
            && g.nodes[a]
                .outputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|o| g.values[o].fact.shape == pf.shape);
        if !is_row || a < k {
            k += 1;
            continue;
        }
        let out = g.nodes[a].outputs[0];
        let add_node = g.nodes.remove(a);
        let mm = &mut g.nodes[k];
        mm.op = Box::new(MatMul { bias: true });
        mm.inputs.push(Some(bias));
        mm.outputs = vec![out];
        mm.name = format!("{}+{}", mm.name, add_node.name);
        fused += 1;
        k += 1;
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
