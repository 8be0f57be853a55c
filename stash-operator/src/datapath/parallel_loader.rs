//! Loading one dump stream over several connections.
//!
//! A `mysqldump` stream is sequential and holds one table after the other, so splitting it by
//! table gives the connections little to do side by side: with bounded queues, the next
//! table's rows arrive only once the previous table's have been read. The rows of one table
//! are independent too, so this loader hands the batches of a table's rows to the connections
//! in turn (as myloader loads the chunks of one table in parallel). Each batch goes as `LOAD
//! DATA LOCAL INFILE` where that is exact, as in the one-connection loader (`load_data`), and
//! each table's statistics are computed once after its rows (`deferred_stats`). Statements are
//! routed by kind:
//! - session settings (`SET ...` outside GLOBAL, `USE`) go to every connection, in order;
//! - `INSERT INTO \`t\` ... VALUES` goes to the row connection whose turn it is;
//! - `CREATE/DROP TABLE` and `CREATE DATABASE` run on the control connection at once, unless
//!   they name a table with rows in flight;
//! - `LOCK TABLES`, `UNLOCK TABLES` and `ALTER TABLE ... DISABLE/ENABLE KEYS` are dropped: they
//!   only speed up MyISAM loads and would serialise the workers;
//! - anything else (triggers, routines, views, GLOBAL settings, unknown statements) waits until
//!   every worker has committed what it has, then runs on the control connection, so a trigger
//!   never sees rows that were restored before it in the dump.
//!
//! When a table's data section ends, every worker commits (so no open transaction holds the
//! table) and one worker gives the table its statistics back while the others go on.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use mysql::prelude::Queryable;

use super::deferred_stats;
use super::load_data::{parse_insert_head, quoted_identifier};
use super::loader::{connect, Batcher, Counting, Executor, LoadError, LoadStats, Work};
use super::mysql_client::DbTarget;
use super::statements::{as_text, Statement, StatementReader};

/// Bytes of statements per chunk from the splitting thread.
const CHUNK_BYTES: usize = 2 << 20;
/// Batches queued per worker (besides the one it runs and the one being gathered).
const QUEUED: usize = 1;

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Everywhere,
    Drop,
    /// Rows for a table, named with its backquotes.
    Rows(String),
    Structure(Option<String>),
    AfterBarrier,
}

/// Strips a leading `/*!NNNNN ` or `/*M!NNNNNN ` version comment opener.
pub(crate) fn without_version_comment(sql: &str) -> &str {
    let rest = sql.strip_prefix("/*!").or_else(|| sql.strip_prefix("/*M!"));
    match rest {
        Some(r) => r
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start(),
        None => sql,
    }
}

/// The first backquoted identifier, with its backquotes (doubled ones inside kept).
fn first_quoted(sql: &str) -> Option<String> {
    let start = sql.find('`')?;
    let end = quoted_identifier(sql.as_bytes(), start)?;
    Some(sql[start..end].to_owned())
}

pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn route(sql: &str, compound: bool) -> Route {
    if compound {
        return Route::AfterBarrier;
    }
    let s = without_version_comment(sql);
    let head: String = s.chars().take(64).collect::<String>().to_ascii_uppercase();
    if head.starts_with("SET ") {
        if head.contains("GLOBAL") || s.contains("@@GLOBAL") {
            return Route::AfterBarrier;
        }
        return Route::Everywhere;
    }
    if head.starts_with("USE ") {
        return Route::Everywhere;
    }
    if head.starts_with("LOCK TABLES") || head.starts_with("UNLOCK TABLES") {
        return Route::Drop;
    }
    if head.starts_with("ALTER TABLE")
        && (s.ends_with("DISABLE KEYS */")
            || s.ends_with("ENABLE KEYS */")
            || s.ends_with("DISABLE KEYS")
            || s.ends_with("ENABLE KEYS"))
    {
        return Route::Drop;
    }
    if let Some((target, _)) = parse_insert_head(s.as_bytes()) {
        return Route::Rows(target.table);
    }
    if head.starts_with("CREATE TABLE") || head.starts_with("DROP TABLE") {
        return Route::Structure(first_quoted(s));
    }
    if head.starts_with("CREATE DATABASE") {
        return Route::Structure(None);
    }
    Route::AfterBarrier
}

fn worker_gone() -> LoadError {
    LoadError::Statement {
        index: 0,
        message: "a loader connection stopped".to_owned(),
    }
}

/// Runs what it is sent; after an error it skips everything up to the next barrier, which
/// rolls back and reports the error.
fn run_worker(mut exec: Executor, rx: Receiver<Result<Work, LoadError>>, failed: &AtomicBool) {
    let mut error: Option<LoadError> = None;
    let mut last = 0u64;
    for work in rx {
        match work {
            Ok(Work::Barrier(ack)) => {
                let result = match error.take() {
                    Some(e) => {
                        exec.rollback();
                        Err(e)
                    }
                    None => exec.commit(last),
                };
                let _ = ack.send(result);
            }
            _ if error.is_some() => {}
            Ok(work) => match exec.apply(work) {
                Ok(index) => last = index,
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    error = Some(e);
                }
            },
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                error = Some(e);
            }
        }
    }
    exec.rollback();
}

/// Statements in chunks from the splitting thread.
enum Chunk {
    Statements(Vec<Statement>),
    End(u64),
}

fn split(dump: impl Read, tx: &SyncSender<Result<Chunk, LoadError>>) {
    let mut counting = Counting::new(dump);
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0usize;
    let reader = StatementReader::new(BufReader::with_capacity(1 << 20, &mut counting));
    for stmt in reader {
        let stmt = match stmt {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(LoadError::Read(e)));
                return;
            }
        };
        chunk_bytes += stmt.sql.len();
        chunk.push(stmt);
        if chunk_bytes >= CHUNK_BYTES {
            chunk_bytes = 0;
            if tx
                .send(Ok(Chunk::Statements(std::mem::take(&mut chunk))))
                .is_err()
            {
                return;
            }
        }
    }
    if tx.send(Ok(Chunk::Statements(chunk))).is_ok() {
        let _ = tx.send(Ok(Chunk::End(counting.bytes_read())));
    }
}

/// Loads `dump` with `workers` row connections plus one control connection (see the module
/// documentation for how statements are routed). Same outcome as the sequential loaders.
pub fn load_by_table(
    dump: impl Read + Send,
    target: &DbTarget,
    workers: usize,
) -> Result<LoadStats, LoadError> {
    let workers = workers.max(1);
    let refused = Arc::new(AtomicBool::new(false));
    let control = connect(target)?;
    let mut execs = Vec::with_capacity(workers);
    for _ in 0..workers {
        execs.push(Executor::connect(target, Arc::clone(&refused))?);
    }
    let failed = AtomicBool::new(false);
    let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk, LoadError>>(QUEUED);
    std::thread::scope(|scope| {
        scope.spawn(move || split(dump, &chunk_tx));
        let mut pool: Vec<Batcher> = Vec::with_capacity(workers);
        for exec in execs {
            let (tx, rx) = sync_channel(QUEUED);
            let failed = &failed;
            scope.spawn(move || run_worker(exec, rx, failed));
            pool.push(Batcher::new(tx));
        }
        let mut dispatch = Dispatch {
            control,
            pool,
            refused: &refused,
            turn: 0,
            database: String::new(),
            in_flight: HashSet::new(),
            deferred: None,
            analyzing: HashSet::new(),
            opened: HashSet::new(),
            opening: None,
        };
        let result = dispatch.run(chunk_rx, &failed);
        // Closing the queues ends the workers; their open transactions roll back.
        drop(dispatch);
        result
    })
}

/// The dispatching side: the control connection and the workers' batchers.
struct Dispatch<'a> {
    control: mysql::Conn,
    pool: Vec<Batcher>,
    refused: &'a AtomicBool,
    /// The worker that gets the next rows.
    turn: usize,
    /// The current database (`USE`), backquoted.
    database: String,
    /// `database.table` with rows sent since the last barrier.
    in_flight: HashSet<String>,
    /// The table whose statistics are deferred until its data section ends.
    deferred: Option<String>,
    /// Tables whose statistics a worker has been asked to compute since the last barrier: more
    /// rows for them wait for a barrier first, so that no other worker holds the table while
    /// that one alters it.
    analyzing: HashSet<String>,
    /// Tables known to hold committed rows: any connection may insert into them.
    opened: HashSet<String>,
    /// The table whose first rows went to the current worker, not committed yet.
    opening: Option<String>,
}

impl Dispatch<'_> {
    fn run_control(&mut self, sql: &str, index: u64) -> Result<(), LoadError> {
        self.control
            .query_drop(sql)
            .map_err(|e| LoadError::Statement {
                index,
                message: e.to_string(),
            })
    }

    fn barrier(&mut self) -> Result<(), LoadError> {
        let mut acks = Vec::with_capacity(self.pool.len());
        for worker in &mut self.pool {
            let (ack_tx, ack_rx) = sync_channel(1);
            if !worker.send_after(Work::Barrier(ack_tx)) {
                return Err(worker_gone());
            }
            acks.push(ack_rx);
        }
        // What was in flight is committed (or the load fails).
        self.opened.extend(self.in_flight.drain());
        self.opening = None;
        self.analyzing.clear();
        let mut first_error = None;
        for ack in acks {
            let result = ack.recv().unwrap_or_else(|_| Err(worker_gone()));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The worker for the rows of `table` (`len` bytes): the current one while its batch has
    /// room, else the next in turn. A table's first batch is committed before the next goes
    /// out: InnoDB locks a whole empty table for the transaction that inserts into it first
    /// (MariaDB 10.6 and later), so a second connection would wait for that commit while the
    /// first one waits for more rows.
    fn rows_worker(&mut self, table: &str, len: usize) -> Result<usize, LoadError> {
        let key = format!("{}.{table}", self.database);
        if self.analyzing.contains(&key) {
            self.barrier()?;
        }
        if !self.opened.contains(&key) && self.opening.as_ref() != Some(&key) {
            // Its earlier rows, on whichever worker, are committed first.
            if self.in_flight.contains(&key) {
                self.barrier()?;
            }
            self.opening = Some(key.clone());
        }
        if self.pool[self.turn].pending_bytes() + len > super::loader::BATCH_BYTES {
            if self.opening.as_ref() == Some(&key) {
                self.commit_one(self.turn)?;
                self.opening = None;
                self.opened.insert(key.clone());
            } else if !self.pool[self.turn].flush() {
                return Err(worker_gone());
            }
            self.turn = (self.turn + 1) % self.pool.len();
        }
        self.in_flight.insert(key);
        Ok(self.turn)
    }

    /// Sends worker `slot` what it has and waits until it committed.
    fn commit_one(&mut self, slot: usize) -> Result<(), LoadError> {
        let (ack_tx, ack_rx) = sync_channel(1);
        if !self.pool[slot].send_after(Work::Barrier(ack_tx)) {
            return Err(worker_gone());
        }
        ack_rx.recv().unwrap_or_else(|_| Err(worker_gone()))
    }

    /// Ends the deferred table's data section: once no worker holds the table, the next worker
    /// gives it its statistics back.
    fn end_deferred(&mut self, index: u64) -> Result<(), LoadError> {
        let Some(table) = self.deferred.take() else {
            return Ok(());
        };
        let key = format!("{}.{table}", self.database);
        if self.in_flight.contains(&key) {
            self.barrier()?;
        }
        // The next worker, while the current one starts on the next table.
        let next = (self.turn + 1) % self.pool.len();
        let worker = &mut self.pool[next];
        for sql in deferred_stats::restore(&table) {
            if !worker.push_statement(&sql, index) {
                return Err(worker_gone());
            }
        }
        self.analyzing.insert(key);
        Ok(())
    }

    fn run(
        &mut self,
        chunks: Receiver<Result<Chunk, LoadError>>,
        failed: &AtomicBool,
    ) -> Result<LoadStats, LoadError> {
        let mut index = 0u64;
        for chunk in chunks {
            if failed.load(Ordering::Relaxed) {
                self.barrier()?;
            }
            let statements = match chunk? {
                Chunk::Statements(s) => s,
                Chunk::End(bytes) => {
                    self.end_deferred(index)?;
                    self.barrier()?;
                    return Ok(LoadStats {
                        bytes,
                        statements: index,
                    });
                }
            };
            for stmt in statements {
                index += 1;
                self.statement(&stmt, index)?;
            }
        }
        Err(LoadError::Read(std::io::Error::other(
            "statement splitter stopped early",
        )))
    }

    fn statement(&mut self, stmt: &Statement, index: u64) -> Result<(), LoadError> {
        if !stmt.compound && !self.refused.load(Ordering::Relaxed) {
            if let Some((target, _)) = parse_insert_head(&stmt.sql) {
                let slot = self.rows_worker(&target.table, stmt.sql.len())?;
                match self.pool[slot].push_rows(&stmt.sql, index) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(()) => return Err(worker_gone()),
                }
            }
        }
        let text = as_text(&stmt.sql)?;
        if stmt.compound || !deferred_stats::within_table_data(&text) {
            self.end_deferred(index)?;
        }
        match route(&text, stmt.compound) {
            Route::Drop => {}
            Route::Everywhere => {
                self.run_control(&text, index)?;
                if starts_with_ignore_case(without_version_comment(&text), "USE ") {
                    self.database = first_quoted(&text).unwrap_or_default();
                }
                for worker in &mut self.pool {
                    if !worker.push_statement(&text, index) {
                        return Err(worker_gone());
                    }
                }
            }
            Route::Rows(table) => {
                let slot = self.rows_worker(&table, text.len())?;
                if !self.pool[slot].push_statement(&text, index) {
                    return Err(worker_gone());
                }
            }
            Route::Structure(table) => {
                let busy = table
                    .as_ref()
                    .map(|t| format!("{}.{t}", self.database))
                    .is_some_and(|key| {
                        self.in_flight.contains(&key) || self.analyzing.contains(&key)
                    });
                if busy {
                    self.barrier()?;
                }
                if let Some(table) = &table {
                    self.opened.remove(&format!("{}.{table}", self.database));
                }
                self.run_control(&text, index)?;
                if let Some(table) = deferred_stats::deferrable_table(&text) {
                    self.run_control(&deferred_stats::defer(table), index)?;
                    self.deferred = Some(table.to_owned());
                }
            }
            Route::AfterBarrier => {
                self.barrier()?;
                // It may empty a table (`TRUNCATE`, `DELETE`, ...).
                self.opened.clear();
                self.run_control(&text, index)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_routed_by_kind() {
        assert_eq!(
            route("/*!40101 SET NAMES utf8mb4 */", false),
            Route::Everywhere
        );
        assert_eq!(
            route("SET @@GLOBAL.GTID_PURGED='x'", false),
            Route::AfterBarrier
        );
        assert_eq!(
            route("/*!40000 SET @@GLOBAL.GTID_PURGED='x' */", false),
            Route::AfterBarrier
        );
        assert_eq!(route("USE `shop`", false), Route::Everywhere);
        assert_eq!(route("LOCK TABLES `t` WRITE", false), Route::Drop);
        assert_eq!(
            route("/*!40000 ALTER TABLE `t` DISABLE KEYS */", false),
            Route::Drop
        );
        assert_eq!(
            route("ALTER TABLE `t` ADD COLUMN x INT", false),
            Route::AfterBarrier
        );
        assert_eq!(
            route("INSERT INTO `t` VALUES (1)", false),
            Route::Rows("`t`".into())
        );
        assert_eq!(
            route("CREATE TABLE `t` (id int)", false),
            Route::Structure(Some("`t`".into()))
        );
        assert_eq!(
            route("DROP TABLE IF EXISTS `t`", false),
            Route::Structure(Some("`t`".into()))
        );
        assert_eq!(
            route("/*!40000 DROP DATABASE IF EXISTS `d`*/", false),
            Route::AfterBarrier
        );
        assert_eq!(route("CREATE TRIGGER x", true), Route::AfterBarrier);
        assert_eq!(route("SELECT 1", false), Route::AfterBarrier);
    }
}
