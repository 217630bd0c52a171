//! Secrets at rest: AES-256-GCM with a 32-byte key from `CURBPAY_ENCRYPTION_KEY`
//! (base64). Each ciphertext is stored with the id of the key that sealed it (the first
//! bytes of the key's SHA-256), so older keys (`CURBPAY_ENCRYPTION_PREVIOUS_KEYS`) still
//! open what they sealed until `curbpay rotate-keys` re-seals it with the current key.
//! The associated data binds a ciphertext to its row and column, so a sealed value
//! cannot be moved to another app.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The current key and the ones it replaced.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

/// A sealed secret as stored: nonce followed by ciphertext, and the sealing key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The id of the key that sealed it (the first bytes of the key's SHA-256, in hex).
    pub key_id: String,
    /// Nonce followed by ciphertext.
    pub ciphertext: Vec<u8>,
}

fn key(encoded: &str) -> anyhow::Result<Key> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).context("encryption key is not base64")?;
    if bytes.len() != 32 {
        bail!("encryption key must be 32 bytes (base64 of 32 random bytes), got {}", bytes.len());
    }
    let digest = Sha256::digest(&bytes);
    let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Key { id, cipher: Aes256Gcm::new_from_slice(&bytes).expect("32-byte key") })
}

impl Keyring {
    /// `current` seals and opens; `previous` only open.
    pub fn new(current: &SecretString, previous: &[SecretString]) -> anyhow::Result<Keyring> {
        Ok(Keyring {
            current: key(current.expose_secret()).context("CURBPAY_ENCRYPTION_KEY")?,
            previous: previous
                .iter()
                .map(|k| key(k.expose_secret()).context("CURBPAY_ENCRYPTION_PREVIOUS_KEYS"))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// The id of the key new secrets are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `secret` for the place `context` names (e.g. `apps.secret_key:<id>`).
    pub fn seal(&self, secret: &SecretString, context: &str) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: secret.expose_secret().as_bytes(), aad: context.as_bytes() })
            .expect("AES-GCM encryption of a small secret cannot fail");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&ciphertext);
        Sealed { key_id: self.current.id.clone(), ciphertext: stored }
    }

    /// Opens a sealed secret. Fails for an unknown key id or tampered data; the error
    /// never contains the secret.
    pub fn open(&self, sealed: &Sealed, context: &str) -> anyhow::Result<SecretString> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .with_context(|| format!("no encryption key with id {} is configured", sealed.key_id))?;
        if sealed.ciphertext.len() <= NONCE_LEN {
            bail!("sealed secret is truncated");
        }
        let (nonce, ciphertext) = sealed.ciphertext.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(<[u8; NONCE_LEN]>::try_from(nonce).expect("split at NONCE_LEN")),
                Payload { msg: ciphertext, aad: context.as_bytes() },
            )
            .map_err(|_| anyhow::anyhow!("sealed secret does not open with key {} (tampered or moved)", key.id))?;
        Ok(SecretString::from(String::from_utf8(plain).context("sealed secret is not UTF-8")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_key() -> SecretString {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes).into()
    }

    #[test]
    fn seals_and_opens_in_context_only() {
        let ring = Keyring::new(&random_key(), &[]).unwrap();
        let sealed = ring.seal(&SecretString::from("sk_test_abc"), "apps.secret_key:1");
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("sk_test_abc"));
        assert_eq!(ring.open(&sealed, "apps.secret_key:1").unwrap().expose_secret(), "sk_test_abc");
        assert!(ring.open(&sealed, "apps.secret_key:2").is_err(), "bound to its row");
        let mut tampered = sealed.clone();
        *tampered.ciphertext.last_mut().unwrap() ^= 1;
        assert!(ring.open(&tampered, "apps.secret_key:1").is_err());
    }

    #[test]
    fn previous_keys_open_until_rotated() {
        let (old, new) = (random_key(), random_key());
        let sealed = Keyring::new(&old, &[]).unwrap().seal(&SecretString::from("whsec_x"), "c");
        let rotated = Keyring::new(&new, &[old]).unwrap();
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        assert_eq!(rotated.open(&sealed, "c").unwrap().expose_secret(), "whsec_x");
        let resealed = rotated.seal(&rotated.open(&sealed, "c").unwrap(), "c");
        assert_eq!(resealed.key_id, rotated.current_key_id());
        let err = Keyring::new(&new, &[]).unwrap().open(&sealed, "c").map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("no encryption key"));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(Keyring::new(&SecretString::from("not base64!"), &[]).is_err());
        assert!(Keyring::new(&SecretString::from("c2hvcnQ="), &[]).is_err());
    }
}
