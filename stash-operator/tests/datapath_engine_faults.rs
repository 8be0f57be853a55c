//! How `run_backup` reacts to what the repository engine reports, with mockall's mock of the
//! `RepositoryEngine` interface and a real MariaDB for the dump.

use std::io::Read;
use std::time::Duration;

use mockall::Sequence;
use stash_core::plan::repository::LockHolders;
use stash_operator::commands::backup_mysql::{run_backup_with_locks, BackupError, BackupOptions};
use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_operator::datapath::{EngineError, LockInfo, MockRepositoryEngine, SnapshotSummary};
use stash_testkit::providers::MysqlServer;

/// Expects one backup of host-0's dump file, in `seq`, answered by `answer`.
fn expect_backup(
    engine: &mut MockRepositoryEngine,
    seq: &mut Sequence,
    answer: impl Fn(&mut dyn Read) -> Result<SnapshotSummary, EngineError> + Send + 'static,
) {
    engine
        .expect_backup_stream()
        .withf(|_, host, filename| host == "host-0" && filename == "dumpfile.sql")
        .times(1)
        .in_sequence(seq)
        .returning(move |source, _, _| answer(source));
}

/// Expects one look at the locks, in `seq`, that finds `locks`.
fn expect_locks(engine: &mut MockRepositoryEngine, seq: &mut Sequence, locks: Vec<LockInfo>) {
    engine
        .expect_locks()
        .times(1)
        .in_sequence(seq)
        .returning(move || Ok(locks.clone()));
}

/// Expects the removal of exactly the locks `ids` (none: an empty list), in `seq`.
fn expect_remove(engine: &mut MockRepositoryEngine, seq: &mut Sequence, ids: &'static [&str]) {
    engine
        .expect_remove_locks()
        .withf(move |got| got.iter().map(String::as_str).eq(ids.iter().copied()))
        .times(1)
        .in_sequence(seq)
        .returning(|_| Ok(()));
}

/// A lock of this host, held by `pid`, made now.
fn lock_file(id: &str, exclusive: bool, pid: u32) -> LockInfo {
    LockInfo {
        id: id.into(),
        time: k8s_openapi::jiff::Timestamp::now().to_string(),
        exclusive,
        hostname: stash_repo::repo::hostname(),
        pid: i64::from(pid),
    }
}

/// A pid that no process has: one of a child that has been waited for.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Reads the whole dump, as an engine that stores it does.
fn store(source: &mut dyn Read) -> Result<SnapshotSummary, EngineError> {
    let mut bytes = Vec::new();
    source
        .read_to_end(&mut bytes)
        .map_err(|e| EngineError::SourceFailed(e.to_string()))?;
    Ok(SnapshotSummary {
        snapshot_id: "feedbeef".into(),
        total_bytes_processed: bytes.len() as u64,
        ..Default::default()
    })
}

fn locked() -> EngineError {
    EngineError::Locked("repository is already locked by PID 7 on host-x".into())
}

/// A server with a one-row table `shop.t`, and how to reach it.
fn shop_server() -> (MysqlServer, DbTarget) {
    let server = MysqlServer::start().expect("server");
    server
        .execute("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);")
        .unwrap();
    let target = DbTarget {
        host: server.host().into(),
        port: server.port(),
        user: server.user().into(),
        password: server.password().into(),
        ssl_ca: None,
    };
    (server, target)
}

fn options() -> BackupOptions {
    BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: split_args("--databases shop"),
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    }
}

#[test]
fn missing_repository_and_stale_locks_are_handled_once_each() {
    let (_server, target) = shop_server();

    // A crashed job's shared lock (this host, dead pid) is removed before the backup; the
    // repository is missing, then a lock races in: init once, one more look, three attempts,
    // in this order.
    let mut engine = MockRepositoryEngine::new();
    let mut seq = Sequence::new();
    expect_locks(
        &mut engine,
        &mut seq,
        vec![lock_file("stale", false, dead_pid())],
    );
    expect_remove(&mut engine, &mut seq, &["stale"]);
    expect_backup(&mut engine, &mut seq, |_| {
        Err(EngineError::RepositoryMissing("no config".into()))
    });
    engine
        .expect_init_if_missing()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(true));
    expect_backup(&mut engine, &mut seq, |_| Err(locked()));
    expect_locks(&mut engine, &mut seq, Vec::new());
    expect_remove(&mut engine, &mut seq, &[]);
    expect_backup(&mut engine, &mut seq, store);
    let mut decisions = Vec::new();
    let report = run_backup_with_locks(
        &engine,
        &target,
        &options(),
        Duration::from_secs(5),
        &mut LockHolders::default,
        &mut |a| decisions.push(a.condition.1),
    )
    .expect("backup");
    assert!(report.initialized);
    assert_eq!(report.stale_locks_removed, 1);
    assert!(report.summary.total_bytes_processed > 0);
    assert_eq!(decisions, ["StaleLockRemoved", "NoConflictingLock"]);
    engine.checkpoint();

    // A live exclusive lock (this test process holds it) is waited for, then fails the backup
    // naming its holder; no backup is tried (the mock panics on any call it does not expect).
    let mut engine = MockRepositoryEngine::new();
    let live = lock_file("live", true, std::process::id());
    engine
        .expect_locks()
        .times(2)
        .returning(move || Ok(vec![live.clone()]));
    engine.expect_remove_locks().times(2).returning(|_| Ok(()));
    let mut decisions = Vec::new();
    let err = run_backup_with_locks(
        &engine,
        &target,
        &options(),
        Duration::from_secs(1),
        &mut LockHolders::default,
        &mut |a| decisions.push(a.condition.1),
    )
    .expect_err("live lock");
    assert!(
        matches!(&err, BackupError::Engine(EngineError::Locked(m)) if m.contains(&format!("PID {}", std::process::id()))),
        "{err}"
    );
    assert_eq!(err.reason(), "RepositoryLocked");
    assert_eq!(decisions, ["WaitingForLock", "LockedByLiveJob"]);
    engine.checkpoint();
}

/// A `mysqldump` that notes its pid in `runs` before it becomes the real one.
fn counting_dump(dir: &std::path::Path, runs: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("mysqldump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec mysqldump \"$@\"\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

fn pids(runs: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn the_dump_starts_with_the_lock_check_and_is_restarted_after_a_wait() {
    let (_server, target) = shop_server();
    let dir = tempfile::tempdir().unwrap();

    // No lock to wait for: the dump started before the look at the locks is the one stored,
    // so it ran once; and it was running while the locks were read.
    let runs = dir.path().join("runs-1");
    let opts = BackupOptions {
        mysqldump_program: counting_dump(dir.path(), &runs),
        ..options()
    };
    let mut engine = MockRepositoryEngine::new();
    let mut seq = Sequence::new();
    let seen = runs.clone();
    engine
        .expect_locks()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while pids(&seen).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(pids(&seen).len(), 1, "the dump had not started");
            Ok(Vec::new())
        });
    expect_remove(&mut engine, &mut seq, &[]);
    expect_backup(&mut engine, &mut seq, store);
    let report = run_backup_with_locks(
        &engine,
        &target,
        &opts,
        Duration::from_secs(5),
        &mut LockHolders::default,
        &mut |_| {},
    )
    .expect("backup");
    assert!(report.summary.total_bytes_processed > 0);
    assert_eq!(pids(&runs).len(), 1);
    engine.checkpoint();

    // A live exclusive lock that goes away: the early dump is not kept waiting in its
    // transaction; it is killed, and a new one is stored whole.
    let runs = dir.path().join("runs-2");
    let opts = BackupOptions {
        mysqldump_program: counting_dump(dir.path(), &runs),
        ..options()
    };
    let mut engine = MockRepositoryEngine::new();
    let mut seq = Sequence::new();
    expect_locks(
        &mut engine,
        &mut seq,
        vec![lock_file("live", true, std::process::id())],
    );
    expect_remove(&mut engine, &mut seq, &[]);
    expect_locks(&mut engine, &mut seq, Vec::new());
    expect_remove(&mut engine, &mut seq, &[]);
    let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = std::sync::Arc::clone(&stored);
    expect_backup(&mut engine, &mut seq, move |source| {
        let mut bytes = Vec::new();
        source
            .read_to_end(&mut bytes)
            .map_err(|e| EngineError::SourceFailed(e.to_string()))?;
        *into.lock().unwrap() = bytes;
        Ok(SnapshotSummary::default())
    });
    run_backup_with_locks(
        &engine,
        &target,
        &opts,
        Duration::from_secs(10),
        &mut LockHolders::default,
        &mut |_| {},
    )
    .expect("backup after the wait");
    let started = pids(&runs);
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", started[0])).exists(),
        "the first dump is still there"
    );
    let stored = stored.lock().unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert_eq!(text.matches("CREATE TABLE `t`").count(), 1);
    assert!(text
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .starts_with("-- Dump completed"));
}
