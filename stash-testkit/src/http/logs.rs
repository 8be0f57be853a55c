//! Pod logs: `GET .../pods/<name>/log`, with `container`, `tailLines` and `follow`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header;

use crate::apiserver::Apiserver;
use crate::status::{ApiError, ApiResult};

pub(super) fn pod_log(
    api: &Apiserver,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let pods = api.resource("", "v1", "pods")?;
    let pod = api.get(&pods, ns, name)?;
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match query.get("container") {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    let logs = api.logs.lock().unwrap_or_else(|e| e.into_inner());
    let text = logs
        .get(&(ns.to_string(), name.to_string(), container.clone()))
        .cloned()
        .unwrap_or_default();
    drop(logs);
    let full_len = text.len();
    let text = match query.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut out = lines[start..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
        None => text,
    };
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    let body = if follow && !terminal {
        follow_log(
            api.clone(),
            (ns.to_string(), name.to_string(), container),
            text,
            full_len,
        )
    } else {
        Body::from(text)
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

/// Streams a container's log: what is there now, then whatever the kubelet appends, until
/// the pod finishes or goes away.
fn follow_log(
    api: Apiserver,
    key: (String, String, String),
    first: String,
    mut sent: usize,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let (ns, pod) = (key.0.clone(), key.1.clone());
        if !first.is_empty() && tx.send(Ok(bytes::Bytes::from(first))).await.is_err() {
            return;
        }
        let Ok(pods) = api.resource("", "v1", "pods") else {
            return;
        };
        loop {
            let finished = match api.get(&pods, &ns, &pod) {
                Ok(p) => matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")),
                Err(_) => true,
            };
            let fresh = {
                let logs = api.logs.lock().unwrap_or_else(|e| e.into_inner());
                let text = logs.get(&key).map(String::as_str).unwrap_or_default();
                let fresh = text.get(sent..).unwrap_or_default().to_string();
                sent = text.len();
                fresh
            };
            if !fresh.is_empty() && tx.send(Ok(bytes::Bytes::from(fresh))).await.is_err() {
                return;
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
