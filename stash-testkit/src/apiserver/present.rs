//! How stored objects are served: as `serde_json::Value`s for in-process callers
//! ([`Apiserver::present`]), and written straight to JSON bytes for HTTP responses and watch
//! events ([`write_json`]), which copies nothing and leaves the stored managed fields (kept
//! as one JSON text, see [`crate::store`]) as they are instead of parsing them per object.

use serde_json::Value;

use super::Apiserver;
use crate::registry::ResourceInfo;

/// What a served object looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The whole object, as a get or a watch event carries it.
    Object,
    /// An item of a list: the items of a built-in list carry no apiVersion/kind (a typed list's
    /// items are typed by the list); custom resource lists are unstructured and keep them.
    ListItem,
    /// `PartialObjectMetadata`: kind, apiVersion and the object's metadata.
    Metadata,
}

impl Apiserver {
    /// Renders a stored object for a request to `info`'s version.
    pub fn present(info: &ResourceInfo, obj: &Value) -> Value {
        let mut out = obj.clone();
        crate::store::expand_managed_fields(&mut out);
        if info.custom {
            out["apiVersion"] = Value::String(info.api_version());
            out["kind"] = Value::String(info.kind.clone());
        }
        out
    }
}

/// Renders an object (as [`Apiserver::present`] gives it) as `PartialObjectMetadata`.
pub fn metadata_only(obj: &Value) -> Value {
    serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// Appends a JSON value. Writing a `Value` into a `Vec` cannot fail: its keys are strings and
/// a `Vec` takes every byte.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a stored object, served to `info`'s version in `shape`: the same JSON as
/// [`Apiserver::present`] (and [`metadata_only`], or a list item without apiVersion/kind)
/// gives, written from the stored object.
pub fn write_json(out: &mut Vec<u8>, info: &ResourceInfo, obj: &Value, shape: Shape) {
    let Some(map) = obj.as_object() else {
        write_value(out, obj);
        return;
    };
    if shape == Shape::Metadata {
        out.extend_from_slice(
            br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#,
        );
        write_metadata(out, &obj["metadata"]);
        out.push(b'}');
        return;
    }
    let type_meta = shape == Shape::Object || info.custom;
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
    };
    if type_meta && info.custom {
        // A custom resource is served as the version asked for.
        member(out, "apiVersion");
        write_str(out, &info.api_version());
        member(out, "kind");
        write_str(out, &info.kind);
    }
    for (key, value) in map {
        if matches!(key.as_str(), "apiVersion" | "kind") && (!type_meta || info.custom) {
            continue;
        }
        member(out, key);
        if key == "metadata" {
            write_metadata(out, value);
        } else {
            write_value(out, value);
        }
    }
    out.push(b'}');
}

/// Appends `metadata`, with stored managed fields written from their JSON text.
fn write_metadata(out: &mut Vec<u8>, meta: &Value) {
    let Some(map) = meta.as_object() else {
        write_value(out, meta);
        return;
    };
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        match value.as_str() {
            Some(text) if key == "managedFields" => {
                // Stored by the store itself, so always valid; checked all the same (a scan,
                // no allocation), as reading it back falls back to no entries.
                if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                    out.extend_from_slice(text.as_bytes());
                } else {
                    out.extend_from_slice(b"[]");
                }
            }
            _ => write_value(out, value),
        }
    }
    out.push(b'}');
}

/// A stored object served in `shape`, as bytes.
pub fn to_json(info: &ResourceInfo, obj: &Value, shape: Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_json(&mut out, info, obj, shape);
    out
}

/// A list page served as bytes: the list of `info` whose items are in [`Shape::ListItem`], or
/// with `metadata_only` a `PartialObjectMetadataList`. The same JSON as [`Apiserver::list`]
/// (with built-in items stripped of their type, or each item as [`metadata_only`]).
pub fn list_to_json(info: &ResourceInfo, page: &super::ListPage, metadata_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 1024 * page.items.len());
    let (kind, api_version, shape) = if metadata_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
            Shape::Metadata,
        )
    } else {
        (info.list_kind.clone(), info.api_version(), Shape::ListItem)
    };
    out.extend_from_slice(br#"{"apiVersion":"#);
    write_str(&mut out, &api_version);
    out.extend_from_slice(br#","kind":"#);
    write_str(&mut out, &kind);
    out.extend_from_slice(br#","metadata":"#);
    write_value(&mut out, &page.metadata());
    out.extend_from_slice(br#","items":["#);
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, info, item, shape);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{ListOptions, PatchKind, WriteOptions};
    use crate::clock::VirtualClock;
    use serde_json::json;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    /// The bytes written from a stored object are the JSON `present` gives (what the server
    /// served before it wrote objects straight to bytes), in every shape, managed fields
    /// included, for built-in and custom resources.
    #[test]
    fn written_objects_equal_presented_ones() {
        let api = Apiserver::new(VirtualClock::default());
        let cm = api.resource("", "v1", "configmaps").unwrap();
        let apply = |manager: &str, data: Value| {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "labels": {"app": "x"}, "annotations": {"note": "quote \" and \\ and é"}},
                "data": data});
            api.patch(
                &cm,
                "default",
                "c",
                PatchKind::Apply,
                &body,
                "",
                &WriteOptions::manager(manager),
            )
            .unwrap();
        };
        apply("alice", json!({"a": "1", "shared": "s"}));
        apply("bob", json!({"b": "2", "shared": "s"}));
        let stored = api.get_stored(&cm, "default", "c").unwrap();
        assert!(
            stored["metadata"]["managedFields"].is_string(),
            "stored compacted"
        );
        let presented = Apiserver::present(&cm, &stored);
        assert_eq!(
            presented["metadata"]["managedFields"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );

        assert_eq!(parse(&to_json(&cm, &stored, Shape::Object)), presented);
        assert_eq!(
            parse(&to_json(&cm, &stored, Shape::Metadata)),
            metadata_only(&presented)
        );
        let mut item = presented.clone();
        if let Some(m) = item.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        assert_eq!(parse(&to_json(&cm, &stored, Shape::ListItem)), item);

        // A custom resource is served as the version asked for, in lists too.
        let mut custom = (*cm).clone();
        custom.custom = true;
        custom.group = "example.com".into();
        custom.version = "v2".into();
        custom.kind = "Widget".into();
        let presented = Apiserver::present(&custom, &stored);
        assert_eq!(presented["apiVersion"], "example.com/v2");
        for shape in [Shape::Object, Shape::ListItem] {
            assert_eq!(parse(&to_json(&custom, &stored, shape)), presented);
        }

        // Whatever is stored: a value that is not an object, metadata that is not one, managed
        // fields that do not parse (presented as no entries).
        let odd = [
            json!("text"),
            json!({"metadata": 5, "data": [1, null, {"x": 1.5}]}),
            json!({"metadata": {"name": "n", "managedFields": "not json"}}),
            json!({"metadata": {"managedFields": []}}),
        ];
        for obj in odd {
            let presented = Apiserver::present(&cm, &obj);
            assert_eq!(
                parse(&to_json(&cm, &obj, Shape::Object)),
                presented,
                "{obj}"
            );
        }
    }

    /// A list written as bytes equals the list `Apiserver::list` builds (items stripped of
    /// their type for a built-in resource, or as `PartialObjectMetadata`), continue token and
    /// all.
    #[test]
    fn written_lists_equal_built_ones() {
        let api = Apiserver::new(VirtualClock::default());
        let cm = api.resource("", "v1", "configmaps").unwrap();
        for i in 0..5 {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{i}")}, "data": {"i": i.to_string()}});
            api.create(&cm, "default", body, &WriteOptions::manager("m"))
                .unwrap();
        }
        let opts = ListOptions {
            limit: Some(2),
            ..ListOptions::default()
        };
        let built = api.list(&cm, Some("default"), &opts).unwrap();
        let page = api.list_page(&cm, Some("default"), &opts).unwrap();
        assert!(page.continue_token.is_some());
        let mut want = built.clone();
        for item in want["items"].as_array_mut().unwrap() {
            let m = item.as_object_mut().unwrap();
            m.remove("apiVersion");
            m.remove("kind");
        }
        assert_eq!(parse(&list_to_json(&cm, &page, false)), want);
        let items: Vec<Value> = built["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(metadata_only)
            .collect();
        let want = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": built["metadata"], "items": items});
        assert_eq!(parse(&list_to_json(&cm, &page, true)), want);
    }
}
