//! Snapshot tests: every fixture set under `fixtures/` is planned at a fixed time and the plans
//! are compared with the reviewed snapshots under `snapshots/`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stash_core::plan::{Plan, Settings};
use stash_core::world::World;
use std::path::{Path, PathBuf};

const NOW: &str = "2026-11-27T15:00:00Z";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plan_fixture(dir: &Path) -> Vec<Plan> {
    let settings = Settings::default();
    let mut world = World::with_catalog(&settings.image);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("fixture readable");
        let loaded = world
            .load_yaml(&f.display().to_string(), &text)
            .expect("fixture loads");
        // Fixtures are what a user would apply: a strict API server accepts them.
        assert_eq!(loaded.unknown_fields, [], "{}", f.display());
    }
    world.plan_all(&settings, &Time(NOW.parse().expect("timestamp")))
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("fixtures"))
        .expect("fixtures/ exists")
        .map(|e| e.expect("dir entry").path())
        // fixtures/invalid holds the bad-input corpus (tests/invalid_inputs.rs), and
        // fixtures/update-status the update-status cases (tests/update_status.rs).
        .filter(|p| p.is_dir() && !p.ends_with("invalid") && !p.ends_with("update-status"))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_matches_its_snapshot() {
    let dirs = fixture_dirs();
    assert!(
        dirs.len() >= 20,
        "expected at least 20 fixture sets, found {}",
        dirs.len()
    );
    for dir in dirs {
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let plans = plan_fixture(&dir);
        insta::with_settings!({
            snapshot_path => repo_root().join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("plans for fixtures/{name} at {NOW}"),
        }, {
            insta::assert_yaml_snapshot!(name, plans);
        });
    }
}

#[test]
fn planning_is_deterministic() {
    for dir in fixture_dirs() {
        let a = serde_json::to_string(&plan_fixture(&dir)).expect("serializes");
        let b = serde_json::to_string(&plan_fixture(&dir)).expect("serializes");
        assert_eq!(a, b, "{}", dir.display());
    }
}

/// Finds the plan for `kind` in a fixture (the last one: fixtures name the session under test
/// newest, and plans come in name order).
fn plan_of<'a>(plans: &'a [Plan], kind: &str) -> &'a Plan {
    plans
        .iter()
        .rev()
        .find(|p| p.object.as_ref().is_some_and(|o| o.kind == kind))
        .expect("plan present")
}

/// The names of the objects the (last) session's plan deletes.
fn deleted_by_session(plans: &[Plan]) -> Vec<String> {
    plan_of(plans, "BackupSession")
        .delete
        .iter()
        .map(|k| k.name.clone())
        .collect()
}

fn status_field(plan: &Plan, pointer: &str) -> String {
    plan.status
        .as_ref()
        .and_then(|s| s.pointer(pointer))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn decisions_read_like_the_spec() {
    let fixture = |n: &str| plan_fixture(&repo_root().join("fixtures").join(n));
    let cases: &[(&str, &str, &str, &str)] = &[
        ("bc-s3", "BackupConfiguration", "/phase", "Ready"),
        ("bc-paused", "BackupConfiguration", "/phase", "Ready"),
        (
            "bc-missing-repository",
            "BackupConfiguration",
            "/phase",
            "NotReady",
        ),
        (
            "bc-missing-secret",
            "BackupConfiguration",
            "/phase",
            "NotReady",
        ),
        (
            "bc-missing-appbinding",
            "BackupConfiguration",
            "/phase",
            "NotReady",
        ),
        (
            "bc-missing-task",
            "BackupConfiguration",
            "/phase",
            "Invalid",
        ),
        (
            "bc-invalid-cron",
            "BackupConfiguration",
            "/phase",
            "Invalid",
        ),
        (
            "bc-usage-policy-denied",
            "BackupConfiguration",
            "/phase",
            "Invalid",
        ),
        (
            "bc-usage-policy-selector",
            "BackupConfiguration",
            "/phase",
            "Ready",
        ),
        ("session-start", "BackupSession", "/phase", "Running"),
        (
            "session-skipped-another-running",
            "BackupSession",
            "/phase",
            "Skipped",
        ),
        ("session-job-failed", "BackupSession", "/phase", "Failed"),
        ("session-job-deleted", "BackupSession", "/phase", "Failed"),
        ("session-timeout", "BackupSession", "/phase", "Failed"),
        (
            "session-succeeded-history",
            "BackupSession",
            "/phase",
            "Succeeded",
        ),
        (
            "session-manual-skipped-running",
            "BackupSession",
            "/phase",
            "Skipped",
        ),
        (
            "session-waits-for-configuration",
            "BackupSession",
            "/phase",
            "Pending",
        ),
        (
            "session-manual-history",
            "BackupSession",
            "/phase",
            "Succeeded",
        ),
        ("restore-latest", "RestoreSession", "/phase", "Running"),
        (
            "restore-invalid-rules",
            "RestoreSession",
            "/phase",
            "Invalid",
        ),
        (
            "restore-missing-repository",
            "RestoreSession",
            "/phase",
            "Pending",
        ),
    ];
    for (fixture_name, kind, pointer, expected) in cases {
        let plans = fixture(fixture_name);
        assert_eq!(
            status_field(plan_of(&plans, kind), pointer),
            *expected,
            "{fixture_name}"
        );
    }
    // The paused configuration's CronJob is suspended.
    let paused = fixture("bc-paused");
    let cron = plan_of(&paused, "BackupConfiguration")
        .apply
        .iter()
        .find(|o| o["kind"] == "CronJob")
        .expect("cronjob");
    assert_eq!(cron["spec"]["suspend"], true);
    // An invalid cron never gets a CronJob, and the message names the field.
    let invalid = fixture("bc-invalid-cron");
    let p = plan_of(&invalid, "BackupConfiguration");
    assert!(!p.apply.iter().any(|o| o["kind"] == "CronJob"));
    assert!(serde_json::to_string(&p.status)
        .expect("json")
        .contains("spec.schedule"));
    // A failed pod's reason reaches the session.
    let failed = fixture("session-job-failed");
    assert!(
        serde_json::to_string(&plan_of(&failed, "BackupSession").status)
            .expect("json")
            .contains("OOMKilled")
    );
    // History: beyond the limit of 2, finished sessions go; the Skipped one and the oldest.
    assert_eq!(
        deleted_by_session(&fixture("session-succeeded-history")),
        [
            "sample-mysql-backup-1795790100",
            "sample-mysql-backup-1795789800",
            "sample-mysql-backup-1795789500"
        ]
    );
}

/// The plan of the session named `name` in a fixture.
fn session_plan<'a>(plans: &'a [Plan], name: &str) -> &'a Plan {
    plans
        .iter()
        .find(|p| {
            p.object
                .as_ref()
                .is_some_and(|o| o.kind == "BackupSession" && o.name == name)
        })
        .expect("session plan present")
}

#[test]
fn hand_written_sessions_count_by_spec_invoker() {
    let fixture = |n: &str| plan_fixture(&repo_root().join("fixtures").join(n));
    // A Running session without invoker labels blocks the next one; the older Running session
    // of a BackupBatch with the same name does not.
    let plans = fixture("session-manual-skipped-running");
    let skipped = session_plan(&plans, "manual-backup-2");
    let message = serde_json::to_string(&skipped.status).expect("json");
    assert!(
        message.contains(r#"Previous BackupSession: manual-backup-1 is \"Running\""#),
        "{message}"
    );
    assert!(skipped.apply.is_empty(), "a skipped session starts no Job");
    // History cleanup deletes label-less finished sessions beyond the limit like any other.
    assert_eq!(
        deleted_by_session(&fixture("session-manual-history")),
        [
            "manual-backup-b",
            "manual-backup-c",
            "sample-mysql-backup-1795789500"
        ]
    );
}

#[test]
fn a_session_waits_for_its_configuration_to_be_evaluated() {
    let plans = plan_fixture(&repo_root().join("fixtures/session-waits-for-configuration"));
    let p = plan_of(&plans, "BackupSession");
    assert_eq!(status_field(p, "/phase"), "Pending");
    assert!(
        p.apply.is_empty(),
        "no Job before the configuration is evaluated"
    );
    assert!(p.events.is_empty());
    assert_eq!(
        p.requeue_after_seconds,
        Some(stash_core::plan::backup_session::REQUEUE_WAITING_SECS)
    );
    assert!(!serde_json::to_string(&p.status)
        .expect("json")
        .contains("BackupSkipped"));
}

#[test]
fn forbidden_secret_read_names_the_missing_binding() {
    let settings = Settings::default();
    let mut world = World::with_catalog(&settings.image);
    let dir = repo_root().join("fixtures/bc-s3");
    let text = std::fs::read_to_string(dir.join("objects.yaml")).expect("fixture");
    world.load_yaml("objects.yaml", &text).expect("loads");
    let bc: stash_core::api::BackupConfiguration = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .find_map(|v: serde_json::Value| {
            (v["kind"] == "BackupConfiguration").then(|| serde_json::from_value(v).expect("bc"))
        })
        .expect("a BackupConfiguration");
    let now = Time(NOW.parse().expect("timestamp"));
    let mut inputs = world.backup_configuration_inputs(&bc, &settings, &now);
    inputs.storage_secret_keys = None;
    inputs.storage_secret_forbidden = true;
    let plan = stash_core::plan::backup_configuration::plan(&inputs);
    let status = plan.status.expect("status");
    assert_eq!(status["phase"], "NotReady");
    let cond = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "BackendSecretFound")
        .expect("condition")
        .clone();
    assert_eq!(cond["status"], "Unknown");
    assert!(
        cond["message"]
            .as_str()
            .unwrap_or_default()
            .contains("create rolebinding"),
        "{cond}"
    );
    assert_eq!(plan.requeue_after_seconds, Some(30));
    assert!(!plan.apply.iter().any(|o| o["kind"] == "CronJob"));
}

/// Every container of a local-backend Job (backup steps, update-status, hooks; restore too)
/// mounts the Repository's volume at its mountPath, and the volume source is the one written.
#[test]
fn local_backend_volume_reaches_every_container() {
    let fixture = |n: &str| plan_fixture(&repo_root().join("fixtures").join(n));
    for (name, kind, source_kind, sub_path) in [
        ("bc-local", "BackupSession", "persistentVolumeClaim", None),
        ("bc-local-nfs", "BackupSession", "nfs", Some("demo/mysql")),
        ("bc-local-hostpath", "BackupSession", "hostPath", None),
        (
            "restore-local",
            "RestoreSession",
            "persistentVolumeClaim",
            None,
        ),
    ] {
        let plans = fixture(name);
        let job = plan_of(&plans, kind)
            .apply
            .iter()
            .find(|o| o["kind"] == "Job")
            .unwrap_or_else(|| panic!("{name}: no Job"));
        let pod = &job["spec"]["template"]["spec"];
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "stash-local")
            .unwrap_or_else(|| panic!("{name}: no stash-local volume"));
        assert!(volume[source_kind].is_object(), "{name}: {volume}");
        let containers: Vec<&serde_json::Value> = pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().into_iter().flatten())
            .collect();
        assert!(containers.len() >= 2, "{name}");
        for c in containers {
            let mount = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["name"] == "stash-local")
                .unwrap_or_else(|| panic!("{name}: {} does not mount the repository", c["name"]));
            assert_eq!(mount["mountPath"], "/safe/data", "{name}");
            assert_eq!(mount["subPath"].as_str(), sub_path, "{name}");
        }
    }
}

/// An interimVolumeTemplate gives each session its own claim, owned by the session and mounted
/// at /stash-interim-volume; wipeOut runs a Job before the Repository's finalizer goes.
#[test]
fn interim_volumes_and_wipe_out() {
    let fixture = |n: &str| plan_fixture(&repo_root().join("fixtures").join(n));
    let plans = fixture("bc-interim-volume");
    let plan = plan_of(&plans, "BackupSession");
    let claim = plan
        .apply
        .iter()
        .find(|o| o["kind"] == "PersistentVolumeClaim")
        .expect("claim");
    assert_eq!(
        claim["metadata"]["name"],
        "interim-sample-mysql-backup-1795791000"
    );
    assert_eq!(
        claim["metadata"]["ownerReferences"][0]["kind"],
        "BackupSession"
    );
    assert_eq!(claim["spec"]["storageClassName"], "standard");
    let job = plan.apply.iter().find(|o| o["kind"] == "Job").expect("job");
    let pod = &job["spec"]["template"]["spec"];
    assert!(pod["volumes"].as_array().expect("volumes").iter().any(|v| {
        v["name"] == "stash-interim-volume"
            && v["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    }));
    assert!(serde_json::to_string(job)
        .expect("json")
        .contains("/stash-interim-volume"));
    let invalid = fixture("bc-interim-volume-invalid");
    assert!(
        serde_json::to_string(&plan_of(&invalid, "BackupConfiguration").status)
            .expect("json")
            .contains("spec.interimVolumeTemplate.spec.accessModes")
    );

    use stash_core::plan::FinalizerAction;
    for (name, finalizer, job) in [
        ("repo-wipe-out-start", FinalizerAction::Keep, true),
        ("repo-wipe-out-done", FinalizerAction::Remove, false),
        ("repo-wipe-out-failed", FinalizerAction::Keep, false),
        (
            "repo-wipe-out-local-refused",
            FinalizerAction::Remove,
            false,
        ),
    ] {
        let plans = fixture(name);
        let p = plan_of(&plans, "Repository");
        assert_eq!(p.finalizer, finalizer, "{name}");
        assert_eq!(p.apply.iter().any(|o| o["kind"] == "Job"), job, "{name}");
    }
    let refused = fixture("repo-wipe-out-local-invalid");
    assert!(
        serde_json::to_string(&plan_of(&refused, "Repository").status)
            .expect("json")
            .contains("spec.wipeOut is not supported for the local backend")
    );
}
