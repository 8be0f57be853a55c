//! Reaching an AppBinding's `clientConfig.service` when its DNS name does not resolve here:
//! the address and port of a ready endpoint of the Service, read from its Endpoints (or
//! EndpointSlices), as kube-proxy would route it. On a cluster whose DNS resolves
//! `<svc>.<ns>.svc` the name is used as Stash uses it.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

use super::JobError;

/// Whether `host:port` resolves through the resolver of this process.
pub async fn resolves(host: &str, port: u16) -> bool {
    tokio::net::lookup_host((host, port))
        .await
        .is_ok_and(|mut addrs| addrs.next().is_some())
}

/// `(address, port)` of a ready endpoint behind port `port` of Service `ns/name`; None when the
/// Service or a ready endpoint does not exist.
pub async fn ready_endpoint(
    client: &kube::Client,
    ns: &str,
    name: &str,
    port: u16,
) -> Result<Option<(String, u16)>, JobError> {
    let err = |what: &str, e: kube::Error| JobError::Kube(format!("{what} {ns}/{name}: {e}"));
    let Some(svc) = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| err("service", e))?
    else {
        return Ok(None);
    };
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let svc_port = ports
        .iter()
        .find(|p| i32::from(port) == p.port)
        .or_else(|| (ports.len() == 1).then(|| &ports[0]));
    let Some(svc_port) = svc_port else {
        return Ok(None);
    };
    let port_name = svc_port.name.clone().unwrap_or_default();
    let matches = |n: Option<&String>| n.map(String::as_str).unwrap_or("") == port_name;

    if let Some(ep) = Api::<Endpoints>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| err("endpoints", e))?
    {
        for subset in ep.subsets.unwrap_or_default() {
            let addr = subset
                .addresses
                .iter()
                .flatten()
                .next()
                .map(|a| a.ip.clone());
            let p = subset
                .ports
                .iter()
                .flatten()
                .find(|p| matches(p.name.as_ref()))
                .map(|p| p.port);
            if let (Some(addr), Some(p)) = (addr, p) {
                return Ok(u16::try_from(p).ok().map(|p| (addr, p)));
            }
        }
        return Ok(None);
    }
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(|e| err("endpointslices of service", e))?;
    for slice in slices.items {
        let p = slice
            .ports
            .iter()
            .flatten()
            .find(|p| matches(p.name.as_ref()))
            .and_then(|p| p.port);
        let addr = slice
            .endpoints
            .iter()
            .flatten()
            .find(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .and_then(|e| e.addresses.first().cloned());
        if let (Some(addr), Some(p)) = (addr, p) {
            return Ok(u16::try_from(p).ok().map(|p| (addr, p)));
        }
    }
    Ok(None)
}
