//! `Task` and `Function` (`stash.appscode.com/v1beta1`, cluster-scoped): the steps a job runs.

use super::common::{ContainerRuntimeSettings, Param};
use k8s_openapi::api::core::v1::{ContainerPort, Volume, VolumeDevice, VolumeMount};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Task spec: an ordered list of Functions.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1beta1",
    kind = "Task",
    doc = "Task is the recipe of a backup or restore Job: an ordered list of Functions, each run as a container of the Job, with the parameters passed to each step.",
    shortname = "task",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Steps, in order: all but the last become init containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<FunctionRef>>,
    /// Volumes added to the job's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
}

/// A step of a Task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRef {
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Step-level values for the Function's variables (lowest precedence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<Param>>,
}

/// Function spec: a container image and its templated arguments.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1beta1",
    kind = "Function",
    doc = "Function is one step of a Task: a container image with templated arguments (${VAR} placeholders resolved from the session, the Repository and the target), run as a container of a backup or restore Job.",
    shortname = "fn",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Container image.
    #[serde(default)]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments with `${VAR}` / `${VAR:=default}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Volume devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_devices: Option<Vec<VolumeDevice>>,
    /// Container runtime settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_settings: Option<ContainerRuntimeSettings>,
    /// Pod security policy name (unused on current clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_policy_name: Option<String>,
}
