//! Interop with the stock `restic` program, the format oracle: repositories we write pass
//! `restic check --read-data` and give back the exact bytes; repositories restic wrote are read
//! and deduplicated against; locks are honoured both ways; damage is an error, not a guess.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use stash_repo::backend::FileKind;
use stash_repo::{
    backup_stream, backup_stream_locked, open_file, BackupOptions, LocalBackend, LockWait,
    RepoError, Repository,
};

const PASSWORD: &str = "interop-pw";

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

fn restic(repo: &Path) -> Command {
    let mut cmd = Command::new("restic");
    cmd.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_PASSWORD_FILE")
        .arg("--no-cache");
    cmd
}

fn run_ok(mut cmd: Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn options(host: &str) -> BackupOptions {
    BackupOptions {
        hostname: host.to_owned(),
        ..BackupOptions::default()
    }
}

fn our_init(dir: &Path) -> Repository {
    Repository::init(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes()).unwrap()
}

fn our_open(dir: &Path) -> Result<Repository, RepoError> {
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD.as_bytes())
}

fn read_back(repo: &Repository, snapshot: &str) -> Result<Vec<u8>, String> {
    let mut reader = open_file(repo, snapshot, None, "/dumpfile.sql").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Every file in the repository with its size (to show that nothing was written).
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(&entry.path(), out);
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

#[test]
fn restic_reads_checks_and_restores_what_we_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = our_init(&dir);
    // Longer than the largest chunk (8 MiB): at least two blobs whatever the polynomial.
    let data = dump_bytes(10_000_000, 7);
    let first = backup_stream(&repo, &mut &data[..], &options("host-0")).unwrap();
    assert_eq!(first.bytes, data.len() as u64);
    assert!(first.blobs_total >= 2, "{first:?}");

    let snapshots: serde_json::Value = serde_json::from_slice(&run_ok({
        let mut c = restic(&dir);
        c.args(["snapshots", "--json"]);
        c
    }))
    .unwrap();
    assert_eq!(snapshots[0]["id"], first.snapshot_id.to_hex());
    assert_eq!(snapshots[0]["hostname"], "host-0");
    assert_eq!(snapshots[0]["paths"], serde_json::json!(["/dumpfile.sql"]));

    run_ok({
        let mut c = restic(&dir);
        c.args(["check", "--read-data"]);
        c
    });
    let dumped = run_ok({
        let mut c = restic(&dir);
        c.args(["dump", "latest", "/dumpfile.sql"]);
        c
    });
    assert!(dumped == data, "restic dump differs");
    let target = tmp.path().join("restored");
    run_ok({
        let mut c = restic(&dir);
        c.args(["restore", "latest", "--target"]).arg(&target);
        c
    });
    assert!(std::fs::read(target.join("dumpfile.sql")).unwrap() == data);

    // Unchanged data: only a tree, an index and a snapshot are new.
    let second = backup_stream(&repo, &mut &data[..], &options("host-0")).unwrap();
    assert_eq!(second.blobs_new, 0);
    assert!(second.data_added < 2_000, "{second:?}");

    // restic forgets and prunes; we still back up and restore.
    run_ok({
        let mut c = restic(&dir);
        c.args(["forget", "--keep-last", "1", "--prune"]);
        c
    });
    let changed = dump_bytes(3_100_000, 8);
    let repo = our_open(&dir).unwrap();
    let third = backup_stream(&repo, &mut &changed[..], &options("host-0")).unwrap();
    assert!(read_back(&repo, &third.snapshot_id.to_hex()).unwrap() == changed);
    assert!(read_back(&repo, &second.snapshot_id.to_hex()).unwrap() == data);
    run_ok({
        let mut c = restic(&dir);
        c.args(["check", "--read-data"]);
        c
    });
    assert!(stash_repo::check::check(&repo, true).unwrap().is_empty());
}

#[test]
fn we_read_and_deduplicate_against_what_restic_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    run_ok({
        let mut c = restic(&dir);
        c.args(["init", "--repository-version", "2"]);
        c
    });
    let data = dump_bytes(4_000_000, 11);
    let mut child = restic(&dir)
        .args([
            "backup",
            "--stdin",
            "--stdin-filename",
            "dumpfile.sql",
            "--host",
            "db-0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait().unwrap().success());

    let repo = our_open(&dir).unwrap();
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].1.hostname, "db-0");
    assert_eq!(snaps[0].1.paths, vec!["/dumpfile.sql".to_owned()]);
    let mut reader = open_file(&repo, "latest", Some("db-0"), "/dumpfile.sql").unwrap();
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    drop(reader);
    assert!(back == data);

    let ours = backup_stream(&repo, &mut &data[..], &options("db-0")).unwrap();
    assert_eq!(ours.blobs_new, 0, "same chunks as restic: {ours:?}");
    assert!(
        ours.data_added * 100 < data.len() as u64,
        "second backup added {} of {} bytes",
        ours.data_added,
        data.len()
    );
    run_ok({
        let mut c = restic(&dir);
        c.args(["check", "--read-data"]);
        c
    });
}

/// Starts `restic key passwd`, which holds an exclusive lock while it waits for the new
/// password on stdin; closing its stdin makes it give up and remove the lock.
fn hold_exclusive_lock(dir: &Path) -> std::process::Child {
    let mut holder = restic(dir)
        .args(["key", "passwd"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locks_dir = dir.join("locks");
    for _ in 0..200 {
        if std::fs::read_dir(&locks_dir).unwrap().count() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    // restic re-checks 200 ms after writing its lock; wait until it has settled on holding it.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        holder.try_wait().unwrap().is_none(),
        "restic key passwd gave up its lock"
    );
    holder
}

#[test]
fn our_backup_waits_out_an_exclusive_restic_lock_by_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = our_init(&dir);
    let data = dump_bytes(400_000, 5);
    let poll = std::time::Duration::from_millis(100);

    // A wait shorter than restic's hold gives up, naming the holder and the wait; nothing stays.
    let mut holder = hold_exclusive_lock(&dir);
    let before = listing(&dir);
    let short = LockWait {
        timeout: std::time::Duration::from_millis(500),
        retry_every: poll,
    };
    let err = backup_stream_locked(&repo, &mut &data[..], &options("h"), &short).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RepoError::Locked(_)), "{text}");
    assert!(
        text.contains(&holder.id().to_string()) && text.contains("gave up after waiting"),
        "{text}"
    );
    assert_eq!(listing(&dir), before, "a refused backup writes nothing");

    // A longer wait sees restic let go (its stdin closes a moment later) and then backs up.
    let stdin = holder.stdin.take();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(stdin);
    });
    let long = LockWait {
        timeout: std::time::Duration::from_secs(120),
        retry_every: poll,
    };
    let done = backup_stream_locked(&repo, &mut &data[..], &options("h"), &long).unwrap();
    release.join().unwrap();
    // restic held the lock when the backup started (the short wait above just failed on it).
    holder.wait().unwrap();
    assert!(read_back(&repo, &done.snapshot_id.to_hex()).unwrap() == data);
    run_ok({
        let mut c = restic(&dir);
        c.args(["check", "--read-data"]);
        c
    });
    assert_eq!(std::fs::read_dir(dir.join("locks")).unwrap().count(), 0);
}

#[test]
fn an_exclusive_restic_lock_stops_our_backup_and_ours_stops_restic_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = our_init(&dir);
    let data = dump_bytes(600_000, 3);
    backup_stream(&repo, &mut &data[..], &options("h")).unwrap();

    let mut holder = hold_exclusive_lock(&dir);
    let locks_dir = dir.join("locks");
    let before = listing(&dir);
    let err = backup_stream(&repo, &mut &data[..], &options("h")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RepoError::Locked(_)), "{text}");
    assert!(
        text.contains("exclusively") && text.contains(&holder.id().to_string()),
        "{text}"
    );
    assert_eq!(listing(&dir), before, "a refused backup writes nothing");
    drop(holder.stdin.take());
    let _ = holder.wait();

    // While our backup streams, restic prune refuses.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    struct Gate(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);
    impl Read for Gate {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(next) => self.1 = next,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }
    let repo2 = repo.clone();
    let backup =
        std::thread::spawn(move || backup_stream(&repo2, &mut Gate(rx, Vec::new()), &options("h")));
    tx.send(data[..1000].to_vec()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let prune = restic(&dir).arg("prune").output().unwrap();
    assert!(!prune.status.success());
    assert!(
        String::from_utf8_lossy(&prune.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    tx.send(data[1000..].to_vec()).unwrap();
    drop(tx);
    let done = backup.join().unwrap().unwrap();
    assert!(read_back(&repo, &done.snapshot_id.to_hex()).unwrap() == data);
    assert_eq!(
        std::fs::read_dir(&locks_dir).unwrap().count(),
        0,
        "no lock left"
    );
}

#[test]
fn wrong_password_damage_and_missing_index_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = our_init(&dir);
    let data = dump_bytes(1_500_000, 5);
    backup_stream(&repo, &mut &data[..], &options("h")).unwrap();
    let before = listing(&dir);

    let wrong = Repository::open(Arc::new(LocalBackend::new(&dir)), b"not-it").unwrap_err();
    assert!(matches!(wrong, RepoError::WrongPassword), "{wrong}");
    assert_eq!(listing(&dir), before);

    // A failing source: no snapshot, no pack, no lock.
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("mysqldump failed (exit status: 2)"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let other = dump_bytes(2_000_000, 99);
    let err = backup_stream(&repo, &mut Failing(&other), &options("h")).unwrap_err();
    assert!(matches!(err, RepoError::Source(_)), "{err}");
    assert!(err.to_string().contains("exit status: 2"));
    assert_eq!(listing(&dir), before, "a failed stream leaves nothing");

    // A damaged pack: the read fails with the blob named.
    let packs = repo.backend().list(FileKind::Pack).unwrap();
    let index = repo.load_index().unwrap();
    let data_pack = index
        .blobs
        .values()
        .find(|l| l.kind == stash_repo::format::BlobType::Data)
        .unwrap()
        .pack
        .to_hex();
    assert!(packs.iter().any(|(n, _)| *n == data_pack));
    let path = dir.join("data").join(&data_pack[..2]).join(&data_pack);
    let mut bytes = std::fs::read(&path).unwrap();
    let original = bytes.clone();
    bytes[100] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_back(&repo, "latest").unwrap_err();
    assert!(err.contains("damaged"), "{err}");
    assert!(!stash_repo::check::check(&repo, true).unwrap().is_empty());
    std::fs::write(&path, &original).unwrap();
    assert!(read_back(&repo, "latest").unwrap() == data);

    // A missing index: refused before the first byte.
    for (name, _) in repo.backend().list(FileKind::Index).unwrap() {
        let p = dir.join("index").join(&name);
        std::fs::rename(&p, tmp.path().join(&name)).unwrap();
    }
    let err = open_file(&repo, "latest", None, "/dumpfile.sql").unwrap_err();
    assert!(matches!(err, RepoError::BlobMissing(_)), "{err}");
    assert!(err.to_string().contains("index"), "{err}");
}
