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
    ///
    /// The bytes are copied into `data` first and the cut is searched there: a window's
    /// fingerprint depends only on its 64 bytes, so the search needs no state between reads.
    pub fn next_chunk_into(&mut self, data: &mut Vec<u8>) -> std::io::Result<bool> {
        data.clear();
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
            let before = data.len();
            let take = (self.len - self.pos).min(MAX_SIZE - before);
            data.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            // restic checks no window that ends before MIN_SIZE bytes.
            let from = before.max(MIN_SIZE - 1);
            if let Some(end) = find_cut(&self.tables, data, from) {
                data.truncate(end + 1);
                self.pos += end + 1 - before;
                return Ok(true);
            }
            self.pos += take;
            if data.len() == MAX_SIZE {
                return Ok(true);
            }
        }
    }
}

impl Tables {
    /// One step of the rolling hash: `out` leaves the 64-byte window and `b` enters it.
    #[inline(always)]
    fn roll(&self, digest: u64, out: u8, b: u8) -> u64 {
        let digest = digest ^ self.out[usize::from(out)];
        let index = (digest >> self.shift) as u8;
        ((digest << 8) | u64::from(b)) ^ self.modt[usize::from(index)]
    }

    /// The fingerprint of `window` (at most 64 bytes, as if zeros preceded it).
    fn fingerprint(&self, window: &[u8]) -> u64 {
        window.iter().fold(0, |d, &b| self.roll(d, 0, b))
    }
}

/// Independent stretches of the stream hashed side by side: one byte at a time, the rolling
/// hash waits on its own table lookups; interleaved, the CPU overlaps four of them.
const LANES: usize = 4;
/// Bytes per lane per round; a cut found early wastes at most the rest of one round.
const STRETCH: usize = 16 * 1024;

/// The first `end >= from` at which restic's chunker cuts `data`: the window of the 64 bytes
/// ending at `end` fingerprints to zero in its low 20 bits (the chunk is `data[..=end]`).
/// Every window's fingerprint depends on its own bytes only (restic's reset state has left
/// the window after 64 bytes, and no window that ends earlier is checked), so stretches of the
/// stream can be searched independently. Windows ending before byte 64 are not searched.
fn find_cut(t: &Tables, data: &[u8], from: usize) -> Option<usize> {
    let mut start = from.max(WINDOW);
    while start < data.len() {
        let n = ((data.len() - start) / LANES).min(STRETCH);
        if n < WINDOW {
            return (start..data.len()).find(|&end| is_cut(t, data, end));
        }
        if let Some(end) = find_cut_in_lanes(t, data, start, n) {
            return Some(end);
        }
        start += n * LANES;
    }
    None
}

fn is_cut(t: &Tables, data: &[u8], end: usize) -> bool {
    t.fingerprint(&data[end + 1 - WINDOW..=end]) & SPLIT_MASK == 0
}

/// [`find_cut`] over `LANES` consecutive stretches of `n` window ends from `start`.
fn find_cut_in_lanes(t: &Tables, data: &[u8], start: usize, n: usize) -> Option<usize> {
    // Lane j's digest starts as the window ending just before its first end.
    let mut digest: [u64; LANES] = std::array::from_fn(|j| {
        let first = start + j * n;
        t.fingerprint(&data[first - WINDOW..first])
    });
    let leaving: [&[u8]; LANES] = std::array::from_fn(|j| &data[start + j * n - WINDOW..][..n]);
    let entering: [&[u8]; LANES] = std::array::from_fn(|j| &data[start + j * n..][..n]);
    let mut found = [usize::MAX; LANES];
    for k in 0..n {
        let mut hit = false;
        for j in 0..LANES {
            digest[j] = t.roll(digest[j], leaving[j][k], entering[j][k]);
            hit |= digest[j] & SPLIT_MASK == 0;
        }
        if hit {
            for j in 0..LANES {
                if digest[j] & SPLIT_MASK == 0 && found[j] == usize::MAX {
                    found[j] = start + j * n + k;
                }
            }
            // The first lane's cut comes before any other's.
            if found[0] != usize::MAX {
                break;
            }
        }
    }
    found.into_iter().find(|&end| end != usize::MAX)
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

    /// restic's chunker as restic writes it: one byte at a time through a ring window, from
    /// the reset state (the byte 1 slid in) after skipping `MIN_SIZE - 64` bytes. The lengths
    /// of the chunks it cuts `data` into.
    fn restic_reference_cuts(t: &Tables, mut data: &[u8]) -> Vec<usize> {
        let mut cuts = Vec::new();
        while !data.is_empty() {
            let mut window = [0u8; WINDOW];
            window[0] = 1;
            let mut wpos = 1;
            let mut digest: u64 = 1;
            let mut len = data.len().min(MAX_SIZE);
            for (count, &b) in data.iter().enumerate().skip(MIN_SIZE - WINDOW) {
                let out = window[wpos];
                window[wpos] = b;
                digest ^= t.out[usize::from(out)];
                wpos = (wpos + 1) % WINDOW;
                let index = (digest >> t.shift) as u8;
                digest = (digest << 8) | u64::from(b);
                digest ^= t.modt[usize::from(index)];
                let count = count + 1;
                if count >= MIN_SIZE && (digest & SPLIT_MASK == 0 || count >= MAX_SIZE) {
                    len = count;
                    break;
                }
            }
            cuts.push(len);
            data = &data[len..];
        }
        cuts
    }

    fn xorshift(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn cuts(t: &Tables, source: impl Read) -> Vec<usize> {
        let mut chunker = Chunker::new(source, t.clone());
        let mut out = Vec::new();
        while let Some(c) = chunker.next_chunk().unwrap() {
            out.push(c.len());
        }
        out
    }

    #[test]
    fn cuts_are_restics_byte_for_byte() {
        // Random bytes (many cuts, some in every lane), dump-like text (cuts further apart),
        // one byte repeated (no cut: 8 MiB chunks), and lengths around the bounds.
        let mut text = Vec::new();
        let mut row = 0u64;
        while text.len() < 24 * 1024 * 1024 {
            text.extend_from_slice(
                format!(
                    "({row},{},'SKU-{:08X}',{},'{:x}'),",
                    row * 7919 % 100_000,
                    row.wrapping_mul(2_654_435_761) % (1 << 32),
                    row % 500,
                    row.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                )
                .as_bytes(),
            );
            row += 1;
        }
        let mut same_then_random = vec![b'a'; 17 * 1024 * 1024];
        same_then_random.extend(xorshift(3 * 1024 * 1024, 7));
        let inputs = [
            xorshift(40 * 1024 * 1024, 1),
            text,
            same_then_random,
            xorshift(MIN_SIZE - 1, 2),
            xorshift(MIN_SIZE + 100, 3),
            Vec::new(),
        ];
        for pol in [0x3DA3358B4DC173, 0x28fd4f0f8024c5] {
            let t = Tables::new(pol).unwrap();
            for data in &inputs {
                let want = restic_reference_cuts(&t, data);
                assert_eq!(cuts(&t, &data[..]), want, "polynomial {pol:x}");
                assert_eq!(want.iter().sum::<usize>(), data.len());
            }
            let many = cuts(&t, &inputs[0][..]);
            assert!(many.len() > 20, "{many:?}");
            assert!(cuts(&t, &inputs[2][..]).contains(&MAX_SIZE));
        }
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
