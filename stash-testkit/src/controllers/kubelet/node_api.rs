//! The kubelet's view of the API server: the few REST calls a node agent makes, through a
//! `kube::Client`, so that the same kubelet runs in process (the client speaks to the fake
//! server's router) and standalone against any API server.

use http::{Method, Request};
use serde_json::{json, Value};

/// REST calls of the node agent. Objects stay JSON values, as the kubelet reads them.
#[derive(Clone)]
pub struct NodeApi {
    client: kube::Client,
}

/// A failed call, with the server's status code when there was one.
pub type ApiCallResult<T> = Result<T, kube::Error>;

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{}/pods/{}", encode(ns), encode(name))
}

impl NodeApi {
    /// Talks through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> ApiCallResult<Value> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        let req = req.body(bytes).map_err(kube::Error::HttpError)?;
        self.client.request::<Value>(req).await
    }

    /// Every pod in the cluster (the kubelet picks its own and the unbound ones).
    pub async fn list_pods(&self) -> ApiCallResult<Vec<Value>> {
        let list = self.call(Method::GET, "/api/v1/pods", "", None).await?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// A core/v1 object in `ns` (`secrets`, `configmaps`, ...), `None` when absent.
    pub async fn get(&self, plural: &str, ns: &str, name: &str) -> ApiCallResult<Option<Value>> {
        let path = format!(
            "/api/v1/namespaces/{}/{plural}/{}",
            encode(ns),
            encode(name)
        );
        match self.call(Method::GET, &path, "", None).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Assigns the pod to `node` through the `binding` subresource, as a scheduler does.
    /// `Ok(false)` when another binding won.
    pub async fn bind(&self, ns: &str, name: &str, node: &str) -> ApiCallResult<bool> {
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let path = format!("{}/binding", pod_path(ns, name));
        match self
            .call(Method::POST, &path, "application/json", Some(&binding))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A token for the pod's ServiceAccount from the TokenRequest API; `None` when the server
    /// has no such API or the account does not exist.
    pub async fn request_token(
        &self,
        ns: &str,
        account: &str,
        audience: Option<&str>,
        seconds: i64,
    ) -> ApiCallResult<Option<String>> {
        let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audience.map(|a| vec![a]).unwrap_or_default(), "expirationSeconds": seconds}});
        let path = format!(
            "/api/v1/namespaces/{}/serviceaccounts/{}/token",
            encode(ns),
            encode(account)
        );
        match self
            .call(Method::POST, &path, "application/json", Some(&request))
            .await
        {
            Ok(v) => Ok(v["status"]["token"].as_str().map(String::from)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Merges `status` into the pod's status (JSON merge patch: lists are replaced whole).
    pub async fn patch_pod_status(
        &self,
        ns: &str,
        name: &str,
        status: &Value,
    ) -> ApiCallResult<Value> {
        self.patch_status("pods", ns, name, status).await
    }

    /// Merges `status` into the status of a core/v1 object (`pods`, `persistentvolumeclaims`).
    pub async fn patch_status(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        status: &Value,
    ) -> ApiCallResult<Value> {
        let path = format!(
            "/api/v1/namespaces/{}/{plural}/{}/status?fieldManager=kubelet",
            encode(ns),
            encode(name)
        );
        self.call(
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&json!({"status": status})),
        )
        .await
    }

    /// Deletes the pod at once: its containers are gone.
    pub async fn delete_pod_now(&self, ns: &str, name: &str, uid: &str) -> ApiCallResult<()> {
        let opts = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid}});
        match self
            .call(
                Method::DELETE,
                &pod_path(ns, name),
                "application/json",
                Some(&opts),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the Node (if missing) and sets its status Ready.
    pub async fn register_node(&self, node: &str, now: &str) -> ApiCallResult<()> {
        let obj = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {
            "kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}});
        match self
            .call(
                Method::POST,
                "/api/v1/nodes?fieldManager=kubelet",
                "application/json",
                Some(&obj),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
        }});
        let path = format!("/api/v1/nodes/{}/status?fieldManager=kubelet", encode(node));
        self.call(
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&status),
        )
        .await?;
        Ok(())
    }

    /// Records a Normal core/v1 Event about `involved`, as `kubectl describe` shows them.
    pub async fn record_event(
        &self,
        involved: &Value,
        reason: &str,
        message: &str,
        component: &str,
        now: &str,
    ) {
        self.record_event_of_type(involved, "Normal", reason, message, component, now)
            .await;
    }

    /// Records a core/v1 Event of `type_` (`Normal` or `Warning`) about `involved`.
    pub async fn record_event_of_type(
        &self,
        involved: &Value,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
        now: &str,
    ) {
        let meta = &involved["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("default");
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{}.", meta["name"].as_str().unwrap_or("object")), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": ns,
                               "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let path = format!(
            "/api/v1/namespaces/{}/events?fieldManager={component}",
            encode(ns)
        );
        // Events are best effort, as in the real kubelet.
        let _ = self
            .call(Method::POST, &path, "application/json", Some(&event))
            .await;
    }
}
