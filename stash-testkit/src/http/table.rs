//! Server-side printing: `meta.k8s.io/v1 Table` responses for custom resources with
//! `additionalPrinterColumns`, so `kubectl get` shows their columns.

use http::{header, HeaderMap};
use jiff::Timestamp;
use serde_json::{json, Value};

use super::watch::metadata_only;
use crate::registry::ResourceInfo;

/// Whether the client prefers a `Table` and this resource has columns worth printing.
pub fn wanted(headers: &HeaderMap, info: &ResourceInfo) -> bool {
    !info.printer_columns.is_empty()
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| {
                a.split(',')
                    .next()
                    .is_some_and(|first| first.contains("as=Table"))
            })
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

/// Renders objects as a `Table`.
pub fn render(
    info: &ResourceInfo,
    objects: &[Value],
    resource_version: Option<&Value>,
    now: Timestamp,
) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &info.printer_columns {
        columns.push(json!({
            "name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            for c in &info.printer_columns {
                let v =
                    eval(obj, c["jsonPath"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
                cells.push(if c["type"] == "date" {
                    age_of(&v, now)
                } else {
                    v
                });
            }
            cells.push(age_of(&obj["metadata"]["creationTimestamp"], now));
            json!({"cells": cells, "object": metadata_only(obj)})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.clone();
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns, "rows": rows})
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
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(200), "3m20s");
        assert_eq!(human_age(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_age(50 * 3600), "2d2h");
    }
}
