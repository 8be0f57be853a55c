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

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stash-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The bc-s3 fixture's objects with a misspelt retention field and a misspelt field deep in
/// an embedded Kubernetes type; the AppBinding's free-form `parameters` stay allowed.
fn typo_fixture(dir: &Path) -> String {
    let text = std::fs::read_to_string(Path::new(&fixture("bc-s3")).join("objects.yaml"))
        .expect("fixture");
    assert!(text.contains("keepLast: 5"));
    let text = text.replace("keepLast: 5", "keepLst: 5").replace(
        "  schedule: '*/5 * * * *'\n",
        "  schedule: '*/5 * * * *'\n  runtimeSettings:\n    pod:\n      securityContext:\n        runAsUsr: 1000\n",
    );
    assert!(
        text.contains("runAsUsr"),
        "the fixture's schedule line moved"
    );
    let file = dir.join("objects.yaml");
    std::fs::write(&file, text).expect("write");
    file.display().to_string()
}

#[test]
fn unknown_fields_are_rejected_naming_file_document_and_path() {
    let dir = temp_dir("strict");
    let file = typo_fixture(&dir);
    let out = stash(&["render", "-f", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing rendered on error");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("BackupConfiguration sample-mysql-backup"))
        .unwrap_or_else(|| panic!("no line names the configuration: {err}"));
    assert!(line.contains("objects.yaml: document 5"), "{line}");
    assert!(
        line.contains(r#""spec.retentionPolicy.keepLst""#)
            && line.contains(r#""spec.runtimeSettings.pod.securityContext.runAsUsr""#),
        "{line}"
    );
    assert!(
        !err.contains("AppBinding"),
        "parameters are free-form: {err}"
    );
    // `--validate` alone and `--validate=true` are strict too, as in kubectl.
    for flag in ["--validate", "--validate=true", "--validate=strict"] {
        let out = stash(&["render", flag, "-f", &file]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validate_warn_reports_and_renders_and_ignore_is_silent() {
    let dir = temp_dir("warn");
    let file = typo_fixture(&dir);
    let out = stash(&[
        "render",
        "--validate=warn",
        "-f",
        &file,
        "--now",
        "2026-11-27T15:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("spec.retentionPolicy.keepLst"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: CronJob"));
    for mode in ["--validate=ignore", "--validate=false"] {
        let out = stash(&["render", mode, "-f", &file]);
        assert_eq!(out.status.code(), Some(0), "{mode}");
        assert!(
            out.stderr.is_empty(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = stash(&["render", "--validate=loose", "-f", &file]);
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown mode");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_types_are_named_in_yaml_terms() {
    let dir = temp_dir("types");
    let file = dir.join("bc.yaml");
    std::fs::write(
        &file,
        "apiVersion: stash.appscode.com/v1beta1\nkind: BackupConfiguration\nmetadata: {name: x, namespace: demo}\nspec:\n  schedule: '*/5 * * * *'\n  backupHistoryLimit: 3000000000\n  retentionPolicy: {name: k, keepLast: five}\n  paused: [true]\n",
    )
    .expect("write");
    let out = stash(&[
        "render",
        "--validate=ignore",
        "-f",
        &file.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bc.yaml: document 1",
        "spec.backupHistoryLimit: expected an integer from -2147483648 to 2147483647",
        "spec.paused: expected a boolean (true or false), got a sequence",
        "spec.retentionPolicy.keepLast: expected an integer, got a string (\"five\")",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    for rust in ["i32", "i64", "u32", "struct "] {
        assert!(!err.contains(rust), "Rust type {rust:?} in {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_input_is_an_error_that_says_so() {
    let dir = temp_dir("empty");
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "# nothing yet\n---\n").expect("write");
    let out = stash(&["render", "-f", &empty.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("empty.yaml") && err.contains("no objects"),
        "{err}"
    );

    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).expect("dir");
    std::fs::write(folder.join("notes.txt"), "not yaml").expect("write");
    let out = stash(&["render", "-f", &folder.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no *.yaml or *.yml files"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `stash ARGS | head -1`: reads at most one line, then closes the pipe.
fn stash_into_closed_pipe(args: &[&str], read_first_line: bool) -> std::process::Output {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stash runs");
    let stdout = child.stdout.take().expect("stdout");
    if read_first_line {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        assert!(!line.is_empty());
    } else {
        drop(stdout);
    }
    child.wait_with_output().expect("stash finishes")
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // The CRDs are far larger than a pipe's buffer: the writer meets the closed pipe.
    let out = stash_into_closed_pipe(&["crds"], true);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = stash_into_closed_pipe(&["render", "-f", &fixture("bc-s3")], false);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
