//! One module per subcommand.

pub mod prepare;
pub mod show;
pub mod synth;
