//! The remediator's bounded vocabulary: job states, job results and audit events, incident
//! states, why incidents close, escalation states, and what became of alerts and webhooks.
//!
//! Each is an enum whose string form is written once, here. The store writes these strings,
//! the pipeline logs them, metrics use them as label values and the page shows them; every
//! other place goes through the enum, so the compiler finds each use when one is added.

/// Declares a fieldless enum with its string forms: `ALL`, `as_str`, `parse`, `Display` and
/// `Serialize` as the string.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string form, as stored, logged, exported and shown.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value whose string form is `text`.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use vocabulary;

vocabulary! {
    /// Where a stored job is in its life.
    pub enum JobState {
        /// Stored, waiting for its time, its decision, the subject's lock or the global limit.
        Queued = "queued",
        /// Its action started (the attempt is counted); after a crash it is verified, not run
        /// again.
        Running = "running",
        /// Finished with a result.
        Done = "done",
    }
}

vocabulary! {
    /// One row of the audit history: how a job ended, or what happened to an incident or its
    /// escalation. Each job ends with exactly one job result.
    pub enum Event {
        /// The action ran and was verified: the incident is healed.
        Succeeded = "succeeded",
        /// The action or its verification failed: a failed attempt.
        Failed = "failed",
        /// A label tried to leave the allow-lists, or the container lacks the opt-in label.
        Denied = "denied",
        /// Everything but the action ran.
        DryRun = "dry_run",
        /// The alert joined the subject's open incident, which already acts, waits or healed.
        Joined = "joined",
        /// The alert joined an escalated incident: no action, it is part of that page.
        SkippedEscalated = "skipped_escalated",
        /// The subject is flapping: its new incident was escalated without an action.
        SkippedFlapping = "skipped_flapping",
        /// The alert resolved (or the incident closed) before the action started, or its rule
        /// or target was removed.
        Cancelled = "cancelled",
        /// Found later than `global.resume_max_age` after it was due: not run blindly, its
        /// incident is escalated.
        Expired = "expired",
        /// An incident was escalated: `StackmedicRemediationFailed` is stored for Alertmanager.
        Escalated = "escalated",
        /// Alertmanager accepted the post resolving an escalation.
        EscalationResolved = "escalation_resolved",
        /// An incident closed (its alerts resolved, reconciliation, …).
        Resolved = "resolved",
        /// A healed incident whose alert still fired was verified again and passed.
        Rechecked = "rechecked",
        /// On-call reset a subject: its escalated incident closed, its flapping history cleared.
        Reset = "reset",
        /// The job's action was held (the blast-radius guard, an unreachable engine, a failing
        /// dependency, a pause): its incident is `held` and acts when the hold ends.
        Held = "held",
        /// A held incident was released: its attempt runs now.
        Released = "released",
    }
}

impl Event {
    /// The events that end a job, in label order (the `result` of `…_actions_total`).
    pub const JOB_RESULTS: &'static [Event] = &[
        Event::Succeeded,
        Event::Failed,
        Event::Denied,
        Event::DryRun,
        Event::Joined,
        Event::SkippedEscalated,
        Event::SkippedFlapping,
        Event::Cancelled,
        Event::Expired,
        Event::Held,
    ];
}

vocabulary! {
    /// The state of a subject's incident. The first five are open states; at most one
    /// incident per subject is open.
    pub enum IncidentState {
        /// An attempt is decided: its job waits for the subject's lock and the global limit,
        /// or its action runs.
        Acting = "acting",
        /// The action returned; its outcome is being verified.
        Verifying = "verifying",
        /// The last attempt failed; the next one runs at the stored time.
        Waiting = "waiting",
        /// Verified; the incident ends when its alerts resolve.
        Healed = "healed",
        /// No more actions: a page is active until the incident's alerts resolve.
        Escalated = "escalated",
        /// Its action waits: most of its target's subjects are failing or their engine cannot be
        /// reached (one page for the group), a dependency is being remediated, or on-call paused
        /// the remediator. It acts by itself when the hold ends.
        Held = "held",
        /// Closed.
        Resolved = "resolved",
    }
}

impl IncidentState {
    /// The open states, in label order (the `state` of `…_incidents`).
    pub const OPEN: &'static [IncidentState] = &[
        IncidentState::Acting,
        IncidentState::Verifying,
        IncidentState::Waiting,
        IncidentState::Healed,
        IncidentState::Escalated,
        IncidentState::Held,
    ];

    /// Whether this is an open state.
    #[must_use]
    pub fn is_open(self) -> bool {
        self != IncidentState::Resolved
    }
}

vocabulary! {
    /// Why an incident closed.
    pub enum CloseReason {
        /// Every alert of the incident resolved (Alertmanager delivered the resolves).
        AlertResolved = "alert_resolved",
        /// Reconciliation found none of its alerts active in Alertmanager any more.
        Reconciled = "reconciled",
        /// It had healed and a new outage of the subject began: a new incident replaced it.
        Superseded = "superseded",
        /// The action was refused when it was about to run (written by earlier releases; a
        /// refusal now escalates).
        Refused = "refused",
        /// Its rule or target is no longer configured (a healed incident; one still being
        /// remediated is escalated).
        Unconfigured = "unconfigured",
        /// Its next attempt was found at start too long after it was due (written by earlier
        /// releases; such an attempt now escalates).
        Expired = "expired",
        /// On-call reset the subject.
        Reset = "reset",
    }
}

impl CloseReason {
    /// The reason in words, for the page, the audit history and the escalation's resolution.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::AlertResolved => "the alert resolved",
            CloseReason::Reconciled => "reconciled: the alert is no longer active in Alertmanager",
            CloseReason::Superseded => "superseded: a new outage began after it healed",
            CloseReason::Refused => "the action was refused",
            CloseReason::Unconfigured => "its rule or target is no longer configured",
            CloseReason::Expired => "its next attempt was found too late at start",
            CloseReason::Reset => "reset by on-call",
        }
    }
}

vocabulary! {
    /// The state of an escalation in the outbox.
    pub enum EscalationState {
        /// Active: posted, and re-posted every `resend_interval`.
        Firing = "firing",
        /// Its incident closed; the post with `endsAt` = now is due.
        Resolving = "resolving",
        /// Alertmanager accepted the resolving post.
        Resolved = "resolved",
    }
}

vocabulary! {
    /// What became of one post of an escalation (the `result` of `…_escalations_total`).
    pub enum PostOutcome {
        /// The first post of an escalation was accepted.
        Delivered = "delivered",
        /// A re-post of an active escalation was accepted.
        Resent = "resent",
        /// The resolving post was accepted.
        Resolved = "resolved",
        /// Alertmanager did not accept the post; it is retried.
        Failed = "failed",
    }
}

vocabulary! {
    /// What became of one alert of a webhook (the `decision` of `…_alerts_total`).
    pub enum AlertDecision {
        /// A job was stored for a new occurrence.
        Queued = "queued",
        /// The occurrence was seen before: Alertmanager re-sent it.
        Duplicate = "duplicate",
        /// No rule matched.
        Unmatched = "unmatched",
        /// A label tried to leave the allow-lists.
        Denied = "denied",
        /// A resolved alert.
        Resolved = "resolved",
        /// The remediator's own escalation, never acted on.
        Ignored = "ignored",
    }
}

vocabulary! {
    /// How a webhook request ended (the `result` of `…_webhooks_total`).
    pub enum WebhookResult {
        /// Stored and answered 200.
        Accepted = "accepted",
        /// The process-wide request-body budget was spent (503 with `Retry-After`).
        Busy = "busy",
        /// The body did not arrive within its read deadline (408).
        Timeout = "timeout",
        /// Missing or wrong credentials (401).
        Unauthorized = "unauthorized",
        /// Not a valid payload (400).
        Malformed = "malformed",
        /// Another payload version (400).
        UnsupportedVersion = "unsupported_version",
        /// Larger than `global.max_body_bytes` (413).
        TooLarge = "too_large",
        /// Not a POST (405).
        MethodNotAllowed = "method_not_allowed",
        /// The store could not commit (503).
        StoreError = "store_error",
    }
}

vocabulary! {
    /// How an occurrence was found resolved.
    pub enum ResolvedBy {
        /// Alertmanager delivered its resolve. Every resolve is final: a later firing of the
        /// same occurrence never acts.
        Alert = "alert",
        /// Reconciliation did not find it active in Alertmanager.
        Reconciled = "reconciled",
        /// Its job expired at start (written by earlier releases).
        Expired = "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_round_trip_and_are_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::BTreeSet::new();
            for v in all {
                assert_eq!(parse(as_str(*v)), Some(*v));
                assert!(seen.insert(as_str(*v)), "{v:?} twice");
            }
        }
        check(JobState::ALL, JobState::as_str, JobState::parse);
        check(Event::ALL, Event::as_str, Event::parse);
        check(
            IncidentState::ALL,
            IncidentState::as_str,
            IncidentState::parse,
        );
        check(CloseReason::ALL, CloseReason::as_str, CloseReason::parse);
        check(
            EscalationState::ALL,
            EscalationState::as_str,
            EscalationState::parse,
        );
        check(
            AlertDecision::ALL,
            AlertDecision::as_str,
            AlertDecision::parse,
        );
        check(
            WebhookResult::ALL,
            WebhookResult::as_str,
            WebhookResult::parse,
        );
        check(ResolvedBy::ALL, ResolvedBy::as_str, ResolvedBy::parse);
        assert_eq!(Event::parse("skipped_cooldown"), None);
        assert!(IncidentState::OPEN.iter().all(|s| s.is_open()));
        assert!(!IncidentState::Resolved.is_open());
    }
}
