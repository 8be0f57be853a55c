//! The bad-input corpus `fixtures/invalid/`: each file is an otherwise valid set of objects with
//! one mistake, and its first line names the field at fault. Rendering it must give either a
//! render error or a status condition (or an Invalid phase) whose message names that field; the
//! outcome is snapshot-tested so its wording is reviewed like code.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use stash_core::plan::Settings;
use stash_core::world::World;
use std::path::{Path, PathBuf};

const NOW: &str = "2026-11-27T15:00:00Z";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a user sees for one file: render errors, or the failed conditions and Invalid phases of
/// the plans, one line each.
fn outcome(path: &Path, text: &str) -> Vec<String> {
    let settings = Settings::default();
    let mut world = World::with_catalog(&settings.image);
    let loaded = match world.load_yaml(&path.display().to_string(), text) {
        Err(e) => return vec![format!("render error: {e}")],
        Ok(l) => l,
    };
    if !loaded.unknown_fields.is_empty() {
        return loaded
            .unknown_fields
            .iter()
            .map(|e| format!("render error: {e}"))
            .collect();
    }
    let plans = world.plan_all(&settings, &Time(NOW.parse().expect("timestamp")));
    let mut lines = Vec::new();
    for plan in plans {
        let Some(status) = plan.status else { continue };
        let who = plan
            .object
            .as_ref()
            .map(|o| format!("{} {}", o.kind, o.name))
            .unwrap_or_default();
        if let Some(phase) = status.get("phase").and_then(Value::as_str) {
            if matches!(phase, "Invalid" | "NotReady" | "Failed") {
                lines.push(format!("{who}: phase {phase}"));
            }
        }
        let mut conditions: Vec<&Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        for target in status
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            conditions.extend(
                target
                    .get("conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            );
        }
        for c in conditions {
            if c.get("status").and_then(Value::as_str) != Some("True") {
                lines.push(format!(
                    "{who}: {}={} {}: {}",
                    c["type"].as_str().unwrap_or_default(),
                    c["status"].as_str().unwrap_or_default(),
                    c["reason"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    lines
}

#[test]
fn every_bad_input_names_its_field() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("fixtures/invalid"))
        .expect("fixtures/invalid exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} bad-input cases", files.len());
    let mut misses = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let field = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# field: "))
            .expect("first line names the field")
            .to_owned();
        let name = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let relative = Path::new("fixtures/invalid").join(file.file_name().expect("name"));
        let lines = outcome(&relative, &text);
        if !lines.iter().any(|l| l.contains(&field)) {
            misses.push(format!("{name}: nothing names {field:?}: {lines:#?}"));
        }
        insta::with_settings!({
            snapshot_path => repo_root().join("snapshots/invalid"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("what the user sees for fixtures/invalid/{name}.yaml (field: {field})"),
        }, {
            insta::assert_yaml_snapshot!(name, lines);
        });
    }
    assert!(
        misses.is_empty(),
        "{} cases:\n{}",
        misses.len(),
        misses.join("\n")
    );
}
