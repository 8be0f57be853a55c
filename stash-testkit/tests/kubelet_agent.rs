//! The kubelet as a standalone node agent (`stash-testkit kubelet`) against `stash-testkit
//! serve --controllers --no-kubelet`: it registers its Node, binds unassigned pods to itself
//! through `pods/binding`, runs them, reports their status, and stops deleted ones. Also the
//! fake server's `binding` subresource on its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use serde_json::json;
use stash_testkit::FakeApiServer;

const WAIT: Duration = Duration::from_secs(30);

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A child process killed when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn testkit(args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_stash-testkit"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("stash-testkit runs");
    Running(child)
}

/// Waits for the first line of output (the process says it is up).
fn first_line(run: &mut Running) -> String {
    let out = run.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("a line");
    line
}

async fn client_for(kubeconfig: &Path) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

#[tokio::test]
async fn the_node_agent_runs_pods_of_a_server_without_a_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let kc = kubeconfig.to_str().unwrap();
    let mut server = testkit(&["serve", "--kubeconfig", kc, "--controllers", "--no-kubelet"]);
    first_line(&mut server);
    let client = client_for(&kubeconfig).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example/hello:1", "args": ["from the agent"]}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    // Without a kubelet the Job's pod stays Pending and unassigned.
    let pending = eventually("the Job's pod", || {
        let pods = pods.clone();
        async move {
            pods.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        }
    })
    .await;
    assert_eq!(
        pending.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        None
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = pods
        .get(pending.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(phase(&still), Some("Pending"));

    let root = dir.path().join("node");
    let mut agent = testkit(&[
        "kubelet",
        "--kubeconfig",
        kc,
        "--node-name",
        "agent-node",
        "--root",
        root.to_str().unwrap(),
        "--exec",
        "example/hello=echo hello",
    ]);
    assert!(first_line(&mut agent).contains("agent-node"));
    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually("the Node to register", || {
        let nodes = nodes.clone();
        async move { nodes.get_opt("agent-node").await.ok().flatten() }
    })
    .await;
    let ready = node.status.unwrap().conditions.unwrap();
    assert!(ready
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));

    let name = pending.metadata.name.clone().unwrap();
    let done = eventually("the pod to finish", || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            pods.get(&name)
                .await
                .ok()
                .filter(|p| matches!(phase(p), Some("Succeeded" | "Failed")))
        }
    })
    .await;
    assert_eq!(phase(&done), Some("Succeeded"));
    assert_eq!(
        done.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("agent-node")
    );
    let status = done.status.unwrap();
    let scheduled = status.conditions.unwrap_or_default();
    assert!(scheduled
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let log = std::fs::read_to_string(root.join("logs").join(format!("default_{name}_main.log")))
        .unwrap();
    assert_eq!(log, "hello from the agent\n");
    eventually("the Job to complete", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("hello").await.ok()?;
            (j.status?.succeeded == Some(1)).then_some(())
        }
    })
    .await;

    // A deleted running pod is stopped and then removed.
    let sleeper: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox",
            "command": ["sleep", "60"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &sleeper).await.unwrap();
    eventually("the sleeper to run", || {
        let pods = pods.clone();
        async move {
            pods.get("sleeper")
                .await
                .ok()
                .filter(|p| phase(p) == Some("Running"))
        }
    })
    .await;
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the sleeper to go", || {
        let pods = pods.clone();
        async move { pods.get_opt("sleeper").await.ok()?.is_none().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let server = FakeApiServer::start().await.unwrap();
    let client = Client::new(server.router(), "default");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let bind = |node: &str| {
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        http::Request::post("/api/v1/namespaces/default/pods/p/binding")
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap()
    };
    let ok: serde_json::Value = client.request(bind("n1")).await.unwrap();
    assert_eq!(ok["status"], "Success");
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    let conds = bound.status.unwrap().conditions.unwrap();
    assert!(conds
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let again = client
        .request::<serde_json::Value>(bind("n2"))
        .await
        .unwrap_err();
    match again {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("already assigned to node \"n1\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409, got {other}"),
    }
}
