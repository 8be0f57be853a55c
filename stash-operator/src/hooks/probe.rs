//! `httpGet`, `httpPost` and `tcpSocket` hooks with kmodules/prober's semantics: an empty host
//! is the executor pod's IP, a named port is looked up in container `containerName`, a
//! response of 200–399 succeeds (redirects are not followed), and a POST sends the form
//! (urlencoded) or else the body (JSON).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{HTTPGetAction, HTTPHeader, Pod, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use stash_core::api::HttpPostAction;

use super::{HookError, MAX_OUTPUT};

/// Time allowed for one probe.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Sent unless the hook sets its own `User-Agent`.
const USER_AGENT: &str = concat!("stash-rs/", env!("CARGO_PKG_VERSION"));

/// Where an HTTP hook goes.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    /// `http` or `https`.
    pub scheme: String,
    /// Host (a name or an address).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    fn new(
        scheme: Option<&str>,
        host: Option<&str>,
        port: Option<&IntOrString>,
        path: Option<&str>,
        headers: Option<&Vec<HTTPHeader>>,
        pod: Option<&Pod>,
        container: Option<&str>,
    ) -> Result<HttpTarget, HookError> {
        let scheme = match scheme.unwrap_or("").to_ascii_lowercase().as_str() {
            "" | "http" => "http".to_string(),
            "https" => "https".to_string(),
            other => {
                return Err(HookError::Invalid(format!(
                    "scheme {other:?} is not HTTP or HTTPS"
                )))
            }
        };
        let host = resolve_host(host, pod)?;
        let port = resolve_port(port, pod, container)?;
        let mut path = path.unwrap_or("").to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let headers = headers
            .into_iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        Ok(HttpTarget {
            scheme,
            host,
            port,
            path,
            headers,
        })
    }

    /// The target of an `httpGet` hook.
    pub fn from_get(
        a: &HTTPGetAction,
        pod: Option<&Pod>,
        container: Option<&str>,
    ) -> Result<HttpTarget, HookError> {
        Self::new(
            a.scheme.as_deref(),
            a.host.as_deref(),
            Some(&a.port),
            a.path.as_deref(),
            a.http_headers.as_ref(),
            pod,
            container,
        )
    }

    /// The target of an `httpPost` hook.
    pub fn from_post(
        a: &HttpPostAction,
        pod: Option<&Pod>,
        container: Option<&str>,
    ) -> Result<HttpTarget, HookError> {
        Self::new(
            a.scheme.as_deref(),
            a.host.as_deref(),
            a.port.as_ref(),
            a.path.as_deref(),
            a.http_headers.as_ref(),
            pod,
            container,
        )
    }

    /// `scheme://host:port`, without the path (it may hold a token, as webhook URLs do).
    pub fn origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}", self.scheme, self.port)
    }
}

/// What a request carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Nothing.
    None,
    /// `application/x-www-form-urlencoded` fields (keys sorted, as Go's `url.Values.Encode`).
    Form(Vec<(String, String)>),
    /// A raw body, sent as `application/json`.
    Body(String),
}

impl Payload {
    /// The payload of an `httpPost` hook: the form wins over the body.
    pub fn of_post(a: &HttpPostAction) -> Payload {
        match (&a.form, &a.body) {
            (Some(form), _) if !form.is_empty() => {
                let mut fields: Vec<(String, String)> = form
                    .iter()
                    .flat_map(|e| {
                        e.values
                            .iter()
                            .flatten()
                            .map(move |v| (e.key.clone(), v.clone()))
                    })
                    .collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Payload::Form(fields)
            }
            (_, Some(body)) if !body.is_empty() => Payload::Body(body.clone()),
            _ => Payload::None,
        }
    }

    fn content(&self) -> Option<(&'static str, Vec<u8>)> {
        match self {
            Payload::None => None,
            Payload::Form(fields) => Some((
                "application/x-www-form-urlencoded",
                form_urlencode(fields).into_bytes(),
            )),
            Payload::Body(b) => Some(("application/json", b.clone().into_bytes())),
        }
    }
}

fn form_urlencode(fields: &[(String, String)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn resolve_host(host: Option<&str>, pod: Option<&Pod>) -> Result<String, HookError> {
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        return Ok(h.to_string());
    }
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| {
            HookError::NoPod("host is empty and the target pod has no IP to default to".into())
        })
}

fn resolve_port(
    port: Option<&IntOrString>,
    pod: Option<&Pod>,
    container: Option<&str>,
) -> Result<u16, HookError> {
    let n: i64 = match port {
        None => return Err(HookError::Invalid("port is not set".into())),
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                let c = pod
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|spec| {
                        spec.containers
                            .iter()
                            .find(|c| container.is_none_or(|n| n.is_empty() || c.name == n))
                    })
                    .ok_or_else(|| {
                        HookError::NoPod(format!(
                            "port {s:?} is named but container {:?} was not found in the target pod",
                            container.unwrap_or("")
                        ))
                    })?;
                c.ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(s.as_str()))
                    .map(|p| i64::from(p.container_port))
                    .ok_or_else(|| {
                        HookError::Invalid(format!("port {s:?} not found in container {}", c.name))
                    })?
            }
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| HookError::Invalid(format!("invalid port number: {n}")))
}

/// Sends the request; Ok with the (bounded) response body for 200–399.
pub async fn http(
    target: &HttpTarget,
    method: &str,
    payload: &Payload,
) -> Result<String, HookError> {
    let what = format!(
        "http{} {}",
        if method == "GET" { "Get" } else { "Post" },
        target.origin()
    );
    let uri: hyper::Uri = format!("{}{}", target.origin(), target.path)
        .parse()
        .map_err(|_| HookError::Invalid(format!("{what}: the path does not make a valid URL")))?;
    let mut req = hyper::Request::builder().method(method).uri(uri);
    let has = |name: &str| {
        target
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    for (k, v) in &target.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !has("user-agent") {
        req = req.header("user-agent", USER_AGENT);
    }
    let body = match payload.content() {
        Some((content_type, bytes)) => {
            if !has("content-type") {
                req = req.header("content-type", content_type);
            }
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| HookError::Invalid(format!("{what}: a header name or value is invalid")))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| HookError::Failed(format!("{what}: no TLS roots: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    let response = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| {
            HookError::Failed(format!("{what}: no response within {}s", TIMEOUT.as_secs()))
        })?
        .map_err(|e| HookError::Failed(format!("{what}: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_OUTPUT)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    if (200..400).contains(&status) {
        Ok(body)
    } else {
        Err(HookError::Failed(format!(
            "{what}: HTTP probe failed with statuscode: {status}"
        )))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Opens a TCP connection to the hook's host and port.
pub async fn tcp(
    a: &TCPSocketAction,
    pod: Option<&Pod>,
    container: Option<&str>,
) -> Result<(), HookError> {
    let host = resolve_host(a.host.as_deref(), pod)?;
    let port = resolve_port(Some(&a.port), pod, container)?;
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(HookError::Failed(format!("tcpSocket {addr}: {e}"))),
        Err(_) => Err(HookError::Failed(format!(
            "tcpSocket {addr}: no connection within {}s",
            TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stash_core::api::FormEntry;

    #[test]
    fn form_beats_body_and_encodes_like_go() {
        let a = HttpPostAction {
            body: Some("{}".into()),
            form: Some(vec![
                FormEntry {
                    key: "z".into(),
                    values: Some(vec!["a b".into(), "c&d".into()]),
                },
                FormEntry {
                    key: "a".into(),
                    values: Some(vec!["ü".into()]),
                },
            ]),
            ..Default::default()
        };
        let p = Payload::of_post(&a);
        let (ct, bytes) = p.content().unwrap();
        assert_eq!(ct, "application/x-www-form-urlencoded");
        assert_eq!(String::from_utf8(bytes).unwrap(), "a=%C3%BC&z=a+b&z=c%26d");
        let b = HttpPostAction {
            body: Some("{\"x\":1}".into()),
            ..Default::default()
        };
        assert_eq!(Payload::of_post(&b), Payload::Body("{\"x\":1}".into()));
        assert_eq!(Payload::of_post(&HttpPostAction::default()), Payload::None);
    }

    #[test]
    fn host_and_port_default_from_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "mysql", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.0.0.7"}
        }))
        .unwrap();
        let get = HTTPGetAction {
            port: IntOrString::String("http".into()),
            path: Some("health".into()),
            ..Default::default()
        };
        let t = HttpTarget::from_get(&get, Some(&pod), Some("mysql")).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("10.0.0.7", 8080, "/health")
        );
        assert_eq!(t.origin(), "http://10.0.0.7:8080");
        assert!(HttpTarget::from_get(&get, None, Some("mysql")).is_err());
        let bad = HTTPGetAction {
            host: Some("h".into()),
            port: IntOrString::Int(70000),
            ..Default::default()
        };
        assert!(HttpTarget::from_get(&bad, None, None)
            .unwrap_err()
            .to_string()
            .contains("70000"));
    }
}
