//! RFC 6902 JSON patch with the quirks of the real server (evanphx/json-patch): a `test` of a
//! missing path against `null` succeeds, and `-` appends to arrays.

use serde_json::Value;

use crate::status::ApiError;

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn parse_pointer(p: &str) -> Result<Vec<String>, ApiError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer: {p:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn op_failed(message: String) -> ApiError {
    ApiError::new(422, "Invalid", message)
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    path: &[String],
    raw: &str,
) -> Result<(&'a mut Value, String), ApiError> {
    let Some((last, parents)) = path.split_last() else {
        return Err(op_failed(format!(
            "cannot operate on the document root: {raw}"
        )));
    };
    let mut cur = doc;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| op_failed(format!("doc is missing path: \"{raw}\": missing value")))?;
    }
    Ok((cur, last.clone()))
}

fn add(doc: &mut Value, path: &[String], raw: &str, value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path, raw)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                index(&last, a.len() + 1, raw)?
            };
            a.insert(idx, value);
        }
        _ => {
            return Err(op_failed(format!(
                "doc is missing path: \"{raw}\": missing value"
            )))
        }
    }
    Ok(())
}

fn index(seg: &str, len: usize, raw: &str) -> Result<usize, ApiError> {
    let i: i64 = seg
        .parse()
        .map_err(|_| op_failed(format!("invalid array index {seg:?} in {raw}")))?;
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let i = if i < 0 { i + len_i - 1 + 1 } else { i };
    if i < 0 || i >= len_i {
        return Err(op_failed(format!("unable to access invalid index: {seg}")));
    }
    usize::try_from(i).map_err(|_| op_failed(format!("unable to access invalid index: {seg}")))
}

fn remove(doc: &mut Value, path: &[String], raw: &str) -> Result<Value, ApiError> {
    let (parent, last) = parent_mut(doc, path, raw)?;
    let missing = || op_failed(format!("doc is missing path: \"{raw}\": missing value"));
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = index(&last, a.len(), raw)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Applies an RFC 6902 patch document to `doc`.
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let name = op["op"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request("json patch operation without \"op\""))?;
        let raw = op["path"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request(format!("json patch {name} without \"path\"")))?;
        let path = parse_pointer(raw)?;
        match name {
            "add" => add(
                doc,
                &path,
                raw,
                op.get("value").cloned().unwrap_or(Value::Null),
            )?,
            "remove" => {
                remove(doc, &path, raw)?;
            }
            "replace" => {
                if get(doc, &path).is_none() {
                    return Err(op_failed(format!("replace operation does not apply: doc is missing key: {raw}: missing value")));
                }
                if path.is_empty() {
                    *doc = op.get("value").cloned().unwrap_or(Value::Null);
                } else {
                    remove(doc, &path, raw)?;
                    add(
                        doc,
                        &path,
                        raw,
                        op.get("value").cloned().unwrap_or(Value::Null),
                    )?;
                }
            }
            "move" | "copy" => {
                let from_raw = op["from"].as_str().ok_or_else(|| {
                    ApiError::bad_request(format!("json patch {name} without \"from\""))
                })?;
                let from = parse_pointer(from_raw)?;
                let value = if name == "move" {
                    remove(doc, &from, from_raw)?
                } else {
                    get(doc, &from).cloned().ok_or_else(|| {
                        op_failed(format!(
                            "doc is missing from path: \"{from_raw}\": missing value"
                        ))
                    })?
                };
                add(doc, &path, raw, value)?;
            }
            "test" => {
                let want = op.get("value").unwrap_or(&Value::Null);
                let have = get(doc, &path).unwrap_or(&Value::Null);
                if have != want {
                    return Err(op_failed(format!(
                        "testing value {raw} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected json patch operation {other:?}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finalizer_helper_patch_works_on_missing_path() {
        let mut doc = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]}
        ]);
        apply_json_patch(&mut doc, &patch).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["a/b"]));
        let again = apply_json_patch(&mut doc, &patch).unwrap_err();
        assert_eq!(again.code, 422);
    }

    #[test]
    fn add_remove_replace_move_copy() {
        let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
        apply_json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "remove", "path": "/a/1"},
                {"op": "replace", "path": "/b/c", "value": 2},
                {"op": "copy", "from": "/b", "path": "/d"},
                {"op": "move", "from": "/b/c", "path": "/e~1f"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"a": [0, 2, 3], "b": {}, "d": {"c": 2}, "e/f": 2})
        );
        assert!(apply_json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(apply_json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/nope", "value": 1}])
        )
        .is_err());
    }
}
