//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod features;
pub mod model;
pub mod prepare;
pub mod show;
pub mod synth;
pub mod train;
