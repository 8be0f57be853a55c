//! Leader election on a coordination Lease: one active operator per cluster.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use std::time::Duration;

/// Why leader election cannot go on: retrying will not help.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease's namespace does not exist.
    #[error(
        "leader-election namespace \"{0}\" does not exist: create it, or pass --namespace \
         (env POD_NAMESPACE) naming the namespace the operator runs in"
    )]
    NamespaceMissing(String),
}

/// Lease duration; a leader that stops renewing loses it after this.
pub const LEASE_SECONDS: i32 = 15;

/// Tries once to take or renew the lease; true when `identity` holds it afterwards.
pub async fn try_acquire(
    client: &Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let now = Timestamp::now();
    let spec = |transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                spec: Some(spec(0)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let holder = current.holder_identity.clone().unwrap_or_default();
            let expires = current
                .renew_time
                .as_ref()
                .map(|t| {
                    t.0.as_second()
                        + i64::from(current.lease_duration_seconds.unwrap_or(LEASE_SECONDS))
                })
                .unwrap_or(0);
            if holder != identity && !holder.is_empty() && expires > now.as_second() {
                return Ok(false);
            }
            let transitions =
                current.lease_transitions.unwrap_or(0) + i32::from(holder != identity);
            let mut next = spec(transitions);
            if holder == identity {
                next.acquire_time = current.acquire_time.clone();
            }
            lease.spec = Some(next);
            // The resourceVersion in `lease` makes this a compare-and-swap.
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until `identity` leads, then renews in the background; the returned receiver turns
/// false when leadership is lost. A missing namespace is an error at once: it does not heal.
pub async fn lead(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
) -> Result<tokio::sync::watch::Receiver<bool>, LeaderError> {
    loop {
        match try_acquire(&client, &namespace, &name, &identity).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = %name, "another instance leads; waiting"),
            Err(kube::Error::Api(s))
                if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
            {
                return Err(LeaderError::NamespaceMissing(namespace));
            }
            Err(e) => tracing::warn!(error = %e, "lease check failed"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(lease = %name, identity = %identity, "leading");
    let (tx, rx) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(Duration::from_secs((LEASE_SECONDS / 3) as u64)).await;
            match try_acquire(&client, &namespace, &name, &identity).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    let _ = tx.send(false);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "lease renewal failed");
                    if failures >= 2 {
                        let _ = tx.send(false);
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
