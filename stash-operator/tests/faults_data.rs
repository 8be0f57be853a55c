//! Data-side faults, with real parts: the testkit's fake API server, controllers and kubelet
//! running our binary, real MariaDB servers, the embedded S3 server, the in-process engine, and
//! the stock `restic` program as the judge of the repository. In every case the session ends
//! Failed with a reason that names the cause, no snapshot is counted, `restic check` is clean,
//! and the lock a crash leaves is removed by the stale-lock rule of the next backup. As on a
//! node, each pod has its own hostname (its name) and PID namespace, so a crashed pod's lock
//! is another host's to restic: only the pod's end tells it is stale.
//!
//! A fault is injected mid-stream without sleeping: a test client holds a table lock, so the
//! dump (or the restore) blocks on that table once the tables before it are streamed; the
//! fault strikes while the job waits there.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::Value;
use stash_core::api::{BackupSession, Repository, RestoreSession};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use stash_testkit::providers::{MysqlServer, S3Server};
use support::*;

/// Rows of `shop.bulk`: about 16 MB of dump, several packs, streamed before the gate table.
const BULK_ROWS: u32 = 100_000;

/// Adds to `shop` a bulk table dumped before the demo tables, and a last table `zz_gate` that
/// a [`TableGate`] can hold.
fn add_bulk_and_gate(db: &MysqlServer) {
    db.execute(&format!(
        "USE shop; CREATE TABLE shop.bulk (id INT PRIMARY KEY, v VARCHAR(160)); \
         INSERT INTO shop.bulk SELECT seq, CONCAT(MD5(RAND()), MD5(RAND()), MD5(RAND()), MD5(RAND())) \
         FROM seq_1_to_{BULK_ROWS}; \
         CREATE TABLE shop.zz_gate (id INT PRIMARY KEY); INSERT INTO shop.zz_gate VALUES (1);"
    ))
    .expect("bulk data");
}

/// A client session holding a lock on a table until the gate is dropped.
struct TableGate(Child);

impl TableGate {
    /// `LOCK TABLES <table> WRITE`: whoever reads the table waits.
    fn close(db: &MysqlServer, table: &str) -> TableGate {
        Self::hold(db, &format!("LOCK TABLES {table} WRITE;"))
    }

    /// A transaction that has read `table`: whoever drops it waits (and, unlike a table lock,
    /// nothing else in its database does).
    fn close_for_ddl(db: &MysqlServer, table: &str) -> TableGate {
        Self::hold(db, &format!("BEGIN; SELECT COUNT(*) INTO @n FROM {table};"))
    }

    fn hold(db: &MysqlServer, sql: &str) -> TableGate {
        let mut child = db
            .root_client()
            .arg("--unbuffered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("mariadb client");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{sql} SELECT 'locked';").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        // The lock lives as long as the session: keep its input open.
        std::mem::forget(stdin);
        TableGate(child)
    }
}

impl Drop for TableGate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when a connection of `db` waits for a table lock (the job is blocked at the gate).
fn waits_at_gate(db: &MysqlServer) -> bool {
    db.execute(
        "SELECT COUNT(*) FROM information_schema.processlist \
         WHERE state = 'Waiting for table metadata lock'",
    )
    .is_ok_and(|n| n.trim() != "0")
}

/// The demo repository, as stock restic addresses it.
fn restic(s3: &S3Server, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env(
            "RESTIC_REPOSITORY",
            s3.restic_repository("stash-demo", "demo/mysql"),
        )
        .env("RESTIC_PASSWORD", "demo-repository-password")
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
        .output()
        .expect("restic runs")
}

fn snapshot_count(s3: &S3Server) -> usize {
    let out = restic(s3, &["snapshots", "--json", "--no-lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .expect("snapshot list")
        .len()
}

fn lock_count(s3: &S3Server) -> usize {
    let out = restic(s3, &["list", "locks", "--no-lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `restic check` (taking its own exclusive lock unless `no_lock`) finds no error.
fn assert_check_clean(s3: &S3Server, no_lock: bool) {
    let mut args = vec!["check"];
    if no_lock {
        args.push("--no-lock");
    }
    let out = restic(s3, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("no errors were found"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files stored in the demo repository's `data/` (packs).
fn pack_files(s3: &S3Server) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&s3.root().join("stash-demo/demo/mysql/data"))
}

/// The one session that is not in `known`, once it runs.
async fn running_session(
    env: &Embedded,
    known: &std::collections::BTreeSet<String>,
) -> BackupSession {
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(60),
        "a Running session",
        || async {
            sessions(env)
                .await
                .into_iter()
                .find(|s| !known.contains(&s.name_any()) && phase(s) == "Running")
        },
    )
    .await
}

async fn session_named(env: &Embedded, name: &str, what: &str) -> BackupSession {
    let api = Api::<BackupSession>::namespaced(env.client.clone(), NS);
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(90),
        what,
        || async {
            let s = api.get(name).await.ok()?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed").then_some(s)
        },
    )
    .await
}

/// Waits for the session `name` to end, asserts it Failed, and returns its host's error.
async fn failed_host_error(env: &Embedded, name: &str, what: &str) -> String {
    let failed = session_named(env, name, what).await;
    assert_eq!(phase(&failed), "Failed", "{:?}", failed.status);
    host_error(&failed)
}

fn host_error(s: &BackupSession) -> String {
    s.status
        .as_ref()
        .and_then(|st| st.targets.as_ref())
        .and_then(|t| t.first())
        .and_then(|t| t.stats.as_ref())
        .and_then(|h| h.first())
        .and_then(|h| h.error.clone())
        .unwrap_or_default()
}

/// Kills, with SIGKILL and by its process id, the container of the pod of `job` that runs
/// `subcommand`: what the OOM killer or a node failure does to a pod. Returns the pod's name.
async fn kill_container(env: &Embedded, job: &str, subcommand: &str) -> String {
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    let list = pods.list(&ListParams::default()).await.expect("pods");
    let pod = list
        .items
        .iter()
        .find(|p| p.owner_references().iter().any(|o| o.name == job))
        .expect("the job's pod");
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.args.iter().flatten().any(|a| a == subcommand))
        .expect("the container")
        .name
        .clone();
    let pid = env
        .server
        .container_pid(NS, &pod.name_any(), &container)
        .expect("the container runs");
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    pod.name_any()
}

/// The repository's locks as stock restic reads them: (hostname, pid) of each.
fn lock_holders(s3: &S3Server) -> Vec<(String, i64)> {
    let ids = restic(s3, &["list", "locks", "--no-lock"]);
    String::from_utf8_lossy(&ids.stdout)
        .lines()
        .map(|id| {
            let out = restic(s3, &["cat", "lock", id.trim(), "--no-lock"]);
            let lock: Value = serde_json::from_slice(&out.stdout).expect("lock json");
            (
                lock["hostname"].as_str().unwrap_or_default().to_string(),
                lock["pid"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

async fn repository_condition(env: &Embedded) -> Option<stash_core::api::Condition> {
    let repo = Api::<Repository>::namespaced(env.client.clone(), NS)
        .get("s3-repo")
        .await
        .ok()?;
    repo.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "RepositoryLocked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backup_pod_and_stopped_s3_fail_and_their_stale_locks_are_removed_by_policy() {
    let mut dbs = tokio::task::spawn_blocking(|| {
        let dbs = databases();
        add_bulk_and_gate(&dbs.source);
        dbs
    })
    .await
    .expect("join");
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    bc_ready(&env).await;
    let mut known = std::collections::BTreeSet::new();

    // 1. The backup pod is SIGKILLed mid-dump, after some packs were uploaded.
    let gate = TableGate::close(&dbs.source, "shop.zz_gate");
    env.server.advance(Duration::from_secs(300)).await;
    let session = running_session(&env, &known).await;
    known.insert(session.name_any());
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the dump at the gate with packs uploaded",
        || async { (waits_at_gate(&dbs.source) && pack_files(&dbs.s3) > 0).then_some(()) },
    )
    .await;
    let job = stash_core::names::backup_job_name(&session.name_any(), 0);
    let killed_pod = kill_container(&env, &job, "backup-mysql").await;
    drop(gate);
    let error = failed_host_error(&env, &session.name_any(), "the killed session to end").await;
    assert!(
        error.contains("137") || error.contains("killed"),
        "no cause in {error:?}"
    );
    assert_eq!(
        snapshot_count(&dbs.s3),
        0,
        "a killed backup left a snapshot"
    );
    assert_check_clean(&dbs.s3, true);
    // A crash cannot remove its lock: it stays, made on the pod's host (its name) by a process
    // of the pod's own PID namespace. To restic it is another host's, live for 30 minutes.
    let holders = lock_holders(&dbs.s3);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].0, killed_pod, "the lock's hostname is the pod's");
    assert!(
        holders[0].1 < 100,
        "a PID of the pod's namespace: {holders:?}"
    );

    // 2. The next backup finds the lock's pod ended, removes the lock at once, says which lock
    // and why on the Repository, and succeeds, retention and prune included.
    let next = next_backup(&env, &known).await;
    known.insert(next.name_any());
    let cond = repository_condition(&env)
        .await
        .expect("RepositoryLocked condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("StaleLockRemoved")),
        "{cond:?}"
    );
    let message = cond.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("on {killed_pod}"))
            && message.contains(&format!("its pod {killed_pod} has ended (Failed)")),
        "{cond:?}"
    );
    assert_eq!(lock_count(&dbs.s3), 0);
    assert_check_clean(&dbs.s3, false);
    assert_eq!(snapshot_count(&dbs.s3), 1);

    // 3. The S3 server stops mid-upload: the session fails naming the storage; nothing is
    // counted; once S3 is back the repository checks clean and the next backup proceeds.
    let gate = TableGate::close(&dbs.source, "shop.zz_gate");
    env.server.advance(Duration::from_secs(300)).await;
    let session = running_session(&env, &known).await;
    known.insert(session.name_any());
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the dump at the gate",
        || async { waits_at_gate(&dbs.source).then_some(()) },
    )
    .await;
    dbs.s3.stop();
    drop(gate);
    let error = failed_host_error(
        &env,
        &session.name_any(),
        "the session without storage to end",
    )
    .await;
    assert!(error.contains("storage"), "no cause in {error:?}");
    dbs.s3.resume().expect("S3 back");
    assert_eq!(
        snapshot_count(&dbs.s3),
        1,
        "a backup without storage counted"
    );
    assert_check_clean(&dbs.s3, true);
    let next = next_backup(&env, &known).await;
    known.insert(next.name_any());
    assert_eq!(lock_count(&dbs.s3), 0);
    assert_check_clean(&dbs.s3, false);
    assert_eq!(snapshot_count(&dbs.s3), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_target_and_source_database_killed_mid_stream_fail() {
    let dbs = tokio::task::spawn_blocking(|| {
        let dbs = databases();
        add_bulk_and_gate(&dbs.source);
        dbs
    })
    .await
    .expect("join");
    let mut dbs = dbs;
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    bc_ready(&env).await;
    let mut known = std::collections::BTreeSet::new();
    let first = next_backup(&env, &known).await;
    known.insert(first.name_any());

    // 1. The restore target dies mid-restore: the restore blocks at a table of the target that
    // a client holds (after the bulk table is loaded), and the server is killed there.
    dbs.target
        .execute(
            "CREATE DATABASE shop; CREATE TABLE shop.zz_gate (id INT PRIMARY KEY) ENGINE=InnoDB;",
        )
        .expect("target gate table");
    let gate = TableGate::close_for_ddl(&dbs.target, "shop.zz_gate");
    env.apply(&demo::restore_session())
        .await
        .expect("restore session");
    // The restore Job starts when the clock moves, as in the end-to-end test.
    wait_for(
        &env,
        Duration::from_secs(10),
        Duration::from_secs(60),
        "the restore at the gate",
        || async { waits_at_gate(&dbs.target).then_some(()) },
    )
    .await;
    dbs.target.kill().expect("kill the target");
    drop(gate);
    let api = Api::<RestoreSession>::namespaced(env.client.clone(), NS);
    let restored = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(90),
        "the restore to end",
        || async {
            let r = api.get("sample-mysql-restore").await.ok()?;
            let p = r.status.as_ref()?.phase.clone()?;
            matches!(p.as_str(), "Succeeded" | "Failed").then_some(r)
        },
    )
    .await;
    let status = restored.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Failed"), "{status:?}");
    let error = status
        .stats
        .iter()
        .flatten()
        .filter_map(|h| h.error.clone())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!error.is_empty(), "no cause in {status:?}");
    // It stays Failed: later passes never turn it Succeeded.
    env.server.advance(Duration::from_secs(60)).await;
    let again = api
        .get("sample-mysql-restore")
        .await
        .expect("restore session");
    assert_eq!(
        again.status.and_then(|s| s.phase).as_deref(),
        Some("Failed")
    );

    // 2. The source database is killed mid-dump: the session fails naming the dump; no
    // snapshot is added and the failed backup leaves no lock. Part 1 moved the virtual clock
    // while it waited: on a loaded machine a scheduled backup may have started meanwhile, with
    // the source still healthy. Let every earlier session end, and count from there.
    let earlier = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(90),
        "the earlier sessions to end",
        || async {
            let all = sessions(&env).await;
            all.iter()
                .all(|s| matches!(phase(s).as_str(), "Succeeded" | "Failed" | "Skipped"))
                .then_some(all)
        },
    )
    .await;
    known.extend(earlier.iter().map(|s| s.name_any()));
    let snapshots_before = snapshot_count(&dbs.s3);
    let gate = TableGate::close(&dbs.source, "shop.zz_gate");
    env.server.advance(Duration::from_secs(300)).await;
    let session = running_session(&env, &known).await;
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the dump at the gate",
        || async { waits_at_gate(&dbs.source).then_some(()) },
    )
    .await;
    dbs.source.kill().expect("kill the source");
    drop(gate);
    let error = failed_host_error(
        &env,
        &session.name_any(),
        "the session without its database",
    )
    .await;
    assert!(error.contains("dump"), "no cause in {error:?}");
    assert_eq!(
        snapshot_count(&dbs.s3),
        snapshots_before,
        "a failed dump counted"
    );
    assert_eq!(lock_count(&dbs.s3), 0);
    assert_check_clean(&dbs.s3, false);
    env.stop().await;
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// `None` when this host lets the test mount nothing (it needs root).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "stash-faults"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_a_local_repository_fails_the_backup_naming_no_space() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("SKIPPED: cannot mount a 4 MiB tmpfs here (needs root)");
        return;
    };
    let source = tokio::task::spawn_blocking(|| {
        let db = MysqlServer::start().expect("source MariaDB");
        demo::seed(&db).expect("seed");
        add_bulk_and_gate(&db);
        db
    })
    .await
    .expect("join");
    let env = start().await;
    for o in [
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        demo::secret("local-secret", &[("RESTIC_PASSWORD", "local-password")]),
        demo::secret(
            "source-mysql-auth",
            &[("username", source.user()), ("password", source.password())],
        ),
        demo::appbinding("source-mysql", &source),
    ] {
        env.apply(&o).await.expect("apply");
    }
    let repo = disk.0.path().join("repo");
    let work = tempfile::tempdir().expect("work dir");
    let kubeconfig = env
        .server
        .kubeconfig_path()
        .expect("kubeconfig")
        .to_path_buf();
    let run = {
        let (repo, work) = (repo.clone(), work.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_stash"))
                .arg("backup-mysql")
                .arg("--provider=local")
                .arg(format!("--bucket={}", repo.display()))
                .args([
                    "--storage-secret-name=local-secret",
                    "--storage-secret-namespace=demo",
                    "--namespace=demo",
                    "--appbinding=source-mysql",
                    "--mysql-args=--databases shop --single-transaction",
                ])
                .arg(format!("--scratch-dir={}", work.join("scratch").display()))
                .arg(format!("--output-dir={}", work.join("out").display()))
                .env("KUBECONFIG", kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
                .expect("stash backup-mysql runs")
        })
        .await
        .expect("join")
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Value = serde_json::from_slice(
        &std::fs::read(work.path().join("out/output.json")).expect("output.json"),
    )
    .expect("output.json parses");
    let host = &out["targetStatus"]["stats"][0];
    assert_eq!(host["phase"], "Failed", "{out}");
    let error = host["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("no space"), "no cause in {out}");

    // Nothing half-written counts: no snapshot, no lock, no temporary file; restic agrees.
    let restic_local = |args: &[&str]| {
        Command::new("restic")
            .args(args)
            .arg("--no-cache")
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD", "local-password")
            .output()
            .expect("restic runs")
    };
    let snaps = restic_local(&["snapshots", "--json", "--no-lock"]);
    assert!(
        snaps.status.success(),
        "{}",
        String::from_utf8_lossy(&snaps.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&snaps.stdout)
            .unwrap()
            .len(),
        0
    );
    let locks = restic_local(&["list", "locks", "--no-lock"]);
    assert_eq!(String::from_utf8_lossy(&locks.stdout).lines().count(), 0);
    let check = restic_local(&["check"]);
    assert!(
        check.status.success()
            && String::from_utf8_lossy(&check.stdout).contains("no errors were found"),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let leftovers = Command::new("find")
        .arg(&repo)
        .args(["-name", ".tmp-*"])
        .output()
        .expect("find");
    assert!(
        leftovers.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
    env.stop().await;
}
