//! The private MariaDB provider starts, accepts its password user over TCP, and cleans up.

use stash_testkit::providers::MysqlServer;
use std::process::{Command, Stdio};

#[test]
fn server_accepts_the_test_user_over_tcp_and_is_removed_on_drop() {
    let server = MysqlServer::start().expect("start mariadbd");
    let data_dir = server.data_dir();
    assert!(data_dir.exists());

    // The test user needs its password: without it the login fails, with it (env only) it works.
    let login = |password: Option<&str>| {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg("-h")
            .arg(server.host())
            .arg(format!("--port={}", server.port()))
            .arg("-u")
            .arg(server.user())
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("-e")
            .arg("SELECT CURRENT_USER()")
            .stdin(Stdio::null())
            .env_remove("MYSQL_PWD");
        if let Some(p) = password {
            cmd.env("MYSQL_PWD", p);
        }
        cmd.output().expect("run mariadb")
    };
    assert!(!login(None).status.success());
    let ok = login(Some(server.password()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "stash@%");

    server
        .execute("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT); INSERT INTO shop.t VALUES (1, 'a'), (2, 'b');")
        .expect("create table");
    let sums = server.checksums().expect("checksums");
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].0, "shop.t");
    assert_ne!(sums[0].1, "0");
    assert!(server.execute("SELECT * FROM nope.nope").is_err());

    drop(server);
    assert!(!data_dir.exists());
}

#[test]
fn two_servers_run_side_by_side_on_different_ports() {
    let a = MysqlServer::start().expect("start a");
    let b = MysqlServer::start().expect("start b");
    assert_ne!(a.port(), b.port());
    a.execute("CREATE DATABASE only_a").expect("create");
    assert!(b.execute("USE only_a").is_err());
}

#[test]
fn cli_entry_point_prints_parameters_and_cleans_up_on_quit() {
    let mut out = Vec::new();
    stash_testkit::providers::mysql::run_cli(&b"quit\n"[..], &mut out).expect("mysql cli");
    let params: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    assert_eq!(params["host"], "127.0.0.1");
    assert!(params["port"].as_u64().is_some_and(|p| p > 0));
    assert_eq!(params["user"], "stash");
    let socket = params["socket"].as_str().unwrap();
    assert!(!std::path::Path::new(socket).exists(), "removed after quit");
}
