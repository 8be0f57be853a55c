//! Get and list, with selectors, resourceVersion semantics and consistent pagination.

use base64::Engine;
use serde_json::{json, Value};

use super::Apiserver;
use crate::registry::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::Key;

/// Options of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size.
    pub limit: Option<usize>,
    /// Continue token from a previous page.
    pub continue_token: Option<String>,
    /// `resourceVersion` parameter.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch` parameter.
    pub resource_version_match: Option<String>,
}

fn encode_continue(rev: u64, after: &Key) -> String {
    let raw =
        json!({"rev": rev, "resource": after.resource, "ns": after.namespace, "name": after.name})
            .to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, Key)> {
    let bad = || ApiError::bad_request("continue key is not valid: malformed token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let s = |k: &str| v[k].as_str().map(String::from).ok_or_else(bad);
    Ok((
        v["rev"].as_u64().ok_or_else(bad)?,
        Key::new(s("resource")?, s("ns")?, s("name")?),
    ))
}

impl Apiserver {
    /// Reads one object.
    pub fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Value> {
        let key = Self::key(info, namespace, name);
        let obj = self
            .store
            .lock()
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        Ok(Self::present(info, &obj))
    }

    /// Lists objects; `namespace` `None` means all namespaces (or a cluster-scoped resource).
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let prefix = info.storage_prefix();
        let (rev, objects, start_after) = {
            let state = self.store.lock();
            if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
                let (rev, after) = decode_continue(token)?;
                let snap = state.snapshot(rev).ok_or_else(|| {
                    ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                })?;
                (rev, snap, Some(after))
            } else {
                let requested = opts
                    .resource_version
                    .as_deref()
                    .filter(|r| !r.is_empty() && *r != "0");
                match (requested, opts.resource_version_match.as_deref()) {
                    (Some(rv), Some("Exact")) => {
                        let rev: u64 = rv.parse().map_err(|_| {
                            ApiError::bad_request(format!("invalid resource version: {rv}"))
                        })?;
                        let snap = state.snapshot(rev).ok_or_else(|| {
                            ApiError::expired(format!(
                                "too old resource version: {rev} ({})",
                                state.rev()
                            ))
                        })?;
                        (rev, snap, None)
                    }
                    _ => (state.rev(), state.objects().clone(), None),
                }
            }
        };
        let ns_filter = if info.namespaced {
            namespace.filter(|n| !n.is_empty())
        } else {
            None
        };
        let start = match &start_after {
            Some(k) => k.clone(),
            None => Key::new(prefix.clone(), ns_filter.unwrap_or_default(), ""),
        };
        let mut items = Vec::new();
        let mut last_key = None;
        let mut remaining = 0usize;
        for (k, v) in objects.range(start.clone()..) {
            if k.resource != prefix {
                break;
            }
            if start_after.as_ref() == Some(k) {
                continue;
            }
            if let Some(ns) = ns_filter {
                if k.namespace != ns {
                    break;
                }
            }
            if !opts.labels.matches(v) || !opts.fields.matches(v) {
                continue;
            }
            if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(Self::present(info, v));
            last_key = Some(k.clone());
        }
        let mut metadata = json!({"resourceVersion": rev.to_string()});
        if remaining > 0 {
            if let Some(last) = &last_key {
                self.store.lock().retain_snapshot_at(rev, objects);
                metadata["continue"] = json!(encode_continue(rev, last));
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "apiVersion": info.api_version(),
            "kind": info.list_kind,
            "metadata": metadata,
            "items": items,
        }))
    }
}
