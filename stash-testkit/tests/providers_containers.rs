//! The container providers (feature `containers`): MariaDB, MySQL and MinIO in Docker answer
//! through the same traits as the process providers. Without a reachable Docker engine the
//! test says it skipped and passes: CI machines here have the `docker` CLI but no engine.
#![cfg(feature = "containers")]

use stash_testkit::providers::containers::{docker_available, MinioContainer, MysqlContainer};
use stash_testkit::providers::{MysqlProvider, S3Provider};
use std::process::{Command, Stdio};

/// `SELECT VERSION()` through the `mariadb` client over TCP, as the backup Jobs connect.
fn server_version(db: &impl MysqlProvider) -> String {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--protocol=TCP",
        ])
        .arg(format!("--host={}", db.host()))
        .arg(format!("--port={}", db.port()))
        .arg(format!("--user={}", db.user()))
        // The password goes through the environment, never the arguments.
        .env("MYSQL_PWD", db.password())
        .args(["-e", "SELECT VERSION()"])
        .stdin(Stdio::null())
        .output()
        .expect("mariadb client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The bucket `stash` exists: an unsigned request for it is refused for want of credentials
/// (403), not because the bucket is missing (404).
fn bucket_exists(s3: &impl S3Provider) -> bool {
    let endpoint = s3.endpoint();
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("S3 endpoint accepts");
    use std::io::{Read, Write};
    write!(
        stream,
        "HEAD /stash HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 403")
}

#[test]
fn containers_serve_like_the_process_providers() {
    if !docker_available() {
        println!(
            "SKIPPED containers_serve_like_the_process_providers: no Docker engine reachable \
             (DOCKER_HOST or /var/run/docker.sock)"
        );
        return;
    }
    let mariadb = MysqlContainer::start_mariadb().expect("mariadb container");
    assert!(server_version(&mariadb).contains("MariaDB"));
    let mysql = MysqlContainer::start_mysql().expect("mysql container");
    assert!(server_version(&mysql).starts_with("8."));
    let minio = MinioContainer::start().expect("minio container");
    assert!(
        bucket_exists(&minio),
        "bucket stash missing on {}",
        minio.endpoint()
    );
}
