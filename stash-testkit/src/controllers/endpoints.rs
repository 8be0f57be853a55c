//! The endpoints and endpointslice controllers. For every Service with a selector they keep
//! an `Endpoints` object of the Service's name and `EndpointSlice`s labelled
//! `kubernetes.io/service-name`, listing the selected pods that have an IP and are not
//! finished: their address, readiness (from the pod's `Ready` condition) and the Service's
//! ports with each `targetPort` resolved against the pod's named container ports.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::MANAGER;
use crate::apiserver::{name_of, namespace_of, uid_of, Apiserver, DeleteOptions, WriteOptions};
use crate::registry::ResourceInfo;

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The endpoints controller marks its Endpoints so that the mirroring controller skips them.
const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

struct Resources {
    services: Arc<ResourceInfo>,
    pods: Arc<ResourceInfo>,
    endpoints: Arc<ResourceInfo>,
    slices: Arc<ResourceInfo>,
}

fn resources(api: &Apiserver) -> Option<Resources> {
    Some(Resources {
        services: api.resource("", "v1", "services").ok()?,
        pods: api.resource("", "v1", "pods").ok()?,
        endpoints: api.resource("", "v1", "endpoints").ok()?,
        slices: api
            .resource("discovery.k8s.io", "v1", "endpointslices")
            .ok()?,
    })
}

fn selects(selector: &Map<String, Value>, pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `ShouldPodBeInEndpoints`: an IP, not finished, and (unless terminating pods count)
/// not being deleted.
fn counts(pod: &Value, include_terminating: bool) -> bool {
    let has_ip = pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    let terminating = pod["metadata"].get("deletionTimestamp").is_some();
    has_ip && !finished && (include_terminating || !terminating)
}

/// The port a Service port reaches on a pod: a number as is, a name through the pod's
/// container ports of the same protocol (`FindPort`).
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    let protocol = port["protocol"].as_str().unwrap_or("TCP");
    match &port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) if !name.is_empty() => {
            if let Ok(n) = name.parse::<i64>() {
                return Some(n);
            }
            pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| {
                    p["name"] == name.as_str()
                        && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => port["port"].as_i64(),
    }
}

/// The Service's ports as they reach this pod, in EndpointSlice form (`name` always set).
fn pod_ports(service: &Value, pod: &Value) -> Vec<Value> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let mut out = json!({
                "name": p["name"].as_str().unwrap_or_default(),
                "port": target_port(p, pod)?,
                "protocol": p["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(app) = p.get("appProtocol").filter(|a| a.is_string()) {
                out["appProtocol"] = app.clone();
            }
            Some(out)
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod), "uid": uid_of(pod)})
}

fn labels_for(service: &Value, extra: &[(&str, &str)]) -> Value {
    let mut labels = service["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if service["spec"]["clusterIP"] == "None" {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    for (k, v) in extra {
        labels.insert(k.to_string(), json!(v));
    }
    Value::Object(labels)
}

/// One subset being built: ports, ready addresses, not-ready addresses.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

/// The `subsets` of the Service's `Endpoints`: pods grouped by their resolved ports.
fn subsets(service: &Value, pods: &[&Arc<Value>]) -> Vec<Value> {
    let publish = service["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods.iter().filter(|p| counts(p, publish)) {
        let ports: Vec<Value> = pod_ports(service, pod)
            .into_iter()
            .map(|mut p| {
                // core/v1 EndpointPort omits an empty name.
                if p["name"] == "" {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("name");
                    }
                }
                p
            })
            .collect();
        let address = json!({
            "ip": pod["status"]["podIP"],
            "nodeName": pod["spec"]["nodeName"],
            "targetRef": target_ref(pod),
        });
        let entry = groups
            .entry(Value::Array(ports.clone()).to_string())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pod_ready(pod) {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    groups
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            if !ports.is_empty() {
                subset["ports"] = json!(ports);
            }
            subset
        })
        .collect()
}

/// The desired slices: `(ports, endpoints)`, grouped by resolved ports; one empty slice when
/// no pod counts, as the controller keeps a placeholder.
fn slices(service: &Value, pods: &[&Arc<Value>]) -> Vec<(Value, Value)> {
    let publish = service["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| counts(p, true)) {
        let ports = Value::Array(pod_ports(service, pod));
        let terminating = pod["metadata"].get("deletionTimestamp").is_some();
        let ready = pod_ready(pod);
        let endpoint = json!({
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": publish || (ready && !terminating), "serving": ready, "terminating": terminating},
            "targetRef": target_ref(pod),
            "nodeName": pod["spec"]["nodeName"],
        });
        groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint);
    }
    if groups.is_empty() {
        return vec![(json!([]), json!([]))];
    }
    groups
        .into_values()
        .map(|(ports, eps)| (ports, Value::Array(eps)))
        .collect()
}

fn write_opts() -> WriteOptions {
    WriteOptions::manager(MANAGER)
}

fn sync_endpoints(api: &Apiserver, r: &Resources, service: &Value, pods: &[&Arc<Value>]) {
    let ns = namespace_of(service);
    let name = name_of(service);
    let labels = labels_for(service, &[(SKIP_MIRROR_LABEL, "true")]);
    let subsets = subsets(service, pods);
    let apply = |obj: &mut Value| {
        let mut changed = false;
        if obj["metadata"]["labels"] != labels {
            obj["metadata"]["labels"] = labels.clone();
            changed = true;
        }
        let current = obj.get("subsets").cloned().unwrap_or(json!([]));
        if current != json!(subsets) {
            if subsets.is_empty() {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("subsets");
                }
            } else {
                obj["subsets"] = json!(subsets);
            }
            changed = true;
        }
        changed
    };
    if api.get(&r.endpoints, ns, name).is_ok() {
        let _ = api.modify(&r.endpoints, ns, name, "", MANAGER, apply);
    } else {
        let mut obj = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}});
        apply(&mut obj);
        let _ = api.create(&r.endpoints, ns, obj, &write_opts());
    }
}

fn sync_slices(
    api: &Apiserver,
    r: &Resources,
    service: &Value,
    pods: &[&Arc<Value>],
    existing: &[&Arc<Value>],
) {
    let ns = namespace_of(service);
    let name = name_of(service);
    let labels = labels_for(
        service,
        &[(SERVICE_NAME_LABEL, name), (MANAGED_BY_LABEL, MANAGED_BY)],
    );
    let owner = json!([{
        "apiVersion": "v1", "kind": "Service", "name": name, "uid": uid_of(service),
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let mut desired = slices(service, pods);
    // Slices whose ports already match keep their group; the rest are reused, then created
    // or deleted as needed.
    let mut unmatched: Vec<&Arc<Value>> = Vec::new();
    let mut assigned: Vec<(&Arc<Value>, (Value, Value))> = Vec::new();
    for slice in existing {
        match desired
            .iter()
            .position(|(ports, _)| slice["ports"] == *ports)
        {
            Some(i) => assigned.push((slice, desired.remove(i))),
            None => unmatched.push(slice),
        }
    }
    let mut unmatched = unmatched.into_iter();
    for want in desired {
        match unmatched.next() {
            Some(slice) => assigned.push((slice, want)),
            None => {
                let obj = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels, "ownerReferences": owner},
                    "addressType": "IPv4", "ports": want.0, "endpoints": want.1,
                });
                let _ = api.create(&r.slices, ns, obj, &write_opts());
            }
        }
    }
    for (slice, (ports, endpoints)) in assigned {
        let _ = api.modify(&r.slices, ns, name_of(slice), "", MANAGER, |obj| {
            let mut changed = false;
            for (field, want) in [("ports", &ports), ("endpoints", &endpoints)] {
                if obj[field] != *want {
                    obj[field] = want.clone();
                    changed = true;
                }
            }
            for (field, want) in [("labels", &labels), ("ownerReferences", &owner)] {
                if obj["metadata"][field] != *want {
                    obj["metadata"][field] = want.clone();
                    changed = true;
                }
            }
            changed
        });
    }
    for slice in unmatched {
        let _ = api.delete(&r.slices, ns, name_of(slice), &DeleteOptions::default());
    }
}

/// One pass of both controllers.
pub(super) fn sync(api: &Apiserver) {
    let Some(r) = resources(api) else { return };
    let services = api.objects_of(&r.services);
    let pods = api.objects_of(&r.pods);
    let slices = api.objects_of(&r.slices);
    for service in &services {
        let Some(selector) = service["spec"]["selector"]
            .as_object()
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        if service["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        let ns = namespace_of(service);
        let selected: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| namespace_of(p) == ns && selects(selector, p))
            .collect();
        sync_endpoints(api, &r, service, &selected);
        let existing: Vec<&Arc<Value>> = slices
            .iter()
            .filter(|s| {
                let labels = &s["metadata"]["labels"];
                namespace_of(s) == ns
                    && labels[SERVICE_NAME_LABEL] == name_of(service)
                    && labels[MANAGED_BY_LABEL] == MANAGED_BY
            })
            .collect();
        sync_slices(api, &r, service, &selected, &existing);
    }
    // Endpoints this controller made for a Service that is gone. (Its slices are owned by
    // the Service and go with it through the garbage collector.)
    for ep in api.objects_of(&r.endpoints) {
        if ep["metadata"]["labels"][SKIP_MIRROR_LABEL] != "true" {
            continue;
        }
        let service_exists = services
            .iter()
            .any(|s| namespace_of(s) == namespace_of(&ep) && name_of(s) == name_of(&ep));
        if !service_exists {
            let _ = api.delete(
                &r.endpoints,
                namespace_of(&ep),
                name_of(&ep),
                &DeleteOptions::default(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_through_container_ports() {
        let pod = json!({"spec": {"containers": [
            {"name": "db", "ports": [{"name": "mysql", "containerPort": 3306}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
        ]}});
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "mysql"}), &pod),
            Some(3306)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": 8080}), &pod),
            Some(8080)
        );
        assert_eq!(target_port(&json!({"port": 80}), &pod), Some(80));
        assert_eq!(
            target_port(&json!({"port": 53, "targetPort": "dns"}), &pod),
            None,
            "protocol must match"
        );
        assert_eq!(
            target_port(
                &json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}),
                &pod
            ),
            Some(53)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "nope"}), &pod),
            None
        );
    }
}
