//! How `run_backup` reacts to what the repository engine reports, with a scripted engine behind
//! the `RepositoryEngine` interface and a real MariaDB for the dump.

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_operator::datapath::{
    EngineError, RepoStats, RepositoryEngine, SnapshotInfo, SnapshotSummary,
};
use stash_operator::jobs::backup_mysql::{run_backup, BackupError, BackupOptions};
use stash_testkit::providers::MysqlServer;

/// Answers backups from a script of outcomes and records every call.
struct ScriptedEngine {
    backups: RefCell<Vec<Option<EngineError>>>,
    calls: RefCell<Vec<String>>,
}

impl ScriptedEngine {
    fn new(script: Vec<Option<EngineError>>) -> Self {
        ScriptedEngine {
            backups: RefCell::new(script),
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
    fn forget_snapshots(&self, _: &[String], _: bool) -> Result<(), EngineError> {
        Ok(())
    }
    fn check(&self, _: bool) -> Result<(), EngineError> {
        Ok(())
    }
    fn stats(&self) -> Result<RepoStats, EngineError> {
        Ok(RepoStats::default())
    }
    fn unlock_stale(&self) -> Result<(), EngineError> {
        self.calls.borrow_mut().push("unlock".into());
        Ok(())
    }
}

fn locked() -> EngineError {
    EngineError::Locked("repository is already locked by PID 7 on host-x".into())
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

    // Missing, then locked, then fine: init once, unlock once, three attempts.
    let engine = ScriptedEngine::new(vec![
        Some(EngineError::RepositoryMissing("no config".into())),
        Some(locked()),
        None,
    ]);
    let report = run_backup(&engine, &target, &options()).expect("backup");
    assert!(report.initialized && report.stale_locks_removed);
    assert!(report.summary.total_bytes_processed > 0);
    assert_eq!(
        *engine.calls.borrow(),
        vec![
            "backup host-0 dumpfile.sql",
            "init",
            "backup host-0 dumpfile.sql",
            "unlock",
            "backup host-0 dumpfile.sql"
        ]
    );

    // A lock that survives the stale-lock removal is held by a live job: fail, no third try.
    let engine = ScriptedEngine::new(vec![Some(locked()), Some(locked()), None]);
    let err = run_backup(&engine, &target, &options()).expect_err("live lock");
    assert!(
        matches!(err, BackupError::Engine(EngineError::Locked(_))),
        "{err}"
    );
    assert_eq!(err.reason(), "RepositoryLocked");
    assert_eq!(engine.calls.borrow().len(), 3);
}
