//! `stash run`: the operator. Against the cluster of the current kubeconfig by default;
//! `--embedded` starts the testkit's fake API server, controller-manager and kubelet in process
//! (pods run this binary), applies the given objects and reports sessions as they progress;
//! `--demo` also starts a private MariaDB with sample data and the embedded S3 server and runs a
//! scheduled backup and a restore to completion. Those two and `--testkit-clock` need the
//! `embedded` cargo feature (on by default, off in the production image).

#[cfg(feature = "embedded")]
pub mod database_pod;
#[cfg(feature = "embedded")]
pub mod demo;

use crate::operator::clock::{SharedClock, SystemClock};
use crate::operator::http::Readiness;
use crate::operator::{self, Context};
use kube::Client;
use stash_core::plan::{Settings, DEFAULT_IMAGE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `stash run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run against an in-process fake API server (with controllers and a kubelet).
    #[arg(long, hide = cfg!(not(feature = "embedded")))]
    pub embedded: bool,
    /// With --embedded: also start MariaDB and S3 and run a backup and a restore to the end.
    #[arg(long, hide = cfg!(not(feature = "embedded")))]
    pub demo: bool,
    /// With --embedded: objects to apply (files or folders of YAML).
    #[arg(short = 'f', long = "filename", hide = cfg!(not(feature = "embedded")))]
    pub files: Vec<PathBuf>,
    /// With --embedded: virtual seconds the clock advances per real second.
    #[arg(long, default_value_t = 60, hide = cfg!(not(feature = "embedded")))]
    pub speed: u64,
    /// With --embedded (not --demo): stop after this many real seconds (0: run until interrupted).
    #[arg(long, default_value_t = 0, hide = cfg!(not(feature = "embedded")))]
    pub for_seconds: u64,
    /// Image of the operator; Jobs run it.
    #[arg(long, env = "STASH_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Take `now` from a `stash-testkit serve` API server's virtual clock (for tests driven
    /// through its clock endpoint); default: the system clock.
    #[arg(long, hide = cfg!(not(feature = "embedded")))]
    pub testkit_clock: bool,
    /// Also push session metrics to this Prometheus Pushgateway (http://host:port), as Stash.
    #[arg(long, env = "STASH_PUSHGATEWAY_URL")]
    pub pushgateway_url: Option<String>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "stash")]
    pub namespace: String,
}

/// Entry point.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stash run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if args.embedded || args.demo {
            embedded(args).await
        } else {
            cluster(args).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stash run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,stash_operator=info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The operator against the current cluster: catalog, leader election, controllers, HTTP.
async fn cluster(args: &RunArgs) -> Result<(), BoxError> {
    // Said before connecting anywhere, so the reason is not hidden behind a kubeconfig error.
    #[cfg(not(feature = "embedded"))]
    if args.testkit_clock {
        return Err(without_embedded("--testkit-clock").into());
    }
    let client = Client::try_default().await?;
    let settings = Settings {
        image: args.image.clone(),
        ..Settings::default()
    };
    let (clock, max_requeue): (SharedClock, Duration) = match args.testkit_clock {
        #[cfg(feature = "embedded")]
        true => (
            operator::clock::ApiServerClock::start(client.clone(), Duration::from_millis(200))
                .await?,
            Duration::from_secs(1),
        ),
        _ => (Arc::new(SystemClock), Duration::from_secs(300)),
    };
    let mut context = Context::new(client.clone(), settings, clock, max_requeue);
    context.pushgateway_url = args.pushgateway_url.clone().filter(|u| !u.is_empty());
    let ctx = Arc::new(context);
    let ready = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(operator::http::serve(
        args.metrics_addr,
        operator::http::router(ctx.clone(), ready.clone()),
        stop_rx.clone(),
    ));
    let missing = operator::preflight::missing_crds(&client).await?;
    if !missing.is_empty() {
        return Err(operator::preflight::missing_crds_error(&missing).into());
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("stash-operator-{}", std::process::id()));
    let mut leading = operator::leader::lead(
        client.clone(),
        args.namespace.clone(),
        "stash-operator".into(),
        identity,
    )
    .await?;
    let n = operator::catalog::apply_default_catalog(&client, &args.image).await?;
    tracing::info!(objects = n, "default catalog applied");
    ready.set(true);
    let controllers = tokio::spawn(operator::run_controllers(ctx, stop_rx));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = leading.wait_for(|l| !*l) => tracing::warn!("leadership lost; stopping"),
    }
    ready.set(false);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), controllers).await;
    let _ = http.await;
    Ok(())
}

/// Why a test-harness flag does not work in this build.
#[cfg(not(feature = "embedded"))]
fn without_embedded(flag: &str) -> String {
    format!(
        "{flag} needs the test harness, which this build of stash leaves out \
         (built without the cargo feature `embedded`, as the production image is); \
         build with `cargo build -p stash-operator --features embedded`"
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(feature = "embedded")]
use {
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams},
    kube::discovery::{ApiCapabilities, Scope},
    kube::ResourceExt,
    serde_json::Value,
    stash_core::api::{BackupSession, RestoreSession},
    stash_core::plan::FIELD_MANAGER,
    std::collections::BTreeMap,
};

#[cfg(feature = "embedded")]
/// A running embedded environment: the fake API server and the operator on its clock.
pub struct Embedded {
    /// The fake API server (TCP, with controllers and kubelet).
    pub server: stash_testkit::FakeApiServer,
    /// A client of it.
    pub client: Client,
    image: String,
    stop: tokio::sync::watch::Sender<bool>,
    controllers: tokio::task::JoinHandle<()>,
    context: Arc<Context>,
}

#[cfg(feature = "embedded")]
impl Embedded {
    /// Starts the server with the kubelet mapping `image` to `stash_binary`, installs the CRDs
    /// and the catalog, and starts the operator on the server's virtual clock.
    pub async fn start(image: &str, stash_binary: PathBuf) -> Result<Embedded, BoxError> {
        Self::start_with_kubelet_root(image, stash_binary, None).await
    }

    /// Like [`Embedded::start`], with the kubelet keeping pod sandboxes and claim data under
    /// `kubelet_root` (so that a test can look at a PersistentVolumeClaim's data).
    pub async fn start_with_kubelet_root(
        image: &str,
        stash_binary: PathBuf,
        kubelet_root: Option<PathBuf>,
    ) -> Result<Embedded, BoxError> {
        let mut builder = stash_testkit::FakeApiServer::builder()
            .tcp(0)
            .with_controllers()
            .exec(image, vec![stash_binary.display().to_string()]);
        if let Some(root) = kubelet_root {
            builder = builder.kubelet_root(root);
        }
        let server = builder.start().await?;
        let kubeconfig_path = server
            .kubeconfig_path()
            .ok_or("the embedded server wrote no kubeconfig")?;
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = Client::try_from(config)?;
        install_crds(&client).await?;
        operator::catalog::apply_default_catalog(&client, image).await?;
        let (stop, controllers, context) = spawn_operator(&server, &client, image);
        Ok(Embedded {
            server,
            client,
            image: image.to_string(),
            stop,
            controllers,
            context,
        })
    }

    /// Reconciles of `kind` the running operator has started.
    pub fn reconciles(&self, kind: &'static str) -> u64 {
        self.context.metrics.reconciles(kind)
    }

    /// Ends the operator abruptly, as a killed process: its reconciles are dropped wherever
    /// they are, requests in flight are abandoned, nothing is flushed.
    pub async fn crash_operator(&mut self) {
        self.controllers.abort();
        let _ = (&mut self.controllers).await;
    }

    /// Starts a new operator on the same server, with nothing carried over from the previous
    /// one (caches, metrics, event recorder), as a restarted process; the previous one must
    /// have been stopped or crashed.
    pub fn start_operator(&mut self) {
        let (stop, controllers, context) = spawn_operator(&self.server, &self.client, &self.image);
        self.stop = stop;
        self.controllers = controllers;
        self.context = context;
    }

    /// Applies every object of the given YAML files or folders.
    pub async fn apply_files(&self, files: &[PathBuf]) -> Result<usize, BoxError> {
        let mut n = 0;
        for path in files {
            for file in crate::commands::render::yaml_files(path)? {
                let text = std::fs::read_to_string(&file)?;
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let value: Value = serde::Deserialize::deserialize(doc)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    if value.is_null() {
                        continue;
                    }
                    self.apply(&value)
                        .await
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Server-side applies one object of any served kind, creating its namespace first if the
    /// set does not (fixture sets rarely carry Namespace objects).
    pub async fn apply(&self, value: &Value) -> Result<(), BoxError> {
        if let Some(ns) = value.pointer("/metadata/namespace").and_then(Value::as_str) {
            let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
            if api.get_opt(ns).await?.is_none() {
                apply_any(&self.client, &namespace).await?;
            }
        }
        apply_any(&self.client, value).await
    }

    /// Stops the operator.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.controllers).await;
    }
}

#[cfg(feature = "embedded")]
/// Starts the controllers on the server's virtual clock; returns their stop switch, task and
/// context.
fn spawn_operator(
    server: &stash_testkit::FakeApiServer,
    client: &Client,
    image: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
    Arc<Context>,
) {
    let clock: SharedClock = Arc::new(server.clock().clone());
    let settings = Settings {
        image: image.to_string(),
        ..Settings::default()
    };
    // Virtual time jumps: look again often so deadlines and retries are seen promptly.
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        clock,
        Duration::from_secs(1),
    ));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let controllers = tokio::spawn(operator::run_controllers(ctx.clone(), stop_rx));
    (stop, controllers, ctx)
}

#[cfg(feature = "embedded")]
async fn install_crds(client: &Client) -> Result<(), BoxError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in stash_core::crd::crds() {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    Ok(())
}

#[cfg(feature = "embedded")]
/// Server-side applies `value`, resolving its kind through discovery.
pub async fn apply_any(client: &Client, value: &Value) -> Result<(), BoxError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or("apiVersion is missing")?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("kind is missing")?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or("metadata.name is missing")?;
    let gvk = match api_version.split_once('/') {
        Some((g, v)) => kube::api::GroupVersionKind::gvk(g, v, kind),
        None => kube::api::GroupVersionKind::gvk("", api_version, kind),
    };
    let (ar, caps): (kube::api::ApiResource, ApiCapabilities) =
        kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply("stash-run").force(),
        &Patch::Apply(value),
    )
    .await?;
    Ok(())
}

#[cfg(feature = "embedded")]
/// Prints a line whenever a session changes phase; returns the phases seen now.
pub async fn report_progress(
    client: &Client,
    seen: &mut BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, BoxError> {
    let mut changes = Vec::new();
    for s in Api::<BackupSession>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        let key = format!(
            "BackupSession {}/{}",
            s.namespace().unwrap_or_default(),
            s.name_any()
        );
        let phase = s
            .status
            .as_ref()
            .and_then(|x| x.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        if seen.get(&key) != Some(&phase) {
            let mut detail = String::new();
            for t in s.status.iter().flat_map(|st| st.targets.iter().flatten()) {
                for h in t.stats.iter().flatten() {
                    for snap in h.snapshots.iter().flatten() {
                        detail.push_str(&format!(
                            " snapshot {} ({} processed, {} added, {})",
                            snap.name.clone().unwrap_or_default(),
                            snap.total_size.clone().unwrap_or_default(),
                            snap.uploaded.clone().unwrap_or_default(),
                            snap.processing_time.clone().unwrap_or_default()
                        ));
                    }
                    if let Some(e) = h.error.as_ref().filter(|e| !e.is_empty()) {
                        detail.push_str(&format!(" error: {e}"));
                    }
                }
            }
            for c in s
                .status
                .iter()
                .flat_map(|st| st.conditions.iter().flatten())
            {
                if c.type_ == "BackupSkipped" || (c.status == "False") {
                    detail.push_str(&format!(
                        " [{}: {}]",
                        c.type_,
                        c.message.clone().unwrap_or_default()
                    ));
                }
            }
            println!("{key}: {phase}{detail}");
            seen.insert(key.clone(), phase.clone());
            changes.push((key, phase));
        }
    }
    for r in Api::<RestoreSession>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        let key = format!(
            "RestoreSession {}/{}",
            r.namespace().unwrap_or_default(),
            r.name_any()
        );
        let phase = r
            .status
            .as_ref()
            .and_then(|x| x.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        if seen.get(&key) != Some(&phase) {
            let mut detail = String::new();
            for h in r.status.iter().flat_map(|st| st.stats.iter().flatten()) {
                detail.push_str(&restored_host_detail(h));
                if let Some(e) = h.error.as_ref().filter(|e| !e.is_empty()) {
                    detail.push_str(&format!(" error: {e}"));
                }
            }
            println!("{key}: {phase}{detail}");
            seen.insert(key.clone(), phase.clone());
            changes.push((key, phase));
        }
    }
    Ok(changes)
}

#[cfg(feature = "embedded")]
/// One host of a restore, as the backup line gives a snapshot: ` host host-0 (0:02)`, the
/// duration in the backup line's `m:ss`.
fn restored_host_detail(h: &stash_core::api::HostRestoreStats) -> String {
    let host = match h.hostname.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("host {name}"),
        // Without a target alias the restore reads the latest snapshot of any host.
        None => "any host (no target alias)".to_string(),
    };
    let duration = h
        .duration
        .as_deref()
        .and_then(|d| stash_core::duration::parse_go_duration_millis(d).ok())
        .map(|ms| stash_core::duration::format_processing_time(ms / 1000))
        .unwrap_or_else(|| h.duration.clone().unwrap_or_default());
    format!(" {host} ({duration})")
}

#[cfg(feature = "embedded")]
async fn embedded(args: &RunArgs) -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    let env = Embedded::start(&args.image, exe).await?;
    println!(
        "embedded API server at {} (kubeconfig {})",
        env.server.url().unwrap_or_default(),
        env.server
            .kubeconfig_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    if args.demo {
        let result = demo::run(&env, args.speed).await;
        env.stop().await;
        return result;
    }
    let n = env.apply_files(&args.files).await?;
    println!("applied {n} objects");
    let mut seen = BTreeMap::new();
    let started = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown_signal() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        env.server.advance(Duration::from_secs(args.speed)).await;
        report_progress(&env.client, &mut seen).await?;
        if args.for_seconds > 0 && started.elapsed() >= Duration::from_secs(args.for_seconds) {
            break;
        }
    }
    env.stop().await;
    Ok(())
}

#[cfg(not(feature = "embedded"))]
async fn embedded(args: &RunArgs) -> Result<(), BoxError> {
    Err(without_embedded(if args.demo { "--demo" } else { "--embedded" }).into())
}
