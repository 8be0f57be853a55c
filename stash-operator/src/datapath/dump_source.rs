//! The dump as a byte stream: runs one or more `mysqldump` processes one after the other and
//! yields their concatenated stdout. A dump that fails is reported as a read error *before* the
//! stream ends, so whoever consumes it never sees a clean end of file for a partial dump.
//!
//! A thread drains each dump's stdout into a bounded queue of large blocks, so the dump never
//! waits on a full pipe while the consumer is busy (chunking, hashing) between two reads.

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use stash_repo::timeline::mark;

/// The line every complete `mysqldump`/`mariadb-dump` output ends with.
pub const DUMP_TRAILER: &[u8] = b"-- Dump completed";
const TAIL_BYTES: usize = 512;
const STDERR_TAIL_BYTES: usize = 2048;
/// Size of one block of the read-ahead queue.
const BLOCK: usize = 256 * 1024;
/// Blocks in the queue: 2 MiB, about 13 ms of a dump's output, bounds what is held ahead.
const BLOCKS: usize = 8;
/// The dump's stdout pipe is enlarged to this (Linux's default `pipe-max-size`), so that it holds
/// several milliseconds of output while the read-ahead thread pauses.
const PIPE_SIZE: usize = 1024 * 1024;
/// A read shorter than this caught up with the dump: the thread pauses before the next one.
const SHORT_READ: usize = 64 * 1024;
/// The pause after a short read. `mysqldump` writes through stdio's 4 KiB pipe buffer: a reader
/// always waiting on the pipe is woken for every write, about 100,000 times for a 400 MB dump,
/// and those wake-ups (each a cross-CPU interrupt) cost more than the dump's own formatting.
/// At 160 MB/s a dump fills about 160 KB of the pipe in this time, far from its 1 MiB.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Why the dump stream stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The dump program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The dump exited with an error or was killed.
    #[error("{program} failed ({status}): {stderr}")]
    Exit {
        /// The program.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The dump exited cleanly but its output lacks the completion trailer.
    #[error("{program} output is truncated: no \"-- Dump completed\" trailer")]
    Truncated {
        /// The program.
        program: String,
    },
}

/// One dump process to run: program, arguments and extra environment.
#[derive(Clone)]
pub struct DumpCommand {
    /// Program name or path (`mysqldump`, `mariadb-dump`).
    pub program: String,
    /// Arguments (no secrets).
    pub args: Vec<String>,
    /// Extra environment (may hold the password).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for DumpCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "env_keys",
                &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

struct Running {
    program: String,
    child: Child,
    stdout: ReadAhead,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// The dump's stdout buffer, set through coreutils' `libstdbuf` when it is installed.
const STDOUT_BUFFER: usize = 1024 * 1024;
/// Where Debian, Fedora and Alpine install coreutils' `libstdbuf.so`.
const STDBUF_PATHS: &[&str] = &[
    "/usr/libexec/coreutils/libstdbuf.so",
    "/usr/lib/coreutils/libstdbuf.so",
    "/usr/lib64/coreutils/libstdbuf.so",
];

fn stdbuf_library() -> Option<&'static str> {
    if std::env::var("STASH_DUMP_STDBUF").is_ok_and(|v| v == "0") {
        return None;
    }
    STDBUF_PATHS
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).is_file())
}

/// The consumer's end of the thread that drains a dump's stdout: full blocks come in, emptied
/// ones go back, so at most [`BLOCKS`] blocks exist. The thread ends at the pipe's end, at a
/// read error (passed on after the bytes before it), or when this end is dropped.
struct ReadAhead {
    filled: Receiver<std::io::Result<(Vec<u8>, usize)>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    len: usize,
}

impl ReadAhead {
    fn spawn(mut stdout: ChildStdout) -> ReadAhead {
        // Best effort: a smaller pipe only means the dump waits sooner.
        let _ = rustix::pipe::fcntl_setpipe_size(&stdout, PIPE_SIZE);
        let (filled_tx, filled) = sync_channel(BLOCKS);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(BLOCKS);
        for _ in 0..BLOCKS {
            let _ = empty.send(Vec::new());
        }
        std::thread::spawn(move || {
            let mut first = true;
            while let Ok(mut block) = empty_rx.recv() {
                // Zeroed once per block: blocks go round at their full length.
                block.resize(BLOCK, 0);
                let (len, result) = fill(&mut stdout, &mut block);
                if first {
                    mark("dump: first block read");
                    first = false;
                }
                if len < BLOCK {
                    mark("dump: pipe closed");
                }
                if len > 0 && filled_tx.send(Ok((block, len))).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = filled_tx.send(Err(e));
                    return;
                }
                if len < BLOCK {
                    // The pipe's end; dropping the sender ends the stream.
                    return;
                }
            }
        });
        ReadAhead {
            filled,
            empty,
            current: Vec::new(),
            pos: 0,
            len: 0,
        }
    }
}

/// Reads until `block` is full or the pipe ends, pausing after reads that emptied the pipe;
/// how much was read, and the error that stopped it early.
fn fill(source: &mut impl Read, block: &mut [u8]) -> (usize, std::io::Result<()>) {
    let mut len = 0;
    while len < block.len() {
        match source.read(&mut block[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if n < SHORT_READ && len < block.len() {
                    std::thread::sleep(PAUSE);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (len, Err(e)),
        }
    }
    (len, Ok(()))
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.len {
            let (next, len) = match self.filled.recv() {
                Ok(block) => block?,
                Err(_) => return Ok(0),
            };
            let spent = std::mem::replace(&mut self.current, next);
            self.pos = 0;
            self.len = len;
            // Never blocks: only BLOCKS blocks exist.
            let _ = self.empty.try_send(spent);
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader over the concatenated output of several dumps, failing unless each dump exits 0
/// and ends with [`DUMP_TRAILER`].
pub struct DumpSource {
    pending: VecDeque<DumpCommand>,
    running: Option<Running>,
    tail: Vec<u8>,
    bytes: u64,
}

impl DumpSource {
    /// A source that runs `commands` in order when read. No process starts before the first read.
    pub fn new(commands: Vec<DumpCommand>) -> Self {
        DumpSource {
            pending: commands.into(),
            running: None,
            tail: Vec::with_capacity(TAIL_BYTES * 2),
            bytes: 0,
        }
    }

    /// Bytes produced so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Starts the first dump now rather than at the first read; its output is held in the
    /// read-ahead queue and the pipe (3 MiB) until then, after which it waits. Dropping the
    /// source kills the dump.
    pub fn start(&mut self) -> Result<(), DumpError> {
        if self.running.is_none() {
            self.start_next()?;
        }
        Ok(())
    }

    fn start_next(&mut self) -> Result<bool, DumpError> {
        let Some(cmd) = self.pending.pop_front() else {
            return Ok(false);
        };
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)));
        if let Some(lib) = stdbuf_library() {
            // What coreutils' `stdbuf -o 1M` does: its preloaded library gives stdout a 1 MiB
            // buffer, so the dump writes the pipe 1 MiB at a time instead of 4 KiB.
            let preload = match std::env::var("LD_PRELOAD") {
                Ok(existing) if !existing.is_empty() => format!("{existing}:{lib}"),
                _ => lib.to_owned(),
            };
            command
                .env("LD_PRELOAD", preload)
                .env("_STDBUF_O", STDOUT_BUFFER.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DumpError::Spawn {
                program: cmd.program.clone(),
                source,
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            // Both were requested as pipes above, so they are present.
            let _ = child.kill();
            let _ = child.wait();
            return Err(DumpError::Spawn {
                program: cmd.program,
                source: std::io::Error::other("no pipes"),
            });
        };
        mark("dump spawned");
        let stderr = std::thread::spawn(move || read_tail(stderr, STDERR_TAIL_BYTES));
        self.running = Some(Running {
            program: cmd.program,
            child,
            stdout: ReadAhead::spawn(stdout),
            stderr: Some(stderr),
        });
        self.tail.clear();
        Ok(true)
    }

    fn finish_current(&mut self) -> Result<(), DumpError> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        let status = running.child.wait().map_err(|source| DumpError::Spawn {
            program: running.program.clone(),
            source,
        })?;
        mark("dump exited");
        let stderr = running
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(DumpError::Exit {
                program: running.program,
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        if !ends_with_trailer(&self.tail) {
            return Err(DumpError::Truncated {
                program: running.program,
            });
        }
        Ok(())
    }

    fn remember_tail(&mut self, data: &[u8]) {
        if data.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - TAIL_BYTES..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TAIL_BYTES * 2 {
                let cut = self.tail.len() - TAIL_BYTES;
                self.tail.drain(..cut);
            }
        }
    }
}

impl Read for DumpSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.running.is_none() && !self.start_next().map_err(std::io::Error::other)? {
                return Ok(0);
            }
            let Some(running) = self.running.as_mut() else {
                return Ok(0);
            };
            let n = running.stdout.read(buf)?;
            if n > 0 {
                self.bytes += n as u64;
                self.remember_tail(&buf[..n]);
                return Ok(n);
            }
            self.finish_current().map_err(std::io::Error::other)?;
        }
    }
}

impl Drop for DumpSource {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// True when the last non-empty line starts with the completion trailer.
pub fn ends_with_trailer(tail: &[u8]) -> bool {
    let trimmed = match tail.iter().rposition(|b| !b.is_ascii_whitespace()) {
        Some(end) => &tail[..=end],
        None => return false,
    };
    let line_start = trimmed
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    trimmed[line_start..].starts_with(DUMP_TRAILER)
}

/// Reads `reader` to the end and keeps its last `max` bytes.
pub(crate) fn read_tail(mut reader: impl Read, max: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > max * 2 {
                    let cut = tail.len() - max;
                    tail.drain(..cut);
                }
            }
        }
    }
    if tail.len() > max {
        let cut = tail.len() - max;
        tail.drain(..cut);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> DumpCommand {
        DumpCommand {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
        }
    }

    fn read_all(source: &mut DumpSource) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        source.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn trailer_detection() {
        assert!(ends_with_trailer(
            b"INSERT 1;\n-- Dump completed on 2026-01-01\n\n"
        ));
        assert!(ends_with_trailer(b"-- Dump completed"));
        assert!(!ends_with_trailer(b"-- Dump completed\nINSERT 1;\n"));
        assert!(!ends_with_trailer(b""));
        assert!(!ends_with_trailer(
            b"INSERT INTO t VALUES ('-- Dump completed');\n"
        ));
    }

    #[test]
    fn complete_dumps_are_concatenated() {
        let mut source = DumpSource::new(vec![
            sh("printf 'a;\\n-- Dump completed on x\\n'"),
            sh("printf 'b;\\n-- Dump completed\\n'"),
        ]);
        let out = read_all(&mut source).unwrap();
        assert_eq!(out, b"a;\n-- Dump completed on x\nb;\n-- Dump completed\n");
        assert_eq!(source.bytes_read(), out.len() as u64);
    }

    #[test]
    fn failing_exit_status_is_a_read_error_before_eof() {
        let mut source = DumpSource::new(vec![sh(
            "printf 'a;\\n-- Dump completed\\n'; echo boom >&2; exit 2",
        )]);
        let err = read_all(&mut source).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn missing_trailer_is_a_read_error() {
        let mut source = DumpSource::new(vec![sh("printf 'a;\\nINSERT'")]);
        let err = read_all(&mut source).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_later_failing_dump_fails_the_whole_stream() {
        let mut source = DumpSource::new(vec![
            sh("printf 'a;\\n-- Dump completed\\n'"),
            sh("kill -9 $$"),
        ]);
        assert!(read_all(&mut source).is_err());
    }

    #[test]
    fn the_dump_runs_ahead_of_a_busy_reader() {
        // The dump writes 1 MiB, 16 times a pipe's buffer, then leaves a mark. The reader takes
        // one byte and waits for the mark: a dump writing straight into the pipe would block
        // long before it.
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("done");
        let script = format!(
            "head -c 1048576 /dev/zero; touch {}; printf '\\n-- Dump completed\\n'",
            mark.display()
        );
        let mut source = DumpSource::new(vec![sh(&script)]);
        let mut one = [0u8; 1];
        assert_eq!(source.read(&mut one).unwrap(), 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !mark.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(mark.exists(), "the dump stalled on a full pipe");
        let rest = read_all(&mut source).unwrap();
        assert_eq!(rest.len() + 1, 1048576 + "\n-- Dump completed\n".len());
    }

    #[test]
    fn the_dump_gets_a_large_stdout_buffer_when_coreutils_has_stdbuf() {
        // The child's view: the preloaded library and its buffer size, or neither. (The effect,
        // 1 MiB writes instead of 4 KiB ones, is measured in bench/datapath.)
        let mut source = DumpSource::new(vec![sh(
            "printf '%s|%s\\n' \"${LD_PRELOAD:-}\" \"${_STDBUF_O:-}\"; echo '-- Dump completed'",
        )]);
        let out = String::from_utf8(read_all(&mut source).unwrap()).unwrap();
        let first = out.lines().next().unwrap();
        match stdbuf_library() {
            Some(lib) => {
                let (preload, size) = first.split_once('|').unwrap();
                assert!(preload.split(':').any(|p| p == lib), "{first}");
                assert_eq!(size, "1048576");
            }
            None => assert_eq!(first, "|"),
        }
        // A stdio program's output passes through the buffer unchanged.
        let mut source = DumpSource::new(vec![sh("seq 1 200000; echo '-- Dump completed'")]);
        let out = read_all(&mut source).unwrap();
        let want: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
        assert_eq!(&out[..want.len()], want.as_bytes());
    }

    #[test]
    fn a_started_dump_runs_before_the_first_read() {
        // 2 MiB before any read: what the queue holds, the pipe taking the rest.
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("done");
        let script = format!(
            "head -c 2097152 /dev/zero; touch {}; printf '\\n-- Dump completed\\n'",
            mark.display()
        );
        let mut source = DumpSource::new(vec![sh(&script)]);
        source.start().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !mark.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            mark.exists(),
            "the started dump did not run before the first read"
        );
        let out = read_all(&mut source).unwrap();
        assert_eq!(out.len(), 2097152 + "\n-- Dump completed\n".len());
    }

    #[test]
    fn missing_program_is_an_error() {
        let mut source = DumpSource::new(vec![DumpCommand {
            program: "/nonexistent/mysqldump".into(),
            args: vec![],
            env: vec![],
        }]);
        assert!(read_all(&mut source).is_err());
    }
}
