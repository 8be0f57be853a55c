//! restic's layout in an object store (`<prefix>/config`, `<prefix>/keys/<id>`,
//! `<prefix>/data/<id[..2]>/<id>`), and the prefix rules restic 0.14 applies per scheme, so that
//! the cloud backends put every file exactly where stock restic looks for it.

use crate::backend::FileKind;
use crate::http::object_path;

/// Where a repository's files live inside one bucket or container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `gs:` and `azure:`: `path.Clean(prefix)` without its leading `/`.
    pub fn cleaned(raw: &str) -> Layout {
        let clean = go_clean(raw);
        Layout {
            prefix: clean.strip_prefix('/').unwrap_or(&clean).to_owned(),
        }
    }

    /// `b2:`: cleaned only when not empty, then without its leading `/`.
    pub fn b2(raw: &str) -> Layout {
        if raw.is_empty() {
            return Layout {
                prefix: String::new(),
            };
        }
        Layout::cleaned(raw)
    }

    /// `swift:`: the prefix after its one required leading `/`, verbatim; object names are then
    /// `path.Join(prefix, ...)`, so `swift:c://p` stores `/p/config`, as restic does.
    pub fn swift(raw: &str) -> Layout {
        Layout {
            prefix: raw.strip_prefix('/').unwrap_or(raw).to_owned(),
        }
    }

    /// The prefix as restic uses it (may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object name of a file.
    pub fn key(&self, kind: FileKind, name: &str) -> String {
        go_join(&[&self.prefix, &object_path(kind, name)])
    }

    /// The listing prefix of a kind, ending in `/`.
    pub fn dir(&self, kind: FileKind) -> String {
        let mut dir = go_join(&[&self.prefix, kind.dir()]);
        if !dir.ends_with('/') {
            dir.push('/');
        }
        dir
    }

    /// The file name in a listed object name under `dir` (`None` for the directory itself).
    pub fn listed_name<'a>(dir: &str, object: &'a str) -> Option<&'a str> {
        let rest = object.strip_prefix(dir)?;
        let name = rest.rsplit('/').next().unwrap_or_default();
        (!name.is_empty()).then_some(name)
    }

    /// The files among `objects` listed under `dir`, by [`Layout::listed_name`], sorted.
    pub fn listed_files(dir: &str, objects: Vec<(String, u64)>) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = objects
            .into_iter()
            .filter_map(|(name, size)| {
                Layout::listed_name(dir, &name).map(|file| (file.to_owned(), size))
            })
            .collect();
        out.sort();
        out
    }
}

/// Go's `path.Clean`.
pub fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: the non-empty elements joined by `/`, cleaned; `""` when all are empty.
pub fn go_join(elems: &[&str]) -> String {
    let parts: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    go_clean(&parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ab12cd";

    #[test]
    fn go_path_functions_match_go() {
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("/"), "/");
        assert_eq!(go_clean("//p//q/"), "/p/q");
        assert_eq!(go_clean("a/./b/../c"), "a/c");
        assert_eq!(go_clean("/../a"), "/a");
        assert_eq!(go_join(&["", "data"]), "data");
        assert_eq!(go_join(&[".", "data"]), "data");
        assert_eq!(go_join(&["/p", "data"]), "/p/data");
        assert_eq!(go_join(&["", ""]), "");
    }

    #[test]
    fn prefixes_follow_restic_per_scheme() {
        // Stash writes `gs:<bucket>:/<prefix>`, so a prefix `/p/q` arrives as `//p/q`.
        let gs = Layout::cleaned("//p/q");
        assert_eq!(gs.key(FileKind::Config, "config"), "p/q/config");
        assert_eq!(gs.key(FileKind::Pack, ID), "p/q/data/ab/ab12cd");
        assert_eq!(gs.dir(FileKind::Snapshot), "p/q/snapshots/");
        let root = Layout::cleaned("/");
        assert_eq!(root.key(FileKind::Key, ID), "keys/ab12cd");
        assert_eq!(root.dir(FileKind::Pack), "data/");
        assert_eq!(Layout::b2("").key(FileKind::Config, "config"), "config");
        assert_eq!(
            Layout::b2("//p/").key(FileKind::Index, ID),
            "p/index/ab12cd"
        );
        // restic's swift backend keeps what follows the one leading slash.
        let swift = Layout::swift("//p");
        assert_eq!(swift.key(FileKind::Config, "config"), "/p/config");
        assert_eq!(
            Layout::swift("/p").key(FileKind::Lock, ID),
            "p/locks/ab12cd"
        );
        assert_eq!(Layout::swift("/").dir(FileKind::Key), "keys/");
    }

    #[test]
    fn listed_names_are_the_last_segment() {
        assert_eq!(
            Layout::listed_name("p/data/", "p/data/ab/ab12cd"),
            Some("ab12cd")
        );
        assert_eq!(Layout::listed_name("p/data/", "p/data/"), None);
        assert_eq!(Layout::listed_name("p/data/", "q/data/ab"), None);
    }
}
