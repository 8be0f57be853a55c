//! The HTTP front end: an axum router that speaks the Kubernetes REST API over the
//! [`Apiserver`](crate::apiserver::Apiserver), plus the `/testkit/v1` control endpoints.

mod binding;
mod control;
pub mod discovery;
mod exec;
mod logs;
pub mod openapi;
pub mod path;
pub mod protobuf;
pub mod requests;
pub mod table;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::apiserver::{
    present, Apiserver, DeleteOptions, DeleteOutcome, FieldValidation, ListOptions, PatchKind,
    Shape, WriteOptions,
};
use crate::controllers::ControllerManager;
use crate::faults::{FaultAction, Faults};
use crate::registry::ResourceInfo;
use crate::status::{success_status, ApiError, ApiResult};
use path::{ApiPath, ResourcePath};

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct HttpState {
    /// The server core.
    pub api: Apiserver,
    /// Fault rules.
    pub faults: Faults,
    /// The controller-manager, if running (clock advances wait for it to settle).
    pub controllers: Option<ControllerManager>,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Address reported in `/api` discovery.
    pub server_address: String,
    /// Requests served, by client and verb (`GET /testkit/v1/requests`).
    pub requests: requests::RequestCounter,
}

/// Builds the router. It can be served on TCP or handed to `kube::Client::new` directly.
pub fn router(state: HttpState) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(state))
}

const BODY_LIMIT: usize = 64 * 1024 * 1024;
const OPENAPI_V2_PROTO: &[u8] = &[0x0a, 0x03, b'2', b'.', b'0'];

fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON body already serialized (stored objects are written straight to bytes).
fn json_bytes_response(code: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status());
    if let Some(secs) = e.details.retry_after {
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) =
            header::HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\"")))
        {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    // An exec upgrades the connection; it must keep the request whole.
    if let Some(rp) = exec::exec_path(req.uri().path()) {
        return exec::serve(&state, rp, req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "unable to read request body: {e}"
            )))
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let protobuf = content_type.contains("protobuf");
    let decoded = if protobuf && parts.method == Method::POST {
        protobuf::decode(&bytes)
    } else {
        None
    };
    let bytes = match decoded {
        Some(json) => bytes::Bytes::from(json.to_string()),
        None if !bytes.is_empty() && (protobuf || content_type.contains("cbor")) => {
            return error_response(&ApiError::unsupported_media_type(
                content_type,
                &[
                    "application/json",
                    "application/yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/strategic-merge-patch+json",
                ],
            ))
        }
        None => bytes,
    };
    let query = query_map(parts.uri.query());
    let path = parts.uri.path().to_string();
    if !path.starts_with("/testkit/") {
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let (resource, collection) = match path::parse(&path) {
            Some(ApiPath::Resource(r)) => (r.resource, r.name.is_none()),
            _ => (String::new(), false),
        };
        let verb = requests::verb(&parts.method, &parts.headers, watch, collection);
        state.requests.record(&parts.headers, verb, &resource);
    }
    match route(&state, &parts.method, &path, &query, &parts.headers, &bytes).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn route(
    state: &HttpState,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let registry = &state.api.registry;
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match (method, trimmed) {
        (&Method::GET, "/version") => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-stash-testkit", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
                    "compiler": "gc", "platform": "linux/amd64",
                }),
            ))
        }
        (&Method::GET, "/healthz" | "/livez" | "/readyz") => {
            let mut resp = Response::new(Body::from("ok"));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain"),
            );
            return Ok(resp);
        }
        (&Method::GET, "/openapi/v2") => {
            let mut resp = Response::new(Body::from(OPENAPI_V2_PROTO));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                ),
            );
            return Ok(resp);
        }
        (&Method::GET, "/openapi/v3") => {
            return Ok(json_response(StatusCode::OK, &openapi::index(registry)))
        }
        (&Method::GET, p) if p.starts_with("/openapi/v3/apis/") => {
            let gv = &p["/openapi/v3/apis/".len()..];
            let doc = gv
                .split_once('/')
                .and_then(|(g, v)| openapi::group_version(registry, g, v))
                .ok_or_else(ApiError::no_route)?;
            return Ok(json_response(StatusCode::OK, &doc));
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/testkit/v1/") {
        return control::testkit(state, method, rest, query, body).await;
    }
    let Some(api_path) = path::parse(path) else {
        return Err(ApiError::no_route());
    };
    if *method != Method::GET && !matches!(api_path, ApiPath::Resource(_)) {
        return Err(ApiError::method_not_supported(method.as_str()));
    }
    let wants_aggregated = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').next().is_some_and(|first| {
                first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2")
            })
        });
    if wants_aggregated && matches!(api_path, ApiPath::CoreVersions | ApiPath::Groups) {
        let doc = discovery::aggregated(registry, matches!(api_path, ApiPath::CoreVersions));
        let mut resp = json_response(StatusCode::OK, &doc);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
        );
        return Ok(resp);
    }
    match api_path {
        ApiPath::CoreVersions => Ok(json_response(
            StatusCode::OK,
            &discovery::core_versions(&state.server_address),
        )),
        ApiPath::Groups => Ok(json_response(
            StatusCode::OK,
            &discovery::group_list(registry),
        )),
        ApiPath::Group(g) => discovery::group(registry, &g)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route),
        ApiPath::Resources { group, version } => {
            discovery::resource_list(registry, &group, &version)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::no_route)
        }
        ApiPath::Resource(rp) => resource(state, method, rp, query, headers, body).await,
    }
}

fn verb(method: &Method, rp: &ResourcePath, query: &HashMap<String, String>) -> &'static str {
    match (method, rp.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false)
            if rp.watch_prefix || query.get("watch").is_some_and(|w| w == "true" || w == "1") =>
        {
            "watch"
        }
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("couldn't parse the request body as JSON: {e}")))
}

fn write_options(query: &HashMap<String, String>, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    let explicit = query.get("fieldManager").filter(|m| !m.is_empty()).cloned();
    let derived = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string();
    Ok(WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        explicit_manager: explicit.is_some(),
        field_manager: explicit.unwrap_or(derived),
        force: query.get("force").is_some_and(|f| f == "true"),
        field_validation: FieldValidation::parse(query.get("fieldValidation").map(String::as_str))?,
        warnings: Default::default(),
    })
}

fn accepts_metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
        })
}

async fn resource(
    state: &HttpState,
    method: &Method,
    rp: ResourcePath,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let info = state
        .api
        .registry
        .get(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::no_route)?;
    let verb = verb(method, &rp, query);
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let resource = rp.resource.clone();
    let injected = |code: u16, reason: String, message: String| {
        let reason = if reason.is_empty() {
            StatusCode::from_u16(code)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("InternalError")
                .replace(' ', "")
        } else {
            reason
        };
        let message = if message.is_empty() {
            format!("injected fault for {verb} {resource}")
        } else {
            message
        };
        let mut e = ApiError::new(code, &reason, message);
        if code == 429 {
            e.details.retry_after = Some(1);
        }
        e
    };
    match state.faults.take(verb, &resource, &ns, &name) {
        Some(FaultAction::Fail {
            code,
            reason,
            message,
        }) => return Err(injected(code, reason, message)),
        Some(FaultAction::FailAfter { code }) => {
            let message = format!("injected fault after {verb} {resource} took effect");
            let e = injected(code, String::new(), message);
            handle_resource(state, method, rp, query, headers, body, verb, info).await?;
            return Err(e);
        }
        Some(FaultAction::Delay { millis }) => {
            tokio::time::sleep(Duration::from_millis(millis)).await
        }
        None => {}
    }
    handle_resource(state, method, rp, query, headers, body, verb, info).await
}

/// Serves a resource request once faults are dealt with.
#[allow(clippy::too_many_arguments)]
async fn handle_resource(
    state: &HttpState,
    method: &Method,
    rp: ResourcePath,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    verb: &'static str,
    info: Arc<ResourceInfo>,
) -> ApiResult<Response> {
    let api = &state.api;
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    if info.namespaced
        && rp.namespace.is_none()
        && !matches!(verb, "list" | "watch" | "create" | "deletecollection")
    {
        return Err(ApiError::no_route());
    }
    if !info.namespaced && rp.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    let sub = rp.subresource.as_deref().unwrap_or_default();
    let sub_ok = match sub {
        "" => true,
        "status" => info.status_subresource && matches!(verb, "get" | "update" | "patch"),
        "log" => info.is("", "pods") && verb == "get",
        "finalize" => info.is("", "namespaces") && verb == "update",
        "binding" => info.is("", "pods") && verb == "create",
        _ => false,
    };
    if !sub_ok {
        return Err(ApiError::no_route());
    }
    let metadata_only = accepts_metadata_only(headers);
    let opts = write_options(query, headers)?;
    match verb {
        "get" if sub == "log" => logs::pod_log(api, &ns, &name, query),
        "create" if sub == "binding" => {
            let status = binding::bind(api, &info, &ns, &name, &parse_body(body)?)?;
            Ok(json_response(StatusCode::CREATED, &status))
        }
        "get" if table::wanted(headers, &info) => {
            let obj = api.get(&info, &ns, &name)?;
            let rv = obj["metadata"]["resourceVersion"].clone();
            Ok(json_response(
                StatusCode::OK,
                &table::render(&info, &[obj], Some(&rv), api.clock.now()),
            ))
        }
        "get" => {
            let obj = api.get_stored(&info, &ns, &name)?;
            let shape = if metadata_only {
                Shape::Metadata
            } else {
                Shape::Object
            };
            Ok(json_bytes_response(
                StatusCode::OK,
                present::to_json(&info, &obj, shape),
            ))
        }
        "list" => {
            let opts = list_options(&info, query)?;
            if table::wanted(headers, &info) {
                let list = api.list(&info, rp.namespace.as_deref(), &opts)?;
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let mut t = table::render(
                    &info,
                    &items,
                    Some(&list["metadata"]["resourceVersion"]),
                    api.clock.now(),
                );
                if let Some(c) = list["metadata"].get("continue") {
                    t["metadata"]["continue"] = c.clone();
                }
                return Ok(json_response(StatusCode::OK, &t));
            }
            let page = api.list_page(&info, rp.namespace.as_deref(), &opts)?;
            Ok(json_bytes_response(
                StatusCode::OK,
                present::list_to_json(&info, &page, metadata_only),
            ))
        }
        "watch" => {
            let lo = list_options(&info, query)?;
            let params = watch::WatchParams {
                namespace: rp.namespace.clone().filter(|_| info.namespaced),
                labels: lo.labels,
                fields: lo.fields,
                resource_version: query.get("resourceVersion").cloned(),
                send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs),
                metadata_only,
                bookmark_interval: state.bookmark_interval,
                table: table::wanted(headers, &info),
            };
            let body = watch::start(api, &state.faults, info.clone(), params);
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache, private"),
            );
            Ok(resp)
        }
        "create" => {
            if rp.name.is_some() {
                return Err(ApiError::method_not_supported("POST on a named resource"));
            }
            let obj = api.create_written(&info, &ns, parse_body(body)?, &opts)?;
            Ok(with_warnings(
                json_bytes_response(StatusCode::CREATED, obj.to_json(&info)),
                &opts.warnings.take(),
            ))
        }
        "update" => {
            let sub = if sub == "finalize" { "" } else { sub };
            let obj = api.update_written(&info, &ns, &name, parse_body(body)?, sub, &opts)?;
            Ok(with_warnings(
                json_bytes_response(StatusCode::OK, obj.to_json(&info)),
                &opts.warnings.take(),
            ))
        }
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let media = ct.split(';').next().unwrap_or_default().trim();
            let kind = match media {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
                other => {
                    return Err(ApiError::unsupported_media_type(
                        other,
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                            "application/strategic-merge-patch+json",
                        ],
                    ))
                }
            };
            let patch: Value = if kind == PatchKind::Apply {
                apply_body(body)?
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            let (obj, created) = api.patch_written(&info, &ns, &name, kind, &patch, sub, &opts)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                json_bytes_response(code, obj.to_json(&info)),
                &opts.warnings.take(),
            ))
        }
        "delete" => {
            let dopts = delete_options(query, body)?;
            let (outcome, warnings) = api.delete(&info, &ns, &name, &dopts)?;
            let resp = match outcome {
                DeleteOutcome::Deleted(last) => {
                    json_response(StatusCode::OK, &deleted_body(&info, &last))
                }
                DeleteOutcome::Pending(obj) => json_response(StatusCode::OK, &obj),
            };
            Ok(with_warnings(resp, &warnings))
        }
        "deletecollection" => {
            let dopts = delete_options(query, body)?;
            let lo = list_options(&info, query)?;
            let list = api.delete_collection(&info, rp.namespace.as_deref(), &lo, &dopts)?;
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(ApiError::method_not_supported(method.as_str())),
    }
}

/// An apply body: YAML, of which JSON is a subset. Clients (kube-rs, kubectl) mostly send JSON,
/// which the JSON parser reads several times faster; anything else goes to the YAML parser.
fn apply_body(body: &[u8]) -> ApiResult<Value> {
    let json = body.trim_ascii_start().starts_with(b"{");
    if let Some(v) = json.then(|| serde_json::from_slice(body).ok()).flatten() {
        return Ok(v);
    }
    serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn deleted_body(info: &ResourceInfo, last: &Value) -> Value {
    if info.custom {
        return last.clone();
    }
    success_status(
        &info.group,
        &info.plural,
        last["metadata"]["name"].as_str().unwrap_or_default(),
        last["metadata"]["uid"].as_str().unwrap_or_default(),
    )
}

fn list_options(info: &ResourceInfo, query: &HashMap<String, String>) -> ApiResult<ListOptions> {
    let (labels, fields) = Apiserver::selectors(
        info,
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )?;
    let limit = match query.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query.get("continue").cloned(),
        resource_version: query.get("resourceVersion").cloned(),
        resource_version_match: query.get("resourceVersionMatch").cloned(),
    })
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions::default();
    if let Some(p) = query.get("propagationPolicy") {
        opts.propagation = Some(crate::apiserver::Propagation::parse(p)?);
    }
    if let Some(g) = query.get("gracePeriodSeconds") {
        opts.grace_period_seconds = g.parse().ok();
    }
    if let Some(o) = query.get("orphanDependents") {
        opts.orphan_dependents = Some(o == "true");
    }
    opts.dry_run = query.get("dryRun").is_some_and(|d| d == "All");
    let body = parse_body(body)?;
    if body.is_object() {
        opts.merge_body(&body)?;
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON apply body reads as the YAML parser reads it; YAML still reads; neither is an
    /// error (400) that names the YAML decoder.
    #[test]
    fn apply_bodies_read_alike_as_json_and_yaml() {
        let json_bodies = [
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"1"}},"data":{"k":"é \"q\" \\"}}"#,
            r#"  {"spec": {"n": 3, "f": 1.5, "neg": -2, "big": 18446744073709551615, "b": true, "z": null, "l": [1, "2", {"x": []}]}}"#,
        ];
        for body in json_bodies {
            let yaml: Value = serde_yaml::from_str(body).unwrap();
            assert_eq!(apply_body(body.as_bytes()).unwrap(), yaml, "{body}");
        }
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  k: v\n";
        assert_eq!(apply_body(yaml.as_bytes()).unwrap()["data"]["k"], "v");
        let err = apply_body(b"{\"a\": [").unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.starts_with("error decoding YAML"),
            "{}",
            err.message
        );
    }
}
