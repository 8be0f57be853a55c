//! A private `mariadbd` in a temporary directory, on a free TCP port of 127.0.0.1.
//!
//! The server runs with `--no-defaults`, so the machine's own MariaDB configuration and port stay
//! out of the way. Tests get a user with a password (`MysqlServer::user`/`password`) so that the
//! password path of the code under test is exercised; `root` is only reachable through the unix
//! socket, which [`MysqlServer::execute`] uses for setup and checks.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to accept connections before the start counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A small redo log makes initialisation six times faster (0.4 s instead of 2.7 s) and the data
/// directory 26 MB instead of 114 MB; benchmarks pass a bigger one in `start_with_args` (later
/// options win).
const SMALL_REDO_LOG: &str = "--innodb-log-file-size=8M";
/// Attempts with a new port when the one picked was taken between probing and binding.
const PORT_ATTEMPTS: usize = 3;

/// Errors from starting or using a [`MysqlServer`].
#[derive(Debug, thiserror::Error)]
pub enum MysqlServerError {
    /// A binary could not be run (missing package, permissions).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Creating the data directory or another file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `mariadb-install-db` exited with an error.
    #[error("mariadb-install-db failed: {0}")]
    Install(String),
    /// The server exited or did not accept connections in time.
    #[error("mariadbd did not become ready: {0}")]
    NotReady(String),
    /// A statement sent through the client failed.
    #[error("sql failed: {0}")]
    Sql(String),
}

/// A running private MariaDB server, stopped and deleted on drop.
#[derive(Debug)]
pub struct MysqlServer {
    child: Child,
    port: u16,
    user: String,
    password: String,
    // Dropped last: the server must be gone before its directory is removed.
    dir: tempfile::TempDir,
}

impl MysqlServer {
    /// Initialises a data directory, starts `mariadbd` on a free port and creates the test user
    /// (`stash`, random password, all privileges). Ready in a few seconds.
    pub fn start() -> Result<Self, MysqlServerError> {
        Self::start_with_args(&[])
    }

    /// Like [`MysqlServer::start`], with extra `mariadbd` options (for example
    /// `--innodb-buffer-pool-size=256M` in benchmarks).
    pub fn start_with_args(extra_args: &[&str]) -> Result<Self, MysqlServerError> {
        let dir = tempfile::Builder::new().prefix("stash-mysql-").tempdir()?;
        let data = dir.path().join("data");
        // Own tmpdir: parallel bootstraps in a shared /tmp clash over temporary table files.
        std::fs::create_dir(dir.path().join("tmp"))?;
        install_data_dir(&data, &dir.path().join("tmp"))?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = super::free_port()?;
            let mut child = spawn_server(dir.path(), port, extra_args)?;
            match wait_ready(&mut child, dir.path()) {
                Ok(()) => {
                    let server = MysqlServer {
                        child,
                        port,
                        user: "stash".to_owned(),
                        password: super::random_hex(12)?,
                        dir,
                    };
                    server.create_user()?;
                    return Ok(server);
                }
                Err(err) => {
                    last_error = err.to_string();
                    let _ = child.kill();
                    let _ = child.wait();
                    let log =
                        std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
                    // Only a lost race for the port is worth another try.
                    if !log.contains("Address already in use") {
                        return Err(MysqlServerError::NotReady(format!(
                            "{last_error}; log tail: {}",
                            tail(&log, 2000)
                        )));
                    }
                }
            }
        }
        Err(MysqlServerError::NotReady(last_error))
    }

    /// Always `127.0.0.1`: the server binds nothing else.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Name of the test user (has all privileges, connects over TCP with a password).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Password of the test user.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Unix socket on which `root` connects without a password.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `mariadb` client command connected as `root` through the socket, in batch mode
    /// (tab-separated output, no column names); add `-e` or stdin.
    pub fn root_client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--batch")
            .arg("--skip-column-names");
        cmd
    }

    /// Runs SQL as `root` and returns the output: one line per row, columns separated by tabs.
    pub fn execute(&self, sql: &str) -> Result<String, MysqlServerError> {
        let output = self
            .root_client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| MysqlServerError::Spawn {
                program: "mariadb".to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(MysqlServerError::Sql(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `CHECKSUM TABLE` of every base table outside the system schemas, as
    /// `(schema.table, checksum)` sorted by name: equal lists mean equal contents.
    pub fn checksums(&self) -> Result<Vec<(String, String)>, MysqlServerError> {
        let tables = self.execute(
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
        )?;
        let names: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.execute(&format!("CHECKSUM TABLE {}", names.join(", ")))?;
        let mut sums: Vec<(String, String)> = out
            .lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                Some((cols.next()?.to_owned(), cols.next()?.to_owned()))
            })
            .collect();
        sums.sort();
        Ok(sums)
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would; its clients lose
    /// their connections at once. The data directory stays until the value is dropped.
    pub fn kill(&mut self) -> Result<(), MysqlServerError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn create_user(&self) -> Result<(), MysqlServerError> {
        self.execute(&format!(
            "CREATE USER '{u}'@'%' IDENTIFIED BY '{p}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{u}'@'%' WITH GRANT OPTION; \
             CREATE USER '{u}'@'localhost' IDENTIFIED BY '{p}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{u}'@'localhost' WITH GRANT OPTION;",
            u = self.user,
            p = self.password
        ))
        .map(drop)
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        // The data is disposable: no clean shutdown needed before the directory goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, dir: &Path) -> Result<(), MysqlServerError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(MysqlServerError::NotReady(format!(
                "mariadbd exited: {status}"
            )));
        }
        let ping = Command::new("mariadb")
            .arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg("-e")
            .arg("SELECT 1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| MysqlServerError::Spawn {
                program: "mariadb".to_owned(),
                source,
            })?;
        if ping.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(MysqlServerError::NotReady(format!(
                "no answer within {READY_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn install_data_dir(data: &Path, tmp: &Path) -> Result<(), MysqlServerError> {
    let output = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(SMALL_REDO_LOG)
        .env("TMPDIR", tmp)
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--user=root")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MysqlServerError::Spawn {
            program: "mariadb-install-db".to_owned(),
            source,
        })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(MysqlServerError::Install(tail(&text, 2000).to_owned()));
    }
    Ok(())
}

fn spawn_server(dir: &Path, port: u16, extra_args: &[&str]) -> Result<Child, MysqlServerError> {
    let mut cmd = Command::new(mariadbd_path());
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--user=root")
        .arg("--skip-log-bin")
        .arg("--skip-name-resolve")
        .arg(SMALL_REDO_LOG)
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--log-error={}", dir.join("err.log").display()))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().map_err(|source| MysqlServerError::Spawn {
        program: "mariadbd".to_owned(),
        source,
    })
}

/// `mariadbd` lives in /usr/sbin on Debian, which is not on every PATH.
fn mariadbd_path() -> PathBuf {
    let sbin = Path::new("/usr/sbin/mariadbd");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("mariadbd")
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Entry point for `stash-testkit mysql`: starts a server, prints its connection parameters as
/// one JSON line on `out`, and keeps it running until `input` reaches end of file or a line
/// `quit`; then stops it and removes its files.
pub fn run_cli(input: impl BufRead, mut out: impl Write) -> Result<(), MysqlServerError> {
    let server = MysqlServer::start()?;
    let params = serde_json::json!({
        "host": server.host(),
        "port": server.port(),
        "user": server.user(),
        "password": server.password(),
        "socket": server.socket(),
        "rootClient": format!("mariadb --no-defaults -uroot --socket={}", server.socket().display()),
    });
    writeln!(out, "{params}")?;
    out.flush()?;
    for line in input.lines() {
        if line?.trim() == "quit" {
            break;
        }
    }
    drop(server);
    Ok(())
}
