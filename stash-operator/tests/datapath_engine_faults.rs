//! How `run_backup` reacts to what the repository engine reports, with mockall's mock of the
//! `RepositoryEngine` interface and a real MariaDB for the dump.

use std::io::Read;
use std::time::Duration;

use mockall::Sequence;
use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_operator::datapath::{EngineError, MockRepositoryEngine, SnapshotSummary};
use stash_operator::jobs::backup_mysql::{run_backup, BackupError, BackupOptions};
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

/// Expects one removal of stale locks, in `seq`.
fn expect_unlock(engine: &mut MockRepositoryEngine, seq: &mut Sequence) {
    engine
        .expect_unlock_stale()
        .times(1)
        .in_sequence(seq)
        .returning(|| Ok(()));
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

    // Missing, then locked, then fine: init once, unlock once, three attempts, in this order.
    let mut engine = MockRepositoryEngine::new();
    let mut seq = Sequence::new();
    expect_backup(&mut engine, &mut seq, |_| {
        Err(EngineError::RepositoryMissing("no config".into()))
    });
    engine
        .expect_init_if_missing()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(true));
    expect_backup(&mut engine, &mut seq, |_| Err(locked()));
    expect_unlock(&mut engine, &mut seq);
    expect_backup(&mut engine, &mut seq, store);
    let report = run_backup(&engine, &target, &options()).expect("backup");
    assert!(report.initialized && report.stale_locks_removed);
    assert!(report.summary.total_bytes_processed > 0);
    engine.checkpoint();

    // A lock that survives the stale-lock removal is held by a live job: fail, no third try
    // (the mock panics on any call it does not expect).
    let mut engine = MockRepositoryEngine::new();
    let mut seq = Sequence::new();
    expect_backup(&mut engine, &mut seq, |_| Err(locked()));
    expect_unlock(&mut engine, &mut seq);
    expect_backup(&mut engine, &mut seq, |_| Err(locked()));
    let err = run_backup(&engine, &target, &options()).expect_err("live lock");
    assert!(
        matches!(err, BackupError::Engine(EngineError::Locked(_))),
        "{err}"
    );
    assert_eq!(err.reason(), "RepositoryLocked");
    engine.checkpoint();
}
