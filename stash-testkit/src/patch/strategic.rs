//! Strategic merge patch for built-in types: a merge patch whose lists merge by key
//! (`patchMergeKey`), with the directives `$patch`, `$setElementOrder`, `$retainKeys` and
//! `$deleteFromPrimitiveList`.

use serde_json::{Map, Value};

use super::schema::{item_key, ListType, MergeSchema};
use crate::status::ApiError;

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(
    target: &mut Value,
    patch: &Value,
    schema: MergeSchema<'_>,
) -> Result<(), ApiError> {
    merge_object(target, patch, schema, &mut Vec::new())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_object(
    target: &mut Value,
    patch: &Value,
    schema: MergeSchema<'_>,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other}"
            )))
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()) || p.contains_key(k));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Object(_) => {
                merge_object(t.entry(k.clone()).or_insert(Value::Null), v, schema, path)?
            }
            Value::Array(items) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_list(slot, items, schema, path)?;
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
    Ok(())
}

fn merge_list(
    target: &mut Value,
    items: &[Value],
    schema: MergeSchema<'_>,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    match schema.list_type(path) {
        ListType::Atomic => *target = strip_directives(&Value::Array(items.to_vec())),
        ListType::Set => {
            let mut list = target.as_array().cloned().unwrap_or_default();
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
            *target = Value::Array(list);
        }
        ListType::Map(keys) => {
            let original = target.as_array().cloned().unwrap_or_default();
            let server_order: Vec<String> = original.iter().map(|l| item_key(l, &keys)).collect();
            let mut deleted = Vec::new();
            let mut patched: Vec<(String, Value)> = Vec::new();
            for item in items {
                let key = item_key(item, &keys);
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    deleted.push(key);
                    continue;
                }
                let base = match patched.iter().position(|(k, _)| *k == key) {
                    Some(i) => patched.remove(i).1,
                    None => original
                        .iter()
                        .find(|l| item_key(l, &keys) == key)
                        .cloned()
                        .unwrap_or(Value::Null),
                };
                let mut merged = base;
                path.push("[]".into());
                if merged.is_null() {
                    merged = strip_directives(item);
                } else {
                    merge_object(&mut merged, item, schema, path)?;
                }
                path.pop();
                patched.push((key, merged));
            }
            let server_only: Vec<(String, Value)> = original
                .into_iter()
                .map(|l| (item_key(&l, &keys), l))
                .filter(|(k, _)| !deleted.contains(k) && !patched.iter().any(|(p, _)| p == k))
                .collect();
            *target = Value::Array(merge_sorted(server_only, patched, &server_order));
        }
    }
    Ok(())
}

/// Interleaves the items only the server has with the patch's items as the API server does:
/// each keeps its own order; a server-only item goes first only when both it and the next
/// patch item were in the original list and it came earlier there.
fn merge_sorted(
    server_only: Vec<(String, Value)>,
    patched: Vec<(String, Value)>,
    server_order: &[String],
) -> Vec<Value> {
    let position = |k: &str| server_order.iter().position(|s| s == k);
    let mut out = Vec::with_capacity(server_only.len() + patched.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => {
                matches!((position(l), position(r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, v)) = next {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_directives_are_not_stored() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y"}]}});
        let patch = json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "spec": {"containers": [
                {"name": "a", "env": [{"name": "B", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "z"}]}});
        strategic_merge(&mut pod, &patch, MergeSchema { custom: None }).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            {"name": "c", "image": "z"}]}})
        );
    }
}
