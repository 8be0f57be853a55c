//! End to end with a real MariaDB and the stock restic CLI as the oracle: backup-mysql's core
//! writes a repository restic reads byte for byte, restore-mysql's core brings every table back,
//! failed dumps leave nothing behind. The default engine (in process) runs every test; the
//! restic CLI engine (`--engine=restic`) runs the local-repository ones too.

mod datapath_support;
use datapath_support::{direct_dump, target};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use stash_operator::commands::backup_mysql::{run_backup, BackupError, BackupOptions};
use stash_operator::commands::restore_mysql::{run_restore, RestoreOptions};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::loader::LoaderKind;
use stash_operator::datapath::mysql_client::split_args;
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::datapath::{EngineError, RepositoryEngine};
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;
use stash_testkit::providers::{MysqlServer, RestServer, S3Server};

const DUMP_ARGS: &str =
    "--databases shop crm --single-transaction --routines --triggers --events --skip-dump-date";

/// Tables with awkward content: every byte value in a VARBINARY, quotes, semicolons, newlines
/// and backslashes in text, a trigger and a routine (DELIMITER blocks), enough rows for several
/// protocol batches.
fn seed(server: &MysqlServer, rows: u32) {
    server
        .execute(&format!(
            "CREATE DATABASE shop; CREATE DATABASE crm; USE shop;
             CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, qty INT, note VARCHAR(200), price DECIMAL(10,2),
                 at DATETIME, body TEXT, raw VARBINARY(64)) ENGINE=InnoDB;
             INSERT INTO shop.orders SELECT seq, seq % 97, CONCAT('it''s; \"odd\" -- ', seq, '\\n#', REPEAT('x', seq % 50)),
                 seq / 7, '2026-01-01' + INTERVAL seq MINUTE, REPEAT(CONCAT('line ', seq, ';\\n\\\\ '), 1 + seq % 20),
                 UNHEX(SHA2(seq, 256)) FROM seq_1_to_{rows};
             CREATE TABLE crm.bytes (b TINYINT UNSIGNED PRIMARY KEY, v VARBINARY(4));
             INSERT INTO crm.bytes SELECT seq, CONCAT(CHAR(seq), CHAR(255 - seq), 0x00, 0x27) FROM seq_0_to_255;
             CREATE TABLE crm.audit (n INT);
             DELIMITER //
             CREATE TRIGGER crm.count_bytes AFTER INSERT ON crm.bytes FOR EACH ROW BEGIN
                 INSERT INTO crm.audit VALUES (NEW.b); UPDATE crm.audit SET n = n WHERE n = -1; END//
             CREATE PROCEDURE crm.p() BEGIN SELECT 1; SELECT ';'; END//
             DELIMITER ;"
        ))
        .expect("seed");
}

fn backup_options(mysql_args: &str) -> BackupOptions {
    BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: split_args(mysql_args),
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(10),
        wait_interval: Duration::from_millis(200),
    }
}

fn restore_options(loader: LoaderKind) -> RestoreOptions {
    RestoreOptions {
        mysql_program: "mysql".into(),
        mysql_args: Vec::new(),
        snapshot: "latest".into(),
        host: Some("host-0".into()),
        loader,
        wait_timeout: Duration::from_secs(10),
        wait_interval: Duration::from_millis(200),
    }
}

struct Repo {
    engine: Box<dyn RepositoryEngine>,
    env: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

fn repo_with(config: BackendConfig, secret: &[(&str, &str)]) -> Repo {
    repo_with_engine(EngineKind::Auto, config, secret)
}

fn repo_with_engine(kind: EngineKind, config: BackendConfig, secret: &[(&str, &str)]) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret: BTreeMap<String, Vec<u8>> = secret
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
    let env = engine_env(&config, &secret, dir.path()).expect("engine env");
    Repo {
        engine: select_engine(
            kind,
            &env,
            ResticCli::new("restic", env.clone(), CacheMode::Disabled),
        )
        .expect("engine"),
        env: env.env,
        _dir: dir,
    }
}

fn local_repo(dir: &Path) -> Repo {
    local_repo_with(EngineKind::Auto, dir)
}

fn local_repo_with(kind: EngineKind, dir: &Path) -> Repo {
    repo_with_engine(
        kind,
        BackendConfig {
            provider: Provider::Local,
            bucket: dir.join("repo").display().to_string(),
            endpoint: String::new(),
            region: String::new(),
            prefix: String::new(),
            insecure_tls: false,
            max_connections: 0,
        },
        &[("RESTIC_PASSWORD", "correct horse")],
    )
}

/// Stock restic with the repository's environment.
fn restic(repo: &Repo, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .envs(&repo.env)
        .stdin(Stdio::null())
        .output()
        .expect("run restic")
}

#[test]
fn backup_is_readable_by_restic_and_restores_every_table() {
    backup_is_readable_by_restic_and_restores_every_table_with(EngineKind::Auto);
}

#[test]
fn backup_is_readable_by_restic_and_restores_every_table_restic_engine() {
    backup_is_readable_by_restic_and_restores_every_table_with(EngineKind::Restic);
}

fn backup_is_readable_by_restic_and_restores_every_table_with(kind: EngineKind) {
    let source = MysqlServer::start().expect("source server");
    seed(&source, 20_000);
    let work = tempfile::tempdir().unwrap();
    let repo = local_repo_with(kind, work.path());

    let report =
        run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS)).expect("backup");
    assert!(report.initialized);
    let expected = direct_dump(&source, DUMP_ARGS);
    assert_eq!(report.summary.total_bytes_processed, expected.len() as u64);
    assert!(expected.len() > 4 << 20, "dump spans several batches");

    // Stock restic: snapshot list, full check, dump and restore give exactly the dump's bytes.
    let snaps = restic(&repo, &["snapshots", "--json"]);
    assert!(snaps.status.success());
    let list: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["hostname"], "host-0");
    assert_eq!(list[0]["paths"][0], "/dumpfile.sql");
    assert!(restic(&repo, &["check", "--read-data"]).status.success());
    let dumped = restic(&repo, &["dump", "latest", "/dumpfile.sql"]);
    assert!(dumped.status.success());
    assert!(
        dumped.stdout == expected,
        "restic dump differs from the dump"
    );
    let restored_dir = work.path().join("restored");
    let restored = restic(
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            restored_dir.to_str().unwrap(),
        ],
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(std::fs::read(restored_dir.join("dumpfile.sql")).unwrap() == expected);

    let want = source.checksums().expect("source checksums");
    assert_eq!(want.len(), 3);
    for loader in [
        LoaderKind::Parallel,
        LoaderKind::Protocol,
        LoaderKind::Client,
    ] {
        let fresh = MysqlServer::start().expect("fresh server");
        let stats =
            run_restore(&*repo.engine, &target(&fresh), &restore_options(loader)).expect("restore");
        assert_eq!(stats.bytes, expected.len() as u64);
        assert_eq!(fresh.checksums().unwrap(), want, "{loader:?}");
        // Routines and triggers came back too.
        assert_eq!(
            fresh
                .execute(
                    "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema='crm'"
                )
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(
            fresh
                .execute(
                    "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema='crm'"
                )
                .unwrap()
                .trim(),
            "1"
        );
    }
}

#[test]
fn failed_or_truncated_dumps_leave_no_snapshot_and_no_lock() {
    failed_or_truncated_dumps_leave_no_snapshot_and_no_lock_with(EngineKind::Auto);
}

#[test]
fn failed_or_truncated_dumps_leave_no_snapshot_and_no_lock_restic_engine() {
    failed_or_truncated_dumps_leave_no_snapshot_and_no_lock_with(EngineKind::Restic);
}

fn failed_or_truncated_dumps_leave_no_snapshot_and_no_lock_with(kind: EngineKind) {
    let source = MysqlServer::start().expect("source server");
    seed(&source, 2_000);
    let work = tempfile::tempdir().unwrap();
    let repo = local_repo_with(kind, work.path());

    // Bad arguments: mysqldump exits non-zero.
    let err = run_backup(
        &*repo.engine,
        &target(&source),
        &backup_options("--databases shop --no-such-flag"),
    )
    .expect_err("bad args must fail");
    assert!(
        matches!(err, BackupError::Engine(EngineError::SourceFailed(_))),
        "{err}"
    );

    // Exit status 0 but output cut short (a wrapper that truncates): the trailer is missing.
    let script = work.path().join("truncating-dump");
    std::fs::write(&script, "#!/bin/sh\nmysqldump \"$@\" | head -c 100000\n").unwrap();
    make_executable(&script);
    let mut opts = backup_options(DUMP_ARGS);
    opts.mysqldump_program = script.display().to_string();
    let err = run_backup(&*repo.engine, &target(&source), &opts).expect_err("truncated must fail");
    assert!(err.to_string().contains("truncated"), "{err}");

    // Killed midway: the dump dies by signal after part of its output.
    let script = work.path().join("killed-dump");
    std::fs::write(
        &script,
        "#!/bin/sh\nmysqldump \"$@\" | head -c 50000\nkill -9 $$\n",
    )
    .unwrap();
    make_executable(&script);
    opts.mysqldump_program = script.display().to_string();
    assert!(run_backup(&*repo.engine, &target(&source), &opts).is_err());

    assert!(repo.engine.snapshots(None).unwrap().is_empty());
    let locks = restic(&repo, &["list", "locks", "--no-lock"]);
    assert!(locks.status.success());
    assert!(
        locks.stdout.is_empty(),
        "stale lock left: {}",
        String::from_utf8_lossy(&locks.stdout)
    );
    assert!(restic(&repo, &["check"]).status.success());

    // A good backup afterwards works and is the only snapshot.
    run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS)).expect("backup");
    assert_eq!(repo.engine.snapshots(Some("host-0")).unwrap().len(), 1);
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn second_backup_adds_little_and_retention_keeps_the_newest() {
    second_backup_adds_little_and_retention_keeps_the_newest_with(EngineKind::Auto);
}

#[test]
fn second_backup_adds_little_and_retention_keeps_the_newest_restic_engine() {
    second_backup_adds_little_and_retention_keeps_the_newest_with(EngineKind::Restic);
}

fn second_backup_adds_little_and_retention_keeps_the_newest_with(kind: EngineKind) {
    let source = MysqlServer::start().expect("source server");
    seed(&source, 20_000);
    let work = tempfile::tempdir().unwrap();
    let repo = local_repo_with(kind, work.path());
    let first =
        run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS)).expect("first");
    let second =
        run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS)).expect("second");
    assert!(!second.initialized);
    assert_ne!(first.summary.snapshot_id, second.summary.snapshot_id);
    assert!(
        second.summary.data_added * 10 < first.summary.data_added,
        "second added {} after {}",
        second.summary.data_added,
        first.summary.data_added
    );

    let stats = repo.engine.stats().unwrap();
    assert_eq!(stats.snapshot_count, 2);
    assert!(stats.total_size > 0);
    // Retention as update-status runs it: list, select in stash-core, forget exactly those.
    let listed: Vec<_> = repo
        .engine
        .snapshots(None)
        .unwrap()
        .iter()
        .map(|s| s.for_retention().unwrap())
        .collect();
    let chosen = stash_core::retention::select(
        &listed,
        &stash_core::api::RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
    );
    assert_eq!((chosen.keep.len(), chosen.forget.len()), (1, 1));
    repo.engine.forget_snapshots(&chosen.forget, true).unwrap();
    let left = repo.engine.snapshots(None).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].id.starts_with(&second.summary.snapshot_id));
    repo.engine.check(true).unwrap();
}

#[test]
fn s3_backend_round_trip() {
    let s3 = S3Server::start().expect("s3 server");
    let source = MysqlServer::start().expect("source server");
    seed(&source, 3_000);
    let repo = repo_with(
        BackendConfig {
            provider: Provider::S3,
            bucket: "stash".into(),
            endpoint: s3.endpoint(),
            region: "us-east-1".into(),
            prefix: "/demo/mysql".into(),
            insecure_tls: false,
            max_connections: 0,
        },
        &[
            ("RESTIC_PASSWORD", "s3 secret"),
            ("AWS_ACCESS_KEY_ID", s3.access_key()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
        ],
    );
    assert_eq!(
        repo.env["RESTIC_REPOSITORY"],
        s3.restic_repository("stash", "demo/mysql")
    );
    run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS)).expect("backup to s3");
    assert!(s3.root().join("stash/demo/mysql/config").exists());
    let snaps = restic(&repo, &["snapshots", "--json"]);
    assert!(
        snaps.status.success(),
        "{}",
        String::from_utf8_lossy(&snaps.stderr)
    );
    let check = restic(&repo, &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let fresh = MysqlServer::start().expect("fresh server");
    run_restore(
        &*repo.engine,
        &target(&fresh),
        &restore_options(LoaderKind::Protocol),
    )
    .expect("restore");
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());
}

#[test]
fn repository_written_the_stash_way_restores() {
    let source = MysqlServer::start().expect("source server");
    seed(&source, 3_000);
    let work = tempfile::tempdir().unwrap();
    let repo = local_repo(work.path());
    assert!(restic(&repo, &["init"]).status.success());
    // Stash's pipeline: mysqldump | restic backup --stdin (password in MYSQL_PWD).
    let pipeline = format!(
        "mysqldump {} {} | restic backup --stdin --quiet --json --stdin-filename dumpfile.sql --host host-0 --no-cache",
        target(&source).connection_args().join(" "),
        DUMP_ARGS
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {pipeline}"))
        .envs(&repo.env)
        .env("MYSQL_PWD", source.password())
        .output()
        .expect("pipeline");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fresh = MysqlServer::start().expect("fresh server");
    let mut opts = restore_options(LoaderKind::Parallel);
    opts.snapshot = repo.engine.snapshots(None).unwrap()[0].id.clone();
    run_restore(&*repo.engine, &target(&fresh), &opts).expect("restore");
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());
}

#[test]
fn restore_of_a_missing_snapshot_fails_without_touching_the_database() {
    let work = tempfile::tempdir().unwrap();
    let repo = local_repo(work.path());
    repo.engine.init_if_missing().unwrap();
    let fresh = MysqlServer::start().expect("server");
    let err = run_restore(
        &*repo.engine,
        &target(&fresh),
        &restore_options(LoaderKind::Protocol),
    )
    .expect_err("nothing to restore");
    assert_eq!(err.reason(), "SnapshotReadFailed", "{err}");
    assert!(fresh.checksums().unwrap().is_empty());
}

#[test]
fn rest_backend_round_trip_with_credentials_in_the_secret() {
    let rest = RestServer::start().expect("rest server");
    let source = MysqlServer::start().expect("source server");
    seed(&source, 3_000);
    let repo = repo_with(
        BackendConfig {
            provider: Provider::Rest,
            bucket: String::new(),
            endpoint: rest.url(),
            region: String::new(),
            prefix: String::new(),
            insecure_tls: false,
            max_connections: 0,
        },
        &[
            ("RESTIC_PASSWORD", "rest secret"),
            ("REST_SERVER_USERNAME", rest.username()),
            ("REST_SERVER_PASSWORD", rest.password()),
        ],
    );
    run_backup(&*repo.engine, &target(&source), &backup_options(DUMP_ARGS))
        .expect("backup to rest");
    assert!(rest.root().join("config").exists());
    let check = restic(&repo, &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dumped = restic(&repo, &["dump", "latest", "/dumpfile.sql"]);
    assert!(dumped.stdout == direct_dump(&source, DUMP_ARGS));

    // Without the credentials the server refuses restic.
    let mut anonymous = repo.env.clone();
    anonymous.insert("RESTIC_REPOSITORY".into(), format!("rest:{}", rest.url()));
    let refused = Command::new("restic")
        .args(["snapshots", "--no-cache"])
        .envs(&anonymous)
        .output()
        .unwrap();
    assert!(!refused.status.success());

    let fresh = MysqlServer::start().expect("fresh server");
    run_restore(
        &*repo.engine,
        &target(&fresh),
        &restore_options(LoaderKind::Protocol),
    )
    .expect("restore");
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());
}
