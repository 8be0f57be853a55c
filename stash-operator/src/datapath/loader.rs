//! Loading a dump stream into a database.
//!
//! [`load_with_protocol`] is the fast path: it splits the stream into statements itself and
//! sends them over the MySQL protocol in multi-statement batches inside large transactions
//! (the `mysql` client spends most of a restore parsing, and commits every statement).
//! [`load_with_client`] pipes the stream into the `mysql` client, as Stash does.

use std::io::{BufReader, Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use mysql::prelude::Queryable;

use super::deferred_stats;
use super::dump_source::read_tail;
use super::load_data::{append_rows, parse_insert_head, RowsTarget, ROWS_FILE};
use super::mysql_client::{ClientOptionFile, DbTarget};
use super::statements::{as_text, StatementReader};

/// Statements are sent together until a batch reaches this many bytes (well below the 16 MiB
/// default `max_allowed_packet`).
pub(crate) const BATCH_BYTES: usize = 2 << 20;
/// A transaction is committed once this many bytes of statements went into it.
const COMMIT_BYTES: usize = 64 << 20;

/// Which loader a restore uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderKind {
    /// Own statement splitter, MySQL protocol, batched transactions.
    Protocol,
    /// As `Protocol`, with the batches of each table's rows over parallel connections in turn.
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

/// What the splitting thread hands to a sending one.
pub(crate) enum Work {
    /// Statements joined with `;` (or one compound statement), numbered from `first`.
    Batch { sql: String, first: u64, last: u64 },
    /// The rows of consecutive `INSERT`s into one table, for `LOAD DATA`.
    Rows(RowsBatch),
    /// The stream ended cleanly after this many bytes.
    End { bytes: u64 },
    /// Commit what came before and answer with the first error since the last barrier (the
    /// parallel loader's workers).
    Barrier(SyncSender<Result<(), LoadError>>),
}

/// Rows of statements `first..=last`, all into `target`.
pub(crate) struct RowsBatch {
    target: RowsTarget,
    /// The rows in `LOAD DATA`'s format.
    rows: Vec<u8>,
    count: u64,
    /// The statements as the dump wrote them, joined with `;`: sent instead when the session
    /// cannot take the rows as `LOAD DATA` (the server refuses `LOCAL INFILE`, or a character
    /// set or SQL mode under which the conversion would not be exact).
    original: Vec<u8>,
    first: u64,
    last: u64,
}

/// Batches in flight between the threads: enough to keep the server busy while the next ones
/// are split, bounded so memory stays flat.
const QUEUED_BATCHES: usize = 4;

/// Error codes of a server that refuses `LOAD DATA LOCAL`: MariaDB before 10.5 (1148), MySQL 8
/// (3948), MariaDB 10.5 and later (4166).
const LOCAL_INFILE_REFUSED: [u16; 3] = [1148, 3948, 4166];

/// Client character sets in which a backslash or quote byte is never part of a multibyte
/// character, so the dump's string escapes decode the same way byte by byte.
const BYTE_SAFE_CHARSETS: [&str; 6] = ["utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"];

/// What the session allows for `LOAD DATA`, asked again after any statement that may have
/// changed it.
struct Session {
    /// The client character set, when rows can be loaded with it.
    charset: Option<String>,
    strict: bool,
}

fn statement_error(index: u64, e: mysql::Error) -> LoadError {
    LoadError::Statement {
        index,
        message: e.to_string(),
    }
}

/// Sends rows as `LOAD DATA LOCAL INFILE`, or as the original statements when it cannot.
struct RowsLoader {
    /// The rows the local-infile handler hands to the server next.
    slot: Arc<Mutex<Vec<u8>>>,
    session: Option<Session>,
    /// The server refused `LOCAL INFILE`: the splitter stops converting.
    refused: Arc<AtomicBool>,
}

impl RowsLoader {
    fn new(conn: &mut mysql::Conn, refused: Arc<AtomicBool>) -> Self {
        let slot = Arc::new(Mutex::new(Vec::new()));
        let rows = Arc::clone(&slot);
        conn.set_local_infile_handler(Some(mysql::LocalInfileHandler::new(move |name, out| {
            // Only our own rows: a `LOAD DATA LOCAL` of any other name in the dump gets
            // an empty file, never one of this machine's.
            if name != ROWS_FILE.as_bytes() {
                return Ok(());
            }
            let rows = std::mem::take(
                &mut *rows
                    .lock()
                    .map_err(|_| std::io::Error::other("rows buffer poisoned"))?,
            );
            out.write_all(&rows)
        })));
        RowsLoader {
            slot,
            session: None,
            refused,
        }
    }

    /// Statements other than rows may change the character set or SQL mode.
    fn session_changed(&mut self) {
        self.session = None;
    }

    fn session(&mut self, conn: &mut mysql::Conn, index: u64) -> Result<&Session, LoadError> {
        if self.session.is_none() {
            let (client, connection, mode, local): (String, String, String, i64) = conn
                .query_first(
                    "SELECT @@character_set_client, @@character_set_connection, @@sql_mode, \
                     @@local_infile + 0",
                )
                .map_err(|e| statement_error(index, e))?
                .unwrap_or_default();
            let exact = client == connection
                && BYTE_SAFE_CHARSETS.contains(&client.as_str())
                && !mode.contains("NO_BACKSLASH_ESCAPES");
            if local == 0 {
                self.refused.store(true, Ordering::Relaxed);
            }
            self.session = Some(Session {
                charset: (exact && local != 0).then_some(client),
                strict: mode.contains("STRICT_"),
            });
        }
        Ok(self.session.get_or_insert(Session {
            charset: None,
            strict: false,
        }))
    }

    fn load(&mut self, conn: &mut mysql::Conn, mut batch: RowsBatch) -> Result<(), LoadError> {
        let session = self.session(conn, batch.first)?;
        let strict = session.strict;
        let Some(charset) = session.charset.clone() else {
            return send_original(conn, &batch);
        };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = batch.take_rows();
        }
        let loaded = conn.query_drop(batch.target.load_statement(&charset));
        if let Ok(mut slot) = self.slot.lock() {
            slot.clear();
        }
        match loaded {
            Ok(()) => {}
            Err(mysql::Error::MySqlError(e)) if LOCAL_INFILE_REFUSED.contains(&e.code) => {
                self.refused.store(true, Ordering::Relaxed);
                self.session = None;
                return send_original(conn, &batch);
            }
            Err(e) => return Err(statement_error(batch.first, e)),
        }
        let stored = conn.affected_rows();
        let warnings = conn.warnings();
        // `LOCAL` turns errors into warnings (a duplicate key skips its row): fail as the
        // `INSERT` would have.
        if stored != batch.count || (warnings > 0 && strict) {
            let shown: Vec<(String, u32, String)> = conn
                .query("SHOW WARNINGS LIMIT 3")
                .map_err(|e| statement_error(batch.first, e))?;
            let shown: Vec<String> = shown
                .into_iter()
                .map(|(level, code, message)| format!("{level} {code}: {message}"))
                .collect();
            return Err(LoadError::Statement {
                index: batch.first,
                message: format!(
                    "rows of {} (statements {} to {}): {stored} of {} stored, {warnings} \
                     warnings: {}",
                    batch.target.table,
                    batch.first,
                    batch.last,
                    batch.count,
                    shown.join("; ")
                ),
            });
        }
        Ok(())
    }
}

fn send_original(conn: &mut mysql::Conn, batch: &RowsBatch) -> Result<(), LoadError> {
    let text = as_text(&batch.original)?;
    conn.query_drop(text.as_ref())
        .map_err(|e| statement_error(batch.first, e))
}

impl RowsBatch {
    /// Hands the rows over, leaving the batch without them.
    fn take_rows(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rows)
    }
}

/// One connection of a load: runs batches and rows in order in transactions of about
/// [`COMMIT_BYTES`].
pub(crate) struct Executor {
    conn: mysql::Conn,
    rows: RowsLoader,
    since_commit: usize,
}

impl Executor {
    /// Connects with `autocommit=0`; `refused` is set once the server refuses `LOCAL INFILE`.
    pub(crate) fn connect(target: &DbTarget, refused: Arc<AtomicBool>) -> Result<Self, LoadError> {
        let mut conn = connect(target)?;
        conn.query_drop("SET autocommit=0")
            .map_err(|e| statement_error(0, e))?;
        let rows = RowsLoader::new(&mut conn, refused);
        Ok(Executor {
            conn,
            rows,
            since_commit: 0,
        })
    }

    /// Runs a batch of statements or loads a batch of rows; returns the number of the last
    /// statement it held. `End` and `Barrier` are the caller's.
    pub(crate) fn apply(&mut self, work: Work) -> Result<u64, LoadError> {
        let (size, last) = match work {
            Work::Batch { sql, first, last } => {
                self.conn
                    .query_drop(sql.as_str())
                    .map_err(|e| statement_error(first, e))?;
                self.rows.session_changed();
                (sql.len(), last)
            }
            Work::Rows(batch) => {
                let (size, last) = (batch.rows.len(), batch.last);
                self.rows.load(&mut self.conn, batch)?;
                (size, last)
            }
            Work::End { .. } | Work::Barrier(_) => return Ok(0),
        };
        self.since_commit += size;
        if self.since_commit >= COMMIT_BYTES {
            self.commit(last)?;
        }
        Ok(last)
    }

    pub(crate) fn commit(&mut self, index: u64) -> Result<(), LoadError> {
        self.since_commit = 0;
        self.conn
            .query_drop("COMMIT")
            .map_err(|e| statement_error(index, e))
    }

    pub(crate) fn rollback(&mut self) {
        self.since_commit = 0;
        let _ = self.conn.query_drop("ROLLBACK");
    }
}

/// Sends every statement of `dump` to `target` in batched transactions. One thread reads and
/// splits the stream while this one waits on the server, so both cores work. The rows of
/// extended `INSERT`s go as `LOAD DATA LOCAL INFILE` where that is exact (`load_data`), and
/// the statistics of each table are computed once after its rows (`deferred_stats`). On any
/// error the open transaction is rolled back and the error returned; DDL already executed stays
/// (MySQL commits DDL implicitly), as with the `mysql` client.
pub fn load_with_protocol(
    dump: impl Read + Send,
    target: &DbTarget,
) -> Result<LoadStats, LoadError> {
    let refused = Arc::new(AtomicBool::new(false));
    let mut exec = Executor::connect(target, Arc::clone(&refused))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Work, LoadError>>(QUEUED_BATCHES);
    let result = std::thread::scope(|scope| {
        scope.spawn(move || split_into_batches(dump, tx, &refused));
        let mut statements = 0u64;
        // Dropping `rx` on error stops the splitting thread at its next send.
        for work in rx {
            match work? {
                Work::End { bytes } => {
                    exec.commit(statements)?;
                    return Ok(LoadStats { bytes, statements });
                }
                Work::Barrier(ack) => {
                    let _ = ack.send(exec.commit(statements));
                }
                work => statements = exec.apply(work)?,
            }
        }
        Err(LoadError::Read(std::io::Error::other(
            "statement splitter stopped early",
        )))
    });
    if result.is_err() {
        exec.rollback();
    }
    result
}

/// Gathers statements into batches and rows into `LOAD DATA` batches, in dump order, and sends
/// them; every send returns false once the receiver is gone.
pub(crate) struct Batcher {
    tx: SyncSender<Result<Work, LoadError>>,
    sql: String,
    first: u64,
    last: u64,
    rows: Option<RowsBatch>,
    /// The table whose statistics are deferred until its rows are in.
    deferred: Option<String>,
}

impl Batcher {
    pub(crate) fn new(tx: SyncSender<Result<Work, LoadError>>) -> Self {
        Batcher {
            tx,
            sql: String::with_capacity(BATCH_BYTES + (1 << 16)),
            first: 1,
            last: 0,
            rows: None,
            deferred: None,
        }
    }

    /// Sends what is gathered; false once the receiver is gone.
    pub(crate) fn flush(&mut self) -> bool {
        self.flush_rows() && self.flush_statements()
    }

    /// Sends what is gathered, then `work`; false once the receiver is gone.
    pub(crate) fn send_after(&mut self, work: Work) -> bool {
        self.flush() && self.tx.send(Ok(work)).is_ok()
    }

    /// Bytes gathered and not sent yet (rows counted as the dump wrote them).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.sql.len() + self.rows.as_ref().map_or(0, |b| b.original.len())
    }

    fn flush_statements(&mut self) -> bool {
        if self.sql.is_empty() {
            return true;
        }
        let sql = std::mem::replace(
            &mut self.sql,
            String::with_capacity(BATCH_BYTES + (1 << 16)),
        );
        self.tx
            .send(Ok(Work::Batch {
                sql,
                first: self.first,
                last: self.last,
            }))
            .is_ok()
    }

    fn flush_rows(&mut self) -> bool {
        match self.rows.take() {
            Some(batch) => self.tx.send(Ok(Work::Rows(batch))).is_ok(),
            None => true,
        }
    }

    pub(crate) fn push_statement(&mut self, text: &str, index: u64) -> bool {
        // Full batches go before they would outgrow their buffer (growing doubles it).
        if !self.flush_rows()
            || (self.sql.len() + text.len() > BATCH_BYTES && !self.flush_statements())
        {
            return false;
        }
        if self.sql.is_empty() {
            self.first = index;
        } else {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(text);
        self.last = index;
        self.sql.len() < BATCH_BYTES || self.flush_statements()
    }

    /// A statement that must go alone (a body with its own semicolons).
    pub(crate) fn push_alone(&mut self, text: &str, index: u64) -> bool {
        self.flush_statements() && self.push_statement(text, index) && self.flush_statements()
    }

    /// Adds the rows of an `INSERT` to the rows batch of its table; false in `Ok` when the
    /// statement cannot be converted and must be sent as a statement.
    pub(crate) fn push_rows(&mut self, sql: &[u8], index: u64) -> Result<bool, ()> {
        let Some((target, start)) = parse_insert_head(sql) else {
            return Ok(false);
        };
        let full = |b: &RowsBatch| b.target != target || b.original.len() + sql.len() > BATCH_BYTES;
        if self.rows.as_ref().is_some_and(full) && !self.flush_rows() {
            return Err(());
        }
        if !self.flush_statements() {
            return Err(());
        }
        let batch = self.rows.get_or_insert_with(|| RowsBatch {
            target,
            rows: Vec::with_capacity(BATCH_BYTES + (1 << 16)),
            count: 0,
            original: Vec::with_capacity(BATCH_BYTES + (1 << 16)),
            first: index,
            last: index,
        });
        let Some(count) = append_rows(sql, start, &mut batch.rows) else {
            if batch.count == 0 {
                self.rows = None;
            }
            return Ok(false);
        };
        batch.count += count;
        batch.last = index;
        if !batch.original.is_empty() {
            batch.original.extend_from_slice(b";\n");
        }
        batch.original.extend_from_slice(sql);
        Ok(true)
    }

    /// Computes the statistics of the table whose rows just ended.
    fn end_deferred(&mut self, index: u64) -> bool {
        match self.deferred.take() {
            Some(table) => deferred_stats::restore(&table)
                .iter()
                .all(|sql| self.push_statement(sql, index)),
            None => true,
        }
    }
}

/// Splits `dump` into batches and sends them; stops quietly when the receiver is gone. Once the
/// server refused `LOCAL INFILE` (`refused`), rows stay statements.
fn split_into_batches(
    dump: impl Read,
    tx: SyncSender<Result<Work, LoadError>>,
    refused: &AtomicBool,
) {
    let mut counting = Counting::new(dump);
    let mut statements = 0u64;
    let mut out = Batcher::new(tx.clone());
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
        if !stmt.compound && !refused.load(Ordering::Relaxed) {
            match out.push_rows(&stmt.sql, statements) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(()) => return,
            }
        }
        let text = match as_text(&stmt.sql) {
            Ok(text) => text,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        if (stmt.compound || !deferred_stats::within_table_data(&text))
            && !out.end_deferred(statements)
        {
            return;
        }
        let sent = if stmt.compound {
            out.push_alone(&text, statements)
        } else {
            out.push_statement(&text, statements)
        };
        if !sent {
            return;
        }
        if let Some(table) = deferred_stats::deferrable_table(&text).filter(|_| !stmt.compound) {
            if !out.push_statement(&deferred_stats::defer(table), statements) {
                return;
            }
            out.deferred = Some(table.to_owned());
        }
    }
    if out.end_deferred(statements) {
        out.send_after(Work::End {
            bytes: counting.bytes_read(),
        });
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
