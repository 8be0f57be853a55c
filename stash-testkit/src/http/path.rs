//! Request paths, parsed like the API server's `RequestInfoFactory`.

/// A parsed API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<g>/<v>`.
    Resources {
        /// API group (`""` for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource request.
    Resource(ResourcePath),
}

/// The parts of a resource URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, when the URL names one.
    pub namespace: Option<String>,
    /// Resource plural.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
    /// Legacy `/watch/` prefix.
    pub watch_prefix: bool,
}

/// Parses an API path; `None` for paths outside `/api` and `/apis`.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Some(ApiPath::CoreVersions),
        ["apis"] => return Some(ApiPath::Groups),
        ["apis", g] => return Some(ApiPath::Group(g.to_string())),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let mut rest = rest.to_vec();
    if rest.is_empty() {
        return Some(ApiPath::Resources { group, version });
    }
    let mut out = ResourcePath {
        group,
        version,
        ..ResourcePath::default()
    };
    if rest[0] == "watch" {
        out.watch_prefix = true;
        rest.remove(0);
    }
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        let is_ns_sub = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        if rest.len() >= 3 && !is_ns_sub {
            out.namespace = Some(rest[1].to_string());
            rest.drain(..2);
        }
    }
    out.resource = rest.first()?.to_string();
    out.name = rest.get(1).map(|s| s.to_string());
    out.subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 {
        return None;
    }
    Some(ApiPath::Resource(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> ResourcePath {
        match parse(p) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn namespaces_are_resources_and_scopes() {
        let r = res("/api/v1/namespaces/foo");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("foo"), None)
        );
        let r = res("/api/v1/namespaces/foo/finalize");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        let r = res("/api/v1/namespaces/foo/pods/p/log");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            (Some("foo"), "pods", Some("p"), Some("log"))
        );
        let r = res("/apis/batch/v1/namespaces/foo/jobs");
        assert_eq!(
            (r.group.as_str(), r.namespace.as_deref(), r.name),
            ("batch", Some("foo"), None)
        );
        let r = res("/api/v1/watch/namespaces/foo/configmaps");
        assert!(r.watch_prefix);
        assert_eq!(
            parse("/apis/batch/v1"),
            Some(ApiPath::Resources {
                group: "batch".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/other"), None);
    }
}
