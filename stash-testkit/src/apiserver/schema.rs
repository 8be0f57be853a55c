//! Structural-schema processing for custom resources, in the API server's order:
//! defaulting, pruning of unknown fields, then validation of required fields, types and enums.

use serde_json::Value;

use super::name_of;
use super::write::{FieldValidation, WriteOptions};
use crate::registry::ResourceInfo;
use crate::status::{cause, ApiError, ApiResult, Cause};

/// Defaults, prunes and validates `obj` against the resource's schema. Unknown fields are
/// pruned with a warning (`fieldValidation=Warn`, the default), pruned silently (`Ignore`),
/// or rejected (`Strict`).
pub(super) fn process(info: &ResourceInfo, obj: &mut Value, opts: &WriteOptions) -> ApiResult<()> {
    let Some(schema) = info.schema.as_deref() else {
        return Ok(());
    };
    let mut causes = Vec::new();
    let mut pruned = Vec::new();
    walk(schema, obj, "", &mut causes, &mut pruned, true);
    if opts.field_validation == FieldValidation::Warn {
        for p in &pruned {
            opts.warnings.push(format!("unknown field \"{p}\""));
        }
    }
    if opts.field_validation == FieldValidation::Strict && !pruned.is_empty() {
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

fn check_bounds(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let num = |k: &str| schema[k].as_f64();
    let int = |k: &str| schema[k].as_u64().and_then(|n| usize::try_from(n).ok());
    if let Some(x) = value.as_f64() {
        let exclusive_min = schema["exclusiveMinimum"] == Value::Bool(true);
        let exclusive_max = schema["exclusiveMaximum"] == Value::Bool(true);
        if let Some(min) = num("minimum") {
            if x < min || (exclusive_min && x == min) {
                let op = if exclusive_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {value}: {path} in body should be {op} {min}"),
                ));
            }
        }
        if let Some(max) = num("maximum") {
            if x > max || (exclusive_max && x == max) {
                let op = if exclusive_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {value}: {path} in body should be {op} {max}"),
                ));
            }
        }
    }
    if let Some(text) = value.as_str() {
        let len = text.chars().count();
        if let Some(max) = int("maxLength") {
            if len > max {
                causes.push(cause(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
        if let Some(min) = int("minLength") {
            if len < min {
                causes.push(cause("FieldValueInvalid", path, format!("Invalid value: {value}: {path} in body should be at least {min} chars long")));
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = int("maxItems") {
            if items.len() > max {
                causes.push(cause(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
        }
        if let Some(min) = int("minItems") {
            if items.len() < min {
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
        }
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
    check_bounds(schema, value, path, causes);
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
                // Nulls of non-nullable fields are pruned before defaulting.
                map.retain(|k, v| {
                    !(v.is_null()
                        && props
                            .get(k)
                            .is_some_and(|s| s["nullable"] != Value::Bool(true)))
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(schema: Value) -> ResourceInfo {
        let crd = json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}});
        crate::registry::crd_resources(&crd).remove(0)
    }

    #[test]
    fn prune_default_and_validate() {
        let info = info(
            json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["n"], "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": 5},
                "s": {"type": "string", "maxLength": 3, "default": "abc"},
                "opt": {"type": "string", "nullable": true},
                "gone": {"type": "string"},
                "l": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}}}),
        );
        let mut ok = json!({"metadata": {"name": "t"}, "spec": {"n": 2, "opt": null, "gone": null, "extra": 1, "free": {"any": {"thing": 1}}}});
        let warn = WriteOptions::default();
        process(&info, &mut ok, &warn).unwrap();
        assert_eq!(
            warn.warnings.take(),
            vec!["unknown field \"spec.extra\"".to_string()]
        );
        assert_eq!(
            ok["spec"],
            json!({"n": 2, "s": "abc", "opt": null, "free": {"any": {"thing": 1}}})
        );

        let mut strict = json!({"metadata": {"name": "t"}, "spec": {"n": 2, "extra": 1}});
        let strict_opts = WriteOptions {
            field_validation: FieldValidation::Strict,
            ..WriteOptions::default()
        };
        let err = process(&info, &mut strict, &strict_opts).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("unknown field \"spec.extra\""),
            "{}",
            err.message
        );

        let mut bad =
            json!({"metadata": {"name": "t"}, "spec": {"n": 9, "s": "toolong", "l": ["a", "b"]}});
        let err = process(&info, &mut bad, &WriteOptions::default()).unwrap_err();
        let fields: Vec<&str> = err
            .details
            .causes
            .iter()
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(fields, vec!["spec.l", "spec.n", "spec.s"], "{err:?}");
        let mut missing = json!({"metadata": {"name": "t"}, "spec": {}});
        let err = process(&info, &mut missing, &WriteOptions::default()).unwrap_err();
        assert_eq!(err.details.causes[0].reason, "FieldValueRequired");
    }
}
