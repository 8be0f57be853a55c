//! The job's reads from the Kubernetes API: the storage Secret, the AppBinding and its Secrets.
//! Client from the usual kubeconfig or in-cluster configuration.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;

use super::appbinding::{apply_secret_transforms, resolve_db_target, AppBindingSpec, SecretData};
use super::JobError;
use crate::datapath::mysql_client::DbTarget;

/// A client from kubeconfig or the in-cluster service account.
pub async fn client() -> Result<kube::Client, JobError> {
    kube::Client::try_default()
        .await
        .map_err(|e| JobError::Kube(format!("no Kubernetes client: {e}")))
}

/// A Secret's data (`stringData` is folded in by the API server on write).
pub async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<SecretData, JobError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get(name)
        .await
        .map_err(|e| JobError::Kube(format!("secret {namespace}/{name}: {e}")))?;
    let mut data: SecretData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Ok(data)
}

/// The AppBinding object as JSON.
pub async fn read_appbinding(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<serde_json::Value, JobError> {
    let gvk = GroupVersionKind::gvk("appcatalog.appscode.com", "v1alpha1", "AppBinding");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "appbindings");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object = api
        .get(name)
        .await
        .map_err(|e| JobError::Kube(format!("appbinding {namespace}/{name}: {e}")))?;
    serde_json::to_value(object).map_err(|e| JobError::Kube(e.to_string()))
}

/// The database behind an AppBinding: its Secret read, transformed and resolved.
pub async fn read_db_target(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    scratch: &Path,
) -> Result<DbTarget, JobError> {
    let object = read_appbinding(client, namespace, name).await?;
    let spec = AppBindingSpec::from_object(&object)?;
    let secret_name = spec
        .secret
        .as_ref()
        .map(|s| s.name.clone())
        .ok_or_else(|| {
            JobError::AppBinding(super::appbinding::AppBindingError::Invalid(
                "spec.secret is not set".to_owned(),
            ))
        })?;
    let credentials = read_secret(client, namespace, &secret_name).await?;
    let mut others = BTreeMap::new();
    for other in spec.referenced_secrets() {
        let data = read_secret(client, namespace, &other).await?;
        others.insert(other, data);
    }
    let credentials = apply_secret_transforms(credentials, &spec.secret_transforms, &others)?;
    let mut target = resolve_db_target(&spec, namespace, &credentials, scratch)?;
    // `<svc>.<ns>.svc` resolves only through cluster DNS; without it, go where the Service
    // routes: a ready endpoint of its Endpoints.
    if let Some(svc) = &spec.client_config.service {
        if !super::service_address::resolves(&target.host, target.port).await {
            let svc_ns = if svc.namespace.is_empty() {
                namespace
            } else {
                &svc.namespace
            };
            if let Some((host, port)) =
                super::service_address::ready_endpoint(client, svc_ns, &svc.name, svc.port).await?
            {
                target.host = host;
                target.port = port;
            }
        }
    }
    Ok(target)
}
