//! restic's authenticated encryption: AES-256-CTR with a random 16-byte IV, and a Poly1305-AES
//! MAC over the ciphertext. Stored form: `IV ‖ ciphertext ‖ MAC`.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use poly1305::Poly1305;

use crate::error::RepoError;

const IV_LEN: usize = 16;
const MAC_LEN: usize = 16;
/// Bytes encryption adds to a plaintext.
pub const OVERHEAD: usize = IV_LEN + MAC_LEN;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A key pair: AES-256 for encryption, and the Poly1305-AES MAC key (`k` for AES-128, `r`).
#[derive(Clone)]
pub struct Key {
    /// AES-256 encryption key.
    pub encrypt: [u8; 32],
    /// AES-128 key that turns the IV into Poly1305's `s`.
    pub mac_k: [u8; 16],
    /// Poly1305's `r` (clamped).
    pub mac_r: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Clears the bits Poly1305 requires to be zero in `r`.
fn clamp(r: &mut [u8; 16]) {
    for i in [3, 7, 11, 15] {
        r[i] &= 15;
    }
    for i in [4, 8, 12] {
        r[i] &= 252;
    }
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RepoError> {
    getrandom::getrandom(buf).map_err(|e| RepoError::Random(e.to_string()))
}

impl Key {
    /// A fresh random key (a repository's master key).
    pub fn random() -> Result<Key, RepoError> {
        let mut buf = [0u8; 64];
        random_bytes(&mut buf)?;
        Ok(Key::from_bytes(&buf))
    }

    /// Splits 64 bytes as restic does: encryption key, then MAC `k`, then MAC `r`.
    pub fn from_bytes(buf: &[u8; 64]) -> Key {
        let mut key = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        key.encrypt.copy_from_slice(&buf[..32]);
        key.mac_k.copy_from_slice(&buf[32..48]);
        key.mac_r.copy_from_slice(&buf[48..64]);
        clamp(&mut key.mac_r);
        key
    }

    /// Derives the key that opens a key file, with scrypt.
    pub fn derive(password: &[u8], salt: &[u8], n: u64, r: u32, p: u32) -> Result<Key, RepoError> {
        if !n.is_power_of_two() || n < 2 {
            return Err(RepoError::Format(format!(
                "key file: scrypt N={n} is not a power of two"
            )));
        }
        let log_n = n.trailing_zeros() as u8;
        let params = scrypt::Params::new(log_n, r, p, 64)
            .map_err(|e| RepoError::Format(format!("key file: scrypt parameters: {e}")))?;
        let mut out = [0u8; 64];
        scrypt::scrypt(password, salt, &params, &mut out)
            .map_err(|e| RepoError::Format(format!("key file: scrypt: {e}")))?;
        Ok(Key::from_bytes(&out))
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let aes = aes::Aes128::new(&self.mac_k.into());
        let mut s = aes::Block::clone_from_slice(iv);
        aes.encrypt_block(&mut s);
        let mut one_time = [0u8; 32];
        one_time[..16].copy_from_slice(&self.mac_r);
        one_time[16..].copy_from_slice(&s);
        let tag = Poly1305::new(&one_time.into()).compute_unpadded(ciphertext);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag);
        out
    }

    /// Encrypts `plaintext` into restic's stored form.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, RepoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// Appends the stored form of `plaintext` to `out` (a pack's buffer), allocating nothing
    /// when `out` has room.
    pub fn encrypt_into(&self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), RepoError> {
        let mut iv = [0u8; IV_LEN];
        random_bytes(&mut iv)?;
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        cipher.apply_keystream(&mut out[start..]);
        let mac = self.mac(&iv, &out[start..]);
        out.extend_from_slice(&mac);
        Ok(())
    }

    /// Checks the MAC and decrypts; fails on any change to the stored bytes.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, RepoError> {
        if data.len() < OVERHEAD {
            return Err(RepoError::Mac);
        }
        let (iv, rest) = data.split_at(IV_LEN);
        let (ciphertext, mac) = rest.split_at(rest.len() - MAC_LEN);
        let expected = self.mac(iv, ciphertext);
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(RepoError::Mac);
        }
        let mut plain = ciphertext.to_vec();
        let mut iv_block = [0u8; IV_LEN];
        iv_block.copy_from_slice(iv);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv_block.into());
        cipher.apply_keystream(&mut plain);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = Key::random().unwrap();
        let data = key.encrypt(b"hello").unwrap();
        assert_eq!(data.len(), 5 + OVERHEAD);
        assert_eq!(key.decrypt(&data).unwrap(), b"hello");
        let mut bad = data.clone();
        bad[17] ^= 1;
        assert!(matches!(key.decrypt(&bad), Err(RepoError::Mac)));
        let other = Key::random().unwrap();
        assert!(other.decrypt(&data).is_err());
    }
}
