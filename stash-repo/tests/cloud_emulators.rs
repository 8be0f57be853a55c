//! The Azure and GCS backends against real implementations of those APIs: Azurite (Microsoft's
//! Azure Storage emulator) and gcp-storage-emulator, both installed by `scripts/setup.sh` under
//! `$STASH_EMULATORS` (default `~/.cache/stash-rs/emulators`; see stash-testkit's
//! `providers::emulators`). Each test backs up, reads back,
//! checks, forgets; then it copies the bucket's objects, by their whole names, into a local
//! directory and has the stock `restic` run `check --read-data` and `dump` there, which proves
//! the objects sit where restic's own backend would put them. (restic 0.14 can reach neither
//! emulator itself: its azure backend has no endpoint setting and its gs backend none either.)

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
    let data = dump_bytes(6_000_000, 5);
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
