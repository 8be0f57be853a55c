//! The JSON documents of a repository, with the fields and names restic writes.

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// `config`: stored encrypted, never compressed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version (2: compression).
    pub version: u32,
    /// Random repository id (64 hex digits).
    pub id: String,
    /// The chunker's polynomial, in hex.
    pub chunker_polynomial: String,
}

/// A key file (`keys/<id>`), stored in plain JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Creation time.
    pub created: String,
    /// Who created it.
    #[serde(default)]
    pub username: String,
    /// Where it was created.
    #[serde(default)]
    pub hostname: String,
    /// Always `scrypt`.
    pub kdf: String,
    /// scrypt N.
    #[serde(rename = "N")]
    pub n: u64,
    /// scrypt r.
    pub r: u32,
    /// scrypt p.
    pub p: u32,
    /// Base64 salt.
    pub salt: String,
    /// Base64 of the encrypted master key.
    pub data: String,
}

/// The master key inside a key file.
#[derive(Serialize, Deserialize)]
pub struct MasterKey {
    /// Poly1305-AES key.
    pub mac: MacKey,
    /// Base64 AES-256 key.
    pub encrypt: String,
}

/// Poly1305-AES key.
#[derive(Serialize, Deserialize)]
pub struct MacKey {
    /// Base64 AES-128 key.
    pub k: String,
    /// Base64 Poly1305 `r`.
    pub r: String,
}

/// Data or tree blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// File content.
    Data,
    /// A directory listing (JSON).
    Tree,
}

/// An index file (`index/<id>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Vec<Id>>,
    /// Packs and their blobs.
    pub packs: Vec<IndexPack>,
}

/// One pack in an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (hash of the pack file).
    pub id: Id,
    /// Its blobs.
    pub blobs: Vec<IndexBlob>,
}

/// One blob in a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Blob id (hash of the plaintext).
    pub id: Id,
    /// Data or tree.
    #[serde(rename = "type")]
    pub kind: BlobType,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored (encrypted) length.
    pub length: u64,
    /// Plaintext length when compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u64>,
}

/// A snapshot (`snapshots/<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Creation time (RFC 3339).
    pub time: String,
    /// Parent snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Root tree.
    pub tree: Id,
    /// Backed-up paths.
    pub paths: Vec<String>,
    /// Host.
    #[serde(default)]
    pub hostname: String,
    /// User.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// User id.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub uid: u32,
    /// Group id.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub gid: u32,
    /// Excludes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

fn is_zero32(v: &u32) -> bool {
    *v == 0
}

fn is_zero64(v: &u64) -> bool {
    *v == 0
}

/// A tree blob.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by name.
    pub nodes: Vec<Node>,
}

/// One entry of a tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Node {
    /// File name.
    pub name: String,
    /// `file`, `dir`, `symlink`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Go `os.FileMode` bits.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub mode: u32,
    /// Modification time.
    #[serde(default)]
    pub mtime: String,
    /// Access time.
    #[serde(default)]
    pub atime: String,
    /// Change time.
    #[serde(default)]
    pub ctime: String,
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Owner name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Size of a file.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub size: u64,
    /// Data blobs of a file, in order.
    #[serde(default)]
    pub content: Option<Vec<Id>>,
    /// Tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}
