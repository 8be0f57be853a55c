//! The `/testkit/v1` control endpoints: clock, faults, watch expiry and compaction.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::json;

use super::{json_response, HttpState};
use crate::faults::FaultRule;
use crate::status::{ApiError, ApiResult};

pub(super) async fn testkit(
    state: &HttpState,
    method: &Method,
    rest: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult<Response> {
    match (method, rest) {
        (&Method::GET, "clock") => Ok(json_response(
            StatusCode::OK,
            &json!({"now": state.api.clock.now_string()}),
        )),
        (&Method::POST, "clock") => {
            let secs: u64 = query
                .get("advance")
                .ok_or_else(|| ApiError::bad_request("advance=SECONDS is required"))?
                .parse()
                .map_err(|_| ApiError::bad_request("advance must be a whole number of seconds"))?;
            state.api.clock.advance(Duration::from_secs(secs));
            if let Some(cm) = &state.controllers {
                cm.settle().await;
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"now": state.api.clock.now_string()}),
            ))
        }
        (&Method::GET, "requests") => {
            let mut report = state.requests.report();
            // Writes are revisions: a client can tell writes at rest from this alone.
            report["resourceVersion"] = json!(state.api.store.rev().to_string());
            // `since=REV`: the writes committed after REV, by resource and writer.
            if let Some(since) = query.get("since").and_then(|s| s.parse::<u64>().ok()) {
                let store = state.api.store.lock();
                let mut writes: std::collections::BTreeMap<String, u64> = Default::default();
                for change in store.changes_after(since.max(store.floor())) {
                    *writes.entry(change.key.resource.clone()).or_default() += 1;
                }
                report["writesSince"] = json!(writes);
            }
            Ok(json_response(StatusCode::OK, &report))
        }
        (&Method::GET, "faults") => Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(state.faults.list()).unwrap_or_default(),
        )),
        (&Method::POST, "faults") => {
            let rule: FaultRule = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault rule: {e}")))?;
            state.faults.inject(rule);
            Ok(json_response(
                StatusCode::CREATED,
                &serde_json::to_value(state.faults.list()).unwrap_or_default(),
            ))
        }
        (&Method::DELETE, "faults") => {
            state.faults.clear();
            Ok(json_response(StatusCode::OK, &json!([])))
        }
        (&Method::POST, "watches/cut") => {
            state.faults.cut_watches();
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        (&Method::POST, "watches/expire") => {
            state.api.store.expire_watches();
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        (&Method::POST, "compact") => {
            state.api.store.compact();
            Ok(json_response(
                StatusCode::OK,
                &json!({"resourceVersion": state.api.store.rev().to_string()}),
            ))
        }
        _ => Err(ApiError::no_route()),
    }
}
