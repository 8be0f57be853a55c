//! stash-testkit: a fake Kubernetes API server that kubectl and kube-runtime accept, with a
//! fake controller-manager (garbage collector, namespace, Job, CronJob), a kubelet that runs
//! pods as local processes, and a virtual clock.
//!
//! In process:
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = stash_testkit::FakeApiServer::start().await?;
//! let router = server.router(); // kube::Client::new(router, "default")
//! # drop(router); Ok(()) }
//! ```
//! On TCP, with controllers: `FakeApiServer::builder().tcp(0).with_controllers().start()`,
//! then point clients at `server.kubeconfig_path()`.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod clock;
pub mod controllers;
pub mod faults;
pub mod fieldset;
pub mod http;
pub mod patch;
pub mod registry;
pub mod selectors;
mod server;
pub mod ssa;
pub mod status;
pub mod store;

pub use clock::VirtualClock;
pub use controllers::{ControllerSet, KubeletConfig};
pub use faults::{FaultAction, FaultRule, Faults};
pub use server::{kubeconfig_yaml, FakeApiServer, FakeApiServerBuilder};

pub mod providers;
