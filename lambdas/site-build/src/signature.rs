//! GitHub webhook signatures (`X-Hub-Signature-256`).
//!
//! GitHub signs the exact bytes it sends: HMAC-SHA256 of the raw request body
//! keyed with the webhook secret, sent as `sha256=<64 hex digits>`. The check
//! must run on those raw bytes. A body that was parsed and serialised again
//! (other key order, other whitespace, other escaping) is a different byte
//! string and fails, even if it means the same JSON.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header GitHub puts the signature in (HTTP header names are
/// case-insensitive; Function URLs deliver them lowercased).
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

const SCHEME: &str = "sha256=";

/// SHA-256 output length; anything else cannot be a signature.
const SIGNATURE_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the request has no {SIGNATURE_HEADER} header (is a secret set on the GitHub webhook?)"
    )]
    Missing,
    /// `found` is what stands before the first `=`, never the signature itself.
    #[error("{SIGNATURE_HEADER} must start with \"{SCHEME}\", found scheme {found:?}")]
    WrongScheme { found: String },
    #[error("{SIGNATURE_HEADER} is not {expected} hex digits after \"{SCHEME}\": {reason}", expected = SIGNATURE_LEN * 2)]
    MalformedHex { reason: String },
    #[error("{SIGNATURE_HEADER} does not match the body: another secret, or the body changed after GitHub signed it")]
    Mismatch,
}

/// The empty string cannot be a webhook secret: anyone could sign with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the GitHub webhook secret is empty")]
pub struct EmptySecret;

/// The shared secret configured on the GitHub webhook.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, EmptySecret> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(EmptySecret);
        }
        Ok(Self(secret))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// The header value GitHub would send for `raw_body` (for tests and the
    /// local stack, which replay deliveries).
    pub fn sign(&self, raw_body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(raw_body);
        format!("{SCHEME}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks `header` (the `X-Hub-Signature-256` value, if any) against the
    /// raw request body. The comparison is constant-time, so timing does not
    /// tell an attacker how many leading bytes of a forgery were right.
    pub fn verify(&self, header: Option<&str>, raw_body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?.trim();
        let digits = header
            .strip_prefix(SCHEME)
            .ok_or_else(|| SignatureError::WrongScheme {
                found: header
                    .split_once('=')
                    .map_or("<none>", |(scheme, _)| scheme)
                    .chars()
                    .take(16)
                    .collect(),
            })?;
        let claimed = hex::decode(digits).map_err(|e| SignatureError::MalformedHex {
            reason: e.to_string(),
        })?;
        if claimed.len() != SIGNATURE_LEN {
            return Err(SignatureError::MalformedHex {
                reason: format!("{} digits", digits.chars().count()),
            });
        }
        let mut mac = self.mac();
        mac.update(raw_body);
        mac.verify_slice(&claimed)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example from GitHub's "Validating webhook deliveries" page.
    const DOCS_SECRET: &str = "It's a Secret to Everybody";
    const DOCS_BODY: &[u8] = b"Hello, World!";
    const DOCS_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    const PUSH: &[u8] = br#"{"ref":"refs/heads/main","after":"9f2c1e0","repository":{"full_name":"acme/site"},"pusher":{"name":"ana"}}"#;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("s3cr3t").unwrap()
    }

    #[test]
    fn accepts_githubs_documented_example() {
        let secret = WebhookSecret::new(DOCS_SECRET).unwrap();
        assert_eq!(secret.sign(DOCS_BODY), DOCS_SIGNATURE);
        assert_eq!(secret.verify(Some(DOCS_SIGNATURE), DOCS_BODY), Ok(()));
    }

    #[test]
    fn accepts_the_signature_of_the_raw_body_in_either_hex_case() {
        let header = secret().sign(PUSH);
        assert_eq!(secret().verify(Some(&header), PUSH), Ok(()));
        let upper = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert_eq!(secret().verify(Some(&upper), PUSH), Ok(()));
    }

    #[test]
    fn rejects_a_signature_over_reserialised_json_of_the_same_payload() {
        let value: serde_json::Value = serde_json::from_slice(PUSH).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        assert_eq!(
            value,
            serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()
        );
        // Signed over the reformatted JSON, checked against what GitHub sent.
        let reformatted_signature = secret().sign(&pretty);
        assert_eq!(
            secret().verify(Some(&reformatted_signature), PUSH),
            Err(SignatureError::Mismatch)
        );
        // And the other way round: GitHub's signature does not cover a re-serialised body.
        let original = secret().sign(PUSH);
        assert_eq!(
            secret().verify(Some(&original), &pretty),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_a_missing_header() {
        assert_eq!(secret().verify(None, PUSH), Err(SignatureError::Missing));
    }

    #[test]
    fn rejects_the_sha1_scheme_and_a_bare_digest() {
        let sha1 = "sha1=0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            secret().verify(Some(sha1), PUSH),
            Err(SignatureError::WrongScheme {
                found: "sha1".into()
            })
        );
        let bare = &secret().sign(PUSH)["sha256=".len()..];
        assert_eq!(
            secret().verify(Some(bare), PUSH),
            Err(SignatureError::WrongScheme {
                found: "<none>".into()
            })
        );
    }

    #[test]
    fn rejects_bad_hex_and_a_wrong_length_as_malformed() {
        let not_hex = format!("sha256={}", "zz".repeat(32));
        assert!(matches!(
            secret().verify(Some(&not_hex), PUSH),
            Err(SignatureError::MalformedHex { .. })
        ));
        let short = "sha256=abcd";
        assert!(matches!(
            secret().verify(Some(short), PUSH),
            Err(SignatureError::MalformedHex { .. })
        ));
        let odd = format!("sha256={}", "a".repeat(63));
        assert!(matches!(
            secret().verify(Some(&odd), PUSH),
            Err(SignatureError::MalformedHex { .. })
        ));
    }

    #[test]
    fn rejects_another_secret_and_a_tampered_body() {
        let header = secret().sign(PUSH);
        let other = WebhookSecret::new("not the secret").unwrap();
        assert_eq!(
            other.verify(Some(&header), PUSH),
            Err(SignatureError::Mismatch)
        );
        let tampered = String::from_utf8(PUSH.to_vec())
            .unwrap()
            .replace("main", "prod");
        assert_eq!(
            secret().verify(Some(&header), tampered.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_empty_secret_is_refused_and_never_printed() {
        assert_eq!(WebhookSecret::new("").unwrap_err(), EmptySecret);
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(<redacted>)");
    }
}
