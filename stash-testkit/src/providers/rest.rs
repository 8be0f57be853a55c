//! A restic REST server (the protocol of restic's `rest-server`) over a temporary directory,
//! embedded in the process on a free port, with HTTP basic authentication.
//!
//! Enough of the protocol for restic's `rest:` backend: create, config, list (v1 and v2),
//! head, get with `Range`, save and delete. One repository at the server's root path.

use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use http::{header, Method, StatusCode};

const TYPES: [&str; 5] = ["data", "keys", "locks", "snapshots", "index"];
const V2: &str = "application/vnd.x.restic.rest.v2";
/// The largest object a client may upload by default: restic's largest pack size (128 MiB)
/// with room to spare. Larger bodies get 413 instead of being held in memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 << 20;

/// Errors from starting a [`RestServer`].
#[derive(Debug, thiserror::Error)]
pub enum RestServerError {
    /// Binding the port, creating the runtime or the directory failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A running REST server, stopped and deleted on drop.
#[derive(Debug)]
pub struct RestServer {
    addr: SocketAddr,
    username: String,
    password: String,
    runtime: Option<tokio::runtime::Runtime>,
    root: tempfile::TempDir,
}

struct Shared {
    root: PathBuf,
    authorization: String,
    max_body: usize,
}

impl RestServer {
    /// Starts a server on 127.0.0.1 with a random user and password.
    pub fn start() -> Result<Self, RestServerError> {
        Self::start_with_max_body(DEFAULT_MAX_BODY_BYTES)
    }

    /// As [`RestServer::start`], refusing uploads larger than `max_body` bytes with 413.
    pub fn start_with_max_body(max_body: usize) -> Result<Self, RestServerError> {
        let root = tempfile::Builder::new().prefix("stash-rest-").tempdir()?;
        let username = format!("u{}", super::random_hex(4)?);
        let password = super::random_hex(12)?;
        let shared = Arc::new(Shared {
            root: root.path().to_path_buf(),
            authorization: format!(
                "Basic {}",
                base64_encode(format!("{username}:{password}").as_bytes())
            ),
            max_body,
        });
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rest-server")
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let app = Router::new().fallback(handle).with_state(shared);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RestServer {
            addr,
            username,
            password,
            runtime: Some(runtime),
            root,
        })
    }

    /// `http://127.0.0.1:PORT/` (no credentials).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The user name clients must send.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password clients must send.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// Entry point for `stash-testkit rest`: starts a server, prints its URL and credentials as one
/// JSON line on `out`, and keeps it running until `input` reaches end of file or a line `quit`;
/// then stops it and removes its files.
pub fn run_cli(input: impl BufRead, mut out: impl Write) -> Result<(), RestServerError> {
    let server = RestServer::start()?;
    let params = serde_json::json!({
        "url": server.url(),
        "username": server.username(),
        "password": server.password(),
        "root": server.root(),
    });
    writeln!(out, "{params}")?;
    out.flush()?;
    for line in input.lines() {
        if line?.trim() == "quit" {
            break;
        }
    }
    drop(server);
    Ok(())
}

impl Drop for RestServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

fn with_body(code: StatusCode, content_type: Option<&str>, body: Vec<u8>) -> Response {
    let len = body.len();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    if let Some(ct) = content_type {
        if let Ok(value) = header::HeaderValue::from_str(ct) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
    }
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    response
}

/// Maps a request path to a file, refusing anything but `/config`, `/<type>/` and
/// `/<type>/<hex name>`.
fn resolve(root: &Path, path: &str) -> Option<(PathBuf, bool)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => Some((root.to_path_buf(), true)),
        ["config"] => Some((root.join("config"), false)),
        [t] | [t, ""] if TYPES.contains(t) => Some((root.join(t), true)),
        [t, name]
            if TYPES.contains(t)
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some((root.join(t).join(name), false))
        }
        _ => None,
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(shared.authorization.as_str());
    if !authorized {
        return status(StatusCode::UNAUTHORIZED);
    }
    let method = request.method().clone();
    let uri = request.uri().clone();
    let Some((path, is_dir)) = resolve(&shared.root, uri.path()) else {
        return status(StatusCode::NOT_FOUND);
    };
    let wants_v2 = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(V2));
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body as u64) {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = match axum::body::to_bytes(request.into_body(), shared.max_body).await {
        Ok(b) => b,
        // A chunked body that grew past the limit, or a broken connection.
        Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let result = tokio::task::spawn_blocking(move || {
        respond(
            &method,
            uri.query().unwrap_or(""),
            &path,
            is_dir,
            wants_v2,
            range.as_deref(),
            &body,
        )
    })
    .await;
    result.unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

fn respond(
    method: &Method,
    query: &str,
    path: &Path,
    is_dir: bool,
    wants_v2: bool,
    range: Option<&str>,
    body: &[u8],
) -> Response {
    let io = |r: std::io::Result<Response>| {
        r.unwrap_or_else(|e| {
            status(if e.kind() == std::io::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            })
        })
    };
    match (method.clone(), is_dir) {
        (Method::POST, true) if query.contains("create=true") => io((|| {
            for t in TYPES {
                std::fs::create_dir_all(path.join(t))?;
            }
            Ok(status(StatusCode::OK))
        })()),
        (Method::GET, true) => io((|| {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                entries.push((name, entry.metadata()?.len()));
            }
            let json = if wants_v2 {
                serde_json::to_vec(
                    &entries
                        .iter()
                        .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
                        .collect::<Vec<_>>(),
                )
            } else {
                serde_json::to_vec(&entries.iter().map(|(n, _)| n).collect::<Vec<_>>())
            }
            .map_err(std::io::Error::other)?;
            let ct = if wants_v2 {
                V2
            } else {
                "application/vnd.x.restic.rest.v1"
            };
            Ok(with_body(StatusCode::OK, Some(ct), json))
        })()),
        (Method::HEAD, false) => io((|| {
            let len = std::fs::metadata(path)?.len();
            let mut response = status(StatusCode::OK);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
            Ok(response)
        })()),
        (Method::GET, false) => io((|| {
            let data = std::fs::read(path)?;
            match range.and_then(|r| parse_range(r, data.len())) {
                Some((start, end)) => {
                    let mut response = with_body(
                        StatusCode::PARTIAL_CONTENT,
                        Some("application/octet-stream"),
                        data[start..end].to_vec(),
                    );
                    if let Ok(v) = header::HeaderValue::from_str(&format!(
                        "bytes {start}-{}/{}",
                        end - 1,
                        data.len()
                    )) {
                        response.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    Ok(response)
                }
                None => Ok(with_body(
                    StatusCode::OK,
                    Some("application/octet-stream"),
                    data,
                )),
            }
        })()),
        (Method::POST, false) => io((|| {
            if path.exists() {
                return Ok(status(StatusCode::FORBIDDEN));
            }
            let tmp = path.with_extension("tmp-upload");
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, path)?;
            Ok(status(StatusCode::OK))
        })()),
        (Method::DELETE, false) => io((|| {
            std::fs::remove_file(path)?;
            Ok(status(StatusCode::OK))
        })()),
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// `bytes=START-END` or `bytes=START-` to a half-open byte range within `len`.
fn parse_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end: usize = if end.is_empty() {
        len.checked_sub(1)?
    } else {
        end.parse().ok()?
    };
    let end = end.min(len.checked_sub(1)?);
    (start <= end).then_some((start, end + 1))
}

fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=2-4", 10), Some((2, 5)));
        assert_eq!(parse_range("bytes=8-", 10), Some((8, 10)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 10)));
        assert_eq!(parse_range("bytes=11-12", 10), None);
    }

    #[test]
    fn only_repository_paths_resolve() {
        let root = Path::new("/r");
        assert_eq!(resolve(root, "/config"), Some((root.join("config"), false)));
        assert_eq!(resolve(root, "/data/"), Some((root.join("data"), true)));
        assert_eq!(
            resolve(root, "/data/ab12"),
            Some((root.join("data/ab12"), false))
        );
        assert_eq!(resolve(root, "/data/../x"), None);
        assert_eq!(resolve(root, "/etc/passwd"), None);
    }

    fn put(server: &RestServer, path: &str, body: &[u8], chunked: bool) -> String {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        let auth = base64_encode(format!("{}:{}", server.username, server.password).as_bytes());
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n{framing}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        if chunked {
            let _ = write!(stream, "{:x}\r\n", body.len());
            let _ = stream.write_all(body);
            let _ = stream.write_all(b"\r\n0\r\n\r\n");
        } else {
            let _ = stream.write_all(body);
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn uploads_over_the_limit_are_refused_not_buffered() {
        let server = RestServer::start_with_max_body(1024).unwrap();
        assert!(put(&server, "/?create=true", b"", false).contains(" 200 "));
        let id = "ab".repeat(32);
        let small = put(&server, &format!("/data/{id}"), &[7u8; 512], false);
        assert!(small.contains(" 200 "), "{small}");
        let declared = put(&server, &format!("/data/{id}"), &[7u8; 4096], false);
        assert!(declared.contains(" 413 "), "{declared}");
        let chunked = put(&server, &format!("/data/{id}"), &[7u8; 4096], true);
        assert!(chunked.contains(" 413 "), "{chunked}");
    }
}
