//! Production approval tokens: 256 random bits, shown once (in the link),
//! stored only as their SHA-256, consumed by one conditional write.

use sha2::{Digest, Sha256};

/// A freshly minted token. Its text goes into the approval link and
/// nowhere else; the record keeps [`ApprovalToken::hash`].
pub struct ApprovalToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the system random source failed: {0}")]
    Random(String),
    #[error("an approval token is 64 hexadecimal characters")]
    Malformed,
}

impl ApprovalToken {
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Self(hex::encode(bytes)))
    }

    /// The token as it appears in a link.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash_token(&self.0).expect("a generated token is well formed")
    }
}

impl std::fmt::Debug for ApprovalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApprovalToken(<redacted>)")
    }
}

/// The stored form of a token someone presents. Rejects anything that is
/// not a token's shape before it reaches the table.
pub fn hash_token(presented: &str) -> Result<String, TokenError> {
    let presented = presented.trim();
    if presented.len() != 64 || !presented.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    Ok(hex::encode(Sha256::digest(
        presented.to_ascii_lowercase().as_bytes(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_hashed() {
        let a = ApprovalToken::generate().unwrap();
        let b = ApprovalToken::generate().unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(a.reveal().len(), 64);
        assert_ne!(a.hash(), a.reveal());
        assert_eq!(hash_token(a.reveal()).unwrap(), a.hash());
        assert_eq!(
            hash_token(&a.reveal().to_ascii_uppercase()).unwrap(),
            a.hash()
        );
        assert!(!format!("{a:?}").contains(a.reveal()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
            assert_eq!(hash_token(bad), Err(TokenError::Malformed), "{bad}");
        }
    }
}
