//! Labels on generated objects: Stash's offshoot labels plus the invoker labels by which the
//! operator finds (and deletes) orphans.

use crate::names::label_value;
use std::collections::BTreeMap;

/// `app.kubernetes.io/managed-by` value, Stash's.
pub const MANAGED_BY: &str = "stash.appscode.com";
/// Label naming the invoker kind.
pub const INVOKER_TYPE: &str = "stash.appscode.com/invoker-type";
/// Label naming the invoker.
pub const INVOKER_NAME: &str = "stash.appscode.com/invoker-name";
/// Label of CronJob-created Jobs that the operator deletes once they succeed.
pub const DELETE_JOB_ON_COMPLETION: &str = "stash.appscode.com/delete-job-on-completion";

/// The labels of every object generated for an invoker: the invoker's own labels, then
/// Stash's component and managed-by labels, then the invoker labels.
pub fn invoker_labels(
    user_labels: Option<&BTreeMap<String, String>>,
    component: &str,
    invoker_kind: &str,
    invoker_name: &str,
) -> BTreeMap<String, String> {
    let mut labels = user_labels.cloned().unwrap_or_default();
    labels.insert("app.kubernetes.io/component".into(), component.into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert(INVOKER_TYPE.into(), invoker_kind.into());
    labels.insert(INVOKER_NAME.into(), label_value(invoker_name));
    labels
}
