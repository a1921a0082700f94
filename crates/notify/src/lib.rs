//! Deployment notifications: Slack (Block Kit through an incoming webhook) and
//! generic JSON webhooks.
//!
//! Notifying is a side channel of a deployment, never part of it: [`Notifier::send`]
//! reports what it delivered and logs what it could not, but it has no error to
//! return, so a broken webhook can never fail or retry the deployment it reports.

pub mod https;
mod notice;
mod notifier;
mod payload;
mod secret;
mod source;

pub use notice::{Link, Notice, Outcome};
pub use notifier::{Delivery, Notifier, TargetKind, DEFAULT_TIMEOUT};
pub use payload::{slack_payload, webhook_payload};
pub use secret::{SecretUrl, Target};
pub use source::{resolve_all, SecretError, SecretSource};

/// Problems found while setting notifications up; sending has none.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook URL is not an absolute `http(s)://host/...` URL. Carries the
    /// redacted form only, so the error can be logged.
    #[error("webhook URL {redacted} is not an absolute http(s) URL with a host")]
    InvalidUrl { redacted: String },
    /// A target's URL could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The HTTP client could not be built (TLS initialisation).
    #[error("could not build the HTTP client for notifications")]
    Client(#[source] reqwest::Error),
}
