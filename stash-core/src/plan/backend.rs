//! Backend facts derived from a Repository: provider, bucket, prefix, the variables Functions
//! see, and validation with errors that name the offending field.

use crate::api::{Backend, Repository};
use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use std::collections::{BTreeMap, BTreeSet};

/// Provider names as Stash spells them.
pub const PROVIDERS: [&str; 7] = ["local", "s3", "gcs", "azure", "swift", "b2", "rest"];

/// What the jobs need to know about a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// `local`, `s3`, `gcs`, `azure`, `swift`, `b2` or `rest`.
    pub provider: &'static str,
    /// Bucket or container (local: mount path; rest: URL host).
    pub bucket: String,
    /// Prefix inside the bucket (rest: URL path; local: empty).
    pub prefix: String,
    /// s3 endpoint or rest URL.
    pub endpoint: String,
    /// s3 region.
    pub region: String,
    /// s3 insecure TLS.
    pub insecure_tls: bool,
    /// gcs/azure/b2 connection limit.
    pub max_connections: i64,
}

/// Reads the backend, or says which field is wrong.
pub fn backend_info(backend: &Backend) -> Result<BackendInfo, String> {
    let set: Vec<&str> = [
        backend.local.is_some().then_some("local"),
        backend.s3.is_some().then_some("s3"),
        backend.gcs.is_some().then_some("gcs"),
        backend.azure.is_some().then_some("azure"),
        backend.swift.is_some().then_some("swift"),
        backend.b2.is_some().then_some("b2"),
        backend.rest.is_some().then_some("rest"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match set.len() {
        0 => {
            return Err(
                "spec.backend: no backend is set (one of local, s3, gcs, azure, swift, b2, rest)"
                    .into(),
            )
        }
        1 => {}
        _ => {
            return Err(format!(
                "spec.backend: only one backend may be set, found {}",
                set.join(", ")
            ))
        }
    }
    let required = |field: &str, value: &str| {
        if value.trim().is_empty() {
            Err(format!("spec.backend.{field} is required"))
        } else {
            Ok(())
        }
    };
    let mut info = BackendInfo {
        provider: "",
        bucket: String::new(),
        prefix: String::new(),
        endpoint: String::new(),
        region: String::new(),
        insecure_tls: false,
        max_connections: 0,
    };
    if let Some(l) = &backend.local {
        required("local.mountPath", &l.mount_path)?;
        if l.mount_path == "/stash" || l.mount_path.starts_with("/stash/") {
            return Err("spec.backend.local.mountPath must not be /stash or below it".into());
        }
        if !l.mount_path.starts_with('/') {
            return Err(format!(
                "spec.backend.local.mountPath {:?} must be an absolute path",
                l.mount_path
            ));
        }
        if l.sub_path
            .as_deref()
            .is_some_and(|p| p.starts_with('/') || p.split('/').any(|part| part == ".."))
        {
            return Err("spec.backend.local.subPath must be a relative path without '..'".into());
        }
        let sources = volume_source_kinds(&l.volume_source);
        match sources.as_slice() {
            [_] => {}
            [] => {
                return Err("spec.backend.local: no volume source is set (for example \
                     persistentVolumeClaim, nfs or hostPath)"
                    .into())
            }
            many => {
                return Err(format!(
                    "spec.backend.local: only one volume source may be set, found {}",
                    many.join(", ")
                ))
            }
        }
        info.provider = "local";
        info.bucket = l.mount_path.clone();
    } else if let Some(s) = &backend.s3 {
        required("s3.endpoint", &s.endpoint)?;
        required("s3.bucket", &s.bucket)?;
        info.provider = "s3";
        info.bucket = s.bucket.clone();
        info.prefix = s.prefix.clone().unwrap_or_default();
        info.endpoint = s.endpoint.clone();
        info.region = s.region.clone().unwrap_or_default();
        info.insecure_tls = s.insecure_tls.unwrap_or(false);
    } else if let Some(g) = &backend.gcs {
        required("gcs.bucket", &g.bucket)?;
        info.provider = "gcs";
        info.bucket = g.bucket.clone();
        info.prefix = g.prefix.clone().unwrap_or_default();
        info.max_connections = g.max_connections.unwrap_or(0);
    } else if let Some(a) = &backend.azure {
        required("azure.container", &a.container)?;
        info.provider = "azure";
        info.bucket = a.container.clone();
        info.prefix = a.prefix.clone().unwrap_or_default();
        info.max_connections = a.max_connections.unwrap_or(0);
    } else if let Some(s) = &backend.swift {
        required("swift.container", &s.container)?;
        info.provider = "swift";
        info.bucket = s.container.clone();
        info.prefix = s.prefix.clone().unwrap_or_default();
    } else if let Some(b) = &backend.b2 {
        required("b2.bucket", &b.bucket)?;
        info.provider = "b2";
        info.bucket = b.bucket.clone();
        info.prefix = b.prefix.clone().unwrap_or_default();
        info.max_connections = b.max_connections.unwrap_or(0);
    } else if let Some(r) = &backend.rest {
        required("rest.url", &r.url)?;
        let (host, path) = split_url(&r.url)
            .ok_or_else(|| format!("spec.backend.rest.url {:?} is not an http(s) URL", r.url))?;
        info.provider = "rest";
        info.bucket = host;
        info.prefix = path;
        info.endpoint = r.url.clone();
    }
    Ok(info)
}

/// Name of the local backend's volume in job pods (Stash's `stash-local`).
pub const LOCAL_VOLUME: &str = "stash-local";

/// The field names of the volume sources set, as spelled in YAML.
fn volume_source_kinds(source: &crate::api::VolumeSource) -> Vec<String> {
    match serde_json::to_value(source) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The volume and mount that give a job the local backend's repository at `mountPath`;
/// None for other backends. The volume source is passed through as written.
pub fn local_volume(backend: &Backend) -> Option<(Volume, VolumeMount)> {
    let local = backend.local.as_ref()?;
    let mut volume = super::to_value(&local.volume_source);
    volume
        .as_object_mut()?
        .insert("name".into(), LOCAL_VOLUME.into());
    let volume: Volume = serde_json::from_value(volume).ok()?;
    let mount = VolumeMount {
        name: LOCAL_VOLUME.into(),
        mount_path: local.mount_path.clone(),
        sub_path: local.sub_path.clone().filter(|p| !p.is_empty()),
        ..Default::default()
    };
    Some((volume, mount))
}

/// (host, path) of an `http://` or `https://` URL.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, String::new()),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_string(), path))
}

/// Keys the storage secret must have for this provider.
pub fn required_secret_keys(provider: &str) -> &'static [&'static str] {
    match provider {
        "b2" => &["RESTIC_PASSWORD", "B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"],
        _ => &["RESTIC_PASSWORD"],
    }
}

/// The secret keys missing for `provider`, in order.
pub fn missing_secret_keys(provider: &str, keys: &BTreeSet<String>) -> Vec<&'static str> {
    required_secret_keys(provider)
        .iter()
        .copied()
        .filter(|k| !keys.contains(*k))
        .collect()
}

/// What to tell the user when the operator may not read a storage Secret.
pub fn secret_forbidden_message(namespace: &str, secret: &str) -> String {
    format!(
        "The operator may not read Secret {namespace}/{secret}: bind the ClusterRole \
         stash-operator-secret-reader to the operator's ServiceAccount in namespace {namespace} \
         (kubectl -n {namespace} create rolebinding stash-operator-secret-reader \
         --clusterrole=stash-operator-secret-reader --serviceaccount=stash:stash-operator)."
    )
}

/// The `REPOSITORY_*` and `MAX_CONNECTIONS` variables of stash.md §3.2.
pub fn repository_variables(repo: &Repository, info: &BackendInfo) -> BTreeMap<String, String> {
    let namespace = repo.metadata.namespace.clone().unwrap_or_default();
    let mut v = BTreeMap::new();
    v.insert(
        "REPOSITORY_NAME".into(),
        repo.metadata.name.clone().unwrap_or_default(),
    );
    v.insert("REPOSITORY_NAMESPACE".into(), namespace.clone());
    v.insert("REPOSITORY_PROVIDER".into(), info.provider.to_string());
    v.insert("REPOSITORY_BUCKET".into(), info.bucket.clone());
    v.insert("REPOSITORY_PREFIX".into(), info.prefix.clone());
    v.insert("REPOSITORY_ENDPOINT".into(), info.endpoint.clone());
    v.insert("REPOSITORY_REGION".into(), info.region.clone());
    v.insert(
        "REPOSITORY_INSECURE_TLS".into(),
        info.insecure_tls.to_string(),
    );
    v.insert("MAX_CONNECTIONS".into(), info.max_connections.to_string());
    if let Some(secret) = repo
        .spec
        .backend
        .storage_secret_name
        .as_ref()
        .filter(|s| !s.is_empty())
    {
        v.insert("REPOSITORY_SECRET_NAME".into(), secret.clone());
        v.insert("REPOSITORY_SECRET_NAMESPACE".into(), namespace);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RestServerSpec, S3Spec};

    #[test]
    fn rest_url_gives_host_and_path() {
        let b = Backend {
            rest: Some(Box::new(RestServerSpec {
                url: "https://user@host:8000/repo/x".into(),
            })),
            ..Default::default()
        };
        let info = backend_info(&b).expect("valid");
        assert_eq!(
            (info.bucket.as_str(), info.prefix.as_str()),
            ("host", "/repo/x")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let b = Backend {
            s3: Some(Box::new(S3Spec {
                endpoint: "s3.amazonaws.com".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            backend_info(&b),
            Err("spec.backend.s3.bucket is required".into())
        );
        assert!(backend_info(&Backend::default())
            .unwrap_err()
            .contains("no backend"));
    }

    fn local(yaml: &str) -> Backend {
        serde_yaml::from_str(yaml).expect("backend yaml")
    }

    #[test]
    fn any_volume_source_reaches_the_job_as_written() {
        for (yaml, kind) in [
            (
                "local: {mountPath: /repo, persistentVolumeClaim: {claimName: c}}",
                "persistentVolumeClaim",
            ),
            (
                "local: {mountPath: /repo, nfs: {server: s, path: /x}}",
                "nfs",
            ),
            (
                "local: {mountPath: /repo, hostPath: {path: /srv}}",
                "hostPath",
            ),
            (
                "local: {mountPath: /repo, cephfs: {monitors: [m]}}",
                "cephfs",
            ),
            (
                "local: {mountPath: /repo, csi: {driver: d, volumeAttributes: {a: b}}}",
                "csi",
            ),
        ] {
            let b = local(yaml);
            assert!(backend_info(&b).is_ok(), "{yaml}");
            let (volume, mount) = local_volume(&b).expect("a volume");
            let v = serde_json::to_value(&volume).expect("json");
            let source = serde_json::to_value(&b.local.as_ref().expect("local").volume_source)
                .expect("json");
            assert_eq!(v[kind], source[kind], "{yaml}");
            assert_eq!(v["name"], LOCAL_VOLUME);
            assert_eq!(
                (mount.name.as_str(), mount.mount_path.as_str()),
                (LOCAL_VOLUME, "/repo")
            );
        }
        assert!(local_volume(&local("s3: {endpoint: e, bucket: b}")).is_none());
    }

    #[test]
    fn local_backend_errors_name_the_field() {
        for (yaml, field) in [
            (
                "local: {persistentVolumeClaim: {claimName: c}}",
                "spec.backend.local.mountPath",
            ),
            ("local: {mountPath: /repo}", "no volume source"),
            (
                "local: {mountPath: repo, nfs: {server: s, path: /}}",
                "absolute",
            ),
            (
                "local: {mountPath: /stash/x, nfs: {server: s, path: /}}",
                "/stash",
            ),
            (
                "local: {mountPath: /r, subPath: ../x, nfs: {server: s, path: /}}",
                "subPath",
            ),
            (
                "local: {mountPath: /r, nfs: {server: s, path: /}, hostPath: {path: /h}}",
                "hostPath, nfs",
            ),
        ] {
            let e = backend_info(&local(yaml)).expect_err(yaml);
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }
}
