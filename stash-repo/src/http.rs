//! Repositories over HTTP: restic's REST protocol, and S3 (path-style, AWS Signature V4).
//! Both use the same layout as the local backend.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, FileKind};
use crate::error::RepoError;
use crate::id::hex;

const V2: &str = "application/vnd.x.restic.rest.v2";

/// How a repository's HTTPS connections are verified, beyond the public roots every backend
/// trusts: restic's `--cacert` and `--insecure-tls`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificates (a repository's own CA, the storage Secret's `CA_CERT_DATA`) trusted
    /// in addition to the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// **Skips verification of the server's certificate**, as restic's `--insecure-tls`: any
    /// certificate for any name, from any issuer, expired or not, is accepted, so anyone who can
    /// intercept the connection can read and change the repository's (encrypted) files and see
    /// the credentials sent with each request. The handshake signature is still checked against
    /// the presented certificate. For test clusters and self-signed endpoints only.
    pub insecure: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field("insecure", &self.insecure)
            .finish()
    }
}

fn agent_builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(300))
        .timeout_write(Duration::from_secs(300))
}

/// An agent with ureq's own TLS settings (the public roots).
pub(crate) fn agent() -> ureq::Agent {
    agent_builder().build()
}

/// The one agent builder of every HTTP backend: the public roots, plus the CA in `tls`, or no
/// certificate verification at all when `tls.insecure`. A CA that holds no PEM certificate is
/// an error even when verification is off, so a broken `CA_CERT_DATA` is found at once.
pub(crate) fn agent_with(tls: &TlsSettings) -> Result<ureq::Agent, RepoError> {
    if *tls == TlsSettings::default() {
        return Ok(agent());
    }
    let bad =
        |e: String| RepoError::Storage(format!("repository CA certificate (CA_CERT_DATA): {e}"));
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca_pem) = &tls.ca_pem {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificate found".to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| RepoError::Storage(format!("TLS settings: {e}")))?;
    let config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(agent_builder().tls_config(Arc::new(config)).build())
}

/// restic's `--insecure-tls`: every server certificate is accepted (no chain, name or date
/// check); only the handshake signature is verified, with the provider's algorithms, so the
/// peer at least holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn storage(what: &str, e: ureq::Error) -> RepoError {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            RepoError::Storage(format!("{what}: HTTP {code} {}", body.trim()))
        }
        ureq::Error::Transport(t) => RepoError::Storage(format!("{what}: {t}")),
    }
}

pub(crate) fn body(what: &str, resp: ureq::Response) -> Result<Vec<u8>, RepoError> {
    let mut out = Vec::new();
    resp.into_reader()
        .read_to_end(&mut out)
        .map_err(|e| RepoError::Storage(format!("{what}: {e}")))?;
    Ok(out)
}

/// Percent-decodes `%XX` sequences.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub(crate) fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn object_path(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Config => "config".to_owned(),
        FileKind::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
        other => format!("{}/{name}", other.dir()),
    }
}

/// restic's REST protocol (`rest:` repositories).
pub struct RestBackend {
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl RestBackend {
    /// A backend for `url` (`http(s)://[user:pass@]host[:port]/path`).
    pub fn new(url: &str) -> Result<RestBackend, RepoError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| RepoError::Storage("REST URL without scheme".to_owned()))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let authorization = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let pair = format!("{}:{}", percent_decode(user), percent_decode(pass));
            format!("Basic {}", B64.encode(pair))
        });
        Ok(RestBackend {
            base: format!("{scheme}://{host}{}", path.trim_end_matches('/')),
            authorization,
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS).
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<RestBackend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &format!("{}/{path}", self.base));
        match &self.authorization {
            Some(a) => req.set("Authorization", a),
            None => req,
        }
    }

    fn rest_path(kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => "config".to_owned(),
            other => format!("{}/{name}", other.dir()),
        }
    }
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        format!("rest:{}", self.base)
    }

    fn create(&self) -> Result<(), RepoError> {
        self.request("POST", "?create=true")
            .call()
            .map(drop)
            .map_err(|e| storage("create repository", e))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let path = Self::rest_path(kind, name);
        let resp = self
            .request("GET", &path)
            .call()
            .map_err(|e| storage(&path, e))?;
        body(&path, resp)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RepoError> {
        let path = Self::rest_path(kind, name);
        let range = format!("bytes={}-{}", offset, offset + length.max(1) - 1);
        let resp = self
            .request("GET", &path)
            .set("Range", &range)
            .call()
            .map_err(|e| storage(&path, e))?;
        let data = body(&path, resp)?;
        if data.len() as u64 != length {
            return Err(RepoError::Storage(format!("{path}: short read")));
        }
        Ok(data)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        let path = Self::rest_path(kind, name);
        self.request("POST", &path)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(data)
            .map(drop)
            .map_err(|e| storage(&path, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            name: String,
            size: u64,
        }
        let path = format!("{}/", kind.dir());
        let resp = match self.request("GET", &path).set("Accept", V2).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, _)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(&path, e)),
        };
        let entries: Vec<Entry> = serde_json::from_slice(&body(&path, resp)?)
            .map_err(|e| RepoError::Storage(format!("{path}: {e}")))?;
        let mut out: Vec<(String, u64)> = entries.into_iter().map(|e| (e.name, e.size)).collect();
        out.sort();
        Ok(out)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let path = Self::rest_path(kind, name);
        match self.request("DELETE", &path).call() {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(e) => Err(storage(&path, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let path = Self::rest_path(kind, name);
        match self.request("HEAD", &path).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&path, e)),
        }
    }
}

/// S3 credentials.
#[derive(Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token, if any.
    pub session_token: Option<String>,
    /// Region (`us-east-1` when unset).
    pub region: String,
}

/// An S3 bucket (path-style requests, Signature V4).
pub struct S3Backend {
    scheme: String,
    host: String,
    bucket: String,
    prefix: String,
    creds: S3Credentials,
    agent: ureq::Agent,
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl S3Backend {
    /// A backend for restic's `s3:` location without the prefix (`http://host:port/bucket/path`
    /// or `host/bucket/path`, which means https).
    pub fn new(location: &str, creds: S3Credentials) -> Result<S3Backend, RepoError> {
        let (scheme, rest) = match location.split_once("://") {
            Some((s, r)) => (s.to_owned(), r),
            None => ("https".to_owned(), location),
        };
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().unwrap_or_default().to_owned();
        let bucket = parts.next().unwrap_or_default().to_owned();
        let prefix = parts
            .next()
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        if host.is_empty() || bucket.is_empty() {
            return Err(RepoError::Storage(format!(
                "s3 location {location:?} needs host and bucket"
            )));
        }
        Ok(S3Backend {
            scheme,
            host,
            bucket,
            prefix,
            creds,
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS).
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<S3Backend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        let p = object_path(kind, name);
        if self.prefix.is_empty() {
            p
        } else {
            format!("{}/{p}", self.prefix)
        }
    }

    /// A signed request for `/bucket/key` with `query` (unencoded pairs).
    fn request(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        payload: &[u8],
    ) -> ureq::Request {
        let now = chrono::Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = now.format("%Y%m%d").to_string();
        let region = if self.creds.region.is_empty() {
            "us-east-1"
        } else {
            &self.creds.region
        };
        let path = if key.is_empty() {
            format!("/{}", uri_encode(&self.bucket, false))
        } else {
            format!(
                "/{}/{}",
                uri_encode(&self.bucket, false),
                uri_encode(key, true)
            )
        };
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let query_string = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let payload_hash = hex(&Sha256::digest(payload));
        let mut headers = vec![
            ("host".to_owned(), self.host.clone()),
            ("x-amz-content-sha256".to_owned(), payload_hash.clone()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Some(token) = &self.creds.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{method}\n{path}\n{query_string}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let scope = format!("{date}/{region}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac(
            format!("AWS4{}", self.creds.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex(&hmac(&k_signing, to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.creds.access_key
        );
        let url = if query_string.is_empty() {
            format!("{}://{}{path}", self.scheme, self.host)
        } else {
            format!("{}://{}{path}?{query_string}", self.scheme, self.host)
        };
        let mut req = self
            .agent
            .request(method, &url)
            .set("Authorization", &authorization)
            .set("x-amz-content-sha256", &payload_hash)
            .set("x-amz-date", &amz_date);
        if let Some(token) = &self.creds.session_token {
            req = req.set("x-amz-security-token", token);
        }
        req
    }
}

/// The text of every `<tag>…</tag>` in `xml`.
pub(crate) fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        format!(
            "s3:{}://{}/{}/{}",
            self.scheme, self.host, self.bucket, self.prefix
        )
    }

    fn create(&self) -> Result<(), RepoError> {
        Ok(())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let key = self.key(kind, name);
        let resp = self
            .request("GET", &key, &[], b"")
            .call()
            .map_err(|e| storage(&key, e))?;
        body(&key, resp)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RepoError> {
        let key = self.key(kind, name);
        let range = format!("bytes={}-{}", offset, offset + length.max(1) - 1);
        let resp = self
            .request("GET", &key, &[], b"")
            .set("Range", &range)
            .call()
            .map_err(|e| storage(&key, e))?;
        let data = body(&key, resp)?;
        if data.len() as u64 != length {
            return Err(RepoError::Storage(format!("{key}: short read")));
        }
        Ok(data)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        let key = self.key(kind, name);
        self.request("PUT", &key, &[], data)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(data)
            .map(drop)
            .map_err(|e| storage(&key, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        let prefix = if self.prefix.is_empty() {
            format!("{}/", kind.dir())
        } else {
            format!("{}/{}/", self.prefix, kind.dir())
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let resp = self
                .request("GET", "", &query, b"")
                .call()
                .map_err(|e| storage(&prefix, e))?;
            let xml = String::from_utf8_lossy(&body(&prefix, resp)?).into_owned();
            for entry in xml_values(&xml, "Contents") {
                let key = xml_values(entry, "Key")
                    .first()
                    .copied()
                    .unwrap_or_default();
                let size = xml_values(entry, "Size")
                    .first()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                let name = key.rsplit('/').next().unwrap_or_default();
                if !name.is_empty() {
                    out.push((name.to_owned(), size));
                }
            }
            let truncated = xml_values(&xml, "IsTruncated").first() == Some(&"true");
            token = xml_values(&xml, "NextContinuationToken")
                .first()
                .map(|s| s.replace("&amp;", "&"));
            if !truncated || token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let key = self.key(kind, name);
        match self.request("DELETE", &key, &[], b"").call() {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(e) => Err(storage(&key, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let key = self.key(kind, name);
        match self.request("HEAD", &key, &[], b"").call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&key, e)),
        }
    }
}

/// JSON request bodies (ureq's `json` feature is not enabled).
#[allow(clippy::result_large_err)] // ureq's own error, passed on unchanged.
pub(crate) trait JsonBody {
    /// Sends `value` as `application/json`.
    fn send_json_value(self, value: serde_json::Value) -> Result<ureq::Response, ureq::Error>;
}

#[allow(clippy::result_large_err)]
impl JsonBody for ureq::Request {
    fn send_json_value(self, value: serde_json::Value) -> Result<ureq::Response, ureq::Error> {
        self.set("Content-Type", "application/json")
            .send_string(&value.to_string())
    }
}

/// A storage error carried where a `ureq::Error` is expected (a failed re-authorization).
pub(crate) fn to_transport(e: RepoError) -> ureq::Error {
    ureq::Error::from(std::io::Error::other(e.to_string()))
}
