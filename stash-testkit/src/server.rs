//! Starting the fake API server: in process (an axum `Router`, no socket) or on TCP, with
//! optional controllers, and the kubeconfig clients need.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

use crate::apiserver::Apiserver;
use crate::clock::VirtualClock;
use crate::controllers::{ControllerManager, ControllerSet, KubeletConfig};
use crate::faults::Faults;
use crate::http::{router, HttpState};

/// Configures a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiServerBuilder {
    controllers: Option<ControllerSet>,
    kubelet: KubeletConfig,
    clock: Option<VirtualClock>,
    bookmark_interval: Duration,
    tcp_port: Option<u16>,
    kubeconfig: Option<PathBuf>,
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        Self {
            controllers: None,
            kubelet: KubeletConfig::default(),
            clock: None,
            bookmark_interval: Duration::from_secs(5),
            tcp_port: None,
            kubeconfig: None,
        }
    }
}

impl FakeApiServerBuilder {
    /// Runs these controllers (garbage collector, namespace, Job, CronJob, kubelet).
    pub fn controllers(mut self, set: ControllerSet) -> Self {
        self.controllers = Some(set);
        self
    }

    /// Runs every controller and the kubelet. With the kubelet the server also listens on a
    /// free TCP port, so that pods get a `KUBECONFIG` that reaches it.
    pub fn with_controllers(self) -> Self {
        self.controllers(ControllerSet::all())
    }

    /// Maps a container image to a local command (program plus leading arguments) that
    /// stands in for the image's entrypoint.
    pub fn exec(mut self, image: impl Into<String>, argv: Vec<String>) -> Self {
        self.kubelet.exec.insert(image.into(), argv);
        self
    }

    /// Where the kubelet keeps pod sandboxes and claim data (default: a temporary directory).
    pub fn kubelet_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kubelet.root = Some(dir.into());
        self
    }

    /// Uses this clock instead of one frozen at the current time.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Interval between watch bookmarks (default 5 s).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Also serves on `127.0.0.1:port` (0 picks a free port).
    pub fn tcp(mut self, port: u16) -> Self {
        self.tcp_port = Some(port);
        self
    }

    /// Writes the kubeconfig here instead of into a temporary directory (TCP only).
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Starts the server (and its controllers) on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeApiServer> {
        let clock = self.clock.unwrap_or_default();
        let api = Apiserver::new(clock);
        let faults = Faults::default();
        let mut dir = None;
        // Pods started by the kubelet reach the server through KUBECONFIG, which needs TCP.
        let wants_kubelet = self.controllers.as_ref().is_some_and(|c| c.kubelet);
        let tcp_port = self.tcp_port.or(if wants_kubelet { Some(0) } else { None });
        let (listener, addr, kubeconfig) = match tcp_port {
            Some(port) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                let addr = listener.local_addr()?;
                let path = match self.kubeconfig {
                    // Pods run in their own working directories; hand them an absolute path.
                    Some(p) => std::path::absolute(&p)?,
                    None => {
                        let d = tempfile::Builder::new().prefix("stash-testkit").tempdir()?;
                        let p = d.path().join("kubeconfig");
                        dir = Some(d);
                        p
                    }
                };
                std::fs::write(&path, kubeconfig_yaml(&format!("http://{addr}")))?;
                (Some(listener), Some(addr), Some(path))
            }
            None => (None, None, None),
        };
        let mut state = HttpState {
            api: api.clone(),
            faults: faults.clone(),
            controllers: None,
            bookmark_interval: self.bookmark_interval,
            server_address: addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "127.0.0.1:0".into()),
            requests: Default::default(),
        };
        let controllers = self.controllers.map(|set| {
            let mut kubelet = self.kubelet.clone();
            kubelet.kubeconfig = kubeconfig.clone();
            // The kubelet reaches the server over its router, as any client would.
            let client = kube::Client::new(router(state.clone()), "default");
            ControllerManager::start(api.clone(), set, kubelet, client)
        });
        state.controllers = controllers.clone();
        let mut shutdown = None;
        if let Some(listener) = listener {
            let (tx, rx) = oneshot::channel::<()>();
            shutdown = Some(tx);
            let app = router(state.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        }
        Ok(FakeApiServer {
            api,
            faults,
            controllers,
            state,
            addr,
            kubeconfig,
            _dir: dir,
            shutdown,
        })
    }
}

/// A running fake API server. Dropping it stops the TCP listener, the controllers and the
/// processes the kubelet runs.
pub struct FakeApiServer {
    api: Apiserver,
    faults: Faults,
    controllers: Option<ControllerManager>,
    state: HttpState,
    addr: Option<SocketAddr>,
    kubeconfig: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl FakeApiServer {
    /// A builder.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// An in-process server without controllers.
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    /// The HTTP router: serve it, or pass it to `kube::Client::new(router, "default")`.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Requests served so far, by client, verb and resource.
    pub fn requests(&self) -> &crate::http::requests::RequestCounter {
        &self.state.requests
    }

    /// The TCP address, when serving on TCP.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, when serving on TCP.
    pub fn url(&self) -> Option<String> {
        self.addr.map(|a| format!("http://{a}"))
    }

    /// The kubeconfig file for this server, when serving on TCP.
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// The server core (direct, typed-free access to objects).
    pub fn api(&self) -> &Apiserver {
        &self.api
    }

    /// The virtual clock.
    pub fn clock(&self) -> &VirtualClock {
        &self.api.clock
    }

    /// Advances the virtual clock and waits for the controllers to settle.
    pub async fn advance(&self, by: Duration) {
        self.api.clock.advance(by);
        self.settle().await;
    }

    /// Waits for the controllers (if any) to run to quiescence.
    pub async fn settle(&self) {
        if let Some(cm) = &self.controllers {
            cm.settle().await;
        }
    }

    /// Fault injection rules.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Drops the watch history: resuming from any older resourceVersion yields 410.
    pub fn compact(&self) {
        self.api.store.compact();
    }

    /// Ends every open watch with an in-stream 410 ERROR (and compacts the history).
    pub fn expire_watches(&self) {
        self.api.store.expire_watches();
    }

    /// The process id of a running container (its main process), for tests that kill it as a
    /// node would (OOM killer, `kill -9`).
    pub fn container_pid(&self, namespace: &str, pod: &str, container: &str) -> Option<u32> {
        self.controllers
            .as_ref()?
            .container(namespace, pod, container)?
            .pid
    }

    /// Captured output of a pod's container.
    pub fn pod_logs(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let logs = self.api.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.get(&(
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        ))
        .cloned()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(cm) = &self.controllers {
            cm.stop();
        }
    }
}

/// A kubeconfig for a plain-HTTP server at `url`, context `stash-testkit`, namespace `default`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stash-testkit\n  cluster:\n    server: {url}\nusers:\n- name: stash-testkit\n  user:\n    token: stash-testkit\ncontexts:\n- name: stash-testkit\n  context:\n    cluster: stash-testkit\n    user: stash-testkit\n    namespace: default\ncurrent-context: stash-testkit\n"
    )
}
