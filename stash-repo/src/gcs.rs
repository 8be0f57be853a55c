//! Google Cloud Storage (`gs:<bucket>:/<prefix>`) over the JSON API, laid out as restic's gs
//! backend does. Credentials: a service account key (Stash's `GOOGLE_SERVICE_ACCOUNT_JSON_KEY`,
//! exchanged for an OAuth2 token with a signed JWT), a fixed token (restic's
//! `GOOGLE_ACCESS_TOKEN`), or the metadata server (GKE workload identity).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

use crate::backend::{Backend, FileKind};
use crate::error::RepoError;
use crate::http::{agent, agent_with, body, storage, uri_encode, JsonBody, TlsSettings};
use crate::objects::Layout;

/// Google's public endpoint.
pub const GOOGLE_STORAGE: &str = "https://storage.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// A service account key, as the JSON key file holds it.
pub struct ServiceAccountKey {
    email: String,
    key_id: Option<String>,
    token_uri: String,
    key: ring::signature::RsaKeyPair,
}

impl ServiceAccountKey {
    /// Reads a JSON key file's content (`type: service_account`).
    pub fn from_json(json: &[u8]) -> Result<ServiceAccountKey, RepoError> {
        #[derive(serde::Deserialize)]
        struct File {
            client_email: Option<String>,
            private_key: Option<String>,
            private_key_id: Option<String>,
            token_uri: Option<String>,
        }
        let bad =
            |why: &str| RepoError::Storage(format!("gcs: GOOGLE_SERVICE_ACCOUNT_JSON_KEY: {why}"));
        let file: File = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
        let email = file.client_email.ok_or_else(|| bad("no client_email"))?;
        let pem = file.private_key.ok_or_else(|| bad("no private_key"))?;
        let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
            .next()
            .ok_or_else(|| bad("private_key holds no PKCS#8 key"))?
            .map_err(|e| bad(&e.to_string()))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| bad(&format!("private_key is not an RSA key: {e}")))?;
        Ok(ServiceAccountKey {
            email,
            key_id: file.private_key_id,
            token_uri: file
                .token_uri
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned()),
            key,
        })
    }

    /// The signed JWT that asks `token_uri` for an access token (RFC 7523).
    fn assertion(&self, now_unix: i64) -> Result<String, RepoError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now_unix,
            "exp": now_unix + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| RepoError::Storage("gcs: signing the token request failed".to_owned()))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }
}

/// How requests are authorized.
pub enum GcsAuth {
    /// No `Authorization` header (an emulator, as Google's libraries do with
    /// `STORAGE_EMULATOR_HOST`).
    Anonymous,
    /// A fixed OAuth2 access token.
    Token(String),
    /// Tokens obtained with a service account key.
    ServiceAccount(Box<ServiceAccountKey>),
    /// Tokens from the metadata server of the node.
    Metadata,
}

/// A bucket of Google Cloud Storage.
pub struct GcsBackend {
    endpoint: String,
    bucket: String,
    project: Option<String>,
    layout: Layout,
    auth: GcsAuth,
    /// The current token and when to fetch a new one.
    token: Mutex<Option<(String, Instant)>>,
    agent: ureq::Agent,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl GcsBackend {
    /// A backend for `bucket` and restic's raw `prefix` (what follows `gs:<bucket>:`).
    /// `endpoint` defaults to [`GOOGLE_STORAGE`]; `project` (`GOOGLE_PROJECT_ID`) is needed
    /// only to create a missing bucket.
    pub fn new(
        endpoint: Option<&str>,
        bucket: &str,
        prefix: &str,
        project: Option<String>,
        auth: GcsAuth,
    ) -> Result<GcsBackend, RepoError> {
        if bucket.is_empty() {
            return Err(RepoError::Storage("gcs: no bucket".to_owned()));
        }
        let endpoint = match endpoint {
            Some(e) if e.contains("://") => e.trim_end_matches('/').to_owned(),
            Some(e) => format!("http://{}", e.trim_end_matches('/')),
            None => GOOGLE_STORAGE.to_owned(),
        };
        Ok(GcsBackend {
            endpoint,
            bucket: bucket.to_owned(),
            project: project.filter(|p| !p.is_empty()),
            layout: Layout::cleaned(prefix),
            auth,
            token: Mutex::new(None),
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS); its
    /// authentication requests use them too.
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<GcsBackend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    fn fetch_token(&self) -> Result<Option<(String, Duration)>, RepoError> {
        let parse = |what: &str, resp: ureq::Response| -> Result<TokenResponse, RepoError> {
            serde_json::from_slice(&body(what, resp)?)
                .map_err(|e| RepoError::Storage(format!("{what}: {e}")))
        };
        let lifetime = |t: &TokenResponse| Duration::from_secs(t.expires_in.unwrap_or(3600));
        match &self.auth {
            GcsAuth::Anonymous => Ok(None),
            GcsAuth::Token(t) => Ok(Some((t.clone(), Duration::from_secs(u64::MAX / 4)))),
            GcsAuth::ServiceAccount(key) => {
                let what = "gcs: token for the service account key";
                let assertion = key.assertion(chrono::Utc::now().timestamp())?;
                let resp = self
                    .agent
                    .post(&key.token_uri)
                    .send_form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &assertion),
                    ])
                    .map_err(|e| storage(what, e))?;
                let token = parse(what, resp)?;
                let life = lifetime(&token);
                Ok(Some((token.access_token, life)))
            }
            GcsAuth::Metadata => {
                let what = "gcs: no GOOGLE_SERVICE_ACCOUNT_JSON_KEY in the storage secret, \
                            and the metadata server gave no token";
                let resp = self
                    .agent
                    .get(METADATA_TOKEN)
                    .set("Metadata-Flavor", "Google")
                    .call()
                    .map_err(|e| storage(what, e))?;
                let token = parse(what, resp)?;
                let life = lifetime(&token);
                Ok(Some((token.access_token, life)))
            }
        }
    }

    /// The bearer token, fetched again a minute before it expires.
    fn bearer(&self) -> Result<Option<String>, RepoError> {
        let mut cached = self
            .token
            .lock()
            .map_err(|_| RepoError::Storage("gcs: token cache poisoned".to_owned()))?;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(Some(token.clone()));
            }
        }
        let Some((token, life)) = self.fetch_token()? else {
            return Ok(None);
        };
        let renew_at = Instant::now()
            .checked_add(life.saturating_sub(Duration::from_secs(60)))
            .unwrap_or_else(Instant::now);
        *cached = Some((token.clone(), renew_at));
        Ok(Some(token))
    }

    fn request(&self, method: &str, url: &str) -> Result<ureq::Request, RepoError> {
        let req = self.agent.request(method, url);
        Ok(match self.bearer()? {
            Some(token) => req.set("Authorization", &format!("Bearer {token}")),
            None => req,
        })
    }

    /// Every object whose name starts with `prefix`, with its size (whole names).
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, RepoError> {
        #[derive(serde::Deserialize)]
        struct Item {
            name: String,
            // The JSON API sends sizes as strings.
            size: Option<serde_json::Value>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            next_page_token: Option<String>,
        }
        let dir = prefix;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&maxResults=1000",
                self.endpoint,
                uri_encode(&self.bucket, false),
                uri_encode(dir, false)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", uri_encode(t, false)));
            }
            let resp = self
                .request("GET", &url)?
                .call()
                .map_err(|e| storage(dir, e))?;
            let page: Page = serde_json::from_slice(&body(dir, resp)?)
                .map_err(|e| RepoError::Storage(format!("{dir}: {e}")))?;
            for item in page.items {
                let size = match &item.size {
                    Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                    Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                    _ => 0,
                };
                out.push((item.name, size));
            }
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// One object by its whole name.
    pub fn read_object(&self, name: &str) -> Result<Vec<u8>, RepoError> {
        let resp = self
            .request("GET", &format!("{}?alt=media", self.object_url(name)))?
            .call()
            .map_err(|e| storage(name, e))?;
        body(name, resp)
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            uri_encode(&self.bucket, false),
            uri_encode(key, false)
        )
    }
}

impl Backend for GcsBackend {
    fn location(&self) -> String {
        format!("gs:{}:/{}", self.bucket, self.layout.prefix())
    }

    fn create(&self) -> Result<(), RepoError> {
        // As restic: use the bucket when it exists (or cannot be inspected), else create it.
        let url = format!(
            "{}/storage/v1/b/{}",
            self.endpoint,
            uri_encode(&self.bucket, false)
        );
        let what = format!("bucket {}", self.bucket);
        match self.request("GET", &url)?.call() {
            Ok(_) | Err(ureq::Error::Status(403, _)) => Ok(()),
            Err(ureq::Error::Status(404, _)) => {
                let Some(project) = &self.project else {
                    return Err(RepoError::Storage(format!(
                        "gcs: bucket {} does not exist, and GOOGLE_PROJECT_ID is not set to create it",
                        self.bucket
                    )));
                };
                let url = format!(
                    "{}/storage/v1/b?project={}",
                    self.endpoint,
                    uri_encode(project, false)
                );
                self.request("POST", &url)?
                    .send_json_value(serde_json::json!({ "name": self.bucket }))
                    .map(drop)
                    .map_err(|e| storage(&format!("create {what}"), e))
            }
            Err(e) => Err(storage(&what, e)),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        self.read_object(&self.layout.key(kind, name))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RepoError> {
        let key = self.layout.key(kind, name);
        let range = format!("bytes={}-{}", offset, offset + length.max(1) - 1);
        let resp = self
            .request("GET", &format!("{}?alt=media", self.object_url(&key)))?
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
        // A simple (single request) upload, as restic does: it is complete or absent.
        let key = self.layout.key(kind, name);
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.endpoint,
            uri_encode(&self.bucket, false),
            uri_encode(&key, false)
        );
        self.request("POST", &url)?
            .set("Content-Type", "application/octet-stream")
            .send_bytes(data)
            .map(drop)
            .map_err(|e| storage(&key, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        let dir = self.layout.dir(kind);
        Ok(Layout::listed_files(&dir, self.list_objects(&dir)?))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let key = self.layout.key(kind, name);
        match self.request("DELETE", &self.object_url(&key))?.call() {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(e) => Err(storage(&key, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let key = self.layout.key(kind, name);
        match self.request("GET", &self.object_url(&key))?.call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&key, e)),
        }
    }
}
