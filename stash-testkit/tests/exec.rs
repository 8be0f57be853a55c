//! `pods/exec` over WebSocket with kube-rs `Api::<Pod>::exec` and with `kubectl exec`: the
//! command runs in the pod's environment and mount namespace, streams stdin, stdout and
//! stderr, and reports its exit code; bad requests fail as the API server fails them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, PostParams};
use kube::Client;
use serde_json::json;
use stash_testkit::{ControllerSet, FakeApiServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

async fn tcp_client(server: &FakeApiServer) -> Client {
    let path = server
        .kubeconfig_path()
        .expect("TCP mode writes a kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

fn mount_namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A running pod whose container writes a marker into its emptyDir (mounted at `mnt`, a path
/// that does not exist on the host) and then waits; its env has a secret and a field ref.
async fn running_pod(client: &Client, name: &str, mnt: &Path) -> Api<Pod> {
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": format!("{name}-creds")}, "stringData": {"password": "s3cret"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mnt = mnt.to_string_lossy();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", format!("echo from-the-container > {mnt}/marker; exec sleep 600")],
                "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("{name}-creds"), "key": "password"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "volumeMounts": [{"name": "data", "mountPath": mnt}]
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let pod = pods.get(name).await.unwrap();
            if pod.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod runs");
    pods
}

/// A script that prints `file` once the container has written it (it starts writing as the
/// pod turns Running); without the pod's mounts it never appears.
fn wait_and_cat(file: &str) -> String {
    format!("for i in $(seq 100); do [ -f {file} ] && break; sleep 0.05; done; cat {file}")
}

struct Outcome {
    stdout: String,
    stderr: String,
    status: Option<Status>,
}

async fn exec(pods: &Api<Pod>, pod: &str, cmd: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let params = AttachParams::default().stdin(stdin.is_some());
    let mut proc = pods.exec(pod, cmd.to_vec(), &params).await.unwrap();
    if let (Some(data), Some(mut w)) = (stdin, proc.stdin()) {
        w.write_all(data).await.unwrap();
        // Shutting the writer down ends stdin (the v5 close message).
        w.shutdown().await.unwrap();
    }
    let mut out = proc.stdout().unwrap();
    let mut err = proc.stderr().unwrap();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let (a, b) = tokio::join!(
        out.read_to_string(&mut stdout),
        err.read_to_string(&mut stderr)
    );
    a.unwrap();
    b.unwrap();
    let status = proc.take_status().unwrap().await;
    proc.join().await.unwrap();
    Outcome {
        stdout,
        stderr,
        status,
    }
}

#[tokio::test]
async fn kube_exec_runs_in_the_pods_env_and_mounts_with_streams_and_exit_codes() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = tcp_client(&server).await;
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("data");
    let pods = running_pod(&client, "db", &mnt).await;

    let got = exec(
        &pods,
        "db",
        &[
            "sh",
            "-c",
            "echo pod=$POD_NAME password=$PASSWORD; echo oops >&2",
        ],
        None,
    )
    .await;
    assert_eq!(got.stdout, "pod=db password=s3cret\n");
    assert_eq!(got.stderr, "oops\n");
    let status = got.status.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    let got = exec(
        &pods,
        "db",
        &["sh", "-c", "tr a-z A-Z; exit 3"],
        Some(b"piped in\n"),
    )
    .await;
    assert_eq!(got.stdout, "PIPED IN\n");
    let status = got.status.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!(
        (cause.reason.as_deref(), cause.message.as_deref()),
        (Some("ExitCode"), Some("3"))
    );

    if mount_namespaces_work() {
        let marker = mnt.join("marker").to_string_lossy().into_owned();
        let got = exec(&pods, "db", &["sh", "-c", &wait_and_cat(&marker)], None).await;
        assert_eq!(got.stdout, "from-the-container\n", "{}", got.stderr);
        assert!(
            !mnt.join("marker").exists(),
            "the volume is only visible inside the pod"
        );
    } else {
        eprintln!("no mount namespaces here (needs root and unshare); volume check skipped");
    }

    // A command dies with its container.
    let params = AttachParams::default();
    let mut proc = pods.exec("db", vec!["sleep", "60"], &params).await.unwrap();
    let status = proc.take_status().unwrap();
    pods.delete("db", &Default::default()).await.unwrap();
    let status = tokio::time::timeout(WAIT, status).await.unwrap().unwrap();
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!(
        cause.message.as_deref(),
        Some("137"),
        "killed like the container"
    );
}

#[tokio::test]
async fn exec_of_a_missing_program_is_an_internal_error() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = tcp_client(&server).await;
    let base = tempfile::tempdir().unwrap();
    let pods = running_pod(&client, "db", &base.path().join("data")).await;
    let got = exec(&pods, "db", &["no-such-program"], None).await;
    let status = got.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
    assert!(status
        .message
        .unwrap_or_default()
        .contains("\"no-such-program\": executable file not found in $PATH"),);
}

#[tokio::test]
async fn exec_requests_fail_like_the_api_server() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = tcp_client(&server).await;
    let base = tempfile::tempdir().unwrap();
    let pods = running_pod(&client, "web", &base.path().join("data")).await;
    let api_error = |r: Result<kube::api::AttachedProcess, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("expected an API error, got {e}"),
        Ok(_) => panic!("expected an API error, got a stream"),
    };
    let missing = pods
        .exec("nope", vec!["true"], &AttachParams::default())
        .await;
    assert_eq!(api_error(missing), (404, "pods \"nope\" not found".into()));
    let wrong = pods
        .exec(
            "web",
            vec!["true"],
            &AttachParams::default().container("sidecar"),
        )
        .await;
    assert_eq!(
        api_error(wrong),
        (400, "container sidecar is not valid for pod web".into())
    );

    // A finished pod has no running container: the kubelet's answer arrives on the status
    // channel, as the API server's stream translator reports it.
    let done: Pod = serde_json::from_value(json!({
        "metadata": {"name": "done"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &done).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while pods
            .get("done")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .as_deref()
            != Some("Succeeded")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let got = exec(&pods, "done", &["true"], None).await;
    let status = got.status.unwrap();
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (
            Some("InternalError"),
            Some("Internal error occurred: unable to upgrade connection: container not found (\"main\")")
        )
    );

    // Without a kubelet nothing schedules the pod.
    let bare = FakeApiServer::builder()
        .tcp(0)
        .controllers(ControllerSet {
            kubelet: false,
            ..ControllerSet::all()
        })
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(tcp_client(&bare).await);
    let pending: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pending"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    let unscheduled = pods
        .exec("pending", vec!["true"], &AttachParams::default())
        .await;
    assert_eq!(
        api_error(unscheduled),
        (400, "pod pending does not have a host assigned".into())
    );
}

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn kubectl_exec_streams_env_stdin_and_exit_codes() {
    if !kubectl_available() {
        eprintln!("kubectl is not on PATH; skipping");
        return;
    }
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = tcp_client(&server).await;
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("data");
    running_pod(&client, "db", &mnt).await;
    let kubeconfig = server.kubeconfig_path().unwrap().to_owned();
    let cache = base.path().join("cache");
    let kubectl = |args: &[&str], stdin: &'static [u8]| {
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        async move {
            let mut child = cmd.spawn().unwrap();
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin).await.unwrap();
            drop(input);
            child.wait_with_output().await.unwrap()
        }
    };
    let out = kubectl(
        &[
            "exec",
            "db",
            "--",
            "sh",
            "-c",
            "echo $PASSWORD; echo to-stderr >&2; exit 4",
        ],
        b"",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cret\n", "{stderr}");
    assert!(stderr.starts_with("to-stderr\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 4"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(4));

    let out = kubectl(
        &["exec", "-i", "db", "--", "sh", "-c", "wc -l"],
        b"one\ntwo\n",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    if mount_namespaces_work() {
        let marker = mnt.join("marker").to_string_lossy().into_owned();
        let script = wait_and_cat(&marker);
        let out = kubectl(
            &["exec", "db", "-c", "main", "--", "sh", "-c", &script],
            b"",
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "from-the-container\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let out = kubectl(&["exec", "nope", "--", "true"], b"").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn v4_channel_framing_for_older_clients() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = tcp_client(&server).await;
    let base = tempfile::tempdir().unwrap();
    running_pod(&client, "db", &base.path().join("data")).await;
    let addr = server.addr().unwrap();
    let url = format!(
        "ws://{addr}/api/v1/namespaces/default/pods/db/exec?command=head&command=-n1&stdin=true&stdout=true&stderr=true"
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    ws.send(Message::binary(b"\x00first line\nsecond line\n".to_vec()))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Binary(data) = msg {
            frames.push(data.to_vec());
        }
    }
    assert_eq!(frames[0], vec![1u8], "an empty frame opens stdout");
    let stdout: Vec<u8> = frames
        .iter()
        .filter(|f| f[0] == 1)
        .flat_map(|f| f[1..].to_vec())
        .collect();
    assert_eq!(String::from_utf8_lossy(&stdout), "first line\n");
    let last = frames.last().unwrap();
    assert_eq!(last[0], 3, "the status comes last, on channel 3");
    let status: serde_json::Value = serde_json::from_slice(&last[1..]).unwrap();
    assert_eq!(status, json!({"metadata": {}, "status": "Success"}));
}
