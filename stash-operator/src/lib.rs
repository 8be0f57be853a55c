//! Library half of the `stash` binary: user commands, job-side commands and the operator.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod datapath;
pub mod hooks;
pub mod jobs;
pub mod operator;
