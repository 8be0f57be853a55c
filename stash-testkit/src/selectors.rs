//! Label and field selectors, parsed from query strings and evaluated against JSON objects.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, SelectorExt};
use serde_json::Value;

use crate::status::ApiError;

/// A parsed label selector (all requirements must hold), matched by kube's `Expression`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Expression>,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h,i`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |t: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: invalid label selector: {t:?}"
            ))
        };
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let valid_values = |vs: &BTreeSet<String>| vs.iter().all(|v| valid_value(v));
            let req = if let Some(k) = term.strip_prefix('!') {
                Expression::DoesNotExist(k.trim().to_string())
            } else if let Some((k, rest)) = split_word(&term, "notin") {
                Expression::NotIn(k, parse_set(&rest).ok_or_else(|| bad(&term))?)
            } else if let Some((k, rest)) = split_word(&term, "in") {
                Expression::In(k, parse_set(&rest).ok_or_else(|| bad(&term))?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Expression::NotEqual(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Expression::Equal(k.trim().to_string(), v.trim().to_string())
            } else {
                Expression::Exists(term.trim().to_string())
            };
            let (key, values_ok) = match &req {
                Expression::Equal(k, v) | Expression::NotEqual(k, v) => (k, valid_value(v)),
                Expression::In(k, vs) | Expression::NotIn(k, vs) => (k, valid_values(vs)),
                Expression::Exists(k) | Expression::DoesNotExist(k) => (k, true),
            };
            if !valid_key(key) || !values_ok {
                return Err(bad(&term));
            }
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Evaluates against a label map (`metadata.labels`).
    pub fn matches_labels(&self, labels: &Value) -> bool {
        let labels: BTreeMap<String, String> = labels
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        self.reqs.iter().all(|req| req.matches(&labels))
    }

    /// The `key=value` requirements: every match carries each of these labels, so a label
    /// index can answer from the smallest of their sets.
    pub fn equalities(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reqs.iter().filter_map(|req| match req {
            Expression::Equal(k, v) => Some((k.as_str(), v.as_str())),
            Expression::In(k, vs) if vs.len() == 1 => vs.first().map(|v| (k.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Evaluates against an object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches_labels(&obj["metadata"]["labels"])
    }
}

fn split_word(term: &str, word: &str) -> Option<(String, String)> {
    let needle = format!(" {word} ");
    let idx = term
        .find(&needle)
        .or_else(|| term.find(&format!(" {word}(")))?;
    let key = term[..idx].trim().to_string();
    let rest = term[idx + 1 + word.len()..].trim().to_string();
    Some((key, rest))
}

fn parse_set(s: &str) -> Option<BTreeSet<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// A parsed field selector (`a=b,c!=d`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses a field selector, rejecting fields the resource does not support.
    pub fn parse(s: &str, supported: &[String]) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let (field, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let field = field.trim().to_string();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported.contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field, equal, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The `metadata.name=X` value, if the selector pins one name.
    pub fn pinned_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, eq, _)| f == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    /// Evaluates against an object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, equal, want)| {
            let mut cur = obj;
            for part in field.split('.') {
                cur = &cur[part];
            }
            let have = match cur {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let sel = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(sel("app=web"));
        assert!(sel("app==web,tier"));
        assert!(!sel("app!=web"));
        assert!(sel("app in (web, db)"));
        assert!(!sel("app notin (web)"));
        assert!(sel("!missing"));
        assert!(!sel("missing"));
        assert!(sel(""));
        assert!(LabelSelector::parse("a=(b").is_err());
    }

    #[test]
    fn field_selector_name_and_unsupported() {
        let obj =
            json!({"metadata": {"name": "x", "namespace": "ns"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("metadata.name=x,metadata.namespace!=other", &[]).unwrap();
        assert!(f.matches(&obj));
        assert_eq!(f.pinned_name(), Some("x"));
        assert!(!FieldSelector::parse("metadata.name=y", &[])
            .unwrap()
            .matches(&obj));
        let err = FieldSelector::parse("status.phase=Running", &[]).unwrap_err();
        assert_eq!(err.message, "field label not supported: status.phase");
        assert!(
            FieldSelector::parse("status.phase=Running", &["status.phase".into()])
                .unwrap()
                .matches(&obj)
        );
    }
}
