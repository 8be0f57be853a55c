//! Checks made once before the operator starts: what is missing is named, instead of
//! controllers that watch nothing and retry forever.

use kube::Client;

/// The custom resources the operator needs that the API server does not serve, as
/// `plural.group/version` (for example `backupconfigurations.stash.appscode.com/v1beta1`).
/// Discovery needs no RBAC beyond what every authenticated client has.
pub async fn missing_crds(client: &Client) -> Result<Vec<String>, kube::Error> {
    let mut missing = Vec::new();
    for crd in stash_core::crd::crds() {
        let spec = &crd.spec;
        for version in spec.versions.iter().filter(|v| v.served) {
            let group_version = format!("{}/{}", spec.group, version.name);
            let served = match client.list_api_group_resources(&group_version).await {
                Ok(list) => list.resources.iter().any(|r| r.name == spec.names.plural),
                Err(kube::Error::Api(s)) if s.code == 404 => false,
                Err(e) => return Err(e),
            };
            if !served {
                missing.push(format!("{}.{group_version}", spec.names.plural));
            }
        }
    }
    Ok(missing)
}

/// The error for [`missing_crds`]' answer, with the way to install them.
pub fn missing_crds_error(missing: &[String]) -> String {
    format!(
        "the API server does not serve these CustomResourceDefinitions: {}; install them with \
         `stash crds | kubectl apply --server-side -f -` or `kubectl apply -k deploy/`",
        missing.join(", ")
    )
}
