//! Pushes a finished session's metrics to a Prometheus Pushgateway, with Stash's metric names
//! (both the `stash_appscode_com_*` and the legacy `stash_*` families) and its job name
//! `<lower(invoker kind)>-<namespace>-<invoker name>`. Plain HTTP, as Stash's in-cluster
//! Pushgateway sidecar; failures are logged and never fail a session.

use std::fmt::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One finished backup session, as Stash reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSessionMetrics {
    /// Invoker kind (`BackupConfiguration`).
    pub invoker_kind: String,
    /// Invoker name.
    pub invoker_name: String,
    /// Namespace.
    pub namespace: String,
    /// Repository name.
    pub repository: String,
    /// Whether every target succeeded.
    pub success: bool,
    /// Session duration in seconds (success only).
    pub duration_seconds: f64,
    /// Targets in the session.
    pub targets: u64,
    /// Unix time of the push.
    pub now: i64,
}

/// The text exposition of a backup session, Stash's names and labels.
pub fn backup_session_text(m: &BackupSessionMetrics) -> String {
    let labels = format!(
        "invoker_kind=\"{}\",invoker_name=\"{}\",namespace=\"{}\",driver=\"Restic\",repository=\"{}\"",
        m.invoker_kind, m.invoker_name, m.namespace, m.repository
    );
    let mut out = String::new();
    // (new family, legacy family) names of stash.md §8.
    let mut gauge = |names: (&str, &str), value: f64| {
        for full in [names.0, names.1] {
            let _ = writeln!(out, "# TYPE {full} gauge\n{full}{{{labels}}} {value}");
        }
    };
    gauge(
        (
            "stash_appscode_com_backupsession_success",
            "stash_backup_session_success",
        ),
        if m.success { 1.0 } else { 0.0 },
    );
    if m.success {
        gauge(
            (
                "stash_appscode_com_backupsession_duration_seconds",
                "stash_backup_session_duration_seconds",
            ),
            m.duration_seconds,
        );
        gauge(
            (
                "stash_appscode_com_backupsession_target_count_total",
                "stash_backup_target_count_total",
            ),
            m.targets as f64,
        );
        gauge(
            (
                "stash_appscode_com_backupsession_last_success_time_seconds",
                "stash_backup_last_success_time_seconds",
            ),
            m.now as f64,
        );
    }
    out
}

/// The Pushgateway job name of an invoker.
pub fn job_name(invoker_kind: &str, namespace: &str, invoker_name: &str) -> String {
    format!("{}-{namespace}-{invoker_name}", invoker_kind.to_lowercase())
}

/// The most of a Pushgateway's answer that is read.
const MAX_ANSWER_BYTES: u64 = 16 << 10;

/// POSTs `body` to `<url>/metrics/job/<job>` (Stash's `Add`: replaces same-named metrics).
pub async fn push(url: &str, job: &str, body: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("pushgateway URL {url:?} must start with http://"))?;
    let (authority, base_path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let connect = tokio::net::TcpStream::connect(&address);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let request = format!(
        "POST {base_path}/metrics/job/{job} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Only the status line matters; a gateway that talks on is not read into memory.
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        (&mut stream)
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer),
    )
    .await
    .map_err(|_| "the pushgateway did not answer".to_string())?
    .map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    match status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(code) if (200..300).contains(&code) => Ok(()),
        _ => Err(format!("pushgateway answered {status_line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_stash() {
        let text = backup_session_text(&BackupSessionMetrics {
            invoker_kind: "BackupConfiguration".into(),
            invoker_name: "bc".into(),
            namespace: "demo".into(),
            repository: "repo".into(),
            success: true,
            duration_seconds: 22.0,
            targets: 1,
            now: 100,
        });
        for name in [
            "stash_appscode_com_backupsession_success",
            "stash_backup_session_success",
            "stash_backup_session_duration_seconds",
            "stash_appscode_com_backupsession_duration_seconds",
            "stash_backup_last_success_time_seconds",
            "stash_backup_target_count_total",
        ] {
            assert!(
                text.contains(&format!("{name}{{")),
                "{name} missing in\n{text}"
            );
        }
        assert_eq!(
            job_name("BackupConfiguration", "demo", "bc"),
            "backupconfiguration-demo-bc"
        );
    }

    #[tokio::test]
    async fn pushes_to_a_listening_gateway() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        push(
            &format!("http://{addr}"),
            "backupconfiguration-demo-bc",
            "x 1\n",
        )
        .await
        .expect("push");
        let request = server.await.expect("join");
        assert!(
            request.starts_with("POST /metrics/job/backupconfiguration-demo-bc HTTP/1.1"),
            "{request}"
        );
        assert!(request.ends_with("x 1\n"));
        assert!(push("https://example.invalid", "j", "").await.is_err());
    }

    #[tokio::test]
    async fn a_gateway_that_talks_on_is_read_only_up_to_the_cap() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            // Far more than the cap, and the connection stays open until the test ends.
            let junk = vec![b'x'; 1 << 20];
            for _ in 0..4 {
                if s.write_all(&junk).await.is_err() {
                    break;
                }
            }
            let _ = done_rx.await;
        });
        let result = push(&format!("http://{addr}"), "job", "x 1\n").await;
        let _ = done_tx.send(());
        assert_eq!(result, Ok(()));
    }
}
