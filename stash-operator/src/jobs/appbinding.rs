//! From an AppBinding and its Secret to a [`DbTarget`]: host and port as Stash derives them,
//! `secretTransforms` applied in order, and the CA bundle written for `--ssl-ca`.
//!
//! The AppBinding is read as plain JSON here (only the fields the data path needs), so this
//! module does not depend on the API types being written in `stash-core`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::datapath::backend::{write_private, BackendError};
use crate::datapath::mysql_client::DbTarget;

/// Secret data: key to bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Errors in an AppBinding or its Secret.
#[derive(Debug, thiserror::Error)]
pub enum AppBindingError {
    /// The AppBinding lacks a field the data path needs.
    #[error("AppBinding: {0}")]
    Invalid(String),
    /// The Secret (after transforms) lacks a key.
    #[error("AppBinding secret has no key {0:?}")]
    MissingKey(String),
    /// A transform refers to a Secret that was not provided.
    #[error("secretTransforms: secret {0:?} not found")]
    MissingSecret(String),
    /// Writing the CA bundle failed.
    #[error(transparent)]
    Write(#[from] BackendError),
}

impl AppBindingError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AppBindingError::Invalid(_) => "InvalidAppBinding",
            AppBindingError::MissingKey(_) | AppBindingError::MissingSecret(_) => {
                "AppBindingSecretIncomplete"
            }
            AppBindingError::Write(_) => "ScratchDirUnwritable",
        }
    }
}

/// The fields of `AppBinding.spec` the data path reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppBindingSpec {
    /// How to reach the database.
    #[serde(default)]
    pub client_config: ClientConfig,
    /// The credentials Secret.
    #[serde(default)]
    pub secret: Option<LocalRef>,
    /// Changes applied to the Secret's data before use.
    #[serde(default)]
    pub secret_transforms: Vec<SecretTransform>,
}

/// `spec.clientConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// Service reference (preferred over `url`).
    #[serde(default)]
    pub service: Option<ServiceRef>,
    /// URL or go-mysql DSN (`tcp(host:port)/`).
    #[serde(default)]
    pub url: Option<String>,
    /// PEM bundle, base64 in JSON.
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

/// `spec.clientConfig.service`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceRef {
    /// Service name.
    pub name: String,
    /// Namespace; empty means the AppBinding's.
    #[serde(default)]
    pub namespace: String,
    /// Port.
    #[serde(default)]
    pub port: u16,
}

/// A reference by name.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LocalRef {
    /// The name.
    pub name: String,
}

/// One entry of `spec.secretTransforms`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretTransform {
    /// Rename a key.
    #[serde(default)]
    pub rename_key: Option<RenameKey>,
    /// Add a key.
    #[serde(default)]
    pub add_key: Option<AddKey>,
    /// Add all keys of another Secret.
    #[serde(default)]
    pub add_keys_from: Option<AddKeysFrom>,
    /// Remove a key.
    #[serde(default)]
    pub remove_key: Option<RemoveKey>,
}

/// `renameKey`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RenameKey {
    /// Old name.
    pub from: String,
    /// New name.
    pub to: String,
}

/// `addKey`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddKey {
    /// Key.
    pub key: String,
    /// Value, base64 in JSON.
    #[serde(default)]
    pub value: Option<String>,
    /// Value as plain text.
    #[serde(default)]
    pub string_value: Option<String>,
}

/// `addKeysFrom`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddKeysFrom {
    /// The Secret to copy from.
    pub secret_ref: LocalRef,
}

/// `removeKey`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoveKey {
    /// Key.
    pub key: String,
}

impl AppBindingSpec {
    /// Parses `spec` out of an AppBinding object.
    pub fn from_object(object: &serde_json::Value) -> Result<Self, AppBindingError> {
        let spec = object
            .get("spec")
            .ok_or_else(|| AppBindingError::Invalid("no spec".to_owned()))?;
        serde_json::from_value(spec.clone()).map_err(|e| AppBindingError::Invalid(e.to_string()))
    }

    /// Names of the Secrets that `addKeysFrom` transforms need.
    pub fn referenced_secrets(&self) -> Vec<String> {
        self.secret_transforms
            .iter()
            .filter_map(|t| t.add_keys_from.as_ref().map(|a| a.secret_ref.name.clone()))
            .collect()
    }

    /// Host and port per Stash: `<svc>.<ns>.svc` and the service port, else from the URL/DSN.
    pub fn host_port(&self, appbinding_namespace: &str) -> Result<(String, u16), AppBindingError> {
        if let Some(svc) = &self.client_config.service {
            let ns = if svc.namespace.is_empty() {
                appbinding_namespace
            } else {
                &svc.namespace
            };
            return Ok((format!("{}.{ns}.svc", svc.name), svc.port));
        }
        let url =
            self.client_config.url.as_deref().ok_or_else(|| {
                AppBindingError::Invalid("clientConfig has no service or url".into())
            })?;
        parse_host_port(url).ok_or_else(|| {
            AppBindingError::Invalid(format!("cannot parse clientConfig.url {url:?}"))
        })
    }
}

/// Host and port from `scheme://[user@]host[:port]/...` or a go-mysql DSN `...tcp(host:port)/...`.
fn parse_host_port(url: &str) -> Option<(String, u16)> {
    let authority = if let Some(start) = url.find("tcp(") {
        let rest = &url[start + 4..];
        &rest[..rest.find(')')?]
    } else {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let auth = &rest[..end];
        auth.rsplit_once('@').map_or(auth, |(_, h)| h)
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, rest) = stripped.split_once(']')?;
        (h, rest.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = if port.is_empty() {
        0
    } else {
        port.parse().ok()?
    };
    Some((host.to_owned(), port))
}

/// Applies `transforms` in order; `others` holds the Secrets named by `addKeysFrom`.
pub fn apply_secret_transforms(
    mut data: SecretData,
    transforms: &[SecretTransform],
    others: &BTreeMap<String, SecretData>,
) -> Result<SecretData, AppBindingError> {
    for t in transforms {
        if let Some(r) = &t.rename_key {
            if let Some(v) = data.remove(&r.from) {
                data.insert(r.to.clone(), v);
            }
        }
        if let Some(a) = &t.add_key {
            let value = match (&a.string_value, &a.value) {
                (Some(s), _) => s.as_bytes().to_vec(),
                (None, Some(b64)) => decode_base64(b64).ok_or_else(|| {
                    AppBindingError::Invalid(format!("addKey {:?}: value is not base64", a.key))
                })?,
                (None, None) => Vec::new(),
            };
            data.insert(a.key.clone(), value);
        }
        if let Some(a) = &t.add_keys_from {
            let other = others
                .get(&a.secret_ref.name)
                .ok_or_else(|| AppBindingError::MissingSecret(a.secret_ref.name.clone()))?;
            for (k, v) in other {
                data.insert(k.clone(), v.clone());
            }
        }
        if let Some(r) = &t.remove_key {
            data.remove(&r.key);
        }
    }
    Ok(data)
}

/// The database to connect to. The CA bundle, if any, is written to `<scratch>/ca.crt`.
pub fn resolve_db_target(
    spec: &AppBindingSpec,
    appbinding_namespace: &str,
    credentials: &SecretData,
    scratch: &Path,
) -> Result<DbTarget, AppBindingError> {
    let (host, port) = spec.host_port(appbinding_namespace)?;
    let text = |key: &str| {
        credentials
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| AppBindingError::MissingKey(key.to_owned()))
    };
    let ssl_ca = match &spec.client_config.ca_bundle {
        Some(b64) if !b64.is_empty() => {
            let pem = decode_base64(b64)
                .ok_or_else(|| AppBindingError::Invalid("caBundle is not base64".into()))?;
            let path = scratch.join("ca.crt");
            write_private(&path, &pem)?;
            Some(path)
        }
        _ => None,
    };
    Ok(DbTarget {
        host,
        port,
        user: text("username")?,
        password: text("password")?,
        ssl_ca,
    })
}

/// Standard base64 (with or without padding), as Kubernetes encodes `[]byte` fields; line
/// breaks and spaces (as in a wrapped PEM bundle pasted into YAML) are ignored.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b'\n' | b'\r' | b' '))
        .collect();
    LENIENT.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn host_and_port_like_stash() {
        let spec: AppBindingSpec = serde_json::from_value(serde_json::json!({
            "clientConfig": {"service": {"name": "db", "port": 3306}}
        }))
        .unwrap();
        assert_eq!(
            spec.host_port("demo").unwrap(),
            ("db.demo.svc".into(), 3306)
        );
        assert_eq!(
            parse_host_port("tcp(mysql.x:3307)/"),
            Some(("mysql.x".into(), 3307))
        );
        assert_eq!(
            parse_host_port("mysql://u@h.example:1234/db"),
            Some(("h.example".into(), 1234))
        );
        assert_eq!(
            parse_host_port("mysql://h.example/"),
            Some(("h.example".into(), 0))
        );
        assert_eq!(parse_host_port("mysql://[::1]:5/"), Some(("::1".into(), 5)));
        assert_eq!(parse_host_port("tcp(:3306)/"), None);
    }

    #[test]
    fn transforms_apply_in_order() {
        let spec: AppBindingSpec = serde_json::from_value(serde_json::json!({
            "secretTransforms": [
                {"renameKey": {"from": "USER", "to": "username"}},
                {"addKey": {"key": "password", "stringValue": "p1"}},
                {"addKeysFrom": {"secretRef": {"name": "extra"}}},
                {"removeKey": {"key": "junk"}},
                {"addKey": {"key": "b", "value": "aGk="}}
            ]
        }))
        .unwrap();
        assert_eq!(spec.referenced_secrets(), vec!["extra"]);
        let mut others = BTreeMap::new();
        others.insert(
            "extra".to_owned(),
            data(&[("junk", "x"), ("password", "p2")]),
        );
        let out =
            apply_secret_transforms(data(&[("USER", "root")]), &spec.secret_transforms, &others)
                .unwrap();
        assert_eq!(
            out,
            data(&[("b", "hi"), ("password", "p2"), ("username", "root")])
        );
        assert!(matches!(
            apply_secret_transforms(SecretData::new(), &spec.secret_transforms, &BTreeMap::new()),
            Err(AppBindingError::MissingSecret(_))
        ));
    }

    #[test]
    fn target_needs_credentials_and_writes_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let spec: AppBindingSpec = serde_json::from_value(serde_json::json!({
            "clientConfig": {"url": "tcp(127.0.0.1:3306)/", "caBundle": "UEVN"}
        }))
        .unwrap();
        let target = resolve_db_target(
            &spec,
            "demo",
            &data(&[("username", "u"), ("password", "p")]),
            dir.path(),
        )
        .unwrap();
        let ca = dir.path().join("ca.crt");
        assert_eq!(target.ssl_ca.as_deref(), Some(ca.as_path()));
        assert_eq!(std::fs::read(&ca).unwrap(), b"PEM");
        assert!(matches!(
            resolve_db_target(&spec, "demo", &data(&[("username", "u")]), dir.path()),
            Err(AppBindingError::MissingKey(k)) if k == "password"
        ));
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("a*b").is_none());
        assert_eq!(decode_base64("aGVs\nbG8=\n").unwrap(), b"hello");
    }
}
