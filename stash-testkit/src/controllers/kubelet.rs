//! A kubelet that runs pods' containers as local processes: init containers in order, then
//! the main containers; env (including secret, configMap and field references), args with
//! `$(VAR)` expansion, volumes, a `KUBECONFIG` for this server, captured logs, and exit codes
//! reported as pod status. With root and `unshare` available, each pod runs in a private mount
//! namespace where its volumes are bind-mounted at their `mountPath`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::exec::{ContainerHandle, Containers};
use crate::apiserver::{name_of, namespace_of, uid_of, Apiserver, DeleteOptions, WriteOptions};

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

pub(super) struct Kubelet {
    api: Apiserver,
    config: KubeletConfig,
    node: String,
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    running: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    node_registered: AtomicBool,
    mount_ns: bool,
    containers: Containers,
}

const MANAGER: &str = "kubelet";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn mount_namespaces_available() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", "d=$(mktemp -d) && mount --bind \"$d\" \"$d\" && umount \"$d\"; r=$?; rmdir \"$d\"; exit $r"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Kubelet {
    pub(super) fn new(api: Apiserver, config: KubeletConfig) -> Self {
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
        let node = if config.node_name.is_empty() {
            "testkit-node".to_string()
        } else {
            config.node_name.clone()
        };
        Self {
            api,
            config,
            node,
            root,
            _tmp: tmp,
            running: Arc::default(),
            node_registered: AtomicBool::new(false),
            mount_ns: mount_namespaces_available(),
            containers: Containers::default(),
        }
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

    fn register_node(&self) {
        if self.node_registered.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(nodes) = self.api.resource("", "v1", "nodes") else {
            return;
        };
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}}});
        let _ = self
            .api
            .create(&nodes, "", node, &WriteOptions::manager(MANAGER));
        let now = self.api.clock.now_string();
        let _ = self.api.modify(&nodes, "", &self.node, "status", MANAGER, |n| {
            n["status"] = json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": now, "lastTransitionTime": now}],
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
            });
            true
        });
    }

    pub(super) fn kill_all(&self) {
        for kill in lock(&self.running).values() {
            let _ = kill.send(true);
        }
    }

    pub(super) fn sync(&self) {
        self.register_node();
        let Ok(pods) = self.api.resource("", "v1", "pods") else {
            return;
        };
        for pod in self.api.objects_of(&pods) {
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
                        let opts = DeleteOptions {
                            grace_period_seconds: Some(0),
                            ..DeleteOptions::default()
                        };
                        let _ = self.api.delete(&pods, &ns, &name, &opts);
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
            let now = self.api.clock.now_string();
            if let Err(message) = self.bind_claims(&pod, &ns) {
                self.unschedulable(&pods, &pod, &message);
                continue;
            }
            let node_name = self.node.clone();
            let bound = self.api.modify(&pods, &ns, &name, "", MANAGER, |p| {
                if !p["spec"].is_object() {
                    return false;
                }
                p["spec"]["nodeName"] = json!(node_name);
                true
            });
            let Ok(Some(bound)) = bound else { continue };
            let message = format!("Successfully assigned {ns}/{name} to {}", self.node);
            super::record_event(
                &self.api,
                &bound,
                "Normal",
                "Scheduled",
                &message,
                "default-scheduler",
            );
            let _ = self.api.modify(&pods, &ns, &name, "status", MANAGER, |p| {
                if !p["status"].is_object() {
                    p["status"] = json!({});
                }
                p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}]);
                true
            });
            let (kill_tx, kill_rx) = watch::channel(false);
            lock(&self.running).insert(uid.clone(), kill_tx);
            let run = PodRun {
                api: self.api.clone(),
                config: self.config.clone(),
                pod: bound,
                dir: self.root.join("pods").join(format!("{ns}_{name}_{uid}")),
                claims: self.root.clone(),
                kill: kill_rx,
                mount_ns: self.mount_ns,
                containers: self.containers.clone(),
            };
            let running = self.running.clone();
            tokio::spawn(async move {
                run.run().await;
                lock(&running).remove(&uid);
            });
        }
    }
}

/// The host directory holding the data of the PersistentVolumeClaim `namespace/claim` under a
/// kubelet root: like a local-path provisioner, each claim gets its own stable directory.
pub fn claim_dir(root: &std::path::Path, namespace: &str, claim: &str) -> PathBuf {
    root.join("claims").join(namespace).join(claim)
}

impl Kubelet {
    /// Checks that every claim the pod mounts exists and is not being deleted, and marks the
    /// claims Bound (a local-path provisioner binds on first use). The error is the scheduler's.
    fn bind_claims(&self, pod: &Value, ns: &str) -> Result<(), String> {
        let claims: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .collect();
        if claims.is_empty() {
            return Ok(());
        }
        let info = self
            .api
            .resource("", "v1", "persistentvolumeclaims")
            .map_err(|e| e.to_string())?;
        for claim in &claims {
            let pvc = self
                .api
                .get(&info, ns, claim)
                .map_err(|_| format!("persistentvolumeclaim \"{claim}\" not found"))?;
            if pvc["metadata"].get("deletionTimestamp").is_some() {
                return Err(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ));
            }
        }
        for claim in claims {
            let _ = self.api.modify(&info, ns, claim, "status", MANAGER, |c| {
                if c["status"]["phase"] == "Bound" {
                    return false;
                }
                let modes = c["spec"]["accessModes"].clone();
                let size = c["spec"]["resources"]["requests"]["storage"].clone();
                c["status"] =
                    json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}});
                true
            });
        }
        Ok(())
    }

    /// Leaves a pod Pending with the scheduler's condition and event, once per message.
    fn unschedulable(&self, pods: &crate::registry::ResourceInfo, pod: &Value, message: &str) {
        let message = format!("0/1 nodes are available: {message}.");
        let conditions = &pod["status"]["conditions"];
        if conditions
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodScheduled" && c["message"] == message.as_str())
        {
            return;
        }
        let now = self.api.clock.now_string();
        let (ns, name) = (namespace_of(pod), name_of(pod));
        let _ = self.api.modify(pods, ns, name, "status", MANAGER, |p| {
            if !p["status"].is_object() {
                p["status"] = json!({});
            }
            p["status"]["phase"] = json!("Pending");
            p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                               "message": message, "lastProbeTime": null, "lastTransitionTime": now}]);
            true
        });
        super::record_event(
            &self.api,
            pod,
            "Warning",
            "FailedScheduling",
            &message,
            "default-scheduler",
        );
    }
}

struct PodRun {
    api: Apiserver,
    config: KubeletConfig,
    pod: Value,
    dir: PathBuf,
    /// The kubelet root, under which claims have their directories ([`claim_dir`]).
    claims: PathBuf,
    kill: watch::Receiver<bool>,
    mount_ns: bool,
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

fn image_base(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

impl PodRun {
    fn ns(&self) -> &str {
        namespace_of(&self.pod)
    }

    fn killed(&self) -> bool {
        *self.kill.borrow()
    }

    fn name(&self) -> &str {
        name_of(&self.pod)
    }

    fn log(&self, container: &str, text: &str) {
        let mut logs = lock(&self.api.logs);
        logs.entry((
            self.ns().to_string(),
            self.name().to_string(),
            container.to_string(),
        ))
        .or_default()
        .push_str(text);
    }

    fn set_status(&self, f: impl FnOnce(&mut Value)) {
        let Ok(pods) = self.api.resource("", "v1", "pods") else {
            return;
        };
        let mut f = Some(f);
        let _ = self
            .api
            .modify(&pods, self.ns(), self.name(), "status", MANAGER, |p| {
                if !p["status"].is_object() {
                    p["status"] = json!({});
                }
                if let Some(f) = f.take() {
                    f(&mut p["status"]);
                }
                true
            });
    }

    fn lookup(&self, plural: &str, name: &str) -> Option<Value> {
        let info = self.api.resource("", "v1", plural).ok()?;
        self.api.get(&info, self.ns(), name).ok()
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

    fn env(&self, c: &Value) -> Result<Vec<(String, String)>, String> {
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), self.name().to_string()),
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
                match self.lookup(plural, name) {
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
                    let value = self.lookup(plural, obj_name).and_then(|obj| {
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
    fn volumes(&self) -> Result<HashMap<String, PathBuf>, String> {
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
                for (plural, field, name_field) in [
                    ("secrets", "secret", "secretName"),
                    ("configmaps", "configMap", "name"),
                ] {
                    let Some(obj_name) = v[field][name_field].as_str() else {
                        continue;
                    };
                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    match self.lookup(plural, obj_name) {
                        Some(obj) => {
                            for (k, value) in self.data_of(plural, &obj) {
                                std::fs::write(dir.join(k), value).map_err(|e| e.to_string())?;
                            }
                        }
                        None if v[field]["optional"] == true => {}
                        None => return Err(format!("{plural} \"{obj_name}\" not found")),
                    }
                }
                dir
            };
            std::fs::create_dir_all(&path).map_err(|e| format!("volume {name}: {e}"))?;
            out.insert(name.to_string(), path);
        }
        Ok(out)
    }

    async fn run_container(&mut self, c: &Value, volumes: &HashMap<String, PathBuf>) -> Finished {
        let started = self.api.clock.now_string();
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        let fail = |this: &Self, msg: String| {
            this.log(&cname, &format!("{msg}\n"));
            Finished {
                exit_code: 128,
                started: started.clone(),
                finished: this.api.clock.now_string(),
            }
        };
        let env = match self.env(c) {
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
        let mut mount_env: Vec<(String, String)> = Vec::new();
        let in_mount_ns = self.mount_ns && !mounts.is_empty();
        let handle = ContainerHandle {
            pid: None,
            env: env.clone(),
            workdir: workdir.clone(),
            mount_ns: in_mount_ns,
            mount_paths: mounts.iter().map(|(_, dst)| dst.clone()).collect(),
        };
        let mut cmd = if in_mount_ns {
            let mut script = String::from("set -e\n");
            for (i, (src, dst)) in mounts.iter().enumerate() {
                script.push_str(&format!(
                    "mkdir -p \"$M{i}\"\nmount --bind \"$S{i}\" \"$M{i}\"\n"
                ));
                mount_env.push((format!("S{i}"), src.to_string_lossy().into_owned()));
                mount_env.push((format!("M{i}"), dst.clone()));
            }
            script.push_str("cd \"$TESTKIT_WORKDIR\"\nexec \"$@\"\n");
            let mut cmd = tokio::process::Command::new("unshare");
            cmd.args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                &script,
                "sh",
            ]);
            cmd.args(&argv);
            cmd
        } else {
            // Without mount namespaces volumes are prepared but not visible at mountPath.
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        };
        if std::fs::create_dir_all(&workdir).is_err()
            || std::fs::create_dir_all(self.dir.join("home")).is_err()
        {
            return fail(
                self,
                format!("cannot create working directory {}", workdir.display()),
            );
        }
        cmd.env_clear()
            .envs(env)
            .envs(mount_env)
            .env("TESTKIT_WORKDIR", &workdir)
            .current_dir(&workdir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(self, format!("failed to start {:?}: {e}", argv[0])),
        };
        let logs = self.api.logs.clone();
        let key = (
            self.ns().to_string(),
            self.name().to_string(),
            cname.clone(),
        );
        let handle = ContainerHandle {
            pid: child.id(),
            ..handle
        };
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
                    lock(&logs)
                        .entry(key.clone())
                        .or_default()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
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
            finished: self.api.clock.now_string(),
        }
    }

    async fn run(mut self) {
        let pod = self.pod.clone();
        let spec = &pod["spec"];
        let restart = spec["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string();
        let volumes = match self.volumes() {
            Ok(v) => v,
            Err(e) => {
                self.set_status(|s| {
                    s["phase"] = json!("Failed");
                    s["reason"] = json!("VolumeError");
                    s["message"] = json!(e);
                });
                self.finish_deletion();
                return;
            }
        };
        let now = self.api.clock.now_string();
        let inits: Vec<Value> = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mains: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
        let mut init_statuses = Vec::new();
        for c in &inits {
            let f = self.run_container(c, &volumes).await;
            init_statuses.push(terminated(c, &f, 0));
            if f.exit_code != 0 || self.killed() {
                let statuses = init_statuses.clone();
                self.set_status(|s| {
                    s["phase"] = json!("Failed");
                    s["initContainerStatuses"] = json!(statuses);
                });
                self.finish_deletion();
                return;
            }
        }
        let running: Vec<Value> = mains
            .iter()
            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                            "restartCount": 0, "state": {"running": {"startedAt": now}}}))
            .collect();
        let statuses = init_statuses.clone();
        self.set_status(|s| {
            s["phase"] = json!("Running");
            s["startTime"] = json!(now);
            s["podIP"] = json!("127.0.0.1");
            s["podIPs"] = json!([{"ip": "127.0.0.1"}]);
            s["hostIP"] = json!("127.0.0.1");
            s["conditions"] = json!([
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ]);
            s["containerStatuses"] = json!(running);
            if !statuses.is_empty() {
                s["initContainerStatuses"] = json!(statuses);
            }
        });
        for c in &mains {
            let message = format!(
                "Started container {}",
                c["name"].as_str().unwrap_or_default()
            );
            super::record_event(
                &self.api, &self.pod, "Normal", "Started", &message, "kubelet",
            );
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
        let done = self.api.clock.now_string();
        self.set_status(|s| {
            s["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
            s["containerStatuses"] = json!(results);
            s["conditions"] = json!([
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": done},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": done},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ]);
        });
        self.finish_deletion();
    }

    fn finish_deletion(&self) {
        if !self.killed() {
            return;
        }
        if let Ok(pods) = self.api.resource("", "v1", "pods") {
            let opts = DeleteOptions {
                grace_period_seconds: Some(0),
                ..DeleteOptions::default()
            };
            let _ = self.api.delete(&pods, self.ns(), self.name(), &opts);
        }
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
