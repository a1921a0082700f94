//! Which ECS cluster, service and task family a service name means.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The name every trigger uses for the backend service (repo `{project}_backend`).
pub const BACKEND: &str = "backend";

/// A resource name with `{project}`, `{env}` and `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut rest = raw;
        while let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {raw:?}"))?;
            let placeholder = &rest[start..start + end + 1];
            if !matches!(placeholder, "{project}" | "{env}" | "{name}") {
                return Err(format!(
                    "unknown placeholder {placeholder} in {raw:?} (use {{project}}, {{env}}, {{name}})"
                ));
            }
            rest = &rest[start + end + 1..];
        }
        if raw.is_empty() {
            return Err("pattern is empty".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn has_name(&self) -> bool {
        self.0.contains("{name}")
    }

    pub fn render(&self, project: &str, env: &str, name: &str) -> String {
        self.0
            .replace("{project}", project)
            .replace("{env}", env)
            .replace("{name}", name)
    }
}

/// Explicit ECS names for one service (the service map's values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceNames {
    #[serde(default)]
    pub cluster: Option<String>,
    pub service: String,
    #[serde(default)]
    pub family: Option<String>,
}

/// A service resolved to the ECS resources a deploy touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The service's own name (`api`, `backend`).
    pub name: String,
    pub cluster: String,
    pub service: String,
    pub family: String,
}

/// The family of a task definition named by ARN
/// (`arn:…:task-definition/family:revision`), `family:revision` or `family`.
pub fn task_definition_family(task_definition: &str) -> &str {
    let tail = task_definition
        .rsplit('/')
        .next()
        .unwrap_or(task_definition);
    tail.split(':').next().unwrap_or(tail)
}

pub struct Resolver<'a> {
    pub project: &'a str,
    pub env: &'a str,
    pub cluster: &'a NamePattern,
    pub service: &'a NamePattern,
    pub family: &'a NamePattern,
    pub backend: &'a NamePattern,
    pub map: &'a BTreeMap<String, ServiceNames>,
}

impl Resolver<'_> {
    /// Resolves a service name. The map wins over the patterns; the backend
    /// service uses its own pattern for service and family.
    pub fn resolve(&self, name: &str) -> ServiceTarget {
        let cluster = self.cluster.render(self.project, self.env, name);
        let (service_pattern, family_pattern) = if name == BACKEND {
            (self.backend, self.backend)
        } else {
            (self.service, self.family)
        };
        let service = service_pattern.render(self.project, self.env, name);
        let family = family_pattern.render(self.project, self.env, name);
        match self.map.get(name) {
            Some(explicit) => ServiceTarget {
                name: name.to_owned(),
                cluster: explicit.cluster.clone().unwrap_or(cluster),
                family: explicit
                    .family
                    .clone()
                    .unwrap_or_else(|| explicit.service.clone()),
                service: explicit.service.clone(),
            },
            None => ServiceTarget {
                name: name.to_owned(),
                cluster,
                service,
                family,
            },
        }
    }

    /// The service an ECR repository holds images for: `{project}_backend`
    /// is the backend, `{project}_service_{name}` is `name`.
    pub fn service_for_repository(&self, repository: &str) -> Option<String> {
        let rest = repository.strip_prefix(self.project)?.strip_prefix('_')?;
        if rest == BACKEND {
            return Some(BACKEND.to_owned());
        }
        let name = rest.strip_prefix("service_")?;
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// The service a parameter belongs to: `/{env}/{project}/{service}/...`.
    pub fn service_for_parameter(&self, parameter: &str) -> Option<String> {
        let rest = parameter
            .strip_prefix('/')?
            .strip_prefix(self.env)?
            .strip_prefix('/')?
            .strip_prefix(self.project)?
            .strip_prefix('/')?;
        let (service, tail) = rest.split_once('/')?;
        (!service.is_empty() && !tail.is_empty()).then(|| service.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<T>(map: BTreeMap<String, ServiceNames>, f: impl FnOnce(&Resolver) -> T) -> T {
        let cluster = NamePattern::parse("{project}_cluster_{env}").unwrap();
        let service = NamePattern::parse("{project}_service_{name}_{env}").unwrap();
        let backend = NamePattern::parse("{project}_backend_{env}").unwrap();
        f(&Resolver {
            project: "shop",
            env: "dev",
            cluster: &cluster,
            service: &service,
            family: &service,
            backend: &backend,
            map: &map,
        })
    }

    #[test]
    fn a_task_definition_family_is_read_from_an_arn_a_revision_or_a_bare_family() {
        for named in [
            "arn:aws:ecs:us-east-1:123456789012:task-definition/shop_service_api_dev:3",
            "shop_service_api_dev:3",
            "shop_service_api_dev",
        ] {
            assert_eq!(
                task_definition_family(named),
                "shop_service_api_dev",
                "{named}"
            );
        }
        // An ARN that is not a task definition's names no family of ours.
        assert_eq!(
            task_definition_family("arn:aws:ecs:us-east-1:123456789012:cluster"),
            "arn"
        );
    }

    #[test]
    fn backend_resolves_the_same_from_every_trigger() {
        with(BTreeMap::new(), |r| {
            assert_eq!(
                r.service_for_repository("shop_backend").as_deref(),
                Some(BACKEND)
            );
            assert_eq!(
                r.service_for_parameter("/dev/shop/backend/DB_URL")
                    .as_deref(),
                Some(BACKEND)
            );
            let target = r.resolve(BACKEND);
            assert_eq!(target.service, "shop_backend_dev");
            assert_eq!(target.family, "shop_backend_dev");
            assert_eq!(target.cluster, "shop_cluster_dev");
        });
    }

    #[test]
    fn the_service_map_overrides_patterns_for_backend_too() {
        let map = BTreeMap::from([(
            BACKEND.to_owned(),
            ServiceNames {
                cluster: Some("core".into()),
                service: "legacy-api".into(),
                family: None,
            },
        )]);
        with(map, |r| {
            let target = r.resolve(BACKEND);
            assert_eq!(
                (
                    target.cluster.as_str(),
                    target.service.as_str(),
                    target.family.as_str()
                ),
                ("core", "legacy-api", "legacy-api")
            );
        });
    }

    #[test]
    fn foreign_repositories_and_parameters_map_to_nothing() {
        with(BTreeMap::new(), |r| {
            assert_eq!(
                r.service_for_repository("shop_service_api").as_deref(),
                Some("api")
            );
            assert_eq!(r.service_for_repository("other_service_api"), None);
            assert_eq!(r.service_for_repository("shop_service_"), None);
            assert_eq!(r.service_for_parameter("/prd/shop/api/X"), None);
            assert_eq!(r.service_for_parameter("/dev/shop/api"), None);
        });
    }
}
