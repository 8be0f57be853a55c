//! stash-testkit: a fake Kubernetes API server that kubectl and kube-runtime accept, with a
//! fake controller-manager (garbage collector, namespace, Job, CronJob, endpoints), a kubelet
//! that runs pods as local processes (and `pods/exec` into them over WebSocket, on TCP), and a
//! virtual clock.
//!
//! In process, no socket:
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = stash_testkit::FakeApiServer::start().await?;
//! let router = server.router(); // kube::Client::new(router, "default")
//! # drop(router); Ok(()) }
//! ```
//! On TCP, with the controller-manager and kubelet, for kubectl and for pods that call back
//! into the server (they get `KUBECONFIG` pointing at it):
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! let server = stash_testkit::FakeApiServer::builder()
//!     .tcp(0)
//!     .with_controllers()
//!     .exec("stash-rs:latest", vec!["/path/to/stash".into()])
//!     .start()
//!     .await?;
//! let kubeconfig = server.kubeconfig_path().expect("TCP mode writes a kubeconfig");
//! server.advance(Duration::from_secs(60)).await; // clock moves, controllers settle
//! # let _ = kubeconfig; Ok(()) }
//! ```
//! Out of process: `stash-testkit serve --port 0 --kubeconfig FILE [--controllers]
//! [--exec IMAGE=COMMAND]...`, then `POST /testkit/v1/clock?advance=SECONDS`,
//! `POST /testkit/v1/faults` (a [`FaultRule`] as JSON), `POST /testkit/v1/watches/expire`.
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
