//! The incident model, as pure functions: what an alert occurrence does to a subject's open
//! incident, what a failed attempt leads to, and the decision the pipeline logs. The store
//! applies these steps inside its transactions; this module holds no state and does no I/O.
//!
//! ```text
//!   occurrence ──▶ acting ──action──▶ verifying ──verified──▶ healed ──alerts resolve──▶ resolved
//!      │              ▲                   │ failed
//!      │              │ next attempt      ▼
//!      │              └──── waiting ◀── attempts < max_attempts
//!      │                                  │ attempts = max_attempts
//!      └─ flapping (count healed in window) ─▶ escalated ──alerts resolve──▶ resolved
//! ```

use std::fmt;
use std::time::Duration;

use crate::vocab::IncidentState;

/// A target's limits on its subjects' incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts in one incident before it is escalated.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// When a subject counts as flapping.
    pub flapping: Flapping,
}

/// A subject is flapping when `count` of its incidents healed within `window`; `count` 0 never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    /// Healed incidents.
    pub count: u32,
    /// Within this time before now.
    pub window: Duration,
}

impl Policy {
    /// The wait after `failed` failed attempts (at least 1): `backoff × 2^(failed-1)`, at most
    /// `max_backoff`.
    #[must_use]
    pub fn delay_after(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// Whether a subject with `healed` incidents healed within the window is flapping.
    #[must_use]
    pub fn is_flapping(&self, healed: u32) -> bool {
        self.flapping.count > 0 && healed >= self.flapping.count
    }
}

/// A subject's open incident, as far as the model needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Open {
    /// Its state.
    pub state: IncidentState,
    /// When it healed, if it did.
    pub healed_at: Option<f64>,
}

/// What a new alert occurrence of a subject does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOccurrence {
    /// No incident is open: open one and act.
    Open,
    /// No incident is open and the subject is flapping: open one escalated, without acting.
    OpenEscalated,
    /// Join the open incident, which acts, waits or healed already (an alert of the same
    /// outage): no action.
    Join,
    /// Join the open escalated incident: no action; the occurrence is part of its page.
    JoinEscalated,
    /// The open incident healed before this outage began: it ends, and a new incident opens
    /// (escalated at once when the subject is flapping).
    Supersede {
        /// Whether the new incident is escalated at once.
        escalated: bool,
    },
}

/// Decides what an occurrence that started at `starts_at` does, given the subject's open
/// incident and the number of its incidents healed within the flapping window.
#[must_use]
pub fn on_occurrence(
    open: Option<Open>,
    starts_at: Option<f64>,
    healed_in_window: u32,
    policy: &Policy,
) -> OnOccurrence {
    let Some(open) = open else {
        return if policy.is_flapping(healed_in_window) {
            OnOccurrence::OpenEscalated
        } else {
            OnOccurrence::Open
        };
    };
    match open.state {
        IncidentState::Escalated => OnOccurrence::JoinEscalated,
        IncidentState::Healed => match (starts_at, open.healed_at) {
            // An alert that began after the heal is a new outage; one that began before it
            // (a slower alert of the same outage), or whose start is unknown, joins.
            (Some(start), Some(healed)) if start > healed => OnOccurrence::Supersede {
                escalated: policy.is_flapping(healed_in_window),
            },
            _ => OnOccurrence::Join,
        },
        IncidentState::Acting
        | IncidentState::Verifying
        | IncidentState::Waiting
        | IncidentState::Resolved => OnOccurrence::Join,
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Try again at this time (seconds since the epoch).
    Retry {
        /// When.
        at: f64,
    },
    /// No attempts left: escalate.
    Escalate,
}

/// Decides what follows the `attempts`-th attempt of an incident failing at `now`.
#[must_use]
pub fn after_failure(attempts: u32, policy: &Policy, now: f64) -> AfterFailure {
    if attempts >= policy.max_attempts {
        AfterFailure::Escalate
    } else {
        AfterFailure::Retry {
            at: now + policy.delay_after(attempts).as_secs_f64(),
        }
    }
}

/// The store's decision on a job about to act, as logged (`decision=…`).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Act: the job is the incident's next attempt.
    Act {
        /// The incident.
        incident: i64,
        /// The attempt it will be.
        attempt: u32,
        /// Attempts allowed.
        max_attempts: u32,
    },
    /// Recorded as a dry run.
    DryRun,
    /// Joined an open incident that acts, waits or healed.
    Joined {
        /// The incident.
        incident: i64,
        /// Its state.
        state: IncidentState,
        /// Its next attempt, when waiting.
        next_attempt_at: Option<f64>,
    },
    /// Joined an escalated incident: part of its page.
    JoinedEscalated {
        /// The incident.
        incident: i64,
    },
    /// A new incident of a flapping subject, escalated without acting.
    Flapping {
        /// The new incident.
        incident: i64,
        /// Incidents healed within the window.
        healed: u32,
    },
    /// Cancelled now: its alert resolved, or its incident closed, before it acted.
    Cancelled {
        /// Why, in words.
        why: &'static str,
    },
    /// Already ended elsewhere (cancelled by a resolve, or decided before).
    Gone,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Act {
                incident,
                attempt,
                max_attempts,
            } => write!(
                f,
                "act incident={incident} attempt={attempt}/{max_attempts}"
            ),
            Decision::DryRun => f.write_str("dry_run"),
            Decision::Joined {
                incident,
                state,
                next_attempt_at,
            } => {
                write!(f, "joined incident={incident} state={state}")?;
                if let Some(t) = next_attempt_at {
                    write!(f, " next_attempt_at={}", crate::clock::rfc3339(*t))?;
                }
                Ok(())
            }
            Decision::JoinedEscalated { incident } => {
                write!(f, "skipped_escalated incident={incident}")
            }
            Decision::Flapping { incident, healed } => {
                write!(
                    f,
                    "skipped_flapping incident={incident} healed_in_window={healed}"
                )
            }
            Decision::Cancelled { why } => write!(f, "cancelled: {why}"),
            Decision::Gone => f.write_str("gone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_attempts: 3,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(25),
            flapping: Flapping {
                count: 2,
                window: Duration::from_secs(3600),
            },
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = policy();
        assert_eq!(p.delay_after(1), Duration::from_secs(10));
        assert_eq!(p.delay_after(2), Duration::from_secs(20));
        assert_eq!(p.delay_after(3), Duration::from_secs(25));
        assert_eq!(p.delay_after(400), Duration::from_secs(25));
        assert_eq!(
            after_failure(1, &p, 100.0),
            AfterFailure::Retry { at: 110.0 }
        );
        assert_eq!(after_failure(3, &p, 100.0), AfterFailure::Escalate);
    }

    #[test]
    fn occurrences_open_join_or_supersede() {
        let p = policy();
        let open = |state, healed_at| Some(Open { state, healed_at });
        assert_eq!(on_occurrence(None, Some(5.0), 0, &p), OnOccurrence::Open);
        assert_eq!(
            on_occurrence(None, Some(5.0), 2, &p),
            OnOccurrence::OpenEscalated
        );
        for state in [
            IncidentState::Acting,
            IncidentState::Verifying,
            IncidentState::Waiting,
        ] {
            assert_eq!(
                on_occurrence(open(state, None), Some(5.0), 2, &p),
                OnOccurrence::Join
            );
        }
        assert_eq!(
            on_occurrence(open(IncidentState::Escalated, None), Some(5.0), 0, &p),
            OnOccurrence::JoinEscalated
        );
        let healed = open(IncidentState::Healed, Some(10.0));
        assert_eq!(on_occurrence(healed, Some(9.0), 1, &p), OnOccurrence::Join);
        assert_eq!(on_occurrence(healed, None, 1, &p), OnOccurrence::Join);
        assert_eq!(
            on_occurrence(healed, Some(11.0), 1, &p),
            OnOccurrence::Supersede { escalated: false }
        );
        assert_eq!(
            on_occurrence(healed, Some(11.0), 2, &p),
            OnOccurrence::Supersede { escalated: true }
        );
        let never = Policy {
            flapping: Flapping {
                count: 0,
                window: Duration::from_secs(3600),
            },
            ..p
        };
        assert_eq!(on_occurrence(None, None, 1000, &never), OnOccurrence::Open);
    }

    #[test]
    fn decisions_read_as_words() {
        let d = Decision::Joined {
            incident: 4,
            state: IncidentState::Waiting,
            next_attempt_at: Some(1_795_341_660.0),
        };
        assert_eq!(
            d.to_string(),
            "joined incident=4 state=waiting next_attempt_at=2026-11-22T10:01:00Z"
        );
        assert_eq!(
            Decision::Act {
                incident: 1,
                attempt: 2,
                max_attempts: 3
            }
            .to_string(),
            "act incident=1 attempt=2/3"
        );
    }
}
