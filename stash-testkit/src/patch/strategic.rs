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
            let mut list = target.as_array().cloned().unwrap_or_default();
            for item in items {
                let key = item_key(item, &keys);
                let pos = list.iter().position(|l| item_key(l, &keys) == key);
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = pos {
                        list.remove(i);
                    }
                    continue;
                }
                path.push("[]".into());
                match pos {
                    Some(i) => merge_object(&mut list[i], item, schema, path)?,
                    None => list.push(strip_directives(item)),
                }
                path.pop();
            }
            *target = Value::Array(list);
        }
    }
    Ok(())
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
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "c", "image": "z"}]}})
        );
    }
}
