//! The user commands as a user runs them: `stash render` and `stash crds`.

use std::path::Path;
use std::process::Command;

fn stash(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stash"))
        .args(args)
        .output()
        .expect("stash runs")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn render_prints_the_cronjob_and_the_status() {
    let out = stash(&[
        "render",
        "-f",
        &fixture("bc-s3"),
        "--now",
        "2026-11-27T15:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"CronJob"), "{kinds:?}");
    let status = docs
        .iter()
        .find(|d| d["kind"] == "BackupConfiguration")
        .expect("status document");
    assert_eq!(status["status"]["phase"], "Ready");
}

#[test]
fn bad_input_names_file_document_and_field_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("stash-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: stash.appscode.com/v1beta1\nkind: BackupConfiguration\nmetadata: {name: x, namespace: demo}\nspec:\n  schedule: {not: a string}\n",
    )
    .expect("write");
    let out = stash(&["render", "-f", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("document 2") && err.contains("spec.schedule"),
        "{err}"
    );

    std::fs::write(&file, "kind: [unclosed\n").expect("write");
    let out = stash(&["render", "-f", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("document 1"));

    let out = stash(&["render", "-f", "/nonexistent/stash-fixture"]);
    assert_eq!(out.status.code(), Some(2));
    let out = stash(&["render", "-f", &fixture("bc-s3"), "--now", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--now"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn crds_have_stash_names_short_names_and_status() {
    let out = stash(&["crds"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let crds: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "repositories.stash.appscode.com",
            "backupconfigurations.stash.appscode.com",
            "backupsessions.stash.appscode.com",
            "restoresessions.stash.appscode.com",
            "tasks.stash.appscode.com",
            "functions.stash.appscode.com",
            "appbindings.appcatalog.appscode.com",
        ]
    );
    let bc = &crds[1];
    assert_eq!(bc["spec"]["names"]["shortNames"][0], "bc");
    assert_eq!(bc["spec"]["scope"], "Namespaced");
    assert!(bc["spec"]["versions"][0]["subresources"]["status"].is_mapping());
    assert_eq!(crds[4]["spec"]["scope"], "Cluster");
    let columns: Vec<&str> = bc["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_sequence()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Task", "Schedule", "Paused", "Phase", "Age"]);
}
