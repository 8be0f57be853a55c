//! BackupSession: the sessions that get created: the retry of a failed session (by this
//! planner), the scheduled one (by `create-backupsession` in the trigger CronJob) and the manual
//! one (by `stash trigger`).

use super::invoker::INVOKER_API_GROUP;
use super::BackupSessionInputs;
use crate::api::{BackupConfiguration, BackupSession, BackupSessionSpec, BackupSessionStatus};
use crate::duration::parse_go_duration_millis;
use crate::names::backup_session_name;
use crate::plan::labels::{invoker_labels, INVOKER_NAME, INVOKER_TYPE};
use crate::plan::{add_seconds, controller_ref, to_value, unix, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// Creates the retry session once `nextRetry` has passed.
pub(super) fn plan_retry(
    inputs: &BackupSessionInputs,
    st: &mut BackupSessionStatus,
    plan: &mut Plan,
    now: &Time,
) {
    let s = &inputs.session;
    let retry_left = s.spec.retry_left.unwrap_or(0);
    let Some(rc) = inputs
        .invoker
        .as_ref()
        .and_then(|bc| bc.spec.retry_config.as_ref())
    else {
        return;
    };
    if st.phase.as_deref() != Some("Failed") || retry_left <= 0 || st.retried == Some(true) {
        return;
    }
    let delay = rc
        .delay
        .as_deref()
        .and_then(|d| parse_go_duration_millis(d).ok())
        .unwrap_or(0)
        / 1000;
    let next = st
        .next_retry
        .clone()
        .unwrap_or_else(|| add_seconds(now, delay as i64));
    if unix(now) < unix(&next) {
        st.next_retry = Some(next.clone());
        plan.requeue_after_seconds = Some((unix(&next) - unix(now)).max(1) as u64);
        return;
    }
    st.next_retry = Some(next);
    st.retried = Some(true);
    if let Some(bc) = &inputs.invoker {
        plan.apply
            .push(to_value(&new_session(bc, unix(now), retry_left - 1)));
    }
}

/// A new BackupSession for `bc` named `<bc>-<unix>` (what `create-backupsession` creates).
pub fn new_session(bc: &BackupConfiguration, unix_now: i64, retry_left: i32) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let namespace = bc.metadata.namespace.clone();
    let target = bc
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    let mut labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        &bc_name,
    );
    labels.insert(
        "stash.appscode.com/target-kind".into(),
        target.kind.clone().unwrap_or_default(),
    );
    labels.insert(
        "stash.appscode.com/target-name".into(),
        crate::names::label_value(&target.name.clone().unwrap_or_default()),
    );
    labels.insert(
        "stash.appscode.com/target-namespace".into(),
        target.namespace.clone().unwrap_or_default(),
    );
    let mut session = invoked_session(bc, &backup_session_name(&bc_name, unix_now));
    session.spec.retry_left = Some(retry_left);
    session.metadata.namespace = namespace;
    session.metadata.labels = Some(labels);
    session
}

/// The BackupSession `kubectl stash trigger` creates for `bc`: `generateName: <bc>-` (the API
/// server picks the name), labels `app: stash` and the invoker labels, `spec.invoker`, owned
/// by `bc` as its controller. Like Stash's, it sets no `retryLeft`.
pub fn manual_session(bc: &BackupConfiguration) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let mut session = invoked_session(bc, "");
    session.metadata.name = None;
    session.metadata.generate_name = Some(format!("{bc_name}-"));
    session.metadata.namespace = bc.metadata.namespace.clone();
    session.metadata.labels = Some(BTreeMap::from([
        ("app".to_string(), "stash".to_string()),
        (INVOKER_TYPE.to_string(), "BackupConfiguration".to_string()),
        (
            INVOKER_NAME.to_string(),
            crate::names::label_value(&bc_name),
        ),
    ]));
    session
}

/// A session named `name` whose `spec.invoker` is `bc` and whose controller is `bc`.
fn invoked_session(bc: &BackupConfiguration, name: &str) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let mut session = BackupSession::new(
        name,
        BackupSessionSpec {
            invoker: Some(crate::api::BackupInvokerRef {
                api_group: Some(INVOKER_API_GROUP.into()),
                kind: "BackupConfiguration".into(),
                name: bc_name.clone(),
            }),
            retry_left: None,
        },
    );
    session.metadata.owner_references = Some(vec![controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupConfiguration",
        &bc_name,
        bc.metadata.uid.as_deref(),
    )]);
    session
}
