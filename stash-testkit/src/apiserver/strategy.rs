//! Per-kind rules: defaults, validation and side effects of built-in types.

use base64::Engine;
use serde_json::{json, Value};

use super::{name_of, Apiserver};
use crate::registry::ResourceInfo;
use crate::status::{cause, ApiError, ApiResult, Cause};
use crate::store::{Key, State};

fn set_default(obj: &mut Value, field: &str, value: Value) {
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = value;
    }
}

fn invalid(info: &ResourceInfo, obj: &Value, causes: Vec<Cause>) -> ApiResult<()> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &info.group,
            &info.kind,
            name_of(obj),
            causes,
        ))
    }
}

fn validate_pod_spec(spec: &Value, prefix: &str, restart_for_jobs: bool, causes: &mut Vec<Cause>) {
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{prefix}.containers[{i}].name"),
                        "Required value",
                    ));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{prefix}.containers[{i}].image"),
                        "Required value",
                    ));
                }
            }
        }
        _ => causes.push(cause(
            "FieldValueRequired",
            &format!("{prefix}.containers"),
            "Required value",
        )),
    }
    if restart_for_jobs {
        let field = format!("{prefix}.restartPolicy");
        match spec["restartPolicy"].as_str() {
            Some("Never") | Some("OnFailure") => {}
            None => causes.push(cause(
                "FieldValueRequired",
                &field,
                "Required value: valid values: \"OnFailure\", \"Never\"",
            )),
            Some(other) => causes.push(cause(
                "FieldValueNotSupported",
                &field,
                format!(
                    "Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""
                ),
            )),
        }
    }
}

fn encode_string_data(obj: &mut Value) {
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in sd {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn job_defaults(obj: &mut Value, uid: &str, name: &str) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    if parallelism_unset && spec.get("completions").is_none_or(Value::is_null) {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec["manualSelector"] != json!(true) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    if !spec["template"]["metadata"].is_object() {
        spec["template"]["metadata"] = json!({});
    }
    let meta = &mut spec["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        meta["labels"][k] = json!(v);
    }
}

/// A cluster IP from the default service range 10.96.0.0/12. Nothing routes to it here (pods
/// are local processes on 127.0.0.1); clients find pods through Endpoints.
fn allocate_cluster_ip() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("10.{}.{}.{}", 96 + (b[0] & 0x0f), b[1], b[2].max(2))
}

/// Service defaults as the API server applies them, and the port checks it makes.
fn service_defaults(info: &ResourceInfo, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = name_of(obj).to_string();
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    let external = spec["type"] == "ExternalName";
    if let Some(old) = old {
        // Allocated values survive updates that leave them out (`PatchAllocatedValues`).
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(field).is_none_or(Value::is_null) && !old["spec"][field].is_null() {
                spec[field] = old["spec"][field].clone();
            }
        }
    }
    let mut causes = Vec::new();
    let headless = spec["clusterIP"] == "None";
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && !headless && !external {
        causes.push(cause("FieldValueRequired", "spec.ports", "Required value"));
    }
    for (i, p) in ports.iter().enumerate() {
        match p["port"].as_i64() {
            Some(n) if (1..=65535).contains(&n) => {}
            _ => causes.push(cause(
                "FieldValueInvalid",
                &format!("spec.ports[{i}].port"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    p["port"]
                ),
            )),
        }
        if ports.len() > 1 && p["name"].as_str().is_none_or(str::is_empty) {
            causes.push(cause(
                "FieldValueRequired",
                &format!("spec.ports[{i}].name"),
                "Required value",
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
    }
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        set_default(p, "protocol", json!("TCP"));
        let port = p["port"].clone();
        set_default(p, "targetPort", port);
    }
    set_default(spec, "sessionAffinity", json!("None"));
    if !external {
        if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
            spec["clusterIP"] = json!(allocate_cluster_ip());
        }
        let ip = spec["clusterIP"].clone();
        set_default(spec, "clusterIPs", json!([ip]));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    set_default(obj, "status", json!({"loadBalancer": {}}));
    Ok(())
}

/// The API server's defaults for a pod template's spec and its containers.
fn pod_spec_defaults(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if !c.is_object() {
                continue;
            }
            set_default(c, "resources", json!({}));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            let image = c["image"].as_str().unwrap_or_default();
            let tag = image
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'));
            let latest = !image.contains('@') && tag.is_none_or(|(_, t)| t == "latest");
            set_default(
                c,
                "imagePullPolicy",
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
        }
    }
}

/// The API server's defaults for a Deployment.
fn deployment_defaults(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    set_default(spec, "replicas", json!(1));
    set_default(
        spec,
        "strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    pod_spec_defaults(&mut spec["template"]["spec"]);
}

/// Defaults a CRD's `spec.names` (singular, listKind) and `spec.conversion`.
fn crd_defaults(obj: &mut Value) {
    let names = &mut obj["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    set_default(names, "singular", json!(kind.to_lowercase()));
    set_default(names, "listKind", json!(format!("{kind}List")));
    set_default(&mut obj["spec"], "conversion", json!({"strategy": "None"}));
}

/// A CRD's status as stored on create, before the API server has accepted its names.
fn crd_initial_status(obj: &Value) -> Value {
    let stored: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .collect();
    json!({"conditions": null, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": stored})
}

/// A CRD's status once its names are accepted and its resources served.
pub(super) fn crd_established_status(obj: &Value, now: &str) -> Value {
    let names = obj["spec"]["names"].clone();
    let mut status = obj["status"].clone();
    if !status.is_object() {
        status = crd_initial_status(obj);
    }
    status["acceptedNames"] = names;
    status["conditions"] = json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
    ]);
    status
}

fn validate_crd(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(cause("FieldValueRequired", "spec.group", "Required value"));
    }
    if plural.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    let name = name_of(obj);
    if name != format!("{plural}.{group}") {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        _ => causes.push(cause(
            "FieldValueNotSupported",
            "spec.scope",
            "Unsupported value: supported values: \"Cluster\", \"Namespaced\"",
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count()
        != 1
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    causes
}

fn schedule_causes(spec: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let schedule = spec["schedule"].as_str().unwrap_or_default();
    if let Err(e) = crate::controllers::cron::Schedule::parse(schedule) {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.schedule",
            format!("Invalid value: \"{schedule}\": {e}"),
        ));
    }
    if let Some(tz) = spec["timeZone"].as_str() {
        if jiff::tz::TimeZone::get(tz).is_err() {
            causes.push(cause(
                "FieldValueInvalid",
                "spec.timeZone",
                format!("Invalid value: \"{tz}\": unknown time zone {tz}"),
            ));
        }
    }
    causes
}

/// Defaults and validation on create.
pub(super) fn prepare_create(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = name_of(obj).to_string();
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => {
            // A default, so the creator owns it; spec.finalizers and status come later.
            if !obj["metadata"]["labels"].is_object() {
                obj["metadata"]["labels"] = json!({});
            }
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "secrets") => {
            encode_string_data(obj);
            if obj["type"].as_str().is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
        }
        ("", "services") => service_defaults(info, obj, None)?,
        ("", "pods") => {
            let mut causes = Vec::new();
            validate_pod_spec(&obj["spec"], "spec", false, &mut causes);
            invalid(info, obj, causes)?;
            set_default(&mut obj["spec"], "restartPolicy", json!("Always"));
            set_default(&mut obj["spec"], "terminationGracePeriodSeconds", json!(30));
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("batch", "jobs") => {
            let mut causes = Vec::new();
            validate_pod_spec(
                &obj["spec"]["template"]["spec"],
                "spec.template.spec",
                true,
                &mut causes,
            );
            invalid(info, obj, causes)?;
            job_defaults(obj, &uid, &name);
            let mut causes = Vec::new();
            super::metadata::check_labels(
                &obj["spec"]["template"]["metadata"]["labels"],
                "spec.template.labels",
                &mut causes,
            )?;
            invalid(info, obj, causes)?;
        }
        ("batch", "cronjobs") => {
            let mut causes = Vec::new();
            if name.len() > 52 {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: \"{name}\": must be no more than 52 characters"),
                ));
            }
            causes.extend(schedule_causes(&obj["spec"]));
            validate_pod_spec(
                &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "spec.jobTemplate.spec.template.spec",
                true,
                &mut causes,
            );
            invalid(info, obj, causes)?;
            let spec = &mut obj["spec"];
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
        }
        ("apps", "deployments") => deployment_defaults(obj),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            invalid(info, obj, validate_crd(obj))?;
            crd_defaults(obj);
            obj["status"] = crd_initial_status(obj);
        }
        _ => {}
    }
    Ok(())
}

/// What the server sets on create after the writer's fields are recorded (so nobody owns it).
pub(super) fn finish_create(info: &ResourceInfo, obj: &mut Value) {
    if info.is("", "namespaces") && !obj["spec"]["finalizers"].is_array() {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
}

/// Defaults and validation on update.
pub(super) fn prepare_update(
    api: &Apiserver,
    info: &ResourceInfo,
    old: &Value,
    new: &mut Value,
) -> ApiResult<()> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "secrets") => encode_string_data(new),
        ("", "services") => service_defaults(info, new, Some(old))?,
        ("batch", "jobs") => {
            if new["spec"].is_object() && new["spec"].get("selector").is_none() {
                new["spec"]["selector"] = old["spec"]["selector"].clone();
            }
            let mut causes = Vec::new();
            for field in ["template", "selector", "completionMode"] {
                if new["spec"].get(field) != old["spec"].get(field) {
                    let shown = serde_json::to_string(&new["spec"][field]).unwrap_or_default();
                    causes.push(cause(
                        "FieldValueInvalid",
                        &format!("spec.{field}"),
                        format!("Invalid value: {shown}: field is immutable"),
                    ));
                }
            }
            invalid(info, new, causes)?;
        }
        ("batch", "cronjobs") => invalid(info, new, schedule_causes(&new["spec"]))?,
        ("apps", "deployments") => deployment_defaults(new),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            invalid(info, new, validate_crd(new))?;
            crd_defaults(new);
            if new["spec"]["names"] != old["spec"]["names"] || !new["status"].is_object() {
                let status = crd_established_status(new, &api.clock.now_string());
                new["status"] = status;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether an object whose finalizers are gone may be removed now.
pub(super) fn may_vanish(info: &ResourceInfo, obj: &Value) -> bool {
    if info.is("", "namespaces") {
        return obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    }
    true
}

/// Side effects after a commit: CRDs register and unregister their resources.
pub(super) fn after_commit(
    api: &Apiserver,
    state: &mut State,
    info: &ResourceInfo,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    if !info.is("apiextensions.k8s.io", "customresourcedefinitions") {
        return;
    }
    match (old, new) {
        (_, Some(crd)) => api.registry.register_crd(crd),
        (Some(crd), None) => {
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
            let prefix = format!("{group}/{plural}");
            let keys: Vec<Key> = state
                .objects()
                .range(Key::new(prefix.clone(), "", "")..)
                .take_while(|(k, _)| k.resource == prefix)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                state.remove(&k);
            }
            api.registry.unregister_crd(crd);
        }
        (None, None) => {}
    }
}
