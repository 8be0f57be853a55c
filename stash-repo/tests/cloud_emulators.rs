//! The Azure and GCS backends against real implementations of those APIs: Azurite (Microsoft's
//! Azure Storage emulator) and gcp-storage-emulator, both installed by `scripts/setup.sh` under
//! `$STASH_EMULATORS` (default `~/.cache/stash-rs/emulators`; see stash-testkit's
//! `providers::emulators`). Each test backs up, reads back,
//! checks, forgets; then it copies the bucket's objects, by their whole names, into a local
//! directory and has the stock `restic` run `check --read-data` and `dump` there, which proves
//! the objects sit where restic's own backend would put them. (restic 0.14 can reach neither
//! emulator itself: its azure backend has no endpoint setting and its gs backend none either.)

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use stash_repo::azure::{AzureBackend, AzureCredentials};
use stash_repo::gcs::{GcsAuth, GcsBackend};
use stash_repo::{backup_stream, open_file, Backend, BackupOptions, Repository};
use stash_testkit::providers::emulators::{Emulator, AZURITE_ACCOUNT, AZURITE_KEY};

const PASSWORD: &str = "cloud-pw";

/// Dump-like text: repetitive enough to compress, varied enough to chunk.
fn dump_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut x = seed | 1;
    let mut row = 0u64;
    out.extend_from_slice(b"-- MariaDB dump\nINSERT INTO `t` VALUES ");
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        row += 1;
        out.extend_from_slice(
            format!("({row},{},'name-{:x}',{}),", x % 1000, x, x >> 40).as_bytes(),
        );
    }
    out.extend_from_slice(b"(0,0,'',0);\n-- Dump completed\n");
    out
}

fn read_back(repo: &Repository, snapshot: &str) -> Vec<u8> {
    let mut reader = open_file(repo, snapshot, None, "/dumpfile.sql").unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    out
}

fn restic(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .env("RESTIC_REPOSITORY", dir)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_PASSWORD_FILE")
        .arg("--no-cache")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Backs up through `backend`, reads back, checks, forgets one snapshot; returns the data of
/// the snapshot that stays.
fn exercise(backend: Arc<dyn Backend>) -> Vec<u8> {
    let repo = Repository::init(Arc::clone(&backend), PASSWORD.as_bytes()).unwrap();
    let options = BackupOptions {
        hostname: "host-0".to_owned(),
        ..BackupOptions::default()
    };
    let first_data = dump_bytes(1_500_000, 3);
    let first = backup_stream(&repo, &mut &first_data[..], &options).unwrap();
    // Longer than the largest chunk (8 MiB), so at least two blobs whatever the repository's
    // random polynomial: at 6 MB, one in about 200 repositories found no cut (seen once).
    let data = dump_bytes(9_000_000, 5);
    let second = backup_stream(&repo, &mut &data[..], &options).unwrap();
    assert!(second.blobs_total >= 2, "{second:?}");

    let repo = Repository::open(Arc::clone(&backend), PASSWORD.as_bytes()).unwrap();
    assert!(read_back(&repo, &second.snapshot_id.to_hex()) == data);
    assert!(read_back(&repo, &first.snapshot_id.to_hex()) == first_data);
    assert!(stash_repo::check::check(&repo, true).unwrap().is_empty());
    assert!(Repository::open(Arc::clone(&backend), b"wrong").is_err());

    stash_repo::forget(&repo, &[first.snapshot_id]).unwrap();
    let left: Vec<String> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_hex())
        .collect();
    assert_eq!(left, vec![second.snapshot_id.to_hex()]);
    // No lock is left behind.
    assert!(backend.list(stash_repo::FileKind::Lock).unwrap().is_empty());
    data
}

/// Writes every object under `prefix` into `dir` at its name without the prefix, then lets
/// restic check and dump the copy.
fn restic_reads_the_copy(objects: Vec<(String, Vec<u8>)>, prefix: &str, data: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    assert!(objects
        .iter()
        .any(|(name, _)| name == &format!("{prefix}config")));
    for (name, bytes) in objects {
        let rel = name
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("object {name} outside {prefix}"));
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    restic(&dir, &["check", "--read-data"]);
    let snapshots: serde_json::Value =
        serde_json::from_slice(&restic(&dir, &["snapshots", "--json"])).unwrap();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1));
    assert_eq!(snapshots[0]["hostname"], "host-0");
    assert!(restic(&dir, &["dump", "latest", "/dumpfile.sql"]) == data);
}

#[test]
fn azure_backend_against_azurite_is_read_by_restic() {
    let Some(server) = Emulator::azurite() else {
        return;
    };
    let endpoint = server.azure_blob_endpoint();
    let creds = AzureCredentials {
        account: AZURITE_ACCOUNT.to_owned(),
        key: AZURITE_KEY.to_owned(),
    };
    // Stash passes `azure:<container>:/<prefix>` with the prefix verbatim: `/stash/mysql`.
    let backend =
        Arc::new(AzureBackend::new(Some(&endpoint), &creds, "backups", "//stash/mysql").unwrap());
    let data = exercise(backend.clone());

    let objects: Vec<(String, Vec<u8>)> = backend
        .list_objects("")
        .unwrap()
        .into_iter()
        .map(|(name, _)| {
            let bytes = backend.read_object(&name).unwrap();
            (name, bytes)
        })
        .collect();
    restic_reads_the_copy(objects, "stash/mysql/", &data);

    // A wrong key is refused by the server, with the reason.
    let wrong = AzureCredentials {
        key: "d3Jvbmcta2V5".to_owned(),
        ..creds
    };
    let other = AzureBackend::new(Some(&endpoint), &wrong, "backups", "//stash/mysql").unwrap();
    let err = other
        .exists(stash_repo::FileKind::Config, "config")
        .unwrap_err()
        .to_string();
    assert!(err.contains("403"), "{err}");
}

#[test]
fn gcs_backend_against_the_emulator_is_read_by_restic() {
    let Some(server) = Emulator::gcs() else {
        return;
    };
    let endpoint = server.endpoint();
    // Without GOOGLE_PROJECT_ID a missing bucket cannot be created: the error says so.
    let no_project =
        GcsBackend::new(Some(&endpoint), "backups", "//p", None, GcsAuth::Anonymous).unwrap();
    let err = no_project.create().unwrap_err().to_string();
    assert!(err.contains("GOOGLE_PROJECT_ID"), "{err}");

    let backend = Arc::new(
        GcsBackend::new(
            Some(&endpoint),
            "backups",
            "//stash/mysql",
            Some("test-project".to_owned()),
            GcsAuth::Anonymous,
        )
        .unwrap(),
    );
    let data = exercise(backend.clone());
    let objects: Vec<(String, Vec<u8>)> = backend
        .list_objects("")
        .unwrap()
        .into_iter()
        .map(|(name, _)| {
            let bytes = backend.read_object(&name).unwrap();
            (name, bytes)
        })
        .collect();
    restic_reads_the_copy(objects, "stash/mysql/", &data);
}

// Swift and B2 have no emulator that runs here: small in-memory fakes of their documented
// HTTP APIs stand in, enough to prove the auth flows (including a token that expires), the
// request shapes and the layout. They never ran against the real services.

mod fake {
    use std::collections::{BTreeMap, HashMap};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// method, path (with query), lower-case headers, body.
    pub struct Request {
        pub method: String,
        pub path: String,
        pub query: BTreeMap<String, String>,
        pub headers: HashMap<String, String>,
        pub body: Vec<u8>,
    }

    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// The byte range a `Range: bytes=a-b` header asks for.
    pub fn ranged(data: &[u8], range: Option<&String>) -> Response {
        let Some(range) = range else {
            return respond(200, data.to_vec());
        };
        let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
        let a: usize = a.parse().unwrap();
        let b: usize = b.parse::<usize>().unwrap().min(data.len() - 1);
        respond(206, data[a..=b].to_vec())
    }

    /// Serves `handler` on a free port; returns the base URL.
    pub fn serve<S: Send + 'static>(
        state: Arc<Mutex<S>>,
        handler: fn(&mut S, &str, Request) -> Response,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let base2 = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                let len: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let query = query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (decode(k), decode(v))
                    })
                    .collect();
                let request = Request {
                    method: method.clone(),
                    path: path.to_owned(),
                    query,
                    headers,
                    body,
                };
                let response = handler(&mut state.lock().unwrap(), &base2, request);
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    response.status,
                    response.body.len()
                );
                for (k, v) in &response.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = stream.write_all(out.as_bytes());
                if method != "HEAD" {
                    let _ = stream.write_all(&response.body);
                }
            }
        });
        base
    }
}

/// Swift: v1 auth; the token is replaced every 40 requests, so the client must authenticate
/// again when refused.
#[derive(Default)]
struct SwiftFake {
    token: String,
    uses: u32,
    auths: u32,
    containers: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn swift_fake(s: &mut SwiftFake, base: &str, r: fake::Request) -> fake::Response {
    use fake::respond;
    if r.path == "/auth/v1.0" {
        if r.headers.get("x-auth-user").map(String::as_str) != Some("tester")
            || r.headers.get("x-auth-key").map(String::as_str) != Some("testing")
        {
            return respond(401, "");
        }
        s.auths += 1;
        s.token = format!("tok{}", s.auths);
        s.uses = 0;
        let mut resp = respond(200, "");
        resp.headers = vec![
            ("X-Storage-Url".into(), format!("{base}/v1/AUTH_test")),
            ("X-Auth-Token".into(), s.token.clone()),
        ];
        return resp;
    }
    s.uses += 1;
    if s.token.is_empty() || r.headers.get("x-auth-token") != Some(&s.token) || s.uses > 40 {
        return respond(401, "");
    }
    let Some(rest) = r.path.strip_prefix("/v1/AUTH_test/") else {
        return respond(404, "");
    };
    let (container, object) = rest.split_once('/').unwrap_or((rest, ""));
    let object = fake::decode(object);
    match (r.method.as_str(), object.is_empty()) {
        ("HEAD", true) if s.containers.contains_key(container) => respond(204, ""),
        ("PUT", true) => {
            s.containers.entry(container.to_owned()).or_default();
            respond(201, "")
        }
        ("GET", true) => {
            let Some(objects) = s.containers.get(container) else {
                return respond(404, "");
            };
            let prefix = r.query.get("prefix").cloned().unwrap_or_default();
            let marker = r.query.get("marker").cloned().unwrap_or_default();
            // A small page size, so the client must follow markers.
            let page: Vec<serde_json::Value> = objects
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix) && **n > marker)
                .take(7)
                .map(|(n, d)| serde_json::json!({"name": n, "bytes": d.len()}))
                .collect();
            respond(200, serde_json::to_vec(&page).unwrap())
        }
        (method, false) => {
            let Some(objects) = s.containers.get_mut(container) else {
                return respond(404, "");
            };
            match method {
                "PUT" => {
                    objects.insert(object, r.body);
                    respond(201, "")
                }
                "GET" => match objects.get(&object) {
                    Some(d) => fake::ranged(d, r.headers.get("range")),
                    None => respond(404, ""),
                },
                "HEAD" => match objects.get(&object) {
                    Some(_) => respond(200, ""),
                    None => respond(404, ""),
                },
                "DELETE" => match objects.remove(&object) {
                    Some(_) => respond(204, ""),
                    None => respond(404, ""),
                },
                _ => respond(405, ""),
            }
        }
        _ => respond(404, ""),
    }
}

#[test]
fn swift_backend_against_a_fake_of_the_swift_api() {
    use stash_repo::swift::{SwiftBackend, SwiftConfig};
    let state = Arc::new(std::sync::Mutex::new(SwiftFake::default()));
    let base = fake::serve(Arc::clone(&state), swift_fake);
    let auth = format!("{base}/auth/v1.0");
    let vars = move |k: &str| match k {
        "ST_AUTH" => Some(auth.clone()),
        "ST_USER" => Some("tester".to_owned()),
        "ST_KEY" => Some("testing".to_owned()),
        _ => None,
    };
    // Stash's `swift:<container>:/<prefix>` with prefix `demo`: objects under `demo/`.
    let backend =
        Arc::new(SwiftBackend::new(SwiftConfig::from_env(&vars), "backups", "/demo").unwrap());
    let data = exercise(backend);
    let state = state.lock().unwrap();
    assert!(state.auths > 1, "the expired token was renewed");
    let objects = state.containers["backups"]
        .iter()
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    restic_reads_the_copy(objects, "demo/", &data);
}

/// B2's native API: one bucket, file versions, upload URLs; the account token expires after
/// 60 API calls.
#[derive(Default)]
struct B2Fake {
    token: String,
    calls: u32,
    auths: u32,
    bucket_id: Option<String>,
    next_id: u32,
    /// name -> versions (file id, content)
    files: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

const B2_KEY_ID: &str = "0012ab";
const B2_KEY: &str = "K001secret";

fn b2_fake(s: &mut B2Fake, base: &str, r: fake::Request) -> fake::Response {
    use base64::Engine as _;
    use fake::respond;
    let json = |v: serde_json::Value| respond(200, serde_json::to_vec(&v).unwrap());
    if r.path == "/b2api/v2/b2_authorize_account" {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{B2_KEY_ID}:{B2_KEY}"))
        );
        if r.headers.get("authorization") != Some(&expected) {
            return respond(401, r#"{"code":"unauthorized"}"#);
        }
        s.auths += 1;
        s.calls = 0;
        s.token = format!("acct-tok-{}", s.auths);
        return json(serde_json::json!({
            "accountId": "acct1",
            "authorizationToken": s.token,
            "apiUrl": base,
            "downloadUrl": base,
            "allowed": {"bucketId": null, "bucketName": null},
        }));
    }
    if let Some(bucket_id) = r.path.strip_prefix("/upload/") {
        if r.headers.get("authorization").map(String::as_str) != Some("upload-tok")
            || s.bucket_id.as_deref() != Some(bucket_id)
        {
            return respond(401, "");
        }
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &r.body);
        let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if r.headers.get("x-bz-content-sha1") != Some(&hex) {
            return respond(400, r#"{"code":"bad_request","message":"sha1 mismatch"}"#);
        }
        let name = fake::decode(&r.headers["x-bz-file-name"]);
        s.next_id += 1;
        let id = format!("f{}", s.next_id);
        s.files
            .entry(name.clone())
            .or_default()
            .push((id.clone(), r.body));
        return json(serde_json::json!({"fileId": id, "fileName": name}));
    }
    s.calls += 1;
    if r.headers.get("authorization") != Some(&s.token) || s.calls > 60 {
        return respond(401, r#"{"code":"expired_auth_token"}"#);
    }
    if let Some(rest) = r.path.strip_prefix("/file/") {
        let (bucket, name) = rest.split_once('/').unwrap();
        assert_eq!(bucket, "backups");
        return match s.files.get(&fake::decode(name)).and_then(|v| v.last()) {
            Some((_, d)) => fake::ranged(d, r.headers.get("range")),
            None => respond(404, ""),
        };
    }
    let args: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    match r.path.trim_start_matches("/b2api/v2/") {
        "b2_list_buckets" => {
            assert_eq!(args["accountId"], "acct1");
            let buckets: Vec<serde_json::Value> = s
                .bucket_id
                .iter()
                .map(|id| serde_json::json!({"bucketId": id, "bucketName": "backups"}))
                .filter(|_| args["bucketName"] == "backups")
                .collect();
            json(serde_json::json!({ "buckets": buckets }))
        }
        "b2_create_bucket" => {
            assert_eq!(args["bucketType"], "allPrivate");
            s.bucket_id = Some("bkt1".to_owned());
            json(serde_json::json!({"bucketId": "bkt1", "bucketName": args["bucketName"]}))
        }
        "b2_get_upload_url" => json(serde_json::json!({
            "uploadUrl": format!("{base}/upload/{}", args["bucketId"].as_str().unwrap()),
            "authorizationToken": "upload-tok",
        })),
        "b2_list_file_names" => {
            let prefix = args["prefix"].as_str().unwrap_or_default();
            let start = args["startFileName"].as_str().unwrap_or_default();
            let page: Vec<serde_json::Value> = s
                .files
                .iter()
                .filter(|(n, v)| n.starts_with(prefix) && n.as_str() >= start && !v.is_empty())
                .take(6)
                .map(|(n, v)| {
                    serde_json::json!({"fileName": n, "contentLength": v.last().unwrap().1.len()})
                })
                .collect();
            // One more name than the page holds becomes nextFileName.
            let next = s
                .files
                .keys()
                .filter(|n| n.starts_with(prefix) && n.as_str() >= start)
                .nth(6)
                .cloned();
            json(serde_json::json!({"files": page, "nextFileName": next}))
        }
        "b2_list_file_versions" => {
            let prefix = args["prefix"].as_str().unwrap_or_default();
            let files: Vec<serde_json::Value> = s
                .files
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .flat_map(|(n, v)| {
                    v.iter()
                        .map(move |(id, _)| serde_json::json!({"fileName": n, "fileId": id}))
                })
                .collect();
            json(serde_json::json!({ "files": files }))
        }
        "b2_delete_file_version" => {
            let name = args["fileName"].as_str().unwrap_or_default().to_owned();
            let id = args["fileId"].as_str().unwrap_or_default();
            let Some(versions) = s.files.get_mut(&name) else {
                return respond(404, "");
            };
            versions.retain(|(v, _)| v != id);
            if versions.is_empty() {
                s.files.remove(&name);
            }
            json(serde_json::json!({"fileName": name, "fileId": id}))
        }
        other => respond(400, format!("unknown call {other}")),
    }
}

#[test]
fn b2_backend_against_a_fake_of_the_b2_api() {
    use stash_repo::b2::B2Backend;
    let state = Arc::new(std::sync::Mutex::new(B2Fake::default()));
    let base = fake::serve(Arc::clone(&state), b2_fake);
    let wrong = B2Backend::new(Some(&base), B2_KEY_ID, "nope", "backups", "/x").unwrap();
    let err = wrong.create().unwrap_err().to_string();
    assert!(
        err.contains("B2_ACCOUNT_ID, B2_ACCOUNT_KEY") && err.contains("401"),
        "{err}"
    );

    // Stash's `b2:<bucket>:/<prefix>` with prefix `/demo/mysql`.
    let backend = Arc::new(
        B2Backend::new(Some(&base), B2_KEY_ID, B2_KEY, "backups", "//demo/mysql").unwrap(),
    );
    let data = exercise(backend);
    let state = state.lock().unwrap();
    assert!(state.auths > 1, "the expired token was renewed");
    // Removed files are gone in every version; what is left is one version per name.
    assert!(state.files.values().all(|v| v.len() == 1));
    let objects = state
        .files
        .iter()
        .map(|(n, v)| (n.clone(), v[0].1.clone()))
        .collect();
    restic_reads_the_copy(objects, "demo/mysql/", &data);
}

/// GCS with a service account key: the client signs a JWT with the key (RS256), trades it at
/// the key's `token_uri` for a token, and sends that token. The emulator checks no tokens, so a
/// fake token endpoint checks the signature with `openssl` and the fake storage the token.
#[derive(Default)]
struct TokenFake {
    public_pem: std::path::PathBuf,
    exchanges: u32,
    authorized_requests: u32,
}

fn token_fake(s: &mut TokenFake, base: &str, r: fake::Request) -> fake::Response {
    use base64::Engine as _;
    use fake::respond;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if r.path == "/token" {
        let form: BTreeMap<String, String> = String::from_utf8(r.body)
            .unwrap()
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (fake::decode(k), fake::decode(v))
            })
            .collect();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        let jwt = &form["assertion"];
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(signed.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims["iss"], "backup@demo.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], format!("{base}/token"));
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/devstorage.read_write"
        );
        let dir = s.public_pem.parent().unwrap().to_owned();
        std::fs::write(dir.join("signed"), signed).unwrap();
        std::fs::write(dir.join("sig"), b64.decode(signature).unwrap()).unwrap();
        let verified = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&s.public_pem)
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("signed"))
            .output()
            .unwrap();
        if !verified.status.success() {
            return respond(400, r#"{"error":"invalid_grant"}"#);
        }
        s.exchanges += 1;
        return respond(
            200,
            r#"{"access_token":"ya29.fake","expires_in":3599,"token_type":"Bearer"}"#,
        );
    }
    if r.headers.get("authorization").map(String::as_str) != Some("Bearer ya29.fake") {
        return respond(401, "");
    }
    s.authorized_requests += 1;
    respond(404, r#"{"error":{"code":404}}"#)
}

#[test]
fn gcs_service_account_key_is_traded_for_a_token() {
    use stash_repo::gcs::ServiceAccountKey;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    let public = tmp.path().join("public.pem");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let (key_path, public_path) = (key.to_str().unwrap(), public.to_str().unwrap());
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_path,
    ]);
    openssl(&["pkey", "-pubout", "-in", key_path, "-out", public_path]);
    let state = Arc::new(std::sync::Mutex::new(TokenFake {
        public_pem: public,
        ..TokenFake::default()
    }));
    let base = fake::serve(Arc::clone(&state), token_fake);
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "k1",
        "private_key": std::fs::read_to_string(&key).unwrap(),
        "client_email": "backup@demo.iam.gserviceaccount.com",
        "token_uri": format!("{base}/token"),
    });
    let account = ServiceAccountKey::from_json(json.to_string().as_bytes()).unwrap();
    let backend = GcsBackend::new(
        Some(&base),
        "backups",
        "/",
        None,
        GcsAuth::ServiceAccount(Box::new(account)),
    )
    .unwrap();
    for _ in 0..3 {
        assert!(!backend
            .exists(stash_repo::FileKind::Config, "config")
            .unwrap());
    }
    let state = state.lock().unwrap();
    // One exchange, its token reused until it nears expiry.
    assert_eq!((state.exchanges, state.authorized_requests), (1, 3));

    let err = ServiceAccountKey::from_json(br#"{"client_email": "x"}"#)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("GOOGLE_SERVICE_ACCOUNT_JSON_KEY: no private_key"),
        "{err}"
    );
}
