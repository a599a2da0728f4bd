//! One module per subcommand.

pub mod bench;
pub mod caption;
pub mod compile;
pub mod concepts;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod import;
pub mod merge;
pub mod model;
pub mod prepare;
pub mod serve;
pub mod show;
pub mod synth;
pub mod train;
