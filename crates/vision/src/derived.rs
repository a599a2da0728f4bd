//! Weights of a convolution in the other layouts its fast paths read, computed on first use
//! and kept: the Winograd transform (`winograd.rs`) and column panels for convolutions with
//! few output pixels (`conv.rs`). Cleared whenever the weights change.

use std::sync::OnceLock;

use autocaption_tensor::PanelMatrix;

/// The derived layouts of one convolution's weights.
#[derive(Default)]
pub(crate) struct Derived {
    /// `U = G g Gᵀ`: 16 matrices `[cin][cout]` in panels.
    pub winograd: OnceLock<Vec<PanelMatrix>>,
    /// `[kh·kw·cin, cout]` in panels.
    pub panels: OnceLock<PanelMatrix>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Self::default() // recomputed on first use by the clone
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true // derived from the weights, which the convolution compares
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = |b: bool| if b { "computed" } else { "not yet computed" };
        f.debug_struct("Derived")
            .field("winograd", &done(self.winograd.get().is_some()))
            .field("panels", &done(self.panels.get().is_some()))
            .finish()
    }
}
