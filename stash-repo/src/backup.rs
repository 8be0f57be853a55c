//! Streaming backup of one file: source → chunker → parallel hash, dedup, compress and encrypt
//! workers → pack writer → uploaders. Every queue is bounded, so memory stays flat whatever the
//! stream's length. The snapshot is written last, and only when the source ended cleanly; on
//! any failure the packs this run uploaded are removed and no snapshot is written.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::backend::FileKind;
use crate::chunker::Chunker;
use crate::error::RepoError;
use crate::format::{BlobType, IndexFile, IndexPack, Node, Snapshot, Tree};
use crate::id::Id;
use crate::lock::Lock;
use crate::pack::{seal_blob, PackBuilder};
use crate::repo::{now_rfc3339, user, Repository, ZSTD_LEVEL};

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

struct Sealed {
    id: Id,
    data: Vec<u8>,
    uncompressed: Option<u64>,
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
pub fn backup_stream(
    repo: &Repository,
    source: &mut dyn Read,
    options: &BackupOptions,
) -> Result<BackupSummary, RepoError> {
    let name = file_name(&options.path)?.to_owned();
    let _lock = Lock::acquire(repo, false)?;
    let index = repo.load_index()?;
    let tables = repo.chunker_tables()?;
    let claimed: Mutex<HashSet<Id>> = Mutex::new(
        index
            .blobs
            .iter()
            .filter(|(_, l)| l.kind == BlobType::Data)
            .map(|(id, _)| *id)
            .collect(),
    );
    let run = Run {
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        uploaded: Mutex::new(Vec::new()),
        added: AtomicU64::new(0),
    };
    let content: Mutex<Vec<Option<Id>>> = Mutex::new(Vec::new());
    let new_blobs = AtomicU64::new(0);
    let workers = options.workers.max(1);
    let mut chunker = Chunker::new(source, tables);
    let mut source_error = None;

    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel::<(usize, Vec<u8>)>(workers);
        // Buffers go round (chunker → worker → back) instead of being allocated per chunk and
        // per pack: the allocator then has nothing to fragment, and memory stays flat.
        let (spare_chunk_tx, spare_chunk_rx) = sync_channel::<Vec<u8>>(workers * 2 + 2);
        let (spare_pack_tx, spare_pack_rx) = sync_channel::<Vec<u8>>(options.uploaders.max(1) + 2);
        let (sealed_tx, sealed_rx) = sync_channel::<Sealed>(workers);
        let (pack_tx, pack_rx) = sync_channel::<Finished>(1);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let pack_rx = Arc::new(Mutex::new(pack_rx));

        for _ in 0..workers {
            let chunk_rx = Arc::clone(&chunk_rx);
            let sealed_tx = sealed_tx.clone();
            let spare = spare_chunk_tx.clone();
            let (run, claimed, content, new_blobs) = (&run, &claimed, &content, &new_blobs);
            scope.spawn(move || {
                if let Err(e) = seal_worker(
                    repo, options, &chunk_rx, &sealed_tx, &spare, claimed, content, new_blobs,
                ) {
                    run.fail(e);
                }
            });
        }
        // Only the workers hold the receiver now: if they all stop, sending fails, not blocks.
        drop(chunk_rx);
        drop(sealed_tx);
        {
            let run = &run;
            scope
                .spawn(move || pack_writer(repo, options, sealed_rx, pack_tx, &spare_pack_rx, run));
        }
        for _ in 0..options.uploaders.max(1) {
            let pack_rx = Arc::clone(&pack_rx);
            let run = &run;
            let spare = spare_pack_tx.clone();
            scope.spawn(move || uploader(repo, &pack_rx, &spare, run));
        }
        drop(pack_rx);

        drop(spare_chunk_tx);
        drop(spare_pack_tx);
        let mut seq = 0usize;
        loop {
            if run.failed() {
                break;
            }
            let mut chunk = spare_chunk_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(2 * crate::chunker::MIN_SIZE));
            match chunker.next_chunk_into(&mut chunk) {
                Ok(true) => {
                    if chunk_tx.send((seq, chunk)).is_err() {
                        break;
                    }
                    seq += 1;
                }
                Ok(false) => break,
                Err(e) => {
                    source_error = Some(e.to_string());
                    run.failed.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        drop(chunk_tx);
    });

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
    match outcome {
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
    }
}

fn poisoned<T>(_: T) -> RepoError {
    RepoError::Format("a backup thread panicked".to_owned())
}

#[allow(clippy::too_many_arguments)]
fn seal_worker(
    repo: &Repository,
    options: &BackupOptions,
    chunks: &Mutex<Receiver<(usize, Vec<u8>)>>,
    sealed: &SyncSender<Sealed>,
    spare: &SyncSender<Vec<u8>>,
    claimed: &Mutex<HashSet<Id>>,
    content: &Mutex<Vec<Option<Id>>>,
    new_blobs: &AtomicU64,
) -> Result<(), RepoError> {
    let mut compressor = match options.compression {
        Some(level) => Some(
            zstd::bulk::Compressor::new(level)
                .map_err(|e| RepoError::Format(format!("zstd: {e}")))?,
        ),
        None => None,
    };
    loop {
        let next = chunks.lock().map_err(poisoned)?.recv();
        let Ok((seq, chunk)) = next else {
            return Ok(());
        };
        let id = Id::of(&chunk);
        {
            let mut list = content.lock().map_err(poisoned)?;
            if list.len() <= seq {
                list.resize(seq + 1, None);
            }
            list[seq] = Some(id);
        }
        if !claimed.lock().map_err(poisoned)?.insert(id) {
            let _ = spare.try_send(chunk);
            continue;
        }
        new_blobs.fetch_add(1, Ordering::Relaxed);
        let (data, uncompressed) = seal_blob(repo.key(), &chunk, compressor.as_mut())?;
        let _ = spare.try_send(chunk);
        if sealed
            .send(Sealed {
                id,
                data,
                uncompressed,
            })
            .is_err()
        {
            return Ok(());
        }
    }
}

fn pack_writer(
    repo: &Repository,
    options: &BackupOptions,
    sealed: Receiver<Sealed>,
    packs: SyncSender<Finished>,
    spare: &Receiver<Vec<u8>>,
    run: &Run,
) {
    let new_builder = || match spare.try_recv() {
        Ok(buf) => PackBuilder::with_buffer(buf),
        Err(_) => PackBuilder::with_capacity(options.pack_size),
    };
    let mut builder = new_builder();
    let send = |builder: PackBuilder| -> bool {
        match builder.finish(repo.key()) {
            Ok((data, id, blobs)) => packs
                .send(Finished {
                    id,
                    data,
                    pack: IndexPack { id, blobs },
                })
                .is_ok(),
            Err(e) => {
                run.fail(e);
                false
            }
        }
    };
    for blob in sealed {
        // Close the pack before it would outgrow its buffer, so buffers never reallocate.
        if !builder.is_empty()
            && builder.len() + blob.data.len() > options.pack_size
            && !send(std::mem::replace(&mut builder, new_builder()))
        {
            return;
        }
        builder.add(blob.id, BlobType::Data, &blob.data, blob.uncompressed);
    }
    if !builder.is_empty() && !run.failed() {
        send(builder);
    }
}

fn uploader(
    repo: &Repository,
    packs: &Mutex<Receiver<Finished>>,
    spare: &SyncSender<Vec<u8>>,
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
        if run.failed() {
            continue;
        }
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
        let _ = spare.try_send(pack.data);
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
        }
        if !packs.is_empty() {
            let file = IndexFile {
                supersedes: None,
                packs,
            };
            let json = serde_json::to_vec(&file).map_err(|e| RepoError::Format(e.to_string()))?;
            written.push((FileKind::Index, repo.save_unpacked(FileKind::Index, &json)?));
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
        repo.save_unpacked(FileKind::Snapshot, &json)
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
