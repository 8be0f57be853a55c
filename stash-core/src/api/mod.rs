//! Stash's API types, with serde names matching Stash's JSON exactly.

pub mod appbinding;
pub mod backup_configuration;
pub mod backup_session;
pub mod common;
pub mod repository;
pub mod restore_session;
pub mod task;

pub use appbinding::*;
pub use backup_configuration::*;
pub use backup_session::*;
pub use common::*;
pub use repository::*;
pub use restore_session::*;
pub use task::*;

/// Schema for a free-form object whose fields the API server must keep.
pub fn preserve_unknown_fields(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
