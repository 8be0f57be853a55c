//! Shared by the end-to-end tests: the embedded environment, waiting on the virtual clock,
//! the demo databases, and a dump of the state when a wait fails.
#![allow(dead_code)]

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use stash_core::api::{BackupConfiguration, BackupSession};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use stash_testkit::providers::mysql::MysqlServer;
use stash_testkit::providers::s3::S3Server;
use std::time::{Duration, Instant};

pub const NS: &str = "demo";
pub const IMAGE: &str = stash_core::plan::DEFAULT_IMAGE;

pub async fn start() -> Embedded {
    Embedded::start(IMAGE, env!("CARGO_BIN_EXE_stash").into())
        .await
        .expect("embedded environment starts")
}

/// Advances the clock by `step` every 300 ms until `check` returns Some, or fails after `limit`.
pub async fn wait_for<T, F, Fut>(
    env: &Embedded,
    step: Duration,
    limit: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if started.elapsed() >= limit {
            dump_state(env).await;
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !step.is_zero() {
            env.server.advance(step).await;
        }
    }
}

/// Prints sessions, Jobs and the log tails of their pods, to see why a wait failed.
pub async fn dump_state(env: &Embedded) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::LogParams;
    for s in sessions(env).await {
        eprintln!("session {} {:?}", s.name_any(), s.status);
    }
    for j in Api::<Job>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        eprintln!("job {} {:?}", j.name_any(), j.status);
    }
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    for p in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let spec = p.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let lp = LogParams {
                container: Some(c.name.clone()),
                tail_lines: Some(15),
                ..LogParams::default()
            };
            let log = pods.logs(&p.name_any(), &lp).await.unwrap_or_default();
            eprintln!(
                "--- {}/{} {:?}\n{log}",
                p.name_any(),
                c.name,
                p.status.as_ref().and_then(|s| s.phase.clone())
            );
        }
    }
}

/// Moves the clock one schedule (5 minutes) on and waits, without moving it further, for the
/// one new session to finish; it must succeed.
pub async fn next_backup(
    env: &Embedded,
    known: &std::collections::BTreeSet<String>,
) -> BackupSession {
    let s = next_session(env, known).await;
    assert_eq!(phase(&s), "Succeeded", "{:?}", s.status);
    s
}

/// Moves the clock one schedule on and returns the one new session once it is final.
pub async fn next_session(
    env: &Embedded,
    known: &std::collections::BTreeSet<String>,
) -> BackupSession {
    env.server.advance(Duration::from_secs(300)).await;
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(90),
        "the next backup",
        || async {
            let s = sessions(env)
                .await
                .into_iter()
                .find(|s| !known.contains(&s.name_any()))?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed" | "Skipped").then_some(s)
        },
    )
    .await
}

pub async fn sessions(env: &Embedded) -> Vec<BackupSession> {
    let mut items = Api::<BackupSession>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    items.sort_by_key(|s| s.name_any());
    items
}

pub fn phase(s: &BackupSession) -> String {
    s.status
        .as_ref()
        .and_then(|x| x.phase.clone())
        .unwrap_or_default()
}

pub struct Databases {
    pub source: MysqlServer,
    pub target: MysqlServer,
    pub s3: S3Server,
}

pub fn databases() -> Databases {
    let source = MysqlServer::start().expect("source MariaDB");
    demo::seed(&source).expect("seed");
    let target = MysqlServer::start().expect("target MariaDB");
    let s3 = S3Server::start().expect("S3");
    s3.create_bucket("stash-demo").expect("bucket");
    Databases { source, target, s3 }
}

pub async fn bc_ready(env: &Embedded) -> BackupConfiguration {
    let api = Api::<BackupConfiguration>::namespaced(env.client.clone(), NS);
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(30),
        "BackupConfiguration Ready",
        || async {
            let bc = api.get("sample-mysql-backup").await.ok()?;
            (bc.status.as_ref()?.phase.as_deref() == Some("Ready")).then_some(bc)
        },
    )
    .await
}
