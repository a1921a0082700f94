//! CloudFront invalidations after a switch.
//!
//! Only what changed is invalidated: a one-page edit should not empty the
//! cache of every image. The paths are the URLs viewers ask for, so a
//! changed `blog/index.html` also invalidates `/blog/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tracing::warn;

use super::layout::ManifestEntry;

/// CloudFront bills invalidation paths beyond 1,000 a month, and a wildcard
/// counts as one path: past this many paths, one `/*` is sent instead.
pub const DEFAULT_INVALIDATION_PATH_LIMIT: usize = 15;

/// Characters left as they are in S3 copy sources and CloudFront paths;
/// everything else is percent-encoded (both APIs want URL-encoded paths,
/// and an unencoded `*` would be a CloudFront wildcard).
pub(super) const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A CloudFront distribution id such as `E2QWRUHEXAMPLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a CloudFront distribution id: expected capital letters and digits like E2QWRUHEXAMPLE (the id, not the distribution's domain or URL)")]
pub struct InvalidDistributionId {
    pub given: String,
}

impl FromStr for DistributionId {
    type Err = InvalidDistributionId;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidDistributionId {
                given: raw.to_owned(),
            })
        }
    }
}

impl DistributionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What became of the CloudFront invalidation of a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationStatus {
    /// Nothing a viewer could have cached changed.
    NotNeeded,
    /// No distribution is configured (e.g. local previews).
    NotConfigured,
    Created {
        id: String,
    },
    /// The deploy is live, but caches may serve the old files until their
    /// max-age runs out. Not an error of the publish: failing it would make
    /// the retry find the site unchanged and never invalidate at all.
    Failed {
        message: String,
    },
}

/// Paths whose content or headers differ between two deploys, including
/// paths only one of them has.
pub(super) fn changed_paths<'a>(
    old: &'a BTreeMap<String, ManifestEntry>,
    new: &'a BTreeMap<String, ManifestEntry>,
) -> BTreeSet<&'a str> {
    let added_or_changed = new
        .iter()
        .filter(|(path, entry)| old.get(*path) != Some(entry))
        .map(|(path, _)| path.as_str());
    let deleted = old
        .keys()
        .filter(|path| !new.contains_key(*path))
        .map(String::as_str);
    added_or_changed.chain(deleted).collect()
}

/// CloudFront paths for changed site paths: `/path`, plus `/dir/` for a
/// `dir/index.html` (CloudFront caches the URL viewers ask for). Beyond
/// `limit` paths, one `/*`.
pub(super) fn invalidation_paths(changed: &BTreeSet<&str>, limit: usize) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for path in changed {
        paths.insert(format!("/{}", utf8_percent_encode(path, PATH_SAFE)));
        if *path == "index.html" {
            paths.insert("/".to_owned());
        } else if let Some(dir) = path.strip_suffix("/index.html") {
            paths.insert(format!("/{}/", utf8_percent_encode(dir, PATH_SAFE)));
        }
    }
    if paths.len() > limit {
        vec!["/*".to_owned()]
    } else {
        paths.into_iter().collect()
    }
}

/// Sends one CreateInvalidation for `paths` (if there are any and a
/// distribution is configured). Never fails: see [`InvalidationStatus::Failed`].
pub(super) async fn invalidate(
    cloudfront: Option<&(aws_sdk_cloudfront::Client, DistributionId)>,
    paths: &[String],
    reference: &str,
) -> InvalidationStatus {
    if paths.is_empty() {
        return InvalidationStatus::NotNeeded;
    }
    let Some((cloudfront, distribution)) = cloudfront else {
        return InvalidationStatus::NotConfigured;
    };
    let quantity = i32::try_from(paths.len()).expect("at most a few thousand paths");
    let batch = Paths::builder()
        .quantity(quantity)
        .set_items(Some(paths.to_vec()))
        .build()
        .and_then(|paths| {
            InvalidationBatch::builder()
                .paths(paths)
                // CloudFront treats a repeated reference as the same
                // request: a retried publish does not invalidate twice.
                .caller_reference(reference)
                .build()
        });
    let batch = match batch {
        Ok(batch) => batch,
        Err(err) => {
            return InvalidationStatus::Failed {
                message: err.to_string(),
            }
        }
    };
    let created = cloudfront
        .create_invalidation()
        .distribution_id(distribution.as_str())
        .invalidation_batch(batch)
        .send()
        .await;
    match created {
        Ok(out) => match out.invalidation() {
            Some(invalidation) => InvalidationStatus::Created {
                id: invalidation.id().to_owned(),
            },
            None => InvalidationStatus::Failed {
                message: format!("CreateInvalidation on {distribution} returned no invalidation"),
            },
        },
        Err(err) => {
            let message = format!(
                "CreateInvalidation on {distribution}: {}",
                aws_sdk_cloudfront::error::DisplayErrorContext(&err)
            );
            warn!(%message, "invalidation failed; caches may serve old files until they expire");
            InvalidationStatus::Failed { message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha: &str) -> ManifestEntry {
        ManifestEntry {
            sha256: sha.to_owned(),
            size: 1,
            content_type: "text/html; charset=utf-8".to_owned(),
            cache_control: "public, max-age=0, must-revalidate".to_owned(),
        }
    }

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, ManifestEntry> {
        pairs
            .iter()
            .map(|(path, sha)| (path.to_string(), entry(sha)))
            .collect()
    }

    #[test]
    fn distribution_ids_are_ids_not_domains() {
        assert!("E2QWRUHEXAMPLE".parse::<DistributionId>().is_ok());
        for bad in [
            "",
            "d111111abcdef8.cloudfront.net",
            "https://d111111abcdef8.cloudfront.net",
            "e2qwruhexample",
            "E2QWRU HEXAMPLE",
        ] {
            let err = bad.parse::<DistributionId>().unwrap_err();
            assert!(err.to_string().contains("E2QWRUHEXAMPLE"), "{err}");
        }
    }

    #[test]
    fn changes_cover_added_changed_and_deleted_paths_and_headers() {
        let old = files(&[
            ("index.html", "a"),
            ("about/index.html", "b"),
            ("gone.css", "c"),
        ]);
        let mut new = files(&[
            ("index.html", "a"),
            ("about/index.html", "B"),
            ("new.js", "d"),
        ]);
        let changed = changed_paths(&old, &new);
        assert_eq!(
            changed.into_iter().collect::<Vec<_>>(),
            ["about/index.html", "gone.css", "new.js"]
        );
        new.get_mut("index.html").unwrap().cache_control = "public, max-age=3600".into();
        assert!(changed_paths(&old, &new).contains("index.html"));
    }

    #[test]
    fn index_files_invalidate_their_directory_url_too() {
        let changed: BTreeSet<&str> = ["index.html", "blog/index.html", "_astro/app.1a2b3c4d.js"]
            .into_iter()
            .collect();
        assert_eq!(
            invalidation_paths(&changed, 15),
            [
                "/",
                "/_astro/app.1a2b3c4d.js",
                "/blog/",
                "/blog/index.html",
                "/index.html"
            ]
        );
    }

    #[test]
    fn invalidation_paths_are_url_encoded_and_never_wildcards_by_accident() {
        let changed: BTreeSet<&str> = ["über uns/index.html", "a*b.txt"].into_iter().collect();
        assert_eq!(
            invalidation_paths(&changed, 15),
            [
                "/%C3%BCber%20uns/",
                "/%C3%BCber%20uns/index.html",
                "/a%2Ab.txt"
            ]
        );
    }

    #[test]
    fn many_paths_collapse_to_one_wildcard() {
        let names: Vec<String> = (0..16).map(|i| format!("page-{i}.css")).collect();
        let changed: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(invalidation_paths(&changed, 15), ["/*"]);
        let fifteen: BTreeSet<&str> = names.iter().take(15).map(String::as_str).collect();
        assert_eq!(invalidation_paths(&fifteen, 15).len(), 15);
    }
}
