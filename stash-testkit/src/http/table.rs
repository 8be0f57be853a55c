//! Server-side printing: `meta.k8s.io/v1 Table` responses for custom resources with
//! `additionalPrinterColumns`, so `kubectl get` shows their columns.

use http::{header, HeaderMap};
use jiff::Timestamp;
use serde_json::{json, Value};

use crate::apiserver::present::metadata_only;
use crate::registry::ResourceInfo;

/// Whether the client prefers a `Table` and this resource can be printed as one: every custom
/// resource, and the built-ins that have a printer here.
pub fn wanted(headers: &HeaderMap, info: &ResourceInfo) -> bool {
    (info.custom || builtin_columns(info).is_some())
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| {
                a.split(',')
                    .next()
                    .is_some_and(|first| first.contains("as=Table"))
            })
}

/// How one column's cell is computed.
enum Cell {
    /// A CRD printer column: a JSONPath and a type.
    Path(String),
    /// The number of members of these maps (e.g. a ConfigMap's `data` plus `binaryData`).
    Count(&'static [&'static str]),
    /// The string at this JSONPath.
    Text(&'static str),
    /// The age of the object.
    Age,
}

struct Column {
    definition: Value,
    kind: String,
    cell: Cell,
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn definition(name: &str, kind: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

/// The columns of the built-in printers this server has (as kube-apiserver prints them).
fn builtin_columns(info: &ResourceInfo) -> Option<Vec<Column>> {
    let col = |name: &str, kind: &str, description: &str, cell: Cell| Column {
        definition: definition(name, kind, "", description, 0),
        kind: kind.to_string(),
        cell,
    };
    let age = || col("Age", "string", AGE_DESCRIPTION, Cell::Age);
    let columns = match (info.group.as_str(), info.plural.as_str()) {
        ("", "configmaps") => vec![
            col(
                "Data",
                "string",
                "Data contains the configuration data.",
                Cell::Count(&["data", "binaryData"]),
            ),
            age(),
        ],
        ("", "secrets") => vec![
            col(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data.",
                Cell::Text(".type"),
            ),
            col(
                "Data",
                "string",
                "Data contains the secret data.",
                Cell::Count(&["data"]),
            ),
            age(),
        ],
        ("", "namespaces") => vec![
            col(
                "Status",
                "string",
                "The status of the namespace",
                Cell::Text(".status.phase"),
            ),
            age(),
        ],
        _ => return None,
    };
    Some(columns)
}

/// A CRD version's columns: its `additionalPrinterColumns`, or an `Age` column when it has
/// none (the API server adds `Age` only then).
fn custom_columns(info: &ResourceInfo) -> Vec<Column> {
    if info.printer_columns.is_empty() {
        return vec![Column {
            definition: definition("Age", "date", "", AGE_DESCRIPTION, 0),
            kind: "date".into(),
            cell: Cell::Path(".metadata.creationTimestamp".into()),
        }];
    }
    info.printer_columns
        .iter()
        .map(|c| {
            let kind = c["type"].as_str().unwrap_or("string").to_string();
            Column {
                definition: definition(
                    c["name"].as_str().unwrap_or_default(),
                    &kind,
                    c["format"].as_str().unwrap_or_default(),
                    c["description"].as_str().unwrap_or_default(),
                    c["priority"].as_i64().unwrap_or(0),
                ),
                kind,
                cell: Cell::Path(c["jsonPath"].as_str().unwrap_or_default().to_string()),
            }
        })
        .collect()
}

/// Kubernetes' short human durations (`45s`, `3m20s`, `5h`, `2d3h`, ...).
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// Evaluates the simple JSONPath subset printer columns use: `.a.b`, `.a[0]`, and
/// `.a[?(@.k=="v")].b`.
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj.clone();
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let (selector, after) = (&inner[..end], &inner[end + 1..]);
            cur = if let Some(filter) = selector
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur.as_array()?
                    .iter()
                    .find(|item| match &item[key.trim()] {
                        Value::String(s) => s == want,
                        other => other.to_string().as_str() == want,
                    })?
                    .clone()
            } else {
                cur.as_array()?
                    .get(selector.trim().parse::<usize>().ok()?)?
                    .clone()
            };
            rest = after.trim_start_matches('.');
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?.clone();
        rest = rest[end..].trim_start_matches('.');
    }
    Some(cur)
}

fn age_of(value: &Value, now: Timestamp) -> Value {
    match value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) {
        Some(t) => json!(human_age(now.as_second() - t.as_second())),
        None => Value::Null,
    }
}

/// A CRD cell by its column type, as the API server's table convertor renders it: strings as
/// printed text, dates as ages, other types as the JSON value.
fn typed_cell(kind: &str, value: Option<Value>, now: Timestamp) -> Value {
    match (kind, value) {
        (_, None | Some(Value::Null)) => Value::Null,
        ("date", Some(v)) => match age_of(&v, now) {
            Value::Null => json!("<invalid>"),
            age => age,
        },
        ("string", Some(Value::String(s))) => Value::String(s),
        ("string", Some(v)) => Value::String(v.to_string()),
        (_, Some(v)) => v,
    }
}

fn cell(column: &Column, obj: &Value, now: Timestamp) -> Value {
    match &column.cell {
        Cell::Path(path) => typed_cell(&column.kind, eval(obj, path), now),
        Cell::Count(maps) => json!(maps
            .iter()
            .map(|m| obj[*m].as_object().map_or(0, |o| o.len()))
            .sum::<usize>()),
        Cell::Text(path) => eval(obj, path).unwrap_or(Value::Null),
        Cell::Age => age_of(&obj["metadata"]["creationTimestamp"], now),
    }
}

/// Renders objects as a `Table`.
pub fn render(
    info: &ResourceInfo,
    objects: &[Value],
    resource_version: Option<&Value>,
    now: Timestamp,
) -> Value {
    let columns = if info.custom {
        custom_columns(info)
    } else {
        builtin_columns(info).unwrap_or_default()
    };
    let mut definitions = vec![definition("Name", "string", "name", NAME_DESCRIPTION, 0)];
    definitions.extend(columns.iter().map(|c| c.definition.clone()));
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|c| cell(c, obj, now)));
            json!({"cells": cells, "object": metadata_only(obj)})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.clone();
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows})
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({"status": {"phase": "Running", "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
                         "spec": {"items": [1, 2]}});
        assert_eq!(eval(&obj, ".status.phase"), Some(json!("Running")));
        assert_eq!(
            eval(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(eval(&obj, ".spec.items[1]"), Some(json!(2)));
        assert_eq!(eval(&obj, ".spec.missing"), None);
    }

    #[test]
    fn crd_columns_are_as_declared_and_age_only_when_none_are() {
        let crd = |columns: Value| {
            json!({"spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Thing", "plural": "things"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "additionalPrinterColumns": columns}]}})
        };
        let names = |t: &Value| -> Vec<String> {
            t["columnDefinitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"n": 3}});
        let with = crate::registry::crd_resources(&crd(json!([
            {"name": "N", "type": "string", "jsonPath": ".spec.n"}])))
        .remove(0);
        let t = render(&with, std::slice::from_ref(&obj), None, now);
        assert_eq!(names(&t), ["Name", "N"]);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "3"]));
        let without = crate::registry::crd_resources(&crd(json!([]))).remove(0);
        let t = render(&without, &[obj], None, now);
        assert_eq!(names(&t), ["Name", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "60s"]));
    }

    #[test]
    fn configmaps_print_their_data_count() {
        let info = crate::registry::Registry::new()
            .get("", "v1", "configmaps")
            .unwrap();
        let obj = json!({"metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": {"a": "1"}, "binaryData": {"b": ""}});
        let t = render(&info, &[obj], None, "2026-01-01T00:00:05Z".parse().unwrap());
        assert_eq!(t["rows"][0]["cells"], json!(["c", 2, "5s"]));
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(200), "3m20s");
        assert_eq!(human_age(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_age(50 * 3600), "2d2h");
    }
}
