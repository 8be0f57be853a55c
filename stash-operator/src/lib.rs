//! Library half of the `stash` binary: user commands, job-side commands and the operator.
#![forbid(unsafe_code)]

pub mod commands;
pub mod datapath;
pub mod hooks;
pub mod job_support;
pub mod operator;
