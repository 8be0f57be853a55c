//! Loading one dump stream over several connections, one table per connection at a time.
//!
//! A `mysqldump` stream is sequential, but the rows of different tables are independent: while
//! one connection inserts the rows of table A, another can insert those of table B. Statements
//! are routed by kind:
//! - session settings (`SET ...` outside GLOBAL, `USE`) go to every connection, in order;
//! - `INSERT INTO \`t\`` goes to the worker that owns table `t` (assigned round-robin);
//! - `CREATE/DROP TABLE` and `CREATE DATABASE` run on the control connection at once, unless
//!   they name a table with rows in flight;
//! - `LOCK TABLES`, `UNLOCK TABLES` and `ALTER TABLE ... DISABLE/ENABLE KEYS` are dropped: they
//!   only speed up MyISAM loads and would serialise the workers;
//! - anything else (triggers, routines, views, GLOBAL settings, unknown statements) waits until
//!   every worker has committed what it has, then runs on the control connection, so a trigger
//!   never sees rows that were restored before it in the dump.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use mysql::prelude::Queryable;

use super::loader::{connect, Counting, LoadError, LoadStats};
use super::mysql_client::DbTarget;
use super::statements::{as_text, StatementReader};

const BATCH_BYTES: usize = 2 << 20;
const COMMIT_BYTES: usize = 64 << 20;
const QUEUED: usize = 1;

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Everywhere,
    Drop,
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

fn first_backticked(sql: &str) -> Option<String> {
    let start = sql.find('`')? + 1;
    let len = sql[start..].find('`')?;
    Some(sql[start..start + len].to_owned())
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
    if starts_with_ignore_case(s, "INSERT INTO `") {
        if let Some(table) = first_backticked(s) {
            return Route::Rows(table);
        }
    }
    if head.starts_with("CREATE TABLE") || head.starts_with("DROP TABLE") {
        return Route::Structure(first_backticked(s));
    }
    if head.starts_with("CREATE DATABASE") {
        return Route::Structure(None);
    }
    Route::AfterBarrier
}

enum WorkerMsg {
    Batch {
        sql: String,
        first: u64,
    },
    /// Commit and report the first error since the last barrier.
    Barrier(SyncSender<Result<(), LoadError>>),
}

struct Worker {
    tx: SyncSender<WorkerMsg>,
    pending: String,
    first: u64,
}

impl Worker {
    fn push(&mut self, sql: &str, index: u64) -> Result<(), LoadError> {
        if self.pending.is_empty() {
            self.first = index;
        } else {
            self.pending.push_str(";\n");
        }
        self.pending.push_str(sql);
        if self.pending.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LoadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let sql = std::mem::take(&mut self.pending);
        self.tx
            .send(WorkerMsg::Batch {
                sql,
                first: self.first,
            })
            .map_err(|_| worker_gone())
    }
}

fn worker_gone() -> LoadError {
    LoadError::Statement {
        index: 0,
        message: "a loader connection stopped".to_owned(),
    }
}

fn run_worker(mut conn: mysql::Conn, rx: Receiver<WorkerMsg>, failed: &AtomicBool) {
    let mut error: Option<LoadError> = None;
    let mut since_commit = 0usize;
    for msg in rx {
        match msg {
            WorkerMsg::Batch { sql, first } => {
                if error.is_some() {
                    continue;
                }
                if let Err(e) = conn.query_drop(sql.as_str()) {
                    failed.store(true, Ordering::Relaxed);
                    error = Some(LoadError::Statement {
                        index: first,
                        message: e.to_string(),
                    });
                    continue;
                }
                since_commit += sql.len();
                if since_commit >= COMMIT_BYTES {
                    if let Err(e) = conn.query_drop("COMMIT") {
                        failed.store(true, Ordering::Relaxed);
                        error = Some(LoadError::Statement {
                            index: first,
                            message: e.to_string(),
                        });
                    }
                    since_commit = 0;
                }
            }
            WorkerMsg::Barrier(ack) => {
                let result = match error.take() {
                    Some(e) => {
                        let _ = conn.query_drop("ROLLBACK");
                        Err(e)
                    }
                    None => conn.query_drop("COMMIT").map_err(|e| LoadError::Statement {
                        index: 0,
                        message: e.to_string(),
                    }),
                };
                since_commit = 0;
                let _ = ack.send(result);
            }
        }
    }
    let _ = conn.query_drop("ROLLBACK");
}

/// Statements as text, in chunks, from the splitting thread.
enum Chunk {
    Statements(Vec<(String, bool)>),
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
        let text = match as_text(&stmt.sql) {
            Ok(t) => t.into_owned(),
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        chunk_bytes += text.len();
        chunk.push((text, stmt.compound));
        if chunk_bytes >= BATCH_BYTES {
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
    let mut control = connect(target)?;
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut conn = connect(target)?;
        conn.query_drop("SET autocommit=0")
            .map_err(|e| LoadError::Statement {
                index: 0,
                message: e.to_string(),
            })?;
        conns.push(conn);
    }
    let failed = AtomicBool::new(false);
    let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk, LoadError>>(QUEUED);
    std::thread::scope(|scope| {
        scope.spawn(move || split(dump, &chunk_tx));
        let mut pool: Vec<Worker> = Vec::with_capacity(workers);
        for conn in conns {
            let (tx, rx) = sync_channel(QUEUED);
            let failed = &failed;
            scope.spawn(move || run_worker(conn, rx, failed));
            pool.push(Worker {
                tx,
                pending: String::new(),
                first: 0,
            });
        }
        let result = dispatch(&mut control, &mut pool, chunk_rx, &failed);
        // Closing the queues ends the workers; their open transactions roll back.
        drop(pool);
        result
    })
}

fn barrier(pool: &mut [Worker]) -> Result<(), LoadError> {
    let mut acks = Vec::with_capacity(pool.len());
    for worker in pool.iter_mut() {
        worker.flush()?;
        let (ack_tx, ack_rx) = sync_channel(1);
        worker
            .tx
            .send(WorkerMsg::Barrier(ack_tx))
            .map_err(|_| worker_gone())?;
        acks.push(ack_rx);
    }
    let mut first_error = None;
    for ack in acks {
        let result = ack.recv().unwrap_or_else(|_| Err(worker_gone()));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn dispatch(
    control: &mut mysql::Conn,
    pool: &mut [Worker],
    chunks: Receiver<Result<Chunk, LoadError>>,
    failed: &AtomicBool,
) -> Result<LoadStats, LoadError> {
    let run = |control: &mut mysql::Conn, sql: &str, index: u64| {
        control.query_drop(sql).map_err(|e| LoadError::Statement {
            index,
            message: e.to_string(),
        })
    };
    let mut index = 0u64;
    let mut database = String::new();
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut next = 0usize;
    for chunk in chunks {
        if failed.load(Ordering::Relaxed) {
            barrier(pool)?;
        }
        let statements = match chunk? {
            Chunk::Statements(s) => s,
            Chunk::End(bytes) => {
                barrier(pool)?;
                return Ok(LoadStats {
                    bytes,
                    statements: index,
                });
            }
        };
        for (sql, compound) in statements {
            index += 1;
            match route(&sql, compound) {
                Route::Drop => {}
                Route::Everywhere => {
                    run(control, &sql, index)?;
                    if starts_with_ignore_case(without_version_comment(&sql), "USE ") {
                        database = first_backticked(&sql).unwrap_or_default();
                    }
                    for worker in pool.iter_mut() {
                        worker.push(&sql, index)?;
                    }
                }
                Route::Rows(table) => {
                    let key = format!("{database}.{table}");
                    let slot = *owner.entry(key.clone()).or_insert_with(|| {
                        next += 1;
                        (next - 1) % pool.len()
                    });
                    in_flight.insert(key);
                    pool[slot].push(&sql, index)?;
                }
                Route::Structure(table) => {
                    let busy = table
                        .map(|t| format!("{database}.{t}"))
                        .is_some_and(|key| in_flight.contains(&key));
                    if busy {
                        barrier(pool)?;
                        in_flight.clear();
                    }
                    run(control, &sql, index)?;
                }
                Route::AfterBarrier => {
                    barrier(pool)?;
                    in_flight.clear();
                    run(control, &sql, index)?;
                }
            }
        }
    }
    Err(LoadError::Read(std::io::Error::other(
        "statement splitter stopped early",
    )))
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
            Route::Rows("t".into())
        );
        assert_eq!(
            route("CREATE TABLE `t` (id int)", false),
            Route::Structure(Some("t".into()))
        );
        assert_eq!(
            route("DROP TABLE IF EXISTS `t`", false),
            Route::Structure(Some("t".into()))
        );
        assert_eq!(
            route("/*!40000 DROP DATABASE IF EXISTS `d`*/", false),
            Route::AfterBarrier
        );
        assert_eq!(route("CREATE TRIGGER x", true), Route::AfterBarrier);
        assert_eq!(route("SELECT 1", false), Route::AfterBarrier);
    }
}
