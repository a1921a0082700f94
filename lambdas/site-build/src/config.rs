//! The function's configuration, read once from its environment. Every
//! problem is collected and reported together, so one failed cold start
//! names everything that needs fixing.

use std::time::Duration;

use sitedao::PublishTarget;

use crate::trigger::{Branch, Repository};

/// A secret given directly (local stack, tests) or as an SSM SecureString.
pub use notify::SecretSource as Secret;

/// Deploys kept per target for rollback, besides the live one.
pub const DEFAULT_KEEP_DEPLOYS: usize = 5;

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub env: String,
    pub repository: Repository,
    pub bucket: String,
    pub table: String,
    pub production_branch: Branch,
    pub staging_on_pull_request: bool,
    pub github_secret: Secret,
    pub github_token: Option<Secret>,
    pub github_api_url: String,
    pub production_url: String,
    pub staging_url: String,
    /// Holds `{slug}`.
    pub preview_url_template: String,
    pub live_store_arn: Option<String>,
    /// Deploys per target kept for rollback besides the live one
    /// (`SITE_KEEP_DEPLOYS`, default 5); older ones are pruned after each
    /// publish.
    pub keep_deploys: usize,
    /// The builder function (name or ARN): the only place repository code runs.
    pub builder_function: String,
    pub email_senders: Vec<String>,
    pub email_reply_from: Option<String>,
    pub email_prefix: String,
    pub slack_webhook: Option<Secret>,
    pub approval_ttl: Duration,
    pub preview_ttl: Duration,
    pub approval_base_url: Option<String>,
    /// Where sources are unpacked and built (Lambda: `/tmp`).
    pub work_dir: String,
}

#[derive(Debug, thiserror::Error)]
#[error("site-build is misconfigured: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl SiteConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let required = |name: &str, problems: &mut Vec<String>| {
            value(name).unwrap_or_else(|| {
                problems.push(format!("{name} is required"));
                String::new()
            })
        };
        let env = required("DEPLOY_ENV", &mut problems);
        let bucket = required("SITE_BUCKET", &mut problems);
        let table = required("SITE_DEPLOYMENTS_TABLE", &mut problems);
        let production_url = required("PRODUCTION_URL", &mut problems);
        let staging_url = required("STAGING_URL", &mut problems);
        let preview_url_template = required("PREVIEW_URL_TEMPLATE", &mut problems);
        if !preview_url_template.is_empty() && !preview_url_template.contains("{slug}") {
            problems.push(format!(
                "PREVIEW_URL_TEMPLATE must contain {{slug}}, got {preview_url_template:?}"
            ));
        }
        let repository = match required("SITE_REPOSITORY", &mut problems).parse::<Repository>() {
            Ok(repository) => Some(repository),
            Err(e) if value("SITE_REPOSITORY").is_some() => {
                problems.push(format!("SITE_REPOSITORY: {e}"));
                None
            }
            Err(_) => None,
        };
        let production_branch = match value("PRODUCTION_BRANCH")
            .unwrap_or_else(|| "main".into())
            .parse::<Branch>()
        {
            Ok(branch) => Some(branch),
            Err(e) => {
                problems.push(format!("PRODUCTION_BRANCH: {e}"));
                None
            }
        };
        let flag = |name: &str, problems: &mut Vec<String>| match value(name).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                problems.push(format!("{name} must be true or false, got {other:?}"));
                false
            }
        };
        let staging_on_pull_request = flag("STAGING_ON_PULL_REQUEST", &mut problems);
        let secret = |direct: &str, parameter: &str, problems: &mut Vec<String>| match (
            value(direct),
            value(parameter),
        ) {
            (Some(_), Some(_)) => {
                problems.push(format!("set {direct} or {parameter}, not both"));
                None
            }
            (Some(v), None) => Some(Secret::Value(v)),
            (None, Some(p)) => Some(Secret::Parameter(p)),
            (None, None) => None,
        };
        let github_secret = secret(
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_SECRET_PARAMETER",
            &mut problems,
        );
        if github_secret.is_none() && !problems.iter().any(|p| p.contains("GITHUB_SECRET")) {
            problems.push("GITHUB_SECRET_PARAMETER is required (the webhook secret)".into());
        }
        let github_token = secret("GITHUB_TOKEN", "GITHUB_TOKEN_PARAMETER", &mut problems);
        let slack_webhook = secret(
            "SLACK_WEBHOOK_URL",
            "SLACK_WEBHOOK_PARAMETER",
            &mut problems,
        );
        let github_api_url = value("GITHUB_API_URL")
            .unwrap_or_else(|| crate::build::DEFAULT_API_BASE.to_owned())
            .trim_end_matches('/')
            .to_owned();
        // Checked here, not when the GitHub clients are first made (with
        // the secrets, by the first invocation that needs them).
        if let Err(e) = crate::build::source::check_api_base(&github_api_url) {
            problems.push(format!("GITHUB_API_URL: {e}"));
        }
        let seconds = |name: &str, default: u64, problems: &mut Vec<String>| match value(name) {
            None => Duration::from_secs(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_secs(n),
                _ => {
                    problems.push(format!(
                        "{name} must be a positive whole number, got {raw:?}"
                    ));
                    Duration::from_secs(default)
                }
            },
        };
        let keep_deploys = match value("SITE_KEEP_DEPLOYS") {
            None => DEFAULT_KEEP_DEPLOYS,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "SITE_KEEP_DEPLOYS must be a whole number from 1 to 1000 (deploys kept for rollback besides the live one), got {raw:?}"
                    ));
                    DEFAULT_KEEP_DEPLOYS
                }
            },
        };
        let builder_function = required("BUILDER_FUNCTION", &mut problems);
        let approval_ttl = seconds("APPROVAL_TTL_SECONDS", 86_400, &mut problems);
        let preview_days = seconds("PREVIEW_TTL_DAYS", 30, &mut problems);
        let email_senders = value("EMAIL_SENDERS")
            .map(|list| {
                list.split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Self {
            env,
            repository: repository.expect("checked above"),
            bucket,
            table,
            production_branch: production_branch.expect("checked above"),
            staging_on_pull_request,
            github_secret: github_secret.expect("checked above"),
            github_token,
            github_api_url,
            production_url,
            staging_url,
            preview_url_template,
            keep_deploys,
            live_store_arn: value("LIVE_STORE_ARN"),
            builder_function,
            email_senders,
            email_reply_from: value("EMAIL_REPLY_FROM"),
            email_prefix: value("EMAIL_PREFIX").unwrap_or_else(|| "inbound/".into()),
            slack_webhook,
            approval_ttl,
            preview_ttl: Duration::from_secs(preview_days.as_secs() * 86_400),
            approval_base_url: value("APPROVAL_BASE_URL")
                .map(|url| url.trim_end_matches('/').to_owned()),
            work_dir: value("SITE_WORK_DIR").unwrap_or_else(|| "/tmp/site-build".into()),
        })
    }

    /// The public URL of a target.
    pub fn url_of(&self, target: &PublishTarget) -> String {
        match target {
            PublishTarget::Production => self.production_url.clone(),
            PublishTarget::Staging => self.staging_url.clone(),
            PublishTarget::Preview { slug } => {
                self.preview_url_template.replace("{slug}", slug.as_str())
            }
        }
    }
}

/// The builder function's configuration.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// The npm executable (`NPM_PATH`; a layer's, or `npm` on PATH).
    pub npm: String,
    /// Emptied before and after each build (`BUILD_SCRATCH_DIR`, default
    /// `build` in the temp folder: `/tmp/build` in Lambda).
    pub scratch: String,
    /// `BUILD_SANDBOX_USER=dedicated`: no process of this user but the
    /// builder's own belongs to anyone else, so any other is a leftover of a
    /// build and is stopped. True in Lambda; the local stack sets it when
    /// it gives the builder a user of its own.
    pub owns_user: bool,
}

impl BuilderConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let owns_user = match value("BUILD_SANDBOX_USER").as_deref() {
            None | Some("shared") => false,
            Some("dedicated") => true,
            Some(other) => {
                return Err(ConfigError(vec![format!(
                    "BUILD_SANDBOX_USER must be dedicated or shared, not {other:?}"
                )]))
            }
        };
        Ok(Self {
            npm: value("NPM_PATH").unwrap_or_else(|| "npm".into()),
            scratch: value("BUILD_SCRATCH_DIR")
                .unwrap_or_else(|| std::env::temp_dir().join("build").display().to_string()),
            owns_user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("DEPLOY_ENV", "dev"),
            ("SITE_REPOSITORY", "acme/site"),
            ("SITE_BUCKET", "b"),
            ("SITE_DEPLOYMENTS_TABLE", "t"),
            ("PRODUCTION_URL", "https://example.com/"),
            ("STAGING_URL", "https://staging.example.com/"),
            (
                "PREVIEW_URL_TEMPLATE",
                "https://{slug}.preview.example.com/",
            ),
            ("GITHUB_SECRET_PARAMETER", "/site/secret"),
            ("BUILDER_FUNCTION", "dev-deployer-site-builder"),
        ])
    }

    fn parse(vars: &HashMap<&'static str, &'static str>) -> Result<SiteConfig, ConfigError> {
        SiteConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn a_complete_environment_parses_with_defaults() {
        let config = parse(&base()).unwrap();
        assert_eq!(config.production_branch.as_str(), "main");
        assert_eq!(config.github_api_url, "https://api.github.com");
        assert_eq!(config.approval_ttl, Duration::from_secs(86_400));
        assert_eq!(config.preview_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(config.keep_deploys, DEFAULT_KEEP_DEPLOYS);
        let slug = sitedao::PreviewSlug::from_branch("feature/X");
        assert_eq!(
            config.url_of(&PublishTarget::preview("feature/X")),
            format!("https://{slug}.preview.example.com/")
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let mut vars = base();
        vars.remove("SITE_BUCKET");
        vars.insert("SITE_REPOSITORY", "not a repo");
        vars.insert("PREVIEW_URL_TEMPLATE", "https://preview.example.com/");
        vars.insert("STAGING_ON_PULL_REQUEST", "yes");
        vars.insert("SITE_KEEP_DEPLOYS", "0");
        let message = parse(&vars).unwrap_err().to_string();
        for expected in [
            "SITE_BUCKET is required",
            "SITE_REPOSITORY:",
            "PREVIEW_URL_TEMPLATE must contain {slug}",
            "STAGING_ON_PULL_REQUEST must be true or false",
            "SITE_KEEP_DEPLOYS must be a whole number from 1 to 1000",
        ] {
            assert!(message.contains(expected), "{expected} in {message}");
        }
    }

    #[test]
    fn a_github_api_url_that_is_not_http_fails_the_configuration() {
        let mut vars = base();
        vars.insert("GITHUB_API_URL", "api.github.example.com");
        let message = parse(&vars).unwrap_err().to_string();
        assert!(
            message.contains(
                "GITHUB_API_URL: GitHub API base \"api.github.example.com\" is not an http(s) URL"
            ),
            "{message}"
        );
        vars.insert("GITHUB_API_URL", "https://github.example.com/api/v3/");
        assert_eq!(
            parse(&vars).unwrap().github_api_url,
            "https://github.example.com/api/v3"
        );
    }

    #[test]
    fn the_number_of_deploys_kept_is_read() {
        let mut vars = base();
        vars.insert("SITE_KEEP_DEPLOYS", "2");
        assert_eq!(parse(&vars).unwrap().keep_deploys, 2);
        vars.insert("SITE_KEEP_DEPLOYS", "five");
        assert!(parse(&vars)
            .unwrap_err()
            .to_string()
            .contains("SITE_KEEP_DEPLOYS must be a whole number from 1 to 1000 (deploys kept for rollback besides the live one), got \"five\""));
    }
}
