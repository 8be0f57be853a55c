//! Which objects belong in a planner's inputs: the rules both readers follow, the operator's
//! (API reads, `stash-operator/src/operator/gather.rs`) and `stash render`'s (a set of objects,
//! [`crate::world`]). Keeping them here is what makes `render` show what the operator does.

use crate::api::{ObjectRef, Repository, TargetRef};
use crate::names::label_value;
use crate::plan::labels::{INVOKER_NAME, INVOKER_TYPE};
use std::collections::{BTreeMap, BTreeSet};

/// Namespace and name of an object.
pub type Key = (String, String);

/// The namespace of a reference: its own when given, else the referrer's.
fn namespace_of(referrer_ns: &str, given: Option<&String>) -> String {
    given
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| referrer_ns.to_string())
}

/// The Repository an invoker in `ns` references; `None` when it names none.
pub fn repository_key(ns: &str, r: Option<&ObjectRef>) -> Option<Key> {
    let r = r.filter(|r| !r.name.is_empty())?;
    Some((namespace_of(ns, r.namespace.as_ref()), r.name.clone()))
}

/// The storage Secret of a Repository (it lives in the Repository's namespace).
pub fn storage_secret_key(repo_key: &Key, repo: &Repository) -> Option<Key> {
    let name = repo
        .spec
        .backend
        .storage_secret_name
        .as_ref()
        .filter(|s| !s.is_empty())?;
    Some((repo_key.0.clone(), name.clone()))
}

/// The key names a planner sees of a Secret: those of `data` and `stringData` (an API server
/// moves `stringData` into `data`; a file may still hold it).
pub fn secret_key_names<'a>(
    data: impl IntoIterator<Item = &'a String>,
    string_data: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    data.into_iter().chain(string_data).cloned().collect()
}

/// The AppBinding a target reference in `ns` names; `None` for other kinds or no name.
pub fn appbinding_key(ns: &str, r: Option<&TargetRef>) -> Option<Key> {
    let r = r?;
    if r.kind.as_deref() != Some("AppBinding") {
        return None;
    }
    let name = r.name.as_ref().filter(|n| !n.is_empty())?;
    Some((namespace_of(ns, r.namespace.as_ref()), name.clone()))
}

/// The labels of namespace `ns`: those stored, with the `kubernetes.io/metadata.name` label
/// that the API server puts on every namespace (a usage policy's selector may match it).
pub fn namespace_labels(
    ns: &str,
    stored: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = stored.cloned().unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.to_string());
    labels
}

/// The kinds the BackupConfiguration planner creates, as `(apiVersion, kind, plural)`: the
/// only kinds among which its orphans are looked for.
pub const CHILD_KINDS: [(&str, &str, &str); 4] = [
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    ("batch/v1", "CronJob", "cronjobs"),
];

/// The labels that mark the children of an invoker. The name is a label value, bounded like
/// the labels the planners write (a long name is cut and hashed), so long names still match.
pub fn child_labels(invoker_kind: &str, invoker_name: &str) -> [(&'static str, String); 2] {
    [
        (INVOKER_TYPE, invoker_kind.to_string()),
        (INVOKER_NAME, label_value(invoker_name)),
    ]
}

/// Labels as an equality label selector for a list request (`a=1,b=2`).
pub fn selector(labels: &[(&str, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `labels` hold every pair of `wanted`.
pub fn has_labels(labels: &BTreeMap<String, String>, wanted: &[(&str, String)]) -> bool {
    wanted.iter().all(|(k, v)| labels.get(*k) == Some(v))
}

/// Whether an object of `api_version`/`kind` with `labels` is a child of the invoker.
pub fn is_child(
    api_version: &str,
    kind: &str,
    labels: &BTreeMap<String, String>,
    invoker_kind: &str,
    invoker_name: &str,
) -> bool {
    CHILD_KINDS
        .iter()
        .any(|(v, k, _)| (*v, *k) == (api_version, kind))
        && has_labels(labels, &child_labels(invoker_kind, invoker_name))
}

/// The labels of a Job's pods (the Job controller's `job-name` label). Pods are read only
/// when their Job exists: without it they tell a planner nothing.
pub fn job_pod_labels(job_name: &str) -> [(&'static str, String); 1] {
    [("job-name", job_name.to_string())]
}

/// Whether the Repository planner needs its wipe-out Job: only while the Repository is being
/// deleted (at other times the Job's absence or presence changes nothing).
pub fn wants_wipe_out_job(repo: &Repository) -> bool {
    repo.metadata.deletion_timestamp.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_long_invoker_name_matches_its_bounded_label() {
        let name = "a".repeat(80);
        let written = crate::plan::labels::invoker_labels(None, "x", "BackupConfiguration", &name);
        assert!(is_child(
            "batch/v1",
            "CronJob",
            &written,
            "BackupConfiguration",
            &name
        ));
        assert!(!is_child(
            "batch/v1",
            "CronJob",
            &labels(&[(INVOKER_TYPE, "BackupConfiguration"), (INVOKER_NAME, &name)]),
            "BackupConfiguration",
            &name
        ));
    }

    #[test]
    fn only_the_planners_kinds_are_children() {
        let l = labels(&[(INVOKER_TYPE, "BackupConfiguration"), (INVOKER_NAME, "bc")]);
        assert!(is_child(
            "v1",
            "ServiceAccount",
            &l,
            "BackupConfiguration",
            "bc"
        ));
        assert!(!is_child(
            "v1",
            "ConfigMap",
            &l,
            "BackupConfiguration",
            "bc"
        ));
        assert_eq!(
            selector(&child_labels("BackupConfiguration", "bc")),
            "stash.appscode.com/invoker-type=BackupConfiguration,stash.appscode.com/invoker-name=bc"
        );
    }

    #[test]
    fn references_default_to_the_referrers_namespace() {
        let r = ObjectRef {
            namespace: Some(String::new()),
            name: "repo".into(),
        };
        assert_eq!(
            repository_key("demo", Some(&r)),
            Some(("demo".into(), "repo".into()))
        );
        let empty = ObjectRef::default();
        assert_eq!(repository_key("demo", Some(&empty)), None);
        let t = TargetRef {
            kind: Some("StatefulSet".into()),
            name: Some("db".into()),
            ..TargetRef::default()
        };
        assert_eq!(appbinding_key("demo", Some(&t)), None);
    }
}
