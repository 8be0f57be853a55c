//! `POST pods/NAME/binding`: how a scheduler (or our node agent, as there is no scheduler)
//! assigns a pod to a node. Like the real registry it sets `spec.nodeName` once, adds the
//! `PodScheduled` condition, and refuses a second assignment with 409 Conflict.

use serde_json::{json, Value};

use crate::apiserver::Apiserver;
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult};

const MANAGER: &str = "kube-scheduler";

/// Binds pod `namespace/name` to the node named by the Binding `body`.
pub(super) fn bind(
    api: &Apiserver,
    pods: &ResourceInfo,
    namespace: &str,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the binding ({}) does not match the name of the pod ({name})",
            body["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let node = body["target"]["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!("Binding.core \"{name}\" is invalid: target.name: Required value"),
        ));
    }
    let now = api.clock.now_string();
    let mut assigned = None;
    let result = api.modify(pods, namespace, name, "", MANAGER, |pod| {
        let current = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if !current.is_empty() {
            assigned = Some(current.to_string());
            return false;
        }
        if pod["metadata"].get("deletionTimestamp").is_some() {
            assigned = Some(String::new());
            return false;
        }
        pod["spec"]["nodeName"] = json!(node);
        true
    })?;
    if result.is_some() {
        // The real registry writes both in one update; here the status strategy owns status.
        let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        api.modify(pods, namespace, name, "status", MANAGER, |pod| {
            if !pod["status"].is_object() {
                pod["status"] = json!({});
            }
            match pod["status"]["conditions"].as_array_mut() {
                Some(conds) => {
                    conds.retain(|c| c["type"] != "PodScheduled");
                    conds.push(scheduled.clone());
                }
                None => pod["status"]["conditions"] = json!([scheduled]),
            }
            true
        })?;
    }
    match (result, assigned) {
        (Some(_), _) => Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ),
        (None, Some(current)) if current.is_empty() => Err(ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
        )),
        (None, current) => Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{}\"",
                current.unwrap_or_default()
            ),
        )),
    }
}
