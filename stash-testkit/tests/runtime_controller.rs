//! A kube-runtime `Controller` with `.owns()` against the in-process server: it applies an
//! owned child per parent with server-side apply, recreates the child when it is deleted, and
//! the garbage collector removes the child when the parent goes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use stash_testkit::FakeApiServer;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(parent: Arc<ConfigMap>, client: Arc<Client>) -> Result<Action, ReconcileError> {
    let secrets: Api<Secret> =
        Api::namespaced((*client).clone(), &parent.namespace().unwrap_or_default());
    let owner = parent
        .controller_owner_ref(&())
        .expect("a stored ConfigMap has a name and uid");
    let child = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{}-child", parent.name_any()), "ownerReferences": [owner]},
        "stringData": {"from": parent.name_any()}
    });
    secrets
        .patch(
            &format!("{}-child", parent.name_any()),
            &PatchParams::apply("test-controller").force(),
            &Patch::Apply(&child),
        )
        .await?;
    Ok(Action::await_change())
}

async fn eventually_some<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(Duration::from_secs(20), async {
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

#[tokio::test]
async fn controller_owns_children_and_gc_collects_them() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    let parents: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let controller = Controller::new(
        parents.clone(),
        watcher::Config::default().labels("role=parent"),
    )
    .owns(secrets.clone(), watcher::Config::default())
    .run(
        reconcile,
        |_, _, _| Action::requeue(Duration::from_secs(1)),
        Arc::new(client.clone()),
    )
    .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let parent: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": {"role": "parent"}}}))
            .unwrap();
    parents
        .create(&PostParams::default(), &parent)
        .await
        .unwrap();
    let child = eventually_some("the child", || {
        let secrets = secrets.clone();
        async move { secrets.get_opt("p-child").await.unwrap() }
    })
    .await;
    assert_eq!(child.owner_references()[0].name, "p");
    let first_uid = child.uid().unwrap();

    secrets
        .delete("p-child", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually_some("the child to be recreated", || {
        let secrets = secrets.clone();
        let first_uid = first_uid.clone();
        async move {
            secrets
                .get_opt("p-child")
                .await
                .unwrap()
                .filter(|s| s.uid().as_deref() != Some(first_uid.as_str()))
        }
    })
    .await;
    assert_eq!(
        recreated.metadata.managed_fields.unwrap()[0]
            .manager
            .as_deref(),
        Some("test-controller")
    );

    task.abort();
    parents
        .delete("p", &DeleteParams::background())
        .await
        .unwrap();
    eventually_some("the garbage collector to remove the child", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("p-child")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
}
