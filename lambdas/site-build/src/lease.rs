//! Who runs a BUILDING deployment, until when, and how much time its steps
//! may take.
//!
//! An invocation that claims a deployment holds a lease on it: its request
//! id, the attempt number, and an expiry (the invocation's deadline plus
//! [`LEASE_MARGIN`]). Lambda kills an invocation at its deadline, so once
//! the lease has expired nobody is working on the deployment any more. An
//! invocation that dies (crash, out of memory, full `/tmp`, timeout) leaves
//! the record BUILDING; what happens next is decided here:
//!
//! - Lambda retries a failed asynchronous invocation with the same request
//!   id, so a run whose request id holds the lease is that retry: the
//!   attempt before it is dead and it may take over at once;
//! - any other invocation (the sweep's) may take over only an expired lease;
//! - after [`MAX_ATTEMPTS`] interrupted attempts the deployment ends FAILED
//!   with what each attempt was doing when it stopped.
//!
//! [`Budget`] is the other half: a build stops itself before the deadline,
//! leaving [`Budget::reserve`] to record why and to tell GitHub and Slack.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use sitedao::{Deployment, DeploymentStatus, Lease, Phase, SeenLease};

/// Attempts a deployment gets before an interruption ends it FAILED.
pub const MAX_ATTEMPTS: u32 = 2;

/// How long after an invocation's deadline its lease still holds: room for
/// clocks that disagree by a little. Lambda has stopped the invocation by
/// then.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The lease of a BUILDING record written before leases existed: its last
/// update plus Lambda's longest timeout plus the margin.
const LEGACY_LEASE: Duration = Duration::from_secs(15 * 60);

/// The invocation running now, from its Lambda context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda stops this invocation.
    pub deadline: SystemTime,
    /// When the handler got the event.
    pub received: SystemTime,
}

impl Invocation {
    pub fn new(request_id: impl Into<String>, deadline: SystemTime) -> Self {
        Self {
            request_id: request_id.into(),
            deadline,
            received: SystemTime::now(),
        }
    }

    /// The time this invocation was given (the function's timeout, less
    /// what the runtime spent before the handler), to the second.
    pub fn allowed(&self) -> Duration {
        let allowed = self
            .deadline
            .duration_since(self.received)
            .unwrap_or_default();
        Duration::from_secs((allowed.as_millis() as u64).div_ceil(1000))
    }

    /// The lease this invocation holds while it runs `attempt`.
    pub fn lease(&self, attempt: u32) -> Lease {
        Lease {
            holder: self.request_id.clone(),
            expires_at: epoch_ceil(self.deadline + LEASE_MARGIN),
            attempt,
        }
    }
}

/// How an attempt's end was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noticed {
    /// Lambda retried the invocation: it ended in an error, a crash or its
    /// timeout.
    Retried,
    /// Its lease expired with no result recorded.
    LeaseExpired,
}

/// An attempt that stopped without recording a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub attempt: u32,
    /// What it was doing (`phase`), as recorded.
    pub phase: String,
    pub noticed: Noticed,
    /// The lease it held, for the conditional takeover.
    pub seen: SeenLease,
}

impl fmt::Display for Interruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} stopped during {}", self.attempt, self.phase)?;
        match self.noticed {
            Noticed::Retried => f.write_str(" (Lambda retried the invocation)"),
            Noticed::LeaseExpired => f.write_str(" (its lease expired with no result)"),
        }
    }
}

/// What a run does with the record it was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// QUEUED: claim it as attempt 1.
    Start,
    /// BUILDING, but the attempt holding it is gone: take over as the next
    /// attempt, from a clean state.
    Resume(Interruption),
    /// BUILDING, the attempt holding it is gone, and it was the last one
    /// allowed: end it FAILED.
    GiveUp(Interruption),
    /// BUILDING under a lease that still holds: another invocation runs it.
    Busy { holder: String, expires_at: i64 },
    /// Any other status: nothing to run.
    NotRunnable,
}

/// What `me` may do with `record` at `now` (epoch seconds).
pub fn decide(record: &Deployment, me: &Invocation, now: i64) -> Decision {
    match record.status {
        DeploymentStatus::Queued => return Decision::Start,
        DeploymentStatus::Building => {}
        _ => return Decision::NotRunnable,
    }
    let attempt = record.attempt.max(1);
    let seen = SeenLease {
        holder: record.lease_holder.clone(),
        attempt: record.attempt,
    };
    let noticed = if record.lease_holder.as_deref() == Some(me.request_id.as_str()) {
        Noticed::Retried
    } else if now >= lease_expiry(record) {
        Noticed::LeaseExpired
    } else {
        return Decision::Busy {
            holder: record.lease_holder.clone().unwrap_or_default(),
            expires_at: lease_expiry(record),
        };
    };
    let interruption = Interruption {
        attempt,
        phase: record
            .phase
            .clone()
            .unwrap_or_else(|| Phase::Starting.to_string()),
        noticed,
        seen,
    };
    if attempt >= MAX_ATTEMPTS {
        Decision::GiveUp(interruption)
    } else {
        Decision::Resume(interruption)
    }
}

/// Epoch seconds after which nobody holds `record` any more.
pub fn lease_expiry(record: &Deployment) -> i64 {
    if let Some(expires_at) = record.lease_expires_at {
        return expires_at;
    }
    let updated = time::OffsetDateTime::parse(
        &record.updated_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp())
    .unwrap_or(0);
    updated + (LEGACY_LEASE + LEASE_MARGIN).as_secs() as i64
}

/// Whether `record` is BUILDING under a lease that expired before `now`.
pub fn is_stranded(record: &Deployment, now: i64) -> bool {
    record.status == DeploymentStatus::Building && now >= lease_expiry(record)
}

/// The error of a deployment whose attempts were all interrupted.
pub fn interrupted_error(previous: &[String], last: &Interruption) -> String {
    let mut all: Vec<String> = previous.to_vec();
    all.push(last.to_string());
    format!(
        "the build was interrupted {} times: {}; each time the invocation ended without recording a result \
         (a crash, memory or /tmp exhausted, or the function's timeout)",
        all.len(),
        all.join("; ")
    )
}

fn epoch_ceil(at: SystemTime) -> i64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_millis() as u64).div_ceil(1000) as i64
}

/// How much time the steps of a build may take in this invocation.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
    allowed: Duration,
    reserve: Duration,
}

/// The time a step gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimit {
    pub limit: Duration,
    /// The function's remaining time is what limits the step (not the
    /// step's own cap): running into it means running out of time.
    pub by_budget: bool,
}

/// Less than this left for a step: it is not started at all.
const SHORTEST_STEP: Duration = Duration::from_secs(1);

impl Budget {
    pub fn new(invocation: &Invocation) -> Self {
        let left = invocation
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Self::with(Instant::now() + left, invocation.allowed())
    }

    /// A budget ending at `deadline`, of an invocation given `allowed`.
    pub fn with(deadline: Instant, allowed: Duration) -> Self {
        Self {
            deadline,
            allowed,
            reserve: Self::reserve_for(allowed),
        }
    }

    /// Time kept back to record a failure and tell GitHub and Slack: a
    /// tenth of the invocation's time, at least 5 s and at most 60 s.
    pub fn reserve_for(allowed: Duration) -> Duration {
        (allowed / 10).clamp(Duration::from_secs(5), Duration::from_secs(60))
    }

    pub fn reserve(&self) -> Duration {
        self.reserve
    }

    pub fn allowed(&self) -> Duration {
        self.allowed
    }

    /// When every step must have ended: the deadline less the reserve.
    pub fn until(&self) -> Instant {
        self.deadline
            .checked_sub(self.reserve)
            .unwrap_or(self.deadline)
    }

    /// Time left before Lambda stops the invocation.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The time a step capped at `cap` gets, or `None` when too little is
    /// left to start it.
    pub fn step(&self, cap: Duration) -> Option<StepLimit> {
        let left = self.until().saturating_duration_since(Instant::now());
        if left < SHORTEST_STEP {
            return None;
        }
        Some(StepLimit {
            limit: cap.min(left),
            by_budget: left <= cap,
        })
    }

    /// The error of a build stopped because the time ran out.
    pub fn out_of_time(&self, phase: Phase) -> String {
        format!(
            "ran out of time during {phase} ({} s left of the function's {} s)",
            self.left().as_secs(),
            self.allowed.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitedao::{DeploymentAction, DeploymentKey, NewDeployment};

    fn record(status: DeploymentStatus) -> Deployment {
        Deployment {
            status,
            ..Deployment::queued(NewDeployment {
                key: DeploymentKey {
                    target: "production".into(),
                    id: "2qAbcdefghijklmnopqrstuvwxy".into(),
                },
                site: "acme/site".into(),
                environment: "production".into(),
                action: DeploymentAction::Build,
                branch: "main".into(),
                url: "https://example.com/".into(),
                triggered_by: "ana".into(),
                origin: "github:push".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                expires_at: None,
            })
        }
    }

    fn me(id: &str) -> Invocation {
        Invocation::new(id, SystemTime::now() + Duration::from_secs(900))
    }

    fn building(holder: &str, attempt: u32, expires_at: i64, phase: Phase) -> Deployment {
        let mut record = record(DeploymentStatus::Building);
        record.lease_holder = Some(holder.into());
        record.lease_expires_at = Some(expires_at);
        record.attempt = attempt;
        record.phase = Some(phase.to_string());
        record
    }

    #[test]
    fn a_queued_deployment_is_started_and_a_finished_one_is_left_alone() {
        assert_eq!(
            decide(&record(DeploymentStatus::Queued), &me("a"), 0),
            Decision::Start
        );
        for status in [
            DeploymentStatus::Published,
            DeploymentStatus::Failed,
            DeploymentStatus::AwaitingApproval,
            DeploymentStatus::Unchanged,
            DeploymentStatus::Removed,
        ] {
            assert_eq!(
                decide(&record(status), &me("a"), i64::MAX),
                Decision::NotRunnable
            );
        }
    }

    #[test]
    fn lambda_retrying_the_same_request_takes_over_at_once() {
        let record = building("req-1", 1, 2_000, Phase::Build);
        let Decision::Resume(interruption) = decide(&record, &me("req-1"), 1_000) else {
            panic!("the retry of the holder resumes");
        };
        assert_eq!(interruption.attempt, 1);
        assert_eq!(interruption.noticed, Noticed::Retried);
        assert_eq!(
            interruption.seen,
            SeenLease {
                holder: Some("req-1".into()),
                attempt: 1
            }
        );
        assert_eq!(
            interruption.to_string(),
            "attempt 1 stopped during the build (Lambda retried the invocation)"
        );
    }

    #[test]
    fn another_invocation_waits_for_the_lease_to_expire() {
        let record = building("req-1", 1, 2_000, Phase::Publish);
        assert_eq!(
            decide(&record, &me("req-2"), 1_999),
            Decision::Busy {
                holder: "req-1".into(),
                expires_at: 2_000
            }
        );
        let Decision::Resume(interruption) = decide(&record, &me("req-2"), 2_000) else {
            panic!("an expired lease can be taken over");
        };
        assert_eq!(interruption.noticed, Noticed::LeaseExpired);
        assert!(!is_stranded(&record, 1_999));
        assert!(is_stranded(&record, 2_000));
    }

    #[test]
    fn the_last_allowed_attempt_interrupted_ends_the_deployment() {
        let record = building("req-1", MAX_ATTEMPTS, 2_000, Phase::Publish);
        let Decision::GiveUp(last) = decide(&record, &me("req-1"), 1_000) else {
            panic!("no attempt left");
        };
        let error = interrupted_error(
            &["attempt 1 stopped during npm run build (Lambda retried the invocation)".into()],
            &last,
        );
        assert!(
            error.starts_with("the build was interrupted 2 times: attempt 1 stopped during npm run build (Lambda retried the invocation); attempt 2 stopped during the publish"),
            "{error}"
        );
    }

    #[test]
    fn a_building_record_from_before_leases_expires_after_the_longest_timeout() {
        let mut record = record(DeploymentStatus::Building);
        record.updated_at = "2026-01-01T00:00:00Z".into();
        let updated = 1_767_225_600;
        assert_eq!(lease_expiry(&record), updated + 15 * 60 + 30);
        assert!(matches!(
            decide(&record, &me("x"), updated + 60),
            Decision::Busy { .. }
        ));
        let Decision::Resume(interruption) = decide(&record, &me("x"), updated + 15 * 60 + 30)
        else {
            panic!("an old BUILDING record is taken over");
        };
        assert_eq!(interruption.attempt, 1);
        assert_eq!(interruption.phase, "setup");
        assert_eq!(interruption.seen.holder, None);
    }

    #[test]
    fn the_lease_lasts_past_the_deadline_by_the_margin() {
        let deadline = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let invocation = Invocation {
            request_id: "r".into(),
            deadline,
            received: deadline - Duration::from_millis(899_990),
        };
        assert_eq!(invocation.allowed(), Duration::from_secs(900));
        let lease = invocation.lease(2);
        assert_eq!(lease.expires_at, 1_001 + 30);
        assert_eq!(lease.attempt, 2);
        assert_eq!(lease.holder, "r");
    }

    #[test]
    fn the_reserve_is_a_tenth_within_bounds() {
        assert_eq!(
            Budget::reserve_for(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            Budget::reserve_for(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            Budget::reserve_for(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
    }

    #[tokio::test]
    async fn steps_get_their_cap_or_what_is_left_before_the_reserve() {
        let budget = Budget::with(
            Instant::now() + Duration::from_secs(100),
            Duration::from_secs(100),
        );
        // 100 s left, 10 s reserved: 90 s for steps.
        let roomy = budget.step(Duration::from_secs(30)).unwrap();
        assert_eq!(roomy.limit, Duration::from_secs(30));
        assert!(!roomy.by_budget);
        let tight = budget.step(Duration::from_secs(300)).unwrap();
        assert!(tight.by_budget);
        assert!(tight.limit <= Duration::from_secs(90) && tight.limit > Duration::from_secs(88));

        let spent = Budget::with(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(20),
        );
        assert_eq!(spent.step(Duration::from_secs(300)), None);
        let error = spent.out_of_time(Phase::Build);
        assert!(
            error.starts_with("ran out of time during the build (")
                && error.ends_with(" s left of the function's 20 s)"),
            "{error}"
        );
    }
}
