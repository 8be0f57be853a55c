//! Request accounting: how many API requests each client issued, by verb, so that scale
//! benchmarks can report the load an operator puts on the server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{header, HeaderMap, Method};
use serde_json::{json, Value};

/// `(client, verb, resource)`.
type CountKey = (String, &'static str, String);

/// Counts of requests by client (the first word of `User-Agent`), verb and resource. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<CountKey, u64>>>,
}

/// The verb of a request as Kubernetes audit logs name them; `collection` when the URL names
/// no object (a GET is then a list).
pub fn verb(method: &Method, headers: &HeaderMap, watch: bool, collection: bool) -> &'static str {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match *method {
        Method::GET if watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH if content_type.starts_with("application/apply-patch") => "apply",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

impl RequestCounter {
    /// Counts one request to `resource` (a plural; empty for discovery and other paths).
    pub fn record(&self, headers: &HeaderMap, verb: &'static str, resource: &str) {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split(['/', ' ']).next())
            .filter(|a| !a.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry((agent, verb, resource.to_string()))
            .or_default() += 1;
    }

    /// How many requests `agent` issued with `verb` to `resource`.
    pub fn count(&self, agent: &str, verb: &str, resource: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .filter(|((a, v, r), _)| a == agent && *v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// `{"total": N, "byAgent": {agent: {verb: n}}, "byResource": {agent: {"verb resource": n}}}`.
    pub fn report(&self) -> Value {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_agent: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        let mut by_resource: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for ((agent, verb, resource), n) in counts.iter() {
            *by_agent.entry(agent).or_default().entry(verb).or_default() += n;
            by_resource
                .entry(agent)
                .or_default()
                .insert(format!("{verb} {resource}"), *n);
        }
        json!({"total": counts.values().sum::<u64>(), "byAgent": by_agent, "byResource": by_resource})
    }
}
