//! `${VAR}` / `${VAR:=default}` resolution of Function fields, as Stash's resolver does it
//! (`gomodules.xyz/envsubst`): a variable that is present wins even when empty; an absent one
//! takes its default; an absent one without a default is an error naming the variable.

use std::collections::BTreeMap;
use thiserror::Error;

/// Why a template cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    /// A variable without a default that nothing sets.
    #[error("variable ${{{name}}} has no value and no default")]
    Missing {
        /// Variable name.
        name: String,
    },
    /// `${` without a closing `}`.
    #[error("unterminated variable reference in {text:?}")]
    Unterminated {
        /// The template text.
        text: String,
    },
}

/// Variable values, with precedence applied by whoever builds it (later inserts win).
pub type Variables = BTreeMap<String, String>;

/// Substitutes every `${...}` reference in `text`.
pub fn substitute(text: &str, vars: &Variables) -> Result<String, ResolveError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ResolveError::Unterminated {
                text: text.to_string(),
            });
        };
        out.push_str(&expand(&after[..end], vars)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands the inside of one `${...}`.
fn expand(expr: &str, vars: &Variables) -> Result<String, ResolveError> {
    // `:=`, `:-`, `=` and `-` all mean "default when absent": Stash's resolver only passes keys it
    // has, and a key present with an empty value wins over the default (stash.md §3.2).
    for op in [":=", ":-", "=", "-"] {
        if let Some((name, default)) = expr.split_once(op) {
            if is_name(name) {
                return Ok(match vars.get(name) {
                    Some(v) => v.clone(),
                    None => default.to_string(),
                });
            }
        }
    }
    match vars.get(expr) {
        Some(v) => Ok(v.clone()),
        None => Err(ResolveError::Missing {
            name: expr.to_string(),
        }),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[rstest]
    #[case("--args=${args:=--all-databases}", &[], "--args=--all-databases")]
    #[case("--args=${args:=--all-databases}", &[("args", "")], "--args=")]
    #[case("--args=${args:=--all-databases}", &[("args", "--databases db1")], "--args=--databases db1")]
    #[case("--x=${X:-d}", &[], "--x=d")]
    #[case("--x=${X}", &[("X", "v")], "--x=v")]
    #[case("${A}-${B:=b}", &[("A", "a")], "a-b")]
    #[case("no vars", &[], "no vars")]
    #[case("--dir=/stash-tmp", &[], "--dir=/stash-tmp")]
    fn substitutes(#[case] text: &str, #[case] pairs: &[(&str, &str)], #[case] out: &str) {
        assert_eq!(substitute(text, &vars(pairs)).as_deref(), Ok(out));
    }

    #[test]
    fn missing_without_default_names_the_variable() {
        assert_eq!(
            substitute(
                "--storage-secret-name=${REPOSITORY_SECRET_NAME}",
                &vars(&[])
            ),
            Err(ResolveError::Missing {
                name: "REPOSITORY_SECRET_NAME".into()
            })
        );
    }

    #[test]
    fn unterminated_is_an_error() {
        assert!(matches!(
            substitute("${oops", &vars(&[])),
            Err(ResolveError::Unterminated { .. })
        ));
    }
}
