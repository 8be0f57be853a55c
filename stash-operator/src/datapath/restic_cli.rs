//! [`RepositoryEngine`] on the stock `restic` command-line program.
//!
//! Secrets reach restic through its environment only. The dump is fed into `restic backup
//! --stdin` by this process, so a failing dump is noticed before restic sees end of input: restic
//! is then killed with its input still open, which leaves no snapshot (restic writes the snapshot
//! only after end of input), and its now stale lock is removed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::thread::JoinHandle;

use super::backend::EngineEnv;
use super::dump_source::read_tail;
use super::{EngineError, LockInfo, RepoStats, RepositoryEngine, SnapshotInfo, SnapshotSummary};

const STDERR_TAIL_BYTES: usize = 2048;
const COPY_BUFFER_BYTES: usize = 1 << 20;
/// restic 0.17+ exit code for a missing repository; 0.14 exits 1 and says so on stderr.
const EXIT_NO_REPOSITORY: i32 = 10;
/// restic 0.17+ exit code for a locked repository.
const EXIT_LOCKED: i32 = 11;

/// Where restic keeps its local cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMode {
    /// `--no-cache`.
    Disabled,
    /// `--cache-dir <dir>` (Stash: `<scratch>/restic-cache`).
    Dir(PathBuf),
}

/// The restic CLI engine.
#[derive(Clone)]
pub struct ResticCli {
    program: PathBuf,
    env: EngineEnv,
    cache: CacheMode,
    /// Values that must not appear in error messages (restic may echo the repository URL).
    secrets: Vec<String>,
}

impl std::fmt::Debug for ResticCli {
    // The secrets stay out of debug output; the environment shows only its keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResticCli")
            .field("program", &self.program)
            .field("env", &self.env)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl ResticCli {
    /// An engine that runs `program` (usually `restic`) with the given environment and flags.
    pub fn new(program: impl Into<PathBuf>, env: EngineEnv, cache: CacheMode) -> Self {
        let secrets = secret_values(&env);
        ResticCli {
            program: program.into(),
            env,
            cache,
            secrets,
        }
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(subcommand);
        // Inherited settings that would override ours.
        for key in [
            "RESTIC_PASSWORD_FILE",
            "RESTIC_PASSWORD_COMMAND",
            "RESTIC_REPOSITORY_FILE",
        ] {
            cmd.env_remove(key);
        }
        cmd.envs(&self.env.env);
        cmd.args(&self.env.flags);
        match &self.cache {
            CacheMode::Disabled => {
                cmd.arg("--no-cache");
            }
            CacheMode::Dir(dir) => {
                cmd.arg("--cache-dir").arg(dir);
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `restic prune`: removes data no snapshot references (used by the in-process engine,
    /// which does not repack).
    pub fn prune(&self) -> Result<(), EngineError> {
        let mut cmd = self.command("prune");
        cmd.arg("--quiet");
        self.run("prune", cmd).map(drop)
    }

    fn spawn_error(&self, source: std::io::Error) -> EngineError {
        EngineError::Spawn {
            program: self.program.display().to_string(),
            source,
        }
    }

    /// Runs a command to completion and maps restic's failures.
    fn run(&self, subcommand: &str, mut cmd: Command) -> Result<Output, EngineError> {
        let output = cmd.output().map_err(|e| self.spawn_error(e))?;
        if output.status.success() {
            return Ok(output);
        }
        Err(classify_failure(
            subcommand,
            output.status.code(),
            &output.status.to_string(),
            &output.stderr,
            &self.secrets,
        ))
    }

    fn parse_json<T: serde::de::DeserializeOwned>(
        subcommand: &str,
        stdout: &[u8],
    ) -> Result<T, EngineError> {
        serde_json::from_slice(stdout).map_err(|e| EngineError::Output {
            command: subcommand.to_owned(),
            detail: e.to_string(),
        })
    }
}

/// The secret values of an engine environment: passwords, keys, tokens, and the password in a
/// REST repository URL.
fn secret_values(env: &EngineEnv) -> Vec<String> {
    let mut out: Vec<String> = env
        .env
        .iter()
        .filter(|(k, v)| {
            !v.is_empty()
                && ["PASSWORD", "SECRET", "KEY", "TOKEN"]
                    .iter()
                    .any(|word| k.contains(word))
        })
        .map(|(_, v)| v.clone())
        .collect();
    if let Some(password) = env
        .env
        .get("RESTIC_REPOSITORY")
        .and_then(|url| url_password(url))
    {
        out.push(password.to_owned());
    }
    out
}

fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

fn redact(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if !secret.is_empty() && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

fn classify_failure(
    subcommand: &str,
    code: Option<i32>,
    status: &str,
    stderr: &[u8],
    secrets: &[String],
) -> EngineError {
    // Classify on restic's own words before redacting: a short secret can occur inside them
    // ("Is there a repo***itory") and the known error would go unrecognised.
    let raw = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_TAIL_BYTES)..])
        .trim()
        .to_owned();
    if code == Some(EXIT_NO_REPOSITORY)
        || raw.contains("Is there a repository at the following location?")
    {
        return EngineError::RepositoryMissing(
            "restic found no repository config at the configured location".to_owned(),
        );
    }
    if code == Some(EXIT_LOCKED) || raw.contains("repository is already locked") {
        return EngineError::Locked(redact(lock_holder(&raw), secrets));
    }
    if raw.contains("wrong password or no key found") {
        return EngineError::WrongPassword;
    }
    EngineError::Failed {
        command: subcommand.to_owned(),
        status: status.to_owned(),
        stderr: redact(raw, secrets),
    }
}

/// Who holds a lock and since when, from restic's lock message; the rest is restic's advice.
fn lock_holder(stderr: &str) -> String {
    let holder = stderr
        .lines()
        .find_map(|line| {
            line.find("locked")
                .map(|at| line[at..].trim_start_matches("locked").trim().to_owned())
        })
        .unwrap_or_default();
    let since = stderr
        .lines()
        .find(|line| line.starts_with("lock was created at"))
        .map(|line| format!(", {}", line.trim()))
        .unwrap_or_default();
    if holder.is_empty() {
        "held by another process".to_owned()
    } else {
        format!("{holder}{since}")
    }
}

/// The message of restic's `backup --json` stream that ends a successful run.
#[derive(serde::Deserialize)]
struct BackupMessage {
    message_type: String,
    #[serde(flatten)]
    summary: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct RawStats {
    total_size: u64,
}

impl RepositoryEngine for ResticCli {
    fn init_if_missing(&self) -> Result<bool, EngineError> {
        let mut probe = self.command("cat");
        probe.arg("config").arg("--no-lock");
        match self.run("cat config", probe) {
            Ok(_) => Ok(false),
            Err(EngineError::RepositoryMissing(_)) => {
                let mut init = self.command("init");
                init.arg("--repository-version").arg("2");
                self.run("init", init)?;
                Ok(true)
            }
            Err(other) => Err(other),
        }
    }

    fn backup_stream(
        &self,
        source: &mut dyn Read,
        host: &str,
        filename: &str,
    ) -> Result<SnapshotSummary, EngineError> {
        let mut cmd = self.command("backup");
        cmd.arg("--stdin")
            .arg("--stdin-filename")
            .arg(filename.trim_start_matches('/'))
            .arg("--host")
            .arg(host)
            .arg("--json")
            .arg("--quiet")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    // All three were requested as pipes above.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.spawn_error(std::io::Error::other("no pipes")));
                }
            };
        let stdout = std::thread::spawn(move || read_tail(stdout, 1 << 20));
        let stderr = std::thread::spawn(move || read_tail(stderr, STDERR_TAIL_BYTES));

        let mut stdin = Some(stdin);
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        let mut fed: u64 = 0;
        let copy: Result<(), CopyFailure> = loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(CopyFailure::Source(e)),
            };
            let Some(pipe) = stdin.as_mut() else {
                break Err(CopyFailure::Sink(std::io::Error::other(
                    "restic input closed",
                )));
            };
            if let Err(e) = pipe.write_all(&buf[..n]) {
                break Err(CopyFailure::Sink(e));
            }
            fed += n as u64;
        };

        if let Err(CopyFailure::Source(err)) = copy {
            // Kill with the input still open: restic never reaches end of input, so it never
            // writes a snapshot for the partial stream.
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin.take());
            let _ = stdout.join();
            let _ = stderr.join();
            // The killed process leaves its lock behind; it is stale now (dead pid, this host).
            let _ = self.unlock_stale();
            return Err(EngineError::SourceFailed(err.to_string()));
        }
        drop(stdin.take());
        let status = child.wait().map_err(|e| self.spawn_error(e))?;
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if !status.success() {
            return Err(classify_failure(
                "backup",
                status.code(),
                &status.to_string(),
                &err,
                &self.secrets,
            ));
        }
        if let Err(CopyFailure::Sink(e)) = copy {
            return Err(EngineError::Failed {
                command: "backup".to_owned(),
                status: format!("input closed early: {e}"),
                stderr: String::from_utf8_lossy(&err).trim().to_owned(),
            });
        }
        let summary = parse_backup_summary(&out)?;
        if summary.total_bytes_processed != fed {
            let _ = self.forget_snapshots(std::slice::from_ref(&summary.snapshot_id), true);
            return Err(EngineError::Incomplete {
                snapshot: summary.snapshot_id,
                fed,
                stored: summary.total_bytes_processed,
            });
        }
        Ok(summary)
    }

    fn dump(
        &self,
        snapshot: &str,
        host: Option<&str>,
        filename: &str,
    ) -> Result<Box<dyn Read + Send>, EngineError> {
        let path = format!("/{}", filename.trim_start_matches('/'));
        let mut cmd = self.command("dump");
        cmd.arg("--quiet");
        if let Some(host) = host {
            cmd.arg("--host").arg(host);
        }
        if snapshot == "latest" {
            cmd.arg("--path").arg(&path);
        }
        cmd.arg(snapshot)
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.spawn_error(std::io::Error::other("no pipes")));
        };
        let stderr = std::thread::spawn(move || read_tail(stderr, STDERR_TAIL_BYTES));
        Ok(Box::new(ChildReader {
            secrets: self.secrets.clone(),
            child,
            stdout,
            stderr: Some(stderr),
            done: false,
        }))
    }

    fn snapshots(&self, host: Option<&str>) -> Result<Vec<SnapshotInfo>, EngineError> {
        let mut cmd = self.command("snapshots");
        cmd.arg("--json").arg("--no-lock");
        if let Some(host) = host {
            cmd.arg("--host").arg(host);
        }
        let out = self.run("snapshots", cmd)?;
        let list: Option<Vec<SnapshotInfo>> = Self::parse_json("snapshots", &out.stdout)?;
        Ok(list.unwrap_or_default())
    }

    fn forget_snapshots(&self, ids: &[String], prune: bool) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = self.command("forget");
        cmd.arg("--quiet");
        if prune {
            cmd.arg("--prune");
        }
        // `--` so that no id is ever read as a flag.
        cmd.arg("--").args(ids);
        self.run("forget", cmd).map(drop)
    }

    fn check(&self, read_data: bool) -> Result<(), EngineError> {
        let mut cmd = self.command("check");
        if read_data {
            cmd.arg("--read-data");
        }
        self.run("check", cmd).map(drop)
    }

    fn stats(&self) -> Result<RepoStats, EngineError> {
        let mut cmd = self.command("stats");
        cmd.arg("--json")
            .arg("--quiet")
            .arg("--mode")
            .arg("raw-data")
            .arg("--no-lock");
        let out = self.run("stats", cmd)?;
        let raw: RawStats = Self::parse_json("stats", &out.stdout)?;
        Ok(RepoStats {
            total_size: raw.total_size,
            snapshot_count: self.snapshots(None)?.len(),
        })
    }

    fn locks(&self) -> Result<Vec<LockInfo>, EngineError> {
        let mut cmd = self.command("list");
        cmd.arg("locks").arg("--no-lock");
        let out = self.run("list", cmd)?;
        let mut locks = Vec::new();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let mut cmd = self.command("cat");
            cmd.arg("lock").arg(id).arg("--no-lock");
            // A lock removed meanwhile, or unreadable, is ignored, as restic does.
            let Ok(out) = self.run("cat", cmd) else {
                continue;
            };
            if let Ok(lock) = serde_json::from_slice::<LockInfo>(&out.stdout) {
                locks.push(LockInfo {
                    id: id.to_owned(),
                    ..lock
                });
            }
        }
        Ok(locks)
    }

    fn remove_locks(&self, ids: &[String]) -> Result<(), EngineError> {
        // restic removes no lock by id; `unlock` removes those it proves stale, by the rule
        // the caller used to pick `ids`.
        if ids.is_empty() {
            return Ok(());
        }
        self.unlock_stale()
    }
}

impl ResticCli {
    fn unlock_stale(&self) -> Result<(), EngineError> {
        // Without --remove-all restic only removes locks it can prove dead or expired.
        let cmd = self.command("unlock");
        self.run("unlock", cmd).map(drop)
    }
}

enum CopyFailure {
    Source(std::io::Error),
    Sink(std::io::Error),
}

fn parse_backup_summary(stdout: &[u8]) -> Result<SnapshotSummary, EngineError> {
    for line in stdout.split(|&b| b == b'\n').rev() {
        let Ok(message) = serde_json::from_slice::<BackupMessage>(line) else {
            continue;
        };
        if message.message_type == "summary" {
            return serde_json::from_value(message.summary).map_err(|e| EngineError::Output {
                command: "backup".to_owned(),
                detail: e.to_string(),
            });
        }
    }
    Err(EngineError::Output {
        command: "backup".to_owned(),
        detail: "no summary message".to_owned(),
    })
}

/// restic's stdout, failing at the end unless restic exited successfully.
struct ChildReader {
    secrets: Vec<String>,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
    done: bool,
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let status = self.child.wait()?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            let err = classify_failure(
                "dump",
                status.code(),
                &status.to_string(),
                &stderr,
                &self.secrets,
            );
            return Err(std::io::Error::other(err));
        }
        self.done = true;
        Ok(0)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_found_among_status_lines() {
        let out = b"{\"message_type\":\"status\",\"percent_done\":0.5}\n{\"message_type\":\"summary\",\"files_new\":1,\"data_added\":313,\"total_files_processed\":1,\"total_bytes_processed\":24,\"total_duration\":0.25,\"snapshot_id\":\"fe584059\"}\n";
        let summary = parse_backup_summary(out).unwrap();
        assert_eq!(summary.snapshot_id, "fe584059");
        assert_eq!(summary.total_bytes_processed, 24);
        assert_eq!(summary.data_added, 313);
        assert!(parse_backup_summary(b"{\"message_type\":\"status\"}\n").is_err());
    }

    #[test]
    fn secrets_are_redacted_from_errors() {
        let env = EngineEnv {
            env: [
                ("RESTIC_PASSWORD", "repo-pw"),
                ("AWS_SECRET_ACCESS_KEY", "aws-sk"),
                ("RESTIC_REPOSITORY", "rest:https://u:p%40ss@host:8000/path"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            flags: vec![],
        };
        let secrets = secret_values(&env);
        let err = classify_failure(
            "init",
            Some(1),
            "exit 1",
            b"Fatal: rest:https://u:p%40ss@host:8000/path repo-pw aws-sk eu-west-1",
            &secrets,
        );
        let text = err.to_string();
        let engine = ResticCli::new("restic", env, CacheMode::Disabled);
        assert!(!format!("{engine:?}").contains("repo-pw"));
        assert!(!text.contains("p%40ss") && !text.contains("repo-pw") && !text.contains("aws-sk"));
        assert!(text.contains("eu-west-1"), "{text}");
    }

    #[test]
    fn failures_are_classified() {
        let missing = b"Fatal: unable to open config file\nIs there a repository at the following location?\n/x";
        assert!(matches!(
            classify_failure("cat config", Some(1), "exit 1", missing, &[]),
            EngineError::RepositoryMissing(_)
        ));
        assert!(matches!(
            classify_failure("backup", Some(11), "exit 11", b"", &[]),
            EngineError::Locked(_)
        ));
        assert!(matches!(
            classify_failure(
                "check",
                Some(1),
                "exit 1",
                b"Fatal: wrong password or no key found",
                &[]
            ),
            EngineError::WrongPassword
        ));
        assert!(matches!(
            classify_failure("check", Some(1), "exit 1", b"Fatal: load index: EOF", &[]),
            EngineError::Failed { .. }
        ));
    }

    #[test]
    fn short_secrets_do_not_hide_known_errors() {
        // A one- or two-letter secret occurs inside restic's own words; classification must
        // still see them, and the known message must not carry redaction stars.
        let missing = b"Fatal: unable to open config file: Stat: stat /repo/config: no such file or directory\nIs there a repository at the following location?\n/repo";
        let secrets = vec!["s".to_owned(), "re".to_owned()];
        let err = classify_failure("backup", Some(1), "exit 1", missing, &secrets);
        assert!(matches!(err, EngineError::RepositoryMissing(_)), "{err}");
        assert!(!err.to_string().contains("***"), "{err}");
    }

    #[test]
    fn a_lock_error_names_the_holder_without_restic_advice() {
        let locked = b"Fatal: unable to create lock in backend: repository is already locked exclusively by PID 4242 on db-0 by root (UID 0, GID 0)\nlock was created at 2026-12-04 10:00:00 (3m0s ago)\nstorage ID 1a2b3c4d\nthe `unlock` command can be used to remove stale locks";
        let text = classify_failure("backup", Some(11), "exit 11", locked, &[]).to_string();
        assert!(text.contains("exclusively by PID 4242 on db-0"), "{text}");
        assert!(
            text.contains("lock was created at 2026-12-04 10:00:00"),
            "{text}"
        );
        assert!(!text.contains("unlock` command"), "{text}");
    }
}
