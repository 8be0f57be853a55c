//! `pods/exec` over WebSocket, as the API server (1.30+) serves it to `kubectl exec` and to
//! kube-rs `Api::<Pod>::exec`: subprotocols `v5.channel.k8s.io` and `v4.channel.k8s.io`, each
//! binary message prefixed by its channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize;
//! v5 adds 255 = close a channel). The command runs in the container the kubelet started,
//! with its environment and mounts; its outcome is a `Status` on channel 3.
//!
//! Checks before the upgrade answer with a `Status` and an HTTP code, as the API server's
//! `ExecLocation` does: 404 for a missing pod, 400 for an unknown container or a pod without
//! a node. Errors after that (container not running, executable missing) arrive as an
//! `InternalError` `Status` on channel 3, as the API server's stream translator reports
//! what the kubelet said.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::path::{ApiPath, ResourcePath};
use super::{error_response, HttpState};
use crate::controllers::exec::ContainerHandle;
use crate::status::{ApiError, ApiResult};

/// Subprotocols served, in order of preference.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// How long an exec waits for a pod marked Running to have its container process up.
const CONTAINER_START: Duration = Duration::from_secs(5);
/// How long a command may run on after its client went away before it is killed.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// The pod and subresource of a `pods/exec` request path.
pub(super) fn exec_path(path: &str) -> Option<ResourcePath> {
    match super::path::parse(path)? {
        ApiPath::Resource(rp)
            if rp.group.is_empty()
                && rp.resource == "pods"
                && rp.subresource.as_deref() == Some("exec") =>
        {
            Some(rp)
        }
        _ => None,
    }
}

#[derive(Debug)]
struct ExecOptions {
    container: String,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Query booleans convert like the API server's `Convert_Slice_string_To_bool`: the first
/// value counts, and only `0` and `false` are false.
fn flag(query: &[(String, String)], name: &str) -> bool {
    query
        .iter()
        .find(|(k, _)| k == name)
        .is_some_and(|(_, v)| v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// The container to run in, chosen as the API server's `validateContainer` does.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> ApiResult<String> {
    let mains = container_names(pod, "containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            let known = mains
                .iter()
                .chain(&container_names(pod, "initContainers"))
                .chain(&container_names(pod, "ephemeralContainers"))
                .any(|n| n == c);
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if mains.len() == 1 => Ok(mains[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                mains.join(" ")
            );
            let inits = container_names(pod, "initContainers");
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

fn header_tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<&str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_websocket(headers: &HeaderMap) -> bool {
    header_tokens(headers, header::UPGRADE)
        .iter()
        .any(|t| t.eq_ignore_ascii_case("websocket"))
        && header_tokens(headers, header::CONNECTION)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Serves `GET|POST /api/v1/namespaces/NS/pods/NAME/exec`.
pub(super) async fn serve(state: &HttpState, rp: ResourcePath, mut req: Request) -> Response {
    match upgrade(state, &rp, &mut req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn upgrade(state: &HttpState, rp: &ResourcePath, req: &mut Request) -> ApiResult<Response> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::method_not_supported(req.method().as_str()));
    }
    let (Some(ns), Some(name)) = (rp.namespace.as_deref(), rp.name.as_deref()) else {
        return Err(ApiError::no_route());
    };
    if rp.version != "v1" {
        return Err(ApiError::no_route());
    }
    let api = &state.api;
    let pods = api.resource("", "v1", "pods")?;
    let pod = api.get(&pods, ns, name)?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let requested = query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let tty = flag(&query, "tty");
    let opts = ExecOptions {
        container: pick_container(&pod, name, requested)?,
        command: query
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag(&query, "stdin"),
        stdout: flag(&query, "stdout"),
        // With a terminal, stderr goes to the terminal too (the kubelet bypasses it).
        stderr: flag(&query, "stderr") && !tty,
        tty,
    };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if opts.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let headers = req.headers();
    if !is_websocket(headers) {
        let spdy = header_tokens(headers, header::UPGRADE)
            .iter()
            .any(|t| t.to_ascii_lowercase().starts_with("spdy"));
        return Err(ApiError::bad_request(if spdy {
            format!(
                "stash-testkit serves pods/exec over WebSocket only ({}); SPDY is not supported",
                PROTOCOLS.join(", ")
            )
        } else {
            "Upgrade request required".to_string()
        }));
    }
    let offered = header_tokens(headers, header::SEC_WEBSOCKET_PROTOCOL);
    let Some(protocol) = offered.iter().copied().find(|p| PROTOCOLS.contains(p)) else {
        return Err(ApiError::bad_request(format!(
            "requested protocol(s) are not supported: [{}]; supports [{}]",
            offered.join(" "),
            PROTOCOLS.join(" ")
        )));
    };
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key header"));
    };
    let accept = derive_accept_key(key.as_bytes());
    let v5 = protocol == PROTOCOLS[0];
    let protocol = HeaderValue::from_static(if v5 { PROTOCOLS[0] } else { PROTOCOLS[1] });
    let running = pod["status"]["phase"] == "Running";
    let target = find_container(state, ns, name, &opts.container, running).await;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session(ws, v5, opts, target).await;
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    Ok(resp)
}

/// The running container, as the kubelet reports it. A pod marked Running may still be
/// starting its container process; that gets a moment.
async fn find_container(
    state: &HttpState,
    ns: &str,
    pod: &str,
    container: &str,
    running: bool,
) -> Result<ContainerHandle, String> {
    let deadline = tokio::time::Instant::now() + CONTAINER_START;
    loop {
        let found = state
            .controllers
            .as_ref()
            .and_then(|cm| cm.container(ns, pod, container));
        match found {
            Some(h) if h.mounts_ready() => return Ok(h),
            _ if !running || tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "unable to upgrade connection: container not found ({container:?})"
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {}, "status": "Failure", "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500,
    })
}

fn exit_failure(command: &[String], code: i32) -> Value {
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn exit_code(status: std::io::Result<ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(1),
        Err(_) => 1,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

fn pump(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    channel: u8,
    tx: mpsc::Sender<(u8, Vec<u8>)>,
) {
    let Some(mut stream) = stream else { return };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || tx.send((channel, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}

async fn session<S>(
    ws: WebSocketStream<S>,
    v5: bool,
    opts: ExecOptions,
    target: Result<ContainerHandle, String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = ws.split();
    // The first writable channel announces that the streams are up.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        STATUS
    };
    let mut connected = sink.send(frame(first, &[])).await.is_ok();
    let status = run(&mut sink, &mut incoming, &mut connected, v5, &opts, target).await;
    if connected {
        let _ = sink
            .send(frame(STATUS, status.to_string().as_bytes()))
            .await;
        // A normal closure ends the client's streams with EOF (client-go treats any other
        // close as an error).
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        // Drain until the client acknowledges the close.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = incoming.next().await {}
        })
        .await;
    }
}

/// Runs the command and relays its streams; returns the status for channel 3.
async fn run<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    incoming: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
    connected: &mut bool,
    v5: bool,
    opts: &ExecOptions,
    target: Result<ContainerHandle, String>,
) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let handle = match target {
        Ok(h) => h,
        Err(e) => return internal_error(&e),
    };
    let mut cmd = match handle.command(&opts.command) {
        Ok(c) => c,
        Err(e) => {
            return internal_error(&format!(
                "error executing command in container: failed to exec in container: {e}"
            ))
        }
    };
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(piped(opts.stdin))
        .stdout(piped(opts.stdout))
        .stderr(piped(opts.stderr || (opts.tty && opts.stdout)))
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return internal_error(&format!(
                "error executing command in container: failed to exec in container: {e}"
            ))
        }
    };
    let (tx, mut rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    pump(child.stdout.take(), STDOUT, tx.clone());
    // Under a terminal both streams reach the client as the terminal's output.
    pump(
        child.stderr.take(),
        if opts.tty { STDOUT } else { STDERR },
        tx,
    );
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            while let Some(data) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
            // Dropping the pipe is the command's end of input.
        });
    }
    let mut stdin_tx = Some(stdin_tx);
    let mut exit = None;
    let mut outputs_done = false;
    let mut reading = true;
    let mut orphaned_at: Option<tokio::time::Instant> = None;
    let mut container_check = tokio::time::interval(Duration::from_millis(200));
    while exit.is_none() || !outputs_done {
        let orphan_deadline = orphaned_at.unwrap_or_else(tokio::time::Instant::now) + ORPHAN_GRACE;
        tokio::select! {
            out = rx.recv(), if !outputs_done => match out {
                Some((channel, data)) => {
                    if *connected && sink.send(frame(channel, &data)).await.is_err() {
                        *connected = false;
                    }
                }
                None => outputs_done = true,
            },
            msg = incoming.next(), if reading => match msg {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(data[1..].to_vec());
                        }
                    }
                    Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin_tx = None,
                    // Resize messages matter only to a real terminal.
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    reading = false;
                    stdin_tx = None;
                    *connected = false;
                    orphaned_at = Some(tokio::time::Instant::now());
                }
                Some(Ok(_)) => {}
            },
            status = child.wait(), if exit.is_none() => exit = Some(exit_code(status)),
            _ = container_check.tick(), if exit.is_none() => {
                if !handle.alive() {
                    let _ = child.start_kill();
                }
            }
            _ = tokio::time::sleep_until(orphan_deadline), if orphaned_at.is_some() && exit.is_none() => {
                let _ = child.start_kill();
                orphaned_at = None;
            }
        }
    }
    match exit {
        Some(0) => success(),
        Some(code) => exit_failure(&opts.command, code),
        None => success(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "db"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "mysql"}, {"name": "sidecar"}],
        }})
    }

    #[test]
    fn containers_are_picked_like_the_api_server_does() {
        assert_eq!(
            pick_container(&pod(), "db", Some("sidecar")).unwrap(),
            "sidecar"
        );
        assert_eq!(
            pick_container(&pod(), "db", Some("nope"))
                .unwrap_err()
                .message,
            "container nope is not valid for pod db"
        );
        assert_eq!(
            pick_container(&pod(), "db", None).unwrap_err().message,
            "a container name must be specified for pod db, choose one of: [mysql sidecar] or one of the init containers: [init]"
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, "p", None).unwrap(), "only");
    }

    #[test]
    fn booleans_and_exit_statuses() {
        let q = |v: &str| vec![("stdin".to_string(), v.to_string())];
        assert!(flag(&q("true"), "stdin"));
        assert!(flag(&q("1"), "stdin"));
        assert!(!flag(&q("false"), "stdin"));
        assert!(!flag(&q("0"), "stdin"));
        assert!(!flag(&[], "stdin"));
        let failure = exit_failure(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(
            failure["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
    }
}
