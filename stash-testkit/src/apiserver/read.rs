//! Get and list, with selectors, resourceVersion semantics and consistent pagination.

use std::sync::Arc;

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

/// One page of a list: the stored objects (see [`super::present`] for how they are served)
/// and the list's metadata.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The revision the list was read at.
    pub rev: u64,
    /// The continue token, when more items remain.
    pub continue_token: Option<String>,
    /// How many items remain after this page.
    pub remaining: usize,
    /// The stored objects, in key order.
    pub items: Vec<Arc<Value>>,
}

impl ListPage {
    /// The list's `metadata`.
    pub fn metadata(&self) -> Value {
        let mut metadata = json!({"resourceVersion": self.rev.to_string()});
        if let Some(token) = &self.continue_token {
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(self.remaining);
        }
        metadata
    }
}

impl Apiserver {
    /// Reads one object.
    pub fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Value> {
        let obj = self.get_stored(info, namespace, name)?;
        Ok(Self::present(info, &obj))
    }

    /// Reads one object as stored (to be served with [`super::present::write_json`]).
    pub fn get_stored(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Arc<Value>> {
        let key = Self::key(info, namespace, name);
        self.store
            .lock()
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// Lists objects; `namespace` `None` means all namespaces (or a cluster-scoped resource).
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let page = self.list_page(info, namespace, opts)?;
        let items: Vec<Value> = page.items.iter().map(|o| Self::present(info, o)).collect();
        Ok(json!({
            "apiVersion": info.api_version(),
            "kind": info.list_kind,
            "metadata": page.metadata(),
            "items": items,
        }))
    }

    /// Lists stored objects (see [`Apiserver::list`]).
    pub fn list_page(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let prefix = info.storage_prefix();
        let ns_filter = if info.namespaced {
            namespace.filter(|n| !n.is_empty())
        } else {
            None
        };
        let (rev, objects, start_after, indexed) = {
            let state = self.store.lock();
            if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
                let (rev, after) = decode_continue(token)?;
                let snap = state.snapshot(rev).ok_or_else(|| {
                    ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                })?;
                (rev, snap, Some(after), None)
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
                        (rev, snap, None, None)
                    }
                    // The label index reflects the current revision only.
                    _ => (
                        state.rev(),
                        state.objects().clone(),
                        None,
                        state.keys_with_labels(&prefix, opts.labels.equalities()),
                    ),
                }
            }
        };
        let start = match &start_after {
            Some(k) => k.clone(),
            None => Key::new(prefix.clone(), ns_filter.unwrap_or_default(), ""),
        };
        let mut items = Vec::new();
        let mut last_key = None;
        let mut remaining = 0usize;
        let mut visited = 0usize;
        let in_namespace = |k: &Key| ns_filter.is_none_or(|ns| k.namespace == ns);
        let candidates: Box<dyn Iterator<Item = (&Key, &Arc<Value>)>> = match &indexed {
            Some(keys) => Box::new(
                keys.iter()
                    .filter(|k| in_namespace(k))
                    .filter_map(|k| objects.get_key_value(k)),
            ),
            None => Box::new(
                objects
                    .range(start.clone()..)
                    .take_while(|(k, _)| k.resource == prefix && in_namespace(k))
                    .filter(|(k, _)| start_after.as_ref() != Some(*k)),
            ),
        };
        for (k, v) in candidates {
            visited += 1;
            if !opts.labels.matches(v) || !opts.fields.matches(v) {
                continue;
            }
            if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(v.clone());
            last_key = Some(k.clone());
        }
        self.store.count_visits(visited);
        let mut continue_token = None;
        if remaining > 0 {
            if let Some(last) = &last_key {
                self.store.lock().retain_snapshot_at(rev, objects);
                continue_token = Some(encode_continue(rev, last));
            }
        }
        Ok(ListPage {
            rev,
            continue_token,
            remaining,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{DeleteOptions, WriteOptions};
    use crate::clock::VirtualClock;

    fn names(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// A list with `key=value` labels does work proportional to its matches, not to the
    /// objects of the resource or namespace (the label index), and follows label changes.
    #[test]
    fn label_selected_lists_visit_only_their_matches() {
        let api = Apiserver::new(VirtualClock::default());
        let cm = api.resource("", "v1", "configmaps").unwrap();
        let ns = api.resource("", "v1", "namespaces").unwrap();
        let w = WriteOptions::manager("test");
        for n in 0..10 {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}});
            api.create(&ns, "", body, &w).unwrap();
        }
        for i in 0..1000 {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": format!("cm-{i}"), "labels": {"owner": format!("o-{i}"), "tier": if i % 100 == 0 { "rare" } else { "common" }},
            }});
            api.create(&cm, &format!("ns-{}", i % 10), body, &w)
                .unwrap();
        }
        let list = |namespace: Option<&str>, selector: &str| {
            let opts = ListOptions {
                labels: LabelSelector::parse(selector).unwrap(),
                ..ListOptions::default()
            };
            let before = api.store.visited();
            let list = api.list(&cm, namespace, &opts).unwrap();
            (names(&list), api.store.visited() - before)
        };

        assert_eq!(
            list(Some("ns-3"), "owner=o-123"),
            (vec!["cm-123".into()], 1)
        );
        assert_eq!(list(Some("ns-4"), "owner=o-123").0, Vec::<String>::new());
        let (rare, visited) = list(None, "tier=rare,owner!=o-0");
        assert_eq!(rare.len(), 9);
        assert_eq!(
            visited, 10,
            "only the objects labelled tier=rare are examined"
        );
        assert_eq!(list(None, "tier=absent"), (vec![], 0));
        // Without an equality the list scans the namespace, as before.
        assert_eq!(list(Some("ns-3"), "owner").1, 100);

        // The index follows relabelling and deletion.
        api.modify(&cm, "ns-3", "cm-123", "", "test", |o| {
            o["metadata"]["labels"]["owner"] = json!("o-new");
            true
        })
        .unwrap();
        assert_eq!(list(Some("ns-3"), "owner=o-123").0, Vec::<String>::new());
        assert_eq!(list(Some("ns-3"), "owner=o-new").0, vec!["cm-123"]);
        api.delete(&cm, "ns-3", "cm-123", &DeleteOptions::default())
            .unwrap();
        assert_eq!(list(Some("ns-3"), "owner=o-new"), (vec![], 0));
    }
}
