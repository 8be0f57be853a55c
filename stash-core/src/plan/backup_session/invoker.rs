//! BackupSession: the session's invoker (the BackupConfiguration `spec.invoker` names) and the
//! other sessions of the same invoker.

use crate::api::{BackupConfiguration, BackupSession, TargetRef};
use crate::plan::unix;

/// Summary of another session of the same invoker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiblingSession {
    /// Name.
    pub name: String,
    /// Phase (empty when none yet).
    pub phase: String,
    /// Creation time, unix seconds.
    pub created: i64,
}

impl SiblingSession {
    /// The summary of `session`.
    pub fn of(session: &BackupSession) -> SiblingSession {
        SiblingSession {
            name: session.metadata.name.clone().unwrap_or_default(),
            phase: session
                .status
                .as_ref()
                .and_then(|x| x.phase.clone())
                .unwrap_or_default(),
            created: session
                .metadata
                .creation_timestamp
                .as_ref()
                .map(unix)
                .unwrap_or(0),
        }
    }
}

/// API group of Stash's invokers.
pub const INVOKER_API_GROUP: &str = "stash.appscode.com";

/// The name of the BackupConfiguration that `session.spec.invoker` names, if it names one.
/// Sessions are matched by their spec, never by labels: a hand-written session usually has none.
pub fn configuration_of(session: &BackupSession) -> Option<&str> {
    let invoker = session.spec.invoker.as_ref()?;
    let group_ok = matches!(
        invoker.api_group.as_deref(),
        None | Some("") | Some(INVOKER_API_GROUP)
    );
    (group_ok && invoker.kind == "BackupConfiguration" && !invoker.name.is_empty())
        .then_some(invoker.name.as_str())
}

/// The sessions among `sessions` that the BackupConfiguration `namespace/name` invoked.
pub fn siblings_of<'a>(
    sessions: impl IntoIterator<Item = &'a BackupSession>,
    namespace: &str,
    name: &str,
) -> Vec<SiblingSession> {
    sessions
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|s| configuration_of(s) == Some(name))
        .map(SiblingSession::of)
        .collect()
}

/// The invoker's target reference, its namespace defaulted to the session's.
pub(super) fn resolved_target_ref(bc: &BackupConfiguration, namespace: &str) -> TargetRef {
    crate::plan::target_ref_in(
        bc.spec.target.as_ref().and_then(|t| t.r#ref.as_ref()),
        namespace,
    )
}

/// The host name the backup runs as: the target's alias, else `host-0`.
pub(super) fn invoker_host(bc: Option<&BackupConfiguration>) -> String {
    bc.and_then(|b| b.spec.target.as_ref())
        .and_then(|t| t.alias.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "host-0".into())
}
