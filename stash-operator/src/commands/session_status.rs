//! Read-modify-write of a session's status from inside a Job (`update-status`, `run-hook`):
//! the change is re-applied to a fresh copy on every conflict, as Stash's
//! `UpdateBackupSessionStatus` does, so concurrent writers never lose each other's fields.
//! Transient API failures (a 500, a lost answer) are retried too: a Job runs once, and a
//! result it could not write would be lost.

use super::retry::retrying;
use kube::api::{Api, PostParams};
use stash_core::api::{BackupSession, BackupSessionStatus, RestoreSession, RestoreSessionStatus};

/// Attempts before a conflict is reported.
const ATTEMPTS: usize = 10;

/// Applies `change` to the BackupSession's status and writes it, retrying on conflicts.
pub async fn modify_backup_session(
    client: &kube::Client,
    ns: &str,
    name: &str,
    mut change: impl FnMut(&mut BackupSessionStatus),
) -> Result<BackupSession, kube::Error> {
    let api = Api::<BackupSession>::namespaced(client.clone(), ns);
    let params = PostParams::default();
    let mut attempt = 0;
    loop {
        let mut session = retrying(|| api.get(name)).await?;
        let mut status = session.status.clone().unwrap_or_default();
        change(&mut status);
        session.status = Some(status);
        match retrying(|| api.replace_status(name, &params, &session)).await {
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Applies `change` to the RestoreSession's status and writes it, retrying on conflicts.
pub async fn modify_restore_session(
    client: &kube::Client,
    ns: &str,
    name: &str,
    mut change: impl FnMut(&mut RestoreSessionStatus),
) -> Result<RestoreSession, kube::Error> {
    let api = Api::<RestoreSession>::namespaced(client.clone(), ns);
    let params = PostParams::default();
    let mut attempt = 0;
    loop {
        let mut rs = retrying(|| api.get(name)).await?;
        let mut status = rs.status.clone().unwrap_or_default();
        change(&mut status);
        rs.status = Some(status);
        match retrying(|| api.replace_status(name, &params, &rs)).await {
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}
