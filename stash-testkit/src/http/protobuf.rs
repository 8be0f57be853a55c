//! Just enough of the Kubernetes protobuf encoding to accept what kubectl's typed
//! generators send (`kubectl create namespace|configmap|secret|serviceaccount`): newer kubectl versions
//! POST these as `application/vnd.kubernetes.protobuf`. The body is turned into the same
//! JSON a client would have sent; other kinds stay unsupported (415).

use base64::Engine;
use serde_json::{json, Map, Value};

/// A protobuf field value: varint, or length-delimited bytes.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Iterates over `(field number, value)` pairs; `None` on malformed input.
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(varint(&mut buf)?),
            1 => {
                buf = buf.get(8..)?;
                continue;
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (data, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Field::Bytes(data)
            }
            5 => {
                buf = buf.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((number, value));
    }
    Some(out)
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// A `map<string, string|bytes>` entry; bytes values are base64-encoded (as JSON has them).
fn map_entry(b: &[u8], base64_values: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = text(k)?,
            (2, Field::Bytes(v)) if base64_values => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(v))
            }
            (2, Field::Bytes(v)) => value = json!(text(v)?),
            _ => {}
        }
    }
    Some((key, value))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(v) = f else { continue };
        match n {
            1 => {
                meta.insert("name".into(), json!(text(v)?));
            }
            2 => {
                meta.insert("generateName".into(), json!(text(v)?));
            }
            3 => {
                meta.insert("namespace".into(), json!(text(v)?));
            }
            11 => {
                let (k, val) = map_entry(v, false)?;
                labels.insert(k, val);
            }
            12 => {
                let (k, val) = map_entry(v, false)?;
                annotations.insert(k, val);
            }
            14 => finalizers.push(json!(text(v)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(meta))
}

fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Option<Value> {
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let mut data = Map::new();
    let mut binary = Map::new();
    let mut string_data = Map::new();
    for (n, f) in fields(raw)? {
        match (kind, n, f) {
            (_, 1, Field::Bytes(m)) => obj["metadata"] = object_meta(m)?,
            ("ConfigMap", 2, Field::Bytes(e)) => {
                let (k, v) = map_entry(e, false)?;
                data.insert(k, v);
            }
            ("ConfigMap", 3, Field::Bytes(e)) => {
                let (k, v) = map_entry(e, true)?;
                binary.insert(k, v);
            }
            ("ConfigMap", 4, Field::Varint(i)) | ("Secret", 5, Field::Varint(i)) => {
                obj["immutable"] = json!(i != 0)
            }
            ("Secret", 2, Field::Bytes(e)) => {
                let (k, v) = map_entry(e, true)?;
                data.insert(k, v);
            }
            ("Secret", 3, Field::Bytes(t)) => obj["type"] = json!(text(t)?),
            ("Secret", 4, Field::Bytes(e)) => {
                let (k, v) = map_entry(e, false)?;
                string_data.insert(k, v);
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        obj["binaryData"] = Value::Object(binary);
    }
    if !string_data.is_empty() {
        obj["stringData"] = Value::Object(string_data);
    }
    Some(obj)
}

/// Decodes a `k8s\0`-framed protobuf body of a Namespace, ConfigMap, Secret or
/// ServiceAccount into JSON.
pub fn decode(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm)? {
                    match (m, g) {
                        (1, Field::Bytes(v)) => api_version = text(v)?,
                        (2, Field::Bytes(v)) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount") => {
            decode_object(&api_version, &kind, raw)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    #[test]
    fn decodes_a_secret_as_kubectl_sends_it() {
        let mut meta = Vec::new();
        bytes_field(1, b"creds", &mut meta);
        bytes_field(11, &entry("app", b"db"), &mut meta);
        let mut secret = Vec::new();
        bytes_field(1, &meta, &mut secret);
        bytes_field(2, &entry("password", b"s3cret"), &mut secret);
        bytes_field(3, b"Opaque", &mut secret);
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"Secret", &mut type_meta);
        let mut unknown = b"k8s\0".to_vec();
        bytes_field(1, &type_meta, &mut unknown);
        bytes_field(2, &secret, &mut unknown);
        let obj = decode(&unknown).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "labels": {"app": "db"}},
                   "data": {"password": "czNjcmV0"}, "type": "Opaque"})
        );
        assert!(decode(b"k8s\0\x0a\x03bad").is_none());
        assert!(decode(b"not protobuf").is_none());
    }
}
