//! Where a repository lives and how to reach it: Stash's backend flags plus the storage Secret,
//! turned into the environment and flags of a restic-compatible engine.
//!
//! Secrets only ever go into environment variables or files with mode 0600, never into
//! arguments. `RESTIC_REPOSITORY` follows Stash's formula (`stash.md` §2.2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Storage provider, as Stash's `--provider` flag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// A directory (`bucket` is the mount path).
    Local,
    /// S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// OpenStack Swift.
    Swift,
    /// Backblaze B2.
    B2,
    /// restic's REST server.
    Rest,
}

impl Provider {
    /// Parses Stash's provider names.
    pub fn parse(name: &str) -> Result<Self, BackendError> {
        Ok(match name {
            "local" => Provider::Local,
            "s3" => Provider::S3,
            "gcs" => Provider::Gcs,
            "azure" => Provider::Azure,
            "swift" => Provider::Swift,
            "b2" => Provider::B2,
            "rest" => Provider::Rest,
            other => return Err(BackendError::UnsupportedBackend(other.to_owned())),
        })
    }
}

/// The repository location, from the job's backend flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Which storage.
    pub provider: Provider,
    /// Bucket or container; the mount path for `local`.
    pub bucket: String,
    /// S3 endpoint or REST server URL.
    pub endpoint: String,
    /// S3 region (`AWS_DEFAULT_REGION`).
    pub region: String,
    /// Prefix inside the bucket.
    pub prefix: String,
    /// Skip TLS verification (S3 only in Stash; passed to the engine for any provider).
    pub insecure_tls: bool,
    /// `--option <provider>.connections=N` for gcs, azure and b2 when positive.
    pub max_connections: u32,
}

/// Errors in the backend configuration or the storage Secret.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A provider this engine cannot reach.
    #[error("unsupported backend {0:?}")]
    UnsupportedBackend(String),
    /// A required Secret key is absent.
    #[error("storage secret has no key {0}")]
    MissingKey(&'static str),
    /// A required backend flag is empty.
    #[error("backend flag --{0} is required for this provider")]
    MissingFlag(&'static str),
    /// Writing a credential file into the scratch directory failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl BackendError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::UnsupportedBackend(_) => "UnsupportedBackend",
            BackendError::MissingKey(_) => "StorageSecretIncomplete",
            BackendError::MissingFlag(_) => "InvalidBackend",
            BackendError::Write { .. } => "ScratchDirUnwritable",
        }
    }
}

/// Everything an engine process needs: environment (may hold secrets) and plain flags.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineEnv {
    /// Environment variables for the engine (RESTIC_*, AWS_*, ...).
    pub env: BTreeMap<String, String>,
    /// Non-secret flags (`--cacert`, `--insecure-tls`, `--option`).
    pub flags: Vec<String>,
}

impl std::fmt::Debug for EngineEnv {
    // Values can be secrets: show the keys only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineEnv")
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("flags", &self.flags)
            .finish()
    }
}

/// Keys copied verbatim from the storage Secret into the engine's environment per provider.
fn passthrough_keys(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::S3 => &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ],
        // Beyond Stash's keys: an emulator or sovereign-cloud endpoint
        // (`STORAGE_EMULATOR_HOST` as Google's libraries read it, `AZURE_ENDPOINT_SUFFIX` as
        // restic 0.15+ reads it, `AZURE_BLOB_ENDPOINT` a whole blob service URL, in process).
        Provider::Gcs => &["GOOGLE_PROJECT_ID", "STORAGE_EMULATOR_HOST"],
        Provider::Azure => &[
            "AZURE_ACCOUNT_NAME",
            "AZURE_ACCOUNT_KEY",
            "AZURE_ENDPOINT_SUFFIX",
            "AZURE_BLOB_ENDPOINT",
        ],
        Provider::B2 => &["B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"],
        Provider::Swift => &[
            "ST_AUTH",
            "ST_USER",
            "ST_KEY",
            "OS_AUTH_URL",
            "OS_REGION_NAME",
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_TENANT_ID",
            "OS_TENANT_NAME",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_APPLICATION_CREDENTIAL_ID",
            "OS_APPLICATION_CREDENTIAL_SECRET",
            "OS_APPLICATION_CREDENTIAL_NAME",
            "OS_STORAGE_URL",
            "OS_AUTH_TOKEN",
        ],
        Provider::Local | Provider::Rest => &[],
    }
}

/// Builds the engine environment. Credential files (CA bundle, GCS key) are written into
/// `scratch` with mode 0600.
pub fn engine_env(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
    scratch: &Path,
) -> Result<EngineEnv, BackendError> {
    let text = |key: &'static str| -> Option<String> {
        secret
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let mut env = BTreeMap::new();
    let mut flags = Vec::new();
    let password = text("RESTIC_PASSWORD").ok_or(BackendError::MissingKey("RESTIC_PASSWORD"))?;
    env.insert("RESTIC_PASSWORD".to_owned(), password);
    env.insert(
        "RESTIC_REPOSITORY".to_owned(),
        repository_url(config, secret)?,
    );
    for key in passthrough_keys(config.provider) {
        if let Some(value) = text(key) {
            env.insert((*key).to_owned(), value);
        }
    }
    // restic cannot open these without both keys (Stash passes no Azure SAS token).
    let required: &[&'static str] = match config.provider {
        Provider::B2 => &["B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"],
        Provider::Azure => &["AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY"],
        _ => &[],
    };
    for key in required {
        if env.get(*key).is_none_or(|v| v.is_empty()) {
            return Err(BackendError::MissingKey(key));
        }
    }
    if config.provider == Provider::S3 && !config.region.is_empty() {
        env.insert("AWS_DEFAULT_REGION".to_owned(), config.region.clone());
    }
    if config.provider == Provider::Gcs {
        if let Some(key) = secret.get("GOOGLE_SERVICE_ACCOUNT_JSON_KEY") {
            let path = scratch.join("GOOGLE_SERVICE_ACCOUNT_JSON_KEY");
            write_private(&path, key)?;
            env.insert(
                "GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
                path.display().to_string(),
            );
        }
    }
    if let Some(ca) = secret.get("CA_CERT_DATA") {
        let path = scratch.join("repository-ca.crt");
        write_private(&path, ca)?;
        flags.push("--cacert".to_owned());
        flags.push(path.display().to_string());
    }
    if config.insecure_tls {
        flags.push("--insecure-tls".to_owned());
    }
    if config.max_connections > 0 {
        let option = match config.provider {
            Provider::Gcs => Some("gs"),
            Provider::Azure => Some("azure"),
            Provider::B2 => Some("b2"),
            _ => None,
        };
        if let Some(option) = option {
            flags.push("--option".to_owned());
            flags.push(format!("{option}.connections={}", config.max_connections));
        }
    }
    Ok(EngineEnv { env, flags })
}

/// `RESTIC_REPOSITORY` per Stash's formula; REST credentials go into the URL (which only ever
/// travels in the environment).
pub fn repository_url(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
) -> Result<String, BackendError> {
    let need_bucket = || {
        if config.bucket.is_empty() {
            Err(BackendError::MissingFlag("bucket"))
        } else {
            Ok(())
        }
    };
    Ok(match config.provider {
        Provider::Local => {
            need_bucket()?;
            config.bucket.clone()
        }
        Provider::S3 => {
            need_bucket()?;
            if config.endpoint.is_empty() {
                return Err(BackendError::MissingFlag("endpoint"));
            }
            format!(
                "s3:{}/{}",
                config.endpoint.trim_end_matches('/'),
                join_path(&config.bucket, &config.prefix)
            )
        }
        Provider::Gcs => {
            need_bucket()?;
            format!("gs:{}:/{}", config.bucket, config.prefix)
        }
        Provider::Azure => {
            need_bucket()?;
            format!("azure:{}:/{}", config.bucket, config.prefix)
        }
        Provider::Swift => {
            need_bucket()?;
            format!("swift:{}:/{}", config.bucket, config.prefix)
        }
        Provider::B2 => {
            need_bucket()?;
            format!("b2:{}:/{}", config.bucket, config.prefix)
        }
        Provider::Rest => {
            if config.endpoint.is_empty() {
                return Err(BackendError::MissingFlag("endpoint"));
            }
            let user = secret.get("REST_SERVER_USERNAME");
            let pass = secret.get("REST_SERVER_PASSWORD");
            format!("rest:{}", with_userinfo(&config.endpoint, user, pass))
        }
    })
}

/// Go's `path.Join(bucket, prefix)` for the simple cases Stash meets: no empty or duplicate
/// separators.
fn join_path(bucket: &str, prefix: &str) -> String {
    bucket
        .split('/')
        .chain(prefix.split('/'))
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn with_userinfo(url: &str, user: Option<&Vec<u8>>, pass: Option<&Vec<u8>>) -> String {
    let Some(user) = user else {
        return url.to_owned();
    };
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let mut info = percent_encode(user);
    if let Some(pass) = pass {
        info.push(':');
        info.push_str(&percent_encode(pass));
    }
    format!("{scheme}{info}@{rest}")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes a credential file readable by the owner only.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), BackendError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(data)
    };
    write().map_err(|source| BackendError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(provider: Provider) -> BackendConfig {
        BackendConfig {
            provider,
            bucket: "b".into(),
            endpoint: String::new(),
            region: String::new(),
            prefix: "/p/q".into(),
            insecure_tls: false,
            max_connections: 0,
        }
    }

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn repository_urls_follow_stash() {
        let none = secret(&[]);
        let mut s3 = cfg(Provider::S3);
        s3.endpoint = "http://127.0.0.1:9000/".into();
        assert_eq!(
            repository_url(&s3, &none).unwrap(),
            "s3:http://127.0.0.1:9000/b/p/q"
        );
        assert_eq!(
            repository_url(&cfg(Provider::Gcs), &none).unwrap(),
            "gs:b://p/q"
        );
        assert_eq!(
            repository_url(&cfg(Provider::Azure), &none).unwrap(),
            "azure:b://p/q"
        );
        assert_eq!(
            repository_url(&cfg(Provider::B2), &none).unwrap(),
            "b2:b://p/q"
        );
        let mut local = cfg(Provider::Local);
        local.bucket = "/safe/data".into();
        assert_eq!(repository_url(&local, &none).unwrap(), "/safe/data");
        let mut rest = cfg(Provider::Rest);
        rest.endpoint = "https://host:8000/path".into();
        assert_eq!(
            repository_url(&rest, &none).unwrap(),
            "rest:https://host:8000/path"
        );
        let creds = secret(&[
            ("REST_SERVER_USERNAME", "u"),
            ("REST_SERVER_PASSWORD", "p@ss:/"),
        ]);
        assert_eq!(
            repository_url(&rest, &creds).unwrap(),
            "rest:https://u:p%40ss%3A%2F@host:8000/path"
        );
    }

    #[test]
    fn missing_pieces_are_errors_not_guesses() {
        let s3 = cfg(Provider::S3);
        assert!(matches!(
            repository_url(&s3, &secret(&[])),
            Err(BackendError::MissingFlag("endpoint"))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            engine_env(&cfg(Provider::Local), &secret(&[]), dir.path()),
            Err(BackendError::MissingKey("RESTIC_PASSWORD"))
        ));
        assert!(matches!(
            engine_env(
                &cfg(Provider::B2),
                &secret(&[("RESTIC_PASSWORD", "x")]),
                dir.path()
            ),
            Err(BackendError::MissingKey("B2_ACCOUNT_ID"))
        ));
        assert!(matches!(
            engine_env(
                &cfg(Provider::Azure),
                &secret(&[("RESTIC_PASSWORD", "x"), ("AZURE_ACCOUNT_NAME", "acct")]),
                dir.path()
            ),
            Err(BackendError::MissingKey("AZURE_ACCOUNT_KEY"))
        ));
        assert!(matches!(
            Provider::parse("ftp"),
            Err(BackendError::UnsupportedBackend(_))
        ));
    }

    #[test]
    fn secrets_go_to_env_and_files_never_to_flags() {
        let dir = tempfile::tempdir().unwrap();
        let mut s3 = cfg(Provider::S3);
        s3.endpoint = "s3.amazonaws.com".into();
        s3.region = "eu-west-1".into();
        s3.insecure_tls = true;
        let env = engine_env(
            &s3,
            &secret(&[
                ("RESTIC_PASSWORD", "pw-hush"),
                ("AWS_ACCESS_KEY_ID", "ak"),
                ("AWS_SECRET_ACCESS_KEY", "sk-hush"),
                ("CA_CERT_DATA", "PEM"),
            ]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(env.env["RESTIC_PASSWORD"], "pw-hush");
        assert_eq!(env.env["AWS_SECRET_ACCESS_KEY"], "sk-hush");
        assert_eq!(env.env["AWS_DEFAULT_REGION"], "eu-west-1");
        let ca = dir.path().join("repository-ca.crt");
        assert_eq!(
            env.flags,
            vec![
                "--cacert".to_owned(),
                ca.display().to_string(),
                "--insecure-tls".to_owned()
            ]
        );
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "PEM");
        for flag in &env.flags {
            assert!(!flag.contains("hush"));
        }
        assert!(!format!("{env:?}").contains("hush"));
    }
}
