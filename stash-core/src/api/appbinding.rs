//! `AppBinding` (`appcatalog.appscode.com/v1alpha1`): how to reach a database.

use super::common::{Param, TaskRef};
use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an AppBinding holds: where the database listens and which Secret and Tasks serve it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "appcatalog.appscode.com",
    version = "v1alpha1",
    kind = "AppBinding",
    doc = "AppBinding tells Stash how to reach a database: its Service or URL, the Secret with its credentials, and the Stash Tasks that back it up and restore it (spec.parameters.stash.addon).",
    namespaced,
    category = "catalog",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppBindingSpec {
    /// `<group>/<resource>`, e.g. `kubedb.com/mysql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Database version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The application object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed: mostly absent, and the operator caches every AppBinding. (`client_config` is not:
    // every AppBinding has one, so a box would add an allocation, not save space.)
    pub app_ref: Option<Box<AppReference>>,
    /// How to connect.
    #[serde(default)]
    pub client_config: ClientConfig,
    /// Secret with `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<LocalObjectReference>,
    /// Transformations applied to the secret's keys, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_transforms: Option<Vec<SecretTransform>>,
    /// TLS secret (unused by the MySQL addon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<LocalObjectReference>,
    /// Free-form parameters; Stash reads `StashAddon` from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::preserve_unknown_fields")]
    pub parameters: Option<serde_json::Value>,
}

/// The application an AppBinding describes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppReference {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Connection details.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// A URL or go-mysql DSN (`tcp(host:port)/`); `service` is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Service in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReference>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    /// PEM CA bundle (base64 in JSON), passed to the client as `--ssl-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// TLS server name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// A Service reference of a client config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    /// Scheme, e.g. `mysql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Service namespace; empty means the AppBinding's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// One transformation of the credential secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTransform {
    /// Rename a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_key: Option<RenameKey>,
    /// Add a key with a literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_key: Option<AddKey>,
    /// Add every key of another secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_keys_from: Option<AddKeysFrom>,
    /// Remove a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_key: Option<RemoveKey>,
}

/// Rename transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenameKey {
    /// Old key.
    pub from: String,
    /// New key.
    pub to: String,
}

/// Add-key transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddKey {
    /// Key.
    pub key: String,
    /// Base64 value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Plain string value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
}

/// Add-keys-from transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddKeysFrom {
    /// Secret to copy from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// Remove-key transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveKey {
    /// Key.
    pub key: String,
}

/// The `StashAddon` document in `spec.parameters`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StashAddonParameters {
    /// `stash` section.
    #[serde(default)]
    pub stash: Option<StashAddonSection>,
}

/// `parameters.stash`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StashAddonSection {
    /// `parameters.stash.addon`.
    #[serde(default)]
    pub addon: Option<StashAddon>,
}

/// `parameters.stash.addon`: default tasks for this database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StashAddon {
    /// Default backup task.
    #[serde(default)]
    pub backup_task: Option<TaskRef>,
    /// Default restore task.
    #[serde(default)]
    pub restore_task: Option<TaskRef>,
}

impl AppBinding {
    /// The addon section of `spec.parameters`, if it parses.
    pub fn stash_addon(&self) -> Option<StashAddon> {
        let params = self.spec.parameters.as_ref()?;
        let parsed: StashAddonParameters = serde_json::from_value(params.clone()).ok()?;
        parsed.stash?.addon
    }

    /// The addon's default params, used beneath an invoker's params.
    pub fn addon_params(task: &Option<TaskRef>) -> Vec<Param> {
        task.as_ref()
            .and_then(|t| t.params.clone())
            .unwrap_or_default()
    }
}
