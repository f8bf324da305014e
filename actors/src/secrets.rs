//! Secrets: bearer tokens compared without leaking their length, and the encryption of account
//! API keys at rest (ARCHITECTURE §8.1): XChaCha20-Poly1305 with a 32-byte key from the
//! environment. A stored value is base64 of a random 24-byte nonce followed by the ciphertext
//! and its tag. Errors never contain the key or the plaintext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
pub use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

    /// Encrypts `plaintext` under a fresh random nonce: base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &str) -> Result<String, EncryptError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .aead
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .map_err(|_| EncryptError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Decrypts a value produced by [`KeyCipher::encrypt`] with the same key.
    pub fn decrypt(&self, stored: &str) -> Result<String, DecryptError> {
        let bytes = STANDARD
            .decode(stored.trim())
            .map_err(|_| DecryptError::NotBase64)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::TooShort);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError::TooShort)?;
        let plain = self
            .aead
            .decrypt(&XNonce::from(nonce), sealed)
            .map_err(|_| DecryptError::Authentication)?;
        String::from_utf8(plain).map_err(|_| DecryptError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";
    const API_KEY: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6abcd";

    #[test]
    fn round_trip() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let stored = cipher.encrypt(API_KEY).unwrap();
        assert!(!stored.contains(API_KEY));
        assert!(!stored.contains("a1b2c3d4"));
        assert_eq!(cipher.decrypt(&stored).unwrap(), API_KEY);
        // nonce + ciphertext + tag
        let raw = STANDARD.decode(&stored).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + API_KEY.len() + TAG_LEN);
        assert_eq!(cipher.decrypt(&cipher.encrypt("").unwrap()).unwrap(), "");
    }

    #[test]
    fn every_encryption_uses_a_fresh_nonce() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let one = cipher.encrypt(API_KEY).unwrap();
        let two = cipher.encrypt(API_KEY).unwrap();
        assert_ne!(one, two);
        assert_ne!(
            STANDARD.decode(&one).unwrap()[..NONCE_LEN],
            STANDARD.decode(&two).unwrap()[..NONCE_LEN]
        );
    }

    #[test]
    fn a_wrong_key_fails_without_revealing_anything() {
        let stored = KeyCipher::from_base64(KEY_A)
            .unwrap()
            .encrypt(API_KEY)
            .unwrap();
        let err = KeyCipher::from_base64(KEY_B)
            .unwrap()
            .decrypt(&stored)
            .unwrap_err();
        assert_eq!(err, DecryptError::Authentication);
        let message = err.to_string();
        assert!(!message.contains(API_KEY) && !message.contains("a1b2"));
        assert!(!message.contains(KEY_A) && !message.contains(KEY_B));
    }

    #[test]
    fn corrupt_values_are_errors() {
        let cipher = KeyCipher::from_base64(KEY_A).unwrap();
        let stored = cipher.encrypt(API_KEY).unwrap();
        let mut raw = STANDARD.decode(&stored).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            cipher.decrypt(&STANDARD.encode(&raw)),
            Err(DecryptError::Authentication)
        );
        raw[last] ^= 1;
        raw[NONCE_LEN] ^= 0x80;
        assert_eq!(
            cipher.decrypt(&STANDARD.encode(&raw)),
            Err(DecryptError::Authentication)
        );
        assert_eq!(cipher.decrypt("not base64!"), Err(DecryptError::NotBase64));
        assert_eq!(
            cipher.decrypt(&STANDARD.encode([0u8; NONCE_LEN + TAG_LEN - 1])),
            Err(DecryptError::TooShort)
        );
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
