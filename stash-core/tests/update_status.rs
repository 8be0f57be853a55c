//! Snapshot tests of the update-status planner: every case under `fixtures/update-status/` (a
//! session and its invoker, `output.json` as the data step wrote it, and what each repository
//! action answers) is run step by step at a fixed time; the actions asked for, the plan and the
//! session status after the patch are compared with the reviewed snapshots under `snapshots/`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::{json, Value};
use stash_core::api::{BackupConfiguration, BackupSession, RestoreSession};
use stash_core::output::Output;
use stash_core::plan::update_status::{
    plan_restore, Action, ActionResult, BackupInputs, BackupUpdate, FlagTarget, RestoreInputs,
};
use stash_core::retention::SnapshotInfo;
use std::path::{Path, PathBuf};

const NOW: &str = "2026-11-27T15:00:00Z";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/update-status")
}

/// `job.yaml`: the Job's target flags and the scripted answers of the repository.
#[derive(Debug, Deserialize)]
struct Job {
    flags: Flags,
    #[serde(default)]
    results: Results,
}

#[derive(Debug, Deserialize)]
struct Flags {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Results {
    list_snapshots: Option<Answer<Vec<Listed>>>,
    forget: Option<Answer<String>>,
    check: Option<Answer<String>>,
    stats: Option<Answer<Stats>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Answer<T> {
    Failed { failed: String },
    Ok(T),
}

#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    time: String,
    host: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    total_size: u64,
    snapshot_count: u64,
}

struct Case {
    objects: Vec<Value>,
    output: Result<Output, String>,
    job: Job,
}

fn load(dir: &Path) -> Case {
    let text = std::fs::read_to_string(dir.join("objects.yaml")).expect("objects.yaml");
    let objects = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("yaml document"))
        .collect();
    // What the command's reader says for a missing file, without the machine's path.
    let output = match std::fs::read_to_string(dir.join("output.json")) {
        Ok(text) => Output::parse(&text).map_err(|e| e.to_string()),
        Err(_) => Err(
            "output.json: No such file or directory (the backup or restore step did not finish)"
                .into(),
        ),
    };
    let job: Job =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("job.yaml")).expect("job.yaml"))
            .expect("job.yaml parses");
    Case {
        objects,
        output,
        job,
    }
}

fn object<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> Option<T> {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).expect("object"))
}

fn answer<T>(
    a: &Option<Answer<T>>,
    action: &Action,
    ok: impl FnOnce(&T) -> ActionResult,
) -> ActionResult {
    match a {
        Some(Answer::Ok(v)) => ok(v),
        Some(Answer::Failed { failed }) => ActionResult::Failed(failed.clone()),
        None => panic!("the fixture has no answer for {action:?}"),
    }
}

/// The scripted repository: answers each action from `job.yaml`.
fn run_action(results: &Results, action: &Action) -> ActionResult {
    match action {
        Action::ListSnapshots => answer(&results.list_snapshots, action, |list| {
            ActionResult::Snapshots(
                list.iter()
                    .map(|l| {
                        let t: k8s_openapi::jiff::Timestamp = l.time.parse().expect("time");
                        SnapshotInfo {
                            id: l.id.clone(),
                            time: t.as_second(),
                            nanos: t.subsec_nanosecond().unsigned_abs(),
                            host: l.host.clone(),
                            paths: vec!["/dumpfile.sql".into()],
                            tags: l.tags.clone(),
                        }
                    })
                    .collect(),
            )
        }),
        Action::Forget { .. } => answer(&results.forget, action, |_| ActionResult::Done),
        Action::Check => answer(&results.check, action, |_| ActionResult::Done),
        Action::Stats => answer(&results.stats, action, |s| ActionResult::Stats {
            total_size: s.total_size,
            snapshot_count: s.snapshot_count,
        }),
    }
}

fn short(result: &ActionResult) -> Value {
    match result {
        ActionResult::Snapshots(list) => json!(format!("{} snapshots", list.len())),
        other => serde_json::to_value(other).expect("serializes"),
    }
}

fn run_case(dir: &Path) -> Value {
    let case = load(dir);
    let now = Time(NOW.parse().expect("timestamp"));
    if let Some(session) = object::<RestoreSession>(&case.objects, "RestoreSession") {
        let plan = plan_restore(&RestoreInputs {
            namespace: "demo".into(),
            session: session.clone(),
            output: case.output,
        });
        let mut status = session.status.clone().unwrap_or_default();
        plan.apply(&mut status);
        return json!({"plan": plan, "statusAfter": status});
    }
    let session: BackupSession = object(&case.objects, "BackupSession").expect("a session");
    let inputs = BackupInputs {
        namespace: "demo".into(),
        session: session.clone(),
        configuration: object::<BackupConfiguration>(&case.objects, "BackupConfiguration"),
        output: case.output,
        flag_target: FlagTarget {
            kind: case.job.flags.kind.clone(),
            name: case.job.flags.name.clone(),
            namespace: case.job.flags.namespace.clone(),
        },
        now,
    };
    let mut update = BackupUpdate::start(&inputs);
    let mut steps = Vec::new();
    while let Some(action) = update.next_action() {
        assert!(steps.len() < 10, "the sequence never ends");
        let result = run_action(&case.job.results, &action);
        steps.push(json!({"action": action, "result": short(&result)}));
        update.record(result);
    }
    let plan = update.finish();
    let mut status = session.status.clone().unwrap_or_default();
    plan.session.apply(&mut status);
    // Applying twice (a retried write after a conflict) changes nothing.
    let mut again = status.clone();
    plan.session.apply(&mut again);
    assert_eq!(again, status, "{}", dir.display());
    json!({"steps": steps, "plan": plan, "statusAfter": status})
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("fixtures/update-status exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_update_status_case_matches_its_snapshot() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 15, "found {} cases", dirs.len());
    for dir in dirs {
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let result = run_case(&dir);
        insta::with_settings!({
            snapshot_path => cases_dir().join("../../snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("update-status for fixtures/update-status/{name} at {NOW}"),
        }, {
            insta::assert_yaml_snapshot!(format!("update-status-{name}"), result);
        });
    }
}

/// The decisions, spelled out: what the snapshots show, asserted so a reader need not diff.
#[test]
fn decisions_read_like_the_spec() {
    let run = |n: &str| run_case(&cases_dir().join(n));
    let actions = |v: &Value| -> Vec<String> {
        v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["action"]["action"].as_str().expect("action").to_owned())
            .collect()
    };
    // Retention forgets exactly what select chose (the two oldest of four), pruned.
    let r = run("backup-retention");
    assert_eq!(actions(&r), ["listSnapshots", "forget", "check", "stats"]);
    let forget = &r["steps"][1]["action"];
    assert_eq!(forget["prune"], true);
    // The two oldest (14:40 and 14:35; newest first, as select lists them).
    assert_eq!(
        forget["ids"],
        json!([
            "71f6302371f6302371f6302371f6302371f6302371f6302371f6302371f63023",
            "4edd526b4edd526b4edd526b4edd526b4edd526b4edd526b4edd526b4edd526b",
        ])
    );
    assert_eq!(r["plan"]["repository"]["report"]["snapshotsRemoved"], 2);
    // No keep rule: nothing is listed or forgotten.
    assert_eq!(actions(&run("backup-keeps-everything")), ["check", "stats"]);
    // Dry run: listed, not forgotten.
    assert_eq!(
        actions(&run("backup-dry-run")),
        ["listSnapshots", "check", "stats"]
    );
    // The first failure stops the sequence.
    assert_eq!(
        actions(&run("backup-forget-failed")),
        ["listSnapshots", "forget"]
    );
    assert_eq!(
        actions(&run("backup-check-failed")),
        ["listSnapshots", "forget", "check"]
    );
    assert_eq!(
        actions(&run("backup-engine-unavailable")),
        ["listSnapshots"]
    );
    assert!(run("backup-forget-failed")["plan"]["repository"].is_null());
    // A failed host: no repository action, a Warning.
    let failed = run("backup-host-failed");
    assert!(actions(&failed).is_empty());
    assert_eq!(failed["plan"]["events"][0]["type"], "Warning");
    assert_eq!(failed["plan"]["events"][0]["reason"], "Host Backup Failed");
    // Named after the session, its uid, the reason and the host: a repeat finds it.
    assert_eq!(
        failed["plan"]["events"][0]["name"],
        "sample-mysql-backup-1795791000.5e551011.host-backup-failed.host-0"
    );
    // No output.json: host-0 (or the alias) failed, for the target the flags name.
    let missing = run("backup-output-missing");
    assert_eq!(missing["plan"]["session"]["stats"][0]["hostname"], "host-0");
    let alias = run("backup-output-missing-alias");
    assert_eq!(alias["plan"]["session"]["stats"][0]["hostname"], "primary");
    assert_eq!(alias["plan"]["session"]["target"]["namespace"], "databases");
    assert_eq!(alias["plan"]["session"]["target"]["kind"], "AppBinding");
    // A bad row fails the host with an error naming it.
    let bad = run("backup-output-bad-row");
    assert!(bad["plan"]["session"]["stats"][0]["error"]
        .as_str()
        .expect("error")
        .contains("targetStatus.stats[1].phase"));
    // The rows of a differently named target go into the session's only entry.
    let lone = run("backup-lone-target");
    assert_eq!(
        lone["statusAfter"]["targets"]
            .as_array()
            .expect("targets")
            .len(),
        1
    );
    assert_eq!(
        lone["statusAfter"]["targets"][0]["stats"][0]["hostname"],
        "host-0"
    );
}
