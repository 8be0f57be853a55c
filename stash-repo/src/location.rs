//! A backend from a restic repository location (`RESTIC_REPOSITORY`) and the variables restic
//! reads for it, so every engine opens a repository the same way restic would.

use std::sync::Arc;

use crate::azure::{AzureBackend, AzureCredentials};
use crate::b2::B2Backend;
use crate::backend::{Backend, LocalBackend};
use crate::error::RepoError;
use crate::gcs::{GcsAuth, GcsBackend, ServiceAccountKey};
pub use crate::http::TlsSettings;
use crate::http::{RestBackend, S3Backend, S3Credentials};
use crate::swift::{SwiftBackend, SwiftConfig};

/// The schemes [`open`] serves besides plain directories.
pub const SCHEMES: &[&str] = &["s3", "rest", "gs", "azure", "b2", "swift"];

/// True when [`open`] knows the location's scheme.
pub fn supported(location: &str) -> bool {
    location.starts_with('/')
        || SCHEMES
            .iter()
            .any(|s| location.strip_prefix(s).is_some_and(|r| r.starts_with(':')))
}

/// Opens `location` with the variables `var` gives (the storage Secret's keys as restic takes
/// them from its environment). Beyond restic's variables: `STORAGE_EMULATOR_HOST` (as
/// Google's libraries read it) and `AZURE_BLOB_ENDPOINT` (a blob service URL such as
/// Azurite's `http://127.0.0.1:10000/devstoreaccount1`), so emulators and sovereign clouds can
/// be reached.
pub fn open(
    location: &str,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Backend>, RepoError> {
    open_with(location, var, &TlsSettings::default())
}

/// [`open`] with TLS settings for every HTTPS request of the backend, its authentication
/// requests included: restic's `--cacert` (`tls.ca_pem`) and `--insecure-tls`
/// (`tls.insecure`, which turns certificate verification off). A local directory ignores them.
pub fn open_with(
    location: &str,
    var: &dyn Fn(&str) -> Option<String>,
    tls: &TlsSettings,
) -> Result<Arc<dyn Backend>, RepoError> {
    let get = |k: &str| var(k).filter(|v| !v.is_empty());
    let Some((scheme, rest)) = location
        .split_once(':')
        .filter(|_| !location.starts_with('/'))
    else {
        if location.is_empty() {
            return Err(RepoError::Storage(
                "no repository location (RESTIC_REPOSITORY)".to_owned(),
            ));
        }
        return Ok(Arc::new(LocalBackend::new(location)));
    };
    // `gs:bucket:/prefix`: the container, then restic's raw prefix.
    let split = |what: &str| -> Result<(&str, &str), RepoError> {
        rest.split_once(':')
            .filter(|(c, _)| !c.is_empty())
            .ok_or_else(|| {
                RepoError::Storage(format!(
                    "{scheme}: invalid location, expected {scheme}:<{what}>:/<prefix>"
                ))
            })
    };
    Ok(match scheme {
        "rest" => Arc::new(RestBackend::new(rest)?.with_tls(tls)?),
        "s3" => {
            let creds = S3Credentials {
                access_key: get("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                secret_key: get("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                session_token: get("AWS_SESSION_TOKEN"),
                region: get("AWS_DEFAULT_REGION").unwrap_or_default(),
            };
            Arc::new(S3Backend::new(rest, creds)?.with_tls(tls)?)
        }
        "gs" => {
            let (bucket, prefix) = split("bucket")?;
            let emulator = get("STORAGE_EMULATOR_HOST");
            let auth = if let Some(path) = get("GOOGLE_APPLICATION_CREDENTIALS") {
                let json = std::fs::read(&path).map_err(|e| {
                    RepoError::Storage(format!(
                        "gcs: GOOGLE_SERVICE_ACCOUNT_JSON_KEY (file {path}): {e}"
                    ))
                })?;
                GcsAuth::ServiceAccount(Box::new(ServiceAccountKey::from_json(&json)?))
            } else if let Some(token) = get("GOOGLE_ACCESS_TOKEN") {
                GcsAuth::Token(token)
            } else if emulator.is_some() {
                GcsAuth::Anonymous
            } else {
                GcsAuth::Metadata
            };
            Arc::new(
                GcsBackend::new(
                    emulator.as_deref(),
                    bucket,
                    prefix,
                    get("GOOGLE_PROJECT_ID"),
                    auth,
                )?
                .with_tls(tls)?,
            )
        }
        "azure" => {
            let (container, prefix) = split("container")?;
            let creds = AzureCredentials {
                account: get("AZURE_ACCOUNT_NAME").unwrap_or_default(),
                key: get("AZURE_ACCOUNT_KEY").unwrap_or_default(),
            };
            let endpoint = get("AZURE_BLOB_ENDPOINT").or_else(|| {
                get("AZURE_ENDPOINT_SUFFIX")
                    .map(|suffix| format!("https://{}.blob.{suffix}", creds.account))
            });
            Arc::new(
                AzureBackend::new(endpoint.as_deref(), &creds, container, prefix)?.with_tls(tls)?,
            )
        }
        "b2" => {
            let (bucket, prefix) = rest.split_once(':').unwrap_or((rest, ""));
            Arc::new(
                B2Backend::new(
                    None,
                    &get("B2_ACCOUNT_ID").unwrap_or_default(),
                    &get("B2_ACCOUNT_KEY").unwrap_or_default(),
                    bucket,
                    prefix,
                )?
                .with_tls(tls)?,
            )
        }
        "swift" => {
            let (container, prefix) = split("container")?;
            Arc::new(
                SwiftBackend::new(SwiftConfig::from_env(var), container, prefix)?.with_tls(tls)?,
            )
        }
        other => {
            return Err(RepoError::Storage(format!(
                "unsupported repository scheme {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn schemes_and_missing_keys() {
        assert!(supported("/srv/repo"));
        assert!(supported("gs:b:/p"));
        assert!(supported("swift:c:/"));
        assert!(!supported("sftp:host:/p"));
        let err = |loc: &str| open(loc, &none).err().map(|e| e.to_string());
        assert!(err("azure:c:/p")
            .unwrap_or_default()
            .contains("AZURE_ACCOUNT_NAME"));
        assert!(err("b2:b:/p").unwrap_or_default().contains("B2_ACCOUNT_ID"));
        assert!(err("swift:c:/p")
            .unwrap_or_default()
            .contains("OS_AUTH_URL"));
        assert!(err("gs:b")
            .unwrap_or_default()
            .contains("expected gs:<bucket>"));
        assert!(err("sftp:h:/p").unwrap_or_default().contains("unsupported"));
        // GCS may authenticate through the node's metadata server: no key is required to open.
        assert_eq!(
            open("gs:b://p", &none).map(|b| b.location()).ok(),
            Some("gs:b:/p".to_owned())
        );
    }

    #[test]
    fn every_http_backend_takes_the_tls_settings() {
        let var = |k: &str| {
            if k == "GOOGLE_APPLICATION_CREDENTIALS" {
                return None;
            }
            Some(
                match k {
                    "AZURE_ACCOUNT_KEY" => "a2V5",
                    "OS_STORAGE_URL" => "https://swift.example/v1/AUTH_x",
                    _ => "set",
                }
                .to_owned(),
            )
        };
        let not_pem = TlsSettings {
            ca_pem: Some(b"not a certificate".to_vec()),
            insecure: false,
        };
        for location in [
            "s3:https://minio.example/bucket/p",
            "rest:https://rest.example/",
            "gs:b:/p",
            "azure:c:/p",
            "b2:b:/p",
            "swift:c:/p",
        ] {
            assert!(open(location, &var).is_ok(), "{location}");
            let err = open_with(location, &var, &not_pem)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().unwrap_or_default().contains("CA_CERT_DATA"),
                "{location}: {err:?}"
            );
        }
        // A local directory has no TLS to set.
        assert!(open_with("/srv/repo", &var, &not_pem).is_ok());
    }
}
