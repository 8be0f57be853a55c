//! `stash-testkit mysql|s3|rest` from the command line: one JSON line of connection parameters,
//! then a clean stop at end of input.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(subcommand: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash-testkit"))
        .arg(subcommand)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stash-testkit runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"quit\n")
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "{subcommand}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    serde_json::from_str(&first).expect("a JSON line")
}

#[test]
fn s3_and_rest_print_their_endpoints() {
    assert!(run("s3")["endpoint"]
        .as_str()
        .is_some_and(|e| e.starts_with("http://127.0.0.1:")));
    assert!(run("rest")["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://")));
}

#[test]
fn mysql_prints_connection_parameters() {
    let params = run("mysql");
    assert!(params["port"].as_u64().is_some_and(|p| p > 0));
    assert!(params["password"].as_str().is_some_and(|p| !p.is_empty()));
}
