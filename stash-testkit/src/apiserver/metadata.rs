//! Validation of labels and annotations, as `ValidateObjectMeta` does it.

use serde_json::Value;

use crate::status::{cause, ApiError, ApiResult, Cause};

const VALUE_HINT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_HINT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn qualified_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Problems with a qualified key (`prefix/name` or `name`), if any.
fn key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !dns_subdomain(p) {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
        }
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    if !qualified_part(name) {
        return Some(NAME_HINT.into());
    }
    None
}

/// Validates a label map at `field`.
pub(super) fn check_labels(labels: &Value, field: &str, causes: &mut Vec<Cause>) -> ApiResult<()> {
    let Some(map) = labels.as_object() else {
        return if labels.is_null() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "{field} must be a map of strings"
            )))
        };
    };
    for (k, v) in map {
        let Some(v) = v.as_str() else {
            return Err(ApiError::bad_request(format!(
                "{field}.{k} must be a string"
            )));
        };
        if let Some(problem) = key_problem(k) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{k}\": {problem}"),
            ));
        }
        if v.len() > 63 {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{v}\": must be no more than 63 characters"),
            ));
        } else if !v.is_empty() && !qualified_part(v) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{v}\": {VALUE_HINT}"),
            ));
        }
    }
    Ok(())
}

/// Validates `metadata.labels` and `metadata.annotations`.
pub(super) fn check_metadata(obj: &Value, causes: &mut Vec<Cause>) -> ApiResult<()> {
    check_labels(&obj["metadata"]["labels"], "metadata.labels", causes)?;
    let annotations = &obj["metadata"]["annotations"];
    if let Some(map) = annotations.as_object() {
        let mut total = 0;
        for (k, v) in map {
            let Some(v) = v.as_str() else {
                return Err(ApiError::bad_request(format!(
                    "metadata.annotations.{k} must be a string"
                )));
            };
            total += k.len() + v.len();
            if let Some(problem) = key_problem(k) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.annotations",
                    format!("Invalid value: \"{k}\": {problem}"),
                ));
            }
        }
        if total > 256 * 1024 {
            causes.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                "Too long: must have at most 262144 bytes",
            ));
        }
    } else if !annotations.is_null() {
        return Err(ApiError::bad_request(
            "metadata.annotations must be a map of strings",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_rules() {
        let mut causes = Vec::new();
        check_labels(
            &json!({"app": "web", "example.com/tier": "", "a/b/c": "x"}),
            "metadata.labels",
            &mut causes,
        )
        .unwrap();
        assert_eq!(causes.len(), 1, "{causes:?}");
        let mut causes = Vec::new();
        check_labels(
            &json!({"ok": "has space", "long": "x".repeat(64)}),
            "metadata.labels",
            &mut causes,
        )
        .unwrap();
        assert_eq!(causes.len(), 2);
        assert!(check_labels(&json!({"n": 1}), "metadata.labels", &mut Vec::new()).is_err());
    }
}
