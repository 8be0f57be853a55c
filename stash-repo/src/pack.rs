//! Pack files: encrypted blobs one after the other, then the encrypted header listing them,
//! then the header's length (4 bytes, little endian).

use crate::crypto::{Key, OVERHEAD};
use crate::error::RepoError;
use crate::format::{BlobType, IndexBlob};
use crate::id::Id;

const ENTRY_PLAIN: usize = 1 + 4 + 32;
const ENTRY_COMPRESSED: usize = 1 + 4 + 4 + 32;

/// Encrypts a blob for a pack: compressed (zstd) first when `level` is set.
pub fn seal_blob(
    key: &Key,
    plain: &[u8],
    compressor: Option<&mut zstd::bulk::Compressor<'_>>,
) -> Result<(Vec<u8>, Option<u64>), RepoError> {
    match compressor {
        Some(c) => {
            let compressed = c
                .compress(plain)
                .map_err(|e| RepoError::Format(format!("zstd: {e}")))?;
            Ok((key.encrypt(&compressed)?, Some(plain.len() as u64)))
        }
        None => Ok((key.encrypt(plain)?, None)),
    }
}

/// Decrypts, decompresses and verifies one stored blob.
pub fn open_blob(
    key: &Key,
    id: &Id,
    stored: &[u8],
    uncompressed_length: Option<u64>,
) -> Result<Vec<u8>, RepoError> {
    let plain = key
        .decrypt(stored)
        .map_err(|_| RepoError::BlobHash { id: id.to_hex() })?;
    let plain = match uncompressed_length {
        Some(n) => {
            let cap = usize::try_from(n)
                .map_err(|_| RepoError::Format(format!("blob {id}: length {n}")))?;
            zstd::bulk::decompress(&plain, cap)
                .map_err(|e| RepoError::Format(format!("blob {id}: zstd: {e}")))?
        }
        None => plain,
    };
    if Id::of(&plain) != *id {
        return Err(RepoError::BlobHash { id: id.to_hex() });
    }
    Ok(plain)
}

/// A pack under construction.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    blobs: Vec<IndexBlob>,
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        PackBuilder::default()
    }

    /// An empty pack reusing `buf` (a finished pack's buffer) for its bytes.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackBuilder {
            buf,
            blobs: Vec::new(),
        }
    }

    /// An empty pack with room for `bytes` of blobs and its header.
    pub fn with_capacity(bytes: usize) -> Self {
        PackBuilder {
            buf: Vec::with_capacity(bytes + 64 * 1024),
            blobs: Vec::new(),
        }
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, id: Id, kind: BlobType, sealed: &[u8], uncompressed: Option<u64>) {
        self.blobs.push(IndexBlob {
            id,
            kind,
            offset: self.buf.len() as u64,
            length: sealed.len() as u64,
            uncompressed_length: uncompressed,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Encrypts `plain` (already compressed when `uncompressed` is set) straight into the pack.
    pub fn add_plain(
        &mut self,
        key: &Key,
        id: Id,
        kind: BlobType,
        plain: &[u8],
        uncompressed: Option<u64>,
    ) -> Result<(), RepoError> {
        let offset = self.buf.len();
        key.encrypt_into(plain, &mut self.buf)?;
        self.blobs.push(IndexBlob {
            id,
            kind,
            offset: offset as u64,
            length: (self.buf.len() - offset) as u64,
            uncompressed_length: uncompressed,
        });
        Ok(())
    }

    /// The finished pack file, its id, and its index entries.
    pub fn finish(mut self, key: &Key) -> Result<(Vec<u8>, Id, Vec<IndexBlob>), RepoError> {
        let mut header = Vec::with_capacity(self.blobs.len() * ENTRY_COMPRESSED);
        for b in &self.blobs {
            let type_byte = match (b.kind, b.uncompressed_length.is_some()) {
                (BlobType::Data, false) => 0u8,
                (BlobType::Tree, false) => 1,
                (BlobType::Data, true) => 2,
                (BlobType::Tree, true) => 3,
            };
            header.push(type_byte);
            header.extend_from_slice(&u32_le(b.length)?);
            if let Some(n) = b.uncompressed_length {
                header.extend_from_slice(&u32_le(n)?);
            }
            header.extend_from_slice(&b.id.0);
        }
        let sealed = key.encrypt(&header)?;
        let header_len = u32_le(sealed.len() as u64)?;
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&header_len);
        let id = Id::of(&self.buf);
        Ok((self.buf, id, self.blobs))
    }
}

fn u32_le(v: u64) -> Result<[u8; 4], RepoError> {
    u32::try_from(v)
        .map(u32::to_le_bytes)
        .map_err(|_| RepoError::Format(format!("pack: length {v} exceeds 4 GiB")))
}

/// Reads the header of a whole pack file: its blobs.
pub fn parse_header(key: &Key, pack: &[u8]) -> Result<Vec<IndexBlob>, RepoError> {
    let bad = |what: &str| RepoError::Format(format!("pack header: {what}"));
    if pack.len() < 4 {
        return Err(bad("file too short"));
    }
    let (body, len_bytes) = pack.split_at(pack.len() - 4);
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(len_bytes);
    let header_len = u32::from_le_bytes(len4) as usize;
    if header_len < OVERHEAD || header_len > body.len() {
        return Err(bad("length out of range"));
    }
    let header = key.decrypt(&body[body.len() - header_len..])?;
    let mut blobs = Vec::new();
    let mut offset = 0u64;
    let mut rest = &header[..];
    let read_u32 = |b: &[u8]| {
        let mut x = [0u8; 4];
        x.copy_from_slice(b);
        u64::from(u32::from_le_bytes(x))
    };
    while !rest.is_empty() {
        let (kind, compressed) = match rest[0] {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => return Err(bad("unknown blob type")),
        };
        let size = if compressed {
            ENTRY_COMPRESSED
        } else {
            ENTRY_PLAIN
        };
        if rest.len() < size {
            return Err(bad("truncated entry"));
        }
        let length = read_u32(&rest[1..5]);
        let (uncompressed_length, id_at) = if compressed {
            (Some(read_u32(&rest[5..9])), 9)
        } else {
            (None, 5)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&rest[id_at..id_at + 32]);
        blobs.push(IndexBlob {
            id: Id(id),
            kind,
            offset,
            length,
            uncompressed_length,
        });
        offset += length;
        rest = &rest[size..];
    }
    if offset as usize + header_len != body.len() {
        return Err(bad("blob lengths do not add up to the pack size"));
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let key = Key::random().unwrap();
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut builder = PackBuilder::new();
        for text in [&b"first blob"[..], b"second"] {
            let (sealed, n) = seal_blob(&key, text, Some(&mut c)).unwrap();
            builder.add(Id::of(text), BlobType::Data, &sealed, n);
        }
        let (bytes, id, blobs) = builder.finish(&key).unwrap();
        assert_eq!(id, Id::of(&bytes));
        let parsed = parse_header(&key, &bytes).unwrap();
        assert_eq!(parsed.len(), 2);
        for (a, b) in parsed.iter().zip(&blobs) {
            assert_eq!((a.id, a.offset, a.length), (b.id, b.offset, b.length));
            let stored = &bytes[a.offset as usize..(a.offset + a.length) as usize];
            let plain = open_blob(&key, &a.id, stored, a.uncompressed_length).unwrap();
            assert_eq!(Id::of(&plain), a.id);
        }
    }
}
