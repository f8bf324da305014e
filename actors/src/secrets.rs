//! Secrets: bearer tokens compared without leaking their length, broker API keys typed as
//! secrets, and the encryption of API keys at rest: XChaCha20-Poly1305 with
//! a 32-byte key from the environment. A stored value is `v2:` and base64 of a random 24-byte
//! nonce followed by the ciphertext and its tag, with the account's id as associated data: a
//! ciphertext copied to another account's row does not decrypt. Values from before that binding
//! (no prefix, no associated data) are only read by [`KeyCipher::decrypt_unbound`], to re-encrypt
//! them at start. Errors never contain the key or the plaintext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
pub use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::domain::mask::mask_secret;

/// A broker API key. It is a secret end to end: zeroized on drop, compared in constant time,
/// and `Debug` shows only its hint (the first 4 characters). Requests deserialize into it
/// directly, so that no plain `String` copy of a key is kept.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// The key itself, for the one place that sends it (a gateway request).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The first 4 characters and "…" (or "…" for a short key): what logs and the API show.
    pub fn hint(&self) -> String {
        mask_secret(self.expose())
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey(SecretString::from(key))
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey(SecretString::from(key))
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for ApiKey {}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

/// A bearer token (the admin token, the metrics token). It is kept as a secret (zeroized on
/// drop, never printed by `Debug`) and compared through its SHA-256 digest in constant time, so
/// that neither the bytes nor the length of the real token can be timed out of a comparison.
#[derive(Clone)]
pub struct Token {
    secret: SecretString,
    digest: [u8; 32],
}

impl Token {
    pub fn new(secret: SecretString) -> Token {
        let digest = Sha256::digest(secret.expose_secret().as_bytes()).into();
        Token { secret, digest }
    }

    /// True when `presented` is this token.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }

    /// The token itself, to print it once when it was generated.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

const KEY_LEN: usize = 32;
/// The prefix of a value whose associated data is its account's id.
const BOUND: &str = "v2:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The AEAD that encrypts and decrypts API keys. `Debug` does not show the key.
#[derive(Clone)]
pub struct KeyCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCipher { .. }")
    }
}

/// A stored value that cannot be turned back into an API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the stored API key is not valid base64")]
    NotBase64,
    #[error("the stored API key is too short to be a ciphertext")]
    TooShort,
    #[error("the stored API key does not decrypt with this key (wrong key or corrupt value)")]
    Authentication,
    #[error("the decrypted API key is not UTF-8")]
    NotUtf8,
    #[error("the stored API key is not bound to its account (stored before that was done)")]
    Unbound,
}

/// A value that could not be encrypted (only absurdly long inputs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the API key could not be encrypted (is it unreasonably long?)")]
pub struct EncryptError;

impl KeyCipher {
    /// Builds the cipher from base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`).
    pub fn from_base64(encoded: &str) -> Result<KeyCipher, String> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| "must be base64 of 32 random bytes (not valid base64)".to_string())?;
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "must be base64 of 32 random bytes (decodes to {} bytes)",
                bytes.len()
            ));
        }
        let aead = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| "must be base64 of 32 random bytes".to_string())?;
        Ok(KeyCipher { aead })
    }

    /// Encrypts the key of account `account_id` under a fresh random nonce, with the id as
    /// associated data: `v2:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, account_id: i32, key: &ApiKey) -> Result<String, EncryptError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(account_id);
        let sealed = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: key.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| EncryptError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{BOUND}{}", STANDARD.encode(out)))
    }

    /// Decrypts a value [`KeyCipher::encrypt`] made for the same account with the same key.
    pub fn decrypt(&self, account_id: i32, stored: &str) -> Result<ApiKey, DecryptError> {
        let encoded = stored
            .trim()
            .strip_prefix(BOUND)
            .ok_or(DecryptError::Unbound)?;
        self.open(encoded, &associated_data(account_id))
    }

    /// True for a value stored before keys were bound to their account.
    pub fn is_unbound(stored: &str) -> bool {
        !stored.trim().starts_with(BOUND)
    }

    /// Decrypts a value stored before keys were bound to their account (no prefix, no
    /// associated data): only to re-encrypt it with [`KeyCipher::encrypt`].
    pub fn decrypt_unbound(&self, stored: &str) -> Result<ApiKey, DecryptError> {
        if !Self::is_unbound(stored) {
            return Err(DecryptError::Authentication);
        }
        self.open(stored.trim(), &[])
    }

    fn open(&self, encoded: &str, aad: &[u8]) -> Result<ApiKey, DecryptError> {
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| DecryptError::NotBase64)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::TooShort);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError::TooShort)?;
        let plain = self
            .aead
            .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad })
            .map_err(|_| DecryptError::Authentication)?;
        match String::from_utf8(plain) {
            Ok(key) => Ok(ApiKey::from(key)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(DecryptError::NotUtf8)
            }
        }
    }
}

/// What binds a ciphertext to its row.
fn associated_data(account_id: i32) -> Vec<u8> {
    format!("trading_accounts.api_key_ciphertext:{account_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";
    const API_KEY: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6abcd";

    fn key(text: &str) -> ApiKey {
        ApiKey::from(text)
    }

    /// A value as stored before keys were bound to their account.
    fn unbound(cipher: &KeyCipher, plaintext: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .aead
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .unwrap();
        STANDARD.encode([&nonce[..], &sealed].concat())
    }

    fn raw(stored: &str) -> Vec<u8> {
        STANDARD
            .decode(stored.strip_prefix(BOUND).unwrap())
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let stored = cipher.encrypt(7, &key(API_KEY)).unwrap();
        assert!(stored.starts_with("v2:"), "{stored}");
        assert!(!stored.contains(API_KEY));
        assert!(!stored.contains("a1b2c3d4"));
        assert_eq!(cipher.decrypt(7, &stored).unwrap(), key(API_KEY));
        // nonce + ciphertext + tag
        assert_eq!(raw(&stored).len(), NONCE_LEN + API_KEY.len() + TAG_LEN);
        let empty = cipher.encrypt(1, &key("")).unwrap();
        assert_eq!(cipher.decrypt(1, &empty).unwrap().expose(), "");
    }

    #[test]
    fn a_ciphertext_belongs_to_its_account() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let stored = cipher.encrypt(7, &key(API_KEY)).unwrap();
        assert_eq!(
            cipher.decrypt(8, &stored),
            Err(DecryptError::Authentication)
        );
        assert_eq!(
            cipher.decrypt(-7, &stored),
            Err(DecryptError::Authentication)
        );
        // Nor can a bound value be read as an unbound one.
        assert_eq!(
            cipher.decrypt_unbound(&stored),
            Err(DecryptError::Authentication)
        );
    }

    #[test]
    fn unbound_values_are_read_only_to_be_re_encrypted() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let old = unbound(&cipher, API_KEY);
        assert!(KeyCipher::is_unbound(&old));
        assert_eq!(cipher.decrypt(3, &old), Err(DecryptError::Unbound));
        let key = cipher.decrypt_unbound(&old).unwrap();
        assert_eq!(key.expose(), API_KEY);
        let new = cipher.encrypt(3, &key).unwrap();
        assert!(!KeyCipher::is_unbound(&new));
        assert_eq!(cipher.decrypt(3, &new).unwrap().expose(), API_KEY);
    }

    #[test]
    fn every_encryption_uses_a_fresh_nonce() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let one = cipher.encrypt(1, &key(API_KEY)).unwrap();
        let two = cipher.encrypt(1, &key(API_KEY)).unwrap();
        assert_ne!(one, two);
        assert_ne!(raw(&one)[..NONCE_LEN], raw(&two)[..NONCE_LEN]);
    }

    #[test]
    fn a_wrong_key_fails_without_revealing_anything() {
        let stored = KeyCipher::from_base64(KEY_A)
            .unwrap()
            .encrypt(1, &key(API_KEY))
            .unwrap();
        let err = KeyCipher::from_base64(KEY_B)
            .unwrap()
            .decrypt(1, &stored)
            .unwrap_err();
        assert_eq!(err, DecryptError::Authentication);
        let message = err.to_string();
        assert!(!message.contains(API_KEY) && !message.contains("a1b2"));
        assert!(!message.contains(KEY_A) && !message.contains(KEY_B));
    }

    #[test]
    fn corrupt_values_are_errors() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let stored = cipher.encrypt(1, &key(API_KEY)).unwrap();
        let mut bytes = raw(&stored);
        let bound = |b: &[u8]| format!("{BOUND}{}", STANDARD.encode(b));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            cipher.decrypt(1, &bound(&bytes)),
            Err(DecryptError::Authentication)
        );
        bytes[last] ^= 1;
        bytes[NONCE_LEN] ^= 0x80;
        assert_eq!(
            cipher.decrypt(1, &bound(&bytes)),
            Err(DecryptError::Authentication)
        );
        assert_eq!(
            cipher.decrypt(1, "v2:not base64!"),
            Err(DecryptError::NotBase64)
        );
        assert_eq!(
            cipher.decrypt(1, &bound(&[0u8; NONCE_LEN + TAG_LEN - 1])),
            Err(DecryptError::TooShort)
        );
    }

    #[test]
    fn api_keys_never_print_and_compare_by_value() {
        let k = key(API_KEY);
        assert_eq!(format!("{k:?}"), "ApiKey(a1b2…)");
        assert_eq!(k, key(API_KEY));
        assert_ne!(k, key("a1b2c3d4"));
        let parsed: ApiKey = serde_json::from_str(&format!("\"{API_KEY}\"")).unwrap();
        assert_eq!(parsed, k);
    }

    #[test]
    fn the_key_must_be_base64_of_32_bytes() {
        let short = STANDARD.encode([7u8; 16]);
        let err = KeyCipher::from_base64(&short).unwrap_err();
        assert!(err.contains("32"), "{err}");
        assert!(err.contains("16 bytes"), "{err}");
        assert!(!err.contains(&short));
        let err = KeyCipher::from_base64("definitely not base64 ***").unwrap_err();
        assert!(err.contains("not valid base64"), "{err}");
        assert!(!err.contains("definitely"));
        assert!(KeyCipher::from_base64("").is_err());
        assert!(KeyCipher::from_base64(&STANDARD.encode([1u8; 33])).is_err());
        assert!(KeyCipher::from_base64(KEY_A).is_ok());
    }

    #[test]
    fn tokens_match_only_themselves_and_never_print() {
        let token = Token::new(SecretString::from("abcdef0123456789"));
        assert!(token.matches("abcdef0123456789"));
        assert!(!token.matches("abcdef0123456788"));
        assert!(!token.matches("abcdef012345678"));
        assert!(!token.matches("abcdef01234567890"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "Token(..)");
        assert_eq!(token.expose(), "abcdef0123456789");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let shown = format!("{cipher:?}");
        assert_eq!(shown, "KeyCipher { .. }");
    }
}
