//! User-facing commands that work offline.

pub mod crds;
pub mod render;
