//! RBAC the planners' pods need: a ServiceAccount with a Role and a RoleBinding of the same
//! name, and the rules shared by the backup and restore Jobs.

use super::to_value;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// A rule on `resources` of `groups` for `verbs`, limited to `names` when there are any.
pub(crate) fn rule(
    groups: &[&str],
    resources: &[&str],
    verbs: &[&str],
    names: &[String],
) -> PolicyRule {
    let s = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: s(groups),
        resources: s(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        ..Default::default()
    }
}

/// Reaching the database behind the AppBinding's Service (its Endpoints or EndpointSlices)
/// and running exec hooks in its pod, as Stash's job roles allow.
pub(crate) fn target_pod_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["services", "endpoints", "pods"], &["get"], &[]),
        rule(&["discovery.k8s.io"], &["endpointslices"], &["list"], &[]),
        rule(&[""], &["pods/exec"], &["create", "get"], &[]),
    ]
}

/// A ServiceAccount, a Role with `rules` and a RoleBinding between them, all named like `meta`.
pub(crate) fn service_account_role_binding(
    meta: ObjectMeta,
    rules: Vec<PolicyRule>,
    sa_annotations: Option<BTreeMap<String, String>>,
) -> Vec<serde_json::Value> {
    let name = meta.name.clone().unwrap_or_default();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            annotations: sa_annotations,
            ..meta.clone()
        },
        ..Default::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta.clone(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: meta.namespace.clone(),
            ..Default::default()
        }]),
    };
    // k8s-openapi serializes apiVersion and kind with every resource.
    vec![to_value(&sa), to_value(&role), to_value(&binding)]
}
