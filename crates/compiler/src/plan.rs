//! Storage planning: graph inputs and outputs live in the caller's buffers, constants in
//! the weights image, a view aliases its input, and everything else gets a block of one
//! scratch arena, reused once the value is dead (first fit, 16-byte aligned), as does each
//! node's scratch memory.

use std::collections::HashMap;

use crate::graph::Graph;

/// Byte alignment of every arena block (and the arena itself must be at least 8-aligned).
const ALIGN: usize = 16;

/// Where a value lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Storage {
    Input(usize),
    Output(usize),
    Const,
    Arena(usize),
    Alias(usize),
}

struct Arena {
    blocks: Vec<(usize, usize, usize)>, // offset, size, last step alive
    high: usize,
}

impl Arena {
    fn alloc(&mut self, size: usize, now: usize, until: usize) -> usize {
        self.blocks.retain(|b| b.2 >= now);
        self.blocks.sort_unstable();
        let size = size.max(1).div_ceil(ALIGN) * ALIGN;
        let mut off = 0;
        for &(o, s, _) in &self.blocks {
            if o >= off + size {
                break;
            }
            off = off.max((o + s).div_ceil(ALIGN) * ALIGN);
        }
        self.blocks.push((off, size, until));
        self.high = self.high.max(off + size);
        off
    }
}

/// Where every value lives, each node's scratch block, and the arena's size.
pub(crate) struct Plan {
    /// Per value (None: never computed).
    pub storage: Vec<Option<Storage>>,
    /// Per node, the arena offset of its scratch memory.
    pub scratch_at: Vec<Option<usize>>,
    /// Bytes of arena the plan needs.
    pub arena_bytes: usize,
}

/// Plans `g`'s storage.
pub(crate) fn plan(g: &Graph) -> Plan {
    let nv = g.values.len();
    let mut storage: Vec<Option<Storage>> = vec![None; nv];
    for (k, &id) in g.inputs.iter().enumerate() {
        storage[id] = Some(Storage::Input(k));
    }
    for (id, v) in g.values.iter().enumerate() {
        if v.fact.value.is_some() {
            storage[id] = Some(Storage::Const);
        }
    }
    let resolve = |storage: &[Option<Storage>], mut id: usize| {
        while let Some(Storage::Alias(r)) = storage[id] {
            id = r;
        }
        id
    };
    // Outputs written straight into the caller's buffers where a node computes them.
    let mut out_direct: HashMap<usize, usize> = HashMap::new();
    for (k, &id) in g.outputs.iter().enumerate() {
        if storage[id].is_none() && !out_direct.contains_key(&id) {
            out_direct.insert(id, k);
        }
    }
    let steps = g.nodes.len();
    let mut last_use = vec![0usize; nv];
    let mut scratch_at: Vec<Option<usize>> = vec![None; steps];
    // Plan storages node by node, then lifetimes, then offsets.
    for n in &g.nodes {
        for (k, o) in n.outputs.iter().enumerate() {
            let Some(o) = *o else { continue };
            storage[o] = Some(if let Some(&j) = out_direct.get(&o) {
                Storage::Output(j)
            } else if k == 0 && n.op.is_view() {
                let src = n.inputs[0].expect("a view has an input");
                Storage::Alias(resolve(&storage, src))
            } else {
                Storage::Arena(0)
            });
        }
    }
    for (step, n) in g.nodes.iter().enumerate() {
        for &i in n.inputs.iter().flatten() {
            let r = resolve(&storage, i);
            last_use[r] = last_use[r].max(step);
        }
    }
    for &o in &g.outputs {
        let r = resolve(&storage, o);
        last_use[r] = steps;
    }
    let mut arena = Arena {
        blocks: Vec::new(),
        high: 0,
    };
    for (step, n) in g.nodes.iter().enumerate() {
        for &o in n.outputs.iter().flatten() {
            if let Some(Storage::Arena(_)) = storage[o] {
                let bytes = g.values[o].fact.len() * g.values[o].fact.dtype.size();
                let until = last_use[o].max(step);
                storage[o] = Some(Storage::Arena(arena.alloc(bytes, step, until)));
            }
        }
        let facts: Vec<_> = n
            .inputs
            .iter()
            .map(|i| i.map(|i| &g.values[i].fact))
            .collect();
        let bytes = n.op.scratch_bytes(&facts);
        if bytes > 0 {
            scratch_at[step] = Some(arena.alloc(bytes, step, step));
        }
    }

    Plan {
        storage,
        scratch_at,
        arena_bytes: arena.high,
    }
}
