//! OpenStack Swift (`swift:<container>:/<prefix>`), laid out as restic's swift backend does,
//! with the authentications restic takes from the `OS_*` and `ST_*` variables: a given storage
//! URL and token, Swift's v1 auth, Keystone v2 and Keystone v3 (password or application
//! credential). The auth version follows the auth URL (`v3`, `v2`, else v1), as restic's
//! Swift library decides it.
// ureq's own calls return its (large) error; these helpers pass it on unchanged.
#![allow(clippy::result_large_err)]

use std::sync::Mutex;

use crate::backend::{Backend, FileKind};
use crate::error::RepoError;
use crate::http::{
    agent, agent_with, body, storage, to_transport, uri_encode, JsonBody, TlsSettings,
};
use crate::objects::Layout;

/// The Swift settings, named after the variables restic reads them from.
#[derive(Clone, Default)]
pub struct SwiftConfig {
    /// `OS_AUTH_URL`, else `ST_AUTH`.
    pub auth_url: String,
    /// `OS_USERNAME`, else `ST_USER`.
    pub user_name: String,
    /// `OS_USER_ID`.
    pub user_id: String,
    /// `OS_PASSWORD`, else `ST_KEY`.
    pub api_key: String,
    /// `OS_REGION_NAME`.
    pub region: String,
    /// `OS_USER_DOMAIN_NAME`.
    pub domain: String,
    /// `OS_USER_DOMAIN_ID`.
    pub domain_id: String,
    /// `OS_PROJECT_NAME`, else `OS_TENANT_NAME`.
    pub tenant: String,
    /// `OS_TENANT_ID`.
    pub tenant_id: String,
    /// `OS_PROJECT_DOMAIN_NAME`.
    pub tenant_domain: String,
    /// `OS_PROJECT_DOMAIN_ID`.
    pub tenant_domain_id: String,
    /// `OS_APPLICATION_CREDENTIAL_ID`.
    pub app_credential_id: String,
    /// `OS_APPLICATION_CREDENTIAL_NAME`.
    pub app_credential_name: String,
    /// `OS_APPLICATION_CREDENTIAL_SECRET`.
    pub app_credential_secret: String,
    /// `OS_STORAGE_URL`.
    pub storage_url: String,
    /// `OS_AUTH_TOKEN`.
    pub auth_token: String,
}

impl SwiftConfig {
    /// Reads the variables as restic does: for each setting the first variable that is set
    /// wins (`OS_*` before `ST_*`, `OS_PROJECT_NAME` before `OS_TENANT_NAME`).
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> SwiftConfig {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| var(n).filter(|v| !v.is_empty()))
                .unwrap_or_default()
        };
        SwiftConfig {
            auth_url: first(&["OS_AUTH_URL", "ST_AUTH"]),
            user_name: first(&["OS_USERNAME", "ST_USER"]),
            user_id: first(&["OS_USER_ID"]),
            api_key: first(&["OS_PASSWORD", "ST_KEY"]),
            region: first(&["OS_REGION_NAME"]),
            domain: first(&["OS_USER_DOMAIN_NAME"]),
            domain_id: first(&["OS_USER_DOMAIN_ID"]),
            tenant: first(&["OS_PROJECT_NAME", "OS_TENANT_NAME"]),
            tenant_id: first(&["OS_TENANT_ID"]),
            tenant_domain: first(&["OS_PROJECT_DOMAIN_NAME"]),
            tenant_domain_id: first(&["OS_PROJECT_DOMAIN_ID"]),
            app_credential_id: first(&["OS_APPLICATION_CREDENTIAL_ID"]),
            app_credential_name: first(&["OS_APPLICATION_CREDENTIAL_NAME"]),
            app_credential_secret: first(&["OS_APPLICATION_CREDENTIAL_SECRET"]),
            storage_url: first(&["OS_STORAGE_URL"]),
            auth_token: first(&["OS_AUTH_TOKEN"]),
        }
    }

    /// Which authentication applies, or the error that names what is missing.
    fn check(&self) -> Result<(), RepoError> {
        if !self.storage_url.is_empty() && !self.auth_token.is_empty() {
            return Ok(());
        }
        if self.auth_url.is_empty() {
            return Err(RepoError::Storage(
                "swift: neither OS_AUTH_URL (or ST_AUTH) nor OS_STORAGE_URL with OS_AUTH_TOKEN \
                 is set"
                    .to_owned(),
            ));
        }
        let app_credential =
            !self.app_credential_id.is_empty() || !self.app_credential_name.is_empty();
        if app_credential {
            if self.app_credential_secret.is_empty() {
                return Err(RepoError::Storage(
                    "swift: OS_APPLICATION_CREDENTIAL_SECRET is not set".to_owned(),
                ));
            }
            return Ok(());
        }
        if self.user_name.is_empty() && self.user_id.is_empty() {
            return Err(RepoError::Storage(
                "swift: OS_USERNAME (or ST_USER) is not set".to_owned(),
            ));
        }
        if self.api_key.is_empty() {
            return Err(RepoError::Storage(
                "swift: OS_PASSWORD (or ST_KEY) is not set".to_owned(),
            ));
        }
        Ok(())
    }

    fn auth_version(&self) -> u8 {
        if self.auth_url.contains("v3") {
            3
        } else if self.auth_url.contains("v2") {
            2
        } else {
            1
        }
    }
}

#[derive(Clone)]
struct Session {
    storage_url: String,
    token: String,
}

/// A Swift container.
pub struct SwiftBackend {
    config: SwiftConfig,
    container: String,
    layout: Layout,
    session: Mutex<Option<Session>>,
    agent: ureq::Agent,
}

impl SwiftBackend {
    /// A backend for `container` and restic's raw `prefix` (what follows `swift:<container>:`,
    /// which must start with `/`).
    pub fn new(
        config: SwiftConfig,
        container: &str,
        prefix: &str,
    ) -> Result<SwiftBackend, RepoError> {
        config.check()?;
        if container.is_empty() {
            return Err(RepoError::Storage("swift: no container".to_owned()));
        }
        if !prefix.starts_with('/') {
            return Err(RepoError::Storage(
                "swift: prefix does not start with slash (/)".to_owned(),
            ));
        }
        Ok(SwiftBackend {
            config,
            container: container.to_owned(),
            layout: Layout::swift(prefix),
            session: Mutex::new(None),
            agent: agent(),
        })
    }

    /// The same backend with these TLS settings (a CA to trust, or insecure TLS); its
    /// authentication requests use them too.
    pub fn with_tls(mut self, tls: &TlsSettings) -> Result<SwiftBackend, RepoError> {
        self.agent = agent_with(tls)?;
        Ok(self)
    }

    fn authenticate(&self) -> Result<Session, RepoError> {
        let c = &self.config;
        let session = if !c.storage_url.is_empty() && !c.auth_token.is_empty() {
            Session {
                storage_url: c.storage_url.clone(),
                token: c.auth_token.clone(),
            }
        } else {
            match c.auth_version() {
                3 => self.auth_v3()?,
                2 => self.auth_v2()?,
                _ => self.auth_v1()?,
            }
        };
        let session = Session {
            storage_url: session.storage_url.trim_end_matches('/').to_owned(),
            ..session
        };
        *self.session.lock().map_err(|_| poisoned())? = Some(session.clone());
        Ok(session)
    }

    fn auth_v1(&self) -> Result<Session, RepoError> {
        let what = "swift: v1 auth (ST_AUTH, ST_USER, ST_KEY)";
        let resp = self
            .agent
            .get(&self.config.auth_url)
            .set("X-Auth-User", &self.config.user_name)
            .set("X-Auth-Key", &self.config.api_key)
            .call()
            .map_err(|e| storage(what, e))?;
        let header = |name: &str| {
            resp.header(name)
                .map(str::to_owned)
                .ok_or_else(|| RepoError::Storage(format!("{what}: no {name} in the answer")))
        };
        Ok(Session {
            storage_url: header("X-Storage-Url")?,
            token: header("X-Auth-Token")?,
        })
    }

    fn auth_v2(&self) -> Result<Session, RepoError> {
        let c = &self.config;
        let what = "swift: keystone v2 auth (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD)";
        let mut auth = serde_json::json!({
            "passwordCredentials": {"username": c.user_name, "password": c.api_key},
        });
        if !c.tenant.is_empty() {
            auth["tenantName"] = c.tenant.clone().into();
        }
        if !c.tenant_id.is_empty() {
            auth["tenantId"] = c.tenant_id.clone().into();
        }
        let url = format!("{}/tokens", c.auth_url.trim_end_matches('/'));
        let resp = self
            .agent
            .post(&url)
            .send_json_value(serde_json::json!({ "auth": auth }))
            .map_err(|e| storage(what, e))?;
        let answer: serde_json::Value = serde_json::from_slice(&body(what, resp)?)
            .map_err(|e| RepoError::Storage(format!("{what}: {e}")))?;
        let token = answer["access"]["token"]["id"]
            .as_str()
            .ok_or_else(|| RepoError::Storage(format!("{what}: no token in the answer")))?;
        let storage_url = answer["access"]["serviceCatalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == "object-store")
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .find(|e| c.region.is_empty() || e["region"] == c.region.as_str())
            .and_then(|e| e["publicURL"].as_str())
            .ok_or_else(|| self.no_endpoint(what))?;
        Ok(Session {
            storage_url: storage_url.to_owned(),
            token: token.to_owned(),
        })
    }

    fn auth_v3(&self) -> Result<Session, RepoError> {
        let c = &self.config;
        let what = "swift: keystone v3 auth (OS_AUTH_URL)";
        let domain = |name: &str, id: &str| {
            if !id.is_empty() {
                Some(serde_json::json!({ "id": id }))
            } else if !name.is_empty() {
                Some(serde_json::json!({ "name": name }))
            } else {
                None
            }
        };
        let mut user = serde_json::json!({});
        if !c.user_id.is_empty() {
            user["id"] = c.user_id.clone().into();
        } else if !c.user_name.is_empty() {
            user["name"] = c.user_name.clone().into();
            if let Some(d) = domain(&c.domain, &c.domain_id) {
                user["domain"] = d;
            }
        }
        let app_credential = !c.app_credential_id.is_empty() || !c.app_credential_name.is_empty();
        let mut auth = if app_credential {
            let mut cred = serde_json::json!({ "secret": c.app_credential_secret });
            if !c.app_credential_id.is_empty() {
                cred["id"] = c.app_credential_id.clone().into();
            } else {
                cred["name"] = c.app_credential_name.clone().into();
                cred["user"] = user;
            }
            serde_json::json!({"identity": {
                "methods": ["application_credential"],
                "application_credential": cred,
            }})
        } else {
            user["password"] = c.api_key.clone().into();
            serde_json::json!({"identity": {
                "methods": ["password"],
                "password": {"user": user},
            }})
        };
        if !app_credential {
            if !c.tenant_id.is_empty() {
                auth["scope"] = serde_json::json!({"project": {"id": c.tenant_id}});
            } else if !c.tenant.is_empty() {
                let mut project = serde_json::json!({ "name": c.tenant });
                // The project's domain defaults to the user's.
                if let Some(d) = domain(&c.tenant_domain, &c.tenant_domain_id)
                    .or_else(|| domain(&c.domain, &c.domain_id))
                {
                    project["domain"] = d;
                }
                auth["scope"] = serde_json::json!({ "project": project });
            }
        }
        let url = format!("{}/auth/tokens", c.auth_url.trim_end_matches('/'));
        let resp = self
            .agent
            .post(&url)
            .send_json_value(serde_json::json!({ "auth": auth }))
            .map_err(|e| storage(what, e))?;
        let token = resp
            .header("X-Subject-Token")
            .map(str::to_owned)
            .ok_or_else(|| RepoError::Storage(format!("{what}: no X-Subject-Token")))?;
        let answer: serde_json::Value = serde_json::from_slice(&body(what, resp)?)
            .map_err(|e| RepoError::Storage(format!("{what}: {e}")))?;
        let storage_url = answer["token"]["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == "object-store")
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .filter(|e| e["interface"] == "public")
            .find(|e| {
                c.region.is_empty()
                    || e["region_id"] == c.region.as_str()
                    || e["region"] == c.region.as_str()
            })
            .and_then(|e| e["url"].as_str())
            .ok_or_else(|| self.no_endpoint(what))?;
        Ok(Session {
            storage_url: storage_url.to_owned(),
            token,
        })
    }

    fn no_endpoint(&self, what: &str) -> RepoError {
        RepoError::Storage(format!(
            "{what}: the catalog has no object-store endpoint{}",
            if self.config.region.is_empty() {
                String::new()
            } else {
                format!(" in region {} (OS_REGION_NAME)", self.config.region)
            }
        ))
    }

    fn session(&self) -> Result<Session, RepoError> {
        if let Some(s) = self.session.lock().map_err(|_| poisoned())?.clone() {
            return Ok(s);
        }
        self.authenticate()
    }

    /// Sends a request for `object` (the container itself when empty) with `query` already
    /// encoded, authenticating once more when the token was refused.
    fn call(
        &self,
        method: &str,
        object: &str,
        query: &str,
        send: impl Fn(ureq::Request) -> Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, ureq::Error> {
        let build = |s: &Session| {
            let mut url = format!("{}/{}", s.storage_url, uri_encode(&self.container, false));
            if !object.is_empty() {
                url.push('/');
                url.push_str(&uri_encode(object, true));
            }
            if !query.is_empty() {
                url.push('?');
                url.push_str(query);
            }
            self.agent
                .request(method, &url)
                .set("X-Auth-Token", &s.token)
        };
        let session = self.session().map_err(to_transport)?;
        match send(build(&session)) {
            // A token given as OS_AUTH_TOKEN cannot be renewed.
            Err(ureq::Error::Status(401, _)) if self.config.auth_token.is_empty() => {
                let session = self.authenticate().map_err(to_transport)?;
                send(build(&session))
            }
            other => other,
        }
    }
}

fn poisoned() -> RepoError {
    RepoError::Storage("swift: state lock poisoned".to_owned())
}

impl Backend for SwiftBackend {
    fn location(&self) -> String {
        format!("swift:{}:/{}", self.container, self.layout.prefix())
    }

    fn create(&self) -> Result<(), RepoError> {
        // As restic: the container is created when it does not exist.
        let what = format!("swift: container {}", self.container);
        match self.call("HEAD", "", "", |r| r.call()) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(404, _)) => self
                .call("PUT", "", "", |r| r.send_bytes(b""))
                .map(drop)
                .map_err(|e| storage(&what, e)),
            Err(e) => Err(storage(&what, e)),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let key = self.layout.key(kind, name);
        let resp = self
            .call("GET", &key, "", |r| r.call())
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
            .call("GET", &key, "", |r| r.set("Range", &range).call())
            .map_err(|e| storage(&key, e))?;
        let data = body(&key, resp)?;
        if data.len() as u64 != length {
            return Err(RepoError::Storage(format!("{key}: short read")));
        }
        Ok(data)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        // One PUT (up to 5 GiB) is atomic; restic's files are far smaller.
        let key = self.layout.key(kind, name);
        self.call("PUT", &key, "", |r| {
            r.set("Content-Type", "application/octet-stream")
                .send_bytes(data)
        })
        .map(drop)
        .map_err(|e| storage(&key, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        #[derive(serde::Deserialize)]
        struct Object {
            name: String,
            bytes: u64,
        }
        let dir = self.layout.dir(kind);
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = format!("format=json&limit=10000&prefix={}", uri_encode(&dir, false));
            if !marker.is_empty() {
                query.push_str(&format!("&marker={}", uri_encode(&marker, false)));
            }
            let resp = match self.call("GET", "", &query, |r| r.call()) {
                Ok(r) => r,
                Err(ureq::Error::Status(404, _)) => return Ok(Vec::new()),
                Err(e) => return Err(storage(&dir, e)),
            };
            let data = body(&dir, resp)?;
            // An empty page may come as 204 without a body.
            let page: Vec<Object> = if data.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&data)
                    .map_err(|e| RepoError::Storage(format!("{dir}: {e}")))?
            };
            let Some(last) = page.last().map(|o| o.name.clone()) else {
                break;
            };
            for o in page {
                if let Some(file) = Layout::listed_name(&dir, &o.name) {
                    out.push((file.to_owned(), o.bytes));
                }
            }
            marker = last;
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let key = self.layout.key(kind, name);
        match self.call("DELETE", &key, "", |r| r.call()) {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(e) => Err(storage(&key, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let key = self.layout.key(kind, name);
        match self.call("HEAD", &key, "", |r| r.call()) {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(storage(&key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn variables_are_read_as_restic_reads_them() {
        let c = SwiftConfig::from_env(&env(&[
            ("ST_AUTH", "http://st/auth/v1.0"),
            ("ST_USER", "st-user"),
            ("ST_KEY", "st-key"),
            ("OS_USERNAME", "os-user"),
            ("OS_TENANT_NAME", "tenant"),
            ("OS_PROJECT_NAME", "project"),
        ]));
        assert_eq!(c.auth_url, "http://st/auth/v1.0");
        assert_eq!(c.user_name, "os-user");
        assert_eq!(c.api_key, "st-key");
        assert_eq!(c.tenant, "project");
        assert_eq!(c.auth_version(), 1);
        let v3 = SwiftConfig {
            auth_url: "https://keystone/v3".into(),
            ..SwiftConfig::default()
        };
        assert_eq!(v3.auth_version(), 3);
    }

    #[test]
    fn missing_settings_name_the_variable() {
        let err = |pairs: &'static [(&'static str, &'static str)]| {
            SwiftBackend::new(SwiftConfig::from_env(&env(pairs)), "c", "/")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(&[]).contains("OS_AUTH_URL"));
        assert!(err(&[("OS_AUTH_URL", "http://k/v3")]).contains("OS_USERNAME"));
        assert!(
            err(&[("OS_AUTH_URL", "http://k/v3"), ("OS_USERNAME", "u")]).contains("OS_PASSWORD")
        );
        assert!(err(&[
            ("OS_AUTH_URL", "http://k/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "id")
        ])
        .contains("OS_APPLICATION_CREDENTIAL_SECRET"));
        assert_eq!(
            err(&[
                ("OS_STORAGE_URL", "http://s/v1/AUTH_x"),
                ("OS_AUTH_TOKEN", "t")
            ]),
            ""
        );
    }
}
