//! The pod a hook runs in for an AppBinding target (stash.md §9): the Endpoints object named
//! like `clientConfig.service.name` (the first ready address with a Pod targetRef, else the
//! first not-ready one); EndpointSlices of the Service when no Endpoints object exists.

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

use super::HookError;
use crate::job_support::appbinding::AppBindingSpec;

/// The Service an AppBinding names, as `(namespace, name)`.
pub fn appbinding_service(
    appbinding: &serde_json::Value,
    namespace: &str,
) -> Result<Option<(String, String)>, HookError> {
    let spec =
        AppBindingSpec::from_object(appbinding).map_err(|e| HookError::Invalid(e.to_string()))?;
    Ok(spec.client_config.service.map(|s| {
        let ns = if s.namespace.is_empty() {
            namespace.to_string()
        } else {
            s.namespace
        };
        (ns, s.name)
    }))
}

/// The name of the pod behind Service `ns/name`: ready addresses first.
pub async fn pod_behind_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<String>, HookError> {
    let kube_err = |what: &str, e: kube::Error| HookError::Kube(format!("{what} {ns}/{name}: {e}"));
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| kube_err("endpoints", e))?;
    if let Some(ep) = endpoints {
        let subsets = ep.subsets.unwrap_or_default();
        let pod_of = |addrs: Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
            addrs.into_iter().flatten().find_map(|a| {
                a.target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone())
            })
        };
        let ready = subsets.iter().find_map(|s| pod_of(s.addresses.as_ref()));
        let not_ready = subsets
            .iter()
            .find_map(|s| pod_of(s.not_ready_addresses.as_ref()));
        return Ok(ready.or(not_ready));
    }
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(|e| kube_err("endpointslices of service", e))?;
    let endpoints: Vec<_> = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .collect();
    let pod_of = |want_ready: bool| {
        endpoints.iter().find_map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            (ready == want_ready)
                .then(|| {
                    e.target_ref
                        .as_ref()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.clone())
                })
                .flatten()
        })
    };
    Ok(pod_of(true).or_else(|| pod_of(false)))
}

/// The executor pod of an AppBinding target, read in full.
pub async fn for_appbinding(
    client: &kube::Client,
    namespace: &str,
    appbinding_name: &str,
) -> Result<Pod, HookError> {
    let object = crate::job_support::kube_read::read_appbinding(client, namespace, appbinding_name)
        .await
        .map_err(|e| HookError::Kube(e.to_string()))?;
    let no_pod = || {
        HookError::NoPod(format!(
            "no pod found for AppBinding {namespace}/{appbinding_name}"
        ))
    };
    let Some((svc_ns, svc)) = appbinding_service(&object, namespace)? else {
        return Err(no_pod());
    };
    let pod_name = pod_behind_service(client, &svc_ns, &svc)
        .await?
        .ok_or_else(no_pod)?;
    Api::<Pod>::namespaced(client.clone(), &svc_ns)
        .get(&pod_name)
        .await
        .map_err(|e| HookError::Kube(format!("pod {svc_ns}/{pod_name}: {e}")))
}
