//! Structural-schema processing for custom resources, in the API server's order:
//! defaulting, pruning of unknown fields, then validation of required fields, types and enums.

use serde_json::Value;

use super::name_of;
use crate::registry::ResourceInfo;
use crate::status::{cause, ApiError, ApiResult, Cause};

/// Defaults, prunes and validates `obj` against the resource's schema. With `strict`
/// (`fieldValidation=Strict`), unknown fields are an error instead of being pruned.
pub(super) fn process(info: &ResourceInfo, obj: &mut Value, strict: bool) -> ApiResult<()> {
    let Some(schema) = info.schema.as_deref() else {
        return Ok(());
    };
    let mut causes = Vec::new();
    let mut pruned = Vec::new();
    walk(schema, obj, "", &mut causes, &mut pruned, true);
    if strict && !pruned.is_empty() {
        let fields: Vec<String> = pruned
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            fields.join(", ")
        )));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        let name = name_of(obj).to_string();
        Err(ApiError::invalid(&info.group, &info.kind, &name, causes))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(
    schema: &Value,
    value: &mut Value,
    path: &str,
    causes: &mut Vec<Cause>,
    pruned: &mut Vec<String>,
    root: bool,
) {
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            causes.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type int-or-string: \"{}\"",
                    type_name(value),
                    type_name(value)
                ),
            ));
        }
        return;
    }
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return;
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    let expected = schema["type"].as_str();
    let ok = match expected {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        let t = type_name(value);
        causes.push(cause(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: \"{t}\": {path} in body must be of type {}: \"{t}\"",
                expected.unwrap_or_default()
            ),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            let supported: Vec<String> = options.iter().map(Value::to_string).collect();
            causes.push(cause(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    supported.join(", ")
                ),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            if let Some(props) = props {
                for (k, s) in props {
                    if !map.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            for r in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(r) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &join(path, r),
                        "Required value",
                    ));
                }
            }
            let additional = &schema["additionalProperties"];
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = join(path, &k);
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    if let Some(v) = map.get_mut(&k) {
                        walk(s, v, &child_path, causes, pruned, false);
                    }
                } else if additional.is_object() {
                    if let Some(v) = map.get_mut(&k) {
                        walk(additional, v, &child_path, causes, pruned, false);
                    }
                } else if !(preserve || *additional == Value::Bool(true)) {
                    map.remove(&k);
                    pruned.push(child_path);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(
                    &schema["items"],
                    item,
                    &format!("{path}[{i}]"),
                    causes,
                    pruned,
                    false,
                );
            }
        }
        _ => {}
    }
}
