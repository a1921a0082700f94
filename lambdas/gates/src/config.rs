//! The gates' configuration, read once at cold start from the environment
//! the template gives the function.

use std::collections::BTreeMap;

use crate::window::{parse_windows, FreezeWindow};

#[derive(Debug, Clone)]
pub struct Config {
    pub builds_table: String,
    pub stacks_table: String,
    pub artifact_bucket: String,
    /// Bake length per environment; environments not named bake for 0 s.
    pub bake_seconds: BTreeMap<String, u64>,
    /// Seconds between two checks of a bake.
    pub bake_interval_seconds: u64,
    /// Alarms whose names start with this (`{stack}` replaced by the stack
    /// name) are watched during a bake, besides the stack's own alarms.
    pub bake_alarm_prefix: Option<String>,
    pub freeze_windows: Vec<FreezeWindow>,
    /// Local stack only: lets a smoke check GET `http://127.0.0.1…`
    /// (docs/local-stack.md). On AWS a smoke URL must be HTTPS.
    pub smoke_http_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("gates configuration is invalid:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Where operator rules for `env` live in the artifact bucket.
pub fn policy_prefix(env: &str) -> String {
    format!("_deployer/policy/{env}/")
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str, what: &str| {
            let value = get(name).filter(|v| !v.is_empty());
            if value.is_none() {
                problems.push(format!("{name} is required ({what})"));
            }
            value.unwrap_or_default()
        };
        let builds_table = required("BUILDS_TABLE", "the builds table name");
        let stacks_table = required("STACKS_TABLE", "the stacks table name");
        let artifact_bucket = required("ARTIFACT_BUCKET", "the artifact bucket");
        let bake_seconds = match parse_bake_seconds(&get("BAKE_SECONDS").unwrap_or_default()) {
            Ok(map) => map,
            Err(problem) => {
                problems.push(problem);
                BTreeMap::new()
            }
        };
        let bake_interval_seconds = match get("BAKE_INTERVAL_SECONDS").filter(|v| !v.is_empty()) {
            None => 30,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    problems.push(format!(
                        "BAKE_INTERVAL_SECONDS must be a positive whole number, got {raw:?}"
                    ));
                    30
                }
            },
        };
        let freeze_windows = match parse_windows(&get("FREEZE_WINDOWS").unwrap_or_default()) {
            Ok(windows) => windows,
            Err(mut bad) => {
                problems.append(&mut bad);
                Vec::new()
            }
        };
        let bake_alarm_prefix = get("BAKE_ALARM_PREFIX").filter(|v| !v.is_empty());
        let smoke_http_loopback = get("SMOKE_HTTP_LOOPBACK").as_deref() == Some("true");
        if problems.is_empty() {
            Ok(Config {
                builds_table,
                stacks_table,
                artifact_bucket,
                bake_seconds,
                bake_interval_seconds,
                bake_alarm_prefix,
                freeze_windows,
                smoke_http_loopback,
            })
        } else {
            Err(ConfigError(problems))
        }
    }

    pub fn bake_seconds_for(&self, env: &str) -> u64 {
        self.bake_seconds.get(env).copied().unwrap_or(0)
    }
}

/// `prd=300,stg=60`: seconds per environment.
fn parse_bake_seconds(raw: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut map = BTreeMap::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry
            .split_once('=')
            .and_then(|(env, secs)| Some((env.trim(), secs.trim().parse::<u64>().ok()?)))
            .filter(|(env, _)| !env.is_empty());
        match parsed {
            Some((env, secs)) => {
                map.insert(env.to_owned(), secs);
            }
            None => {
                return Err(format!(
                    "BAKE_SECONDS entry {entry:?} must be ENV=SECONDS (e.g. prd=300)"
                ))
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn bake_seconds_default_to_none_and_every_problem_is_named() {
        let config = Config::from_lookup(lookup(&[
            ("BUILDS_TABLE", "b"),
            ("STACKS_TABLE", "s"),
            ("ARTIFACT_BUCKET", "a"),
            ("BAKE_SECONDS", "prd=300, stg=60"),
        ]))
        .unwrap();
        assert_eq!(config.bake_seconds_for("prd"), 300);
        assert_eq!(config.bake_seconds_for("dev"), 0);
        assert_eq!(config.bake_interval_seconds, 30);
        assert!(!config.smoke_http_loopback);

        let err = Config::from_lookup(lookup(&[
            ("BAKE_SECONDS", "prd"),
            ("BAKE_INTERVAL_SECONDS", "0"),
            ("FREEZE_WINDOWS", "prd|nope|1h|UTC"),
        ]))
        .unwrap_err()
        .to_string();
        for needle in [
            "BUILDS_TABLE",
            "STACKS_TABLE",
            "ARTIFACT_BUCKET",
            "BAKE_SECONDS entry \"prd\"",
            "BAKE_INTERVAL_SECONDS",
            "cron \"nope\"",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }
}
