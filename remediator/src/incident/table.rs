//! Every transition of the incident model, as a table: what `docs/remediator.md` draws, and
//! what the tests hold [`super::step`] to.

use super::{New, Transition, Why};
use crate::vocab::{CloseReason, IncidentState};

/// Where a row starts: no open incident, or an open state.
pub type From = Option<IncidentState>;

/// One transition of the model.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The states it starts from (`None`: the subject has no open incident).
    pub from: &'static [From],
    /// The input's name ([`super::Input::name`]); several when they behave alike.
    pub inputs: &'static [&'static str],
    /// The condition, in words (empty: always).
    pub guard: &'static str,
    /// Where it goes, in words (a state, `resolved (reason)`, or `none`).
    pub to: &'static str,
    /// The state it goes to, for the diagram (`None`: no incident).
    pub to_state: Option<IncidentState>,
    /// What else happens, in words.
    pub effect: &'static str,
    /// Whether a transition returned by [`super::step`] is this row's.
    pub takes: fn(&Transition) -> bool,
}

use IncidentState as S;

const NONE: &[From] = &[None];
const ACTING: &[From] = &[Some(S::Acting)];
const VERIFYING: &[From] = &[Some(S::Verifying)];
const WAITING: &[From] = &[Some(S::Waiting)];
const HEALED: &[From] = &[Some(S::Healed)];
const ESCALATED: &[From] = &[Some(S::Escalated)];
const HELD: &[From] = &[Some(S::Held)];
const BUSY: &[From] = &[
    Some(S::Acting),
    Some(S::Verifying),
    Some(S::Waiting),
    Some(S::Held),
];
const PENDING: &[From] = &[Some(S::Acting), Some(S::Waiting)];
const ATTEMPTING: &[From] = &[Some(S::Acting), Some(S::Verifying)];
const ATTEMPTING_OR_WAITING: &[From] = &[Some(S::Acting), Some(S::Verifying), Some(S::Waiting)];
const PENDING_OR_HELD: &[From] = &[Some(S::Acting), Some(S::Waiting), Some(S::Held)];
/// Open states without an attempt in progress or stored.
const SETTLED: &[From] = &[Some(S::Healed), Some(S::Escalated), Some(S::Held)];

/// Every transition the model has, and only those.
pub const TABLE: &[Row] = &[
    Row {
        from: NONE,
        inputs: &["occurrence"],
        guard: "dry run",
        to: "none",
        to_state: None,
        effect: "recorded as dry_run; no incident opens",
        takes: |t| matches!(t, Transition::Open(New::DryRun)),
    },
    Row {
        from: NONE,
        inputs: &["occurrence"],
        guard: "",
        to: "acting",
        to_state: Some(S::Acting),
        effect: "a new incident; its attempt 1 is decided",
        takes: |t| matches!(t, Transition::Open(New::Acting)),
    },
    Row {
        from: NONE,
        inputs: &["occurrence"],
        guard: "the subject is flapping",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "a new incident, escalated without acting: on-call is paged",
        takes: |t| matches!(t, Transition::Open(New::Escalated(Why::Flapping { .. }))),
    },
    Row {
        from: NONE,
        inputs: &["occurrence"],
        guard: "found later than resume_max_age after it was due",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "a new incident, escalated without acting: on-call is paged",
        takes: |t| matches!(t, Transition::Open(New::Escalated(Why::Late))),
    },
    Row {
        from: NONE,
        inputs: &["occurrence"],
        guard: "held: the blast-radius guard, an unreachable engine, a failing dependency or a pause",
        to: "held",
        to_state: Some(S::Held),
        effect: "a new incident whose action waits; the guard and an unreachable engine page once per target",
        takes: |t| matches!(t, Transition::Open(New::Held(_))),
    },
    Row {
        from: NONE,
        inputs: &["reset"],
        guard: "",
        to: "none",
        to_state: None,
        effect: "the subject's flapping history is cleared",
        takes: |t| matches!(t, Transition::ForgetHistory),
    },
    Row {
        from: BUSY,
        inputs: &["occurrence"],
        guard: "",
        to: "unchanged",
        to_state: None,
        effect: "joined: no new action; a waiting incident's next attempt acts by the joining alert's rule",
        takes: |t| matches!(t, Transition::Join),
    },
    Row {
        from: HEALED,
        inputs: &["occurrence"],
        guard: "the alert began before the heal",
        to: "healed",
        to_state: Some(S::Healed),
        effect: "joined: an alert of the healed outage",
        takes: |t| matches!(t, Transition::Join),
    },
    Row {
        from: HEALED,
        inputs: &["occurrence"],
        guard: "the alert began after the heal",
        to: "resolved (superseded)",
        to_state: Some(S::Resolved),
        effect: "a new outage: the occurrence continues as on a subject without an open incident",
        takes: |t| matches!(t, Transition::Supersede(_)),
    },
    Row {
        from: ESCALATED,
        inputs: &["occurrence"],
        guard: "",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "joined: part of the page, which is posted again at once",
        takes: |t| matches!(t, Transition::JoinEscalated),
    },
    Row {
        from: WAITING,
        inputs: &["due"],
        guard: "",
        to: "acting",
        to_state: Some(S::Acting),
        effect: "the next attempt is decided",
        takes: |t| matches!(t, Transition::Due),
    },
    Row {
        from: ACTING,
        inputs: &["due"],
        guard: "its action had not started",
        to: "acting",
        to_state: Some(S::Acting),
        effect: "a decided attempt picked up again (after a restart or a store error)",
        takes: |t| matches!(t, Transition::Due),
    },
    Row {
        from: ACTING,
        inputs: &["due", "start"],
        guard: "dry run",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::DryRun)),
    },
    Row {
        from: WAITING,
        inputs: &["due"],
        guard: "dry run",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::DryRun)),
    },
    Row {
        from: ACTING,
        inputs: &["due", "start", "unconfigured"],
        guard: "its rule or target was removed, before its action started",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Unconfigured)),
    },
    Row {
        from: WAITING,
        inputs: &["due", "unconfigured"],
        guard: "its rule or target was removed",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Unconfigured)),
    },
    Row {
        from: PENDING,
        inputs: &["due"],
        guard: "found later than resume_max_age after it was due",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not run blindly: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Late)),
    },
    Row {
        from: ACTING,
        inputs: &["due", "start"],
        guard: "held, before its action started",
        to: "held",
        to_state: Some(S::Held),
        effect: "the attempt waits for the hold to end",
        takes: |t| matches!(t, Transition::Hold(_)),
    },
    Row {
        from: WAITING,
        inputs: &["due"],
        guard: "held",
        to: "held",
        to_state: Some(S::Held),
        effect: "the attempt waits for the hold to end",
        takes: |t| matches!(t, Transition::Hold(_)),
    },
    Row {
        from: HELD,
        inputs: &["release"],
        guard: "the hold ended (one subject of a target at a time)",
        to: "acting",
        to_state: Some(S::Acting),
        effect: "its attempt is decided",
        takes: |t| matches!(t, Transition::Release),
    },
    Row {
        from: HELD,
        inputs: &["release"],
        guard: "dry run",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::DryRun)),
    },
    Row {
        from: HELD,
        inputs: &["release", "unconfigured"],
        guard: "its rule or target was removed",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "not executed: on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Unconfigured)),
    },
    Row {
        from: ACTING,
        inputs: &["start"],
        guard: "",
        to: "acting",
        to_state: Some(S::Acting),
        effect: "the action runs; the attempt counts from here",
        takes: |t| matches!(t, Transition::Start { .. }),
    },
    Row {
        from: ACTING,
        inputs: &["returned"],
        guard: "",
        to: "verifying",
        to_state: Some(S::Verifying),
        effect: "its outcome is verified",
        takes: |t| matches!(t, Transition::Verify),
    },
    Row {
        from: VERIFYING,
        inputs: &["verified"],
        guard: "",
        to: "healed",
        to_state: Some(S::Healed),
        effect: "re-checked resolve_within later if an alert of it still fires then",
        takes: |t| matches!(t, Transition::Heal { .. }),
    },
    Row {
        from: ATTEMPTING,
        inputs: &["failed"],
        guard: "attempts left",
        to: "waiting",
        to_state: Some(S::Waiting),
        effect: "the next attempt is stored with its time (backoff)",
        takes: |t| matches!(t, Transition::Retry { .. }),
    },
    Row {
        from: ATTEMPTING,
        inputs: &["failed"],
        guard: "no attempts left",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Exhausted)),
    },
    Row {
        from: ACTING,
        inputs: &["refused"],
        guard: "",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Refused)),
    },
    Row {
        from: HEALED,
        inputs: &["recheck"],
        guard: "verified again, the first time",
        to: "healed",
        to_state: Some(S::Healed),
        effect: "checked once more resolve_within later",
        takes: |t| matches!(t, Transition::RecheckAgain { .. }),
    },
    Row {
        from: HEALED,
        inputs: &["recheck"],
        guard: "verification fails, or passes a second time while the alert fires; attempts left",
        to: "waiting",
        to_state: Some(S::Waiting),
        effect: "the heal did not hold: a failed attempt of the same incident",
        takes: |t| matches!(t, Transition::Retry { .. }),
    },
    Row {
        from: HEALED,
        inputs: &["recheck"],
        guard: "likewise, no attempts left",
        to: "escalated",
        to_state: Some(S::Escalated),
        effect: "on-call is paged",
        takes: |t| matches!(t, Transition::Escalate(Why::Exhausted)),
    },
    Row {
        from: ATTEMPTING_OR_WAITING,
        inputs: &["resolved"],
        guard: "",
        to: "unchanged",
        to_state: None,
        effect: "the attempt in progress or stored decides: the incident ends at its next step unless an alert of it fires again",
        takes: |t| matches!(t, Transition::Await),
    },
    Row {
        from: PENDING_OR_HELD,
        inputs: &["due", "start", "release"],
        guard: "every alert resolved, none fired again",
        to: "resolved (alert_resolved or reconciled)",
        to_state: Some(S::Resolved),
        effect: "the outage ended: nothing is executed",
        takes: |t| {
            matches!(
                t,
                Transition::Close(CloseReason::AlertResolved | CloseReason::Reconciled)
            )
        },
    },
    Row {
        from: VERIFYING,
        inputs: &["verified"],
        guard: "every alert resolved meanwhile",
        to: "resolved (alert_resolved or reconciled)",
        to_state: Some(S::Resolved),
        effect: "healed (the heal counts for flapping) and closed",
        takes: |t| matches!(t, Transition::HealedAndClosed(_)),
    },
    Row {
        from: ATTEMPTING,
        inputs: &["failed"],
        guard: "no attempts left, and every alert resolved meanwhile",
        to: "resolved (alert_resolved or reconciled)",
        to_state: Some(S::Resolved),
        effect: "nothing to page about",
        takes: |t| {
            matches!(
                t,
                Transition::Close(CloseReason::AlertResolved | CloseReason::Reconciled)
            )
        },
    },
    Row {
        from: HEALED,
        inputs: &["recheck"],
        guard: "every alert resolved",
        to: "resolved (alert_resolved or reconciled)",
        to_state: Some(S::Resolved),
        effect: "nothing left to check",
        takes: |t| {
            matches!(
                t,
                Transition::Close(CloseReason::AlertResolved | CloseReason::Reconciled)
            )
        },
    },
    Row {
        from: SETTLED,
        inputs: &["resolved"],
        guard: "",
        to: "resolved (alert_resolved or reconciled)",
        to_state: Some(S::Resolved),
        effect: "a waiting attempt or re-check is cancelled; a page resolves",
        takes: |t| {
            matches!(
                t,
                Transition::Close(CloseReason::AlertResolved | CloseReason::Reconciled)
            )
        },
    },
    Row {
        from: HEALED,
        inputs: &["unconfigured"],
        guard: "",
        to: "resolved (unconfigured)",
        to_state: Some(S::Resolved),
        effect: "healed; no longer re-checked",
        takes: |t| matches!(t, Transition::Close(CloseReason::Unconfigured)),
    },
    Row {
        from: ESCALATED,
        inputs: &["reset"],
        guard: "",
        to: "resolved (reset)",
        to_state: Some(S::Resolved),
        effect: "the page resolves, the flapping history is cleared, and its alerts still firing are handled again as new occurrences",
        takes: |t| matches!(t, Transition::Reset),
    },
];

fn state_name(s: Option<IncidentState>) -> &'static str {
    s.map_or("[*]", IncidentState::as_str)
}

/// The table as a Mermaid state diagram: one line per row and start state, in table order.
/// Rows that keep the subject without an incident, or an incident in its state, are listed
/// by [`markdown`] only.
#[must_use]
pub fn diagram() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for row in TABLE {
        for from in row.from {
            let to = match (row.to_state, *from) {
                (None, _) => continue,
                (Some(t), Some(f)) if t == f => continue,
                (Some(t), _) => t,
            };
            let mut label = row.inputs.join(" / ");
            if !row.guard.is_empty() {
                label.push_str(" [");
                label.push_str(row.guard);
                label.push(']');
            }
            let to = if to == IncidentState::Resolved {
                "resolved"
            } else {
                to.as_str()
            };
            out.push_str(&format!("    {} --> {}: {label}\n", state_name(*from), to));
        }
    }
    out.push_str("    resolved --> [*]\n");
    out
}

/// The table in Markdown: every row, with its effect.
#[must_use]
pub fn markdown() -> String {
    let mut out =
        String::from("| from | input | when | to | what else happens |\n|---|---|---|---|---|\n");
    for row in TABLE {
        let from: Vec<&str> = row
            .from
            .iter()
            .map(|f| f.map_or("none", IncidentState::as_str))
            .collect();
        let inputs: Vec<String> = row.inputs.iter().map(|i| format!("`{i}`")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            from.join(", "),
            inputs.join(", "),
            if row.guard.is_empty() {
                "—"
            } else {
                row.guard
            },
            row.to,
            row.effect
        ));
    }
    out
}
