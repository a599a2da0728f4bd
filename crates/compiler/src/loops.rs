//! Loop nests over strided operands: the one description of data movement and
//! broadcasting that both the C emitter and compile-time evaluation use.

use std::fmt::Write;

/// One operand of a loop nest: a C pointer expression, an element offset and one element
/// stride per loop dimension (0 where the operand is broadcast, negative to walk backwards).
#[derive(Debug, Clone)]
pub struct Access {
    /// C expression of the base pointer.
    pub ptr: String,
    /// Element offset of the first element from `ptr`.
    pub offset: isize,
    /// Element stride per dimension of the nest.
    pub strides: Vec<isize>,
}

impl Access {
    /// An access of `ptr` from element 0 with `strides`.
    pub fn new(ptr: &str, strides: Vec<isize>) -> Self {
        Self {
            ptr: ptr.to_string(),
            offset: 0,
            strides,
        }
    }
}

/// Drops unit dimensions and merges neighbours every access walks contiguously, so that
/// the common cases become one flat loop.
fn simplify(shape: &[usize], accesses: &[Access]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<isize>> = vec![Vec::new(); accesses.len()];
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && accesses.iter().enumerate().all(|(k, a)| {
                let last = *strides[k].last().expect("dims not empty");
                last == a.strides[d] * size as isize
            });
        if mergeable {
            *dims.last_mut().expect("dims not empty") *= size;
            for (k, a) in accesses.iter().enumerate() {
                *strides[k].last_mut().expect("dims not empty") = a.strides[d];
            }
        } else {
            dims.push(size);
            for (k, a) in accesses.iter().enumerate() {
                strides[k].push(a.strides[d]);
            }
        }
    }
    (dims, strides)
}

/// C loops over `shape`; `body` gets each access's element expression (`p[i0*3 + i1]`).
/// Empty when the shape has no elements.
pub fn nest(shape: &[usize], accesses: &[Access], body: impl Fn(&[String]) -> String) -> String {
    if shape.contains(&0) {
        return String::new();
    }
    let (dims, strides) = simplify(shape, accesses);
    let mut out = String::new();
    for (d, n) in dims.iter().enumerate() {
        let _ = writeln!(out, "for (ptrdiff_t i{d} = 0; i{d} < {n}; ++i{d}) {{");
    }
    let exprs: Vec<String> = accesses
        .iter()
        .zip(&strides)
        .map(|(a, s)| {
            let mut terms: Vec<String> = Vec::new();
            if a.offset != 0 {
                terms.push(a.offset.to_string());
            }
            for (d, &st) in s.iter().enumerate() {
                match st {
                    0 => {}
                    1 => terms.push(format!("i{d}")),
                    _ => terms.push(format!("i{d} * {st}")),
                }
            }
            if terms.is_empty() {
                terms.push("0".into());
            }
            format!("{}[{}]", a.ptr, terms.join(" + "))
        })
        .collect();
    out.push_str(&body(&exprs));
    out.push('\n');
    for _ in &dims {
        out.push_str("}\n");
    }
    out
}

/// The element offsets an access visits over `shape`, in row-major loop order (the
/// compile-time twin of [`nest`]).
pub fn offsets(shape: &[usize], offset: isize, strides: &[isize]) -> Vec<usize> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        let off: isize = offset
            + idx
                .iter()
                .zip(strides)
                .map(|(&i, &s)| i as isize * s)
                .sum::<isize>();
        out.push(off as usize);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_operands_become_one_loop() {
        let a = Access::new("x", vec![12, 4, 1]);
        let b = Access::new("y", vec![12, 4, 1]);
        let code = nest(&[2, 3, 4], &[a, b], |e| format!("{} = {};", e[1], e[0]));
        assert_eq!(
            code,
            "for (ptrdiff_t i0 = 0; i0 < 24; ++i0) {\ny[i0] = x[i0];\n}\n"
        );
    }

    #[test]
    fn offsets_follow_strides() {
        // A transpose of a 2x3 matrix.
        assert_eq!(offsets(&[3, 2], 0, &[1, 3]), vec![0, 3, 1, 4, 2, 5]);
        // Reversed with an offset, and a broadcast dimension.
        assert_eq!(offsets(&[2, 3], 2, &[0, -1]), vec![2, 1, 0, 2, 1, 0]);
    }
}
