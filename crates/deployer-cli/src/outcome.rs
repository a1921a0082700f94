//! The one table of exit codes every `deployer` command exits with.
//!
//! | code | outcome |
//! |------|---------|
//! | 0 | success |
//! | 1 | the command ran and the outcome is a failure or a refusal: a watched build ended other than SUCCESS, a rollback (stack, service, site) or an approval was refused, nothing awaits approval |
//! | 2 | usage or configuration error, or AWS could not be reached or answered an error |
//! | 3 | timed out waiting (`builds watch --timeout`) |
//!
//! Commands return an [`Outcome`]; an error is exit 2 unless it carries a
//! [`Refused`] (exit 1) or a [`TimedOut`] (exit 3).

use std::fmt;

/// How a command ended; [`Outcome::code`] is its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0.
    Success,
    /// 1: the command ran; the outcome is a failure or a refusal.
    Failure,
    /// 2: usage or configuration error, or AWS could not be reached.
    Error,
    /// 3: timed out waiting.
    TimedOut,
}

impl Outcome {
    pub fn code(self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Error => 2,
            Outcome::TimedOut => 3,
        }
    }

    /// The outcome of a command that failed with `err`.
    pub fn of_error(err: &anyhow::Error) -> Self {
        if err.chain().any(|e| e.is::<Refused>()) {
            Outcome::Failure
        } else if err.chain().any(|e| e.is::<TimedOut>()) {
            Outcome::TimedOut
        } else {
            Outcome::Error
        }
    }
}

/// An error that is a refusal (exit 1), not a usage or AWS error.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A refusal, as an error (exit 1).
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Refused(message.into()).into()
}

/// Gave up waiting (exit 3).
#[derive(Debug)]
pub struct TimedOut(pub String);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn every_outcome_has_its_code_and_errors_map_by_kind() {
        let codes: Vec<i32> = [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Error,
            Outcome::TimedOut,
        ]
        .iter()
        .map(|o| o.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
        let refusal: anyhow::Result<()> = Err(refused("nothing to roll back"));
        let refusal = refusal.context("rolling back shop").unwrap_err();
        assert_eq!(Outcome::of_error(&refusal), Outcome::Failure);
        let timeout = anyhow::Error::new(TimedOut("still IN_PROGRESS".into()));
        assert_eq!(Outcome::of_error(&timeout), Outcome::TimedOut);
        assert_eq!(
            Outcome::of_error(&anyhow::anyhow!("dispatch failure")),
            Outcome::Error
        );
    }
}
