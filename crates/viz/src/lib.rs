//! Pictures a person looks at: contact sheets of images with their captions, and line charts
//! (the training plot), drawn with an
//! embedded, freely licensed font (Ubuntu Light, Ubuntu Font Licence 1.0, as shipped by the
//! `epaint_default_fonts` crate) so that output is the same on every machine.

mod chart;
mod sheet;
mod text;

pub use chart::{line_charts, Panel, Series};
pub use sheet::{contact_sheet, SheetItem, SheetOptions};
pub use text::{Text, TextStyle};
