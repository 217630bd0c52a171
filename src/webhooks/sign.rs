//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
//! where the key is the base64 part of a `whsec_…` secret. Several secrets (during a
//! rotation) give several space-separated signatures.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::crypto::{Keyring, Sealed};
use crate::models::webhooks::Endpoint;

/// The prefix of every signing secret (Standard Webhooks' `whsec_`).
pub const PREFIX: &str = "whsec_";

/// A fresh secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

/// What an endpoint's sealed secret is bound to: a ciphertext opens only for its endpoint.
pub fn secret_context(id: Uuid) -> String {
    format!("webhook_endpoints.secret:{id}")
}

/// The secrets that sign a delivery now: the current one and, during a rotation's
/// overlap, the previous one.
pub fn signing_secrets(keyring: &Keyring, endpoint: &Endpoint) -> anyhow::Result<Vec<SecretString>> {
    let ctx = secret_context(endpoint.id);
    let mut secrets = vec![keyring.open(
        &Sealed { key_id: endpoint.secret_key_id.clone(), ciphertext: endpoint.secret_ciphertext.clone() },
        &ctx,
    )?];
    if let (Some(ciphertext), Some(key_id), Some(until)) =
        (&endpoint.previous_secret_ciphertext, &endpoint.previous_secret_key_id, endpoint.previous_secret_expires_at)
        && until > chrono::Utc::now()
    {
        secrets.push(keyring.open(&Sealed { key_id: key_id.clone(), ciphertext: ciphertext.clone() }, &ctx)?);
    }
    Ok(secrets)
}

/// The `webhook-signature` header value for one message.
pub fn signature_header(secrets: &[SecretString], id: &str, timestamp: i64, body: &str) -> String {
    secrets.iter().filter_map(|secret| sign(secret, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.expose_secret().strip_prefix(PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a.expose_secret(), b.expose_secret());
        let raw = STANDARD.decode(a.expose_secret().strip_prefix(PREFIX).unwrap()).unwrap();
        assert_eq!(raw.len(), 32);
        let two = signature_header(&[a, b], "evt_1", 1, "{}");
        assert_eq!(two.split(' ').count(), 2);
    }
}
