//! TLS to the database: the AppBinding's CA bundle reaches both `mysqldump` (`--ssl-ca`) and
//! the protocol loader (certificate verified), against a MariaDB that requires TLS for the user.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use stash_operator::commands::backup_mysql::{run_backup, BackupOptions};
use stash_operator::commands::restore_mysql::{run_restore, RestoreError, RestoreOptions};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::loader::{load_with_protocol, LoadError, LoaderKind};
use stash_operator::datapath::mysql_client::{split_args, DbTarget};
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::datapath::RepositoryEngine;
use stash_testkit::providers::MysqlServer;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &Path, ca_name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca_name}"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

fn tls_server(certs: &Path) -> MysqlServer {
    let ca = format!("--ssl-ca={}", certs.join("ca.pem").display());
    let cert = format!("--ssl-cert={}", certs.join("server.pem").display());
    let key = format!("--ssl-key={}", certs.join("server.key").display());
    let server = MysqlServer::start_with_args(&[&ca, &cert, &key]).expect("tls server");
    server
        .execute("ALTER USER 'stash'@'%' REQUIRE SSL; ALTER USER 'stash'@'localhost' REQUIRE SSL;")
        .expect("require ssl");
    server
}

fn target(server: &MysqlServer, ca: Option<&Path>) -> DbTarget {
    DbTarget {
        host: server.host().to_owned(),
        port: server.port(),
        user: server.user().to_owned(),
        password: server.password().to_owned(),
        ssl_ca: ca.map(Path::to_path_buf),
    }
}

#[test]
fn ca_bundle_is_used_for_dump_and_verified_restore() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    let other = work.path().join("other");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&certs, "test-ca");
    make_certs(&other, "unrelated-ca");
    let ca = certs.join("ca.pem");

    let source = tls_server(&certs);
    source
        .execute("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT); INSERT INTO shop.t VALUES (1, 'tls'), (2, 'ok');")
        .unwrap();
    let secret = [("RESTIC_PASSWORD".to_owned(), b"pw".to_vec())]
        .into_iter()
        .collect();
    let config = BackendConfig {
        provider: Provider::Local,
        bucket: work.path().join("repo").display().to_string(),
        endpoint: String::new(),
        region: String::new(),
        prefix: String::new(),
        insecure_tls: false,
        max_connections: 0,
    };
    let engine = ResticCli::new(
        "restic",
        engine_env(&config, &secret, work.path()).unwrap(),
        CacheMode::Disabled,
    );
    let options = BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: split_args("--databases shop"),
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    };
    // The user requires TLS; with a CA that did not sign the server's certificate the client
    // refuses the server, so the CA really is what the connection is verified with.
    let wrong_ca = other.join("ca.pem");
    assert!(run_backup(&engine, &target(&source, Some(&wrong_ca)), &options).is_err());
    assert!(engine.snapshots(None).unwrap_or_default().is_empty());
    run_backup(&engine, &target(&source, Some(&ca)), &options).expect("backup over TLS");

    let restore = RestoreOptions {
        mysql_program: "mysql".into(),
        mysql_args: Vec::new(),
        snapshot: "latest".into(),
        host: Some("host-0".into()),
        loader: LoaderKind::Protocol,
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    };
    let fresh = tls_server(&certs);
    // The same for the restore: the readiness check (client) and the protocol loader (rustls)
    // both refuse a server whose certificate the CA did not sign.
    let wrong = run_restore(&engine, &target(&fresh, Some(&wrong_ca)), &restore)
        .expect_err("unverifiable server");
    assert!(matches!(wrong, RestoreError::NotReady(_)), "{wrong}");
    let dump = engine
        .dump("latest", Some("host-0"), "dumpfile.sql")
        .unwrap();
    let wrong = load_with_protocol(dump, &target(&fresh, Some(&wrong_ca)))
        .expect_err("unverifiable server");
    assert!(matches!(wrong, LoadError::Connect { .. }), "{wrong}");
    assert_eq!(fresh.checksums().unwrap(), Vec::new(), "nothing was loaded");
    run_restore(&engine, &target(&fresh, Some(&ca)), &restore).expect("restore over TLS");
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());
}
