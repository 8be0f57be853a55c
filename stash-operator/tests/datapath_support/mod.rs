//! Shared by the data-path tests: a database target for a testkit server, and a dump taken
//! straight from it (the reference the restores are compared with).
#![allow(dead_code)]

use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_testkit::providers::MysqlServer;
use std::process::Command;

/// `server` as the jobs see a database: host, port and credentials, no TLS.
pub fn target(server: &MysqlServer) -> DbTarget {
    DbTarget {
        host: server.host().to_owned(),
        port: server.port(),
        user: server.user().to_owned(),
        password: server.password().to_owned(),
        ssl_ca: None,
    }
}

/// `mysqldump <args>` of `server`, which must succeed.
pub fn direct_dump(server: &MysqlServer, args: &str) -> Vec<u8> {
    let out = Command::new("mysqldump")
        .args(target(server).connection_args())
        .args(split_args(args))
        .env("MYSQL_PWD", server.password())
        .output()
        .expect("mysqldump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
