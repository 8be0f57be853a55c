//! A kubelet that runs pods' containers as local processes: init containers in order, then
//! the main containers; env (including secret, configMap and field references), args with
//! `$(VAR)` expansion, volumes, a `KUBECONFIG` for the API server, captured logs, and exit
//! codes reported as pod status.
//!
//! It is a node agent that talks to its API server only through a `kube::Client`
//! ([`node_api`]): in process the client speaks to the fake server's router, standalone
//! (`stash-testkit kubelet`) to any API server. It registers a Node, binds pods that have no
//! `nodeName` to itself (there is no scheduler), and runs them. With root, each container
//! runs in a private mount namespace with a copy-on-write root and its volumes at their
//! `mountPath`, with the pod's hostname and a PID namespace of its own ([`sandbox`]).

pub mod node_api;
pub mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::exec::{ContainerHandle, Containers};
use crate::apiserver::{name_of, namespace_of, uid_of, PodLogs};
use crate::clock::VirtualClock;
use node_api::NodeApi;
use sandbox::Isolation;

/// Kubelet settings.
#[derive(Debug, Clone, Default)]
pub struct KubeletConfig {
    /// Container image → local command (program and leading arguments) that stands in for the
    /// image's entrypoint. An image reference also matches without its tag or digest.
    pub exec: HashMap<String, Vec<String>>,
    /// Kubeconfig handed to containers as `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// Directory for pod sandboxes and claim data; a temporary directory when unset.
    pub root: Option<PathBuf>,
    /// Node name; `testkit-node` when empty.
    pub node_name: String,
}

/// Where timestamps come from: the fake server's virtual clock, or the wall clock when the
/// kubelet runs against a real server.
#[derive(Debug, Clone)]
pub enum NodeClock {
    /// The fake server's clock.
    Virtual(VirtualClock),
    /// Real time, whole seconds.
    Wall,
}

impl NodeClock {
    fn now_string(&self) -> String {
        match self {
            Self::Virtual(c) => c.now_string(),
            Self::Wall => crate::clock::format_time(jiff::Timestamp::now()),
        }
    }
}

/// Where container output goes: the fake server's log store (served as `pods/log`), or files
/// `<dir>/<namespace>_<pod>_<container>.log` when the API server cannot hold logs.
#[derive(Debug, Clone)]
pub enum LogSink {
    /// The fake server's pod logs.
    Memory(PodLogs),
    /// One file per container.
    Files(PathBuf),
}

impl LogSink {
    fn append(&self, key: &(String, String, String), text: &str) {
        match self {
            Self::Memory(logs) => lock(logs).entry(key.clone()).or_default().push_str(text),
            Self::Files(dir) => {
                use std::io::Write;
                let path = dir.join(format!("{}_{}_{}.log", key.0, key.1, key.2));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path);
                if let Ok(mut f) = file {
                    let _ = f.write_all(text.as_bytes());
                }
            }
        }
    }
}

/// A kubelet for one node.
pub struct Kubelet {
    api: NodeApi,
    clock: NodeClock,
    logs: LogSink,
    config: KubeletConfig,
    node: String,
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    running: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    node_registered: AtomicBool,
    isolation: Isolation,
    pod_namespaces: bool,
    containers: Containers,
}

const MANAGER: &str = "kubelet";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kubelet {
    /// A kubelet that reaches its API server through `client`.
    pub fn new(
        client: kube::Client,
        clock: NodeClock,
        logs: LogSink,
        config: KubeletConfig,
    ) -> Self {
        let (root, tmp) = match &config.root {
            Some(r) => (r.clone(), None),
            None => match tempfile::Builder::new()
                .prefix("stash-testkit-kubelet")
                .tempdir()
            {
                Ok(t) => (t.path().to_path_buf(), Some(t)),
                Err(_) => (std::env::temp_dir().join("stash-testkit-kubelet"), None),
            },
        };
        let isolation = Isolation::probe();
        let node = if config.node_name.is_empty() {
            "testkit-node".to_string()
        } else {
            config.node_name.clone()
        };
        Self {
            api: NodeApi::new(client),
            clock,
            logs,
            config,
            node,
            root,
            _tmp: tmp,
            running: Arc::default(),
            node_registered: AtomicBool::new(false),
            isolation,
            pod_namespaces: isolation.probe_pod_namespaces(),
            containers: Containers::default(),
        }
    }

    /// How this kubelet isolates containers on this host.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The running container `(namespace, pod, container)`, for `pods/exec`.
    pub(super) fn container(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
    ) -> Option<ContainerHandle> {
        let key = (ns.to_string(), pod.to_string(), container.to_string());
        lock(&self.containers).get(&key).cloned()
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    async fn register_node(&self) -> Result<(), kube::Error> {
        if self.node_registered.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.api
            .register_node(&self.node, &self.clock.now_string())
            .await?;
        self.node_registered.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Kills every container this kubelet runs.
    pub fn kill_all(&self) {
        for kill in lock(&self.running).values() {
            let _ = kill.send(true);
        }
    }

    /// Runs as a node agent until the process ends: one sync every `every`.
    pub async fn run(&self, every: Duration) {
        loop {
            if let Err(e) = self.sync().await {
                eprintln!("stash-testkit kubelet: {e}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One pass: registers the node, binds and starts new pods, kills deleted ones.
    pub async fn sync(&self) -> Result<(), kube::Error> {
        self.register_node().await?;
        for pod in self.api.list_pods().await? {
            let uid = uid_of(&pod).to_string();
            let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
            if !node.is_empty() && node != self.node {
                continue;
            }
            let ns = namespace_of(&pod).to_string();
            let name = name_of(&pod).to_string();
            if pod["metadata"].get("deletionTimestamp").is_some() {
                let running = lock(&self.running).get(&uid).cloned();
                match running {
                    Some(kill) => {
                        let _ = kill.send(true);
                    }
                    None if pod["metadata"]["deletionGracePeriodSeconds"] != 0
                        || !node.is_empty() =>
                    {
                        self.api.delete_pod_now(&ns, &name, &uid).await?;
                    }
                    None => {}
                }
                continue;
            }
            if pod["status"]["phase"].as_str().unwrap_or("Pending") != "Pending"
                || lock(&self.running).contains_key(&uid)
            {
                continue;
            }
            if let Err(message) = self.bind_claims(&pod, &ns).await {
                self.unschedulable(&pod, &message).await;
                continue;
            }
            if node.is_empty() {
                if !self.api.bind(&ns, &name, &self.node).await? {
                    continue;
                }
                let message = format!("Successfully assigned {ns}/{name} to {}", self.node);
                let now = self.clock.now_string();
                self.api
                    .record_event(&pod, "Scheduled", &message, "default-scheduler", &now)
                    .await;
            }
            let mut bound = pod;
            bound["spec"]["nodeName"] = json!(self.node);
            let (kill_tx, kill_rx) = watch::channel(false);
            lock(&self.running).insert(uid.clone(), kill_tx);
            let run = PodRun {
                api: self.api.clone(),
                clock: self.clock.clone(),
                logs: self.logs.clone(),
                config: self.config.clone(),
                pod: bound,
                dir: self.root.join("pods").join(format!("{ns}_{name}_{uid}")),
                claims: self.root.clone(),
                kill: kill_rx,
                isolation: self.isolation,
                pod_namespaces: self.pod_namespaces,
                containers: self.containers.clone(),
            };
            let running = self.running.clone();
            tokio::spawn(async move {
                run.run().await;
                lock(&running).remove(&uid);
            });
        }
        Ok(())
    }
}

/// The host directory holding the data of the PersistentVolumeClaim `namespace/claim` under a
/// kubelet root: like a local-path provisioner, each claim gets its own stable directory.
pub fn claim_dir(root: &Path, namespace: &str, claim: &str) -> PathBuf {
    root.join("claims").join(namespace).join(claim)
}

impl Kubelet {
    /// Checks that every claim the pod mounts exists and is not being deleted, and marks the
    /// claims Bound (a local-path provisioner binds on first use). The error is the scheduler's.
    async fn bind_claims(&self, pod: &Value, ns: &str) -> Result<(), String> {
        let claims: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .collect();
        let mut found = Vec::new();
        for claim in &claims {
            let pvc = self
                .api
                .get("persistentvolumeclaims", ns, claim)
                .await
                .ok()
                .flatten()
                .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
            if pvc["metadata"].get("deletionTimestamp").is_some() {
                return Err(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ));
            }
            found.push(pvc);
        }
        for (claim, pvc) in claims.iter().zip(found) {
            if pvc["status"]["phase"] == "Bound" {
                continue;
            }
            let status = json!({"phase": "Bound", "accessModes": pvc["spec"]["accessModes"],
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]}});
            let _ = self
                .api
                .patch_status("persistentvolumeclaims", ns, claim, &status)
                .await;
        }
        Ok(())
    }

    /// Leaves a pod Pending with the scheduler's condition and event, once per message.
    async fn unschedulable(&self, pod: &Value, message: &str) {
        let message = format!("0/1 nodes are available: {message}.");
        if pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodScheduled" && c["message"] == message.as_str())
        {
            return;
        }
        let now = self.clock.now_string();
        let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]});
        let _ = self
            .api
            .patch_status("pods", namespace_of(pod), name_of(pod), &status)
            .await;
        self.api
            .record_event_of_type(
                pod,
                "Warning",
                "FailedScheduling",
                &message,
                "default-scheduler",
                &now,
            )
            .await;
    }
}

struct PodRun {
    api: NodeApi,
    clock: NodeClock,
    logs: LogSink,
    config: KubeletConfig,
    pod: Value,
    dir: PathBuf,
    claims: PathBuf,
    kill: watch::Receiver<bool>,
    isolation: Isolation,
    pod_namespaces: bool,
    containers: Containers,
}

struct Finished {
    exit_code: i32,
    started: String,
    finished: String,
}

fn terminated(c: &Value, f: &Finished, restarts: i64) -> Value {
    json!({
        "name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false, "restartCount": restarts,
        "state": {"terminated": {
            "exitCode": f.exit_code, "reason": if f.exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": f.started, "finishedAt": f.finished,
        }},
    })
}

fn waiting(c: &Value, reason: &str) -> Value {
    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false,
           "restartCount": 0, "state": {"waiting": {"reason": reason}}})
}

/// Status while init container `current` runs, as the real kubelet reports it: phase Pending,
/// the init container running, later ones and the main containers waiting.
fn initializing(
    inits: &[Value],
    mains: &[Value],
    done: &[Value],
    current: usize,
    started: &str,
    now: &str,
) -> Value {
    let mut statuses = done.to_vec();
    statuses.extend(inits.iter().enumerate().skip(current).map(|(i, c)| {
        if i == current {
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": true,
                   "restartCount": 0, "state": {"running": {"startedAt": now}}})
        } else {
            waiting(c, "PodInitializing")
        }
    }));
    let pending: Vec<&str> = inits[current..]
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let not_ready: Vec<&str> = mains.iter().filter_map(|c| c["name"].as_str()).collect();
    json!({
        "phase": "Pending",
        "startTime": started,
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "conditions": [
            {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
             "message": format!("containers with incomplete status: [{}]", pending.join(" ")),
             "lastProbeTime": null, "lastTransitionTime": started},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "message": format!("containers with unready status: [{}]", not_ready.join(" ")),
             "lastProbeTime": null, "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
             "message": format!("containers with unready status: [{}]", not_ready.join(" ")),
             "lastProbeTime": null, "lastTransitionTime": started},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": started},
        ],
        "initContainerStatuses": statuses,
        "containerStatuses": mains.iter().map(|c| waiting(c, "PodInitializing")).collect::<Vec<_>>(),
    })
}

fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                let var = &after[..j];
                match env.iter().rev().find(|(k, _)| k == var) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("$(");
                        out.push_str(var);
                        out.push(')');
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The host PID of the container's program in a PID namespace: a grandchild of `unshare`
/// (`outer`), under the namespace's first shell, which names it in the sandbox's
/// [`sandbox::pid_file`]. `None` if it ended before it could be seen.
async fn program_pid(
    outer: u32,
    sandbox_dir: &Path,
    child: &mut tokio::process::Child,
) -> Option<u32> {
    let file = sandbox::pid_file(sandbox_dir);
    for _ in 0..1000 {
        let inner = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(inner) = inner {
            let grandchildren: Vec<u32> = sandbox::children(outer)
                .into_iter()
                .flat_map(sandbox::children)
                .collect();
            if let Some(pid) = sandbox::host_pid_of(inner, &grandchildren) {
                return Some(pid);
            }
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn image_base(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

impl PodRun {
    /// An empty directory the container's namespace mounts its private root on.
    fn sandbox(&self, container: &str) -> PathBuf {
        self.dir.join("sandbox").join(container)
    }

    fn ns(&self) -> &str {
        namespace_of(&self.pod)
    }

    fn killed(&self) -> bool {
        *self.kill.borrow()
    }

    fn name(&self) -> &str {
        name_of(&self.pod)
    }

    /// The hostname the pod's containers have, as on a node.
    fn hostname(&self) -> String {
        stash_core::names::pod_hostname(self.name(), self.pod["spec"]["hostname"].as_str())
    }

    fn log_key(&self, container: &str) -> (String, String, String) {
        (
            self.ns().to_string(),
            self.name().to_string(),
            container.to_string(),
        )
    }

    fn log(&self, container: &str, text: &str) {
        self.logs.append(&self.log_key(container), text);
    }

    /// Merges `status` into the pod's status; the pod may be gone already.
    async fn set_status(&self, status: Value) {
        if let Err(e) = self
            .api
            .patch_pod_status(self.ns(), self.name(), &status)
            .await
        {
            self.log(
                MANAGER,
                &format!("kubelet: cannot update pod status: {e}\n"),
            );
        }
    }

    async fn lookup(&self, plural: &str, name: &str) -> Option<Value> {
        self.api.get(plural, self.ns(), name).await.ok().flatten()
    }

    fn data_of(&self, plural: &str, obj: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in obj["data"].as_object().into_iter().flatten() {
            let text = v.as_str().unwrap_or_default();
            let value = if plural == "secrets" {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            } else {
                text.to_string()
            };
            out.push((k.clone(), value));
        }
        out
    }

    fn field_ref(&self, path: &str) -> Option<String> {
        let meta = &self.pod["metadata"];
        let from_map = |map: &str, rest: &str| -> Option<String> {
            let key = rest.strip_prefix("['")?.strip_suffix("']")?;
            meta[map][key].as_str().map(String::from)
        };
        match path {
            "metadata.name" => Some(self.name().to_string()),
            "metadata.namespace" => Some(self.ns().to_string()),
            "metadata.uid" => Some(uid_of(&self.pod).to_string()),
            "spec.nodeName" => self.pod["spec"]["nodeName"].as_str().map(String::from),
            "spec.serviceAccountName" => Some(
                self.pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
            ),
            "status.podIP" | "status.hostIP" => Some("127.0.0.1".to_string()),
            p if p.starts_with("metadata.labels[") => {
                from_map("labels", &p["metadata.labels".len()..])
            }
            p if p.starts_with("metadata.annotations[") => {
                from_map("annotations", &p["metadata.annotations".len()..])
            }
            _ => None,
        }
    }

    async fn env(&self, c: &Value) -> Result<Vec<(String, String)>, String> {
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), self.hostname()),
            (
                "HOME".into(),
                self.dir.join("home").to_string_lossy().into_owned(),
            ),
        ];
        if let Some(k) = &self.config.kubeconfig {
            env.push(("KUBECONFIG".into(), k.to_string_lossy().into_owned()));
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            for (plural, field) in [("configmaps", "configMapRef"), ("secrets", "secretRef")] {
                let Some(name) = from[field]["name"].as_str() else {
                    continue;
                };
                match self.lookup(plural, name).await {
                    Some(obj) => env.extend(
                        self.data_of(plural, &obj)
                            .into_iter()
                            .map(|(k, v)| (format!("{prefix}{k}"), v)),
                    ),
                    None if from[field]["optional"] == true => {}
                    None => return Err(format!("{plural} \"{name}\" not found")),
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let Some(name) = e["name"].as_str() else {
                continue;
            };
            if let Some(v) = e["value"].as_str() {
                let v = expand(v, &env);
                env.push((name.to_string(), v));
                continue;
            }
            let from = &e["valueFrom"];
            let value = if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                self.field_ref(path)
            } else if from["resourceFieldRef"].is_object() {
                Some("0".to_string())
            } else {
                let mut found = None;
                for (plural, field) in [
                    ("secrets", "secretKeyRef"),
                    ("configmaps", "configMapKeyRef"),
                ] {
                    let r = &from[field];
                    let (Some(obj_name), Some(key)) = (r["name"].as_str(), r["key"].as_str())
                    else {
                        continue;
                    };
                    let value = self.lookup(plural, obj_name).await.and_then(|obj| {
                        self.data_of(plural, &obj)
                            .into_iter()
                            .find(|(k, _)| k == key)
                            .map(|(_, v)| v)
                    });
                    match value {
                        Some(v) => found = Some(v),
                        None if r["optional"] == true => {}
                        None => {
                            return Err(format!(
                                "couldn't find key {key} in {plural} {}/{obj_name}",
                                self.ns()
                            ))
                        }
                    }
                }
                found
            };
            if let Some(v) = value {
                env.push((name.to_string(), v));
            }
        }
        Ok(env)
    }

    fn argv(&self, c: &Value, env: &[(String, String)]) -> Result<Vec<String>, String> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| expand(s, env))
                .collect()
        };
        let command = strings(&c["command"]);
        let args = strings(&c["args"]);
        let image = c["image"].as_str().unwrap_or_default();
        let mapped = self
            .config
            .exec
            .get(image)
            .or_else(|| self.config.exec.get(image_base(image)));
        let mut argv = match (mapped, command.is_empty()) {
            (Some(m), true) => m.clone(),
            (Some(m), false) => m
                .iter()
                .cloned()
                .chain(command.into_iter().skip(1))
                .collect(),
            (None, false) => command,
            (None, true) => {
                return Err(format!(
                    "image {image:?} has no command mapped (use --exec {image}=COMMAND)"
                ))
            }
        };
        argv.extend(args);
        if argv.first().is_none_or(String::is_empty) {
            return Err(format!("empty command for image {image:?}"));
        }
        Ok(argv)
    }

    /// Prepares volumes; returns name → host directory or file.
    async fn volumes(&self) -> Result<HashMap<String, PathBuf>, String> {
        let mut out = HashMap::new();
        for v in self.pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let Some(name) = v["name"].as_str() else {
                continue;
            };
            let dir = self.dir.join("volumes").join(name);
            let path = if let Some(p) = v["hostPath"]["path"].as_str() {
                PathBuf::from(p)
            } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                claim_dir(&self.claims, self.ns(), claim)
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| format!("volume {name}: {e}"))?;
                match v["projected"]["sources"].as_array() {
                    Some(sources) => {
                        for source in sources {
                            self.write_source(source, &dir, true).await?;
                        }
                    }
                    None => self.write_source(v, &dir, false).await?,
                }
                dir
            };
            std::fs::create_dir_all(&path).map_err(|e| format!("volume {name}: {e}"))?;
            out.insert(name.to_string(), path);
        }
        Ok(out)
    }

    /// Writes the files of a `secret`, `configMap`, `downwardAPI` or `serviceAccountToken`
    /// source (a volume, or one source of a projected volume) into `dir`, honouring `items`.
    ///
    /// Deliberate difference: a real kubelet keeps a pod waiting until every object of a
    /// projected volume exists. Here a missing one in a projected volume is left out (and
    /// noted in the pod's `kubelet` log): the OpenShift-based kube-apiserver v1.36 we compare
    /// with adds an `openshift-service-ca.crt` source to every `kube-api-access-*` volume, and
    /// nothing publishes that ConfigMap outside OpenShift.
    async fn write_source(&self, v: &Value, dir: &Path, projected: bool) -> Result<(), String> {
        let write = |rel: &str, value: &str| -> Result<(), String> {
            if rel.split('/').any(|part| part == "..") || rel.starts_with('/') {
                return Err(format!("invalid path {rel:?} in volume"));
            }
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(path, value).map_err(|e| e.to_string())
        };
        for (plural, field, name_field) in [
            ("secrets", "secret", "secretName"),
            ("configmaps", "configMap", "name"),
        ] {
            let src = &v[field];
            let Some(obj_name) = src[name_field].as_str().or(src["name"].as_str()) else {
                continue;
            };
            let optional = src["optional"] == true;
            let Some(obj) = self.lookup(plural, obj_name).await else {
                if optional {
                    continue;
                }
                if projected {
                    self.log(
                        MANAGER,
                        &format!("projected volume: {plural} \"{obj_name}\" not found; left out\n"),
                    );
                    continue;
                }
                return Err(format!("{plural} \"{obj_name}\" not found"));
            };
            let data = self.data_of(plural, &obj);
            match src["items"].as_array() {
                Some(items) => {
                    for item in items {
                        let key = item["key"].as_str().unwrap_or_default();
                        match data.iter().find(|(k, _)| k == key) {
                            Some((_, value)) => {
                                write(item["path"].as_str().unwrap_or(key), value)?;
                            }
                            None if optional => {}
                            None => {
                                return Err(format!(
                                    "couldn't find key {key} in {plural} {}/{obj_name}",
                                    self.ns()
                                ))
                            }
                        }
                    }
                }
                None => {
                    for (k, value) in &data {
                        write(k, value)?;
                    }
                }
            }
        }
        for item in v["downwardAPI"]["items"].as_array().into_iter().flatten() {
            let (Some(rel), Some(field)) = (
                item["path"].as_str(),
                item["fieldRef"]["fieldPath"].as_str(),
            ) else {
                continue;
            };
            write(rel, &self.field_ref(field).unwrap_or_default())?;
        }
        let token = &v["serviceAccountToken"];
        if let Some(rel) = token["path"].as_str() {
            let account = self.pod["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            let audience = token["audience"].as_str();
            let seconds = token["expirationSeconds"].as_i64().unwrap_or(3607);
            // A server without the TokenRequest API (the fake one) leaves the file out; pods
            // here reach the server through KUBECONFIG.
            if let Ok(Some(value)) = self
                .api
                .request_token(self.ns(), account, audience, seconds)
                .await
            {
                write(rel, &value)?;
            }
        }
        Ok(())
    }

    async fn run_container(&mut self, c: &Value, volumes: &HashMap<String, PathBuf>) -> Finished {
        let started = self.clock.now_string();
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        let fail = |this: &Self, msg: String| {
            this.log(&cname, &format!("{msg}\n"));
            Finished {
                exit_code: 128,
                started: started.clone(),
                finished: this.clock.now_string(),
            }
        };
        let env = match self.env(c).await {
            Ok(e) => e,
            Err(e) => return fail(self, e),
        };
        let argv = match self.argv(c, &env) {
            Ok(a) => a,
            Err(e) => return fail(self, e),
        };
        let workdir = c["workingDir"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.join("work"));
        let mut mounts: Vec<(PathBuf, String)> = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let (Some(src), Some(dst)) = (
                m["name"].as_str().and_then(|n| volumes.get(n)),
                m["mountPath"].as_str(),
            ) else {
                continue;
            };
            let src = match m["subPath"].as_str().filter(|p| !p.is_empty()) {
                Some(sub) if sub.starts_with('/') || sub.split('/').any(|p| p == "..") => {
                    return fail(self, format!("volumeMount {dst}: invalid subPath {sub:?}"));
                }
                Some(sub) => {
                    let dir = src.join(sub);
                    if let Err(e) = std::fs::create_dir_all(&dir) {
                        return fail(self, format!("volumeMount {dst}: subPath {sub}: {e}"));
                    }
                    dir
                }
                None => src.clone(),
            };
            mounts.push((src, dst.to_string()));
        }
        let host_dirs = [
            self.dir.join("home"),
            self.dir.join("work"),
            self.sandbox(&cname),
        ];
        // Inside a sandbox the working directory is made in the container's own root.
        let workdir_on_host = (self.isolation == Isolation::None).then_some(&workdir);
        if host_dirs
            .iter()
            .chain(workdir_on_host)
            .any(|d| std::fs::create_dir_all(d).is_err())
        {
            return fail(
                self,
                format!("cannot create working directory {}", workdir.display()),
            );
        }
        let handle = ContainerHandle {
            pid: None,
            env: env.clone(),
            workdir: workdir.clone(),
            mount_ns: self.isolation != Isolation::None,
            pod_ns: self.pod_namespaces,
            mount_paths: mounts.iter().map(|(_, dst)| dst.clone()).collect(),
        };
        let hostname = self.hostname();
        // A restarted container's first shell writes its program's PID afresh.
        let _ = std::fs::remove_file(sandbox::pid_file(&self.sandbox(&cname)));
        let mut cmd = self.isolation.command(
            &argv,
            &workdir,
            &self.sandbox(&cname),
            &mounts,
            self.pod_namespaces.then_some(hostname.as_str()),
        );
        cmd.env_clear().envs(env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(self, format!("failed to start {:?}: {e}", argv[0])),
        };
        let logs = self.logs.clone();
        let key = self.log_key(&cname);
        let pid = match child.id() {
            Some(outer) if self.pod_namespaces => {
                program_pid(outer, &self.sandbox(&cname), &mut child).await
            }
            pid => pid,
        };
        let handle = ContainerHandle { pid, ..handle };
        lock(&self.containers).insert(key.clone(), handle);
        let pump = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
            let logs = logs.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let Some(mut s) = stream else { return };
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    logs.append(&key, &String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let out = pump(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        );
        let err = pump(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        );
        let mut kill = self.kill.clone();
        let exited = tokio::select! {
            status = child.wait() => Some(status.ok().and_then(|s| s.code()).unwrap_or(137)),
            _ = async move { let _ = kill.wait_for(|k| *k).await; } => None,
        };
        let code = match exited {
            Some(code) => code,
            None => {
                let _ = child.kill().await;
                137
            }
        };
        lock(&self.containers).remove(&key);
        let _ = out.await;
        let _ = err.await;
        Finished {
            exit_code: code,
            started,
            finished: self.clock.now_string(),
        }
    }

    async fn run(mut self) {
        let pod = self.pod.clone();
        let spec = &pod["spec"];
        let restart = spec["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string();
        let volumes = match self.volumes().await {
            Ok(v) => v,
            Err(e) => {
                self.set_status(json!({"phase": "Failed", "reason": "VolumeError", "message": e}))
                    .await;
                self.finish_deletion().await;
                return;
            }
        };
        let now = self.clock.now_string();
        let inits: Vec<Value> = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mains: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
        let mut init_statuses = Vec::new();
        for (i, c) in inits.iter().enumerate() {
            self.set_status(initializing(
                &inits,
                &mains,
                &init_statuses,
                i,
                &now,
                &self.clock.now_string(),
            ))
            .await;
            let f = self.run_container(c, &volumes).await;
            init_statuses.push(terminated(c, &f, 0));
            if f.exit_code != 0 || self.killed() {
                self.set_status(json!({"phase": "Failed", "initContainerStatuses": init_statuses}))
                    .await;
                self.finish_deletion().await;
                return;
            }
        }
        let running: Vec<Value> = mains
            .iter()
            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                            "restartCount": 0, "state": {"running": {"startedAt": now}}}))
            .collect();
        let mut status = json!({
            "phase": "Running",
            "startTime": now,
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ],
            "containerStatuses": running,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        self.set_status(status).await;
        for c in &mains {
            let message = format!(
                "Started container {}",
                c["name"].as_str().unwrap_or_default()
            );
            let at = self.clock.now_string();
            self.api
                .record_event(&self.pod, "Started", &message, MANAGER, &at)
                .await;
        }
        // Main containers run one after another in this fake; pods here have one main container
        // in practice, and sequential runs keep the log and status bookkeeping simple.
        let mut results = Vec::new();
        for c in &mains {
            let mut restarts = 0i64;
            loop {
                let f = self.run_container(c, &volumes).await;
                let retry =
                    restart == "OnFailure" && f.exit_code != 0 && !self.killed() && restarts < 5;
                if !retry {
                    results.push(terminated(c, &f, restarts));
                    break;
                }
                restarts += 1;
            }
        }
        let ok = results
            .iter()
            .all(|r| r["state"]["terminated"]["exitCode"] == 0);
        let done = self.clock.now_string();
        self.set_status(json!({
            "phase": if ok { "Succeeded" } else { "Failed" },
            "containerStatuses": results,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": done},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": done},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ],
        }))
        .await;
        self.finish_deletion().await;
    }

    async fn finish_deletion(&self) {
        if !self.killed() {
            return;
        }
        let _ = self
            .api
            .delete_pod_now(self.ns(), self.name(), uid_of(&self.pod))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_expansion_and_image_names() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y$(B)", &env), "x1y$(B)");
        assert_eq!(image_base("repo/img:1.2"), "repo/img");
        assert_eq!(image_base("localhost:5000/img"), "localhost:5000/img");
        assert_eq!(image_base("img@sha256:abc"), "img");
    }
}
