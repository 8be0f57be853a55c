//! restic-compatible lock files (`locks/<id>`). A backup holds a shared lock, forget and prune
//! an exclusive one; an exclusive lock conflicts with every other lock. As in restic, a lock is
//! stale when it is older than 30 minutes, or when it was made on this host by a process that
//! no longer runs; live locks are refreshed every 5 minutes.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::error::RepoError;
use crate::id::Id;
use crate::repo::{hostname, now_rfc3339, parse_time, user, Repository};

/// A lock older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is renewed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// Pause between writing our lock and looking for others (restic waits the same).
const WAIT_BEFORE_CHECK: Duration = Duration::from_millis(200);

/// The content of a lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockFile {
    /// When it was made or last refreshed.
    pub time: String,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// Host of the holder.
    #[serde(default)]
    pub hostname: String,
    /// User of the holder.
    #[serde(default)]
    pub username: String,
    /// Process id of the holder.
    #[serde(default)]
    pub pid: i64,
    /// User id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// Group id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl LockFile {
    pub(crate) fn new(exclusive: bool) -> LockFile {
        let (username, uid, gid) = user();
        LockFile {
            time: now_rfc3339(),
            exclusive,
            hostname: hostname(),
            username,
            pid: i64::from(std::process::id()),
            uid,
            gid,
        }
    }

    /// restic's rule: too old, or on this host by a process that is gone.
    pub fn is_stale(&self) -> bool {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        match parse_time(&self.time) {
            Some(t) if now.saturating_sub(t) > STALE_AFTER.as_nanos() as i64 => return true,
            None => return true,
            Some(_) => {}
        }
        if self.hostname != hostname() {
            return false;
        }
        !std::path::Path::new("/proc")
            .join(self.pid.to_string())
            .exists()
    }

    fn describe(&self) -> String {
        format!(
            "{}by PID {} on {} by {} (created {})",
            if self.exclusive { "exclusively " } else { "" },
            self.pid,
            self.hostname,
            self.username,
            self.time
        )
    }
}

/// All lock files that can be read, with their ids.
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, LockFile)>, RepoError> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(FileKind::Lock)? {
        // A lock that cannot be read (being written, or foreign) is ignored, as restic does.
        let Ok(plain) = repo.load_unpacked(FileKind::Lock, &name) else {
            continue;
        };
        let Ok(lock) = serde_json::from_slice::<LockFile>(&plain) else {
            continue;
        };
        out.push((Id::parse(&name)?, lock));
    }
    Ok(out)
}

/// Removes stale locks; returns how many.
pub fn remove_stale_locks(repo: &Repository) -> Result<usize, RepoError> {
    let mut removed = 0;
    for (id, lock) in list_locks(repo)? {
        if lock.is_stale() {
            repo.backend().remove(FileKind::Lock, &id.to_hex())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// How long to wait for a conflicting lock to go away before giving up.
///
/// restic 0.14 fails at once when the repository is locked (later versions have
/// `--retry-lock`); a scheduled backup that meets a `prune` of another session may rather
/// wait. [`LockWait::retry`] is generic, so that callers with their own admission rule (which
/// locks are stale, whether to remove them) run it on every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWait {
    /// Give up once this much time has passed (zero: fail at the first conflict).
    pub timeout: Duration,
    /// Pause between attempts (the last pause is cut to the deadline).
    pub retry_every: Duration,
}

impl Default for LockWait {
    /// Fail at once, as restic 0.14 does.
    fn default() -> Self {
        LockWait {
            timeout: Duration::ZERO,
            retry_every: Duration::from_secs(5),
        }
    }
}

impl LockWait {
    /// Wait up to `timeout`, looking again every 5 s (or sooner for short timeouts).
    pub fn up_to(timeout: Duration) -> Self {
        LockWait {
            timeout,
            retry_every: Duration::from_secs(5)
                .min(timeout / 4)
                .max(Duration::from_millis(100)),
        }
    }

    /// Runs `attempt` until it returns anything but [`RepoError::Locked`], or until the
    /// timeout has passed; then the last conflict is returned, saying how long it waited.
    pub fn retry<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let started = std::time::Instant::now();
        loop {
            match attempt() {
                Err(RepoError::Locked(holder)) => {
                    let waited = started.elapsed();
                    if waited >= self.timeout {
                        return Err(RepoError::Locked(if self.timeout.is_zero() {
                            holder
                        } else {
                            format!("{holder}; gave up after waiting {}s", waited.as_secs())
                        }));
                    }
                    std::thread::sleep(self.retry_every.min(self.timeout - waited));
                }
                other => return other,
            }
        }
    }
}

type Stop = Arc<(Mutex<bool>, Condvar)>;

/// A held lock; released (its file removed) when dropped.
pub struct Lock {
    repo: Repository,
    exclusive: bool,
    written: std::time::Instant,
    current: Arc<Mutex<Id>>,
    stop: Stop,
    refresher: Option<JoinHandle<()>>,
}

pub(crate) fn write_lock(repo: &Repository, lock: &LockFile) -> Result<Id, RepoError> {
    let plain = serde_json::to_vec(lock).map_err(|e| RepoError::Format(e.to_string()))?;
    repo.save_unpacked(FileKind::Lock, &plain)
}

fn conflict(repo: &Repository, exclusive: bool, ours: Option<Id>) -> Result<(), RepoError> {
    for (id, other) in list_locks(repo)? {
        if Some(id) == ours {
            continue;
        }
        if exclusive || other.exclusive {
            return Err(RepoError::Locked(other.describe()));
        }
    }
    Ok(())
}

impl Lock {
    /// Takes a shared or exclusive lock, or fails naming the holder of a conflicting one.
    pub fn acquire(repo: &Repository, exclusive: bool) -> Result<Lock, RepoError> {
        let lock = Lock::acquire_unconfirmed(repo, exclusive)?;
        lock.confirm()?;
        Ok(lock)
    }

    /// The first half of [`Lock::acquire`]: looks for a conflicting lock and writes ours, but
    /// does not yet look again for one written at the same moment. Work that only reads may
    /// start at once; [`Lock::confirm`] must succeed before anything depends on the lock
    /// (and dropping the lock after it failed removes ours).
    pub fn acquire_unconfirmed(repo: &Repository, exclusive: bool) -> Result<Lock, RepoError> {
        // Looking first (restic does so only for exclusive locks) keeps a shared lock from
        // knocking out an exclusive one that is still in its own check window.
        conflict(repo, exclusive, None)?;
        let file = LockFile::new(exclusive);
        let id = write_lock(repo, &file)?;
        let written = std::time::Instant::now();
        let current = Arc::new(Mutex::new(id));
        let stop: Stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let repo = repo.clone();
            let current = Arc::clone(&current);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || refresh_loop(&repo, exclusive, &current, &stop))
        };
        Ok(Lock {
            repo: repo.clone(),
            exclusive,
            written,
            current,
            stop,
            refresher: Some(refresher),
        })
    }

    /// The second half of [`Lock::acquire`], as restic does it: 200 ms after ours was written,
    /// looks again for a conflicting lock that another process wrote meanwhile.
    pub fn confirm(&self) -> Result<(), RepoError> {
        std::thread::sleep(WAIT_BEFORE_CHECK.saturating_sub(self.written.elapsed()));
        conflict(&self.repo, self.exclusive, self.id())
    }

    /// [`Lock::acquire_unconfirmed`], trying again while a conflicting lock is held, up to
    /// `wait`.
    pub fn acquire_waiting_unconfirmed(
        repo: &Repository,
        exclusive: bool,
        wait: &LockWait,
    ) -> Result<Lock, RepoError> {
        wait.retry(|| Lock::acquire_unconfirmed(repo, exclusive))
    }

    /// [`Lock::acquire`], trying again while a conflicting lock is held, up to `wait`.
    pub fn acquire_waiting(
        repo: &Repository,
        exclusive: bool,
        wait: &LockWait,
    ) -> Result<Lock, RepoError> {
        wait.retry(|| Lock::acquire(repo, exclusive))
    }

    /// Id of the lock file now in place.
    pub fn id(&self) -> Option<Id> {
        self.current.lock().ok().map(|g| *g)
    }
}

fn refresh_loop(repo: &Repository, exclusive: bool, current: &Mutex<Id>, stop: &Stop) {
    let (flag, cv) = &**stop;
    let Ok(mut stopped) = flag.lock() else {
        return;
    };
    loop {
        // The flag may have been set before this thread first took the mutex.
        if *stopped {
            return;
        }
        let Ok((guard, timeout)) = cv.wait_timeout(stopped, REFRESH_EVERY) else {
            return;
        };
        stopped = guard;
        if *stopped {
            return;
        }
        if !timeout.timed_out() {
            continue;
        }
        // New file first, then the old one goes: there is always a lock in place.
        if let Ok(new_id) = write_lock(repo, &LockFile::new(exclusive)) {
            if let Ok(mut id) = current.lock() {
                let old = std::mem::replace(&mut *id, new_id);
                let _ = repo.backend().remove(FileKind::Lock, &old.to_hex());
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        if let Ok(mut stopped) = flag.lock() {
            *stopped = true;
            cv.notify_all();
        }
        if let Some(handle) = self.refresher.take() {
            let _ = handle.join();
        }
        if let Some(id) = self.id() {
            let _ = self.repo.backend().remove(FileKind::Lock, &id.to_hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_out_conflicts_and_gives_up_with_the_wait_named() {
        let quick = LockWait {
            timeout: Duration::from_secs(5),
            retry_every: Duration::from_millis(1),
        };
        let mut tries = 0;
        let got = quick.retry(|| {
            tries += 1;
            if tries < 3 {
                Err(RepoError::Locked("by PID 7".to_owned()))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(got.unwrap(), 3);

        // Other errors are not retried.
        let mut tries = 0;
        let err = quick
            .retry(|| -> Result<(), _> {
                tries += 1;
                Err(RepoError::WrongPassword)
            })
            .unwrap_err();
        assert!(matches!(err, RepoError::WrongPassword));
        assert_eq!(tries, 1);

        // No wait: the first conflict is the answer, as restic 0.14 gives it.
        let mut tries = 0;
        let err = LockWait::default()
            .retry(|| -> Result<(), _> {
                tries += 1;
                Err(RepoError::Locked("by PID 7".to_owned()))
            })
            .unwrap_err();
        assert_eq!((tries, err.to_string().contains("gave up")), (1, false));

        let short = LockWait {
            timeout: Duration::from_millis(30),
            retry_every: Duration::from_millis(5),
        };
        let err = short
            .retry(|| -> Result<(), _> { Err(RepoError::Locked("by PID 7".to_owned())) })
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("by PID 7") && text.contains("gave up after waiting"),
            "{text}"
        );
    }
}
