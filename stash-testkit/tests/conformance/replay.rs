//! A replayer for `stash-conformance/1` recordings (format, normalization and compare rules in
//! `shared/conformance/README.md`): sends each scenario's exchanges in order to a server and
//! judges the normalized answers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::task::JoinHandle;

/// One HTTP answer, raw.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub warnings: Vec<String>,
    pub body: Value,
}

/// The verdict on one exchange.
#[derive(Debug)]
pub struct Verdict {
    pub scenario: String,
    pub step: String,
    /// Empty when the exchange matched.
    pub differences: Vec<String>,
}

/// Resourceversion ordinals of one scenario: uid → versions in order of first sight.
type Ordinals = HashMap<String, Vec<String>>;

// ---------------------------------------------------------------- pointers

#[derive(Debug, Clone)]
enum Seg {
    Star,
    Filter(String, String),
    Name(String),
}

fn parse_pointer(p: &str) -> Vec<Seg> {
    if p.is_empty() {
        return Vec::new();
    }
    p.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if s == "*" {
                Seg::Star
            } else if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                let (k, v) = inner.split_once('=').unwrap_or((inner, ""));
                Seg::Filter(k.to_string(), v.to_string())
            } else {
                Seg::Name(s.replace("~1", "/").replace("~0", "~"))
            }
        })
        .collect()
}

/// A concrete step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

/// Evaluates a pointer to the concrete paths it selects (`None` = ABSENT).
fn select_paths(doc: &Value, pointer: &str) -> Vec<Option<Vec<Step>>> {
    let mut current: Vec<Option<(Vec<Step>, &Value)>> = vec![Some((Vec::new(), doc))];
    for seg in parse_pointer(pointer) {
        let mut next = Vec::new();
        for cur in current {
            let Some((path, v)) = cur else {
                next.push(None);
                continue;
            };
            let child = |step: Step, val: &Value| {
                let mut p = path.clone();
                p.push(step);
                (p, val.clone())
            };
            match (&seg, v) {
                (Seg::Star, Value::Array(a)) => {
                    for (i, e) in a.iter().enumerate() {
                        let (p, _) = child(Step::Index(i), e);
                        next.push(Some((p, e)));
                    }
                }
                (Seg::Star, Value::Object(o)) => {
                    let mut keys: Vec<&String> = o.keys().collect();
                    keys.sort();
                    for k in keys {
                        let mut p = path.clone();
                        p.push(Step::Key(k.clone()));
                        next.push(Some((p, &o[k])));
                    }
                }
                (Seg::Filter(k, want), Value::Array(a)) => {
                    for (i, e) in a.iter().enumerate() {
                        if e.get(k).and_then(Value::as_str) == Some(want.as_str()) {
                            let mut p = path.clone();
                            p.push(Step::Index(i));
                            next.push(Some((p, e)));
                        }
                    }
                }
                (Seg::Name(n), Value::Object(o)) => match o.get(n) {
                    Some(c) => {
                        let mut p = path.clone();
                        p.push(Step::Key(n.clone()));
                        next.push(Some((p, c)));
                    }
                    None => next.push(None),
                },
                (Seg::Name(n), Value::Array(a)) => match n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| a.get(i).map(|c| (i, c)))
                {
                    Some((i, c)) => {
                        let mut p = path.clone();
                        p.push(Step::Index(i));
                        next.push(Some((p, c)));
                    }
                    None => next.push(None),
                },
                _ => next.push(None),
            }
        }
        current = next;
    }
    current.into_iter().map(|c| c.map(|(p, _)| p)).collect()
}

fn get_path<'a>(doc: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, s| match s {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(*i),
    })
}

fn get_path_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, s| match s {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// The value list of a pointer (`None` = ABSENT).
fn select(doc: &Value, pointer: &str) -> Vec<Option<Value>> {
    select_paths(doc, pointer)
        .into_iter()
        .map(|p| p.and_then(|p| get_path(doc, &p).cloned()))
        .collect()
}

// ---------------------------------------------------------------- equality and diffs

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 400 {
        let cut: String = s.chars().take(400).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn diff(path: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
    if json_eq(expected, got) {
        return;
    }
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let mut keys: Vec<&String> = e.keys().chain(g.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (e.get(k), g.get(k)) {
                    (Some(ev), Some(gv)) => diff(&p, ev, gv, out),
                    (Some(ev), None) => {
                        out.push(format!("{p}: expected {}, got nothing", short(ev)))
                    }
                    (None, Some(gv)) => {
                        out.push(format!("{p}: expected nothing, got {}", short(gv)))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                diff(&format!("{path}/{i}"), ev, gv, out);
            }
        }
        _ => out.push(format!(
            "{}: expected {}, got {}",
            if path.is_empty() { "(body)" } else { path },
            short(expected),
            short(got)
        )),
    }
}

fn list_eq(a: &[Option<Value>], b: &[Option<Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => json_eq(x, y),
            (None, None) => true,
            _ => false,
        })
}

fn show_list(l: &[Option<Value>]) -> String {
    let items: Vec<String> = l
        .iter()
        .map(|v| v.as_ref().map_or_else(|| "ABSENT".to_string(), short))
        .collect();
    format!("[{}]", items.join(", "))
}

// ---------------------------------------------------------------- normalization

fn is_uuid_at(b: &[u8], i: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut pos = i;
    for (n, len) in GROUPS.iter().enumerate() {
        if n > 0 {
            if b.get(pos) != Some(&b'-') {
                return false;
            }
            pos += 1;
        }
        for _ in 0..*len {
            if !b.get(pos).is_some_and(u8::is_ascii_hexdigit) {
                return false;
            }
            pos += 1;
        }
    }
    true
}

fn replace_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if is_uuid_at(b, i) {
            out.push_str("<uid>");
            i += 36;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn replace_hashes(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("hash=") {
        out.push_str(&rest[..at + 5]);
        let after = &rest[at + 5..];
        let n = after.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if n > 0 {
            out.push_str("<hash>");
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    let tz = &s[i..];
    tz == "Z"
        || (tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[1..3].iter().all(u8::is_ascii_digit)
            && tz.as_bytes()[3] == b':'
            && tz.as_bytes()[4..6].iter().all(u8::is_ascii_digit))
}

fn assign_ordinal(obj: &mut Value, ordinals: &mut Ordinals) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let uid = meta.get("uid").and_then(Value::as_str).map(String::from);
    let rv = meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let (Some(uid), Some(rv)) = (uid, rv) {
        let seen = ordinals.entry(uid).or_default();
        let n = match seen.iter().position(|r| *r == rv) {
            Some(p) => p + 1,
            None => {
                seen.push(rv);
                seen.len()
            }
        };
        meta.insert("resourceVersion".into(), Value::String(format!("<rv:{n}>")));
    }
}

fn visit_ordinals(obj: &mut Value, ordinals: &mut Ordinals) {
    assign_ordinal(obj, ordinals);
    if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            visit_ordinals(item, ordinals);
        }
    }
    if let Some(rows) = obj.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(o) = row.get_mut("object") {
                visit_ordinals(o, ordinals);
            }
        }
    }
}

fn walk(v: &mut Value, member: Option<&str>, keep_messages: bool) {
    match v {
        Value::String(s) => {
            if member == Some("uid") {
                *s = "<uid>".into();
            } else if is_timestamp(s) {
                *s = "<time>".into();
            } else {
                *s = replace_hashes(&replace_uuids(s));
            }
        }
        Value::Array(a) => {
            for e in a.iter_mut() {
                walk(e, None, keep_messages);
            }
            if member == Some("verbs") && a.iter().all(Value::is_string) {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
            if member == Some("managedFields") {
                let key = |e: &Value| {
                    let f = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (f("operation"), f("manager"), f("subresource"))
                };
                a.sort_by_key(key);
            }
        }
        Value::Object(o) => {
            let old = std::mem::take(o);
            for (k, mut val) in old {
                if k == "selfLink" {
                    continue;
                }
                walk(&mut val, Some(&k), keep_messages);
                o.insert(replace_uuids(&k), val);
            }
            if member == Some("metadata") {
                normalize_metadata(o);
            }
            let kind = o.get("kind").and_then(Value::as_str).map(String::from);
            if kind.as_deref() == Some("Status") && o.get("status").is_some_and(Value::is_string) {
                normalize_status(o, keep_messages);
            }
            if kind.as_deref() == Some("Table") {
                normalize_table(o);
            }
        }
        _ => {}
    }
}

fn normalize_metadata(meta: &mut Map<String, Value>) {
    if let Some(Value::String(rv)) = meta.get_mut("resourceVersion") {
        let ordinal = rv.starts_with("<rv:") && rv.ends_with('>');
        if !rv.is_empty() && !ordinal {
            *rv = "<rv>".into();
        }
    }
    if let Some(Value::String(c)) = meta.get_mut("continue") {
        if !c.is_empty() {
            *c = "<continue>".into();
        }
    }
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .map(String::from);
    if let (Some(g), Some(Value::String(name))) = (generate, meta.get_mut("name")) {
        if name.starts_with(&g) && name.len() > g.len() {
            *name = format!("{g}<suffix>");
        }
    }
}

fn normalize_status(o: &mut Map<String, Value>, keep_messages: bool) {
    if !keep_messages {
        o.remove("message");
    }
    let mut empty = false;
    if let Some(Value::Object(details)) = o.get_mut("details") {
        if let Some(Value::Array(causes)) = details.get_mut("causes") {
            if !keep_messages {
                for c in causes.iter_mut() {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("message");
                    }
                }
            }
            let mut kept: Vec<Value> = Vec::new();
            for c in causes.drain(..) {
                if !kept.iter().any(|k| json_eq(k, &c)) {
                    kept.push(c);
                }
            }
            *causes = kept;
        }
        empty = details.is_empty();
    }
    if empty {
        o.remove("details");
    }
}

fn normalize_table(o: &mut Map<String, Value>) {
    let mut age = None;
    if let Some(Value::Array(cols)) = o.get_mut("columnDefinitions") {
        for (i, c) in cols.iter_mut().enumerate() {
            if let Some(c) = c.as_object_mut() {
                c.remove("description");
                if c.get("name").and_then(Value::as_str) == Some("Age") {
                    age = Some(i);
                }
            }
        }
    }
    if let (Some(i), Some(Value::Array(rows))) = (age, o.get_mut("rows")) {
        for row in rows {
            if let Some(cell) = row
                .get_mut("cells")
                .and_then(Value::as_array_mut)
                .and_then(|c| c.get_mut(i))
            {
                *cell = Value::String("<age>".into());
            }
        }
    }
}

fn remove_path(doc: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        *doc = Value::Null;
        return;
    };
    match (get_path_mut(doc, parent), last) {
        (Some(Value::Object(o)), Step::Key(k)) => {
            o.remove(k);
        }
        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Normalizes a raw body by the README's rules.
fn normalize(raw: &Value, opts: &Value, stream: bool, ordinals: &mut Ordinals) -> Value {
    let mut body = raw.clone();
    // 1. Selection options.
    for keep in opts
        .get("keepItems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pointer = keep.get("pointer").and_then(Value::as_str).unwrap_or("");
        let key = keep.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<Value> = keep
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for path in select_paths(&body, pointer).into_iter().flatten() {
            if let Some(Value::Array(a)) = get_path_mut(&mut body, &path) {
                a.retain(|e| {
                    select(e, key)
                        .into_iter()
                        .flatten()
                        .any(|v| values.iter().any(|w| json_eq(&v, w)))
                });
            }
        }
    }
    for keep in opts
        .get("keepKeys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pointer = keep.get("pointer").and_then(Value::as_str).unwrap_or("");
        let keys: Vec<&str> = keep
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for path in select_paths(&body, pointer).into_iter().flatten() {
            if let Some(Value::Object(o)) = get_path_mut(&mut body, &path) {
                o.retain(|k, _| keys.contains(&k.as_str()));
            }
        }
    }
    // 2. resourceVersion ordinals.
    if stream {
        if let Value::Array(events) = &mut body {
            for ev in events {
                if let Some(o) = ev.get_mut("object") {
                    visit_ordinals(o, ordinals);
                }
            }
        }
    } else {
        visit_ordinals(&mut body, ordinals);
    }
    // 3. Generic walk.
    let keep_messages = opts.get("keepMessages").and_then(Value::as_bool) == Some(true);
    walk(&mut body, None, keep_messages);
    // 4. Streams: runs of identical bookmarks count once.
    if stream {
        if let Value::Array(events) = &mut body {
            let mut kept: Vec<Value> = Vec::new();
            for ev in events.drain(..) {
                let bookmark = ev.get("type").and_then(Value::as_str) == Some("BOOKMARK");
                if bookmark && kept.last().is_some_and(|l| json_eq(l, &ev)) {
                    continue;
                }
                kept.push(ev);
            }
            *events = kept;
        }
    }
    // 5. Final options.
    let mut drops: Vec<Vec<Step>> = Vec::new();
    for p in opts
        .get("drop")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        drops.extend(
            select_paths(&body, p.as_str().unwrap_or(""))
                .into_iter()
                .flatten(),
        );
    }
    drops.sort();
    drops.dedup();
    for path in drops.iter().rev() {
        remove_path(&mut body, path);
    }
    for p in opts
        .get("placeholder")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for path in select_paths(&body, p.as_str().unwrap_or(""))
            .into_iter()
            .flatten()
        {
            let Some((Step::Key(last), parent)) = path.split_last() else {
                continue;
            };
            if let Some(Value::Object(o)) = get_path_mut(&mut body, parent) {
                if let Some(v) = o.get_mut(last) {
                    *v = Value::String("<value>".into());
                }
            }
        }
    }
    body
}

// ---------------------------------------------------------------- judging

fn judge(ex: &Value, got: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    let expected = ex.get("expected").cloned().unwrap_or(Value::Null);
    let want_status = expected.get("status").and_then(Value::as_u64).unwrap_or(0);
    if u64::from(got.status) != want_status {
        out.push(format!(
            "status: expected {want_status}, got {}",
            got.status
        ));
    }
    let want_body = expected.get("body").cloned().unwrap_or(Value::Null);
    let compare = ex.get("compare").cloned().unwrap_or(Value::Null);
    match compare.get("body") {
        Some(Value::String(s)) if s == "exact" => diff("", &want_body, &got.body, &mut out),
        Some(Value::Array(pointers)) => {
            for p in pointers.iter().filter_map(Value::as_str) {
                let (e, g) = (select(&want_body, p), select(&got.body, p));
                if list_eq(&e, &g) {
                    continue;
                }
                if e.len() == g.len() {
                    // Same shape: say where inside the selected values they differ.
                    for (i, pair) in e.iter().zip(&g).enumerate() {
                        match pair {
                            (Some(ev), Some(gv)) => diff(&format!("{p}[{i}]"), ev, gv, &mut out),
                            (ev, gv) if ev.is_some() != gv.is_some() => out.push(format!(
                                "{p}[{i}]: expected {}, got {}",
                                show_list(std::slice::from_ref(ev)),
                                show_list(std::slice::from_ref(gv))
                            )),
                            _ => {}
                        }
                    }
                } else {
                    out.push(format!(
                        "{p}: expected {}, got {}",
                        show_list(&e),
                        show_list(&g)
                    ));
                }
            }
        }
        _ => {}
    }
    if compare.get("warnings").and_then(Value::as_bool) == Some(true) {
        let want: Vec<String> = expected
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(String::from))
            .collect();
        if want != got.warnings {
            out.push(format!(
                "warnings: expected {want:?}, got {:?}",
                got.warnings
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- sending

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Replaces `{{capture:NAME}}`; `Err(NAME)` for a name never captured.
fn substitute(s: &str, vars: &HashMap<String, String>, encode: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("{{capture:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 10..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| name.to_string())?;
        out.push_str(&if encode {
            percent_encode(value)
        } else {
            value.clone()
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_json(v: &Value, vars: &HashMap<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(s, vars, false)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|e| substitute_json(e, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, e) in o {
                m.insert(k.clone(), substitute_json(e, vars)?);
            }
            Value::Object(m)
        }
        other => other.clone(),
    })
}

/// A request ready to send.
#[derive(Debug, Clone)]
struct Prepared {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    stream: bool,
}

fn prepare(ex: &Value, vars: &HashMap<String, String>) -> Result<Prepared, String> {
    let path = substitute(ex["path"].as_str().unwrap_or("/"), vars, true)
        .map_err(|n| format!("capture {n:?} was never captured"))?;
    let headers = ex
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let body = if let Some(b) = ex.get("body") {
        let b =
            substitute_json(b, vars).map_err(|n| format!("capture {n:?} was never captured"))?;
        Some(b.to_string().into_bytes())
    } else if let Some(t) = ex.get("bodyText").and_then(Value::as_str) {
        Some(
            substitute(t, vars, false)
                .map_err(|n| format!("capture {n:?} was never captured"))?
                .into_bytes(),
        )
    } else {
        None
    };
    Ok(Prepared {
        method: ex["method"].as_str().unwrap_or("GET").to_string(),
        path,
        headers,
        body,
        stream: ex.get("stream").and_then(Value::as_bool) == Some(true),
    })
}

fn parse_body(bytes: &[u8], stream: bool, status: u16) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if stream && status == 200 {
        let text = String::from_utf8_lossy(bytes);
        return Value::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({"$text": l}))
                })
                .collect(),
        );
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => {
            let text: String = String::from_utf8_lossy(bytes).chars().take(2000).collect();
            serde_json::json!({ "$text": text })
        }
    }
}

fn stream_deadline(path: &str) -> Duration {
    let secs = path
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("timeoutSeconds="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(secs + 15)
}

/// Sends a request; `headers_arrived` fires once the response head is in.
async fn send(
    base: &str,
    req: Prepared,
    headers_arrived: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Answer, String> {
    let addr = base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(&req.path)
        .header("Host", &addr)
        .header("Accept-Encoding", "identity");
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let body = req.body.clone().unwrap_or_default();
    let request = builder
        .body(axum::body::Body::from(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .map_err(|_| "no response head within 30 s".to_string())?
        .map_err(|e| format!("send: {e}"))?;
    if let Some(tx) = headers_arrived {
        let _ = tx.send(());
    }
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let limit = if req.stream {
        stream_deadline(&req.path)
    } else {
        Duration::from_secs(30)
    };
    let body = axum::body::Body::new(response.into_body());
    let bytes = tokio::time::timeout(limit, axum::body::to_bytes(body, 64 * 1024 * 1024))
        .await
        .map_err(|_| format!("the response did not end within {} s", limit.as_secs()))?
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok(Answer {
        status,
        warnings,
        body: parse_body(&bytes, req.stream, status),
    })
}

// ---------------------------------------------------------------- scenarios

fn capture(ex: &Value, raw: &Value, vars: &mut HashMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, pointer) in ex
        .get("capture")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let p = pointer.as_str().unwrap_or("");
        match select(raw, p).as_slice() {
            [Some(Value::String(s))] => {
                vars.insert(name.clone(), s.clone());
            }
            [Some(v)] => {
                vars.insert(name.clone(), v.to_string());
            }
            other => problems.push(format!(
                "capture {name} ({p}) selected {} instead of exactly one value",
                show_list(other)
            )),
        }
    }
    problems
}

fn poll_done(ex: &Value, answer: &Answer, ordinals: &Ordinals) -> bool {
    let expected = &ex["expected"];
    if Some(u64::from(answer.status)) != expected.get("status").and_then(Value::as_u64) {
        return false;
    }
    let opts = ex.get("normalize").cloned().unwrap_or(Value::Null);
    let mut probe = ordinals.clone();
    let body = normalize(&answer.body, &opts, false, &mut probe);
    let want = expected.get("body").cloned().unwrap_or(Value::Null);
    ex["poll"]
        .get("until")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .all(|p| list_eq(&select(&body, p), &select(&want, p)))
}

struct Background {
    ex: Value,
    handle: JoinHandle<Result<Answer, String>>,
}

fn finish_answer(
    scenario: &str,
    ex: &Value,
    answer: Result<Answer, String>,
    ordinals: &mut Ordinals,
    vars: &mut HashMap<String, String>,
    mut extra: Vec<String>,
) -> Verdict {
    let step = ex["step"].as_str().unwrap_or("?").to_string();
    let mut differences = Vec::new();
    match answer {
        Ok(raw) => {
            let opts = ex.get("normalize").cloned().unwrap_or(Value::Null);
            let stream =
                ex.get("stream").and_then(Value::as_bool) == Some(true) && raw.status == 200;
            let body = normalize(&raw.body, &opts, stream, ordinals);
            let normalized = Answer {
                status: raw.status,
                warnings: raw.warnings.clone(),
                body,
            };
            differences.append(&mut extra);
            differences.extend(judge(ex, &normalized));
            differences.extend(capture(ex, &raw.body, vars));
        }
        Err(e) => differences.push(format!("not sent or not answered: {e}")),
    }
    Verdict {
        scenario: scenario.to_string(),
        step,
        differences,
    }
}

/// Replays one scenario against the server at `base` (`http://host:port`).
pub async fn replay_scenario(base: &str, doc: &Value) -> Vec<Verdict> {
    let scenario = doc["scenario"].as_str().unwrap_or("?").to_string();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut ordinals = Ordinals::new();
    let mut background: BTreeMap<String, Background> = BTreeMap::new();
    let mut verdicts = Vec::new();
    let exchanges = doc["exchanges"].as_array().cloned().unwrap_or_default();
    for ex in &exchanges {
        for join in ex
            .get("join")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(bg) = join.as_str().and_then(|s| background.remove(s)) else {
                continue;
            };
            let answer = bg
                .handle
                .await
                .unwrap_or_else(|e| Err(format!("task: {e}")));
            verdicts.push(finish_answer(
                &scenario,
                &bg.ex,
                answer,
                &mut ordinals,
                &mut vars,
                Vec::new(),
            ));
        }
        let step = ex["step"].as_str().unwrap_or("?").to_string();
        let prepared = match prepare(ex, &vars) {
            Ok(p) => p,
            Err(e) => {
                verdicts.push(Verdict {
                    scenario: scenario.clone(),
                    step,
                    differences: vec![e],
                });
                continue;
            }
        };
        if ex.get("background").and_then(Value::as_bool) == Some(true) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let base = base.to_string();
            let handle = tokio::spawn(async move { send(&base, prepared, Some(tx)).await });
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
            background.insert(
                step,
                Background {
                    ex: ex.clone(),
                    handle,
                },
            );
            continue;
        }
        let mut extra = Vec::new();
        let answer = if let Some(poll) = ex.get("poll") {
            let timeout = Duration::from_secs(
                poll.get("timeoutSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(30),
            );
            let interval = Duration::from_millis(
                poll.get("intervalMs")
                    .and_then(Value::as_u64)
                    .unwrap_or(250),
            );
            let start = Instant::now();
            loop {
                let answer = send(base, prepared.clone(), None).await;
                let done = answer.as_ref().is_ok_and(|a| poll_done(ex, a, &ordinals));
                if done {
                    break answer;
                }
                if start.elapsed() >= timeout {
                    extra.push("poll timed out".to_string());
                    break answer;
                }
                tokio::time::sleep(interval).await;
            }
        } else {
            send(base, prepared, None).await
        };
        verdicts.push(finish_answer(
            &scenario,
            ex,
            answer,
            &mut ordinals,
            &mut vars,
            extra,
        ));
    }
    for (_, bg) in std::mem::take(&mut background) {
        let answer = bg
            .handle
            .await
            .unwrap_or_else(|e| Err(format!("task: {e}")));
        verdicts.push(finish_answer(
            &scenario,
            &bg.ex,
            answer,
            &mut ordinals,
            &mut vars,
            Vec::new(),
        ));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_select_lists() {
        let doc =
            json!({"a": [{"type": "X", "s": 1}, {"type": "Y", "s": 2}], "o": {"b": 2, "a": 1}});
        assert_eq!(select(&doc, "/a/[type=Y]/s"), vec![Some(json!(2))]);
        assert_eq!(select(&doc, "/o/*"), vec![Some(json!(1)), Some(json!(2))]);
        assert_eq!(select(&doc, "/missing/*"), vec![None]);
        assert_eq!(
            select(&json!({"a": []}), "/a/*"),
            Vec::<Option<Value>>::new()
        );
    }

    #[test]
    fn normalization_replaces_volatile_values() {
        let raw = json!({"kind": "ConfigMap", "metadata": {"uid": "0d9b6a1e-3a57-4c2b-9c87-0123456789ab",
            "resourceVersion": "17", "creationTimestamp": "2026-01-02T03:04:05Z", "selfLink": "x"},
            "data": {"u": "id 0d9b6a1e-3a57-4c2b-9c87-0123456789ab", "h": "/x?hash=ABC123"}});
        let mut ord = Ordinals::new();
        let n = normalize(&raw, &Value::Null, false, &mut ord);
        assert_eq!(
            n["metadata"],
            json!({"uid": "<uid>", "resourceVersion": "<rv:1>", "creationTimestamp": "<time>"})
        );
        assert_eq!(n["data"], json!({"u": "id <uid>", "h": "/x?hash=<hash>"}));
        let mut raw2 = raw.clone();
        raw2["metadata"]["resourceVersion"] = json!("18");
        assert_eq!(
            normalize(&raw2, &Value::Null, false, &mut ord)["metadata"]["resourceVersion"],
            json!("<rv:2>")
        );
        assert_eq!(
            normalize(&raw, &Value::Null, false, &mut ord)["metadata"]["resourceVersion"],
            json!("<rv:1>")
        );
    }

    #[test]
    fn status_messages_are_dropped_and_causes_deduplicated() {
        let raw = json!({"kind": "Status", "status": "Failure", "message": "m", "code": 422,
            "details": {"causes": [{"reason": "FieldValueInvalid", "field": "spec.a", "message": "x"},
                                   {"reason": "FieldValueInvalid", "field": "spec.a", "message": "y"}]}});
        let n = normalize(&raw, &Value::Null, false, &mut Ordinals::new());
        assert_eq!(
            n,
            json!({"kind": "Status", "status": "Failure", "code": 422,
            "details": {"causes": [{"reason": "FieldValueInvalid", "field": "spec.a"}]}})
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!(true), &json!(1)));
    }
}
