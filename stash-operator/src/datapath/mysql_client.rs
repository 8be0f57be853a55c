//! How to reach the database: connection parameters resolved from the AppBinding and its
//! Secret, and the `mysql`/`mysqldump` command lines built from them. The password travels only
//! in a client option file of mode 0600 that is removed after use: never in an argument, and not
//! in `MYSQL_PWD`, which MySQL 8 deprecates and which shows in `/proc/PID/environ`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::dump_source::DumpCommand;

/// A database to dump from or restore into.
#[derive(Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port; 0 leaves the client's default.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (never logged, never an argument).
    pub password: String,
    /// CA bundle file to verify the server with (`--ssl-ca`).
    pub ssl_ca: Option<PathBuf>,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("ssl_ca", &self.ssl_ca)
            .finish_non_exhaustive()
    }
}

impl DbTarget {
    /// `-u USER -h HOST [--port=P] [--ssl-ca=FILE]`, as Stash builds them (with the CA flag
    /// actually passed).
    pub fn connection_args(&self) -> Vec<String> {
        let mut args = vec![
            "-u".to_owned(),
            self.user.clone(),
            "-h".to_owned(),
            self.host.clone(),
        ];
        if self.port != 0 {
            args.push(format!("--port={}", self.port));
        }
        if let Some(ca) = &self.ssl_ca {
            args.push(format!("--ssl-ca={}", ca.display()));
        }
        args
    }

    /// A client command (`mysql`) connected to this database, the password read from
    /// `options` (which must outlive the process).
    pub fn client(&self, program: &str, options: &ClientOptionFile) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg(options.arg());
        cmd.args(self.connection_args());
        cmd
    }
}

/// A MySQL client option file holding the password (`[client] password=...`), mode 0600 in
/// the temporary directory, deleted when dropped. Clients read it through
/// `--defaults-extra-file`, which must be their first argument.
pub struct ClientOptionFile {
    file: tempfile::NamedTempFile,
}

impl std::fmt::Debug for ClientOptionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptionFile")
            .field("path", &self.file.path())
            .finish()
    }
}

impl ClientOptionFile {
    /// Writes `target`'s password into a new private option file.
    pub fn write(target: &DbTarget) -> std::io::Result<Self> {
        use std::io::Write;
        // NamedTempFile creates the file with mode 0600 before anything is written to it.
        let mut file = tempfile::Builder::new()
            .prefix("stash-mysql-")
            .suffix(".cnf")
            .tempfile()?;
        writeln!(file, "[client]")?;
        writeln!(file, "password=\"{}\"", option_value(&target.password))?;
        file.flush()?;
        Ok(ClientOptionFile { file })
    }

    /// `--defaults-extra-file=PATH`.
    pub fn arg(&self) -> String {
        format!("--defaults-extra-file={}", self.file.path().display())
    }
}

/// A value for a double-quoted option-file entry: the escapes the client's option parser
/// undoes (`\\`, `\n`, `\r`, `\t`, `\"`), so any password reads back as written.
fn option_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            other => out.push(other),
        }
    }
    out
}

/// Splits Stash's `--mysql-args` on whitespace (no shell quoting, as Stash does).
pub fn split_args(args: &str) -> Vec<String> {
    args.split_whitespace().map(str::to_owned).collect()
}

/// Splits Stash's `--multi-dump-args` on the literal `$args=`; the text before the first
/// separator is ignored and empty parts are dropped, as in Stash.
pub fn split_multi_dump_args(args: &str) -> Vec<Vec<String>> {
    args.split("$args=")
        .skip(1)
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(split_args)
        .collect()
}

/// The dump processes of one backup: one with the common arguments, or one per multi-dump part
/// (common arguments first, then the part), concatenated into the same stream.
pub fn dump_commands(
    program: &str,
    target: &DbTarget,
    options: &ClientOptionFile,
    mysql_args: &[String],
    multi_dump_args: &[Vec<String>],
) -> Vec<DumpCommand> {
    let mut common = vec![options.arg()];
    common.extend(target.connection_args());
    common.extend_from_slice(mysql_args);
    let make = |extra: &[String]| DumpCommand {
        program: program.to_owned(),
        args: common.iter().chain(extra).cloned().collect(),
        env: Vec::new(),
    };
    if multi_dump_args.is_empty() {
        vec![make(&[])]
    } else {
        multi_dump_args.iter().map(|part| make(part)).collect()
    }
}

/// The database did not answer `SELECT 1` within the wait timeout.
#[derive(Debug, thiserror::Error)]
#[error("database {host} not ready after {waited:?}: {last_error}")]
pub struct NotReady {
    /// The host waited for.
    pub host: String,
    /// How long it waited.
    pub waited: Duration,
    /// The client's last error.
    pub last_error: String,
}

/// Polls `SELECT 1` with the `mysql` client (immediately, then every `interval`) until it
/// succeeds or `timeout` has passed. A zero timeout means one try.
pub fn wait_for_database(
    program: &str,
    target: &DbTarget,
    extra_args: &[String],
    timeout: Duration,
    interval: Duration,
) -> Result<(), NotReady> {
    let start = Instant::now();
    let options = ClientOptionFile::write(target).map_err(|e| NotReady {
        host: target.host.clone(),
        waited: start.elapsed(),
        last_error: format!("cannot write the client option file: {e}"),
    })?;
    loop {
        let result = target
            .client(program, &options)
            .args(extra_args)
            .arg("-e")
            .arg("SELECT 1;")
            .stdin(Stdio::null())
            .output();
        let last_error = match result {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => format!("cannot run {program}: {e}"),
        };
        if start.elapsed() + interval > timeout {
            return Err(NotReady {
                host: target.host.clone(),
                waited: start.elapsed(),
                last_error,
            });
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> DbTarget {
        DbTarget {
            host: "db.demo.svc".into(),
            port: 3306,
            user: "root".into(),
            password: "hunter2".into(),
            ssl_ca: Some("/stash-tmp/ca.crt".into()),
        }
    }

    #[test]
    fn args_split_like_stash() {
        assert_eq!(
            split_args("  --all-databases\t--single-transaction \n"),
            vec!["--all-databases", "--single-transaction"]
        );
        assert_eq!(
            split_multi_dump_args(
                "ignored $args=--databases db1 $args=  $args=--databases db2 --no-data"
            ),
            vec![
                vec!["--databases", "db1"],
                vec!["--databases", "db2", "--no-data"]
            ]
        );
        assert!(split_multi_dump_args("--all-databases").is_empty());
    }

    #[test]
    fn dump_commands_carry_ca_and_read_the_password_from_a_private_file() {
        let t = target();
        let options = ClientOptionFile::write(&t).unwrap();
        let cmds = dump_commands(
            "mysqldump",
            &t,
            &options,
            &split_args("--single-transaction"),
            &split_multi_dump_args("$args=--databases a $args=--databases b"),
        );
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[1].args,
            vec![
                options.arg().as_str(),
                "-u",
                "root",
                "-h",
                "db.demo.svc",
                "--port=3306",
                "--ssl-ca=/stash-tmp/ca.crt",
                "--single-transaction",
                "--databases",
                "b"
            ]
        );
        for cmd in &cmds {
            assert!(cmd.args.iter().all(|a| !a.contains("hunter2")));
            assert!(cmd.env.is_empty());
            assert!(!format!("{cmd:?}").contains("hunter2"));
        }
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!format!("{options:?}").contains("hunter2"));

        use std::os::unix::fs::PermissionsExt;
        let path = options.file.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[client]\npassword=\"hunter2\"\n"
        );
        drop(options);
        assert!(!path.exists(), "the option file outlived its use");
    }

    #[test]
    fn option_values_escape_what_the_parser_unescapes() {
        assert_eq!(option_value("plain#;'x"), "plain#;'x");
        assert_eq!(option_value("a\\b\"c\nd\te"), "a\\\\b\\\"c\\nd\\te");
    }

    #[test]
    fn port_zero_leaves_the_default() {
        let mut t = target();
        t.port = 0;
        t.ssl_ca = None;
        assert_eq!(t.connection_args(), vec!["-u", "root", "-h", "db.demo.svc"]);
    }
}
