//! The embedded S3 server works for restic (signed requests, recursive listing, ranged reads)
//! and refuses clients without its keys.

use stash_testkit::providers::S3Server;
use std::process::{Command, Stdio};

fn restic(s3: &S3Server, secret_key: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_PASSWORD", "pw")
        .env(
            "RESTIC_REPOSITORY",
            s3.restic_repository("stash", "/team/db"),
        )
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .stdin(Stdio::null())
        .output()
        .expect("run restic")
}

#[test]
fn restic_round_trip_through_the_embedded_server() {
    let s3 = S3Server::start().expect("start s3");
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    let key = s3.secret_key().to_owned();
    let init = restic(&s3, &key, &["init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(s3.root().join("stash/team/db/config").exists());

    let data = s3.root().join("input.bin");
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&data, &bytes).unwrap();
    let backup = restic(&s3, &key, &["backup", data.to_str().unwrap()]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );

    let packs = restic(&s3, &key, &["list", "packs"]);
    assert!(packs.status.success());
    assert!(
        !packs.stdout.is_empty(),
        "recursive listing finds the packs"
    );
    let check = restic(&s3, &key, &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dumped = restic(&s3, &key, &["dump", "latest", data.to_str().unwrap()]);
    assert!(dumped.status.success());
    assert!(dumped.stdout == bytes);

    let wrong = restic(&s3, "not-the-key", &["snapshots"]);
    assert!(
        !wrong.status.success(),
        "unsigned or badly signed requests are refused"
    );

    let root = s3.root().to_path_buf();
    drop(s3);
    assert!(!root.exists());
}

#[test]
fn bucket_names_are_checked() {
    let s3 = S3Server::start().expect("start s3");
    assert!(s3.create_bucket("other").is_ok());
    assert!(s3.root().join("other").is_dir());
    assert!(s3.create_bucket("../escape").is_err());
    assert!(s3.create_bucket("").is_err());
}

#[test]
fn cli_entry_points_print_parameters_and_stop_on_quit() {
    let mut out = Vec::new();
    stash_testkit::providers::s3::run_cli(&b"quit\n"[..], &mut out).expect("s3 cli");
    let params: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    let root = params["root"].as_str().unwrap().to_owned();
    assert!(params["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert!(!std::path::Path::new(&root).exists(), "removed after quit");

    let mut out = Vec::new();
    stash_testkit::providers::rest::run_cli(&b""[..], &mut out).expect("rest cli");
    let params: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    assert!(!params["password"].as_str().unwrap().is_empty());
    assert!(!std::path::Path::new(params["root"].as_str().unwrap()).exists());
}
