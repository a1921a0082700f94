use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::NotifyError;

/// A webhook URL. For Slack and most webhook services the path or query *is*
/// the credential, so only the scheme and host are ever printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Accepts an absolute `http://` or `https://` URL with a host; surrounding
    /// whitespace (a trailing newline from a parameter store) is dropped.
    pub fn new(url: impl Into<String>) -> Result<Self, NotifyError> {
        let url = url.into().trim().to_owned();
        match split_url(&url) {
            Some((scheme, host))
                if !host.is_empty()
                    && (scheme.eq_ignore_ascii_case("http")
                        || scheme.eq_ignore_ascii_case("https")) =>
            {
                Ok(Self(url))
            }
            _ => Err(NotifyError::InvalidUrl {
                redacted: redact(&url),
            }),
        }
    }

    /// The full URL, secret included. Use it to make the request, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]/…redacted`: safe for logs and errors.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Splits `scheme://authority/rest` into scheme and host[:port], dropping any
/// `user:password@` (also a secret).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some((scheme, host))
}

fn redact(url: &str) -> String {
    match split_url(url) {
        Some((scheme, host)) => format!("{scheme}://{host}/…redacted"),
        None => "…redacted".to_owned(),
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl FromStr for SecretUrl {
    type Err = NotifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for SecretUrl {
    type Error = NotifyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

/// Where a notice goes, and so which payload shape it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Slack incoming webhook: receives [`crate::slack_payload`].
    Slack(SecretUrl),
    /// Any endpoint taking JSON: receives [`crate::webhook_payload`].
    Webhook(SecretUrl),
}

impl Target {
    pub fn url(&self) -> &SecretUrl {
        match self {
            Self::Slack(url) | Self::Webhook(url) => url,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Slack(_) => "slack",
            Self::Webhook(_) => "webhook",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    #[test]
    fn printing_a_secret_url_never_shows_its_path_or_query() {
        for raw in [
            SLACK,
            "https://example.com/hook?token=XXXXSECRET",
            "https://user:XXXXSECRET@example.com/hooks/T000",
            "https://example.com#XXXXSECRET",
        ] {
            let secret = SecretUrl::new(raw).unwrap();
            let shown = [
                format!("{secret:?}"),
                format!("{secret}"),
                format!("{:?}", Target::Slack(secret.clone())),
                format!("{}", Target::Webhook(secret.clone())),
            ];
            for text in shown {
                assert!(!text.contains("XXXXSECRET"), "{text}");
                assert!(!text.contains("T000"), "{text}");
                assert!(!text.contains("services"), "{text}");
                assert!(text.contains("/…redacted"), "{text}");
            }
            assert_eq!(secret.expose(), raw);
        }
        let secret = SecretUrl::new(SLACK).unwrap();
        assert_eq!(secret.to_string(), "https://hooks.slack.com/…redacted");
        assert_eq!(
            format!("{secret:?}"),
            r#"SecretUrl("https://hooks.slack.com/…redacted")"#
        );
    }

    #[test]
    fn a_url_without_scheme_or_host_is_rejected_without_echoing_it() {
        for raw in [
            "hooks.slack.com/services/T000/B000/XXXXSECRET",
            "ftp://hooks.slack.com/XXXXSECRET",
            "https:///XXXXSECRET",
            "",
        ] {
            let err = SecretUrl::new(raw).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("XXXXSECRET"), "{text}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let secret: SecretUrl = format!(" {SLACK}\n").parse().unwrap();
        assert_eq!(secret.expose(), SLACK);
    }

    #[test]
    fn deserializes_through_validation() {
        let ok: SecretUrl = serde_json::from_value(serde_json::json!(SLACK)).unwrap();
        assert_eq!(ok.expose(), SLACK);
        assert!(serde_json::from_value::<SecretUrl>(serde_json::json!("nope")).is_err());
    }
}
