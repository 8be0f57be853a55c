//! API-side faults with real parts: the fake API server over HTTP injecting 500, 429 and 409
//! storms into the operator's writes, dropping its watches and ending them with an in-stream 410,
//! and the operator crashing in the middle of a backup. Real MariaDB, the embedded S3 server and
//! the stock `restic` CLI as the oracle. Every backup must end exactly once: one session, one
//! Job, one snapshot, the right phase, a clean repository and no lock left behind.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use stash_core::api::{BackupConfiguration, BackupSession, Repository};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use stash_testkit::apiserver::WriteOptions;
use stash_testkit::faults::FaultRule;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::*;

/// Injects `rules` and returns how many faults they hold.
fn inject(env: &Embedded, rules: &[FaultRule]) -> u32 {
    for r in rules {
        env.server.faults().inject(r.clone());
    }
    rules.iter().map(|r| r.times).sum()
}

/// Waits until every injected fault has been served: the storm really hit the operator.
async fn storm_spent(env: &Embedded) {
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(60),
        "every injected fault to be served",
        || async { env.server.faults().list().is_empty().then_some(()) },
    )
    .await;
}

/// The Jobs in the demo namespace whose name starts with `prefix`.
async fn jobs(env: &Embedded, prefix: &str) -> Vec<String> {
    Api::<Job>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list Jobs")
        .items
        .iter()
        .map(|j| j.name_any())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Events about `session` with `reason`, counting the repetitions of a series.
async fn events_about(env: &Embedded, session: &str, reason: &str) -> i32 {
    Api::<Event>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(session)
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

/// The environment stock restic needs to open the demo repository.
fn restic_env(s3: &stash_testkit::providers::s3::S3Server) -> Vec<(&'static str, String)> {
    vec![
        (
            "RESTIC_REPOSITORY",
            s3.restic_repository("stash-demo", "demo/mysql"),
        ),
        ("RESTIC_PASSWORD", "demo-repository-password".into()),
        ("AWS_ACCESS_KEY_ID", s3.access_key().into()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key().into()),
    ]
}

/// Stock restic's view of the demo repository: the number of snapshots, after checking that
/// no lock is left and that `restic check` finds the repository clean.
fn restic_oracle(env: &[(&'static str, String)]) -> usize {
    let restic = |args: &[&str]| {
        std::process::Command::new("restic")
            .args(args)
            .arg("--no-cache")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("restic runs")
    };
    let locks = restic(&["list", "locks", "--no-lock"]);
    assert!(locks.status.success(), "{locks:?}");
    assert!(
        String::from_utf8_lossy(&locks.stdout).trim().is_empty(),
        "a lock was left behind: {}",
        String::from_utf8_lossy(&locks.stdout)
    );
    let check = restic(&["check"]);
    assert!(
        check.status.success(),
        "restic check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let out = restic(&["snapshots", "--json", "--no-lock"]);
    assert!(out.status.success(), "{out:?}");
    let snapshots: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    snapshots.len()
}

/// One session, one backup Job, one snapshot counted by restic, and the session's status and
/// events as the operator should have written them once: one `BackupSessionSucceeded` Event,
/// even when the answer to the status write that ended the session was lost.
async fn exactly_one_backup(env: &Embedded, s3: &stash_testkit::providers::s3::S3Server) {
    let all = sessions(env).await;
    assert_eq!(all.len(), 1, "sessions: {:?}", names(&all));
    let session = &all[0];
    let name = session.name_any();
    assert_eq!(phase(session), "Succeeded", "{:?}", session.status);
    let status = session.status.clone().unwrap_or_default();
    let target = &status.targets.clone().unwrap_or_default()[0];
    assert_eq!(target.phase.as_deref(), Some("Succeeded"), "{target:?}");
    let host = &target.stats.clone().unwrap_or_default()[0];
    assert_eq!(host.phase.as_deref(), Some("Succeeded"), "{host:?}");
    assert_eq!(host.snapshots.as_ref().map(Vec::len), Some(1), "{host:?}");
    for c in status.conditions.iter().flatten() {
        assert_eq!(c.status, "True", "session condition {c:?}");
    }
    assert!(status.session_duration.is_some(), "{status:?}");
    assert_eq!(
        jobs(env, "stash-backup-").await,
        vec![stash_core::names::backup_job_name(&name, 0)]
    );
    let events = events_about(env, &name, "BackupSessionSucceeded").await;
    assert_eq!(events, 1, "{events} BackupSessionSucceeded events");
    let repo = wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(30),
        "the Repository to count the snapshot",
        || async {
            let r = Api::<Repository>::namespaced(env.client.clone(), NS)
                .get("s3-repo")
                .await
                .ok()?;
            (r.status.as_ref()?.snapshot_count == Some(1)).then_some(r)
        },
    )
    .await;
    assert_eq!(repo.status.and_then(|s| s.integrity), Some(true));
    let vars = restic_env(s3);
    let counted = tokio::task::spawn_blocking(move || restic_oracle(&vars))
        .await
        .expect("join");
    assert_eq!(counted, 1, "restic counts one snapshot");
}

fn names(sessions: &[BackupSession]) -> Vec<String> {
    sessions.iter().map(|s| s.name_any()).collect()
}

/// The configuration is Ready with every condition True.
async fn configuration_converged(env: &Embedded) {
    let bc = bc_ready(env).await;
    let conds = bc.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conds.len() >= 5, "{conds:?}");
    for c in conds {
        assert_eq!(c.status, "True", "configuration condition {c:?}");
    }
}

/// Creates the demo objects straight in the server's store: the faults hit only the HTTP
/// clients (the operator and the Job pods), never the test's own writes.
fn apply_demo(env: &Embedded, dbs: &Databases) {
    let api = env.server.api();
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        let s = |p: &str| o.pointer(p).and_then(|v| v.as_str()).unwrap_or_default();
        let info = api
            .registry
            .by_kind(s("/apiVersion"), s("/kind"))
            .expect("a served kind");
        let ns = s("/metadata/namespace").to_string();
        api.create(&info, &ns, o.clone(), &WriteOptions::manager("test"))
            .expect("create");
    }
}

/// Moves the clock to the next schedule and waits for the one session it starts to finish.
async fn scheduled_session(env: &Embedded) -> BackupSession {
    next_session(env, &BTreeSet::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_storms_converge_without_duplicate_jobs_or_sessions() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let env = start().await;
    let started = Instant::now();
    // While the configuration is evaluated: its finalizer and status writes fail with 500 and
    // 409 (once after taking effect), the CronJob apply is throttled with 429 + Retry-After,
    // the Repository's status writes fail with 500. (The operator backs off exponentially per
    // object, 2 s, 4 s, 8 s: a longer run of failures on one object only makes the test slow.)
    let mut injected = inject(
        &env,
        &[
            FaultRule::fail("patch", "backupconfigurations", 500, 2),
            FaultRule::fail("patch", "backupconfigurations", 409, 1),
            FaultRule::fail_after("patch", "backupconfigurations", 500, 1),
            FaultRule::fail("patch", "cronjobs", 429, 2),
            FaultRule::fail("patch", "repositories", 500, 2),
        ],
    );
    apply_demo(&env, &dbs);
    configuration_converged(&env).await;
    storm_spent(&env).await;
    let ready_after = started.elapsed();

    // While the backup runs: the trigger pod's create of the session fails with 500, once
    // before and once after it took effect; the backup Job's apply is throttled and fails
    // after taking effect; the operator's status writes to the session conflict and fail
    // after taking effect; the backup Job's own status writes (update-status, a PUT) fail.
    injected += inject(
        &env,
        &[
            FaultRule::fail("create", "backupsessions", 500, 1),
            FaultRule::fail_after("create", "backupsessions", 500, 1),
            FaultRule::fail("patch", "jobs", 429, 2),
            FaultRule::fail_after("patch", "jobs", 500, 1),
            FaultRule::fail("patch", "backupsessions", 409, 1),
            FaultRule::fail_after("patch", "backupsessions", 500, 1),
            FaultRule::fail("update", "backupsessions", 500, 2),
            FaultRule::fail_after("update", "backupsessions", 500, 1),
        ],
    );
    let backup_started = Instant::now();
    let session = scheduled_session(&env).await;
    assert_eq!(phase(&session), "Succeeded", "{:?}", session.status);
    storm_spent(&env).await;
    let backup_took = backup_started.elapsed();
    // The clock stands still: no second session appears, the configuration stays Ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    configuration_converged(&env).await;
    exactly_one_backup(&env, &dbs.s3).await;
    assert_eq!(
        jobs(&env, "stash-trigger-").await.len(),
        1,
        "one trigger Job"
    );
    eprintln!(
        "figures: {injected} injected faults; configuration Ready after {:?}; backup with \
         storm done after {:?}; requests {}",
        ready_after,
        backup_took,
        env.server.requests().report()["byAgent"]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_410_in_stream_relist_and_converge() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let env = start().await;
    let requests = env.server.requests().clone();
    // Only the operator lists and watches these (the test reads sessions, Jobs and the
    // configuration; Job pods read by name).
    let watched = ["tasks", "appbindings", "cronjobs", "repositories"];
    let count = |verb: &str| -> u64 {
        watched
            .iter()
            .map(|r| requests.count("kube-rs", verb, r) + requests.count("unknown", verb, r))
            .sum()
    };
    // Watches are cut every 100 ms while the objects arrive and the configuration converges.
    let cutter = {
        let faults = env.server.faults().clone();
        tokio::spawn(async move {
            let mut cuts = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                faults.cut_watches();
                cuts += 1;
                if cuts == 30 {
                    return cuts;
                }
            }
        })
    };
    let started = Instant::now();
    apply_demo(&env, &dbs);
    configuration_converged(&env).await;
    let cuts = cutter.await.expect("join");
    let ready_after = started.elapsed();
    let watches_after_cuts = count("watch");

    // A 410 ERROR inside the watch streams (history compacted): each watcher must list again.
    let lists_before = count("list");
    env.server.expire_watches();
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(20),
        "every watcher to list again",
        || async { (count("list") >= lists_before + watched.len() as u64).then_some(()) },
    )
    .await;

    // The session appears after the 410: only a relisted, re-established watch sees it.
    // Once it runs, the streams are cut and expired again while the Job works.
    env.server.advance(Duration::from_secs(300)).await;
    let running = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the session to start",
        || async {
            sessions(&env)
                .await
                .into_iter()
                .find(|s| !phase(s).is_empty())
        },
    )
    .await;
    env.server.faults().cut_watches();
    env.server.expire_watches();
    let api = Api::<BackupSession>::namespaced(env.client.clone(), NS);
    let done = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the session to finish",
        || async {
            let s = api.get(&running.name_any()).await.ok()?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed").then_some(s)
        },
    )
    .await;
    assert_eq!(phase(&done), "Succeeded", "{:?}", done.status);
    exactly_one_backup(&env, &dbs.s3).await;
    // Nothing pending after the storm: the configuration was not re-evaluated into a new state.
    configuration_converged(&env).await;
    eprintln!(
        "figures: {cuts} watch cuts then 2 in-stream 410s; configuration Ready after {:?}; \
         operator watches {} (after cuts: {watches_after_cuts}), lists {} (before 410: \
         {lists_before})",
        ready_after,
        count("watch"),
        count("list"),
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_crash_mid_backup_finishes_the_session_exactly_once() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let mut env = start().await;
    apply_demo(&env, &dbs);
    configuration_converged(&env).await;

    // The operator's first status write of the session (after it applied the Job) hangs, and
    // the operator dies during it: the Job exists, the session says nothing about it yet.
    env.server.faults().inject(FaultRule::delay(
        "patch",
        "backupsessions",
        Duration::from_secs(3),
        1,
    ));
    env.server.advance(Duration::from_secs(300)).await;
    let job = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the backup Job",
        || async { jobs(&env, "stash-backup-").await.into_iter().next() },
    )
    .await;
    env.crash_operator().await;
    let crashed_at = Instant::now();
    let at_crash = sessions(&env).await;
    let phase_at_crash = at_crash.first().map(phase).unwrap_or_default();

    // The backup finishes while no operator runs.
    let jobs_api = Api::<Job>::namespaced(env.client.clone(), NS);
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the Job to complete without the operator",
        || async {
            let j = jobs_api.get(&job).await.ok()?;
            let done =
                j.status.as_ref()?.conditions.as_ref()?.iter().any(|c| {
                    matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True"
                });
            done.then_some(())
        },
    )
    .await;
    let unfinished = sessions(&env).await;
    assert_eq!(unfinished.len(), 1);
    assert!(
        !matches!(phase(&unfinished[0]).as_str(), "Succeeded" | "Failed"),
        "no operator ran, yet the session is final: {:?}",
        unfinished[0].status
    );

    // A new operator finishes it, once, although the answer to the status write that ends the
    // session is lost (it commits, then the server answers 500): the retry finds the session
    // final, and its Event is sent all the same, once.
    env.server
        .faults()
        .inject(FaultRule::fail_after("patch", "backupsessions", 500, 1));
    env.start_operator();
    let name = unfinished[0].name_any();
    let api = Api::<BackupSession>::namespaced(env.client.clone(), NS);
    let done = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the restarted operator to finish the session",
        || async {
            let s = api.get(&name).await.ok()?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed").then_some(s)
        },
    )
    .await;
    let recovered_after = crashed_at.elapsed();
    assert_eq!(phase(&done), "Succeeded", "{:?}", done.status);
    assert!(
        env.server.faults().list().is_empty(),
        "the final status write's answer was not lost"
    );
    // Another restart once it is final changes nothing.
    env.crash_operator().await;
    env.start_operator();
    tokio::time::sleep(Duration::from_secs(3)).await;
    exactly_one_backup(&env, &dbs.s3).await;
    let bc = Api::<BackupConfiguration>::namespaced(env.client.clone(), NS)
        .get("sample-mysql-backup")
        .await
        .expect("configuration");
    assert_eq!(
        bc.status.and_then(|s| s.phase).as_deref(),
        Some("Ready"),
        "configuration after restarts"
    );
    eprintln!(
        "figures: crashed with the session in phase {phase_at_crash:?}; final \
         {recovered_after:?} after the crash (Job done meanwhile)"
    );
    env.stop().await;
}

/// update-status's per-host events exist once: a create whose answer is lost (a 500 after it
/// took effect) is tried again and answered AlreadyExists, and a second run of the step (a
/// retried Job pod) finds the event instead of adding another. With unnamed events (kube's
/// Recorder) the lost answer is not retried and the second run adds a second Event.
#[tokio::test]
async fn host_events_exist_once_despite_a_lost_answer_and_a_repeated_step() {
    use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::PostParams;
    use stash_core::api::RestoreSession;
    use stash_core::plan::update_status::{plan_restore, RestoreInputs};
    use stash_operator::commands::update_status::publish;

    let server = stash_testkit::FakeApiServer::start().await.expect("server");
    let client = kube::Client::new(server.router(), "default");
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let session = RestoreSession {
        metadata: ObjectMeta {
            name: Some("restore-1".into()),
            namespace: Some(NS.into()),
            uid: Some("7a3c0d2e-0000-4000-8000-000000000001".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let plan = plan_restore(&RestoreInputs {
        namespace: NS.into(),
        session: session.clone(),
        output: Err("the restore container ended before writing output.json".into()),
    });
    assert_eq!(plan.events.len(), 1, "{:?}", plan.events);
    let reference = ObjectReference {
        api_version: Some("stash.appscode.com/v1beta1".into()),
        kind: Some("RestoreSession".into()),
        name: session.metadata.name.clone(),
        namespace: Some(NS.into()),
        uid: session.metadata.uid.clone(),
        ..Default::default()
    };
    server
        .faults()
        .inject(FaultRule::fail_after("create", "events", 500, 1));
    publish(&client, &plan.events, &reference).await;
    assert!(
        server.faults().list().is_empty(),
        "the lost answer was served"
    );
    publish(&client, &plan.events, &reference).await;
    let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("HostRestoreFailed"))
        .collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0].metadata.name.as_deref(),
        Some("restore-1.7a3c0d2e.host-restore-failed.host-0")
    );
}
