//! Builds a Job's pod from a Task: each step's Function becomes a container (all but the last
//! are init containers, run in order), with `${VAR}` references resolved, sharing the scratch
//! emptyDir at `/stash-tmp` and the invoker's volumes (local backend, interim volume); hooks
//! become `pre-task-hook` / `post-task-hook` containers.

use crate::api::{
    ContainerRuntimeSettings, EmptyDirSettings, Function, Param, PersistentVolumeClaimTemplate,
    RuntimeSettings, Task,
};
use crate::resolve::{substitute, Variables};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;
use std::collections::BTreeMap;

/// Name of the scratch volume.
pub const SCRATCH_VOLUME: &str = "stash-tmp-dir";
/// Where the scratch volume is mounted.
pub const SCRATCH_DIR: &str = "/stash-tmp";

/// Everything needed to build a job pod.
#[derive(Debug, Clone)]
pub struct PodInputs<'a> {
    /// The Task to run.
    pub task: &'a Task,
    /// Functions by name.
    pub functions: &'a BTreeMap<String, Function>,
    /// Variables set by the operator (stash.md §3.2).
    pub variables: &'a Variables,
    /// Addon params then invoker params, later entries winning; applied last.
    pub params: &'a [Param],
    /// Invoker runtime settings.
    pub runtime_settings: Option<&'a RuntimeSettings>,
    /// Invoker temp dir settings.
    pub temp_dir: Option<&'a EmptyDirSettings>,
    /// Service account of the pod.
    pub service_account: String,
    /// Image pull policy.
    pub image_pull_policy: &'a str,
    /// Hook containers: (pre hook, post hook) args, if the invoker has hooks.
    pub hooks: HookContainers,
    /// Operator image (runs hooks).
    pub operator_image: &'a str,
    /// Volumes every step container mounts besides the scratch volume: the local backend's
    /// repository and the interim volume.
    pub volumes: Vec<(Volume, VolumeMount)>,
}

/// Which hook containers to add, with their `--hook-type`.
#[derive(Debug, Clone, Default)]
pub struct HookContainers {
    /// Args of the `pre-task-hook` init container.
    pub pre: Option<Vec<String>>,
    /// Args of the `post-task-hook` main container.
    pub post: Option<Vec<String>>,
}

/// Builds the pod spec, or says what cannot be resolved (naming the Task, step and variable).
pub fn build_pod_spec(inputs: &PodInputs<'_>) -> Result<PodSpec, String> {
    let task_name = inputs.task.metadata.name.clone().unwrap_or_default();
    let steps = inputs.task.spec.steps.clone().unwrap_or_default();
    if steps.is_empty() {
        return Err(format!("Task {task_name} has no steps"));
    }
    let scratch_mount = VolumeMount {
        name: SCRATCH_VOLUME.into(),
        mount_path: SCRATCH_DIR.into(),
        ..Default::default()
    };
    let mut containers = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let function = inputs.functions.get(&step.name).ok_or_else(|| {
            format!(
                "Function {} (step {i} of Task {task_name}) not found",
                step.name
            )
        })?;
        let mut vars: Variables = step
            .params
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        vars.extend(inputs.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.insert("ADDON_IMAGE".into(), function.spec.image.clone());
        vars.extend(
            inputs
                .params
                .iter()
                .map(|p| (p.name.clone(), p.value.clone())),
        );

        let mut spec = serde_json::to_value(&function.spec).map_err(|e| e.to_string())?;
        substitute_strings(&mut spec, &vars)
            .map_err(|e| format!("Function {} (step {i} of Task {task_name}): {e}", step.name))?;
        let spec: crate::api::FunctionSpec = serde_json::from_value(spec).map_err(|e| {
            format!(
                "Function {} (step {i} of Task {task_name}) after substitution: {e}",
                step.name
            )
        })?;
        let mut mounts = vec![scratch_mount.clone()];
        mounts.extend(inputs.volumes.iter().map(|(_, m)| m.clone()));
        mounts.extend(spec.volume_mounts.clone().unwrap_or_default());
        let mut container = Container {
            name: format!("{}-{i}", step.name.replace('.', "-")),
            image: Some(spec.image.clone()),
            image_pull_policy: Some(inputs.image_pull_policy.to_string()),
            command: spec.command.clone().filter(|c| !c.is_empty()),
            args: spec.args.clone(),
            working_dir: spec.working_dir.clone(),
            ports: spec.ports.clone(),
            volume_mounts: Some(mounts),
            volume_devices: spec.volume_devices.clone(),
            ..Default::default()
        };
        if let Some(rs) = &spec.runtime_settings {
            apply_container_settings(&mut container, rs);
        }
        if let Some(rs) = inputs.runtime_settings.and_then(|r| r.container.as_ref()) {
            apply_container_settings(&mut container, rs);
        }
        containers.push(container);
    }

    let all_mounts = union_mounts(&containers);
    let hook_container = |name: &str, args: &[String]| Container {
        name: name.to_string(),
        image: Some(inputs.operator_image.to_string()),
        image_pull_policy: Some(inputs.image_pull_policy.to_string()),
        args: Some(args.to_vec()),
        // POD_NAMESPACE too: `run-hook` finds its session there (Stash reads the service
        // account's namespace file, which a pod without a token mount lacks).
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        volume_mounts: Some(all_mounts.clone()),
        ..Default::default()
    };
    if let Some(args) = &inputs.hooks.pre {
        containers.insert(0, hook_container("pre-task-hook", args));
    }
    if let Some(args) = &inputs.hooks.post {
        containers.push(hook_container("post-task-hook", args));
    }

    let main = containers
        .pop()
        .ok_or_else(|| format!("Task {task_name} has no steps"))?;
    let temp = inputs.temp_dir.cloned().unwrap_or_default();
    let mut volumes = vec![Volume {
        name: SCRATCH_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: temp.medium.clone(),
            size_limit: temp.size_limit.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    volumes.extend(inputs.volumes.iter().map(|(v, _)| v.clone()));
    volumes.extend(inputs.task.spec.volumes.clone().unwrap_or_default());

    let mut pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(inputs.service_account.clone()),
        init_containers: (!containers.is_empty()).then_some(containers),
        containers: vec![main],
        volumes: Some(volumes),
        ..Default::default()
    };
    if let Some(p) = inputs.runtime_settings.and_then(|r| r.pod.as_ref()) {
        apply_pod_settings(&mut pod, p);
    }
    Ok(pod)
}

/// Substitutes `${...}` in every string of a JSON value (Stash substitutes the serialized
/// Function; doing it per string gives the same text without letting a value break the JSON).
fn substitute_strings(
    value: &mut Value,
    vars: &Variables,
) -> Result<(), crate::resolve::ResolveError> {
    match value {
        Value::String(s) => *s = substitute(s, vars)?,
        Value::Array(items) => {
            for item in items {
                substitute_strings(item, vars)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute_strings(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn union_mounts(containers: &[Container]) -> Vec<VolumeMount> {
    let mut seen = BTreeMap::new();
    for m in containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
    {
        seen.entry(m.mount_path.clone())
            .or_insert_with(|| m.clone());
    }
    seen.into_values().collect()
}

/// Applies container runtime settings on top of a container (later settings win; env merges by
/// name). Unlike Stash, requests are copied even when limits are empty (stash.md §2.3 quirk).
pub fn apply_container_settings(c: &mut Container, rs: &ContainerRuntimeSettings) {
    if let Some(r) = &rs.resources {
        c.resources = Some(r.clone());
    }
    if rs.liveness_probe.is_some() {
        c.liveness_probe = rs.liveness_probe.clone();
    }
    if rs.readiness_probe.is_some() {
        c.readiness_probe = rs.readiness_probe.clone();
    }
    if rs.lifecycle.is_some() {
        c.lifecycle = rs.lifecycle.clone();
    }
    if rs.security_context.is_some() {
        c.security_context = rs.security_context.clone();
    }
    if let Some(from) = &rs.env_from {
        c.env_from
            .get_or_insert_with(Vec::new)
            .extend(from.iter().cloned());
    }
    let mut extra: Vec<EnvVar> = rs.env.clone().unwrap_or_default();
    let plain = |name: &str, value: i32| EnvVar {
        name: name.into(),
        value: Some(value.to_string()),
        ..Default::default()
    };
    if let Some(adj) = rs.nice.as_ref().and_then(|n| n.adjustment) {
        extra.push(plain("NICE_ADJUSTMENT", adj));
    }
    if let Some(io) = &rs.ionice {
        if let Some(class) = io.class {
            extra.push(plain("IONICE_CLASS", class));
        }
        if let Some(data) = io.class_data {
            extra.push(plain("IONICE_CLASS_DATA", data));
        }
    }
    if !extra.is_empty() {
        let env = c.env.get_or_insert_with(Vec::new);
        for var in extra {
            match env.iter_mut().find(|e| e.name == var.name) {
                Some(existing) => *existing = var,
                None => env.push(var),
            }
        }
    }
}

/// Applies pod runtime settings to a pod spec.
pub fn apply_pod_settings(pod: &mut PodSpec, p: &crate::api::PodRuntimeSettings) {
    if let Some(sa) = p.service_account_name.as_ref().filter(|s| !s.is_empty()) {
        pod.service_account_name = Some(sa.clone());
    }
    macro_rules! copy {
        ($($field:ident),*) => { $( if p.$field.is_some() { pod.$field = p.$field.clone(); } )* };
    }
    copy!(
        node_selector,
        automount_service_account_token,
        node_name,
        security_context,
        image_pull_secrets,
        affinity,
        scheduler_name,
        tolerations,
        priority_class_name,
        priority,
        readiness_gates,
        runtime_class_name,
        enable_service_links,
        topology_spread_constraints
    );
}

/// Name of the interim volume in job pods (Stash's).
pub const INTERIM_VOLUME: &str = "stash-interim-volume";
/// Where the interim volume is mounted (Stash's `INTERIM_DATA_DIR` is `<this>/data`).
pub const INTERIM_DIR: &str = "/stash-interim-volume";

/// What is wrong with an `interimVolumeTemplate`, naming the field.
pub fn interim_template_error(template: &PersistentVolumeClaimTemplate) -> Option<String> {
    match &template.spec {
        None => Some("spec.interimVolumeTemplate.spec is required".into()),
        Some(spec) if spec.access_modes.as_ref().is_none_or(|m| m.is_empty()) => {
            Some("spec.interimVolumeTemplate.spec.accessModes is required".into())
        }
        Some(_) => None,
    }
}

/// The PersistentVolumeClaim of one session made from the invoker's `interimVolumeTemplate`,
/// owned by the session so that it goes with it, plus the volume and mount for the job pod.
/// Its name is the template's name (default `stash-interim-volume`) and the session's, so that
/// each session has its own claim. Errors name the template field that is missing.
pub fn interim_volume(
    template: &PersistentVolumeClaimTemplate,
    session: &str,
    namespace: &str,
    owner: OwnerReference,
    labels: &BTreeMap<String, String>,
) -> Result<(PersistentVolumeClaim, (Volume, VolumeMount)), String> {
    if let Some(e) = interim_template_error(template) {
        return Err(e);
    }
    let spec = template.spec.clone().unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let base = meta
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| INTERIM_VOLUME.to_string());
    let name = crate::names::bounded(
        &format!("{base}-{}", session.replace('.', "-")),
        crate::names::NAME_MAX,
    );
    let mut all_labels = meta.labels.unwrap_or_default();
    all_labels.extend(labels.clone());
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(all_labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let volume = Volume {
        name: INTERIM_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: name,
            read_only: None,
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: INTERIM_VOLUME.into(),
        mount_path: INTERIM_DIR.into(),
        ..Default::default()
    };
    Ok((claim, (volume, mount)))
}

/// The Task name of an invoker: its own, else the AppBinding addon's.
pub fn task_name(
    own: Option<&crate::api::TaskRef>,
    addon: Option<&crate::api::TaskRef>,
) -> Option<String> {
    own.and_then(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| addon.and_then(|t| t.name.clone()).filter(|n| !n.is_empty()))
}

/// The params of an invoker's Job: the AppBinding addon Task's, then the invoker's own (later
/// entries win).
pub fn task_params(
    own: Option<&crate::api::TaskRef>,
    addon: Option<crate::api::TaskRef>,
) -> Vec<Param> {
    let mut params: Vec<Param> = addon.and_then(|t| t.params).unwrap_or_default();
    params.extend(own.and_then(|t| t.params.clone()).unwrap_or_default());
    params
}

/// What a session's Job runs for, as its variables and its hooks' arguments both say it.
#[derive(Debug, Clone)]
pub struct SessionRun<'a> {
    /// `--backupsession=<name>` or `--restoresession=<name>`.
    pub session_flag: String,
    /// `BackupConfiguration` or `RestoreSession`.
    pub invoker_kind: &'a str,
    /// The invoker's name.
    pub invoker_name: &'a str,
    /// The session's namespace.
    pub namespace: &'a str,
    /// The target's kind, name and namespace.
    pub target_kind: String,
    /// The target's name.
    pub target_name: String,
    /// The target's namespace.
    pub target_namespace: String,
    /// The host the Job backs up or restores.
    pub host: String,
}

impl SessionRun<'_> {
    /// The variables every session's Job gets (stash.md §3.2): host, target, invoker,
    /// namespace, caching and the license service.
    pub fn insert_variables(
        &self,
        vars: &mut Variables,
        temp_dir: Option<&EmptyDirSettings>,
        license_apiservice: &str,
    ) {
        for (k, v) in [
            ("HOSTNAME", self.host.as_str()),
            ("TARGET_KIND", &self.target_kind),
            ("TARGET_NAME", &self.target_name),
            ("TARGET_NAMESPACE", &self.target_namespace),
            ("NAMESPACE", self.namespace),
            ("INVOKER_KIND", self.invoker_kind),
            ("INVOKER_NAME", self.invoker_name),
            ("LICENSE_APISERVICE", license_apiservice),
        ] {
            vars.insert(k.into(), v.into());
        }
        let caching = !temp_dir.and_then(|t| t.disable_caching).unwrap_or(false);
        vars.insert("ENABLE_CACHE".into(), caching.to_string());
    }

    /// The arguments of a hook container of type `hook_type` (`preBackup`, `postRestore`, ...).
    pub fn hook_args(&self, hook_type: &str) -> Vec<String> {
        vec![
            "run-hook".to_string(),
            self.session_flag.clone(),
            format!("--invoker-kind={}", self.invoker_kind),
            format!("--invoker-name={}", self.invoker_name),
            format!("--target-kind={}", self.target_kind),
            format!("--target-namespace={}", self.target_namespace),
            format!("--target-name={}", self.target_name),
            format!("--hook-type={hook_type}"),
            format!("--hostname={}", self.host),
            "--output-dir=/stash-tmp/output".into(),
        ]
    }
}

/// A session's Job: run once (`backoffLimit: 0`), its pod labelled like the Job plus the
/// invoker's `runtimeSettings.pod.podLabels`, annotated with its `podAnnotations`.
pub fn session_job(
    metadata: ObjectMeta,
    runtime_settings: Option<&RuntimeSettings>,
    pod: PodSpec,
) -> k8s_openapi::api::batch::v1::Job {
    let pod_meta = runtime_settings.and_then(|r| r.pod.as_ref());
    let mut pod_labels = metadata.labels.clone().unwrap_or_default();
    pod_labels.extend(
        pod_meta
            .and_then(|p| p.pod_labels.clone())
            .unwrap_or_default(),
    );
    k8s_openapi::api::batch::v1::Job {
        metadata,
        spec: Some(k8s_openapi::api::batch::v1::JobSpec {
            backoff_limit: Some(0),
            template: k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod_meta.and_then(|p| p.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}
