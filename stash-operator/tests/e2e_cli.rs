//! The operator as users run it, out of process: `stash-testkit serve --controllers --exec
//! IMAGE=<stash>` and `stash run` against it, driven only with kubectl and the testkit's clock
//! endpoint, take a Stash-shaped BackupConfiguration through a scheduled backup and a
//! RestoreSession with the data intact.

use serde_json::Value;
use stash_operator::commands::run::demo;
use stash_testkit::providers::mysql::MysqlServer;
use stash_testkit::providers::s3::S3Server;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stash_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stash"))
}

/// The `stash-testkit` binary next to ours; built on demand when only this package was built.
fn testkit_bin() -> PathBuf {
    let path = stash_bin().with_file_name("stash-testkit");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "stash-testkit",
                "--bin",
                "stash-testkit",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building stash-testkit failed");
    }
    path
}

fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl finishes")
}

fn kubectl_ok(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(kubeconfig, cache, args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `POST /testkit/v1/clock?advance=SECONDS` with a plain HTTP/1.1 request.
fn advance(server: &str, seconds: u64) {
    let addr = server.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("server reachable");
    write!(s, "POST /testkit/v1/clock?advance={seconds} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "clock advance answered {answer:?}"
    );
}

fn server_url(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
        .expect("server url in kubeconfig")
}

fn phases(kubeconfig: &Path, cache: &Path, resource: &str) -> Vec<(String, String)> {
    let list: Value = serde_json::from_str(&kubectl_ok(
        kubeconfig,
        cache,
        &["get", resource, "-n", "demo", "-o", "json"],
        None,
    ))
    .expect("json");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                i["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn yaml_docs(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| format!("---\n{}", serde_yaml::to_string(v).expect("yaml")))
        .collect()
}

#[test]
fn kubectl_and_clock_endpoint_drive_a_backup_and_a_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let cache = dir.path().join("kubectl-cache");
    let source = MysqlServer::start().expect("source MariaDB");
    demo::seed(&source).expect("seed");
    let target = MysqlServer::start().expect("target MariaDB");
    let s3 = S3Server::start().expect("S3");
    s3.create_bucket("stash-demo").expect("bucket");

    let image = stash_core::plan::DEFAULT_IMAGE;
    let _server = Killed(
        Command::new(testkit_bin())
            .args(["serve", "--port", "0", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--controllers")
            .arg(format!("--exec={image}={}", stash_bin().display()))
            .stdout(Stdio::null())
            .spawn()
            .expect("stash-testkit serve"),
    );
    let started = Instant::now();
    while !kubeconfig.exists()
        || !kubectl(&kubeconfig, &cache, &["get", "namespaces"], None)
            .status
            .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test server did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = server_url(&kubeconfig);
    let crds =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds.yaml"))
            .expect("crds");
    kubectl_ok(
        &kubeconfig,
        &cache,
        &["apply", "--server-side", "-f", "-"],
        Some(&crds),
    );

    let _operator = Killed(
        Command::new(stash_bin())
            .args([
                "run",
                "--testkit-clock",
                "--metrics-addr=127.0.0.1:0",
                "--namespace=default",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("stash run"),
    );
    kubectl_ok(
        &kubeconfig,
        &cache,
        &["apply", "--server-side", "-f", "-"],
        Some(&yaml_docs(&demo::objects(&source, &target, &s3))),
    );

    // Wait for Ready, then move the clock one schedule at a time until a backup succeeded.
    let started = Instant::now();
    loop {
        let out = kubectl_ok(
            &kubeconfig,
            &cache,
            &[
                "get",
                "bc",
                "sample-mysql-backup",
                "-n",
                "demo",
                "-o",
                "jsonpath={.status.phase}",
            ],
            None,
        );
        if out == "Ready" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "BackupConfiguration not Ready: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let started = Instant::now();
    loop {
        let sessions = phases(&kubeconfig, &cache, "backupsessions");
        assert!(!sessions.iter().any(|(_, p)| p == "Failed"), "{sessions:?}");
        if sessions.iter().any(|(_, p)| p == "Succeeded") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no backup succeeded: {sessions:?}"
        );
        if sessions
            .iter()
            .all(|(_, p)| matches!(p.as_str(), "Succeeded" | "Failed" | "Skipped"))
        {
            advance(&url, 300);
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    kubectl_ok(
        &kubeconfig,
        &cache,
        &["apply", "--server-side", "-f", "-"],
        Some(&yaml_docs(&[demo::restore_session()])),
    );
    kubectl_ok(
        &kubeconfig,
        &cache,
        &[
            "wait",
            "-n",
            "demo",
            "--for=jsonpath={.status.phase}=Succeeded",
            "restoresession/sample-mysql-restore",
            "--timeout=120s",
        ],
        None,
    );
    let (a, b) = (
        source.checksums().expect("source"),
        target.checksums().expect("target"),
    );
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
