//! Branch names to preview slugs.
//!
//! A slug names a branch's preview in S3 keys and in its URL, where it is
//! one DNS label (`{slug}.preview.example.com`): lowercase ASCII letters,
//! digits and `-`, no `-` at either end, at most 63 characters.
//!
//! Two branches must never share a preview, so the mapping is injective
//! in practice: a branch that already is a valid slug keeps its name; any
//! other branch (something was lowercased, replaced or cut) gets
//! `-` + the first 8 hex digits of sha256(branch name) appended.
//! `feature/Login`, `FEATURE-login` and `feature-login` therefore land on
//! three different previews.

use std::fmt;

use sha2::{Digest, Sha256};

/// A DNS label is at most 63 octets.
pub const MAX_SLUG_LEN: usize = 63;

/// Hex digits of sha256(branch) that tell lossy slugs apart (32 bits).
const HASH_DIGITS: usize = 8;

/// A branch's preview name; see the module documentation for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreviewSlug(String);

impl PreviewSlug {
    pub fn from_branch(branch: &str) -> Self {
        let readable = readable(branch);
        let kept_verbatim = readable == branch
            && !readable.is_empty()
            && readable.len() <= MAX_SLUG_LEN
            // A verbatim name that looks like a hashed slug could collide with
            // one; hashing it too keeps the two kinds of slug disjoint.
            && !looks_hashed(&readable);
        if kept_verbatim {
            return Self(readable);
        }
        let digest = hex::encode(Sha256::digest(branch.as_bytes()));
        let hash = &digest[..HASH_DIGITS];
        let room = MAX_SLUG_LEN - HASH_DIGITS - 1;
        let head = readable[..readable.len().min(room)].trim_end_matches('-');
        if head.is_empty() {
            Self(hash.to_owned())
        } else {
            Self(format!("{head}-{hash}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PreviewSlug {
    /// A slug as it appears in a preview's host name or keys, if it has a
    /// slug's shape (one lowercase DNS label). Which branch it came from
    /// cannot be told (a hashed slug is one-way); it names the preview.
    pub fn parse(slug: &str) -> Option<Self> {
        let valid = !slug.is_empty()
            && slug.len() <= MAX_SLUG_LEN
            && !slug.starts_with('-')
            && !slug.ends_with('-')
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        valid.then(|| Self(slug.to_owned()))
    }
}

impl fmt::Display for PreviewSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PreviewSlug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lowercase ASCII letters and digits kept; every run of anything else
/// becomes one `-`; no `-` at either end. May be empty (`🚀`).
fn readable(branch: &str) -> String {
    let mut out = String::with_capacity(branch.len());
    let mut pending_dash = false;
    for c in branch.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    out
}

/// The shape of a hashed slug: 8 hex digits, alone or after a `-`.
fn looks_hashed(slug: &str) -> bool {
    let tail_start = slug.len().saturating_sub(HASH_DIGITS);
    let tail = &slug[tail_start..];
    tail.len() == HASH_DIGITS
        && tail
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (tail_start == 0 || slug.as_bytes()[tail_start - 1] == b'-')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn slug(branch: &str) -> String {
        PreviewSlug::from_branch(branch).to_string()
    }

    #[test]
    fn slugs_read_back_from_host_names() {
        for branch in ["main", "feature/Login", "🚀", &"x".repeat(100)] {
            let slug = PreviewSlug::from_branch(branch);
            assert_eq!(PreviewSlug::parse(slug.as_str()), Some(slug));
        }
        for bad in ["", "-a", "a-", "Upper", "a.b", &"a".repeat(64)] {
            assert_eq!(PreviewSlug::parse(bad), None, "{bad}");
        }
    }

    fn assert_valid(slug: &str) {
        assert!(!slug.is_empty(), "empty slug");
        assert!(slug.len() <= MAX_SLUG_LEN, "{slug} is {} long", slug.len());
        assert!(
            slug.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{slug} has characters outside [a-z0-9-]"
        );
        assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{slug}");
        assert!(!slug.contains("--"), "{slug}");
    }

    #[test]
    fn a_branch_that_is_already_a_slug_keeps_its_name() {
        assert_eq!(slug("feature-login"), "feature-login");
        assert_eq!(slug("main"), "main");
        assert_eq!(slug("fix-123"), "fix-123");
    }

    #[test]
    fn a_changed_name_is_readable_and_tagged_with_its_hash() {
        let s = slug("feature/Login");
        assert!(s.starts_with("feature-login-"), "{s}");
        assert_eq!(s.len(), "feature-login-".len() + HASH_DIGITS);
        // Same branch, same slug: a preview keeps its URL across pushes.
        assert_eq!(s, slug("feature/Login"));
    }

    #[test]
    fn branches_that_read_alike_get_distinct_slugs() {
        let branches = [
            "feature/Login",
            "FEATURE-login",
            "feature-login",
            "feature--login",
            "feature_login",
            "-feature-login-",
        ];
        let slugs: BTreeSet<String> = branches.iter().map(|b| slug(b)).collect();
        assert_eq!(slugs.len(), branches.len(), "{slugs:?}");
        slugs.iter().for_each(|s| assert_valid(s));
    }

    #[test]
    fn unicode_is_replaced_and_hashed() {
        let s = slug("fix/ünïcode-é");
        assert_valid(&s);
        assert!(s.starts_with("fix-n-code-"), "{s}");
        assert_ne!(s, slug("fix/unicode-e"));
    }

    #[test]
    fn an_emoji_only_branch_still_has_a_slug() {
        let rocket = slug("🚀");
        let party = slug("🎉🎉");
        assert_valid(&rocket);
        assert_valid(&party);
        assert_eq!(rocket.len(), HASH_DIGITS);
        assert_ne!(rocket, party);
    }

    #[test]
    fn long_names_are_cut_to_a_dns_label_and_stay_distinct() {
        let long = "a".repeat(100);
        let s = slug(&long);
        assert_valid(&s);
        assert_eq!(s.len(), MAX_SLUG_LEN);

        let common = format!("feature/{}", "x".repeat(88));
        let (one, two) = (format!("{common}-1"), format!("{common}-2"));
        assert_eq!((one.len(), two.len()), (98, 98));
        let (s1, s2) = (slug(&one), slug(&two));
        assert_valid(&s1);
        assert_valid(&s2);
        assert_ne!(s1, s2);

        // Exactly 63 valid characters fit verbatim; 64 do not.
        let fits = "b".repeat(MAX_SLUG_LEN);
        assert_eq!(slug(&fits), fits);
        let over = "b".repeat(MAX_SLUG_LEN + 1);
        assert_valid(&slug(&over));
        assert_ne!(slug(&over), fits);
    }

    #[test]
    fn a_cut_never_leaves_a_dash_before_the_hash() {
        // The 54th readable character is a dash here.
        let branch = format!("{}/tail", "c".repeat(MAX_SLUG_LEN - HASH_DIGITS - 1));
        let s = slug(&branch);
        assert_valid(&s);
    }

    #[test]
    fn a_verbatim_name_never_collides_with_a_hashed_one() {
        let hashed = slug("feature/Login");
        // Someone names a branch exactly like the hashed slug of another.
        assert_ne!(slug(&hashed), hashed);
        assert_valid(&slug(&hashed));
        let emoji = slug("🚀");
        assert_ne!(slug(&emoji), emoji);
    }

    #[test]
    fn every_slug_is_valid_and_distinct_over_a_mixed_set() {
        let branches = [
            "feature/Login".to_owned(),
            "FEATURE-login".to_owned(),
            "feature-login".to_owned(),
            "fix/ünïcode-é".to_owned(),
            "🚀".to_owned(),
            "🎉".to_owned(),
            "a".repeat(100),
            format!("{}1", "z".repeat(99)),
            format!("{}2", "z".repeat(99)),
            "release/2026.11".to_owned(),
            "dependabot/npm_and_yarn/astro-5.1.2".to_owned(),
            "UPPER".to_owned(),
            "upper".to_owned(),
            "deadbeef".to_owned(),
        ];
        let slugs: BTreeSet<String> = branches.iter().map(|b| slug(b)).collect();
        assert_eq!(slugs.len(), branches.len(), "{slugs:?}");
        slugs.iter().for_each(|s| assert_valid(s));
    }
}
