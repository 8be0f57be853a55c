//! The controller-manager and kubelet in process: CronJob on the virtual clock, Job pods run
//! as real processes with env from secrets and field refs, garbage collection modes, and
//! namespace deletion.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::Client;
use serde_json::json;
use stash_testkit::controllers::kubelet::sandbox::Isolation;
use stash_testkit::FakeApiServer;

const WAIT: Duration = Duration::from_secs(30);

async fn setup() -> (FakeApiServer, Client) {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    (server, client)
}

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
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn job_condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

#[tokio::test]
async fn cronjob_fires_on_clock_advance_and_its_pod_runs_a_real_process() {
    let (server, client) = setup().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let cronjobs: Api<CronJob> = Api::default_namespaced(client.clone());
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "backup"},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "prepare", "image": "busybox", "command": ["sh", "-c", "echo init-ran"]}],
                "containers": [{
                    "name": "main", "image": "busybox",
                    "command": ["sh", "-c", "echo pod=$POD_NAME password=$PASSWORD"],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                    ]
                }]
            }}}}
        }
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cj).await.unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    server.settle().await;
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing before the clock moves"
    );

    server.advance(Duration::from_secs(60)).await;
    let listed = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "exactly one Job after one minute");
    let job = &listed[0];
    let name = job.metadata.name.clone().unwrap();
    let scheduled = &job.metadata.annotations.as_ref().unwrap()
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    let t: jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(name, format!("backup-{}", t.as_second() / 60));

    let done = eventually("the Job to complete", || {
        let jobs = jobs.clone();
        let name = name.clone();
        async move {
            jobs.get(&name)
                .await
                .ok()
                .filter(|j| job_condition(j, "Complete"))
        }
    })
    .await;
    assert_eq!(done.status.as_ref().unwrap().succeeded, Some(1));

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap()
        .items
        .remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        server.pod_logs("default", &pod_name, "prepare").as_deref(),
        Some("init-ran\n")
    );
    assert_eq!(
        server.pod_logs("default", &pod_name, "main"),
        Some(format!("pod={pod_name} password=s3cret\n"))
    );
    assert_eq!(
        pods.logs(&pod_name, &Default::default()).await.unwrap(),
        format!("pod={pod_name} password=s3cret\n")
    );

    // Events follow the status write in the same controller pass; let that pass finish.
    server.settle().await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client.clone());
    let reasons_for = |name: String| {
        let events = events.clone();
        async move {
            let selector = format!("involvedObject.name={name}");
            let listed = events
                .list(&ListParams::default().fields(&selector))
                .await
                .unwrap()
                .items;
            let mut reasons: Vec<String> = listed.into_iter().filter_map(|e| e.reason).collect();
            reasons.sort();
            reasons
        }
    };
    assert_eq!(
        reasons_for(name.clone()).await,
        vec!["Completed", "SuccessfulCreate"]
    );
    assert_eq!(reasons_for("backup".into()).await, vec!["SuccessfulCreate"]);
    assert_eq!(
        reasons_for(pod_name.clone()).await,
        vec!["Scheduled", "Started"]
    );

    let cj = cronjobs.get("backup").await.unwrap();
    assert_eq!(cj.status.unwrap().last_schedule_time.map(|t| t.0), Some(t));
}

#[tokio::test]
async fn failing_pods_fail_the_job_after_the_backoff_limit() {
    let (server, client) = setup().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    eventually("the first pod to fail", || {
        let jobs = jobs.clone();
        async move {
            jobs.get("bad")
                .await
                .ok()
                .filter(|j| j.status.as_ref().and_then(|s| s.failed) == Some(1))
        }
    })
    .await;
    let first = pods
        .list(&ListParams::default().labels("job-name=bad"))
        .await
        .unwrap()
        .items;
    let exit = first[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .exit_code;
    assert_eq!(exit, 3);
    // The retry waits for the back-off on the virtual clock.
    server.settle().await;
    assert_eq!(
        pods.list(&ListParams::default().labels("job-name=bad"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    server.advance(Duration::from_secs(10)).await;
    let failed = eventually("the Job to fail", || {
        let jobs = jobs.clone();
        async move {
            jobs.get("bad")
                .await
                .ok()
                .filter(|j| job_condition(j, "Failed"))
        }
    })
    .await;
    assert_eq!(failed.status.unwrap().failed, Some(2));
}

async fn owned_configmap(client: &Client, owner: &ConfigMap, name: &str) {
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let child: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
        "blockOwnerDeletion": true
    }]}}))
    .unwrap();
    cms.create(&PostParams::default(), &child).await.unwrap();
}

#[tokio::test]
async fn garbage_collector_background_foreground_and_orphan() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (owner, policy) in [
        ("bg", PropagationPolicy::Background),
        ("fg", PropagationPolicy::Foreground),
        ("or", PropagationPolicy::Orphan),
    ] {
        let o: ConfigMap = serde_json::from_value(json!({"metadata": {"name": owner}})).unwrap();
        let o = cms.create(&PostParams::default(), &o).await.unwrap();
        owned_configmap(&client, &o, &format!("{owner}-child")).await;
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        cms.delete(owner, &dp).await.unwrap();
    }
    server.settle().await;
    let exists = |name: &'static str| {
        let cms = cms.clone();
        async move { cms.get_opt(name).await.unwrap() }
    };
    eventually("owners to go", || async {
        (exists("bg").await.is_none()
            && exists("fg").await.is_none()
            && exists("or").await.is_none())
        .then_some(())
    })
    .await;
    assert!(
        exists("bg-child").await.is_none(),
        "background deletes dependents"
    );
    assert!(
        exists("fg-child").await.is_none(),
        "foreground deletes dependents first"
    );
    let orphan = exists("or-child").await.expect("orphan keeps dependents");
    assert!(orphan
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test]
async fn deleting_a_job_without_policy_orphans_its_pods() {
    let (server, client) = setup().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "keep"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 0"]}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually("the Job to complete", || {
        let jobs = jobs.clone();
        async move {
            jobs.get("keep")
                .await
                .ok()
                .filter(|j| job_condition(j, "Complete"))
        }
    })
    .await;
    jobs.delete("keep", &DeleteParams::default()).await.unwrap();
    eventually("the Job to go", || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("keep").await.unwrap().is_none().then_some(()) }
    })
    .await;
    server.settle().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let left = pods
        .list(&ListParams::default().labels("job-name=keep"))
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 1, "the pod is orphaned, not deleted");
    assert!(left[0]
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test]
async fn namespace_deletion_removes_its_content() {
    let (server, client) = setup().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    server.settle().await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "scratch");
    assert!(
        accounts.get_opt("default").await.unwrap().is_some(),
        "new namespaces get a default service account"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let pending = nss
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        pending.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    server.settle().await;
    eventually("the namespace to go", || {
        let nss = nss.clone();
        async move {
            nss.get_opt("scratch")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert!(cms.get_opt("x").await.unwrap().is_none());
    let missing = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(matches!(missing, kube::Error::Api(s) if s.code == 404));
}

fn mount_namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn pods_see_their_own_volumes_at_their_mount_paths() {
    if !mount_namespaces_work() {
        eprintln!("no mount namespaces here (needs root and unshare); skipping");
        return;
    }
    let (server, client) = setup().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "files"}, "stringData": {"token": "abc"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let base = tempfile::tempdir().unwrap();
    let scratch = base.path().join("scratch").to_string_lossy().into_owned();
    let creds = base.path().join("creds").to_string_lossy().into_owned();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["first", "second"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "creds", "secret": {"secretName": "files"}}],
                "containers": [{
                    "name": "main", "image": "busybox",
                    "command": ["sh", "-c", format!("echo $HOSTNAME > {scratch}/owner; sleep 0.3; cat {scratch}/owner {creds}/token; echo; ls {scratch}")],
                    "volumeMounts": [{"name": "scratch", "mountPath": scratch}, {"name": "creds", "mountPath": creds}]
                }]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    for name in ["first", "second"] {
        let pod = eventually("the pod to finish", || {
            let pods = pods.clone();
            async move {
                pods.get(name).await.ok().filter(|p| {
                    matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
            }
        })
        .await;
        let logs = server.pod_logs("default", name, "main").unwrap_or_default();
        assert_eq!(
            pod.status.unwrap().phase.as_deref(),
            Some("Succeeded"),
            "{logs}"
        );
        assert_eq!(
            logs,
            format!("{name}\nabc\nowner\n"),
            "each pod sees only its own emptyDir"
        );
    }
    assert!(
        !std::path::Path::new(&scratch).join("owner").exists(),
        "nothing leaks to the host path"
    );
}

/// Like a container's own root filesystem: what a container writes outside its volumes is
/// gone when it ends and never reaches the host; emptyDir and hostPath writes stay.
#[tokio::test]
async fn writes_outside_volumes_vanish_with_the_container() {
    if Isolation::probe() != Isolation::CopyOnWriteRoot {
        eprintln!("no copy-on-write roots here (needs root, unshare and overlayfs); skipping");
        return;
    }
    let (server, client) = setup().await;
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    let host = base.path().join("host");
    let (outside, host) = (outside.display().to_string(), host.display().to_string());
    // A name of its own in the host's /tmp, outside every volume.
    let tmp_file = format!(
        "/tmp/x-{}",
        base.path().file_name().unwrap().to_string_lossy()
    );
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "host", "hostPath": {"path": host}}],
            "initContainers": [{
                "name": "init", "image": "busybox",
                "command": ["sh", "-c", format!("mkdir -p {outside} && echo init > {outside}/x && echo shared > /scratch/seen")],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
            }],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", format!(
                    "test ! -e {outside}/x && echo fresh; mkdir -p {outside} && echo main > {outside}/x && cat {outside}/x \
                     && echo tmp > {tmp_file} && cat /scratch/seen && echo kept > /host/kept")],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}, {"name": "host", "mountPath": "/host"}]
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = eventually("the pod to finish", || {
        let pods = pods.clone();
        async move {
            pods.get("writer").await.ok().filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
        }
    })
    .await;
    let logs = server
        .pod_logs("default", "writer", "main")
        .unwrap_or_default();
    assert_eq!(
        done.status.unwrap().phase.as_deref(),
        Some("Succeeded"),
        "{logs} {:?}",
        server.pod_logs("default", "writer", "init")
    );
    assert_eq!(
        logs, "fresh\nmain\nshared\n",
        "each container has its own root; the emptyDir is shared"
    );
    assert!(
        !std::path::Path::new(&outside).exists(),
        "writes outside volumes do not reach the host"
    );
    assert!(!std::path::Path::new(&tmp_file).exists());
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&host).join("kept")).unwrap(),
        "kept\n",
        "hostPath writes persist"
    );
}

/// Projected volumes as the API server adds them for service accounts (`kube-api-access-*`):
/// secret and configMap items at their paths, downward API fields.
#[tokio::test]
async fn projected_volumes_hold_their_items() {
    if !mount_namespaces_work() {
        eprintln!("no mount namespaces here (needs root and unshare); skipping");
        return;
    }
    let (server, client) = setup().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"token": "abc", "other": "x"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"ca.crt": "CERT"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "projected"},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "api", "projected": {"sources": [
                {"secret": {"name": "s", "items": [{"key": "token", "path": "nested/token"}]}},
                {"configMap": {"name": "c", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "sa-token", "expirationSeconds": 3607}},
                {"configMap": {"name": "absent", "items": [{"key": "service-ca.crt", "path": "service-ca.crt"}]}},
            ]}}],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "cd /var/run/api && cat nested/token ca.crt namespace && ls"],
                "volumeMounts": [{"name": "api", "mountPath": "/var/run/api"}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod to finish", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("projected").await.ok()?;
            matches!(p.status?.phase.as_deref(), Some("Succeeded" | "Failed")).then_some(())
        }
    })
    .await;
    let logs = server
        .pod_logs("default", "projected", "main")
        .unwrap_or_default();
    assert_eq!(logs, "abcCERTdefaultca.crt\nnamespace\nnested\n");
    // The mount path is resolved inside the container's root (on Debian /var/run -> /run).
    assert!(!std::path::Path::new("/var/run/api").exists());
}

/// While an init container runs the pod is Pending with that container running, as the real
/// kubelet reports it (clients that wait for "Running" must look at container states).
#[tokio::test]
async fn a_running_init_container_shows_in_the_pod_status() {
    let (_server, client) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("go");
    let shared = dir.path().display().to_string();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "init-wait"},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "shared", "hostPath": {"path": shared}}],
            "initContainers": [{"name": "wait", "image": "busybox",
                "command": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())],
                "volumeMounts": [{"name": "shared", "mountPath": shared}]}],
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let initializing = eventually("the init container to run", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("init-wait").await.ok()?;
            let st = p.status.clone()?;
            let running = st.init_container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .running
                .is_some();
            running.then_some(st)
        }
    })
    .await;
    assert_eq!(initializing.phase.as_deref(), Some("Pending"));
    let conds = initializing.conditions.unwrap();
    assert!(conds
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "False"));
    let main = &initializing.container_statuses.unwrap()[0];
    assert_eq!(
        main.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    std::fs::write(&gate, "").unwrap();
    eventually("the pod to succeed", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("init-wait").await.ok()?;
            (p.status?.phase.as_deref() == Some("Succeeded")).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn pods_reach_the_server_through_their_kubeconfig() {
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !kubectl {
        eprintln!("kubectl is not on PATH; skipping");
        return;
    }
    let (server, client) = setup().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "caller"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "bitnami/kubectl",
            "command": ["sh", "-c", "kubectl get pod $HOSTNAME -o jsonpath={.status.phase}"]
        }]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = eventually("the pod to finish", || {
        let pods = pods.clone();
        async move {
            pods.get("caller").await.ok().filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
        }
    })
    .await;
    let logs = server
        .pod_logs("default", "caller", "main")
        .unwrap_or_default();
    assert_eq!(
        done.status.unwrap().phase.as_deref(),
        Some("Succeeded"),
        "{logs}"
    );
    assert_eq!(
        logs, "Running",
        "the pod saw itself running through the API"
    );
}

#[tokio::test]
async fn dropping_the_server_kills_running_pods() {
    let (server, client) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let host_file = dir.path().join("hostname");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // The pid and hostname the container sees reach the host through a hostPath volume.
    let shared = dir.path().display().to_string();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "shared", "hostPath": {"path": shared}}],
            "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", format!(
                "cat /proc/sys/kernel/hostname > {}; echo $$ > {}; exec sleep 60",
                host_file.display(),
                pid_file.display()
            )],
            "volumeMounts": [{"name": "shared", "mountPath": shared}]
        }]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let inside: u32 = eventually("the pod to write its pid", || {
        let pid_file = pid_file.clone();
        async move {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }
    })
    .await;
    let pid = server
        .container_pid("default", "sleeper", "main")
        .expect("the container runs");
    if Isolation::probe().probe_pod_namespaces() {
        // As on a node: the pod's name as hostname, and a PID namespace of its own.
        let host = std::fs::read_to_string(&host_file).unwrap();
        assert_eq!(host.trim(), "sleeper");
        assert_ne!(inside, pid, "the container sees the host's PIDs");
        assert!(inside < 100, "pid {inside} in the container's namespace");
    } else {
        assert_eq!(inside, pid);
    }
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(server);
    eventually("the process to be killed", || {
        let gone = !proc_dir.exists()
            || std::fs::read_to_string(proc_dir.join("stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
        async move { gone.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn following_logs_streams_until_the_pod_finishes() {
    use futures_util::AsyncReadExt;
    let (_server, client) = setup().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "talker"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", "echo first; sleep 0.5; echo second"]
        }]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod to run", || {
        let pods = pods.clone();
        async move {
            pods.get("talker")
                .await
                .ok()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        }
    })
    .await;
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let mut stream = pods.log_stream("talker", &params).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "first\nsecond\n");
}

fn cronjob(name: &str, policy: &str, command: &str, extra: serde_json::Value) -> CronJob {
    let mut spec = json!({
        "schedule": "*/1 * * * *",
        "concurrencyPolicy": policy,
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}]}}}}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn jobs_of(jobs: &Api<Job>, cronjob: &str) -> Vec<Job> {
    let mut all: Vec<Job> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.name == cronjob))
        })
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    all.sort_by_key(|j| j.metadata.name.clone());
    all
}

#[tokio::test]
async fn cronjob_concurrency_suspend_and_history() {
    let (server, client) = setup().await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(client.clone());
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob("forbid", "Forbid", "sleep 30", json!({})),
        )
        .await
        .unwrap();
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob("replace", "Replace", "sleep 30", json!({})),
        )
        .await
        .unwrap();
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob(
                "hist",
                "Allow",
                "true",
                json!({"successfulJobsHistoryLimit": 1}),
            ),
        )
        .await
        .unwrap();

    server.advance(Duration::from_secs(60)).await;
    let first_replace = jobs_of(&jobs, "replace").await;
    assert_eq!(jobs_of(&jobs, "forbid").await.len(), 1);
    assert_eq!(first_replace.len(), 1);
    let hist_first = jobs_of(&jobs, "hist").await;
    assert_eq!(hist_first.len(), 1);
    let first_hist_name = hist_first[0].metadata.name.clone().unwrap();
    eventually("the first history job to complete", || {
        let jobs = jobs.clone();
        let name = first_hist_name.clone();
        async move {
            jobs.get(&name)
                .await
                .ok()
                .filter(|j| job_condition(j, "Complete"))
        }
    })
    .await;

    server.advance(Duration::from_secs(60)).await;
    assert_eq!(
        jobs_of(&jobs, "forbid").await.len(),
        1,
        "Forbid skips while a Job runs"
    );
    let replaced = jobs_of(&jobs, "replace").await;
    assert_eq!(replaced.len(), 1, "Replace deletes the running Job");
    assert_ne!(replaced[0].metadata.name, first_replace[0].metadata.name);
    let second_hist = eventually("the second history job to complete", || {
        let jobs = jobs.clone();
        let first_hist_name = first_hist_name.clone();
        async move {
            let all = jobs_of(&jobs, "hist").await;
            all.iter()
                .find(|j| {
                    j.metadata.name.as_deref() != Some(first_hist_name.as_str())
                        && job_condition(j, "Complete")
                })
                .cloned()
        }
    })
    .await;
    server.settle().await;
    let kept: Vec<String> = jobs_of(&jobs, "hist")
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(
        kept,
        vec![second_hist.metadata.name.unwrap()],
        "only the newest successful Job is kept"
    );

    let suspend = json!({"spec": {"suspend": true}});
    cronjobs
        .patch(
            "hist",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&suspend),
        )
        .await
        .unwrap();
    server.advance(Duration::from_secs(60)).await;
    assert_eq!(
        jobs_of(&jobs, "hist").await.len(),
        1,
        "a suspended CronJob creates nothing"
    );
}

#[tokio::test]
async fn finished_jobs_expire_after_their_ttl_on_the_virtual_clock() {
    let (server, client) = setup().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "short-lived"},
        "spec": {"ttlSecondsAfterFinished": 30, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually("the Job to complete", || {
        let jobs = jobs.clone();
        async move {
            jobs.get("short-lived")
                .await
                .ok()
                .filter(|j| job_condition(j, "Complete"))
        }
    })
    .await;
    server.advance(Duration::from_secs(29)).await;
    assert!(
        jobs.get_opt("short-lived").await.unwrap().is_some(),
        "kept until the TTL has passed"
    );
    server.advance(Duration::from_secs(1)).await;
    eventually("the Job and its pod to be deleted", || {
        let jobs = jobs.clone();
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        async move {
            let job_gone = jobs.get_opt("short-lived").await.unwrap().is_none();
            let pods_gone = pods
                .list(&ListParams::default().labels("job-name=short-lived"))
                .await
                .unwrap()
                .items
                .is_empty();
            (job_gone && pods_gone).then_some(())
        }
    })
    .await;
}

/// At rest the periodic pass finds the store and clock where the last quiet full pass left
/// them and skips the controllers (a full pass visits every owned object: 10,000 CronJobs in
/// the control-plane benchmark, every second); a write brings the passes back.
#[tokio::test]
async fn periodic_passes_at_rest_visit_nothing() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let o: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let o = cms.create(&PostParams::default(), &o).await.unwrap();
    owned_configmap(&client, &o, "child").await;
    server.settle().await;
    let store = &server.api().store;
    // Two periodic ticks: the first may still run in full (the settle pass wrote nothing,
    // but the kubelet may have registered its node meanwhile), the next ones are skipped.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = store.visited();
    // A leader-lease renewal is a write no controller reads: the passes stay skipped.
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"}})).unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        store.visited(),
        before,
        "no pass examined the store at rest"
    );

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("the dependent to be collected", || async {
        cms.get_opt("child").await.unwrap().is_none().then_some(())
    })
    .await;
}
