/// A trainable tensor with its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Shape, Keras order (`[in, out]` for kernels).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub value: Vec<f32>,
    /// Gradient of the loss, same layout; accumulated by backward passes.
    pub grad: Vec<f32>,
}

impl Param {
    /// A parameter with the given values.
    pub fn new(shape: &[usize], value: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            value.len(),
            "shape {shape:?} vs {} values",
            value.len()
        );
        Self {
            shape: shape.to_vec(),
            grad: vec![0.0; value.len()],
            value,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True for an empty parameter.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
}
