//! The names a trigger carries into a build: repository, branch, commit.
//!
//! Each comes from outside (a webhook payload, an email, a direct
//! invocation) and ends up in a `git fetch`, an S3 key or a URL, so each is
//! checked once, here, and is a distinct type from then on.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sitedao::PreviewSlug;

/// GitHub's own limit on a repository name; owners are shorter still.
const MAX_REPOSITORY_PART: usize = 100;

/// Git has no limit, but a ref name is a file name on most filesystems.
const MAX_BRANCH_LEN: usize = 255;

/// How much of a rejected value an error message repeats.
const SHOWN: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository {found:?} is not \"owner/name\": {reason}")]
    Repository { found: String, reason: &'static str },
    #[error("branch {found:?} is not a valid branch name: {reason}")]
    Branch { found: String, reason: &'static str },
    #[error("commit {found:?} is not a full commit SHA (40 or 64 hex digits)")]
    Commit { found: String },
}

/// The start of a rejected value, for an error message (inputs can be long,
/// and a log line should stay one).
fn shown(value: &str) -> String {
    value.chars().take(SHOWN).collect()
}

/// A GitHub repository, `owner/name`.
///
/// GitHub treats both parts case-insensitively; [`Repository::same_as`]
/// compares that way, `==` compares the spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    owner: String,
    name: String,
}

impl Repository {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same repository on GitHub, however either is capitalised.
    pub fn same_as(&self, other: &Repository) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner) && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl FromStr for Repository {
    type Err = NameError;

    fn from_str(full_name: &str) -> Result<Self, NameError> {
        let reject = |reason| NameError::Repository {
            found: shown(full_name),
            reason,
        };
        let (owner, name) = full_name
            .split_once('/')
            .ok_or_else(|| reject("there is no '/'"))?;
        for part in [owner, name] {
            if part.is_empty() {
                return Err(reject("the owner or the name is empty"));
            }
            if part.len() > MAX_REPOSITORY_PART {
                return Err(reject("a part is longer than 100 characters"));
            }
            if !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(reject(
                    "only ASCII letters, digits, '-', '_' and '.' are allowed, with one '/'",
                ));
            }
            if part.starts_with(['-', '.']) {
                return Err(reject("a part starts with '-' or '.'"));
            }
        }
        Ok(Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl Serialize for Repository {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A branch name (`feature/login`, never `refs/heads/feature/login`).
///
/// The rules are git's own (`git check-ref-format --branch`), so every
/// branch that can exist is accepted, plus none that could be read as a
/// command-line option or a path outside the repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Branch(String);

impl Branch {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `refs/heads/{branch}`, as a push event names it.
    pub fn git_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }

    /// The name of this branch's preview.
    pub fn preview_slug(&self) -> PreviewSlug {
        PreviewSlug::from_branch(&self.0)
    }
}

impl FromStr for Branch {
    type Err = NameError;

    fn from_str(branch: &str) -> Result<Self, NameError> {
        let reject = |reason| NameError::Branch {
            found: shown(branch),
            reason,
        };
        if branch.is_empty() {
            return Err(reject("it is empty"));
        }
        if branch.len() > MAX_BRANCH_LEN {
            return Err(reject("it is longer than 255 bytes"));
        }
        if branch.starts_with('-') {
            return Err(reject("it starts with '-'"));
        }
        if branch == "@" || branch == "HEAD" {
            return Err(reject("it names no branch"));
        }
        if branch
            .chars()
            .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
        {
            return Err(reject(
                "it holds a space, a control character or one of ~ ^ : ? * [ \\",
            ));
        }
        if branch.contains("..") || branch.contains("@{") {
            return Err(reject("it holds \"..\" or \"@{\""));
        }
        if branch.ends_with('.') {
            return Err(reject("it ends with '.'"));
        }
        for component in branch.split('/') {
            if component.is_empty() {
                return Err(reject("it has an empty path component"));
            }
            if component.starts_with('.') || component.ends_with(".lock") {
                return Err(reject(
                    "a path component starts with '.' or ends with \".lock\"",
                ));
            }
        }
        Ok(Self(branch.to_owned()))
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A full commit id: 40 hex digits (SHA-1) or 64 (SHA-256 repositories),
/// kept in lowercase. Abbreviations are refused: they can become ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommitSha {
    type Err = NameError;

    fn from_str(sha: &str) -> Result<Self, NameError> {
        let full_length = sha.len() == 40 || sha.len() == 64;
        let all_zero = sha.bytes().all(|b| b == b'0');
        if !full_length || all_zero || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            // All zeros is how GitHub says "no commit" (a deleted branch).
            return Err(NameError::Commit { found: shown(sha) });
        }
        Ok(Self(sha.to_ascii_lowercase()))
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(name: &str) -> Result<Branch, NameError> {
        name.parse()
    }

    #[test]
    fn a_repository_is_owner_and_name() {
        let repository: Repository = "acme-corp/site.example_2".parse().unwrap();
        assert_eq!(repository.owner(), "acme-corp");
        assert_eq!(repository.name(), "site.example_2");
        assert_eq!(repository.to_string(), "acme-corp/site.example_2");
        assert_eq!(
            serde_json::to_value(&repository).unwrap(),
            serde_json::json!("acme-corp/site.example_2")
        );
    }

    #[test]
    fn repositories_compare_case_insensitively_only_when_asked() {
        let lower: Repository = "acme/site".parse().unwrap();
        let upper: Repository = "Acme/Site".parse().unwrap();
        assert!(lower.same_as(&upper));
        assert_ne!(lower, upper);
    }

    #[test]
    fn a_repository_that_is_not_owner_slash_name_is_refused() {
        for bad in [
            "",
            "site",
            "acme/",
            "/site",
            "acme/site/extra",
            "acme/../x",
            "acme/.git",
            "-acme/site",
            "acme/si te",
            "https://github.com/acme/site",
        ] {
            assert!(
                matches!(bad.parse::<Repository>(), Err(NameError::Repository { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn git_branch_names_are_accepted() {
        for good in [
            "main",
            "feature/login",
            "dependabot/npm_and_yarn/astro-5.1.2",
            "fix/ünïcode",
            "release-2026.11",
            "UPPER",
        ] {
            assert_eq!(branch(good).unwrap().as_str(), good);
        }
        assert_eq!(
            branch("feature/login").unwrap().git_ref(),
            "refs/heads/feature/login"
        );
    }

    #[test]
    fn names_git_refuses_or_that_read_as_options_are_refused() {
        for bad in [
            "",
            "-f",
            "--upload-pack=evil",
            "a..b",
            "../etc",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a@{1}",
            "@",
            "HEAD",
            "feature/",
            "/feature",
            "a//b",
            ".hidden",
            "feature/.hidden",
            "main.lock",
            "main.",
            "tab\there",
        ] {
            assert!(
                matches!(branch(bad), Err(NameError::Branch { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(branch(&"b".repeat(256)).is_err());
    }

    #[test]
    fn a_branch_has_the_preview_slug_of_its_name() {
        assert_eq!(
            branch("feature/Login").unwrap().preview_slug(),
            PreviewSlug::from_branch("feature/Login")
        );
    }

    #[test]
    fn commits_are_full_hex_shas_in_lowercase() {
        let sha1 = "6DCB09B5B57875F334F61AEBED695E2E4193DB5E";
        assert_eq!(
            sha1.parse::<CommitSha>().unwrap().as_str(),
            sha1.to_ascii_lowercase()
        );
        assert!("a".repeat(64).parse::<CommitSha>().is_ok());
        for bad in [
            "6dcb09b",
            "0000000000000000000000000000000000000000",
            "6dcb09b5b57875f334f61aebed695e2e4193db5g",
            "",
        ] {
            assert!(bad.parse::<CommitSha>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_error_repeats_only_the_start_of_a_long_value() {
        let long = format!("x{}", "/".repeat(500));
        let message = branch(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }
}
