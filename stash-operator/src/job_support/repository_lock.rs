//! The job's side of repository locks: it looks at the lock files, asks the core rule
//! ([`admit_locks`]) what to do, does it (remove stale locks, wait, or give up), and records
//! the outcome as the Repository's `RepositoryLocked` condition.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use stash_core::api::{BackupConfiguration, BackupSession, Repository};
use stash_core::conditions::{self, NewCondition};
use stash_core::plan::labels::MANAGED_BY;
use stash_core::plan::repository::{
    admit_locks, JobPod, LockAdmission, LockHolder, LockHolders, LockVerdict, ObservedLock,
    RepositoryJob, REPOSITORY_LOCKED,
};

use crate::datapath::{EngineError, LockInfo, RepositoryEngine};

/// What the job can tell about each lock: its age by this machine's clock, and whether its
/// holder runs (only knowable on the same host, where the pid can be looked up).
pub fn observe(locks: Vec<LockInfo>) -> Vec<ObservedLock> {
    let here = stash_repo::repo::hostname();
    let now = k8s_openapi::jiff::Timestamp::now();
    locks
        .into_iter()
        .map(|l| {
            let age_secs = l
                .time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|t| u64::try_from(now.as_second() - t.as_second()).unwrap_or(0));
            let holder = if l.hostname != here || here.is_empty() {
                LockHolder::Unknown
            } else if std::path::Path::new("/proc")
                .join(l.pid.to_string())
                .exists()
            {
                LockHolder::Running
            } else {
                LockHolder::Gone
            };
            ObservedLock {
                id: l.id,
                exclusive: l.exclusive,
                hostname: l.hostname,
                pid: l.pid,
                time: l.time,
                age_secs,
                holder,
            }
        })
        .collect()
}

/// Looks at the locks until `job` may start: removes stale ones, waits while a live conflicting
/// one is there (at most `max_wait` in all, counted in `waited`), and fails with
/// [`EngineError::Locked`] when it outlasts the wait. `holders` tells, after each look at
/// locks held from other hosts, which pods of ours hold them. Every decision goes to `record`.
pub fn settle(
    engine: &dyn RepositoryEngine,
    job: RepositoryJob,
    max_wait: Duration,
    waited: &mut Duration,
    holders: &mut dyn FnMut() -> LockHolders,
    record: &mut dyn FnMut(&LockAdmission),
) -> Result<(), EngineError> {
    loop {
        let locks = observe(engine.locks()?);
        // Pods are listed after the locks are read: a lock seen was made by a pod that existed
        // before the list, so a Job pod missing from it is gone.
        let holders = if locks.iter().any(|l| l.holder == LockHolder::Unknown) {
            holders()
        } else {
            LockHolders::default()
        };
        let admission = admit_locks(job, &locks, &holders, waited.as_secs(), max_wait.as_secs());
        record(&admission);
        engine.remove_locks(&admission.remove)?;
        match admission.verdict {
            LockVerdict::Proceed => return Ok(()),
            LockVerdict::Wait { retry_after_secs } => {
                let pause = Duration::from_secs(retry_after_secs.max(1));
                std::thread::sleep(pause);
                *waited += pause;
            }
            LockVerdict::Fail { message, .. } => return Err(EngineError::Locked(message)),
        }
    }
}

/// The pods of ours in `namespace` (the job's), and whether they are all that may use the
/// repository of `session`'s BackupConfiguration ([`LockHolders::new`]).
pub async fn lock_holders(
    client: &kube::Client,
    namespace: &str,
    session: &str,
) -> Result<LockHolders, kube::Error> {
    // A Repository this job may not read (another namespace's) only makes the list incomplete.
    let repository = match session_repository(client, namespace, session).await? {
        Some((ns, name)) => Api::<Repository>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY}");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let pods = pods.items.iter().map(JobPod::of).collect();
    Ok(LockHolders::new(pods, repository.as_ref(), namespace))
}

/// The namespace and name of the Repository that `session`'s BackupConfiguration uses.
async fn session_repository(
    client: &kube::Client,
    namespace: &str,
    session: &str,
) -> Result<Option<(String, String)>, kube::Error> {
    let session = Api::<BackupSession>::namespaced(client.clone(), namespace)
        .get(session)
        .await?;
    let Some(invoker) = session.spec.invoker.as_ref() else {
        return Ok(None);
    };
    let Some(bc) = Api::<BackupConfiguration>::namespaced(client.clone(), namespace)
        .get_opt(&invoker.name)
        .await?
    else {
        return Ok(None);
    };
    Ok(bc.spec.repository.map(|r| {
        let ns = r
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.to_owned());
        (ns, r.name)
    }))
}

/// Sets the `RepositoryLocked` condition of the Repository that `session`'s BackupConfiguration
/// uses. Nothing is written when the condition says nothing new (no lock, and none recorded).
pub async fn record_condition(
    client: &kube::Client,
    namespace: &str,
    session: &str,
    admission: &LockAdmission,
) -> Result<(), kube::Error> {
    let (status, reason, message) = &admission.condition;
    let Some((repo_ns, repo_name)) = session_repository(client, namespace, session).await? else {
        return Ok(());
    };
    let api = Api::<Repository>::namespaced(client.clone(), &repo_ns);
    for attempt in 0.. {
        let repo = api.get(&repo_name).await?;
        let mut conds = repo
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let old = conds.iter().find(|c| c.type_ == REPOSITORY_LOCKED);
        let news = match old {
            None => *reason != "NoConflictingLock",
            Some(c) => c.status != *status || c.reason.as_deref() != Some(reason),
        };
        if !news {
            return Ok(());
        }
        let new = NewCondition {
            type_: REPOSITORY_LOCKED,
            status,
            reason,
            message: message.clone(),
        };
        conditions::set(
            &mut conds,
            new,
            repo.metadata.generation,
            &Time(k8s_openapi::jiff::Timestamp::now()),
        );
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": repo.metadata.resource_version},
            "status": {"conditions": conds},
        });
        match api
            .patch_status(&repo_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 10 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
