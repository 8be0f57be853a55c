//! `wipe-out-repository`'s data path against real servers: the embedded S3 server and the REST
//! server provider, with repositories made by the stock restic CLI, which must then find no
//! repository where the wiped one was (and, on S3, its neighbour intact).

use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::wipe_out::wipe_out;
use stash_testkit::providers::rest::RestServer;
use stash_testkit::providers::s3::S3Server;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const PASSWORD: &str = "wipe-out-password";

fn config(provider: Provider, bucket: &str, endpoint: &str, prefix: &str) -> BackendConfig {
    BackendConfig {
        provider,
        bucket: bucket.into(),
        endpoint: endpoint.into(),
        region: String::new(),
        prefix: prefix.into(),
        insecure_tls: false,
        max_connections: 0,
    }
}

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
        .chain([("RESTIC_PASSWORD".to_string(), PASSWORD.as_bytes().to_vec())])
        .collect()
}

/// Stock restic on the repository these settings describe.
fn restic(config: &BackendConfig, secret: &BTreeMap<String, Vec<u8>>, args: &[&str]) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = engine_env(config, secret, dir.path()).expect("engine env");
    let out = Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .envs(&env.env)
        .stdin(Stdio::null())
        .output()
        .expect("restic runs");
    if !out.status.success() {
        eprintln!("restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn init_with_a_snapshot(config: &BackendConfig, secret: &BTreeMap<String, Vec<u8>>) {
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), b"data").expect("write");
    assert!(restic(config, secret, &["init"]));
    assert!(restic(
        config,
        secret,
        &["backup", file.path().to_str().expect("utf-8")]
    ));
}

#[tokio::test]
async fn s3_prefix_is_wiped_and_its_neighbours_stay() {
    let s3 = S3Server::start().expect("S3");
    s3.create_bucket("bkt").expect("bucket");
    let creds = secret(&[
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ]);
    let doomed = config(Provider::S3, "bkt", &s3.endpoint(), "/team/mysql");
    let neighbour = config(Provider::S3, "bkt", &s3.endpoint(), "/team/mysql-old");
    init_with_a_snapshot(&doomed, &creds);
    init_with_a_snapshot(&neighbour, &creds);
    // More files than one listing page holds, and a file that is not restic's.
    let extra = s3.root().join("bkt/team/mysql/data/ff");
    std::fs::create_dir_all(&extra).expect("mkdir");
    for i in 0..1100 {
        std::fs::write(extra.join(format!("ff{i:062}")), b"x").expect("write");
    }
    std::fs::write(s3.root().join("bkt/team/mysql/README"), b"keep").expect("write");

    let removed = wipe_out(&doomed, &creds).await.expect("wipe out");
    assert!(removed > 1100, "{removed}");
    assert!(!restic(&doomed, &creds, &["snapshots"]));
    assert!(restic(&neighbour, &creds, &["snapshots"]));
    assert!(s3.root().join("bkt/team/mysql/README").exists());
    assert_eq!(wipe_out(&doomed, &creds).await.expect("again"), 0);

    let wrong = secret(&[
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-key"),
    ]);
    let e = wipe_out(&neighbour, &wrong)
        .await
        .expect_err("bad signature");
    assert!(!e.to_string().contains("not-the-key"), "{e}");
    assert!(restic(&neighbour, &creds, &["snapshots"]));
}

#[tokio::test]
async fn rest_repository_is_wiped() {
    let rest = RestServer::start().expect("REST server");
    let creds = secret(&[
        ("REST_SERVER_USERNAME", rest.username()),
        ("REST_SERVER_PASSWORD", rest.password()),
    ]);
    // The provider serves one repository at its root.
    let doomed = config(Provider::Rest, "", &rest.url(), "");
    init_with_a_snapshot(&doomed, &creds);
    let removed = wipe_out(&doomed, &creds).await.expect("wipe out");
    assert!(removed >= 4, "{removed}");
    assert!(!restic(&doomed, &creds, &["snapshots"]));
}
