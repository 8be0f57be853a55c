//! Secrets never leave the places made for them: a whole backup and restore on the testkit, with
//! real MariaDB and S3, while every process started under this test has its command line read
//! over and over. Afterwards the operator's log, the Jobs' logs, the pods' specs, Events and
//! every status are searched for the secret values too.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::ResourceExt;
use serde_json::Value;
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use stash_testkit::providers::mysql::MysqlServer;
use stash_testkit::providers::s3::S3Server;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "demo";

/// The processes that descend from this test process (the kubelet runs pods as our children).
fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let mut parent = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(pid, ppid);
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&pid| {
            let mut at = pid;
            for _ in 0..64 {
                match parent.get(&at) {
                    Some(&p) if p == me => return true,
                    Some(&p) if p > 1 => at = p,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Reads command lines until `stop`; returns the ones that held a secret, and how many process
/// command lines were read in all (so the test knows the scan saw the Jobs run). The database
/// passwords must not be in any environment either: restic takes its own password from the
/// environment by design, MySQL clients need not (`MYSQL_PWD` is deprecated).
fn scan_command_lines(
    secrets: Vec<String>,
    env_secrets: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, usize) {
    let mut leaks = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        for pid in descendants() {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if seen.insert(line.clone()) {
                for s in &secrets {
                    if line.contains(s.as_str()) {
                        leaks.push(line.replace(s.as_str(), "<SECRET>"));
                    }
                }
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let environ = String::from_utf8_lossy(&environ);
                for s in &env_secrets {
                    if environ.contains(s.as_str()) {
                        leaks.push(format!("environment of: {line}"));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (leaks, seen.len())
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn wait_phase<F, Fut>(env: &Embedded, step: Duration, what: &str, mut phase: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let started = Instant::now();
    loop {
        if let Some(p) = phase().await {
            if matches!(p.as_str(), "Succeeded" | "Failed" | "Skipped") {
                return p;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !step.is_zero() {
            env.server.advance(step).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_arguments_logs_events_or_status() {
    let operator_log = Captured::default();
    let writer = operator_log.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .try_init()
        .expect("only this test installs a subscriber");

    let (source, target, s3) = tokio::task::spawn_blocking(|| {
        let source = MysqlServer::start().expect("source MariaDB");
        demo::seed(&source).expect("seed");
        let target = MysqlServer::start().expect("target MariaDB");
        let s3 = S3Server::start().expect("S3");
        s3.create_bucket("stash-demo").expect("bucket");
        (source, target, s3)
    })
    .await
    .expect("join");
    let objects = demo::objects(&source, &target, &s3);
    let mut secrets: Vec<String> = vec![
        source.password().to_owned(),
        target.password().to_owned(),
        s3.secret_key().to_owned(),
    ];
    // Whatever else the demo's Secrets hold that is a credential (the repository password).
    for o in &objects {
        if o["kind"] == "Secret" {
            for (key, value) in o["stringData"].as_object().into_iter().flatten() {
                if key.contains("PASSWORD") || key.contains("SECRET") || key == "password" {
                    secrets.extend(value.as_str().map(str::to_owned));
                }
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() >= 4, "{secrets:?}");
    assert!(
        secrets.iter().all(|s| s.len() >= 8),
        "secrets too short to search for"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let scanner = std::thread::spawn({
        let (secrets, stop) = (secrets.clone(), stop.clone());
        let db_passwords = vec![source.password().to_owned(), target.password().to_owned()];
        move || scan_command_lines(secrets, db_passwords, stop)
    });

    let env = Embedded::start(
        stash_core::plan::DEFAULT_IMAGE,
        env!("CARGO_BIN_EXE_stash").into(),
    )
    .await
    .expect("embedded environment");
    for o in &objects {
        env.apply(o).await.expect("apply");
    }
    let sessions = Api::<BackupSession>::namespaced(env.client.clone(), NS);
    let backup = wait_phase(&env, Duration::from_secs(60), "a backup", || async {
        let list = sessions.list(&ListParams::default()).await.ok()?;
        list.items.first()?.status.as_ref()?.phase.clone()
    })
    .await;
    assert_eq!(backup, "Succeeded");
    env.apply(&demo::restore_session()).await.expect("restore");
    let restores = Api::<RestoreSession>::namespaced(env.client.clone(), NS);
    let restore = wait_phase(&env, Duration::from_secs(10), "the restore", || async {
        let r = restores.get("sample-mysql-restore").await.ok()?;
        r.status?.phase
    })
    .await;
    assert_eq!(restore, "Succeeded");

    stop.store(true, Ordering::Relaxed);
    let (leaks, lines_read) = scanner.join().expect("scanner");
    assert!(
        lines_read >= 3,
        "the scan saw only {lines_read} command lines: it did not watch the Jobs"
    );
    assert!(leaks.is_empty(), "secrets in command lines: {leaks:#?}");

    // Everything a user or a log collector can read.
    let mut readable: Vec<(String, String)> = Vec::new();
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    let pod_list = pods.list(&ListParams::default()).await.expect("pods").items;
    assert!(pod_list.len() >= 2, "backup and restore pods");
    for p in &pod_list {
        let spec = p.spec.clone().unwrap_or_default();
        readable.push((
            format!("pod {}", p.name_any()),
            serde_json::to_string(&spec).unwrap_or_default(),
        ));
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let lp = LogParams {
                container: Some(c.name.clone()),
                ..LogParams::default()
            };
            let log = pods.logs(&p.name_any(), &lp).await.unwrap_or_default();
            readable.push((format!("log {}/{}", p.name_any(), c.name), log));
        }
    }
    let events = Api::<Event>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    assert!(!events.is_empty());
    for e in events {
        readable.push((
            format!("event {}", e.name_any()),
            serde_json::to_string(&e).unwrap_or_default(),
        ));
    }
    let status_of = |v: Value| v.get("status").cloned().unwrap_or(Value::Null).to_string();
    for s in sessions
        .list(&ListParams::default())
        .await
        .expect("s")
        .items
    {
        readable.push((
            format!("status of {}", s.name_any()),
            status_of(serde_json::to_value(&s).unwrap()),
        ));
    }
    for r in restores
        .list(&ListParams::default())
        .await
        .expect("r")
        .items
    {
        readable.push((
            format!("status of {}", r.name_any()),
            status_of(serde_json::to_value(&r).unwrap()),
        ));
    }
    for r in Api::<Repository>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("repos")
        .items
    {
        readable.push((
            format!("status of {}", r.name_any()),
            status_of(serde_json::to_value(&r).unwrap()),
        ));
    }
    for b in Api::<BackupConfiguration>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("bcs")
        .items
    {
        readable.push((
            format!("status of {}", b.name_any()),
            status_of(serde_json::to_value(&b).unwrap()),
        ));
    }
    env.stop().await;
    let log = String::from_utf8_lossy(&operator_log.0.lock().expect("log")).into_owned();
    assert!(log.len() > 1000, "the operator's log was not captured");
    readable.push(("operator log".to_owned(), log));

    for (what, text) in &readable {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret is in the {what}");
        }
    }
}
