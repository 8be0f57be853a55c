//! Replays the HTTP exchanges recorded from a real kube-apiserver (`shared/conformance/*.json`,
//! format and rules in its README) against a fresh fake server per scenario, started as
//! `stash-testkit serve --controllers` starts it, and fails on any difference. Also checks
//! that the real `kubectl explain` works against `stash-testkit serve`.
//!
//! The folder is `$STASH_CONFORMANCE_DIR`, or else the first `shared/conformance` found beside
//! the workspace or one of its parents (CI keeps `shared/` beside the clone).
//! `STASH_CONFORMANCE_ONLY=name[,name]` restricts the run to some scenarios.

#[path = "conformance/replay.rs"]
mod replay;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stash_testkit::FakeApiServer;

fn conformance_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STASH_CONFORMANCE_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared").join("conformance"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no shared/conformance folder beside {} or its parents; set STASH_CONFORMANCE_DIR",
                manifest.display()
            )
        })
}

fn scenarios(dir: &Path) -> Vec<(PathBuf, Value)> {
    let only: Option<Vec<String>> = std::env::var("STASH_CONFORMANCE_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let doc: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            assert_eq!(
                doc["format"],
                "stash-conformance/1",
                "{}: unknown format",
                p.display()
            );
            (p, doc)
        })
        .filter(|(_, doc)| {
            only.as_ref().is_none_or(|o| {
                o.iter()
                    .any(|n| doc["scenario"].as_str() == Some(n.as_str()))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_exchanges_replay_without_mismatch() {
    let dir = conformance_dir();
    let docs = scenarios(&dir);
    assert!(
        !docs.is_empty(),
        "no *.json scenario in {}: nothing was checked",
        dir.display()
    );
    let mut total = 0;
    let mut failed = 0;
    let mut report = String::new();
    let mut summary = String::new();
    for (path, doc) in &docs {
        // A fresh server per scenario, as `stash-testkit serve --controllers` runs it.
        let server = FakeApiServer::builder()
            .tcp(0)
            .with_controllers()
            .start()
            .await
            .expect("start the fake API server");
        let base = server.url().expect("TCP mode has a URL");
        let verdicts = replay::replay_scenario(&base, doc).await;
        drop(server);
        let bad: Vec<&replay::Verdict> = verdicts
            .iter()
            .filter(|v| !v.differences.is_empty())
            .collect();
        total += verdicts.len();
        failed += bad.len();
        summary.push_str(&format!(
            "  {}: {} exchanges, {} mismatches\n",
            path.file_name().unwrap_or_default().to_string_lossy(),
            verdicts.len(),
            bad.len()
        ));
        for v in bad {
            report.push_str(&format!("MISMATCH {} / {}\n", v.scenario, v.step));
            for d in v.differences.iter().take(8) {
                report.push_str(&format!("    {d}\n"));
            }
            if v.differences.len() > 8 {
                report.push_str(&format!(
                    "    ... and {} more differences\n",
                    v.differences.len() - 8
                ));
            }
        }
    }
    eprintln!(
        "{report}conformance ({}):\n{summary}{total} exchanges, {failed} mismatches",
        dir.display()
    );
    assert!(total > 0, "no exchanges replayed");
    assert_eq!(
        failed, 0,
        "{total} exchanges, {failed} mismatches (details above)"
    );
}

// ---------------------------------------------------------------- kubectl explain

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Served {
    child: std::process::Child,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_stash-testkit"))
        .args(["serve", "--port", "0", "--controllers", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn stash-testkit serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "serve wrote no kubeconfig");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    Served {
        child,
        dir,
        kubeconfig,
    }
}

impl Served {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

#[test]
fn kubectl_explain_reads_crd_descriptions_from_openapi_v3() {
    if !kubectl_available() {
        eprintln!("kubectl is not on PATH; skipping");
        return;
    }
    let s = serve();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds.yaml");
    s.ok(&["apply", "-f", &crds.to_string_lossy()]);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/backupconfigurations.stash.appscode.com",
        "--timeout=20s",
    ]);
    // Whitespace differs between kubectl versions; compare with runs of it collapsed.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let out = words(&s.ok(&["explain", "backupconfiguration.spec.schedule"]));
    for want in [
        "KIND: BackupConfiguration",
        "VERSION: v1beta1",
        "FIELD: schedule <string>",
        "Five-field cron schedule of the trigger CronJob.",
    ] {
        assert!(out.contains(want), "{want:?} missing in: {out}");
    }
    let out = words(&s.ok(&["explain", "backupconfigurations.spec"]));
    assert!(out.contains("schedule <string>"), "{out}");
    assert!(
        out.contains("What a BackupConfiguration asks for: the target, the Repository"),
        "{out}"
    );
}
