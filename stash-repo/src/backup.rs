//! Streaming backup of one file: source → chunker → parallel hash, dedup, compress and encrypt
//! workers, which fill the open pack → uploaders. Every queue and every buffer pool is bounded,
//! so memory stays flat whatever the stream's length. The snapshot is written last, and only when the source ended cleanly; on
//! any failure the packs this run uploaded are removed and no snapshot is written.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::FileKind;
use crate::chunker::{Chunker, MAX_SIZE};
use crate::crypto::OVERHEAD;
use crate::error::RepoError;
use crate::format::{BlobType, IndexFile, IndexPack, Node, Snapshot, Tree};
use crate::id::Id;
use crate::lock::{Lock, LockWait};
use crate::pack::{seal_blob, PackBuilder};
use crate::repo::{now_rfc3339, user, Repository, ZSTD_LEVEL};
use crate::timeline::mark;

/// The default [`BackupOptions::compress_nice`]. In a pod the dump is our child, in our cgroup,
/// and nice only orders the threads within it. On the 2-core benchmark machine (first backup
/// of a 412.6 MB dump, 4 rounds, examples/backup_mysql.rs) a first backup took 3.69 s at nice
/// 0, 3.44 s at 5, 3.39 s at 10 and 3.29 s at 19, against a dump alone of 2.60-2.81 s. 10
/// rather than 19 so that a node without per-cgroup CPU shares never starves the workers.
pub const COMPRESS_NICE: i32 = 10;

/// How a backup runs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Snapshot host.
    pub hostname: String,
    /// Absolute path of the file in the snapshot (`/dumpfile.sql`).
    pub path: String,
    /// Snapshot tags.
    pub tags: Vec<String>,
    /// Hash/compress/encrypt workers.
    pub workers: usize,
    /// Concurrent uploads.
    pub uploaders: usize,
    /// A pack is closed once its blobs reach this size.
    pub pack_size: usize,
    /// zstd level (`None`: store uncompressed).
    pub compression: Option<i32>,
    /// The nice value a worker thread takes once it has new data to compress and encrypt
    /// (Linux; `None` leaves the threads as they are). A backup that stores new data then
    /// yields the CPU to the dump it reads, whose pace sets the backup's length, and does that
    /// work in the dump's gaps; the bounded queues keep it from falling behind by more than a
    /// few chunks. A backup of unchanged data only hashes, and keeps the normal priority.
    pub compress_nice: Option<i32>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            hostname: String::new(),
            path: "/dumpfile.sql".to_owned(),
            tags: Vec::new(),
            workers: 2,
            uploaders: 2,
            pack_size: 4 * 1024 * 1024,
            compression: Some(ZSTD_LEVEL),
            compress_nice: Some(COMPRESS_NICE),
        }
    }
}

/// What a backup stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The new snapshot.
    pub snapshot_id: Id,
    /// Bytes read from the source (the file's size).
    pub bytes: u64,
    /// Bytes of pack files written.
    pub data_added: u64,
    /// Chunks in the file.
    pub blobs_total: u64,
    /// Chunks not yet in the repository.
    pub blobs_new: u64,
}

struct Finished {
    id: Id,
    data: Vec<u8>,
    pack: IndexPack,
}

/// Shared state of one run: the first error, and what was uploaded (for cleanup).
struct Run {
    failed: AtomicBool,
    error: Mutex<Option<RepoError>>,
    uploaded: Mutex<Vec<IndexPack>>,
    added: AtomicU64,
}

impl Run {
    fn fail(&self, e: RepoError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The pack the workers are filling, and the free pack buffers it takes the next one from.
struct OpenPack {
    builder: PackBuilder,
    free: Receiver<Vec<u8>>,
}

/// What the workers share.
struct Shared<'a> {
    repo: &'a Repository,
    options: &'a BackupOptions,
    run: &'a Run,
    claimed: Mutex<HashSet<Id>>,
    content: Mutex<Vec<Option<Id>>>,
    new_blobs: AtomicU64,
    open: Mutex<OpenPack>,
}

fn file_name(path: &str) -> Result<&str, RepoError> {
    let name = path.strip_prefix('/').unwrap_or(path);
    if name.is_empty() || name.contains('/') {
        return Err(RepoError::Format(format!(
            "backup path {path:?} must be one file name below /"
        )));
    }
    Ok(name)
}

/// Backs up everything `source` yields as the file `options.path` of a new snapshot.
///
/// Memory is bounded by construction, whatever the stream's length: the chunker fills one of
/// `workers + 1` chunk buffers, each worker compresses into its own scratch buffer and encrypts
/// straight into the open pack, and `uploaders + 1` pack buffers go round between the workers
/// and the uploaders. Every buffer is reserved once at its largest size (a chunk is at most
/// [`MAX_SIZE`]), so none is ever reallocated; only the pages a buffer has used are resident.
pub fn backup_stream(
    repo: &Repository,
    source: &mut dyn Read,
    options: &BackupOptions,
) -> Result<BackupSummary, RepoError> {
    backup_stream_locked(repo, source, options, &LockWait::default())
}

/// [`backup_stream`], waiting up to `wait` for a conflicting (exclusive) lock to go away.
///
/// The stream starts as soon as our lock is written. A conflicting lock written within
/// restic's 200 ms check window after ours fails the run with [`RepoError::Locked`] (nothing
/// stays), as the stream has been read by then: the caller retries with a fresh stream.
pub fn backup_stream_locked(
    repo: &Repository,
    source: &mut dyn Read,
    options: &BackupOptions,
    wait: &LockWait,
) -> Result<BackupSummary, RepoError> {
    let name = file_name(&options.path)?.to_owned();
    // restic's second look for a racing lock comes 200 ms after ours is written; the stream
    // starts meanwhile (it only reads until then), and the snapshot waits for the look.
    mark("backup: start");
    let lock = Lock::acquire_waiting_unconfirmed(repo, false, wait)?;
    mark("lock written");
    let index = repo.load_index()?;
    mark("index loaded");
    let tables = repo.chunker_tables()?;
    let run = Run {
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        uploaded: Mutex::new(Vec::new()),
        added: AtomicU64::new(0),
    };
    let workers = options.workers.max(1);
    let uploaders = options.uploaders.max(1);
    let pack_capacity = options.pack_size + sealed_bound(MAX_SIZE) + PACK_HEADER_ROOM;
    let (free_pack_tx, free_pack_rx) = sync_channel::<Vec<u8>>(uploaders + 1);
    for _ in 0..uploaders {
        let _ = free_pack_tx.send(Vec::with_capacity(pack_capacity));
    }
    let shared = Shared {
        repo,
        options,
        run: &run,
        claimed: Mutex::new(
            index
                .blobs
                .iter()
                .filter(|(_, l)| l.kind == BlobType::Data)
                .map(|(id, _)| *id)
                .collect(),
        ),
        content: Mutex::new(Vec::new()),
        new_blobs: AtomicU64::new(0),
        open: Mutex::new(OpenPack {
            builder: PackBuilder::with_buffer(Vec::with_capacity(pack_capacity)),
            free: free_pack_rx,
        }),
    };
    let mut chunker = Chunker::new(source, tables);
    let mut source_error = None;

    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel::<(usize, Vec<u8>)>(workers);
        let (free_chunk_tx, free_chunk_rx) = sync_channel::<Vec<u8>>(workers + 1);
        for _ in 0..=workers {
            let _ = free_chunk_tx.send(Vec::with_capacity(MAX_SIZE));
        }
        let (pack_tx, pack_rx) = sync_channel::<Finished>(0);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let pack_rx = Arc::new(Mutex::new(pack_rx));

        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let chunk_rx = Arc::clone(&chunk_rx);
            let free = free_chunk_tx.clone();
            let pack_tx = pack_tx.clone();
            let shared = &shared;
            handles.push(scope.spawn(move || {
                if let Err(e) = seal_worker(shared, &chunk_rx, &free, &pack_tx) {
                    shared.run.fail(e);
                }
            }));
        }
        // Only the workers hold these now: if they all stop, the chunker's sends and waits
        // for a free buffer fail instead of blocking.
        drop(chunk_rx);
        drop(free_chunk_tx);
        for _ in 0..uploaders {
            let pack_rx = Arc::clone(&pack_rx);
            let run = &run;
            let free = free_pack_tx.clone();
            scope.spawn(move || uploader(repo, &pack_rx, &free, run));
        }
        drop(pack_rx);
        drop(free_pack_tx);
        scope.spawn(|| {
            if let Err(e) = lock.confirm() {
                run.fail(e);
            }
            mark("lock confirmed");
        });

        let mut seq = 0usize;
        while !run.failed() {
            let Ok(mut chunk) = free_chunk_rx.recv() else {
                break;
            };
            match chunker.next_chunk_into(&mut chunk) {
                Ok(true) => {
                    if seq == 0 {
                        mark("first chunk cut");
                    }
                    if chunk_tx.send((seq, chunk)).is_err() {
                        break;
                    }
                    seq += 1;
                }
                Ok(false) => {
                    mark("stream end");
                    break;
                }
                Err(e) => {
                    source_error = Some(e.to_string());
                    run.failed.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        drop(chunk_tx);
        for handle in handles {
            if handle.join().is_err() {
                run.fail(poisoned(()));
            }
        }
        mark("last chunk sealed");
        // The last, partly filled pack.
        if !run.failed() {
            let last = shared
                .open
                .lock()
                .map(|mut open| std::mem::replace(&mut open.builder, PackBuilder::new()));
            match last {
                Ok(builder) if !builder.is_empty() => {
                    if let Err(e) = send_pack(repo, builder, &pack_tx) {
                        run.fail(e);
                    }
                }
                Ok(_) => {}
                Err(e) => run.fail(poisoned(e)),
            }
        }
        drop(pack_tx);
    });
    mark("uploads done");
    let Shared {
        content, new_blobs, ..
    } = shared;
    let bytes = chunker.bytes_read();
    let uploaded = std::mem::take(&mut *run.uploaded.lock().map_err(poisoned)?);
    let outcome = (|| {
        if let Some(e) = source_error {
            return Err(RepoError::Source(e));
        }
        if let Some(e) = run.error.lock().map_err(poisoned)?.take() {
            return Err(e);
        }
        let content: Vec<Id> = content
            .into_inner()
            .map_err(poisoned)?
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| RepoError::Format("a chunk was lost in the pipeline".to_owned()))?;
        finish_snapshot(
            repo,
            options,
            &name,
            bytes,
            content,
            &index,
            uploaded.clone(),
            &run,
        )
    })();
    let result = match outcome {
        Ok((snapshot_id, blobs_total)) => Ok(BackupSummary {
            snapshot_id,
            bytes,
            data_added: run.added.load(Ordering::SeqCst),
            blobs_total,
            blobs_new: new_blobs.load(Ordering::SeqCst),
        }),
        Err(e) => {
            // Nothing of this run may stay: its packs are in no index, so remove them.
            for pack in &uploaded {
                let _ = repo.backend().remove(FileKind::Pack, &pack.id.to_hex());
            }
            Err(e)
        }
    };
    drop(lock);
    mark("unlocked");
    result
}

fn poisoned<T>(_: T) -> RepoError {
    RepoError::Format("a backup thread panicked".to_owned())
}

/// Room a sealed (compressed or not, then encrypted) chunk of `len` bytes may need.
fn sealed_bound(len: usize) -> usize {
    zstd::zstd_safe::compress_bound(len) + OVERHEAD
}

/// Room for a pack's header after its blobs (a few thousand entries).
const PACK_HEADER_ROOM: usize = 64 * 1024;

fn seal_worker(
    shared: &Shared<'_>,
    chunks: &Mutex<Receiver<(usize, Vec<u8>)>>,
    free: &SyncSender<Vec<u8>>,
    packs: &SyncSender<Finished>,
) -> Result<(), RepoError> {
    let options = shared.options;
    let mut compressor = match options.compression {
        Some(level) => Some(
            zstd::bulk::Compressor::new(level)
                .map_err(|e| RepoError::Format(format!("zstd: {e}")))?,
        ),
        None => None,
    };
    let mut scratch: Vec<u8> = match compressor {
        Some(_) => Vec::with_capacity(sealed_bound(MAX_SIZE)),
        None => Vec::new(),
    };
    let mut niced = false;
    loop {
        let next = chunks.lock().map_err(poisoned)?.recv();
        let Ok((seq, chunk)) = next else {
            return Ok(());
        };
        let id = Id::of(&chunk);
        {
            let mut list = shared.content.lock().map_err(poisoned)?;
            if list.len() <= seq {
                list.resize(seq + 1, None);
            }
            list[seq] = Some(id);
        }
        if !shared.claimed.lock().map_err(poisoned)?.insert(id) {
            let _ = free.send(chunk);
            continue;
        }
        shared.new_blobs.fetch_add(1, Ordering::Relaxed);
        if !niced {
            niced = true;
            if let Some(nice) = options.compress_nice {
                // Best effort: a refusal only leaves the thread's priority as it was.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
            }
        }
        let uncompressed = match compressor.as_mut() {
            Some(c) => {
                scratch.clear();
                c.compress_to_buffer(&chunk[..], &mut scratch)
                    .map_err(|e| RepoError::Format(format!("zstd: {e}")))?;
                Some(chunk.len() as u64)
            }
            None => None,
        };
        let plain: &[u8] = if uncompressed.is_some() {
            &scratch
        } else {
            &chunk
        };
        let full = add_to_pack(shared, id, plain, uncompressed)?;
        let _ = free.send(chunk);
        if let Some(builder) = full {
            send_pack(shared.repo, builder, packs)?;
        }
    }
}

/// Encrypts a blob into the open pack; returns the pack it closed to make room, if any.
fn add_to_pack(
    shared: &Shared<'_>,
    id: Id,
    plain: &[u8],
    uncompressed: Option<u64>,
) -> Result<Option<PackBuilder>, RepoError> {
    let mut open = shared.open.lock().map_err(poisoned)?;
    let mut full = None;
    // Close the pack before it would outgrow its buffer, so buffers never reallocate.
    if !open.builder.is_empty()
        && open.builder.len() + plain.len() + OVERHEAD > shared.options.pack_size
    {
        let buf = loop {
            match open.free.recv_timeout(Duration::from_millis(100)) {
                Ok(buf) => break buf,
                Err(RecvTimeoutError::Timeout) if !shared.run.failed() => {}
                Err(_) => return Err(RepoError::Storage("the uploads stopped".to_owned())),
            }
        };
        full = Some(std::mem::replace(
            &mut open.builder,
            PackBuilder::with_buffer(buf),
        ));
    }
    open.builder
        .add_plain(shared.repo.key(), id, BlobType::Data, plain, uncompressed)?;
    Ok(full)
}

fn send_pack(
    repo: &Repository,
    builder: PackBuilder,
    packs: &SyncSender<Finished>,
) -> Result<(), RepoError> {
    let (data, id, blobs) = builder.finish(repo.key())?;
    // A closed channel means the uploads stopped; the run's error says why.
    let _ = packs.send(Finished {
        id,
        data,
        pack: IndexPack { id, blobs },
    });
    Ok(())
}

fn uploader(
    repo: &Repository,
    packs: &Mutex<Receiver<Finished>>,
    free: &SyncSender<Vec<u8>>,
    run: &Run,
) {
    loop {
        let next = match packs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(pack) = next else {
            return;
        };
        if !run.failed() {
            match repo
                .backend()
                .write(FileKind::Pack, &pack.id.to_hex(), &pack.data)
            {
                Ok(()) => {
                    run.added
                        .fetch_add(pack.data.len() as u64, Ordering::Relaxed);
                    if let Ok(mut list) = run.uploaded.lock() {
                        list.push(pack.pack);
                    }
                }
                Err(e) => run.fail(e),
            }
        }
        // The buffer goes back even after a failure: a worker may be waiting for it.
        let _ = free.try_send(pack.data);
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_snapshot(
    repo: &Repository,
    options: &BackupOptions,
    name: &str,
    size: u64,
    content: Vec<Id>,
    index: &crate::repo::Index,
    mut packs: Vec<IndexPack>,
    run: &Run,
) -> Result<(Id, u64), RepoError> {
    let blobs_total = content.len() as u64;
    let now = now_rfc3339();
    let (username, uid, gid) = user();
    let tree = Tree {
        nodes: vec![Node {
            name: name.to_owned(),
            kind: "file".to_owned(),
            mode: 0o644,
            mtime: now.clone(),
            atime: now.clone(),
            ctime: now.clone(),
            uid,
            gid,
            user: String::new(),
            size,
            content: Some(content),
            subtree: None,
        }],
    };
    let mut tree_json = serde_json::to_vec(&tree).map_err(|e| RepoError::Format(e.to_string()))?;
    tree_json.push(b'\n');
    let tree_id = Id::of(&tree_json);
    // What this step writes is removed again if a later step fails.
    let mut written: Vec<(FileKind, Id)> = Vec::new();
    let result = (|| {
        if !index.blobs.contains_key(&tree_id) {
            let mut compressor = match options.compression {
                Some(level) => Some(
                    zstd::bulk::Compressor::new(level)
                        .map_err(|e| RepoError::Format(format!("zstd: {e}")))?,
                ),
                None => None,
            };
            let (sealed, uncompressed) = seal_blob(repo.key(), &tree_json, compressor.as_mut())?;
            let mut builder = PackBuilder::new();
            builder.add(tree_id, BlobType::Tree, &sealed, uncompressed);
            let (data, id, blobs) = builder.finish(repo.key())?;
            repo.backend().write(FileKind::Pack, &id.to_hex(), &data)?;
            written.push((FileKind::Pack, id));
            run.added.fetch_add(data.len() as u64, Ordering::Relaxed);
            packs.push(IndexPack { id, blobs });
            mark("tree pack written");
        }
        if !packs.is_empty() {
            let file = IndexFile {
                supersedes: None,
                packs,
            };
            let json = serde_json::to_vec(&file).map_err(|e| RepoError::Format(e.to_string()))?;
            written.push((FileKind::Index, repo.save_unpacked(FileKind::Index, &json)?));
            mark("index written");
        }
        let snapshot = Snapshot {
            time: now,
            parent: None,
            tree: tree_id,
            paths: vec![options.path.clone()],
            hostname: options.hostname.clone(),
            username,
            uid,
            gid,
            excludes: None,
            tags: (!options.tags.is_empty()).then(|| options.tags.clone()),
        };
        let json = serde_json::to_vec(&snapshot).map_err(|e| RepoError::Format(e.to_string()))?;
        let id = repo.save_unpacked(FileKind::Snapshot, &json);
        mark("snapshot written");
        id
    })();
    match result {
        Ok(id) => Ok((id, blobs_total)),
        Err(e) => {
            for (kind, id) in written.iter().rev() {
                let _ = repo.backend().remove(*kind, &id.to_hex());
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::lock::{list_locks, write_lock, LockFile};

    /// A stream that, at its first read, lets an exclusive lock in, as a `prune` starting at
    /// the same moment as the backup would.
    struct RacedByPrune<'a> {
        repo: &'a Repository,
        data: &'a [u8],
        raced: bool,
    }

    impl Read for RacedByPrune<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if !self.raced {
                self.raced = true;
                write_lock(self.repo, &LockFile::new(true)).map_err(std::io::Error::other)?;
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_stream_starts_before_the_lock_check_which_still_guards_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(LocalBackend::new(dir.path()));
        let repo = Repository::init(backend, b"pw").unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut source = RacedByPrune {
            repo: &repo,
            data: &data,
            raced: false,
        };
        // The stream was read within restic's 200 ms check window, so the check sees the
        // exclusive lock that came in meanwhile: no snapshot, no pack, and ours is gone.
        let err = backup_stream(&repo, &mut source, &BackupOptions::default()).unwrap_err();
        assert!(matches!(err, RepoError::Locked(_)), "{err}");
        assert!(source.raced);
        assert!(repo.snapshots().unwrap().is_empty());
        assert!(repo.backend().list(FileKind::Pack).unwrap().is_empty());
        let locks = list_locks(&repo).unwrap();
        assert_eq!(locks.len(), 1);
        assert!(locks[0].1.exclusive);
    }

    /// The nice values of this process's threads now.
    fn thread_nices() -> Vec<i32> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter_map(|stat| {
                // After the command name: state is field 3, nice field 19.
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(16)?.parse().ok()
            })
            .collect()
    }

    /// A stream that looks, at every read, whether a thread of this process has `nice`; once
    /// `wait_after` bytes are out it waits (up to 10 s) for one to show.
    struct WatchingNice<'a> {
        data: &'a [u8],
        nice: i32,
        wait_after: Option<usize>,
        out: usize,
        seen: bool,
    }

    impl Read for WatchingNice<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.seen |= thread_nices().contains(&self.nice);
            if self.wait_after.is_some_and(|after| self.out >= after) {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !self.seen && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    self.seen = thread_nices().contains(&self.nice);
                }
                self.wait_after = None;
            }
            let n = buf.len().min(self.data.len()).min(64 * 1024);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.out += n;
            Ok(n)
        }
    }

    #[test]
    fn workers_yield_to_the_dump_only_when_they_compress_new_data() {
        // A nice value no other test's threads take.
        const NICE: i32 = 13;
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(LocalBackend::new(dir.path()));
        let repo = Repository::init(backend, b"pw").unwrap();
        // Pseudo-random (xorshift), so the chunker cuts about every MiB; a chunk is cut by
        // 8 MiB at the latest, so the first one reaches a worker before 12 MB are read.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..16_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        let options = BackupOptions {
            compress_nice: Some(NICE),
            ..BackupOptions::default()
        };
        let mut first = WatchingNice {
            data: &data,
            nice: NICE,
            wait_after: Some(12_000_000),
            out: 0,
            seen: false,
        };
        let summary = backup_stream(&repo, &mut first, &options).unwrap();
        assert!(summary.blobs_new > 1);
        assert!(first.seen, "no worker lowered its priority for new data");
        // The same data again: nothing to compress, so every thread keeps its priority.
        let mut second = WatchingNice {
            data: &data,
            nice: NICE,
            wait_after: None,
            out: 0,
            seen: false,
        };
        let summary = backup_stream(&repo, &mut second, &options).unwrap();
        assert_eq!(summary.blobs_new, 0);
        assert!(
            !second.seen,
            "a worker lowered its priority with nothing new"
        );
    }
}
