//! One reader per caption-file layout. Each turns a file into a [`crate::Dataset`] without
//! split or image-path information; [`crate::load`] adds those.

pub(crate) mod coco;
pub(crate) mod csv_captions;
pub(crate) mod flickr30k;
pub(crate) mod flickr8k;
pub(crate) mod karpathy;
