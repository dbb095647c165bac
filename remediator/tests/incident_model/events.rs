//! The events of the incident model's sequences, how proptest draws them, and the alert
//! occurrences and subjects they name, and the simulated configuration's policy.

use std::time::Duration;

use proptest::prelude::*;
use stackmedic_remediator::incident::{Flapping, Policy};

use super::{SLOTS, SUBJECTS};

/// The policy of every rule of the simulated configuration.
pub fn policy() -> Policy {
    Policy {
        max_attempts: 3,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(40),
        flapping: Flapping {
            count: 3,
            window: Duration::from_secs(3600),
        },
        resolve_within: Duration::from_secs(30),
    }
}

/// What happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// Alertmanager sends slot's alert as firing: a new occurrence, or a re-send of the firing
    /// one.
    Fire(usize),
    /// Alertmanager sends slot's alert as resolved; with nothing firing, a resolve that arrives
    /// before its firing.
    Resolve(usize),
    /// Slot's alert resolves in Alertmanager, but the notification never arrives (the network,
    /// an inhibition): only reconciliation can tell.
    LostResolve(usize),
    /// A second Alertmanager sends the last resolved occurrence of the slot as firing, late.
    LateFire(usize),
    /// Time passes; the sweeper picks up due jobs and re-checks.
    Tick(u16),
    /// The oldest action in flight returns: `fails` (an error or a timeout), or it ran and
    /// `fixes` the subject or not.
    Complete { fails: bool, fixes: bool },
    /// A subject breaks (after a heal: it fails again while its alert still fires).
    Break(usize),
    /// A subject comes back by itself.
    Mend(usize),
    /// `kill -9`: everything in memory is lost; the store is opened again and resumed.
    Crash,
    /// The store cannot write during the next event (a full disk).
    StoreFault,
    /// `global.dry_run` is switched, with a reload.
    DryRun(bool),
    /// A subject's rule is removed from the configuration, or restored, with a reload.
    Configure(usize, bool),
    /// Reconciliation with Alertmanager's list.
    Reconcile,
    /// Alertmanager restarts and lists nothing until Prometheus sends its alerts again.
    AlertmanagerRestart,
    /// On-call resets a subject.
    Reset(usize),
    /// On-call pauses the remediator, or resumes it.
    Pause(bool),
    /// The engine the actions act through stops answering, or answers again.
    Engine(bool),
}

pub fn event() -> impl Strategy<Value = Event> {
    let slot = 0..SUBJECTS * SLOTS;
    let subject = 0..SUBJECTS;
    prop_oneof![
        6 => slot.clone().prop_map(Event::Fire),
        3 => slot.clone().prop_map(Event::Resolve),
        1 => slot.clone().prop_map(Event::LostResolve),
        1 => slot.prop_map(Event::LateFire),
        6 => prop_oneof![4 => Just(1u16), 4 => Just(5), 4 => Just(15), 4 => Just(45), 1 => Just(400)]
            .prop_map(Event::Tick),
        5 => (any::<bool>(), any::<bool>()).prop_map(|(fails, fixes)| Event::Complete { fails, fixes }),
        2 => subject.clone().prop_map(Event::Break),
        1 => subject.clone().prop_map(Event::Mend),
        1 => Just(Event::Crash),
        1 => Just(Event::StoreFault),
        1 => any::<bool>().prop_map(Event::DryRun),
        1 => (subject.clone(), any::<bool>()).prop_map(|(s, on)| Event::Configure(s, on)),
        1 => Just(Event::Reconcile),
        1 => Just(Event::AlertmanagerRestart),
        1 => subject.prop_map(Event::Reset),
        1 => any::<bool>().prop_map(Event::Pause),
        1 => any::<bool>().prop_map(Event::Engine),
    ]
}

pub fn subject_of(slot: usize) -> usize {
    slot / SLOTS
}

pub fn subject_name(s: usize) -> String {
    format!("container:s{s}")
}

/// An alert occurrence, as Alertmanager identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    pub fingerprint: String,
    pub starts_at: String,
}
