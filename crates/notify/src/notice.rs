use std::fmt;

use serde::{Deserialize, Serialize};

/// What happened to the deployment a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Started,
    Succeeded,
    Failed,
    Info,
}

impl Outcome {
    /// The attachment colour Slack draws beside the message.
    pub fn colour(self) -> &'static str {
        match self {
            Self::Started => "#439FE0",
            Self::Succeeded => "#2EB67D",
            Self::Failed => "#E01E5A",
            Self::Info => "#9E9E9E",
        }
    }

    /// The snake_case name used in webhook payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Info => "info",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link shown with a notice (console page, logs, preview URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// One deployment event worth telling people about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub outcome: Outcome,
    pub title: String,
    pub environment: String,
    pub service: Option<String>,
    pub cluster: Option<String>,
    pub deployment_id: Option<String>,
    pub task_definition: Option<String>,
    pub reason: Option<String>,
    pub dry_run: bool,
    pub links: Vec<Link>,
}

impl Notice {
    pub fn new(outcome: Outcome, title: impl Into<String>, environment: impl Into<String>) -> Self {
        Self {
            outcome,
            title: title.into(),
            environment: environment.into(),
            service: None,
            cluster: None,
            deployment_id: None,
            task_definition: None,
            reason: None,
            dry_run: false,
            links: Vec::new(),
        }
    }

    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    pub fn with_deployment_id(mut self, deployment_id: impl Into<String>) -> Self {
        self.deployment_id = Some(deployment_id.into());
        self
    }

    pub fn with_task_definition(mut self, task_definition: impl Into<String>) -> Self {
        self.task_definition = Some(task_definition.into());
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn with_link(mut self, label: impl Into<String>, url: impl Into<String>) -> Self {
        self.links.push(Link {
            label: label.into(),
            url: url.into(),
        });
        self
    }
}
