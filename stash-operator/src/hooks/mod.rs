//! The actions of a hook (`prober.Handler`, stash.md §9): `exec` inside the target's pod,
//! `httpGet`, `httpPost` and `tcpSocket`, with the pod found through the AppBinding's Service.
//! Errors name the action and the endpoint but never headers, bodies or URL paths, which may
//! carry tokens.

pub mod exec;
pub mod executor_pod;
pub mod probe;

use k8s_openapi::api::core::v1::Pod;
use stash_core::api::HookHandler;

/// Output kept from a command or a response (Stash keeps 10 KiB).
pub const MAX_OUTPUT: usize = 10 * 1024;

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook names no action, or a field is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The executor pod could not be found.
    #[error("{0}")]
    NoPod(String),
    /// The action ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The Kubernetes API failed.
    #[error("{0}")]
    Kube(String),
}

/// Runs the action(s) of `handler` (Stash runs each one present, in this order). `pod` is the
/// executor pod when there is one: exec runs in it, and an empty host means its IP.
pub async fn run(
    client: &kube::Client,
    handler: &HookHandler,
    pod: Option<&Pod>,
) -> Result<String, HookError> {
    let mut output = String::new();
    let mut ran = false;
    if let Some(e) = &handler.exec {
        ran = true;
        let pod = pod.ok_or_else(|| HookError::NoPod("an exec hook needs a pod".into()))?;
        output.push_str(
            &exec::run(client, pod, handler.container_name.as_deref(), &e.command).await?,
        );
    }
    if let Some(get) = &handler.http_get {
        ran = true;
        let target = probe::HttpTarget::from_get(get, pod, handler.container_name.as_deref())?;
        output.push_str(&probe::http(&target, "GET", &probe::Payload::None).await?);
    }
    if let Some(post) = &handler.http_post {
        ran = true;
        let target = probe::HttpTarget::from_post(post, pod, handler.container_name.as_deref())?;
        let payload = probe::Payload::of_post(post);
        output.push_str(&probe::http(&target, "POST", &payload).await?);
    }
    if let Some(tcp) = &handler.tcp_socket {
        ran = true;
        probe::tcp(tcp, pod, handler.container_name.as_deref()).await?;
    }
    if !ran {
        return Err(HookError::Invalid(
            "the hook has none of exec, httpGet, httpPost, tcpSocket".into(),
        ));
    }
    Ok(output)
}

/// Whether the handler needs the target's pod: exec, an empty host, or a named port.
pub fn needs_pod(handler: &HookHandler) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let named = |p: Option<&IntOrString>| matches!(p, Some(IntOrString::String(s)) if s.parse::<u16>().is_err());
    let empty = |h: Option<&String>| h.is_none_or(|h| h.is_empty());
    handler.exec.is_some()
        || handler
            .http_get
            .as_ref()
            .is_some_and(|g| empty(g.host.as_ref()) || named(Some(&g.port)))
        || handler
            .http_post
            .as_ref()
            .is_some_and(|p| empty(p.host.as_ref()) || named(p.port.as_ref()))
        || handler
            .tcp_socket
            .as_ref()
            .is_some_and(|t| empty(t.host.as_ref()) || named(Some(&t.port)))
}
