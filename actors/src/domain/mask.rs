//! Masking of secrets (API keys, tokens) for logs, status output and error messages.

/// Secrets shorter than this are masked completely: a 4-character prefix would give away
/// too large a share of them.
const MIN_LEN_FOR_PREFIX: usize = 8;

/// Returns the first 4 characters followed by "…", or just "…" for short secrets.
pub fn mask_secret(secret: &str) -> String {
    if secret.chars().count() < MIN_LEN_FOR_PREFIX {
        return "…".to_owned();
    }
    let mut masked: String = secret.chars().take(4).collect();
    masked.push('…');
    masked
}

/// Longest text from a gateway (an error message, a reason) that is stored or shown.
pub const GATEWAY_TEXT_MAX: usize = 256;

/// `text` cut to [`GATEWAY_TEXT_MAX`] characters (saying how much was cut): a gateway's error
/// strings are stored in the database and shown in the API, and a gateway decides their length.
pub fn clip(text: &str) -> String {
    let total = text.chars().count();
    if total <= GATEWAY_TEXT_MAX {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(GATEWAY_TEXT_MAX).collect();
    clipped.push_str(&format!("… ({} more characters)", total - GATEWAY_TEXT_MAX));
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_gateway_texts_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(GATEWAY_TEXT_MAX + 10);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(GATEWAY_TEXT_MAX)));
        assert!(clipped.ends_with("… (10 more characters)"), "{clipped}");
        assert_eq!(clip(&"x".repeat(GATEWAY_TEXT_MAX)).len(), GATEWAY_TEXT_MAX);
    }

    #[test]
    fn masks_secrets() {
        let cases = [
            (
                "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6abcd",
                "a1b2…",
            ),
            ("12345678", "1234…"),
            ("1234567", "…"),
            ("abcd", "…"),
            ("", "…"),
            ("ключ-секрет", "ключ…"),
        ];
        for (secret, want) in cases {
            let got = mask_secret(secret);
            assert_eq!(got, want, "{secret}");
        }
    }

    #[test]
    fn never_contains_the_secret() {
        let secret = "sk-live-0123456789abcdef";
        let masked = mask_secret(secret);
        assert!(!masked.contains(secret));
        assert!(!masked.contains("0123"));
        assert_eq!(masked.chars().count(), 5);
    }
}
