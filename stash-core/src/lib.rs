//! stash-core: Stash-compatible API types and pure planners.
//!
//! Planners turn a custom resource and everything it references (an `Observed`) into a `Plan`:
//! objects to apply, objects to delete, the status to set, events and when to look again.
//! Nothing here performs I/O or reads a clock: `now` is an input.
#![forbid(unsafe_code)]

pub mod api;
pub mod cron;
pub mod duration;
pub mod conditions;
pub mod names;
pub mod resolve;
pub mod catalog;
pub mod retention;
pub mod plan;
pub mod world;
pub mod crd;
