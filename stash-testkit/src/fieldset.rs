//! Field sets and the `FieldsV1` trie encoding used by `metadata.managedFields`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::patch::schema::{item_key, ListType, MergeSchema};

/// One step in a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key (`f:`).
    Field(String),
    /// An associative-list item, by the compact JSON of its key fields (`k:`).
    Key(String),
    /// A set-list item, by its JSON value (`v:`).
    Value(String),
    /// A list index (`i:`), never produced by apply.
    Index(usize),
}

/// A path into an object.
pub type FieldPath = Vec<PathElement>;
/// A set of owned paths.
pub type FieldSet = BTreeSet<FieldPath>;

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (tag, rest) = s.split_once(':')?;
        Some(match tag {
            "f" => PathElement::Field(rest.to_string()),
            "k" => PathElement::Key(rest.to_string()),
            "v" => PathElement::Value(rest.to_string()),
            "i" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// Renders a path the way conflict messages do: `.spec.containers[name="c"].image`.
pub fn path_string(path: &FieldPath) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Metadata fields that nobody owns.
fn ignored(path: &[PathElement]) -> bool {
    match path {
        [PathElement::Field(f)] if f == "apiVersion" || f == "kind" => true,
        [PathElement::Field(m), PathElement::Field(f), ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "selfLink"
                | "generateName"
        ),
        _ => false,
    }
}

/// Collects the owned-path set of an object: leaves, atomic lists, and list items.
pub fn field_set(obj: &Value, schema: MergeSchema<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    collect(obj, schema, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn collect(
    v: &Value,
    schema: MergeSchema<'_>,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut FieldSet,
) {
    if ignored(path) {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() && (path.is_empty() || !schema.atomic_map(names)) => {
            for (k, child) in m {
                names.push(k.clone());
                path.push(PathElement::Field(k.clone()));
                collect(child, schema, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !path.is_empty() => match schema.list_type(names) {
            ListType::Atomic => {
                out.insert(path.clone());
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(PathElement::Value(item.to_string()));
                    out.insert(p);
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    path.push(PathElement::Key(item_key(item, &keys)));
                    out.insert(path.clone());
                    names.push("[]".into());
                    collect(item, schema, names, path, out);
                    names.pop();
                    path.pop();
                }
            }
        },
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The paths of the maps (objects) inside an object, excluding the root and top-level
/// `metadata`, which always exist. An `Update` owns a map it brings into existence (the `.`
/// entry of a `FieldsV1` node) besides the fields in it.
pub fn map_nodes(obj: &Value, schema: MergeSchema<'_>) -> FieldSet {
    fn walk(
        v: &Value,
        schema: MergeSchema<'_>,
        names: &mut Vec<String>,
        path: &mut FieldPath,
        out: &mut FieldSet,
    ) {
        if ignored(path) {
            return;
        }
        match v {
            Value::Object(m) => {
                let top_metadata =
                    matches!(path.as_slice(), [PathElement::Field(f)] if f == "metadata");
                if !path.is_empty() && !top_metadata {
                    if schema.atomic_map(names) {
                        return;
                    }
                    if !matches!(path.last(), Some(PathElement::Key(_))) {
                        out.insert(path.clone());
                    }
                }
                for (k, child) in m {
                    names.push(k.clone());
                    path.push(PathElement::Field(k.clone()));
                    walk(child, schema, names, path, out);
                    path.pop();
                    names.pop();
                }
            }
            Value::Array(items) if !path.is_empty() => {
                let list_type = schema.list_type(names);
                if !matches!(list_type, ListType::Atomic) {
                    out.insert(path.clone());
                }
                if let ListType::Map(keys) = list_type {
                    for item in items {
                        path.push(PathElement::Key(item_key(item, &keys)));
                        names.push("[]".into());
                        walk(item, schema, names, path, out);
                        names.pop();
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(obj, schema, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// Whether `path` is in `field_set(obj, schema)` or `map_nodes(obj, schema)`: a path some
/// manager may own in `obj`. Walks just that path instead of building both sets.
pub fn contains_path(obj: &Value, path: &[PathElement], schema: MergeSchema<'_>) -> bool {
    fn go(
        v: &Value,
        path: &[PathElement],
        i: usize,
        schema: MergeSchema<'_>,
        names: &mut Vec<String>,
    ) -> bool {
        let Some(step) = path.get(i) else {
            // `v` is at `path` (never the root). `field_set` holds leaves, atomic lists, empty and
            // atomic maps; `map_nodes` the other maps (not top-level metadata, not list items,
            // whose key paths are decided one level up) and the non-atomic lists.
            return match v {
                Value::Object(m) if !m.is_empty() && !schema.atomic_map(names) => {
                    let top_metadata = matches!(path, [PathElement::Field(f)] if f == "metadata");
                    !top_metadata && !matches!(path.last(), Some(PathElement::Key(_)))
                }
                _ => true,
            };
        };
        match step {
            PathElement::Field(f) => {
                let Value::Object(m) = v else { return false };
                if i > 0 && schema.atomic_map(names) {
                    return false;
                }
                let Some(child) = m.get(f) else { return false };
                names.push(f.clone());
                let found = go(child, path, i + 1, schema, names);
                names.pop();
                found
            }
            PathElement::Key(k) => {
                let Value::Array(items) = v else { return false };
                let ListType::Map(keys) = schema.list_type(names) else {
                    return false;
                };
                names.push("[]".into());
                let found = items.iter().any(|item| {
                    item_key(item, &keys) == *k
                        && (i + 1 == path.len() || go(item, path, i + 1, schema, names))
                });
                names.pop();
                found
            }
            PathElement::Value(s) => {
                i + 1 == path.len()
                    && matches!(v, Value::Array(items)
                        if matches!(schema.list_type(names), ListType::Set)
                            && items.iter().any(|item| item.to_string().as_str() == s.as_str()))
            }
            PathElement::Index(_) => false,
        }
    }
    if path.is_empty() || ignored(&path[..1]) || ignored(&path[..path.len().min(2)]) {
        return false;
    }
    go(obj, path, 0, schema, &mut Vec::new())
}

/// Maps that a built-in kind's typed form always has (non-pointer structs), so that no write
/// brings them into existence: `spec`, `status` and the common nested templates.
pub fn always_present(path: &[PathElement]) -> bool {
    let names: Vec<&str> = path
        .iter()
        .map(|pe| match pe {
            PathElement::Field(f) => f.as_str(),
            _ => "[]",
        })
        .collect();
    matches!(
        names.as_slice(),
        ["spec" | "status"]
            | ["spec", "names" | "template" | "strategy" | "jobTemplate"]
            | ["spec", "template" | "jobTemplate", "spec" | "metadata"]
            | ["spec", "jobTemplate", "spec", "template"]
            | [
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec" | "metadata"
            ]
    ) || matches!(
        names.as_slice(),
        [.., "containers" | "initContainers", "[]", "resources"]
    )
}

/// The value at `path`, if present.
pub fn get_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f)?,
            PathElement::Key(k) => {
                let want: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))?
            }
            PathElement::Value(v) => cur.as_array()?.iter().find(|item| item.to_string() == *v)?,
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// Removes the value at `path`; returns whether something was removed.
pub fn remove_at(obj: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for pe in parents {
        let next = match pe {
            PathElement::Field(f) => cur.get_mut(f),
            PathElement::Key(k) => {
                let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return false;
                };
                cur.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|item| want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))
                })
            }
            PathElement::Value(v) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| item.to_string() == *v)),
            PathElement::Index(i) => cur.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match last {
        PathElement::Field(f) => cur.as_object_mut().and_then(|m| m.remove(f)).is_some(),
        PathElement::Key(k) => {
            let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                return false;
            };
            let Some(a) = cur.as_array_mut() else {
                return false;
            };
            let before = a.len();
            a.retain(|item| !want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)));
            a.len() != before
        }
        PathElement::Value(v) => {
            let Some(a) = cur.as_array_mut() else {
                return false;
            };
            let before = a.len();
            a.retain(|item| item.to_string().as_str() != v.as_str());
            a.len() != before
        }
        PathElement::Index(i) => match cur.as_array_mut() {
            Some(a) if *i < a.len() => {
                a.remove(*i);
                true
            }
            _ => false,
        },
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

/// The paths of `set` as a trie of encoded path elements, each path's end marked a member.
fn trie(set: &FieldSet) -> Node {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.encode()).or_default();
        }
        node.member = true;
    }
    root
}

/// Encodes a set as a `FieldsV1` trie.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let root = trie(set);
    fn render(node: &Node) -> Value {
        let mut m = Map::new();
        if node.member && !node.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &node.children {
            m.insert(k.clone(), render(child));
        }
        Value::Object(m)
    }
    render(&root)
}

/// Appends `s` as a JSON string.
pub fn push_json_str(out: &mut String, s: &str) {
    // `serde_json` escapes only quotes, backslashes and control characters.
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // The `Display` of a JSON string is its escaped form.
        out.push_str(&Value::from(s).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Appends the `FieldsV1` trie of `set` as JSON text: the text `to_fields_v1(set).to_string()`
/// gives, without building the JSON value.
pub fn write_fields_v1(out: &mut String, set: &FieldSet) {
    let root = trie(set);
    fn render(out: &mut String, node: &Node) {
        out.push('{');
        let mut first = true;
        if node.member && !node.children.is_empty() {
            // "." sorts before every `f:`, `i:`, `k:` and `v:` key.
            out.push_str("\".\":{}");
            first = false;
        }
        for (k, child) in &node.children {
            if !first {
                out.push(',');
            }
            first = false;
            push_json_str(out, k);
            out.push(':');
            render(out, child);
        }
        out.push('}');
    }
    render(out, &root);
}

/// Decodes a `FieldsV1` trie; unknown element tags are skipped.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let Some(pe) = PathElement::decode(k) else {
                continue;
            };
            path.push(pe);
            walk(child, path, out);
            path.pop();
        }
    }
    walk(v, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trie_round_trip_and_item_nodes() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["x"]}]}});
        let set = field_set(&pod, MergeSchema { custom: None });
        let trie = to_fields_v1(&set);
        assert_eq!(
            trie,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}
            })
        );
        assert_eq!(from_fields_v1(&trie), set);
        let image: FieldPath = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(r#"{"name":"c"}"#.into()),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_string(&image), r#".spec.containers[name="c"].image"#);
        assert_eq!(get_at(&pod, &image), Some(&json!("i")));
        let mut pod2 = pod.clone();
        assert!(remove_at(&mut pod2, &image[..3]));
        assert_eq!(pod2["spec"]["containers"], json!([]));
    }
    /// `contains_path` answers exactly as membership in `field_set ∪ map_nodes` does, for
    /// members and for paths that are not members (under atomic lists and maps, ignored
    /// metadata, missing items, the root).
    #[test]
    fn contains_path_is_membership_of_both_sets() {
        let schema_doc = json!({"properties": {"spec": {"properties": {
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"properties": {"opts": {"type": "object", "x-kubernetes-map-type": "atomic"}}}},
            "free": {"type": "object"}}}}});
        let custom = MergeSchema {
            custom: Some(&schema_doc),
        };
        let builtin = MergeSchema { custom: None };
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"a": "1", "q\"k": "2"},
                "finalizers": ["f", "g"], "ownerReferences": [{"uid": "o", "name": "x"}],
                "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["x", "y"],
                    "env": [{"name": "E", "value": "1"}], "resources": {}},
                {"name": "d", "image": "j"}],
                "volumes": [{"name": "v", "emptyDir": {}}], "nodeSelector": {"k": "v"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let cr = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
            "spec": {"sel": {"a": "1", "b": {"c": "2"}}, "tags": ["t1", "t2"],
                "ports": [{"port": 80, "protocol": "TCP", "opts": {"x": 1}}, {"port": 81}],
                "free": {"deep": {"er": true}, "empty": {}, "list": [1, 2]}}});
        for (obj, schema) in [(&pod, builtin), (&cr, custom)] {
            let members: FieldSet = field_set(obj, schema)
                .union(&map_nodes(obj, schema))
                .cloned()
                .collect();
            assert!(members.len() > 10);
            for p in &members {
                assert!(contains_path(obj, p, schema), "{}", path_string(p));
            }
            // Each member's would-be children and siblings that are not members.
            let mut candidates: FieldSet = FieldSet::new();
            for p in &members {
                for extra in [
                    PathElement::Field("zz".into()),
                    PathElement::Field("a".into()),
                    PathElement::Field("c".into()),
                    PathElement::Key(r#"{"name":"zz"}"#.into()),
                    PathElement::Value("\"zz\"".into()),
                    PathElement::Value("\"x\"".into()),
                    PathElement::Index(0),
                ] {
                    let mut q = p.clone();
                    q.push(extra);
                    candidates.insert(q);
                }
            }
            for name in [
                "name",
                "namespace",
                "uid",
                "managedFields",
                "resourceVersion",
            ] {
                candidates.insert(vec![
                    PathElement::Field("metadata".into()),
                    PathElement::Field(name.into()),
                ]);
            }
            candidates.insert(vec![PathElement::Field("apiVersion".into())]);
            candidates.insert(vec![PathElement::Field("metadata".into())]);
            candidates.insert(Vec::new());
            for q in candidates {
                assert_eq!(
                    contains_path(obj, &q, schema),
                    members.contains(&q),
                    "{}",
                    path_string(&q)
                );
            }
        }
    }

    /// The text written straight from a set is the JSON text of its trie as a value.
    #[test]
    fn fields_v1_text_is_the_trie_serialized() {
        let obj = json!({"metadata": {"labels": {"a": "1", "q\"k": "2", "tab\tkey": "3"},
            "finalizers": ["f\"x", "g"]},
            "spec": {"containers": [{"name": "c\\d", "image": "i", "env": [{"name": "E"}]}]},
            "data": {"": "empty key", "ü": "non-ascii"}});
        let mut set = field_set(&obj, MergeSchema { custom: None });
        set.extend(map_nodes(&obj, MergeSchema { custom: None }));
        set.insert(vec![
            PathElement::Field("list".into()),
            PathElement::Index(3),
        ]);
        set.insert(vec![PathElement::Field("list".into())]);
        let mut text = String::new();
        write_fields_v1(&mut text, &set);
        assert_eq!(text, to_fields_v1(&set).to_string());
        let mut empty = String::new();
        write_fields_v1(&mut empty, &FieldSet::new());
        assert_eq!(empty, "{}");
    }
}
