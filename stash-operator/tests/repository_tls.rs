//! The in-process engine over real TLS to the repository: a CA and a server certificate for
//! 127.0.0.1 made here, a TLS-terminating proxy (rustls) in front of the testkit's S3 and REST
//! servers, and the storage Secret's `CA_CERT_DATA` / the Repository's insecure TLS as the jobs
//! pass them (`engine_env`). With the CA the engine backs up and restores and stock restic
//! (`--cacert`) reads the snapshot back byte for byte; without it, or with an unrelated CA, the
//! engine refuses the server and writes nothing; insecure TLS needs no CA.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use stash_operator::datapath::backend::{engine_env, BackendConfig, EngineEnv, Provider};
use stash_operator::datapath::in_process::InProcess;
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::datapath::wipe_out::wipe_out;
use stash_operator::datapath::RepositoryEngine;
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;
use stash_testkit::providers::rest::RestServer;
use stash_testkit::providers::s3::S3Server;
use tokio_rustls::rustls;

const PASSWORD: &str = "tls-repository-password";

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn make_pki(ca_name: &str) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let server = params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![server.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    }
}

/// TLS on `addr`, plain TCP to `upstream`: each connection is a task that completes the
/// handshake and copies bytes both ways.
struct TlsProxy {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    fn start(upstream: SocketAddr, pki: &Pki) -> TlsProxy {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let done = Arc::clone(&handshakes);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to copy.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                    }
                });
            }
        });
        TlsProxy {
            addr,
            handshakes,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn s3_config(endpoint: &str, insecure_tls: bool) -> BackendConfig {
    BackendConfig {
        provider: Provider::S3,
        bucket: "stash".into(),
        endpoint: endpoint.into(),
        region: "us-east-1".into(),
        prefix: "tls".into(),
        insecure_tls,
        max_connections: 0,
    }
}

fn s3_secret(s3: &S3Server, ca_pem: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mut secret = BTreeMap::from([
        ("RESTIC_PASSWORD".to_owned(), PASSWORD.as_bytes().to_vec()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            s3.access_key().as_bytes().to_vec(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            s3.secret_key().as_bytes().to_vec(),
        ),
    ]);
    if let Some(pem) = ca_pem {
        secret.insert("CA_CERT_DATA".to_owned(), pem.as_bytes().to_vec());
    }
    secret
}

/// A dump-like stream: SQL text and incompressible bytes, a few hundred KiB.
fn dump_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..2_000 {
        out.extend_from_slice(format!("INSERT INTO t VALUES ({i}, 'row {i}');\n").as_bytes());
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(256 * 1024 / 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend_from_slice(b"-- Dump completed\n");
    out
}

fn in_process(env: &EngineEnv) -> Box<dyn RepositoryEngine> {
    let cli = ResticCli::new("restic", env.clone(), CacheMode::Disabled);
    select_engine(EngineKind::InProcess, env, cli).expect("in-process engine")
}

fn backup_and_restore(engine: &dyn RepositoryEngine, data: &[u8]) -> String {
    assert!(engine.init_if_missing().expect("init over TLS"));
    let summary = engine
        .backup_stream(&mut &data[..], "host-0", "dumpfile.sql")
        .expect("backup over TLS");
    let mut back = Vec::new();
    engine
        .dump(&summary.snapshot_id, Some("host-0"), "dumpfile.sql")
        .expect("restore over TLS")
        .read_to_end(&mut back)
        .expect("read the restore");
    assert!(back == data, "restored bytes differ");
    summary.snapshot_id
}

/// Stock restic with the engine's environment and flags (`--cacert`, `--insecure-tls`).
fn restic(env: &EngineEnv, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .args(&env.flags)
        .arg("--no-cache")
        .args(args)
        .envs(&env.env)
        .stdin(Stdio::null())
        .output()
        .expect("restic runs");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("entry").path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

#[test]
fn the_secrets_ca_carries_backup_restore_and_wipe_out_and_restic_reads_the_snapshot() {
    let pki = make_pki("repository-ca");
    let s3 = S3Server::start().expect("s3 server");
    let proxy = TlsProxy::start(s3.addr(), &pki);
    let scratch = tempfile::tempdir().unwrap();
    let config = s3_config(&proxy.endpoint(), false);
    let secret = s3_secret(&s3, Some(&pki.ca_pem));
    let env = engine_env(&config, &secret, scratch.path()).expect("engine env");
    assert!(env.flags.iter().any(|f| f == "--cacert"), "{env:?}");
    // `--engine=auto` (the default) now keeps such a repository in process.
    assert!(InProcess::supports(&env));

    let data = dump_bytes();
    let snapshot = backup_and_restore(in_process(&env).as_ref(), &data);
    assert!(proxy.handshakes() > 0, "the engine went through the proxy");
    assert!(files_under(&s3.root().join("stash/tls")) > 0);

    let listed = restic(&env, &["snapshots", "--json"]);
    assert!(String::from_utf8_lossy(&listed).contains(&snapshot));
    let dumped = restic(&env, &["dump", &snapshot, "/dumpfile.sql"]);
    assert!(dumped == data, "restic's dump differs from the stream");

    // The wipe-out Job opens the repository the same way, CA included.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let removed = runtime
        .block_on(wipe_out(&config, &secret))
        .expect("wipe out over TLS");
    assert!(removed > 0);
    assert_eq!(files_under(&s3.root().join("stash/tls")), 0);
}

#[test]
fn without_the_ca_or_with_another_the_engine_refuses_the_server_and_writes_nothing() {
    let pki = make_pki("repository-ca");
    let unrelated = make_pki("unrelated-ca");
    let s3 = S3Server::start().expect("s3 server");
    let proxy = TlsProxy::start(s3.addr(), &pki);
    let scratch = tempfile::tempdir().unwrap();
    let config = s3_config(&proxy.endpoint(), false);
    for ca in [None, Some(unrelated.ca_pem.as_str())] {
        let env = engine_env(&config, &s3_secret(&s3, ca), scratch.path()).expect("engine env");
        let engine = in_process(&env);
        let err = engine
            .init_if_missing()
            .expect_err("an unverifiable server is refused")
            .to_string();
        assert!(
            err.contains("UnknownIssuer") && err.contains("certificate"),
            "CA {}: {err}",
            ca.is_some()
        );
        let data = dump_bytes();
        assert!(engine
            .backup_stream(&mut &data[..], "host-0", "dumpfile.sql")
            .is_err());
    }
    assert_eq!(proxy.handshakes(), 0, "no handshake completed");
    assert_eq!(files_under(&s3.root().join("stash")), 0, "nothing written");
}

#[test]
fn insecure_tls_needs_no_ca_on_s3_and_rest() {
    let pki = make_pki("self-signed-somewhere");
    let data = dump_bytes();

    let s3 = S3Server::start().expect("s3 server");
    let s3_proxy = TlsProxy::start(s3.addr(), &pki);
    let scratch = tempfile::tempdir().unwrap();
    let config = s3_config(&s3_proxy.endpoint(), true);
    let env = engine_env(&config, &s3_secret(&s3, None), scratch.path()).expect("engine env");
    assert!(InProcess::supports(&env));
    backup_and_restore(in_process(&env).as_ref(), &data);
    assert!(s3_proxy.handshakes() > 0);

    let rest = RestServer::start().expect("rest server");
    let rest_addr: SocketAddr = rest
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("rest address");
    let rest_proxy = TlsProxy::start(rest_addr, &pki);
    let config = BackendConfig {
        provider: Provider::Rest,
        bucket: String::new(),
        endpoint: format!("{}/", rest_proxy.endpoint()),
        region: String::new(),
        prefix: String::new(),
        insecure_tls: true,
        max_connections: 0,
    };
    let secret = BTreeMap::from([
        ("RESTIC_PASSWORD".to_owned(), PASSWORD.as_bytes().to_vec()),
        (
            "REST_SERVER_USERNAME".to_owned(),
            rest.username().as_bytes().to_vec(),
        ),
        (
            "REST_SERVER_PASSWORD".to_owned(),
            rest.password().as_bytes().to_vec(),
        ),
    ]);
    let env = engine_env(&config, &secret, scratch.path()).expect("engine env");
    let snapshot = backup_and_restore(in_process(&env).as_ref(), &data);
    assert!(rest_proxy.handshakes() > 0);
    // Stock restic agrees, with its own --insecure-tls.
    let dumped = restic(&env, &["dump", &snapshot, "/dumpfile.sql"]);
    assert!(dumped == data, "restic's dump differs from the stream");
}

#[test]
fn a_ca_that_is_not_pem_is_an_error_naming_ca_cert_data() {
    let scratch = tempfile::tempdir().unwrap();
    let config = s3_config("https://127.0.0.1:9", false);
    let mut secret = BTreeMap::from([
        ("RESTIC_PASSWORD".to_owned(), PASSWORD.as_bytes().to_vec()),
        ("CA_CERT_DATA".to_owned(), b"not a certificate".to_vec()),
    ]);
    let env = engine_env(&config, &secret, scratch.path()).expect("engine env");
    let cli = ResticCli::new("restic", env.clone(), CacheMode::Disabled);
    let err = InProcess::new(&env, cli).expect_err("bad CA").to_string();
    assert!(err.contains("CA_CERT_DATA"), "{err}");
    // `--engine=auto` picks the in-process engine, which reports the same.
    let cli = ResticCli::new("restic", env.clone(), CacheMode::Disabled);
    let err = select_engine(EngineKind::Auto, &env, cli)
        .err()
        .expect("bad CA")
        .to_string();
    assert!(err.contains("CA_CERT_DATA"), "{err}");
    // A PEM bundle without a certificate in it is refused the same way.
    secret.insert(
        "CA_CERT_DATA".to_owned(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
    );
    let env = engine_env(&config, &secret, scratch.path()).expect("engine env");
    let cli = ResticCli::new("restic", env.clone(), CacheMode::Disabled);
    let err = InProcess::new(&env, cli).expect_err("bad CA").to_string();
    assert!(err.contains("CA_CERT_DATA"), "{err}");
}
