//! Backblaze B2 (`b2:<bucket>:/<prefix>`) over B2's native API (v2), as restic's b2 backend
//! uses it: `B2_ACCOUNT_ID` (an account or application key id) and `B2_ACCOUNT_KEY`.
//! Files are uploaded whole with their SHA-1; removing a file removes all its versions.
// ureq's own calls return its (large) error; these helpers pass it on unchanged.
#![allow(clippy::result_large_err)]

use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::backend::{Backend, FileKind};
use crate::error::RepoError;
use crate::http::{
    agent, agent_with, body, storage, to_transport, uri_encode, JsonBody, TlsSettings,
};
use crate::id::hex;
use crate::objects::Layout;

/// B2's authorization endpoint.
pub const B2_API: &str = "https://api.backblazeb2.com";

/// What `b2_authorize_account` gives.
#[derive(Clone)]
struct Session {
    token: String,
    api_url: String,
    download_url: String,
    account_id: String,
    /// Set when the key is restricted to one bucket.
    allowed_bucket: Option<(String, String)>,
}

/// An upload URL and its token; B2 wants one upload at a time on each.
struct UploadTarget {
    url: String,
    token: String,
}

/// A B2 bucket.
pub struct B2Backend {
    auth_url: String,
    key_id: String,
    key: String,
    bucket: String,
    layout: Layout,
    session: Mutex<Option<Session>>,
    bucket_id: Mutex<Option<String>>,
    uploads: Mutex<Vec<UploadTarget>>,
    agent: ureq::Agent,
}

fn json<T: serde::de::DeserializeOwned>(what: &str, resp: ureq::Response) -> Result<T, RepoError> {
    serde_json::from_slice(&body(what, resp)?)
        .map_err(|e| RepoError::Storage(format!("{what}: {e}")))
}

/// True for B2's "the token expired" answers, after which one new authorization is tried.
fn expired(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Status(401, _))
}

impl B2Backend {
    /// A backend for `bucket` and restic's raw `prefix` (what follows `b2:<bucket>:`).
    /// `auth_url` defaults to [`B2_API`].
    pub fn new(
        auth_url: Option<&str>,
        key_id: &str,
        key: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<B2Backend, RepoError> {
        if key_id.is_empty() {
            return Err(RepoError::Storage(
                "b2: B2_ACCOUNT_ID is not set".to_owned(),
            ));
        }
        if key.is_empty() {
            return Err(RepoError::Storage(
                "b2: B2_ACCOUNT_KEY is not set".to_owned(),
            ));
        }
        // restic's rule for bucket names.
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(RepoError::Storage(format!(
                "b2: invalid bucket name {bucket:?}"
            )));
        }
        Ok(B2Backend {
            auth_url: auth_url.unwrap_or(B2_API).trim_end_matches('/').to_owned(),
            key_id: key_id.to_owned(),
            key: key.to_owned(),
            bucket: bucket.to_owned(),
            layout: Layout::b2(prefix),
            session: Mutex::new(None),
            bucket_id: Mutex::new(None),
            uploads: Mutex::new(Vec::new()),
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS); its
    /// authentication requests use them too.
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<B2Backend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    fn poisoned() -> RepoError {
        RepoError::Storage("b2: state lock poisoned".to_owned())
    }

    fn authorize(&self) -> Result<Session, RepoError> {
        #[derive(serde::Deserialize)]
        struct Allowed {
            #[serde(rename = "bucketId")]
            bucket_id: Option<String>,
            #[serde(rename = "bucketName")]
            bucket_name: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Auth {
            account_id: String,
            authorization_token: String,
            api_url: String,
            download_url: String,
            allowed: Option<Allowed>,
        }
        let what = "b2: authorize account (B2_ACCOUNT_ID, B2_ACCOUNT_KEY)";
        let basic = B64.encode(format!("{}:{}", self.key_id, self.key));
        let resp = self
            .agent
            .get(&format!("{}/b2api/v2/b2_authorize_account", self.auth_url))
            .set("Authorization", &format!("Basic {basic}"))
            .call()
            .map_err(|e| storage(what, e))?;
        let auth: Auth = json(what, resp)?;
        let allowed_bucket = auth
            .allowed
            .and_then(|a| Some((a.bucket_name?, a.bucket_id?)));
        let session = Session {
            token: auth.authorization_token,
            api_url: auth.api_url,
            download_url: auth.download_url,
            account_id: auth.account_id,
            allowed_bucket,
        };
        *self.session.lock().map_err(|_| Self::poisoned())? = Some(session.clone());
        self.uploads.lock().map_err(|_| Self::poisoned())?.clear();
        Ok(session)
    }

    fn session(&self) -> Result<Session, RepoError> {
        if let Some(s) = self.session.lock().map_err(|_| Self::poisoned())?.clone() {
            return Ok(s);
        }
        self.authorize()
    }

    /// Runs `call` with the session, authorizing once more when the token has expired.
    fn with_session<T>(
        &self,
        call: impl Fn(&Session) -> Result<T, ureq::Error>,
    ) -> Result<T, ureq::Error> {
        let session = self.session().map_err(to_transport)?;
        match call(&session) {
            Err(e) if expired(&e) => {
                let session = self.authorize().map_err(to_transport)?;
                call(&session)
            }
            other => other,
        }
    }

    /// A call of B2's JSON API.
    fn api(&self, op: &str, args: &serde_json::Value) -> Result<ureq::Response, ureq::Error> {
        self.with_session(|s| {
            self.agent
                .post(&format!("{}/b2api/v2/{op}", s.api_url))
                .set("Authorization", &s.token)
                .send_json_value(args.clone())
        })
    }

    /// The bucket's id, or `None` when the bucket does not exist.
    fn bucket_id(&self) -> Result<Option<String>, RepoError> {
        #[derive(serde::Deserialize)]
        struct Bucket {
            #[serde(rename = "bucketId")]
            bucket_id: String,
            #[serde(rename = "bucketName")]
            bucket_name: String,
        }
        #[derive(serde::Deserialize)]
        struct Buckets {
            buckets: Vec<Bucket>,
        }
        if let Some(id) = self.bucket_id.lock().map_err(|_| Self::poisoned())?.clone() {
            return Ok(Some(id));
        }
        let session = self.session()?;
        let id = match session.allowed_bucket {
            Some((name, id)) if name == self.bucket => Some(id),
            _ => {
                let what = format!("b2: list buckets ({})", self.bucket);
                let args = serde_json::json!({
                    "accountId": session.account_id,
                    "bucketName": self.bucket,
                });
                let resp = self
                    .api("b2_list_buckets", &args)
                    .map_err(|e| storage(&what, e))?;
                let list: Buckets = json(&what, resp)?;
                list.buckets
                    .into_iter()
                    .find(|b| b.bucket_name == self.bucket)
                    .map(|b| b.bucket_id)
            }
        };
        if let Some(id) = &id {
            *self.bucket_id.lock().map_err(|_| Self::poisoned())? = Some(id.clone());
        }
        Ok(id)
    }

    fn need_bucket_id(&self) -> Result<String, RepoError> {
        self.bucket_id()?
            .ok_or_else(|| RepoError::Storage(format!("b2: bucket {} does not exist", self.bucket)))
    }

    fn upload_target(&self, bucket_id: &str) -> Result<UploadTarget, RepoError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Target {
            upload_url: String,
            authorization_token: String,
        }
        if let Some(t) = self.uploads.lock().map_err(|_| Self::poisoned())?.pop() {
            return Ok(t);
        }
        let what = "b2: get upload url";
        let resp = self
            .api(
                "b2_get_upload_url",
                &serde_json::json!({ "bucketId": bucket_id }),
            )
            .map_err(|e| storage(what, e))?;
        let t: Target = json(what, resp)?;
        Ok(UploadTarget {
            url: t.upload_url,
            token: t.authorization_token,
        })
    }

    fn download(
        &self,
        method: &str,
        key: &str,
        range: Option<&str>,
    ) -> Result<ureq::Response, ureq::Error> {
        self.with_session(|s| {
            let url = format!(
                "{}/file/{}/{}",
                s.download_url,
                uri_encode(&self.bucket, false),
                uri_encode(key, true)
            );
            let req = self
                .agent
                .request(method, &url)
                .set("Authorization", &s.token);
            match range {
                Some(r) => req.set("Range", r),
                None => req,
            }
            .call()
        })
    }

    /// The file ids of every version of `key`.
    fn versions(&self, bucket_id: &str, key: &str) -> Result<Vec<String>, RepoError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            file_name: String,
            file_id: String,
        }
        #[derive(serde::Deserialize)]
        struct Files {
            files: Vec<File>,
        }
        let args = serde_json::json!({
            "bucketId": bucket_id,
            "startFileName": key,
            "prefix": key,
            "maxFileCount": 1000,
        });
        let resp = self
            .api("b2_list_file_versions", &args)
            .map_err(|e| storage(key, e))?;
        let files: Files = json(key, resp)?;
        Ok(files
            .files
            .into_iter()
            .filter(|f| f.file_name == key)
            .map(|f| f.file_id)
            .collect())
    }
}

/// SHA-1 in hex, which B2 checks every upload against.
fn sha1_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref())
}

impl Backend for B2Backend {
    fn location(&self) -> String {
        format!("b2:{}:/{}", self.bucket, self.layout.prefix())
    }

    fn create(&self) -> Result<(), RepoError> {
        if self.bucket_id()?.is_some() {
            return Ok(());
        }
        // As restic: a missing bucket is created, private.
        let session = self.session()?;
        let what = format!("b2: create bucket {}", self.bucket);
        let args = serde_json::json!({
            "accountId": session.account_id,
            "bucketName": self.bucket,
            "bucketType": "allPrivate",
        });
        self.api("b2_create_bucket", &args)
            .map(drop)
            .map_err(|e| storage(&what, e))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let key = self.layout.key(kind, name);
        let resp = self
            .download("GET", &key, None)
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
        let key = self.layout.key(kind, name);
        let range = format!("bytes={}-{}", offset, offset + length.max(1) - 1);
        let resp = self
            .download("GET", &key, Some(&range))
            .map_err(|e| storage(&key, e))?;
        let data = body(&key, resp)?;
        if data.len() as u64 != length {
            return Err(RepoError::Storage(format!("{key}: short read")));
        }
        Ok(data)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        let key = self.layout.key(kind, name);
        let bucket_id = self.need_bucket_id()?;
        let sha1 = sha1_hex(data);
        // An upload URL that failed may be busy or stale: the second try takes a fresh one.
        let mut last = None;
        for _ in 0..2 {
            let target = self.upload_target(&bucket_id)?;
            let sent = self
                .agent
                .post(&target.url)
                .set("Authorization", &target.token)
                .set("X-Bz-File-Name", &uri_encode(&key, true))
                .set("Content-Type", "application/octet-stream")
                .set("X-Bz-Content-Sha1", &sha1)
                .send_bytes(data);
            match sent {
                Ok(_) => {
                    self.uploads
                        .lock()
                        .map_err(|_| Self::poisoned())?
                        .push(target);
                    return Ok(());
                }
                Err(e) => last = Some(storage(&key, e)),
            }
        }
        Err(last.unwrap_or_else(|| RepoError::Storage(format!("{key}: upload failed"))))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            file_name: String,
            content_length: u64,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Files {
            files: Vec<File>,
            next_file_name: Option<String>,
        }
        let Some(bucket_id) = self.bucket_id()? else {
            return Ok(Vec::new());
        };
        let dir = self.layout.dir(kind);
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let mut args = serde_json::json!({
                "bucketId": bucket_id,
                "prefix": dir,
                "maxFileCount": 1000,
            });
            if let Some(s) = &start {
                args["startFileName"] = serde_json::Value::String(s.clone());
            }
            let resp = self
                .api("b2_list_file_names", &args)
                .map_err(|e| storage(&dir, e))?;
            let page: Files = json(&dir, resp)?;
            for f in page.files {
                if let Some(file) = Layout::listed_name(&dir, &f.file_name) {
                    out.push((file.to_owned(), f.content_length));
                }
            }
            start = page.next_file_name;
            if start.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let key = self.layout.key(kind, name);
        let Some(bucket_id) = self.bucket_id()? else {
            return Ok(());
        };
        for file_id in self.versions(&bucket_id, &key)? {
            let args = serde_json::json!({ "fileName": key, "fileId": file_id });
            match self.api("b2_delete_file_version", &args) {
                Ok(_) | Err(ureq::Error::Status(404, _)) => {}
                Err(e) => return Err(storage(&key, e)),
            }
        }
        Ok(())
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let key = self.layout.key(kind, name);
        if self.bucket_id()?.is_none() {
            return Ok(false);
        }
        match self.download("HEAD", &key, None) {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&key, e)),
        }
    }
}
