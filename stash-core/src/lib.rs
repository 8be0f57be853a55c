//! stash-core: Stash-compatible API types and pure planners.
//!
//! Planners turn a custom resource and everything it references (an `Observed`) into a `Plan`:
//! objects to apply, objects to delete, the status to set, events and when to look again.
//! Nothing here performs I/O or reads a clock: `now` is an input.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod conditions;
pub mod crd;
pub mod cron;
pub mod duration;
pub mod gather;
pub mod hooks;
pub mod names;
pub mod output;
pub mod plan;
pub mod resolve;
pub mod retention;
pub mod strict;
pub mod world;
