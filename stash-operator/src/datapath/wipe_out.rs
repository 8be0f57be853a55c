//! Deletes every file of a repository from its backend (`spec.wipeOut`): the files of restic's
//! layout (`config`, `keys/`, `snapshots/`, `index/`, `data/`, `locks/`) under the S3 prefix
//! (Stash deletes every object under `<bucket>/<prefix>/`; other objects stay here), on a
//! REST server, or in a local directory. The credentials come from the
//! storage Secret and travel only in request headers.

use std::collections::BTreeMap;
use std::path::Path;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use sha2::{Digest, Sha256};

use super::backend::{BackendConfig, Provider};

/// Why the data could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum WipeOutError {
    /// This backend cannot be wiped out by this command.
    #[error("wiping out a {0} repository is not supported")]
    Unsupported(String),
    /// A required setting is missing.
    #[error("{0}")]
    Config(String),
    /// The storage answered with an error or could not be reached.
    #[error("{0}")]
    Storage(String),
    /// Local files could not be removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl WipeOutError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WipeOutError::Unsupported(_) => "UnsupportedBackend",
            WipeOutError::Config(_) => "InvalidBackend",
            WipeOutError::Storage(_) => "StorageError",
            WipeOutError::Io { .. } => "LocalStorageError",
        }
    }
}

/// Deletes the repository's files; returns how many were deleted.
pub async fn wipe_out(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
) -> Result<usize, WipeOutError> {
    match config.provider {
        Provider::Local => wipe_local(Path::new(&config.bucket)),
        Provider::S3 => S3::new(config, secret)?.wipe().await,
        Provider::Rest => wipe_rest(config, secret).await,
        other => Err(WipeOutError::Unsupported(
            format!("{other:?}").to_lowercase(),
        )),
    }
}

/// The entries of restic's repository layout.
const LAYOUT: [&str; 6] = ["config", "keys", "snapshots", "index", "data", "locks"];

/// Removes restic's files and folders from a local repository directory, keeping the
/// directory itself (it is usually a mount point) and anything else in it.
fn wipe_local(root: &Path) -> Result<usize, WipeOutError> {
    if root.as_os_str().is_empty() {
        return Err(WipeOutError::Config("the local mount path is empty".into()));
    }
    let mut removed = 0;
    for entry in LAYOUT {
        let path = root.join(entry);
        let io = |source| WipeOutError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                removed += count_files(&path).map_err(io)?;
                std::fs::remove_dir_all(&path).map_err(io)?;
            }
            Ok(_) => {
                std::fs::remove_file(&path).map_err(io)?;
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(removed)
}

fn count_files(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// An HTTP(S) client trusting the system roots plus the Secret's `CA_CERT_DATA`.
fn http_client(secret: &BTreeMap<String, Vec<u8>>) -> Result<HttpsClient, WipeOutError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = secret.get("CA_CERT_DATA") {
        let mut reader = std::io::BufReader::new(pem.as_slice());
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| WipeOutError::Config(format!("CA_CERT_DATA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| WipeOutError::Config(format!("CA_CERT_DATA: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WipeOutError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Sends a body-less request; returns the body of a 2xx answer (404 on DELETE counts as done).
async fn send(
    client: &HttpsClient,
    request: http::Request<Empty<Bytes>>,
) -> Result<Vec<u8>, WipeOutError> {
    let what = format!("{} {}", request.method(), redacted(request.uri()));
    let is_delete = request.method() == http::Method::DELETE;
    let response = client
        .request(request)
        .await
        .map_err(|e| WipeOutError::Storage(format!("{what}: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| WipeOutError::Storage(format!("{what}: {e}")))?
        .to_bytes()
        .to_vec();
    if status.is_success() || (is_delete && status == http::StatusCode::NOT_FOUND) {
        return Ok(body);
    }
    let text = String::from_utf8_lossy(&body);
    let text: String = text.chars().take(300).collect();
    Err(WipeOutError::Storage(format!("{what}: {status}: {text}")))
}

/// A URI without userinfo or query, for messages.
fn redacted(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or_default(),
        uri.path()
    )
}

/// The S3 client: path-style requests signed with AWS Signature Version 4.
struct S3 {
    client: HttpsClient,
    /// `scheme://host[:port]` without a trailing slash.
    base: String,
    host: String,
    bucket: String,
    /// The prefix with one trailing `/` (empty for the whole bucket).
    prefix: String,
    region: String,
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

impl S3 {
    fn new(
        config: &BackendConfig,
        secret: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, WipeOutError> {
        let text = |k: &str| {
            secret
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let endpoint = config.endpoint.trim_end_matches('/');
        if endpoint.is_empty() || config.bucket.is_empty() {
            return Err(WipeOutError::Config(
                "S3 endpoint and bucket are required".into(),
            ));
        }
        let base = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("https://{endpoint}")
        };
        let uri: http::Uri = base
            .parse()
            .map_err(|e| WipeOutError::Config(format!("S3 endpoint {endpoint:?}: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| WipeOutError::Config(format!("S3 endpoint {endpoint:?} has no host")))?;
        let prefix = config.prefix.trim_matches('/');
        Ok(S3 {
            client: http_client(secret)?,
            base,
            host,
            bucket: config.bucket.trim_matches('/').to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            region: if config.region.is_empty() {
                "us-east-1".into()
            } else {
                config.region.clone()
            },
            access_key: text("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_key: text("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            session_token: text("AWS_SESSION_TOKEN"),
        })
    }

    async fn wipe(&self) -> Result<usize, WipeOutError> {
        let keys = self.list_repository_keys().await?;
        for key in &keys {
            let path = format!("/{}/{}", self.bucket, key);
            self.request(http::Method::DELETE, &path, &[]).await?;
        }
        Ok(keys.len())
    }

    /// Every key of restic's layout under the prefix (ListObjectsV2, all pages). Other objects
    /// under the prefix are left alone.
    async fn list_repository_keys(&self) -> Result<Vec<String>, WipeOutError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", self.prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let body = self
                .request(http::Method::GET, &format!("/{}", self.bucket), &query)
                .await?;
            let xml = String::from_utf8_lossy(&body);
            keys.extend(xml_values(&xml, "Key").into_iter().filter(|k| {
                let rest = k.strip_prefix(&self.prefix).unwrap_or_default();
                let first = rest.split('/').next().unwrap_or_default();
                LAYOUT.contains(&first) && (first == "config") == (rest == "config")
            }));
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn request(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<u8>, WipeOutError> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        let canonical_uri = uri_encode(path, false);
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let payload_hash = hex(&Sha256::digest(b""));
        let mut headers = vec![
            ("host", self.host.clone()),
            ("x-amz-content-sha256", payload_hash.clone()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        let signed_headers = headers
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let canonical_request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        let uri = match canonical_query.is_empty() {
            true => format!("{}{canonical_uri}", self.base),
            false => format!("{}{canonical_uri}?{canonical_query}", self.base),
        };
        let mut builder = http::Request::builder().method(method).uri(&uri);
        for (k, v) in &headers {
            if *k != "host" {
                builder = builder.header(*k, v);
            }
        }
        if !self.access_key.is_empty() {
            builder = builder.header("authorization", authorization);
        }
        let request = builder
            .body(Empty::new())
            .map_err(|e| WipeOutError::Config(format!("request {uri}: {e}")))?;
        send(&self.client, request).await
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// AWS's URI encoding: everything but unreserved characters (and `/` unless `slash`).
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of every `<tag>...</tag>` element, with XML's predefined entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    out
}

/// A REST server repository (restic's REST protocol v2): every file of each kind, then config.
async fn wipe_rest(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
) -> Result<usize, WipeOutError> {
    let client = http_client(secret)?;
    let base = config.endpoint.trim_end_matches('/').to_string();
    if base.is_empty() {
        return Err(WipeOutError::Config("the REST server URL is empty".into()));
    }
    let auth = secret.get("REST_SERVER_USERNAME").map(|user| {
        let mut pair = user.clone();
        pair.push(b':');
        pair.extend(
            secret
                .get("REST_SERVER_PASSWORD")
                .cloned()
                .unwrap_or_default(),
        );
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    let request = |method: http::Method, url: String| {
        let mut b = http::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/vnd.x.restic.rest.v2");
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        b.body(Empty::<Bytes>::new())
            .map_err(|e| WipeOutError::Config(format!("REST request: {e}")))
    };
    let mut removed = 0;
    for kind in ["keys", "snapshots", "index", "data", "locks"] {
        let body = send(
            &client,
            request(http::Method::GET, format!("{base}/{kind}/"))?,
        )
        .await?;
        #[derive(serde::Deserialize)]
        struct Entry {
            name: String,
        }
        let entries: Vec<Entry> = serde_json::from_slice(&body)
            .map_err(|e| WipeOutError::Storage(format!("listing {kind}: {e}")))?;
        for e in entries {
            send(
                &client,
                request(http::Method::DELETE, format!("{base}/{kind}/{}", e.name))?,
            )
            .await?;
            removed += 1;
        }
    }
    send(
        &client,
        request(http::Method::DELETE, format!("{base}/config"))?,
    )
    .await?;
    Ok(removed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_encoding_and_xml_keys() {
        assert_eq!(uri_encode("/b/demo/my sql/x", false), "/b/demo/my%20sql/x");
        assert_eq!(uri_encode("demo/mysql/", true), "demo%2Fmysql%2F");
        let xml = "<ListBucketResult><Contents><Key>p/a&amp;b</Key></Contents><Contents><Key>p/config</Key></Contents></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), ["p/a&b", "p/config"]);
    }

    #[test]
    fn local_wipe_keeps_the_mount_point_and_foreign_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["keys", "data/ab", "snapshots"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(dir.path().join("config"), b"x").expect("write");
        std::fs::write(dir.path().join("data/ab/abcd"), b"x").expect("write");
        std::fs::write(dir.path().join("lost+found"), b"x").expect("write");
        assert_eq!(wipe_local(dir.path()).expect("wipe"), 2);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["lost+found"]);
    }
}
