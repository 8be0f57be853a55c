//! Services and the endpoints controllers: a Service with a selector gets `Endpoints` and an
//! `EndpointSlice` for the pods it selects (IP, readiness, ports resolved by name), which
//! follow the pods as they come and go.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use stash_testkit::{ControllerSet, FakeApiServer};

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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn service(name: &str, selector: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "db"}},
        "spec": {"selector": selector, "ports": [{"name": "mysql", "port": 3306, "targetPort": "mysql"}]}
    }))
    .unwrap()
}

fn db_pod(name: &str, command: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {"containers": [{
            "name": "mysql", "image": "busybox", "command": ["sh", "-c", command],
            "ports": [{"name": "mysql", "containerPort": 13306}]
        }]}
    }))
    .unwrap()
}

async fn slices_of(client: &Client, service: &str) -> Vec<EndpointSlice> {
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn a_service_gets_endpoints_and_slices_for_its_running_pods() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &db_pod("db-0", "exec sleep 600"))
        .await
        .unwrap();
    let other = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "busybox", "command": ["sleep", "600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &other).await.unwrap();
    let svc = services
        .create(&PostParams::default(), &service("db", json!({"app": "db"})))
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| ip.starts_with("10.")));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    let ep = eventually("endpoints with the running pod", || {
        let endpoints = endpoints.clone();
        async move {
            endpoints
                .get("db")
                .await
                .ok()
                .filter(|e| e.subsets.as_ref().is_some_and(|s| s[0].addresses.is_some()))
        }
    })
    .await;
    let subset = &ep.subsets.unwrap()[0];
    let addresses = subset.addresses.as_ref().unwrap();
    assert_eq!(addresses.len(), 1, "only the selected pod: {addresses:?}");
    assert_eq!(addresses[0].ip, "127.0.0.1");
    let target = addresses[0].target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("db-0"))
    );
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("mysql"), 13306));
    assert_eq!(
        ep.metadata.labels.unwrap().get("team").map(String::as_str),
        Some("db")
    );

    let slices = slices_of(&client, "db").await;
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Service", "db")
    );
    let eps = slice.endpoints.clone().unwrap_or_default();
    assert_eq!(eps.len(), 1);
    let endpoint = &eps[0];
    assert_eq!(endpoint.addresses, vec!["127.0.0.1".to_string()]);
    assert_eq!(endpoint.conditions.as_ref().unwrap().ready, Some(true));
    assert_eq!(
        endpoint.target_ref.as_ref().unwrap().name.as_deref(),
        Some("db-0")
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("mysql"), Some(13306))
    );

    // The pod goes away: the Service has no endpoints left.
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    eventually("empty endpoints", || {
        let endpoints = endpoints.clone();
        async move {
            endpoints
                .get("db")
                .await
                .ok()
                .filter(|e| e.subsets.is_none())
        }
    })
    .await;
    eventually("an empty slice", || {
        let client = client.clone();
        async move {
            let slices = slices_of(&client, "db").await;
            (slices.len() == 1 && slices[0].endpoints.as_ref().is_none_or(Vec::is_empty))
                .then_some(())
        }
    })
    .await;

    // The Service goes away: so do its Endpoints and (through the garbage collector) slices.
    services
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    eventually("endpoints and slices to go", || {
        let (endpoints, client) = (endpoints.clone(), client.clone());
        async move {
            (endpoints.get_opt("db").await.unwrap().is_none()
                && slices_of(&client, "db").await.is_empty())
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn readiness_and_termination_show_in_endpoints_and_slices() {
    // No kubelet: pod statuses are written by hand, as a kubelet would.
    let server = FakeApiServer::builder()
        .controllers(ControllerSet {
            kubelet: false,
            ..ControllerSet::all()
        })
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let created = services
        .create(&PostParams::default(), &service("db", json!({"app": "db"})))
        .await
        .unwrap();
    // An update that leaves the allocated cluster IP out keeps it.
    let mut again = service("db", json!({"app": "db"}));
    again.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = services
        .replace("db", &PostParams::default(), &again)
        .await
        .unwrap();
    assert_eq!(
        replaced.spec.unwrap().cluster_ip,
        created.spec.unwrap().cluster_ip
    );
    let portless: Service = serde_json::from_value(
        json!({"metadata": {"name": "bad"}, "spec": {"selector": {"app": "db"}}}),
    )
    .unwrap();
    match services.create(&PostParams::default(), &portless).await {
        Err(kube::Error::Api(s)) => assert_eq!(
            (s.code, s.message.as_str()),
            (
                422,
                "Service \"bad\" is invalid: spec.ports: Required value"
            )
        ),
        other => panic!("a Service without ports is invalid: {other:?}"),
    }
    for (name, ip, ready) in [
        ("ready", "10.0.0.1", "True"),
        ("starting", "10.0.0.2", "False"),
    ] {
        let mut pod = db_pod(name, "true");
        pod.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let status = json!({"status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": ready}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    let ep = eventually("both pods in the endpoints", || {
        let endpoints = endpoints.clone();
        async move {
            endpoints.get("db").await.ok().filter(|e| {
                e.subsets
                    .as_ref()
                    .is_some_and(|s| s[0].addresses.is_some() && s[0].not_ready_addresses.is_some())
            })
        }
    })
    .await;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
    assert_eq!(
        subset.not_ready_addresses.as_ref().unwrap()[0].ip,
        "10.0.0.2"
    );

    // A terminating pod leaves Endpoints but stays in its slice as terminating.
    pods.delete("ready", &DeleteParams::default())
        .await
        .unwrap();
    let slice = eventually("a terminating endpoint", || {
        let client = client.clone();
        async move {
            slices_of(&client, "db").await.into_iter().find(|s| {
                s.endpoints.iter().flatten().any(|e| {
                    e.conditions
                        .as_ref()
                        .is_some_and(|c| c.terminating == Some(true))
                })
            })
        }
    })
    .await;
    let mut conditions: Vec<(String, bool, bool, bool)> = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (
                e.addresses[0].clone(),
                c.ready.unwrap(),
                c.serving.unwrap(),
                c.terminating.unwrap(),
            )
        })
        .collect();
    conditions.sort();
    assert_eq!(
        conditions,
        vec![
            ("10.0.0.1".into(), false, true, true),
            ("10.0.0.2".into(), false, false, false)
        ]
    );
    let ep = endpoints.get("db").await.unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert!(subset.addresses.is_none(), "{subset:?}");
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 1);

    // Discovery lists EndpointSlices.
    let resources = client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .unwrap();
    assert!(resources
        .resources
        .iter()
        .any(|r| r.name == "endpointslices"));
}
