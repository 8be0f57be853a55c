//! A structural check in process: every index file and snapshot decrypts, every pack the index
//! names exists with the size its blobs need, every tree and file blob a snapshot references is
//! indexed; with `read_data`, every pack's hash, header and blobs are verified too.

use std::collections::{HashMap, HashSet};

use crate::backend::FileKind;
use crate::error::RepoError;
use crate::format::BlobType;
use crate::id::Id;
use crate::pack::{open_blob, parse_header};
use crate::repo::Repository;

/// Problems found; empty when the repository is sound.
pub fn check(repo: &Repository, read_data: bool) -> Result<Vec<String>, RepoError> {
    let mut problems = Vec::new();
    let index = repo.load_index()?;
    let stored: HashMap<String, u64> = repo.backend().list(FileKind::Pack)?.into_iter().collect();
    let mut needed: HashMap<Id, u64> = HashMap::new();
    for loc in index.blobs.values() {
        let end = needed.entry(loc.pack).or_default();
        *end = (*end).max(loc.offset + loc.length);
    }
    for (pack, end) in &needed {
        match stored.get(&pack.to_hex()) {
            None => problems.push(format!("pack {pack} is indexed but missing")),
            Some(size) if size < end => {
                problems.push(format!("pack {pack} is {size} bytes, its blobs need {end}"))
            }
            Some(_) => {}
        }
    }
    let mut seen_trees = HashSet::new();
    for (id, snap) in repo.snapshots()? {
        let mut todo = vec![snap.tree];
        while let Some(tree_id) = todo.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = match repo.read_tree(&index, &tree_id) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("snapshot {id}: tree {tree_id}: {e}"));
                    continue;
                }
            };
            for node in tree.nodes {
                for blob in node.content.iter().flatten() {
                    match index.blobs.get(blob) {
                        Some(l) if l.kind == BlobType::Data => {}
                        _ => problems.push(format!(
                            "snapshot {id}: {}: data blob {blob} is not indexed",
                            node.name
                        )),
                    }
                }
                if let Some(sub) = node.subtree {
                    todo.push(sub);
                }
            }
        }
    }
    if read_data {
        for name in stored.keys() {
            let data = repo.backend().read(FileKind::Pack, name)?;
            if Id::of(&data).to_hex() != *name {
                problems.push(format!("pack {name}: content does not match its name"));
                continue;
            }
            match parse_header(repo.key(), &data) {
                Ok(blobs) => {
                    for b in blobs {
                        let stored = &data[b.offset as usize..(b.offset + b.length) as usize];
                        if let Err(e) = open_blob(repo.key(), &b.id, stored, b.uncompressed_length)
                        {
                            problems.push(format!("pack {name}: {e}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("pack {name}: {e}")),
            }
        }
    }
    Ok(problems)
}
