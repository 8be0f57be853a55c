//! Planners: `fn(&Inputs) -> Plan`, pure and deterministic.
//!
//! A planner receives the reconciled object, everything it references and `now`, and returns
//! what to apply (server-side, by the operator's field manager), what to delete, the status to
//! set, the events to publish and when to look again. The operator decides nothing itself.

pub mod backend;
pub mod backup_configuration;
pub mod backup_session;
pub mod job;
mod job_result;
pub mod labels;
mod rbac;
pub mod repository;
pub mod restore_session;
pub mod update_status;
pub mod wipe_out;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Operator-wide settings the planners need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Image of the operator; runs `create-backupsession` and `update-status`.
    pub image: String,
    /// `imagePullPolicy` of generated containers.
    pub image_pull_policy: String,
    /// `--license-apiservice` value passed through to Functions (unused by our image).
    pub license_apiservice: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: DEFAULT_IMAGE.to_string(),
            image_pull_policy: "IfNotPresent".to_string(),
            license_apiservice: String::new(),
        }
    }
}

/// The image our catalog and generated pods point at by default.
pub const DEFAULT_IMAGE: &str = "ghcr.io/stash-rs/stash:v0.1.0";

/// Field manager the operator applies with.
pub const FIELD_MANAGER: &str = "stash-operator";
/// Finalizer on BackupConfigurations and RestoreSessions (Stash's).
pub const FINALIZER: &str = "stash.appscode.com";
/// Finalizer on Repositories (Stash's).
pub const REPOSITORY_FINALIZER: &str = "stash";

/// The finalizer the operator puts on objects of `kind`.
pub fn finalizer_for(kind: &str) -> &'static str {
    if kind == "Repository" {
        REPOSITORY_FINALIZER
    } else {
        FINALIZER
    }
}

/// What to do with the reconciled object's finalizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalizerAction {
    /// Leave as is.
    #[default]
    Keep,
    /// Add it (before creating children).
    Add,
    /// Remove it (cleanup done; the object may go).
    Remove,
}

/// An object to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    /// API version.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (None for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of an object to apply (its apiVersion, kind, namespace and name), if it has them.
    pub fn of(object: &Value) -> Option<ObjectKey> {
        Some(ObjectKey {
            api_version: object.get("apiVersion")?.as_str()?.to_string(),
            kind: object.get("kind")?.as_str()?.to_string(),
            namespace: object
                .pointer("/metadata/namespace")
                .and_then(|n| n.as_str())
                .map(String::from),
            name: object.pointer("/metadata/name")?.as_str()?.to_string(),
        })
    }
}

/// An event to publish on the reconciled object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSpec {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Reason (Stash's wording, e.g. `CronJob Creation Failed`).
    pub reason: String,
    /// Message. Never contains secret values.
    pub message: String,
    /// Reporting component (`BackupConfiguration Controller`, ...).
    pub source: String,
    /// The Event's name, for an event that must exist once (see [`ending_event`]): a create
    /// under this name that finds it there is done. `None`: a new Event every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How long after a session ended its ending event is still planned on every look, so that a
/// lost answer to the final status write, a retry or an operator restart cannot lose it. Well
/// under the API server's Event TTL (1 hour by default): a repeat always meets the first one.
pub const ENDING_EVENT_WINDOW_SECS: i64 = 30 * 60;

/// The event of a session's end, named after the session (and its uid, for a session
/// recreated under the same name) and the reason, so that it is created once.
pub fn ending_event(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    type_: &str,
    reason: &str,
    message: String,
    source: &str,
) -> EventSpec {
    EventSpec {
        type_: type_.into(),
        reason: reason.into(),
        message,
        source: source.into(),
        name: Some(once_event_name(meta, &[reason])),
    }
}

/// The name of an event about a session that must exist once: the session's name, the first
/// eight letters and digits of its uid, then each of `parts` (a reason, a host name) in lower
/// case with every character a name may not hold turned into `-`; bounded to a valid name.
pub fn once_event_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    parts: &[&str],
) -> String {
    let session = meta.name.clone().unwrap_or_default();
    let uid: String = meta
        .uid
        .iter()
        .flat_map(|u| u.chars())
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut name = session;
    if !uid.is_empty() {
        name.push('.');
        name.push_str(&uid);
    }
    for part in parts {
        let slug: String = part
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '-') => c,
                _ => '-',
            })
            .collect();
        name.push('.');
        name.push_str(slug.trim_matches('-'));
    }
    crate::names::bounded(&name, crate::names::SUBDOMAIN_MAX)
}

/// Whether a session created at `created` (Unix seconds) that took `duration` (Go duration,
/// its `status.sessionDuration`) ended less than [`ENDING_EVENT_WINDOW_SECS`] before `now`.
pub fn ended_recently(created: i64, duration: Option<&str>, now: &Time) -> bool {
    let Some(millis) = duration.and_then(|d| crate::duration::parse_go_duration_millis(d).ok())
    else {
        return false;
    };
    let ended = created.saturating_add((millis / 1000) as i64);
    unix(now).saturating_sub(ended) < ENDING_EVENT_WINDOW_SECS
}

/// The result of a planner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The reconciled object.
    pub object: Option<ObjectKey>,
    /// Finalizer handling.
    #[serde(default, skip_serializing_if = "is_keep")]
    pub finalizer: FinalizerAction,
    /// Complete objects to apply, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply: Vec<Value>,
    /// Objects to delete (background propagation), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<ObjectKey>,
    /// The status to apply on the `/status` subresource; None means leave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Events to publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventSpec>,
    /// Look again after this many seconds even if nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<u64>,
}

fn is_keep(a: &FinalizerAction) -> bool {
    *a == FinalizerAction::Keep
}

/// The start of every planner: the object's name and namespace (`default` when unset), `now`
/// (the epoch when the caller gave none), and an empty plan naming the object.
pub(crate) fn begin(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    now: &Option<Time>,
) -> (String, String, Time, Plan) {
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let now = now
        .clone()
        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let plan = Plan {
        object: Some(ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(namespace.clone()),
            name: name.clone(),
        }),
        ..Default::default()
    };
    (name, namespace, now, plan)
}

/// Seconds since the epoch of a timestamp.
pub fn unix(t: &Time) -> i64 {
    t.0.as_second()
}

/// A timestamp `secs` after `t` (saturating at the representable range).
pub fn add_seconds(t: &Time, secs: i64) -> Time {
    let base = t.0.as_second().saturating_add(secs);
    Time(
        k8s_openapi::jiff::Timestamp::from_second(base)
            .unwrap_or(k8s_openapi::jiff::Timestamp::MAX),
    )
}

/// The controller owner reference to an object.
pub fn controller_ref(
    api_version: &str,
    kind: &str,
    name: &str,
    uid: Option<&str>,
) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.unwrap_or_default().to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A target reference with its namespace defaulted to `namespace` (the invoker's) when unset
/// or empty.
pub(crate) fn target_ref_in(
    r: Option<&crate::api::TargetRef>,
    namespace: &str,
) -> crate::api::TargetRef {
    let mut r = r.cloned().unwrap_or_default();
    if r.namespace.as_deref().unwrap_or("").is_empty() {
        r.namespace = Some(namespace.to_string());
    }
    r
}

/// Serializes a typed object into the JSON the operator applies. Serializing our own types
/// cannot fail (no maps with non-string keys), so a failure yields `Null` rather than a panic.
pub(crate) fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}
