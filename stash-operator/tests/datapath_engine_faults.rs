//! How `run_backup` reacts to what the repository engine reports, with a scripted engine behind
//! the `RepositoryEngine` interface and a real MariaDB for the dump.

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_operator::datapath::{
    EngineError, ForgetOutcome, LockInfo, RepoStats, RepositoryEngine, RetentionPolicy,
    SnapshotInfo, SnapshotSummary,
};
use stash_operator::jobs::backup_mysql::{run_backup_with_locks, BackupError, BackupOptions};
use stash_testkit::providers::MysqlServer;

/// Answers backups from a script of outcomes, shows a fixed set of lock files (minus the
/// removed ones), and records every call.
struct ScriptedEngine {
    backups: RefCell<Vec<Option<EngineError>>>,
    locks: RefCell<Vec<LockInfo>>,
    calls: RefCell<Vec<String>>,
}

impl ScriptedEngine {
    fn new(script: Vec<Option<EngineError>>, locks: Vec<LockInfo>) -> Self {
        ScriptedEngine {
            backups: RefCell::new(script),
            locks: RefCell::new(locks),
            calls: RefCell::new(Vec::new()),
        }
    }
}

impl RepositoryEngine for ScriptedEngine {
    fn init_if_missing(&self) -> Result<bool, EngineError> {
        self.calls.borrow_mut().push("init".into());
        Ok(true)
    }

    fn backup_stream(
        &self,
        source: &mut dyn Read,
        host: &str,
        filename: &str,
    ) -> Result<SnapshotSummary, EngineError> {
        self.calls
            .borrow_mut()
            .push(format!("backup {host} {filename}"));
        if let Some(err) = self.backups.borrow_mut().remove(0) {
            return Err(err);
        }
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

    fn dump(&self, _: &str, _: Option<&str>, _: &str) -> Result<Box<dyn Read + Send>, EngineError> {
        Err(EngineError::Output {
            command: "dump".into(),
            detail: "not scripted".into(),
        })
    }
    fn snapshots(&self, _: Option<&str>) -> Result<Vec<SnapshotInfo>, EngineError> {
        Ok(Vec::new())
    }
    fn forget_snapshots(&self, _: &[String]) -> Result<(), EngineError> {
        Ok(())
    }
    fn apply_retention(&self, _: &RetentionPolicy) -> Result<ForgetOutcome, EngineError> {
        Ok(ForgetOutcome::default())
    }
    fn check(&self, _: bool) -> Result<(), EngineError> {
        Ok(())
    }
    fn stats(&self) -> Result<RepoStats, EngineError> {
        Ok(RepoStats::default())
    }
    fn locks(&self) -> Result<Vec<LockInfo>, EngineError> {
        self.calls.borrow_mut().push("locks".into());
        Ok(self.locks.borrow().clone())
    }
    fn remove_locks(&self, ids: &[String]) -> Result<(), EngineError> {
        if !ids.is_empty() {
            self.calls
                .borrow_mut()
                .push(format!("remove {}", ids.join(",")));
        }
        self.locks.borrow_mut().retain(|l| !ids.contains(&l.id));
        Ok(())
    }
}

fn locked() -> EngineError {
    EngineError::Locked("repository is already locked by PID 7 on host-x".into())
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

    // A crashed job's shared lock (this host, dead pid) is removed before the backup; the
    // repository is missing, then a lock races in: init once, one more look, three attempts.
    let engine = ScriptedEngine::new(
        vec![
            Some(EngineError::RepositoryMissing("no config".into())),
            Some(locked()),
            None,
        ],
        vec![lock_file("stale", false, dead_pid())],
    );
    let mut decisions = Vec::new();
    let report = run_backup_with_locks(
        &engine,
        &target,
        &options(),
        Duration::from_secs(5),
        &mut |a| decisions.push(a.condition.1),
    )
    .expect("backup");
    assert!(report.initialized);
    assert_eq!(report.stale_locks_removed, 1);
    assert!(report.summary.total_bytes_processed > 0);
    assert_eq!(
        *engine.calls.borrow(),
        vec![
            "locks",
            "remove stale",
            "backup host-0 dumpfile.sql",
            "init",
            "backup host-0 dumpfile.sql",
            "locks",
            "backup host-0 dumpfile.sql"
        ]
    );
    assert_eq!(decisions, ["StaleLockRemoved", "NoConflictingLock"]);

    // A live exclusive lock (this test process holds it) is waited for, then fails the backup
    // naming its holder; no backup is tried.
    let engine = ScriptedEngine::new(
        vec![None],
        vec![lock_file("live", true, std::process::id())],
    );
    let mut decisions = Vec::new();
    let err = run_backup_with_locks(
        &engine,
        &target,
        &options(),
        Duration::from_secs(1),
        &mut |a| decisions.push(a.condition.1),
    )
    .expect_err("live lock");
    assert!(
        matches!(&err, BackupError::Engine(EngineError::Locked(m)) if m.contains(&format!("PID {}", std::process::id()))),
        "{err}"
    );
    assert_eq!(err.reason(), "RepositoryLocked");
    assert_eq!(decisions, ["WaitingForLock", "LockedByLiveJob"]);
    assert!(!engine
        .calls
        .borrow()
        .iter()
        .any(|c| c.starts_with("backup")));
}
