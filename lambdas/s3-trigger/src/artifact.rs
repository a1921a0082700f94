//! Artifact keys: `{repo}/{branch}/{version}/{file}`.

use std::fmt;

use percent_encoding::percent_decode_str;

/// The file whose upload starts a build. CI uploads it last.
pub const TRIGGER_FILE: &str = "cloudformation-params.json";
/// The template every build deploys.
pub const TEMPLATE_FILE: &str = "cloudformation.template";

/// A parsed, validated artifact key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKey {
    pub repo: String,
    /// May contain `/` (`feature/login`).
    pub branch: String,
    pub version: Version,
    pub file: String,
}

/// `{build_number}.{commit_hash}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub build_number: u64,
    pub commit_hash: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.build_number, self.commit_hash)
    }
}

/// Why a key is not an artifact key; each names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {key:?} is not valid URL encoding of UTF-8 text")]
    NotUtf8 { key: String },
    #[error("key {key:?} has {found} segments; expected {{repo}}/{{branch}}/{{version}}/{{file}} (at least 4)")]
    TooFewSegments { key: String, found: usize },
    #[error("key {key:?} has an empty, '.' or '..' segment; every segment must be a plain name")]
    BadSegment { key: String },
    #[error("key {key:?}: repo {repo:?} must be 1-64 letters, digits or '-', starting with a letter (it becomes part of the stack name)")]
    BadRepo { key: String, repo: String },
    #[error("key {key:?}: version {version:?} must be {{build_number}}.{{commit_hash}}, e.g. 42.1a2b3c4 (build number digits, commit hash 4-64 hex characters)")]
    BadVersion { key: String, version: String },
    #[error("key {key:?}: branch has a character outside printable text")]
    BadBranch { key: String },
}

impl ArtifactKey {
    /// Parses a key as it arrives in an S3 event: URL-encoded, `+` for space.
    pub fn from_event_key(encoded: &str) -> Result<Self, KeyError> {
        let plus_decoded = encoded.replace('+', " ");
        let key = percent_decode_str(&plus_decoded)
            .decode_utf8()
            .map_err(|_| KeyError::NotUtf8 {
                key: encoded.to_owned(),
            })?
            .into_owned();
        Self::parse(&key)
    }

    /// Parses a decoded object key. The repo comes from the front, version and
    /// file from the back; everything between is the branch.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let segments: Vec<&str> = key.split('/').collect();
        if segments.len() < 4 {
            return Err(KeyError::TooFewSegments {
                key: key.to_owned(),
                found: segments.len(),
            });
        }
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err(KeyError::BadSegment {
                key: key.to_owned(),
            });
        }
        let repo = segments[0];
        let file = segments[segments.len() - 1];
        let version = segments[segments.len() - 2];
        let branch = segments[1..segments.len() - 2].join("/");

        let repo_ok = repo.len() <= 64
            && repo.starts_with(|c: char| c.is_ascii_alphabetic())
            && repo.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !repo_ok {
            return Err(KeyError::BadRepo {
                key: key.to_owned(),
                repo: repo.to_owned(),
            });
        }
        if branch.chars().any(char::is_control) {
            return Err(KeyError::BadBranch {
                key: key.to_owned(),
            });
        }
        let version = parse_version(version).ok_or_else(|| KeyError::BadVersion {
            key: key.to_owned(),
            version: version.to_owned(),
        })?;
        Ok(ArtifactKey {
            repo: repo.to_owned(),
            branch,
            version,
            file: file.to_owned(),
        })
    }

    /// `{repo}/{branch}/{version}/`: where this build's files live.
    pub fn prefix(&self) -> String {
        format!("{}/{}/{}/", self.repo, self.branch, self.version)
    }
}

fn parse_version(version: &str) -> Option<Version> {
    let (number, hash) = version.split_once('.')?;
    let number_ok =
        !number.is_empty() && number.len() <= 19 && number.bytes().all(|b| b.is_ascii_digit());
    let hash_ok = (4..=64).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !number_ok || !hash_ok {
        return None;
    }
    Some(Version {
        build_number: number.parse().ok()?,
        commit_hash: hash.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_with_slashes_sits_between_repo_and_version() {
        let key =
            ArtifactKey::parse("shop/feature/login/42.1a2b3c4/cloudformation-params.json").unwrap();
        assert_eq!(key.repo, "shop");
        assert_eq!(key.branch, "feature/login");
        assert_eq!(key.version.build_number, 42);
        assert_eq!(key.version.commit_hash, "1a2b3c4");
        assert_eq!(key.file, TRIGGER_FILE);
        assert_eq!(key.prefix(), "shop/feature/login/42.1a2b3c4/");
    }

    #[test]
    fn event_keys_are_url_decoded_with_plus_as_space() {
        let key =
            ArtifactKey::from_event_key("shop/fix+it%2Fnow/7.abcd/cloudformation-params.json")
                .unwrap();
        assert_eq!(key.branch, "fix it/now");
    }

    #[test]
    fn every_rule_is_named_in_its_error() {
        let cases = [
            ("shop/main/cloudformation-params.json", "at least 4"),
            ("shop/../1.abcd/cloudformation-params.json", "'..'"),
            ("shop/main//1.abcd/cloudformation-params.json", "empty"),
            (
                "shop/main/42/cloudformation-params.json",
                "{build_number}.{commit_hash}",
            ),
            (
                "shop/main/x.abcd/cloudformation-params.json",
                "{build_number}.{commit_hash}",
            ),
            ("shop/main/1.zzzz/cloudformation-params.json", "hex"),
            (
                "shop_app/main/1.abcd/cloudformation-params.json",
                "stack name",
            ),
        ];
        for (key, rule) in cases {
            let err = ArtifactKey::parse(key).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name the key");
            assert!(err.contains(rule), "{err} should name the rule {rule}");
        }
        let err = ArtifactKey::from_event_key("shop/ma%FFin/1.abcd/cloudformation-params.json")
            .unwrap_err();
        assert!(matches!(err, KeyError::NotUtf8 { .. }));
    }
}
