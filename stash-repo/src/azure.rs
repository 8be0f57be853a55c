//! Azure Blob Storage (`azure:<container>:/<prefix>`), with Shared Key authorization
//! (`AZURE_ACCOUNT_NAME`, `AZURE_ACCOUNT_KEY`), laid out as restic's azure backend does.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::backend::{Backend, FileKind};
use crate::error::RepoError;
use crate::http::{agent, agent_with, body, hmac, storage, uri_encode, xml_values, TlsSettings};
use crate::objects::Layout;

/// The REST API version the requests speak.
const API_VERSION: &str = "2021-08-06";

/// An Azure storage account's credentials.
#[derive(Clone)]
pub struct AzureCredentials {
    /// Storage account name.
    pub account: String,
    /// Account key, base64 as the portal shows it.
    pub key: String,
}

/// A container of an Azure storage account.
pub struct AzureBackend {
    /// `https://<account>.blob.core.windows.net`, or a path-style endpoint such as Azurite's
    /// `http://127.0.0.1:10000/<account>`; no trailing slash.
    endpoint: String,
    account: String,
    key: Vec<u8>,
    container: String,
    layout: Layout,
    agent: ureq::Agent,
}

impl AzureBackend {
    /// A backend for `container` and restic's raw `prefix` (what follows `azure:<container>:`).
    /// `endpoint` is the blob service URL; `None` means Azure's public cloud.
    pub fn new(
        endpoint: Option<&str>,
        creds: &AzureCredentials,
        container: &str,
        prefix: &str,
    ) -> Result<AzureBackend, RepoError> {
        if creds.account.is_empty() {
            return Err(RepoError::Storage(
                "azure: AZURE_ACCOUNT_NAME is not set".to_owned(),
            ));
        }
        if creds.key.is_empty() {
            return Err(RepoError::Storage(
                "azure: AZURE_ACCOUNT_KEY is not set".to_owned(),
            ));
        }
        let key = B64.decode(creds.key.trim()).map_err(|e| {
            RepoError::Storage(format!("azure: AZURE_ACCOUNT_KEY is not base64: {e}"))
        })?;
        if container.is_empty() {
            return Err(RepoError::Storage("azure: no container".to_owned()));
        }
        let endpoint = match endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://{}.blob.core.windows.net", creds.account),
        };
        Ok(AzureBackend {
            endpoint,
            account: creds.account.clone(),
            key,
            container: container.to_owned(),
            layout: Layout::cleaned(prefix),
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS); its
    /// authentication requests use them too.
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<AzureBackend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    /// A signed request for `blob` in the container (the container itself when `blob` is
    /// empty); `query` holds unencoded pairs, `headers` extra `x-ms-*` headers.
    fn request(
        &self,
        method: &str,
        blob: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        content: Option<(&str, usize)>,
    ) -> ureq::Request {
        let mut path = format!("/{}", uri_encode(&self.container, false));
        if !blob.is_empty() {
            path.push('/');
            path.push_str(&uri_encode(blob, true));
        }
        let url_path = endpoint_path(&self.endpoint);
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut ms: Vec<(String, String)> = vec![
            ("x-ms-date".to_owned(), date.clone()),
            ("x-ms-version".to_owned(), API_VERSION.to_owned()),
        ];
        for (k, v) in headers {
            ms.push((k.to_ascii_lowercase(), (*v).to_owned()));
        }
        ms.sort();
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        q.sort();
        let (content_type, content_length) = match content {
            Some((t, 0)) => (t.to_owned(), String::new()),
            Some((t, n)) => (t.to_owned(), n.to_string()),
            None => (String::new(), String::new()),
        };
        let mut to_sign = format!("{method}\n\n\n{content_length}\n\n{content_type}\n\n\n\n\n\n\n");
        for (k, v) in &ms {
            to_sign.push_str(&format!("{k}:{}\n", v.trim()));
        }
        to_sign.push_str(&format!("/{}{url_path}{path}", self.account));
        for (k, v) in &q {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let signature = B64.encode(hmac(&self.key, to_sign.as_bytes()));
        let query_string = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let url = if query_string.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query_string}", self.endpoint)
        };
        let mut req = self.agent.request(method, &url).set(
            "Authorization",
            &format!("SharedKey {}:{signature}", self.account),
        );
        for (k, v) in &ms {
            req = req.set(k, v);
        }
        if !content_type.is_empty() {
            req = req.set("Content-Type", &content_type);
        }
        req
    }
}

impl AzureBackend {
    /// Every blob whose name starts with `prefix`, with its size (whole names).
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, RepoError> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix),
                ("maxresults", "5000"),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let resp = match self.request("GET", "", &query, &[], None).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(404, _)) => return Ok(Vec::new()),
                Err(e) => return Err(storage(prefix, e)),
            };
            let xml = String::from_utf8_lossy(&body(prefix, resp)?).into_owned();
            for blob in xml_values(&xml, "Blob") {
                let name = xml_unescape(xml_values(blob, "Name").first().unwrap_or(&""));
                let size = xml_values(blob, "Content-Length")
                    .first()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                out.push((name, size));
            }
            marker = xml_values(&xml, "NextMarker")
                .first()
                .map(|m| xml_unescape(m))
                .unwrap_or_default();
            if marker.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// One blob by its whole name.
    pub fn read_object(&self, name: &str) -> Result<Vec<u8>, RepoError> {
        let resp = self
            .request("GET", name, &[], &[], None)
            .call()
            .map_err(|e| storage(name, e))?;
        body(name, resp)
    }
}

/// The path part of an endpoint URL (`/devstoreaccount1` for Azurite, empty for Azure).
fn endpoint_path(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.find('/').map_or("", |i| &rest[i..])
}

/// XML text with the five predefined entities replaced.
fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl Backend for AzureBackend {
    fn location(&self) -> String {
        format!("azure:{}:/{}", self.container, self.layout.prefix())
    }

    fn create(&self) -> Result<(), RepoError> {
        // restic creates the container when it does not exist yet.
        let what = format!("create container {}", self.container);
        match self
            .request("PUT", "", &[("restype", "container")], &[], None)
            .send_bytes(b"")
        {
            Ok(_) | Err(ureq::Error::Status(409, _)) => Ok(()),
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
            .request("GET", &key, &[], &[("x-ms-range", &range)], None)
            .call()
            .map_err(|e| storage(&key, e))?;
        let data = body(&key, resp)?;
        if data.len() as u64 != length {
            return Err(RepoError::Storage(format!("{key}: short read")));
        }
        Ok(data)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        // One Put Blob is atomic and takes up to 5000 MiB; restic's packs are far smaller.
        let key = self.layout.key(kind, name);
        self.request(
            "PUT",
            &key,
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            Some(("application/octet-stream", data.len())),
        )
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
        match self.request("DELETE", &key, &[], &[], None).call() {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(e) => Err(storage(&key, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let key = self.layout.key(kind, name);
        match self.request("HEAD", &key, &[], &[], None).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths() {
        assert_eq!(endpoint_path("https://acct.blob.core.windows.net"), "");
        assert_eq!(
            endpoint_path("http://127.0.0.1:10000/devstoreaccount1"),
            "/devstoreaccount1"
        );
    }

    #[test]
    fn missing_credentials_name_the_key() {
        let err = |account: &str, key: &str| {
            AzureBackend::new(
                None,
                &AzureCredentials {
                    account: account.into(),
                    key: key.into(),
                },
                "c",
                "/",
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(err("", "a2V5").contains("AZURE_ACCOUNT_NAME"));
        assert!(err("acct", "").contains("AZURE_ACCOUNT_KEY"));
        assert!(err("acct", "not base64!").contains("AZURE_ACCOUNT_KEY is not base64"));
        assert_eq!(err("acct", "a2V5"), "");
    }
}
