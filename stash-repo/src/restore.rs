//! Streaming one file out of a snapshot: a fetch thread reads packs ahead (neighbouring blobs
//! of one pack in one request), decode workers decrypt, decompress and verify each blob against
//! its id, and the reader hands the bytes out in order. Queues are bounded.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::backend::FileKind;
use crate::error::RepoError;
use crate::id::Id;
use crate::lock::Lock;
use crate::pack::open_blob;
use crate::repo::{BlobLocation, Repository};

/// Blobs decoded ahead of the reader.
const READ_AHEAD: usize = 4;
/// Largest single range request.
const MAX_REQUEST: u64 = 8 * 1024 * 1024;
const DECODERS: usize = 2;

type Decoded = Result<Vec<u8>, RepoError>;

struct Job {
    id: Id,
    stored: Vec<u8>,
    uncompressed: Option<u64>,
    reply: SyncSender<Decoded>,
}

/// The content of one file of a snapshot, as a reader that fails rather than ends early.
pub struct FileReader {
    pending: Receiver<Receiver<Decoded>>,
    current: Vec<u8>,
    pos: usize,
    produced: u64,
    size: u64,
    done: bool,
    _lock: Lock,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("size", &self.size)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

/// Opens `path` of `snapshot` (an id, a prefix, or `latest` of `host`). Every blob must be in
/// the index before the first byte is returned.
pub fn open_file(
    repo: &Repository,
    snapshot: &str,
    host: Option<&str>,
    path: &str,
) -> Result<FileReader, RepoError> {
    let lock = Lock::acquire(repo, false)?;
    let (_, snap) = repo.find_snapshot(snapshot, host, Some(path))?;
    let index = repo.load_index()?;
    let node = repo.find_node(&index, &snap, path)?;
    if node.kind != "file" {
        return Err(RepoError::NotFound(format!(
            "{path} is a {}, not a file",
            node.kind
        )));
    }
    let mut plan: Vec<(Id, BlobLocation)> = Vec::new();
    for id in node.content.unwrap_or_default() {
        let location = index
            .blobs
            .get(&id)
            .ok_or_else(|| RepoError::BlobMissing(id.to_hex()))?;
        plan.push((id, *location));
    }
    let (pending_tx, pending_rx) = sync_channel::<Receiver<Decoded>>(READ_AHEAD);
    let (job_tx, job_rx) = sync_channel::<Job>(READ_AHEAD);
    let job_rx = Arc::new(Mutex::new(job_rx));
    for _ in 0..DECODERS {
        let job_rx = Arc::clone(&job_rx);
        let key = repo.key().clone();
        std::thread::spawn(move || loop {
            let next = match job_rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(job) = next else {
                return;
            };
            let _ = job
                .reply
                .send(open_blob(&key, &job.id, &job.stored, job.uncompressed));
        });
    }
    let repo = repo.clone();
    std::thread::spawn(move || fetch(&repo, &plan, &pending_tx, &job_tx));
    Ok(FileReader {
        pending: pending_rx,
        current: Vec::new(),
        pos: 0,
        produced: 0,
        size: node.size,
        done: false,
        _lock: lock,
    })
}

/// Groups neighbouring blobs of one pack into one request, then queues each blob for decoding.
fn fetch(
    repo: &Repository,
    plan: &[(Id, BlobLocation)],
    pending: &SyncSender<Receiver<Decoded>>,
    jobs: &SyncSender<Job>,
) {
    let mut i = 0;
    while i < plan.len() {
        let first = plan[i].1;
        let mut end = first.offset + first.length;
        let mut j = i + 1;
        while j < plan.len() {
            let next = plan[j].1;
            if next.pack != first.pack || next.offset != end || end - first.offset >= MAX_REQUEST {
                break;
            }
            end += next.length;
            j += 1;
        }
        let range = repo.backend().read_range(
            FileKind::Pack,
            &first.pack.to_hex(),
            first.offset,
            end - first.offset,
        );
        match range {
            Ok(bytes) => {
                for (id, loc) in &plan[i..j] {
                    let start = (loc.offset - first.offset) as usize;
                    let stored = bytes[start..start + loc.length as usize].to_vec();
                    let (reply, result) = sync_channel(1);
                    if pending.send(result).is_err() {
                        return;
                    }
                    let job = Job {
                        id: *id,
                        stored,
                        uncompressed: loc.uncompressed_length,
                        reply,
                    };
                    if jobs.send(job).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let (reply, result) = sync_channel(1);
                let _ = reply.send(Err(e));
                let _ = pending.send(result);
                return;
            }
        }
        i = j;
    }
}

impl FileReader {
    /// The file's recorded size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.pending.recv() {
                Ok(result) => {
                    let blob = result
                        .recv()
                        .map_err(|_| std::io::Error::other("blob decoder stopped"))?
                        .map_err(std::io::Error::other)?;
                    self.produced += blob.len() as u64;
                    self.current = blob;
                    self.pos = 0;
                }
                Err(_) => {
                    if self.produced != self.size {
                        return Err(std::io::Error::other(RepoError::Format(format!(
                            "file content has {} bytes, its node records {}",
                            self.produced, self.size
                        ))));
                    }
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
