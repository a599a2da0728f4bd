//! Buffers that start on a cache line. A `Vec` of `f32` starts wherever the allocator puts
//! it (16 bytes is all it promises), and an AVX-512 load from an address that is not a
//! multiple of 64 touches two cache lines: the panel kernel's four weight loads a step then
//! cost it a quarter of its speed (166 against 125 GFLOP/s on one core, measured).

/// One cache line of bytes: the unit of allocation, so the first value sits on a line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Values for which every bit pattern is valid and there is no padding, so a cache line's
/// bytes may be read as them.
///
/// # Safety
/// Implement only for such types, of a size that divides 64.
pub(crate) unsafe trait Plain: Copy {}

// SAFETY: any 4 bytes are an f32 and any 2 a u16; neither has padding.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: any byte is an i8.
unsafe impl Plain for i8 {}

/// `len` values of `T` starting on a cache line.
#[derive(Clone)]
pub(crate) struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    /// `len` values whose bytes are all zero (0.0 for f32).
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("buffer size overflows usize");
        Self {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            len,
            _values: std::marker::PhantomData,
        }
    }
}

impl<T: Plain> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold at least `len` values of `T` (see `zeroed`), `T` needs no
        // more alignment than a line's 64 bytes, and any bytes are a valid `T` (`Plain`).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl<T: Plain> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_holds_its_values() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let mut v = Aligned::<f32>::zeroed(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert!(v.iter().all(|&x| x == 0.0));
            for (i, x) in v.iter_mut().enumerate() {
                *x = i as f32;
            }
            let w = v.clone();
            assert_eq!(w.as_ptr() as usize % 64, 0);
            assert!(w.iter().enumerate().all(|(i, &x)| x == i as f32));
        }
        let h = Aligned::<u16>::zeroed(33);
        assert_eq!((h.len(), h.as_ptr() as usize % 64), (33, 0));
    }
}
