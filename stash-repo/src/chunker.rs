//! restic's content-defined chunker: a Rabin fingerprint over a 64-byte window, modulo the
//! repository's irreducible polynomial of degree 53; a chunk ends where the low 20 bits of the
//! fingerprint are zero, and is between 512 KiB and 8 MiB long. Same polynomial, same cuts, so
//! our chunks deduplicate against what restic stored.

use std::io::Read;

use crate::crypto::random_bytes;
use crate::error::RepoError;

const WINDOW: usize = 64;
/// Smallest chunk (except the last).
pub const MIN_SIZE: usize = 512 * 1024;
/// Largest chunk.
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
const SPLIT_MASK: u64 = (1 << 20) - 1;

/// Degree of a polynomial over GF(2) held in the bits of `p` (-1 for zero).
fn deg(p: u128) -> i32 {
    127 - p.leading_zeros() as i32
}

/// `x mod p` over GF(2).
fn pmod(mut x: u128, p: u128) -> u128 {
    let d = deg(p);
    while deg(x) >= d {
        x ^= p << (deg(x) - d);
    }
    x
}

fn mulmod(a: u128, b: u128, p: u128) -> u128 {
    let mut product: u128 = 0;
    for i in 0..64 {
        if b >> i & 1 == 1 {
            product ^= a << i;
        }
    }
    pmod(product, p)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        let r = pmod(a, b);
        a = b;
        b = r;
    }
    a
}

/// Ben-Or's test: `p` is irreducible when gcd(p, x^(2^i) - x mod p) = 1 for i ≤ deg/2.
pub fn irreducible(p: u64) -> bool {
    let p = u128::from(p);
    for i in 1..=deg(p) / 2 {
        let mut res: u128 = 2;
        for _ in 0..i {
            res = mulmod(res, res, p);
        }
        if gcd(p, pmod(res ^ 2, p)) != 1 {
            return false;
        }
    }
    true
}

/// A random irreducible polynomial of degree 53, chosen as restic chooses one at `init`.
pub fn random_polynomial() -> Result<u64, RepoError> {
    for _ in 0..1_000_000 {
        let mut buf = [0u8; 8];
        random_bytes(&mut buf)?;
        let f = (u64::from_le_bytes(buf) & ((1 << 54) - 1)) | (1 << 53) | 1;
        if irreducible(f) {
            return Ok(f);
        }
    }
    Err(RepoError::Random(
        "no irreducible polynomial found".to_owned(),
    ))
}

/// Precomputed tables for one polynomial.
#[derive(Clone)]
pub struct Tables {
    out: [u64; 256],
    modt: [u64; 256],
    shift: u32,
}

impl Tables {
    /// Tables for `pol`; it must have degree 53 (restic's) or at least 9.
    pub fn new(pol: u64) -> Result<Tables, RepoError> {
        let p = u128::from(pol);
        let k = deg(p);
        if !(9..=63).contains(&k) {
            return Err(RepoError::Format(format!(
                "config: chunker polynomial {pol:x} has degree {k}"
            )));
        }
        let append = |hash: u128, b: u8| pmod((hash << 8) | u128::from(b), p);
        let mut out = [0u64; 256];
        let mut modt = [0u64; 256];
        for (b, (o, m)) in out.iter_mut().zip(modt.iter_mut()).enumerate() {
            let mut h = append(0, b as u8);
            for _ in 0..WINDOW - 1 {
                h = append(h, 0);
            }
            *o = h as u64;
            let shifted = (b as u128) << k;
            *m = (pmod(shifted, p) | shifted) as u64;
        }
        Ok(Tables {
            out,
            modt,
            shift: (k - 8) as u32,
        })
    }
}

/// Splits a stream into chunks. Reads fill its buffer fully, so a pipe's short reads cost
/// nothing extra.
pub struct Chunker<R> {
    source: R,
    tables: Tables,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    total: u64,
}

const READ_BUF: usize = 512 * 1024;

impl<R: Read> Chunker<R> {
    /// A chunker over `source` with the given tables.
    pub fn new(source: R, tables: Tables) -> Self {
        Chunker {
            source,
            tables,
            buf: vec![0; READ_BUF],
            pos: 0,
            len: 0,
            eof: false,
            total: 0,
        }
    }

    /// Bytes read from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    fn fill(&mut self) -> std::io::Result<()> {
        self.pos = 0;
        self.len = 0;
        while self.len < self.buf.len() {
            match self.source.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.len += n;
                    self.total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, `None` at the end. A read error of the source is returned as is.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut data = Vec::with_capacity(MIN_SIZE * 2);
        Ok(self.next_chunk_into(&mut data)?.then_some(data))
    }

    /// Like [`Chunker::next_chunk`], into a buffer the caller reuses; false at the end.
    pub fn next_chunk_into(&mut self, data: &mut Vec<u8>) -> std::io::Result<bool> {
        data.clear();
        // restic's reset state: an empty window into which the byte 1 was slid.
        let mut window = [0u8; WINDOW];
        window[0] = 1;
        let mut wpos = 1usize;
        let mut digest: u64 = 1;
        let mut pre = MIN_SIZE - WINDOW;
        loop {
            if self.pos == self.len {
                if self.eof {
                    return Ok(!data.is_empty());
                }
                self.fill()?;
                if self.len == 0 {
                    return Ok(!data.is_empty());
                }
            }
            let avail = &self.buf[self.pos..self.len];
            if pre > 0 {
                let take = pre.min(avail.len());
                data.extend_from_slice(&avail[..take]);
                self.pos += take;
                pre -= take;
                continue;
            }
            let t = &self.tables;
            let mut count = data.len();
            let mut cut = None;
            for (i, &b) in avail.iter().enumerate() {
                let out = window[wpos];
                window[wpos] = b;
                digest ^= t.out[usize::from(out)];
                wpos += 1;
                if wpos == WINDOW {
                    wpos = 0;
                }
                let index = (digest >> t.shift) as u8;
                digest = (digest << 8) | u64::from(b);
                digest ^= t.modt[usize::from(index)];
                count += 1;
                if count < MIN_SIZE {
                    continue;
                }
                if digest & SPLIT_MASK == 0 || count >= MAX_SIZE {
                    cut = Some(i + 1);
                    break;
                }
            }
            match cut {
                Some(n) => {
                    data.extend_from_slice(&avail[..n]);
                    self.pos += n;
                    return Ok(true);
                }
                None => {
                    data.extend_from_slice(avail);
                    self.pos = self.len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_polynomials() {
        // restic's test polynomial and the one of a repository restic 0.14 created.
        assert!(irreducible(0x3DA3358B4DC173));
        assert!(irreducible(0x28fd4f0f8024c5));
        assert!(!irreducible(0x3DA3358B4DC173 ^ 2));
        let p = random_polynomial().unwrap();
        assert_eq!(deg(u128::from(p)), 53);
        assert!(irreducible(p));
    }

    #[test]
    fn chunks_cover_the_stream_and_respect_bounds() {
        let mut data = vec![0u8; 5 * 1024 * 1024];
        let mut x: u32 = 1;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let tables = Tables::new(0x3DA3358B4DC173).unwrap();
        let mut chunker = Chunker::new(&data[..], tables.clone());
        let mut joined = Vec::new();
        let mut sizes = Vec::new();
        while let Some(c) = chunker.next_chunk().unwrap() {
            sizes.push(c.len());
            joined.extend_from_slice(&c);
        }
        assert_eq!(joined, data);
        assert!(sizes.len() > 1);
        for s in &sizes[..sizes.len() - 1] {
            assert!((MIN_SIZE..=MAX_SIZE).contains(s));
        }
        // Reading byte by byte gives the same cuts.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut chunker = Chunker::new(Trickle(&data), tables);
        let mut again = Vec::new();
        while let Some(c) = chunker.next_chunk().unwrap() {
            again.push(c.len());
        }
        assert_eq!(again, sizes);
    }
}
