//! kubectl (the one on PATH) against `stash-testkit serve`: CRDs usable at once, server-side
//! apply with conflicts, get/patch/label/delete, `get -w`, `wait`, and Jobs run by the kubelet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Served {
    child: Child,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn serve(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_stash-testkit"))
        .args(["serve", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "serve did not write its kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The file is written in one call after the listener is bound; give the write a moment.
    std::thread::sleep(Duration::from_millis(50));
    Served {
        child,
        dir,
        kubeconfig,
    }
}

impl Served {
    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"));
        cmd.args(args);
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.example.com
spec:
  group: example.com
  names: {kind: Backup, plural: backups, singular: backup, listKind: BackupList, shortNames: [bk]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Schedule, type: string, jsonPath: .spec.schedule}
    - {name: Keep, type: integer, jsonPath: .spec.keep}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [schedule]
            properties:
              schedule: {type: string}
              keep: {type: integer, default: 3}
"#;

const BACKUP: &str = r#"
apiVersion: example.com/v1
kind: Backup
metadata:
  name: nightly
spec:
  schedule: "0 1 * * *"
"#;

fn skip_without_kubectl() -> bool {
    if kubectl_available() {
        return false;
    }
    eprintln!("kubectl is not on PATH; skipping");
    true
}

#[test]
fn crd_is_usable_at_once_with_apply_get_patch_label_delete() {
    if skip_without_kubectl() {
        return;
    }
    let s = serve(&[]);
    let crd = s.write("crd.yaml", CRD);
    s.ok(&["apply", "-f", &crd]);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/backups.example.com",
        "--timeout=20s",
    ]);
    let cr = s.write("backup.yaml", BACKUP);
    let out = s.ok(&["apply", "--server-side", "-f", &cr]);
    assert!(
        out.contains("backup.example.com/nightly serverside-applied"),
        "{out}"
    );

    let table = s.ok(&["get", "backups"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // A CRD with printer columns gets exactly those (plus NAME): the API server adds an Age
    // column only to CRDs that declare none.
    assert_eq!(rows[0], vec!["NAME", "SCHEDULE", "KEEP"], "{table}");
    assert_eq!(
        &rows[1][..7],
        &["nightly", "0", "1", "*", "*", "*", "3"],
        "{table}"
    );

    let obj = s.json(&["get", "bk", "nightly"]);
    assert_eq!(obj["spec"]["keep"], 3, "schema default applied");
    assert_eq!(obj["metadata"]["generation"], 1);

    s.ok(&[
        "patch",
        "backup",
        "nightly",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"keep":5}}"#,
    ]);
    s.ok(&[
        "patch",
        "backup",
        "nightly",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/schedule","value":"0 2 * * *"}]"#,
    ]);
    s.ok(&["label", "backup", "nightly", "tier=gold"]);
    let obj = s.json(&["get", "backups", "-l", "tier=gold"]);
    let items = obj["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["spec"],
        serde_json::json!({"schedule": "0 2 * * *", "keep": 5})
    );
    assert_eq!(items[0]["metadata"]["generation"], 3);

    // kubectl validates strictly by default: unknown fields are rejected, not pruned.
    let junk = s.write("junk.yaml", &format!("{BACKUP}  junk: 1\n"));
    let rejected = s.kubectl(&["apply", "--server-side", "-f", &junk]);
    assert!(!rejected.status.success());
    let err = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.junk\""),
        "{err}"
    );
    s.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--validate=false",
        "-f",
        &junk,
    ]);
    assert!(
        s.json(&["get", "backup", "nightly"])["spec"]
            .get("junk")
            .is_none(),
        "pruned without strict validation"
    );

    let out = s.ok(&["delete", "backup", "nightly"]);
    assert!(out.contains("deleted"), "{out}");
    let gone = s.kubectl(&["get", "backup", "nightly"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[test]
fn explain_shows_the_descriptions_of_stash_crds() {
    if skip_without_kubectl() {
        return;
    }
    let s = serve(&[]);
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds.yaml");
    s.ok(&["apply", "-f", &crds.to_string_lossy()]);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/backupconfigurations.stash.appscode.com",
        "--timeout=20s",
    ]);
    // The description of the kind and of its spec, as `stash crds` generates them (the
    // CustomResource derive would otherwise say "Auto-generated derived type for ...").
    let out = s.ok(&["explain", "backupconfiguration"]);
    assert!(
        out.contains("BackupConfiguration schedules backups of a database"),
        "{out}"
    );
    assert!(!out.contains("Auto-generated"), "{out}");
    let out = s.ok(&["explain", "backupconfiguration.spec"]);
    assert!(out.contains("What a BackupConfiguration asks for"), "{out}");
    let out = s.ok(&["explain", "restoresessions"]);
    assert!(out.contains("RestoreSession restores a database"), "{out}");
}

#[test]
fn server_side_apply_conflicts_and_force() {
    if skip_without_kubectl() {
        return;
    }
    let s = serve(&[]);
    let v1 = s.write(
        "v1.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: low\n",
    );
    let v2 = s.write(
        "v2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: high\n",
    );
    s.ok(&["apply", "--server-side", "-f", &v1]);
    let conflict = s.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "ops",
        "-f",
        &v2,
    ]);
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .data.level"),
        "{err}"
    );
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "ops",
        "--force-conflicts",
        "-f",
        &v2,
    ]);
    let obj = s.json(&["get", "configmap", "settings", "--show-managed-fields"]);
    assert_eq!(obj["data"]["level"], "high");
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        managers,
        vec!["ops"],
        "kubectl lost its only field to the forced apply"
    );

    let deploy = s.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op}\nspec:\n  selector: {matchLabels: {app: op}}\n  template:\n    metadata: {labels: {app: op}}\n    spec:\n      containers: [{name: op, image: stash-rs:latest}]\n",
    );
    let out = s.ok(&["apply", "--server-side", "--dry-run=server", "-f", &deploy]);
    assert!(
        out.contains("deployment.apps/op serverside-applied (server dry run)"),
        "{out}"
    );
    assert!(
        !s.kubectl(&["get", "deployment", "op"]).status.success(),
        "a dry run stores nothing"
    );
    s.ok(&["apply", "--server-side", "-f", &deploy]);
    assert_eq!(
        s.json(&["get", "deploy", "op"])["metadata"]["generation"],
        1
    );

    let dry = s.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "ops",
        "--dry-run=server",
        "-f",
        &v1,
    ]);
    assert!(dry.contains("server dry run"), "{dry}");
    assert_eq!(
        s.json(&["get", "configmap", "settings"])["data"]["level"],
        "high"
    );
}

#[test]
fn get_watch_sees_a_change() {
    if skip_without_kubectl() {
        return;
    }
    let s = serve(&[]);
    let cm = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  k: before\n",
    );
    s.ok(&["create", "-f", &cm]);
    let mut watch = s
        .kubectl_cmd(&[
            "get",
            "configmap",
            "watched",
            "-w",
            "-o",
            "jsonpath={.data.k}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the watch prints the current state");
    assert_eq!(first, "before");
    s.ok(&[
        "patch",
        "configmap",
        "watched",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"k":"after"}}"#,
    ]);
    let second = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the watch prints the change");
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(second, "after");
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn jobs_run_real_processes_and_deleting_collects_children() {
    if skip_without_kubectl() || !Path::new("/bin/sh").exists() {
        return;
    }
    let s = serve(&[
        "--controllers",
        "--exec",
        "example/sleeper=sleep",
        "--exec",
        "example/shell:1=/bin/sh -c",
    ]);
    let quick = s.write(
        "quick.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: quick}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: example/shell:1
        args: ["echo hello from $(WHO) in $POD_NS"]
        env:
        - {name: WHO, value: testkit}
        - name: POD_NS
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
"#,
    );
    s.ok(&["apply", "--server-side", "-f", &quick]);
    s.ok(&[
        "wait",
        "--for=condition=Complete",
        "job/quick",
        "--timeout=30s",
    ]);
    let logs = s.ok(&["logs", "-l", "job-name=quick"]);
    assert_eq!(logs.trim(), "hello from testkit in default");

    let slow = s.write(
        "slow.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: slow}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: main, image: example/sleeper, args: [\"30\"]}\n",
    );
    s.ok(&["apply", "--server-side", "-f", &slow]);
    wait_until("the slow pod to run", || {
        let pods = s.json(&["get", "pods", "-l", "job-name=slow"]);
        pods["items"]
            .as_array()
            .is_some_and(|i| i.len() == 1 && i[0]["status"]["phase"] == "Running")
    });
    s.ok(&["delete", "job", "slow", "--timeout=30s"]);
    wait_until("the slow pod to be collected", || {
        s.json(&["get", "pods", "-l", "job-name=slow"])["items"]
            .as_array()
            .is_some_and(|i| i.is_empty())
    });
}

#[test]
fn cronjob_fires_when_the_clock_endpoint_advances() {
    if skip_without_kubectl() || !Path::new("/bin/sh").exists() {
        return;
    }
    let s = serve(&["--controllers"]);
    let cj = s.write(
        "cj.yaml",
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: main, image: busybox, command: ["sh", "-c", "echo tick"]}
"#,
    );
    s.ok(&["apply", "--server-side", "-f", &cj]);
    assert_eq!(
        s.json(&["get", "jobs"])["items"].as_array().unwrap().len(),
        0
    );
    let body = s.write("empty.json", "{}");
    let out = s.ok(&[
        "create",
        "--raw",
        "/testkit/v1/clock?advance=300",
        "-f",
        &body,
    ]);
    assert!(out.contains("\"now\""), "{out}");
    let jobs = s.json(&["get", "jobs"]);
    let items = jobs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "exactly one Job after five minutes");
    let name = items[0]["metadata"]["name"].as_str().unwrap().to_string();
    let minutes: i64 = name.strip_prefix("tick-").unwrap().parse().unwrap();
    assert_eq!(minutes % 5, 0, "named after its scheduled minute: {name}");
    s.ok(&[
        "wait",
        "--for=condition=Complete",
        &format!("job/{name}"),
        "--timeout=30s",
    ]);
}

#[test]
fn typed_generators_create_namespaces_configmaps_and_secrets() {
    if skip_without_kubectl() {
        return;
    }
    // kubectl's generators send protobuf; the fake decodes these three kinds.
    let s = serve(&[]);
    s.ok(&["create", "namespace", "demo"]);
    s.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "demo",
        "--from-literal=a=b",
        "--from-literal=c=d",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "demo",
        "--from-literal=password=s3cret",
    ]);
    let cm = s.json(&["get", "configmap", "cfg", "-n", "demo"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "b", "c": "d"}));
    let secret = s.json(&["get", "secret", "creds", "-n", "demo"]);
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    assert_eq!(secret["type"], "Opaque");
    s.ok(&["create", "serviceaccount", "robot", "-n", "demo"]);
    assert_eq!(
        s.json(&["get", "serviceaccount", "robot", "-n", "demo"])["metadata"]["name"],
        "robot"
    );
    let other = s.kubectl(&[
        "create",
        "role",
        "reader",
        "-n",
        "demo",
        "--verb=get",
        "--resource=pods",
    ]);
    assert!(
        !other.status.success(),
        "other generator kinds are still unsupported"
    );
    assert!(String::from_utf8_lossy(&other.stderr).contains("unknown format"));
}
