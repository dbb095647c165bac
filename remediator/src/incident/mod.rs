//! The incident model as one pure state machine: `(open incident, input, facts) → transition`.
//!
//! A subject has at most one open incident. Everything that can happen to it is an [`Input`]
//! (a new alert occurrence, its next attempt coming due, the action starting, returning,
//! failing or being refused, verification, the re-check of a heal, every alert resolving, its
//! rule being removed, on-call resetting it); the [`Facts`] are what the model may look at
//! besides the incident (the time, dry run, whether the rule is still configured, whether the
//! job was found too late, the subject's healed incidents within the flapping window). [`step`]
//! returns the [`Transition`] to take, or `None` when the input does not apply to the
//! incident's state (a job that is no longer its incident's attempt). The store applies the
//! transition in one transaction; this module holds no state and does no I/O.
//!
//! The table of every transition is [`TABLE`]; `docs/remediator.md` draws exactly that table
//! (a test compares them), and a test enumerates every state, input and fact to prove that
//! [`step`] takes only transitions of the table, and every one of them.
//!
//! **Invariant:** every open incident has a next time (an attempt, a verification running, a
//! re-check) or an active page (escalated); no transition leaves it in neither.
//!
//! **Invariant:** attempts never decrease inside an incident; an action is never started while
//! dry run is on.

mod table;

use std::fmt;
use std::time::Duration;

pub use table::{diagram, markdown, Row, TABLE};

use crate::vocab::{CloseReason, Event, IncidentState};

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
    /// How long after a heal the incident's alerts must have resolved; a healed incident whose
    /// alerts still fire then is verified again (`verify.resolve_within`).
    pub resolve_within: Duration,
}

impl Default for Policy {
    /// The defaults of a target's keys (`max_attempts`, `backoff`, …).
    fn default() -> Self {
        Policy {
            max_attempts: 3,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            flapping: Flapping {
                count: 3,
                window: Duration::from_secs(3600),
            },
            resolve_within: Duration::from_secs(30),
        }
    }
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

/// A subject's open incident, as far as the model reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Open {
    /// Its state (never [`IncidentState::Resolved`]).
    pub state: IncidentState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Whether the current attempt's action has started (only while acting).
    pub running: bool,
    /// When it healed, if it did.
    pub healed_at: Option<f64>,
    /// Re-checks of the heal that passed while its alerts still fired.
    pub rechecks: u32,
}

/// What happens to a subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// A new alert occurrence of the subject is decided; `starts_at` is the alert's start.
    Occurrence {
        /// The alert's `startsAt`, when it could be read.
        starts_at: Option<f64>,
    },
    /// The incident's stored attempt is picked up: its next attempt's time came, or a decided
    /// attempt is picked up again after a restart.
    Due,
    /// The attempt's action is about to start.
    Start,
    /// The action returned; its outcome is verified next.
    Returned,
    /// Verification passed (good for `stable_for`).
    Verified,
    /// The action failed or timed out, or its verification failed.
    Failed,
    /// The action was refused when about to run (the container lost its opt-in label, …).
    Refused,
    /// The heal's re-check, `resolve_within` after the heal (or after the last re-check), while
    /// an alert of the incident still fires; `verified` is its verification's verdict.
    Recheck {
        /// Whether verification passed again.
        verified: bool,
    },
    /// Every alert of the incident resolved.
    Resolved {
        /// Delivered by Alertmanager (`false`: found by reconciliation).
        delivered: bool,
    },
    /// The rule or target of the incident is no longer configured (found at a reload or start).
    Unconfigured,
    /// On-call reset the subject (`POST /api/subjects/{subject}/reset`).
    Reset,
    /// A held incident's hold is looked at again (the facts say whether it still holds).
    Release,
}

impl Input {
    /// The input's name, as the table and the docs write it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Input::Occurrence { .. } => "occurrence",
            Input::Due => "due",
            Input::Start => "start",
            Input::Returned => "returned",
            Input::Verified => "verified",
            Input::Failed => "failed",
            Input::Refused => "refused",
            Input::Recheck { .. } => "recheck",
            Input::Resolved { .. } => "resolved",
            Input::Unconfigured => "unconfigured",
            Input::Reset => "reset",
            Input::Release => "release",
        }
    }
}

/// What the model may look at besides the incident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// Now, seconds since the epoch.
    pub now: f64,
    /// The target's policy in force.
    pub policy: Policy,
    /// Dry run is on (globally or for the job's rule).
    pub dry_run: bool,
    /// The job's rule and target are still configured.
    pub configured: bool,
    /// The job was picked up longer than `global.resume_max_age` after it was due.
    pub late: bool,
    /// The subject's incidents healed within the flapping window (since its last reset).
    pub healed_in_window: u32,
    /// Whether, and why, an action on the subject must wait now.
    pub hold: Option<Hold>,
    /// `None` while an alert of the incident fires; once every one resolved, how the last was
    /// found resolved (`AlertResolved`: delivered, `Reconciled`).
    pub quiet: Option<CloseReason>,
}

/// Why an action waits (the incident is `held`). It acts by itself when the hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// More than the guard's fraction, and at least its minimum, of the target's subjects fail
    /// together: one cause is likelier than many, and acting on each would add to it.
    BlastRadius {
        /// Subjects of the target failing, this one included.
        failing: u32,
        /// Subjects of the target.
        of: u32,
    },
    /// The engine the action would act through cannot be reached.
    Engine,
    /// A dependency of the subject is being remediated: it is healed first.
    Dependency,
    /// On-call paused the remediator.
    Paused,
}

impl Hold {
    /// The hold in words.
    #[must_use]
    pub fn describe(self) -> String {
        match self {
            Hold::BlastRadius { failing, of } => format!(
                "{failing} of {of} subjects of the target are failing: actions held (blast-radius guard)"
            ),
            Hold::Engine => "the engine it acts through cannot be reached: actions held".into(),
            Hold::Dependency => "a dependency is being remediated: it is healed first".into(),
            Hold::Paused => "the remediator is paused by on-call".into(),
        }
    }

    /// Whether on-call is paged for the hold, once per target (the guard and an unreachable
    /// engine); a dependency's own incident, or the pause, stand for the others.
    #[must_use]
    pub fn pages(self) -> bool {
        matches!(self, Hold::BlastRadius { .. } | Hold::Engine)
    }
}

/// Why an incident is escalated: on-call is paged and no more actions are taken on the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `count` incidents of the subject healed within the window.
    Flapping {
        /// Healed incidents within the window.
        healed: u32,
    },
    /// Every attempt failed.
    Exhausted,
    /// Found longer than `resume_max_age` after it was due: not acted on blindly.
    Late,
    /// Dry run is on: the attempt was not executed.
    DryRun,
    /// Its rule or target was removed from the configuration.
    Unconfigured,
    /// The action was refused when about to run.
    Refused,
}

impl Why {
    /// The reason in words, for the incident, its audit row and the page.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Why::Flapping { .. } => "the subject is flapping",
            Why::Exhausted => "no attempts left",
            Why::Late => {
                "its attempt was found later than global.resume_max_age after it was due, so it was not run blindly"
            }
            Why::DryRun => "dry run is on, so the attempt was not executed",
            Why::Unconfigured => "its rule or target was removed from the configuration",
            Why::Refused => "the action was refused",
        }
    }
}

impl Why {
    /// The result a job is counted and audited under when its incident was escalated on it
    /// without an attempt.
    #[must_use]
    pub fn job_result(self) -> Event {
        match self {
            Why::DryRun => Event::DryRun,
            Why::Late => Event::Expired,
            Why::Flapping { .. } => Event::SkippedFlapping,
            Why::Unconfigured | Why::Exhausted | Why::Refused => Event::Cancelled,
        }
    }
}

/// What a new occurrence of a subject without an acting incident leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum New {
    /// A new incident, acting: attempt 1.
    Acting,
    /// A new incident, escalated at once.
    Escalated(Why),
    /// Dry run: recorded, no incident.
    DryRun,
    /// A new incident, held: its action waits.
    Held(Hold),
}

/// A transition of the model; the store applies it. Each is one or more rows of [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// No open incident: a new occurrence opens one, or is recorded as a dry run.
    Open(New),
    /// The occurrence joins the open incident, which acts, verifies, waits or healed: no new
    /// action. When it waits, its next attempt acts by the joining alert's rule.
    Join,
    /// The occurrence joins the escalated incident: part of its page.
    JoinEscalated,
    /// The healed incident ends (superseded: a new outage began after the heal), and the
    /// occurrence continues as `New`.
    Supersede(New),
    /// The stored attempt is decided: acting.
    Due,
    /// The action starts; the attempt counts from here.
    Start {
        /// The attempt's number.
        attempt: u32,
    },
    /// The action returned: verifying.
    Verify,
    /// Verified: healed, re-checked at `recheck_at` if an alert still fires then.
    Heal {
        /// When the heal is checked again.
        recheck_at: f64,
    },
    /// A failed attempt with attempts left: the next one at `at`.
    Retry {
        /// When the next attempt runs.
        at: f64,
    },
    /// The first re-check passed while an alert still fires: checked once more at `at`.
    RecheckAgain {
        /// When.
        at: f64,
    },
    /// Escalated: on-call is paged, no more actions on the subject.
    Escalate(Why),
    /// The incident closes.
    Close(CloseReason),
    /// On-call reset an escalated incident: it closes, its flapping history is cleared, and
    /// its alerts still firing are handled again as new occurrences.
    Reset,
    /// On-call reset a subject without an open incident: its flapping history is cleared.
    ForgetHistory,
    /// The pending attempt waits: held.
    Hold(Hold),
    /// The hold ended: the held incident's attempt is decided (acting).
    Release,
    /// Every alert resolved while an attempt is in progress or stored: the incident stays, and
    /// ends at its next step unless an alert of it fires again (a crash loop's alert resolves
    /// for a moment after each restart; the attempt's own outcome decides).
    Await,
    /// Verified, and every alert of the incident resolved meanwhile: healed (the heal counts for
    /// flapping) and closed.
    HealedAndClosed(CloseReason),
}

/// Decides what `input` does to a subject whose open incident is `open` (`None`: none is open).
/// `None` when the input does not apply (the job is no longer its incident's attempt, a reset
/// of an incident still being remediated, …): the caller then ends the job without a transition.
#[must_use]
pub fn step(open: Option<&Open>, input: Input, f: &Facts) -> Option<Transition> {
    use IncidentState as S;
    let Some(o) = open else {
        return match input {
            Input::Occurrence { .. } => Some(Transition::Open(new(f))),
            Input::Reset => Some(Transition::ForgetHistory),
            _ => None,
        };
    };
    match (o.state, input) {
        (S::Resolved, _) => None,
        // Alerts of one outage join its incident; after a heal, an alert that began later is a
        // new outage.
        (S::Escalated, Input::Occurrence { .. }) => Some(Transition::JoinEscalated),
        (S::Healed, Input::Occurrence { starts_at }) => match (starts_at, o.healed_at) {
            (Some(start), Some(healed)) if start > healed => Some(Transition::Supersede(new(f))),
            _ => Some(Transition::Join),
        },
        (S::Acting | S::Verifying | S::Waiting | S::Held, Input::Occurrence { .. }) => {
            Some(Transition::Join)
        }
        // The gates before anything is executed: dry run, a removed rule, a job found late, a
        // hold.
        (S::Waiting, Input::Due)
        | (S::Acting, Input::Due | Input::Start)
        | (S::Held, Input::Release)
            if !o.running =>
        {
            if let Some(reason) = f.quiet {
                // Every alert resolved, and none fired again by the next step: the outage
                // ended; nothing is executed.
                Some(Transition::Close(reason))
            } else if f.dry_run {
                Some(Transition::Escalate(Why::DryRun))
            } else if !f.configured {
                Some(Transition::Escalate(Why::Unconfigured))
            } else if f.late && input == Input::Due {
                Some(Transition::Escalate(Why::Late))
            } else if let Some(h) = f.hold {
                (o.state != S::Held).then_some(Transition::Hold(h))
            } else if input == Input::Release {
                Some(Transition::Release)
            } else if input == Input::Due {
                Some(Transition::Due)
            } else {
                Some(Transition::Start {
                    attempt: o.attempts + 1,
                })
            }
        }
        (S::Acting, Input::Returned) if o.running => Some(Transition::Verify),
        (S::Verifying, Input::Verified) => Some(match f.quiet {
            Some(reason) => Transition::HealedAndClosed(reason),
            None => Transition::Heal {
                recheck_at: f.now + f.policy.resolve_within.as_secs_f64(),
            },
        }),
        (S::Acting, Input::Failed) if o.running => Some(after_failure(o, f)),
        (S::Verifying, Input::Failed) => Some(after_failure(o, f)),
        (S::Acting, Input::Refused) if o.running => Some(Transition::Escalate(Why::Refused)),
        (S::Healed, Input::Recheck { .. }) if f.quiet.is_some() => f.quiet.map(Transition::Close),
        (S::Healed, Input::Recheck { verified: true }) if o.rechecks == 0 => {
            Some(Transition::RecheckAgain {
                at: f.now + f.policy.resolve_within.as_secs_f64(),
            })
        }
        (S::Healed, Input::Recheck { .. }) => Some(after_failure(o, f)),
        // An attempt in progress or stored decides: its incident ends at its next step unless
        // an alert fires again.
        (S::Acting | S::Verifying | S::Waiting, Input::Resolved { .. }) => Some(Transition::Await),
        (_, Input::Resolved { delivered }) => Some(Transition::Close(if delivered {
            CloseReason::AlertResolved
        } else {
            CloseReason::Reconciled
        })),
        (S::Waiting | S::Held, Input::Unconfigured) | (S::Acting, Input::Unconfigured)
            if !o.running =>
        {
            Some(Transition::Escalate(Why::Unconfigured))
        }
        (S::Healed, Input::Unconfigured) => Some(Transition::Close(CloseReason::Unconfigured)),
        (S::Escalated, Input::Reset) => Some(Transition::Reset),
        _ => None,
    }
}

/// What a new occurrence of a subject without an acting incident leads to.
fn new(f: &Facts) -> New {
    if f.dry_run {
        New::DryRun
    } else if f.policy.is_flapping(f.healed_in_window) {
        New::Escalated(Why::Flapping {
            healed: f.healed_in_window,
        })
    } else if f.late {
        New::Escalated(Why::Late)
    } else if let Some(h) = f.hold {
        New::Held(h)
    } else {
        New::Acting
    }
}

/// A failed attempt (or a heal that did not hold): the next attempt, or escalation when none is
/// left or the rule is gone.
fn after_failure(o: &Open, f: &Facts) -> Transition {
    if let (Some(reason), true) = (f.quiet, o.attempts >= f.policy.max_attempts) {
        // No attempt left, but its alerts resolved: nothing to page about.
        Transition::Close(reason)
    } else if o.attempts >= f.policy.max_attempts {
        Transition::Escalate(Why::Exhausted)
    } else {
        Transition::Retry {
            at: f.now + f.policy.delay_after(o.attempts).as_secs_f64(),
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
    /// Joined an open incident that acts, waits, verifies or healed.
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
    /// The incident is held: its action waits.
    Held {
        /// The incident.
        incident: i64,
        /// Why.
        hold: Hold,
    },
    /// The incident was escalated without acting (flapping, dry run, removed rule, found late).
    Escalated {
        /// The incident.
        incident: i64,
        /// Why.
        why: Why,
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
            Decision::Escalated {
                incident,
                why: Why::Flapping { healed },
            } => write!(
                f,
                "skipped_flapping incident={incident} healed_in_window={healed}"
            ),
            Decision::Escalated { incident, why } => {
                write!(f, "escalated incident={incident}: {}", why.describe())
            }
            Decision::Held { incident, hold } => {
                write!(f, "held incident={incident}: {}", hold.describe())
            }
            Decision::Cancelled { why } => write!(f, "cancelled: {why}"),
            Decision::Gone => f.write_str("gone"),
        }
    }
}

#[cfg(test)]
mod tests;
