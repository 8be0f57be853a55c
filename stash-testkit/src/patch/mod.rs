//! Patch formats: JSON patch, strategic merge patch, and the list-type
//! schema that strategic merge and server-side apply share.

pub mod json_patch;
pub mod schema;
pub mod strategic;
