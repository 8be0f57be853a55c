//! Loading a dump stream into a database.
//!
//! [`load_with_protocol`] is the fast path: it splits the stream into statements itself and
//! sends them over the MySQL protocol in multi-statement batches inside large transactions
//! (the `mysql` client spends most of a restore parsing, and commits every statement).
//! [`load_with_client`] pipes the stream into the `mysql` client, as Stash does.

use std::io::{BufReader, Read, Write};
use std::process::Stdio;

use mysql::prelude::Queryable;

use super::dump_source::read_tail;
use super::mysql_client::{ClientOptionFile, DbTarget};
use super::statements::{as_text, StatementReader};

/// Statements are sent together until a batch reaches this many bytes (well below the 16 MiB
/// default `max_allowed_packet`).
const BATCH_BYTES: usize = 2 << 20;
/// A transaction is committed once this many bytes of statements went into it.
const COMMIT_BYTES: usize = 64 << 20;

/// Which loader a restore uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderKind {
    /// Own statement splitter, MySQL protocol, batched transactions.
    Protocol,
    /// As `Protocol`, with the rows of different tables loaded over parallel connections.
    Parallel,
    /// The `mysql` command-line client.
    Client,
}

impl std::str::FromStr for LoaderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "protocol" => Ok(LoaderKind::Protocol),
            "parallel" => Ok(LoaderKind::Parallel),
            "client" => Ok(LoaderKind::Client),
            other => Err(format!(
                "unknown loader {other:?} (parallel|protocol|client)"
            )),
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Bytes read from the stream.
    pub bytes: u64,
    /// Statements executed (protocol loader only).
    pub statements: u64,
}

/// Errors while loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the dump stream failed (the repository read failed).
    #[error("reading the dump failed: {0}")]
    Read(std::io::Error),
    /// Connecting to the database failed.
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// The host.
        host: String,
        /// The driver's message.
        message: String,
    },
    /// A statement failed.
    #[error("statement {index} failed: {message}")]
    Statement {
        /// 1-based number of the statement (first of its batch).
        index: u64,
        /// The server's message.
        message: String,
    },
    /// A statement cannot be sent as text.
    #[error(transparent)]
    NotText(#[from] super::statements::NotText),
    /// The `mysql` client could not run or failed.
    #[error("{program} failed: {message}")]
    Client {
        /// The program.
        program: String,
        /// What happened.
        message: String,
    },
}

impl LoadError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Read(_) => "SnapshotReadFailed",
            LoadError::Connect { .. } => "DatabaseUnreachable",
            LoadError::Statement { .. } | LoadError::NotText(_) => "StatementFailed",
            LoadError::Client { .. } => "ClientFailed",
        }
    }
}

pub(crate) fn connect(target: &DbTarget) -> Result<mysql::Conn, LoadError> {
    let mut opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(target.host.clone()))
        .user(Some(target.user.clone()))
        .pass(Some(target.password.clone()))
        .prefer_socket(false);
    if target.port != 0 {
        opts = opts.tcp_port(target.port);
    }
    if let Some(ca) = &target.ssl_ca {
        opts = opts.ssl_opts(mysql::SslOpts::default().with_root_cert_path(Some(ca.clone())));
    }
    mysql::Conn::new(opts).map_err(|e| LoadError::Connect {
        host: target.host.clone(),
        message: e.to_string(),
    })
}

/// Counts what passes through, so the stats hold the bytes of the stream.
pub(crate) struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R) -> Self {
        Counting { inner, bytes: 0 }
    }

    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What the splitting thread hands to the sending one.
enum Work {
    /// Statements joined with `;` (or one compound statement), numbered from `first`.
    Batch { sql: String, first: u64, last: u64 },
    /// The stream ended cleanly after this many bytes.
    End { bytes: u64 },
}

/// Batches in flight between the threads: enough to keep the server busy while the next ones
/// are split, bounded so memory stays flat.
const QUEUED_BATCHES: usize = 4;

/// Sends every statement of `dump` to `target` in batched transactions. One thread reads and
/// splits the stream while this one waits on the server, so both cores work. On any error the
/// open transaction is rolled back and the error returned; DDL already executed stays (MySQL
/// commits DDL implicitly), as with the `mysql` client.
pub fn load_with_protocol(
    dump: impl Read + Send,
    target: &DbTarget,
) -> Result<LoadStats, LoadError> {
    let mut conn = connect(target)?;
    let statement_error = |index: u64, e: mysql::Error| LoadError::Statement {
        index,
        message: e.to_string(),
    };
    conn.query_drop("SET autocommit=0")
        .map_err(|e| statement_error(0, e))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Work, LoadError>>(QUEUED_BATCHES);
    let result = std::thread::scope(|scope| {
        scope.spawn(move || split_into_batches(dump, &tx));
        let mut since_commit = 0usize;
        let mut statements = 0u64;
        // Dropping `rx` on error stops the splitting thread at its next send.
        for work in rx {
            match work? {
                Work::Batch { sql, first, last } => {
                    conn.query_drop(sql.as_str())
                        .map_err(|e| statement_error(first, e))?;
                    statements = last;
                    since_commit += sql.len();
                    if since_commit >= COMMIT_BYTES {
                        conn.query_drop("COMMIT")
                            .map_err(|e| statement_error(last, e))?;
                        since_commit = 0;
                    }
                }
                Work::End { bytes } => {
                    conn.query_drop("COMMIT")
                        .map_err(|e| statement_error(statements, e))?;
                    return Ok(LoadStats { bytes, statements });
                }
            }
        }
        Err(LoadError::Read(std::io::Error::other(
            "statement splitter stopped early",
        )))
    });
    if result.is_err() {
        let _ = conn.query_drop("ROLLBACK");
    }
    result
}

/// Splits `dump` into batches and sends them; stops quietly when the receiver is gone.
fn split_into_batches(dump: impl Read, tx: &std::sync::mpsc::SyncSender<Result<Work, LoadError>>) {
    let mut counting = Counting {
        inner: dump,
        bytes: 0,
    };
    let mut statements = 0u64;
    let mut batch = String::with_capacity(BATCH_BYTES + (1 << 16));
    let mut first = 1u64;
    let send_batch = |batch: &mut String, first: u64, last: u64| -> bool {
        if batch.is_empty() {
            return true;
        }
        let sql = std::mem::replace(batch, String::with_capacity(BATCH_BYTES + (1 << 16)));
        tx.send(Ok(Work::Batch { sql, first, last })).is_ok()
    };
    let reader = StatementReader::new(BufReader::with_capacity(1 << 20, &mut counting));
    for stmt in reader {
        let stmt = match stmt {
            Ok(stmt) => stmt,
            Err(e) => {
                let _ = tx.send(Err(LoadError::Read(e)));
                return;
            }
        };
        statements += 1;
        let text = match as_text(&stmt.sql) {
            Ok(text) => text,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        if stmt.compound {
            // Bodies with their own semicolons go alone, after what came before them.
            if !send_batch(&mut batch, first, statements - 1) {
                return;
            }
            batch.push_str(&text);
            if !send_batch(&mut batch, statements, statements) {
                return;
            }
            first = statements + 1;
            continue;
        }
        if batch.is_empty() {
            first = statements;
        } else {
            batch.push_str(";\n");
        }
        batch.push_str(&text);
        if batch.len() >= BATCH_BYTES && !send_batch(&mut batch, first, statements) {
            return;
        }
    }
    if send_batch(&mut batch, first, statements) {
        let _ = tx.send(Ok(Work::End {
            bytes: counting.bytes,
        }));
    }
}

/// Pipes `dump` into the `mysql` client (`program`) with `extra_args`. A failing stream kills
/// the client and fails the load.
pub fn load_with_client(
    mut dump: impl Read,
    target: &DbTarget,
    program: &str,
    extra_args: &[String],
) -> Result<LoadStats, LoadError> {
    let client_error = |message: String| LoadError::Client {
        program: program.to_owned(),
        message,
    };
    let options = ClientOptionFile::write(target)
        .map_err(|e| client_error(format!("cannot write the client option file: {e}")))?;
    let mut child = target
        .client(program, &options)
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| client_error(e.to_string()))?;
    let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(client_error("no pipes".to_owned()));
    };
    let stderr = std::thread::spawn(move || read_tail(stderr, 2048));
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    let copied: Result<bool, LoadError> = loop {
        let n = match dump.read(&mut buf) {
            Ok(0) => break Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(LoadError::Read(e)),
        };
        if stdin.write_all(&buf[..n]).is_err() {
            // The client stopped reading: its exit status and stderr say why.
            break Ok(false);
        }
        bytes += n as u64;
    };
    let complete = match copied {
        Ok(complete) => complete,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    drop(stdin);
    let status = child.wait().map_err(|e| client_error(e.to_string()))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(client_error(format!(
            "{status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    if !complete {
        return Err(client_error(
            "stopped reading before the end of the dump".to_owned(),
        ));
    }
    Ok(LoadStats {
        bytes,
        statements: 0,
    })
}
