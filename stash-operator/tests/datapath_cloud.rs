//! backup-mysql and restore-mysql in process against Azure and GCS, as the Job runs them: the
//! storage Secret's keys (Stash's names) become the engine's environment, the default engine
//! serves `azure:` and `gs:` itself (no restic CLI), and a real MariaDB comes back table for
//! table. The storage is Azurite and gcp-storage-emulator (installed by `scripts/setup.sh`);
//! a test without its emulator says SKIPPED and returns.

mod datapath_support;
use datapath_support::target;

use std::collections::BTreeMap;
use std::time::Duration;

use stash_operator::commands::backup_mysql::{run_backup, BackupOptions};
use stash_operator::commands::restore_mysql::{run_restore, RestoreOptions};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::in_process::InProcess;
use stash_operator::datapath::loader::LoaderKind;
use stash_operator::datapath::mysql_client::split_args;
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;
use stash_testkit::providers::emulators::{Emulator, AZURITE_ACCOUNT, AZURITE_KEY};
use stash_testkit::providers::MysqlServer;

fn round_trip(provider: Provider, bucket: &str, secret: &[(&str, &str)]) {
    let source = MysqlServer::start().expect("source server");
    source
        .execute(
            "CREATE DATABASE shop; USE shop;
             CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(100), raw VARBINARY(32));
             INSERT INTO shop.orders SELECT seq, CONCAT('it''s; row ', seq), UNHEX(SHA2(seq, 256))
                 FROM seq_1_to_5000;",
        )
        .expect("seed");
    let config = BackendConfig {
        provider,
        bucket: bucket.to_owned(),
        endpoint: String::new(),
        region: String::new(),
        prefix: "/demo/mysql".into(),
        insecure_tls: false,
        max_connections: 4,
    };
    let secret: BTreeMap<String, Vec<u8>> = secret
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
    let scratch = tempfile::tempdir().expect("tempdir");
    let env = engine_env(&config, &secret, scratch.path()).expect("engine env");
    // maxConnections only bounds restic's concurrency: it does not send the job to restic.
    assert!(InProcess::supports(&env), "{env:?}");
    let engine = select_engine(
        EngineKind::Auto,
        &env,
        ResticCli::new("restic-is-not-used", env.clone(), CacheMode::Disabled),
    )
    .expect("engine");
    let backup = BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: split_args("--databases shop --single-transaction --skip-dump-date"),
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(10),
        wait_interval: Duration::from_millis(200),
    };
    run_backup(&*engine, &target(&source), &backup).expect("backup");
    assert_eq!(
        engine.snapshots(Some("host-0")).expect("snapshots").len(),
        1
    );
    engine.check(true).expect("check");

    let fresh = MysqlServer::start().expect("fresh server");
    let restore = RestoreOptions {
        mysql_program: "mysql".into(),
        mysql_args: Vec::new(),
        snapshot: "latest".into(),
        host: Some("host-0".into()),
        loader: LoaderKind::Protocol,
        wait_timeout: Duration::from_secs(10),
        wait_interval: Duration::from_millis(200),
    };
    run_restore(&*engine, &target(&fresh), &restore).expect("restore");
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());
}

#[test]
fn azure_repository_backs_up_and_restores_in_process() {
    let Some(azurite) = Emulator::azurite() else {
        return;
    };
    let endpoint = azurite.azure_blob_endpoint();
    round_trip(
        Provider::Azure,
        "stash",
        &[
            ("RESTIC_PASSWORD", "azure secret"),
            ("AZURE_ACCOUNT_NAME", AZURITE_ACCOUNT),
            ("AZURE_ACCOUNT_KEY", AZURITE_KEY),
            ("AZURE_BLOB_ENDPOINT", &endpoint),
        ],
    );
}

#[test]
fn gcs_repository_backs_up_and_restores_in_process() {
    let Some(gcs) = Emulator::gcs() else {
        return;
    };
    let endpoint = gcs.endpoint();
    round_trip(
        Provider::Gcs,
        "stash",
        &[
            ("RESTIC_PASSWORD", "gcs secret"),
            ("GOOGLE_PROJECT_ID", "demo-project"),
            ("STORAGE_EMULATOR_HOST", &endpoint),
        ],
    );
}
