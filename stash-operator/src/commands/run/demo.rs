//! `stash run --demo`: MariaDB with sample data in a pod behind a Service, the embedded S3
//! server, a Stash-shaped BackupConfiguration (every 5 minutes, keep the last 2), scheduled
//! backups on the virtual clock, then a RestoreSession into a second MariaDB, and a
//! table-by-table checksum comparison.

use super::database_pod::DatabasePod;
use super::{report_progress, Embedded};
use serde_json::{json, Value};
use stash_testkit::providers::mysql::MysqlServer;
use stash_testkit::providers::s3::S3Server;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NS: &str = "demo";
/// Real seconds the demo may take before it gives up.
const DEMO_LIMIT: Duration = Duration::from_secs(240);

/// The sample database `shop` (2 tables, a few thousand rows), one statement per line (the
/// form `mariadbd --init-file` reads).
pub const SEED_SQL: &str = "CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128), note TEXT);
CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer INT, amount DECIMAL(10,2), placed DATETIME, memo TEXT);
INSERT INTO shop.customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), CONCAT('line one\\nline two; it''s \"quoted\" ', seq) FROM seq_1_to_500;
INSERT INTO shop.orders SELECT seq, 1 + seq % 500, (seq * 37 % 100000) / 100, TIMESTAMP('2026-01-01') + INTERVAL seq MINUTE, IF(seq % 7 = 0, NULL, REPEAT('x', seq % 50)) FROM seq_1_to_5000;";

/// Seeds the sample database `shop` into a server.
pub fn seed(db: &MysqlServer) -> Result<(), BoxError> {
    db.execute(SEED_SQL)?;
    Ok(())
}

/// A Secret of the demo namespace with `stringData`.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let string_data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "type": "Opaque", "stringData": string_data})
}

/// An AppBinding of the demo namespace for `db`, with the Secret `<name>-auth`.
pub fn appbinding(name: &str, db: &MysqlServer) -> Value {
    json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "kubedb.com/mysql", "version": "10.11",
            "clientConfig": {"url": format!("tcp({}:{})/", db.host(), db.port())},
            "secret": {"name": format!("{name}-auth")},
        }
    })
}

/// The objects of the demo, pointing at the given servers.
pub fn objects(source: &MysqlServer, target: &MysqlServer, s3: &S3Server) -> Vec<Value> {
    let mut objects = storage_objects(s3);
    objects.push(secret(
        "source-mysql-auth",
        &[("username", source.user()), ("password", source.password())],
    ));
    objects.push(appbinding("source-mysql", source));
    objects.extend(restore_target_objects(target));
    objects.push(backup_configuration());
    objects
}

/// The objects of the demo with the source database running as a pod behind a Service (its
/// AppBinding names the Service), as on a cluster.
pub fn objects_with_pod(source: &DatabasePod, target: &MysqlServer, s3: &S3Server) -> Vec<Value> {
    let mut objects = storage_objects(s3);
    objects.extend(source.objects(SEED_SQL));
    objects.extend(restore_target_objects(target));
    objects.push(backup_configuration());
    objects
}

fn storage_objects(s3: &S3Server) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        secret(
            "s3-secret",
            &[
                ("RESTIC_PASSWORD", "demo-repository-password"),
                ("AWS_ACCESS_KEY_ID", s3.access_key()),
                ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
            ],
        ),
        json!({
            "apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "s3-repo", "namespace": NS},
            "spec": {"backend": {"storageSecretName": "s3-secret", "s3": {"endpoint": s3.endpoint(), "bucket": "stash-demo", "prefix": "/demo/mysql", "region": "us-east-1"}}}
        }),
    ]
}

fn restore_target_objects(target: &MysqlServer) -> Vec<Value> {
    vec![
        secret(
            "restored-mysql-auth",
            &[("username", target.user()), ("password", target.password())],
        ),
        appbinding("restored-mysql", target),
    ]
}

fn backup_configuration() -> Value {
    json!({
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
        "metadata": {"name": "sample-mysql-backup", "namespace": NS},
        "spec": {
            "schedule": "*/5 * * * *",
            "task": {"name": "mysql-backup-8.0.21", "params": [{"name": "args", "value": "--databases shop --single-transaction"}]},
            "repository": {"name": "s3-repo"},
            "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "source-mysql"}},
            "retentionPolicy": {"name": "keep-last-2", "keepLast": 2, "prune": true},
            "backupHistoryLimit": 2,
        }
    })
}

/// The RestoreSession of the demo. Its alias `host-0` is the backup's host: the restore reads
/// that host's latest snapshot, and its status names the host.
pub fn restore_session() -> Value {
    json!({
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "RestoreSession",
        "metadata": {"name": "sample-mysql-restore", "namespace": NS},
        "spec": {
            "task": {"name": "mysql-restore-8.0.21"},
            "repository": {"name": "s3-repo"},
            "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "restored-mysql"}, "alias": "host-0", "rules": [{"snapshots": ["latest"]}]},
        }
    })
}

/// Advances the clock by `speed` virtual seconds per real second until `done` holds for a
/// reported phase, printing progress; fails on a Failed phase of the awaited kind or at the limit.
async fn drive(
    env: &Embedded,
    speed: u64,
    seen: &mut BTreeMap<String, String>,
    kind: &str,
    started: Instant,
) -> Result<String, BoxError> {
    loop {
        if started.elapsed() > DEMO_LIMIT {
            return Err(format!("no {kind} finished within {}s", DEMO_LIMIT.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Time moves only while no session runs: jobs take real seconds, schedules are
        // virtual minutes apart, and a clock racing ahead of a job would skip sessions.
        if !seen
            .values()
            .any(|p| matches!(p.as_str(), "Pending" | "Running"))
        {
            env.server.advance(Duration::from_secs(speed / 2)).await;
        }
        report_progress(&env.client, seen).await?;
        for (key, phase) in seen.iter() {
            if key.starts_with(kind) && phase == "Succeeded" {
                return Ok(key.clone());
            }
            if key.starts_with(kind) && phase == "Failed" {
                print_job_logs(env, NS).await;
                return Err(format!("{key} failed").into());
            }
        }
    }
}

/// Runs the demo to the end.
pub async fn run(env: &Embedded, speed: u64) -> Result<(), BoxError> {
    let started = Instant::now();
    println!("starting the restore target MariaDB and the S3 server ...");
    let (target, s3) = tokio::task::spawn_blocking(|| -> Result<_, String> {
        let target = MysqlServer::start().map_err(|e| e.to_string())?;
        let s3 = S3Server::start().map_err(|e| e.to_string())?;
        s3.create_bucket("stash-demo").map_err(|e| e.to_string())?;
        Ok((target, s3))
    })
    .await??;
    let source = DatabasePod::new("source-mysql", NS)?;
    for o in objects_with_pod(&source, &target, &s3) {
        env.apply(&o).await?;
    }
    let ready = source.clone();
    tokio::task::spawn_blocking(move || ready.wait_ready(Duration::from_secs(90))).await??;
    println!(
        "source MariaDB in pod demo/source-mysql-0 behind Service demo/source-mysql (port {}), restore target on port {}, S3 at {}",
        source.port,
        target.port(),
        s3.endpoint()
    );
    println!("applied Secret, Repository, AppBindings and BackupConfiguration demo/sample-mysql-backup (*/5 * * * *, keep last 2)");
    let mut seen = BTreeMap::new();
    let backup = drive(env, speed.max(2), &mut seen, "BackupSession", started).await?;
    println!("backup done: {backup}");
    env.apply(&restore_session()).await?;
    let restore = drive(env, speed.max(2), &mut seen, "RestoreSession", started).await?;
    println!("restore done: {restore}");
    let (a, b) =
        tokio::task::spawn_blocking(move || (source.checksums(), target.checksums())).await?;
    let (a, b) = (a?, b?);
    for (table, sum) in &a {
        let restored = b
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, s)| s.as_str())
            .unwrap_or("missing");
        println!("  {table}: source {sum}, restored {restored}");
    }
    if a.is_empty() || a != b {
        return Err("restored tables differ from the source".into());
    }
    println!(
        "all {} tables restored with equal checksums in {:.1}s",
        a.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prints the log tail of every container of the namespace's Job pods (to see why one failed).
async fn print_job_logs(env: &Embedded, ns: &str) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, LogParams};
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let Ok(pods) = api.list(&ListParams::default().labels("job-name")).await else {
        return;
    };
    for pod in pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let params = LogParams {
                container: Some(c.name.clone()),
                tail_lines: Some(20),
                ..LogParams::default()
            };
            if let Ok(log) = api.logs(&name, &params).await {
                if !log.trim().is_empty() {
                    println!("--- {name}/{}:\n{}", c.name, log.trim_end());
                }
            }
        }
    }
}
