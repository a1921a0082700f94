//! Freeze windows: spans of time in which an environment takes no
//! deployments (docs/state-machine.md, "Freeze windows").
//!
//! A window opens at each time its cron pattern names, in its time zone,
//! and stays open for its duration. Configured as `FREEZE_WINDOWS`, entries
//! separated by `;`:
//!
//! ```text
//! ENV|CRON|DURATION|TIME_ZONE[|wait|refuse]
//! prd|0 18 * * FRI|62h|Europe/Berlin            # weekends, builds wait
//! prd|0 0 24 12 *|48h|UTC|refuse                 # Christmas, builds are refused
//! ```
//!
//! CRON has five fields (minute granularity) or six (seconds first).
//! DURATION is `90s`, `30m`, `62h`, `1h 30m` or ISO 8601 (`PT1H30M`).

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// What a build does when it arrives during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeMode {
    /// The build waits (AWAITING_WINDOW) until the window ends or someone
    /// approves it.
    Wait,
    /// The build ends FAILED at once.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct FreezeWindow {
    pub env: String,
    pub cron: Cron,
    /// The pattern as configured.
    pub pattern: String,
    pub duration: SignedDuration,
    pub time_zone: TimeZone,
    pub time_zone_name: String,
    pub mode: FreezeMode,
}

impl fmt::Display for FreezeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "freeze window \"{}\" ({}, {:#})",
            self.pattern, self.time_zone_name, self.duration
        )
    }
}

impl FromStr for FreezeWindow {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let fields: Vec<&str> = entry.split('|').map(str::trim).collect();
        if !(4..=5).contains(&fields.len()) {
            return Err(format!(
                "freeze window {entry:?} must be ENV|CRON|DURATION|TIME_ZONE[|wait|refuse]"
            ));
        }
        let env = fields[0];
        if env.is_empty() {
            return Err(format!("freeze window {entry:?} names no environment"));
        }
        let cron = Cron::from_str(fields[1])
            .map_err(|err| format!("freeze window {entry:?}: cron {:?}: {err}", fields[1]))?;
        let duration = parse_duration(fields[2])
            .ok_or_else(|| {
                format!(
                    "freeze window {entry:?}: duration {:?} is not like 90s, 30m, 62h or PT1H30M",
                    fields[2]
                )
            })
            .and_then(|d| {
                if d.is_positive() {
                    Ok(d)
                } else {
                    Err(format!(
                        "freeze window {entry:?}: duration {:?} must be positive",
                        fields[2]
                    ))
                }
            })?;
        let time_zone = TimeZone::get(fields[3])
            .map_err(|err| format!("freeze window {entry:?}: time zone {:?}: {err}", fields[3]))?;
        let mode = match fields.get(4).copied() {
            None | Some("wait") => FreezeMode::Wait,
            Some("refuse") => FreezeMode::Refuse,
            Some(other) => {
                return Err(format!(
                    "freeze window {entry:?}: mode {other:?} must be wait or refuse"
                ))
            }
        };
        Ok(FreezeWindow {
            env: env.to_owned(),
            cron,
            pattern: fields[1].to_owned(),
            duration,
            time_zone,
            time_zone_name: fields[3].to_owned(),
            mode,
        })
    }
}

fn parse_duration(raw: &str) -> Option<SignedDuration> {
    raw.parse::<SignedDuration>().ok()
}

/// Parses `FREEZE_WINDOWS`; every bad entry is named.
pub fn parse_windows(raw: &str) -> Result<Vec<FreezeWindow>, Vec<String>> {
    let mut windows = Vec::new();
    let mut problems = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse() {
            Ok(window) => windows.push(window),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(windows)
    } else {
        Err(problems)
    }
}

/// A window that holds `now`, and when the freeze ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    pub window: String,
    pub mode: FreezeMode,
    pub until: Timestamp,
}

impl FreezeWindow {
    /// When this window, if it is open at `now`, closes (windows of the same
    /// pattern that overlap are one freeze).
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        let here = now.to_zoned(self.time_zone.clone());
        let start: Zoned = self.cron.find_previous_occurrence(&here, true).ok()?;
        let mut until = start.timestamp().checked_add(self.duration).ok()?;
        if until <= now {
            return None;
        }
        // Occurrences that open before this one closes extend it.
        let mut cursor = start;
        for _ in 0..10_000 {
            let Ok(next) = self.cron.find_next_occurrence(&cursor, false) else {
                break;
            };
            if next.timestamp() >= until {
                break;
            }
            until = until.max(next.timestamp().checked_add(self.duration).ok()?);
            cursor = next;
        }
        Some(until)
    }
}

/// The freeze `env` is in at `now`, if any: of the windows open, a refusing
/// one wins, then the one that closes last.
pub fn freeze_at(windows: &[FreezeWindow], env: &str, now: Timestamp) -> Option<Freeze> {
    windows
        .iter()
        .filter(|w| w.env == env)
        .filter_map(|w| {
            w.open_until(now).map(|until| Freeze {
                window: w.to_string(),
                mode: w.mode,
                until,
            })
        })
        .max_by_key(|f| (f.mode == FreezeMode::Refuse, f.until))
}

#[derive(Debug, Deserialize)]
pub struct WindowRequest {
    pub env: String,
    /// Automatic rollbacks restore what was already approved: no freeze
    /// holds them.
    #[serde(default)]
    pub automatic_rollback: bool,
}

/// What the state machine reads (`$.window`).
#[derive(Debug, Serialize, PartialEq)]
pub struct WindowAnswer {
    pub frozen: bool,
    pub refuse: bool,
    /// Whole seconds until the window closes (at least 1 when frozen): the
    /// wait's `TimeoutSecondsPath`.
    pub seconds: u64,
    pub until: String,
    pub reason: String,
}

impl WindowAnswer {
    pub fn open() -> Self {
        WindowAnswer {
            frozen: false,
            refuse: false,
            seconds: 0,
            until: String::new(),
            reason: String::new(),
        }
    }
}

pub fn answer(windows: &[FreezeWindow], request: &WindowRequest, now: Timestamp) -> WindowAnswer {
    if request.automatic_rollback {
        return WindowAnswer::open();
    }
    let Some(freeze) = freeze_at(windows, &request.env, now) else {
        return WindowAnswer::open();
    };
    let left = freeze.until.duration_since(now);
    let seconds = (left.as_secs() + i64::from(left.subsec_nanos() > 0)).max(1) as u64;
    let until = freeze.until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let refuse = freeze.mode == FreezeMode::Refuse;
    let reason = if refuse {
        format!(
            "refused: environment {} is in {} until {until}",
            request.env, freeze.window
        )
    } else {
        format!(
            "environment {} is in {} until {until}",
            request.env, freeze.window
        )
    };
    WindowAnswer {
        frozen: true,
        refuse,
        seconds,
        until,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn windows(raw: &str) -> Vec<FreezeWindow> {
        parse_windows(raw).unwrap()
    }

    fn request(env: &str) -> WindowRequest {
        WindowRequest {
            env: env.into(),
            automatic_rollback: false,
        }
    }

    #[test]
    fn a_weekend_freeze_holds_saturday_in_its_own_time_zone_and_not_thursday() {
        let w = windows("prd|0 18 * * FRI|62h|Europe/Berlin");
        // Friday 2026-12-04 18:00 in Berlin is 17:00 UTC; 62 h later is
        // Monday 07:00 UTC.
        let saturday = answer(&w, &request("prd"), at("2026-12-05T12:00:00Z"));
        assert!(saturday.frozen && !saturday.refuse);
        assert_eq!(saturday.until, "2026-12-07T07:00:00Z");
        assert_eq!(saturday.seconds, 43 * 3600);
        assert!(
            saturday.reason.contains("0 18 * * FRI") && saturday.reason.contains("Europe/Berlin"),
            "{}",
            saturday.reason
        );
        assert_eq!(
            answer(&w, &request("prd"), at("2026-12-03T12:00:00Z")),
            WindowAnswer::open()
        );
        assert_eq!(
            answer(&w, &request("prd"), at("2026-12-04T16:59:59Z")),
            WindowAnswer::open()
        );
        assert!(answer(&w, &request("prd"), at("2026-12-04T17:00:00Z")).frozen);
        assert_eq!(
            answer(&w, &request("prd"), at("2026-12-07T07:00:00Z")),
            WindowAnswer::open()
        );
        // Other environments are not frozen.
        assert_eq!(
            answer(&w, &request("dev"), at("2026-12-05T12:00:00Z")),
            WindowAnswer::open()
        );
    }

    #[test]
    fn overlapping_openings_are_one_freeze_and_refusal_wins() {
        // Opens every 10 s for 15 s: never closes.
        let w = windows("dev|*/10 * * * * *|15s|UTC");
        let a = answer(&w, &request("dev"), at("2026-12-01T10:00:03Z"));
        assert!(a.frozen);
        assert!(
            a.seconds > 3600,
            "chained openings extend the freeze: {a:?}"
        );
        let w = windows("dev|0 * * * * *|20s|UTC;dev|0 * * * * *|5s|UTC|refuse");
        let a = answer(&w, &request("dev"), at("2026-12-01T10:00:02Z"));
        assert!(a.refuse && a.reason.starts_with("refused: environment dev is in"));
        assert_eq!(a.seconds, 3);
        let a = answer(&w, &request("dev"), at("2026-12-01T10:00:07Z"));
        assert!(a.frozen && !a.refuse);
        assert_eq!(a.seconds, 13);
    }

    #[test]
    fn automatic_rollbacks_are_not_held() {
        let w = windows("dev|* * * * *|1h|UTC|refuse");
        let mut r = request("dev");
        assert!(answer(&w, &r, at("2026-12-01T10:00:00Z")).refuse);
        r.automatic_rollback = true;
        assert_eq!(
            answer(&w, &r, at("2026-12-01T10:00:00Z")),
            WindowAnswer::open()
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let problems = parse_windows(
            "prd|0 18 * * FRI|62h|Europe/Berlin; dev|not cron|1h|UTC; stg|* * * * *|soon|UTC; x|* * * * *|1h|Mars/Olympus; y|* * * * *|1h|UTC|maybe; z|1h",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("cron \"not cron\""));
        assert!(problems[1].contains("duration \"soon\""));
        assert!(problems[2].contains("time zone \"Mars/Olympus\""));
        assert!(problems[3].contains("mode \"maybe\""));
        assert!(problems[4].contains("must be ENV|CRON|DURATION|TIME_ZONE"));
        assert!(parse_windows("").unwrap().is_empty());
    }
}
