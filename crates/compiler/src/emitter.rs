//! The sink every op writes its C into: the entry point's statements, helper functions
//! instantiated once from templates, and the constants the code reads (the weights image).

use std::collections::HashSet;

use crate::dtype::DType;
use crate::weights::Constants;

/// Collects the body of the entry point and the helper functions it calls.
pub struct Emitter {
    prefix: String,
    quantize: Option<crate::quant::Quantize>,
    pub(crate) consts: Constants,
    pub(crate) body: String,
    pub(crate) helpers: Vec<String>,
    helper_names: HashSet<String>,
}

impl Emitter {
    pub(crate) fn new(prefix: &str, quantize: Option<crate::quant::Quantize>) -> Self {
        Self {
            prefix: prefix.to_string(),
            quantize,
            consts: Constants::default(),
            body: String::new(),
            helpers: Vec::new(),
            helper_names: HashSet::new(),
        }
    }

    /// Appends C code to the entry point's body.
    pub fn push(&mut self, code: &str) {
        self.body.push_str(code);
        if !code.ends_with('\n') {
            self.body.push('\n');
        }
    }

    /// Adds constant data the code reads (packed or quantised weights): its C element type
    /// and little-endian bytes. Returns the pointer expression to use; data no code
    /// mentions is left out of the weights.
    pub fn constant(&mut self, c_type: &'static str, bytes: Vec<u8>) -> String {
        self.consts.add(c_type, bytes)
    }

    /// The weight quantisation asked for.
    pub fn quantize(&self) -> Option<crate::quant::Quantize> {
        self.quantize
    }

    /// The statement returning error `code` (one of [`ERROR_CODES`]).
    pub fn fail(&self, code: &str) -> String {
        format!("return {}_{code};", self.prefix.to_uppercase())
    }

    /// Instantiates a helper template once (`$P` → prefix, `$T` → C type, `$S` → type
    /// suffix) and returns its function name `prefix_name_suffix`.
    pub fn helper(&mut self, name: &str, template: &str, dtype: DType) -> String {
        let fname = format!("{}_{name}_{}", self.prefix, dtype.suffix());
        if self.helper_names.insert(fname.clone()) {
            let code = template
                .replace("$P", &self.prefix)
                .replace("$T", dtype.c_type())
                .replace("$S", dtype.suffix());
            self.helpers.push(code);
        }
        fname
    }
}
