//! `exec` hooks: the command runs in container `containerName` of the target pod through the
//! `pods/exec` subresource (WebSocket), as `kubectl exec` does; its exit status decides, and
//! its output is kept up to [`MAX_OUTPUT`] bytes per stream.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{HookError, MAX_OUTPUT};

/// Reads a stream to its end, keeping the first `MAX_OUTPUT` bytes (the rest is drained so the
/// command never blocks on a full pipe).
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Runs `command` in `container` of `pod`; Ok with its output on exit status 0.
pub async fn run(
    client: &kube::Client,
    pod: &Pod,
    container: Option<&str>,
    command: &Option<Vec<String>>,
) -> Result<String, HookError> {
    let command = command
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| HookError::Invalid("exec.command is empty".into()))?;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    if let Some(c) = container.filter(|c| !c.is_empty()) {
        params = params.container(c);
    }
    let where_ = format!(
        "pod {ns}/{name}{}",
        container
            .filter(|c| !c.is_empty())
            .map(|c| format!(" container {c}"))
            .unwrap_or_default()
    );
    let mut process = Api::<Pod>::namespaced(client.clone(), &ns)
        .exec(&name, command.clone(), &params)
        .await
        .map_err(|e| HookError::Failed(format!("exec in {where_}: {e}")))?;
    let status = process.take_status();
    let (out, err) = tokio::join!(
        read_bounded(process.stdout()),
        read_bounded(process.stderr())
    );
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = process.join().await;
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let stderr = String::from_utf8_lossy(&err).into_owned();
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(stdout),
        Some(s) => {
            let code = s
                .details
                .as_ref()
                .and_then(|d| d.causes.as_ref())
                .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|c| c.message.clone());
            let detail = match code {
                Some(code) => format!("command terminated with non-zero exit code: {code}"),
                None => s.message.unwrap_or_else(|| "command failed".into()),
            };
            let tail = stderr.trim();
            Err(HookError::Failed(if tail.is_empty() {
                format!("exec in {where_}: {detail}")
            } else {
                format!(
                    "exec in {where_}: {detail}; stderr: {}",
                    last_chars(tail, 512)
                )
            }))
        }
        None => Err(HookError::Failed(format!(
            "exec in {where_}: the connection ended without an exit status"
        ))),
    }
}

/// The last `n` characters of `s` (errors keep the end, where the reason usually is).
fn last_chars(s: &str, n: usize) -> &str {
    let start = s
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    &s[start..]
}
