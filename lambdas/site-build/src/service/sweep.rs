//! The sweep: BUILDING deployments whose lease expired with nobody left to
//! resume them (Lambda's retries used up or dropped, a direct invocation
//! that died) are run again.
//!
//! It runs on a schedule (an EventBridge rule, `{"detail-type": "Scheduled
//! Event"}`), on `{"sweep": {}}`, and after every new deployment is
//! recorded. It reads the store's list of BUILDING deployments (one Query),
//! and invokes `{"run": key}` asynchronously for each stranded one: that run
//! takes over the expired lease and retries from a clean state, or ends the
//! deployment FAILED when no attempt is left (see [`crate::lease`]). Running
//! it twice at once is harmless: only one run wins each takeover.

use std::time::Duration;

use serde_json::{json, Value};
use sitedao::{now_epoch, DeploymentKey, DeploymentStatus};
use tracing::{info, warn};

use super::{ServiceError, SiteService};
use crate::lease;

/// How long a sweep after a new deployment may hold up its answer.
const QUIET_SWEEP_LIMIT: Duration = Duration::from_secs(3);

/// Whether `event` asks for a sweep: EventBridge's scheduled event, or
/// `{"sweep": ...}`.
pub(super) fn is_sweep(event: &Value) -> bool {
    event.get("sweep").is_some()
        || (event.get("source").and_then(Value::as_str) == Some("aws.events")
            && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event"))
}

/// What a sweep found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Stranded deployments run again.
    pub restarted: Vec<DeploymentKey>,
    /// Stranded deployments whose run could not be started (the next sweep
    /// tries again).
    pub not_restarted: Vec<DeploymentKey>,
    /// BUILDING under a lease that still holds.
    pub running: usize,
    /// Listed, but no longer BUILDING: taken off the list.
    pub unlisted: usize,
}

impl SweepOutcome {
    pub fn to_json(&self) -> Value {
        let keys = |keys: &[DeploymentKey]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        json!({
            "swept": {
                "restarted": keys(&self.restarted),
                "not_restarted": keys(&self.not_restarted),
                "running": self.running,
                "unlisted": self.unlisted,
            }
        })
    }
}

impl SiteService {
    /// Runs again every BUILDING deployment whose lease has expired.
    pub async fn sweep(&self) -> Result<SweepOutcome, ServiceError> {
        let mut outcome = SweepOutcome::default();
        let now = now_epoch();
        for key in self.store.building().await? {
            let deployment = self.store.get(&key).await?;
            match deployment {
                Some(d) if d.status == DeploymentStatus::Building => {
                    if !lease::is_stranded(&d, now) {
                        outcome.running += 1;
                        continue;
                    }
                    warn!(deployment = %key, attempt = d.attempt, phase = d.phase.as_deref().unwrap_or("-"), "stranded: its lease expired with no result; running it again");
                    match self.invoke_run(&key).await {
                        Ok(()) => outcome.restarted.push(key),
                        Err(e) => {
                            warn!(deployment = %key, error = %e, "could not start the stranded deployment; the next sweep tries again");
                            outcome.not_restarted.push(key);
                        }
                    }
                }
                _ => {
                    self.store.unlist(&key).await?;
                    outcome.unlisted += 1;
                }
            }
        }
        if outcome != SweepOutcome::default() {
            info!(
                restarted = outcome.restarted.len(),
                not_restarted = outcome.not_restarted.len(),
                running = outcome.running,
                unlisted = outcome.unlisted,
                "swept"
            );
        }
        Ok(outcome)
    }

    /// A sweep that never fails or delays its caller by much.
    pub(super) async fn sweep_quietly(&self) {
        match tokio::time::timeout(QUIET_SWEEP_LIMIT, self.sweep()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "the sweep failed; the scheduled one will try again"),
            Err(_) => warn!("the sweep took too long; the scheduled one will finish it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EventBridge's sample of a schedule's event (also sent by the e2e tests).
    const SCHEDULED: &str = include_str!("fixtures/scheduled_event.json");

    #[test]
    fn a_scheduled_event_or_a_sweep_request_asks_for_a_sweep() {
        let scheduled: Value = serde_json::from_str(SCHEDULED).unwrap();
        assert!(is_sweep(&scheduled));
        assert!(is_sweep(&json!({"sweep": {}})));
        assert!(!is_sweep(
            &json!({"run": {"target": "production", "id": "x"}})
        ));
        assert!(!is_sweep(
            &json!({"source": "aws.events", "detail-type": "Something Else"})
        ));
    }
}
