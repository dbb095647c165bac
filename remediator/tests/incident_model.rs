//! A model-based test of the incident model through the real store: random sequences of what
//! happens around a remediator — alerts firing, re-sent, resolved (also before their firing,
//! and fired again late by a second Alertmanager), actions that succeed, fail, time out or hang,
//! verification passing or failing, the subject failing again after a heal, `kill -9` at any
//! point, short store errors, dry run switched on and off, rules removed and restored,
//! Alertmanager restarting empty, reconciliation, and on-call's reset — are driven through
//! [`Store`] the way the pipeline drives it (decide, the subject's lock, start, verifying,
//! finish; the sweeper's pickup of stored work and due re-checks; resume after a restart).
//!
//! A small reference model, written from the documented contract and not from the store's code,
//! follows the same events: which occurrences Alertmanager acknowledged, which resolved, how
//! many attempts each incident started, whether dry run is on. After every step the store must
//! hold these invariants:
//! - every open incident has a next time (a stored attempt, one running, a re-check) or an
//!   active page;
//! - at most one action in flight per subject;
//! - no action starts while dry run is on;
//! - attempts never decrease inside an incident, and equal the actions started for it;
//! - an escalated incident has exactly one active page, and nothing acts on its subject;
//! - a resolved occurrence never acts again (a late firing is a duplicate);
//!
//! and at the end, when time has run on with every alert still firing, every acknowledged
//! occurrence ended in a heal, a page or a resolve (or in a dry run, or a removed rule's
//! cancellation, which are audited).
//!
//! `STACKMEDIC_INCIDENT_MODEL_CASES` sets the number of sequences (1,000 by default;
//! `scripts/incident-model.sh` runs more). proptest shrinks a failing sequence to a short one and
//! prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rusqlite::OptionalExtension;
use stackmedic_remediator::action::{ActionKind, Selection};
use stackmedic_remediator::config::guard::BlastRadius;
use stackmedic_remediator::incident::Decision;
use stackmedic_remediator::paging::PageSpec;
use stackmedic_remediator::store::{
    ActiveAlert, Batch, Conditions, DecideInput, FinishInput, Guard, Job, NewJob, Outcome,
    ResetOutcome, ResolvedAlert, Start, Store,
};
use stackmedic_remediator::{open_store, DATABASE_FILE};

/// Subjects, each with its rule (`r0`, `r1`, `r2`), all on one target `t` (so the blast-radius
/// guard, at 3 of 3 failing, can hold them); `s2` depends on `s0`.
const SUBJECTS: usize = 3;
/// Alert fingerprints per subject.
const SLOTS: usize = 2;
/// The simulated clock starts here (2027-01-15T08:00:00Z).
const T0: f64 = 1_800_000_000.0;
/// `global.resume_max_age` of the simulated configuration.
const MAX_AGE: f64 = 300.0;

#[path = "incident_model/events.rs"]
mod events;
use events::{event, policy, subject_name, subject_of, Event, Occurrence};

/// An open incident as the invariants read it: id, subject, state, attempts, current job, next
/// re-check.
type OpenRow = (i64, String, String, u32, Option<i64>, Option<f64>);

/// An action in flight: the job whose attempt started (or, after a crash, whose attempt is
/// verified, not run again).
#[derive(Debug, Clone)]
struct InFlight {
    job: Job,
    subject: usize,
    verify_only: bool,
}

/// The reference model and the simulated world.
struct Sim {
    dir: tempfile::TempDir,
    store: Store,
    rt: tokio::runtime::Runtime,
    now: f64,
    dry_run: bool,
    configured: [bool; SUBJECTS],
    broken: [bool; SUBJECTS],
    /// Per slot: its current occurrence and whether it fires.
    slots: Vec<Option<(Occurrence, bool)>>,
    /// Occurrences Alertmanager was told were accepted (2xx), with the subject.
    acknowledged: BTreeMap<Occurrence, usize>,
    /// Occurrences that resolved (delivered, or found by reconciliation).
    resolved: BTreeSet<Occurrence>,
    in_flight: Vec<InFlight>,
    /// Jobs decided to act, waiting for their subject's lock (in memory, as in the engine).
    waiting_lock: Vec<(Job, usize)>,
    /// Actions started per incident.
    starts: BTreeMap<i64, u32>,
    /// Highest attempts seen per incident.
    attempts_seen: BTreeMap<i64, u32>,
    fault: bool,
    alertmanager_fresh: bool,
    engine_down: bool,
    log: Vec<String>,
}

impl Sim {
    fn new() -> Sim {
        let base = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("incident-model-")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        };
        let dir = base.expect("a temporary folder");
        let store = open_store(dir.path()).expect("the store opens");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Sim {
            dir,
            store,
            rt,
            now: T0,
            dry_run: false,
            configured: [true; SUBJECTS],
            broken: [false; SUBJECTS],
            slots: vec![None; SUBJECTS * SLOTS],
            acknowledged: BTreeMap::new(),
            resolved: BTreeSet::new(),
            in_flight: Vec::new(),
            waiting_lock: Vec::new(),
            starts: BTreeMap::new(),
            attempts_seen: BTreeMap::new(),
            fault: false,
            alertmanager_fresh: false,
            engine_down: false,
            log: Vec::new(),
        }
    }

    fn cond(&self, subject: usize) -> Conditions {
        Conditions {
            policy: policy(),
            dry_run: self.dry_run,
            dry_run_note: None,
            configured: self.configured[subject],
            resume_max_age: MAX_AGE,
            page: Some(PageSpec::default()),
            guard: Guard {
                blast: BlastRadius::default(),
                subjects: Arc::new((0..SUBJECTS).map(subject_name).collect()),
                dependencies: Arc::new(BTreeMap::from([(
                    subject_name(2),
                    BTreeSet::from([subject_name(0)]),
                )])),
                engine_down: self.engine_down,
                engine_error: None,
            },
        }
    }

    fn new_job(&self, slot: usize, occ: &Occurrence) -> NewJob {
        let s = subject_of(slot);
        NewJob {
            rule: format!("r{s}"),
            action: ActionKind::ContainerRestart,
            target: "t".into(),
            subject: subject_name(s),
            selection: Selection {
                container: Some(format!("s{s}")),
                ..Selection::default()
            },
            fingerprint: occ.fingerprint.clone(),
            starts_at: occ.starts_at.clone(),
            labels: BTreeMap::from([
                ("alertname".to_string(), "Down".to_string()),
                ("container".to_string(), format!("s{s}")),
            ])
            .into(),
            annotations: BTreeMap::new().into(),
            not_before: self.now,
        }
    }

    fn subject_of_job(job: &Job) -> usize {
        job.new.rule[1..].parse().unwrap()
    }

    fn rfc3339(t: f64) -> String {
        let secs = t as i64;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, as facts).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if m <= 2 { y + 1 } else { y };
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    fn run(&mut self, events: &[Event]) -> Result<(), TestCaseError> {
        for (i, e) in events.iter().enumerate() {
            self.log.push(format!("{i}: {e:?}"));
            let fault = std::mem::take(&mut self.fault);
            if fault {
                self.query_only(true);
            }
            self.apply(e)?;
            if fault {
                self.query_only(false);
            }
            self.check()?;
        }
        self.finish()
    }

    /// Makes every write of the store fail (SQLite's own error, as on a full disk), or ends it.
    fn query_only(&self, on: bool) {
        let sql = if on {
            "PRAGMA query_only = ON"
        } else {
            "PRAGMA query_only = OFF"
        };
        let r = self.rt.block_on(self.store.run(move |c| {
            c.batch(sql)?;
            Ok(())
        }));
        // Switching it on is itself a (read-only) operation; switching off must work.
        if !on {
            r.expect("query_only can be switched off");
        }
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match *e {
            Event::Fire(slot) => self.fire(slot),
            Event::Resolve(slot) => self.resolve(slot, true),
            Event::LostResolve(slot) => self.resolve(slot, false),
            Event::LateFire(slot) => self.late_fire(slot),
            Event::Tick(secs) => {
                self.now += f64::from(secs);
                self.sweep()
            }
            Event::Complete { fails, fixes } => self.complete(fails, fixes),
            Event::Break(s) => {
                self.broken[s] = true;
                Ok(())
            }
            Event::Mend(s) => {
                self.broken[s] = false;
                Ok(())
            }
            Event::Crash => {
                self.crash();
                Ok(())
            }
            Event::StoreFault => {
                self.fault = true;
                Ok(())
            }
            Event::DryRun(on) => {
                self.dry_run = on;
                Ok(())
            }
            Event::Configure(s, on) => {
                self.configured[s] = on;
                self.reload();
                Ok(())
            }
            Event::Reconcile => {
                self.reconcile();
                Ok(())
            }
            Event::AlertmanagerRestart => {
                self.alertmanager_fresh = true;
                Ok(())
            }
            Event::Pause(on) => {
                if on {
                    let _ = self
                        .rt
                        .block_on(self.store.pause("model".into(), None, self.now));
                } else {
                    let _ = self.rt.block_on(self.store.resume_actions(self.now));
                }
                Ok(())
            }
            Event::Engine(down) => {
                self.engine_down = down;
                Ok(())
            }
            Event::Reset(s) => {
                let r =
                    self.rt
                        .block_on(self.store.reset(subject_name(s), "model".into(), self.now));
                if let Ok(ResetOutcome::Reset { closed, .. }) = r {
                    self.log
                        .push(format!("   reset closed incident {}", closed.id));
                }
                Ok(())
            }
        }
    }

    fn fire(&mut self, slot: usize) -> Result<(), TestCaseError> {
        self.alertmanager_fresh = false;
        let occ = match &self.slots[slot] {
            Some((o, true)) => o.clone(),
            _ => {
                // A new occurrence starts now (one second apart at least: a unique start).
                self.now += 1.0;
                Occurrence {
                    fingerprint: format!("f{slot}"),
                    starts_at: Self::rfc3339(self.now),
                }
            }
        };
        let batch = Batch {
            jobs: vec![self.new_job(slot, &occ)],
            ..Batch::default()
        };
        match self.rt.block_on(self.store.accept(batch, self.now)) {
            Ok(a) => {
                // Alertmanager now holds it as firing and was told it was accepted.
                self.slots[slot] = Some((occ.clone(), true));
                if self.resolved.contains(&occ) {
                    prop_assert_eq!(a.queued.len(), 0, "a resolved occurrence acted again");
                }
                if !a.queued.is_empty() {
                    self.acknowledged.insert(occ, subject_of(slot));
                }
            }
            // 503: Alertmanager retries later; nothing was acknowledged.
            Err(_) => self.slots[slot] = Some((occ, true)),
        }
        Ok(())
    }

    fn resolve(&mut self, slot: usize, delivered: bool) -> Result<(), TestCaseError> {
        let occ = match &self.slots[slot] {
            Some((o, true)) => o.clone(),
            Some((_, false)) => return Ok(()),
            // Nothing fired yet: the resolve arrives before its firing.
            None => {
                self.now += 1.0;
                Occurrence {
                    fingerprint: format!("f{slot}"),
                    starts_at: Self::rfc3339(self.now),
                }
            }
        };
        // Alertmanager no longer lists it, whether or not the notification arrives.
        self.slots[slot] = Some((occ.clone(), false));
        if !delivered {
            return Ok(());
        }
        let batch = Batch {
            resolved: vec![ResolvedAlert {
                fingerprint: occ.fingerprint.clone(),
                starts_at: occ.starts_at.clone(),
                matched: true,
            }],
            ..Batch::default()
        };
        if self.rt.block_on(self.store.accept(batch, self.now)).is_ok() {
            self.resolved.insert(occ);
        }
        Ok(())
    }

    fn late_fire(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let Some((occ, false)) = self.slots[slot].clone() else {
            return Ok(());
        };
        let batch = Batch {
            jobs: vec![self.new_job(slot, &occ)],
            ..Batch::default()
        };
        if let Ok(a) = self.rt.block_on(self.store.accept(batch, self.now)) {
            // The remediator learned of the resolve (delivered, or by reconciliation): final.
            if self.resolved.contains(&occ) {
                prop_assert_eq!(
                    a.queued.len(),
                    0,
                    "a late firing of a resolved occurrence acted"
                );
            } else if !a.queued.is_empty() {
                self.acknowledged.insert(occ, subject_of(slot));
            }
        }
        Ok(())
    }

    /// What the sweeper does: stored jobs nobody holds (due queued ones are decided and, when
    /// the subject's lock is free, started; running ones are verified) and due re-checks.
    fn sweep(&mut self) -> Result<(), TestCaseError> {
        self.start_waiting()?;
        // Held incidents whose hold ended are released, one at a time.
        let _ = self
            .rt
            .block_on(self.store.release("t".into(), self.cond(0), self.now));
        let held: Vec<i64> = self
            .in_flight
            .iter()
            .map(|f| f.job.id)
            .chain(self.waiting_lock.iter().map(|(j, _)| j.id))
            .collect();
        let Ok(jobs) = self.rt.block_on(self.store.orphans(self.now, held, 100)) else {
            return Ok(());
        };
        for job in jobs {
            let s = Self::subject_of_job(&job);
            if job.started_at.is_some() {
                // Interrupted: verified, not run again.
                if !self.in_flight.iter().any(|f| f.job.id == job.id) {
                    self.in_flight.push(InFlight {
                        job,
                        subject: s,
                        verify_only: true,
                    });
                }
                continue;
            }
            self.decide_and_start(job, s)?;
        }
        if let Ok(checks) = self.rt.block_on(self.store.due_checks(self.now, 64)) {
            for check in checks {
                let s = Self::subject_of_job(&check.job);
                if self.in_flight.iter().any(|f| f.subject == s) {
                    continue; // the subject's lock is held
                }
                let verified = !self.broken[s];
                let _ = self.rt.block_on(self.store.recheck(
                    check,
                    verified,
                    "model".into(),
                    self.cond(s),
                    self.now,
                ));
            }
        }
        Ok(())
    }

    fn decide_and_start(&mut self, job: Job, s: usize) -> Result<(), TestCaseError> {
        let input = DecideInput {
            subject: subject_name(s),
            selection: job.new.selection.clone(),
            job: job.clone(),
            cond: self.cond(s),
        };
        let Ok(d) = self.rt.block_on(self.store.decide(input, self.now)) else {
            return Ok(());
        };
        if !matches!(d, Decision::Act { .. }) {
            return Ok(());
        }
        // The subject's lock: one action in flight per subject. The decided job waits in
        // memory and starts when the lock frees, without being decided again.
        if self.in_flight.iter().any(|f| f.subject == s) {
            self.waiting_lock.push((job, s));
            return Ok(());
        }
        self.start(job, s)
    }

    /// Starts the decided jobs whose subject's lock is free.
    fn start_waiting(&mut self) -> Result<(), TestCaseError> {
        let waiting = std::mem::take(&mut self.waiting_lock);
        for (job, s) in waiting {
            if self.in_flight.iter().any(|f| f.subject == s) {
                self.waiting_lock.push((job, s));
            } else {
                self.start(job, s)?;
            }
        }
        Ok(())
    }

    fn start(&mut self, job: Job, s: usize) -> Result<(), TestCaseError> {
        let mut job = job;
        let started = self
            .rt
            .block_on(self.store.start(job.clone(), self.cond(s), self.now));
        if let Ok(Start::Started { .. }) = started {
            prop_assert!(!self.dry_run, "an action started in dry run");
            let incident: i64 = self
                .db()
                .query_row(
                    "SELECT incident_id FROM jobs WHERE id = ?1",
                    [job.id],
                    |r| r.get(0),
                )
                .unwrap();
            *self.starts.entry(incident).or_default() += 1;
            job.started_at = Some(self.now);
            job.incident = Some(incident);
            self.in_flight.push(InFlight {
                job,
                subject: s,
                verify_only: false,
            });
        }
        Ok(())
    }

    fn complete(&mut self, fails: bool, fixes: bool) -> Result<(), TestCaseError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let f = self.in_flight.remove(0);
        let s = f.subject;
        let outcome = if f.verify_only {
            if self.broken[s] {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            }
        } else if fails {
            Outcome::Failed
        } else {
            let _ = self.rt.block_on(self.store.verifying(f.job.id, self.now));
            if fixes {
                self.broken[s] = false;
            }
            if self.broken[s] {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            }
        };
        let input = FinishInput {
            cond: self.cond(s),
            job: f.job,
            outcome,
            detail: "model".into(),
            duration: 1.0,
        };
        // On a store error the job stays running: the sweeper verifies it again.
        let _ = self.rt.block_on(self.store.finish(input, self.now));
        self.start_waiting()
    }

    fn crash(&mut self) {
        self.in_flight.clear();
        self.waiting_lock.clear();
        let dir = self.dir.path().to_owned();
        // Whatever was committed is on disk; the process and its memory are gone.
        let old = std::mem::replace(
            &mut self.store,
            open_store(&dir).expect("the store opens again"),
        );
        drop(old);
        let _ = self.rt.block_on(self.store.resume());
        self.reload();
    }

    /// A reload (and a start): incidents of removed rules are escalated or closed.
    fn reload(&mut self) {
        let configured: Vec<(String, String)> = (0..SUBJECTS)
            .filter(|s| self.configured[*s])
            .map(|s| (format!("r{s}"), "t".to_string()))
            .collect();
        let _ = self.rt.block_on(self.store.unconfigured(
            configured,
            Some(PageSpec::default()),
            self.now,
        ));
    }

    fn reconcile(&mut self) {
        // A member that has just started lists nothing it can be trusted on.
        if self.alertmanager_fresh {
            return;
        }
        let active: Vec<ActiveAlert> = self
            .slots
            .iter()
            .flatten()
            .filter(|(_, firing)| *firing)
            .map(|(o, _)| ActiveAlert {
                fingerprint: o.fingerprint.clone(),
                starts_at: None,
            })
            .collect();
        let listed: BTreeSet<Occurrence> = self
            .slots
            .iter()
            .flatten()
            .filter(|(_, f)| *f)
            .map(|(o, _)| o.clone())
            .collect();
        if self
            .rt
            .block_on(self.store.reconcile(active, self.now, self.now))
            .is_ok()
        {
            for o in self.acknowledged.keys() {
                if !listed.contains(o) {
                    self.resolved.insert(o.clone());
                }
            }
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join(DATABASE_FILE)).unwrap()
    }

    /// The invariants, read from the database as committed.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT id, subject, state, attempts, current_job, next_check_at FROM incidents WHERE closed_at IS NULL",
            )
            .unwrap();
        let open: Vec<OpenRow> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut subjects = BTreeSet::new();
        for (id, subject, state, attempts, current, next_check) in &open {
            prop_assert!(
                subjects.insert(subject.clone()),
                "two open incidents of {subject}"
            );
            let job_state: Option<String> = current.and_then(|j| {
                db.query_row("SELECT state FROM jobs WHERE id = ?1", [j], |r| r.get(0))
                    .optional()
                    .unwrap()
            });
            let pages: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM escalations WHERE incident_id = ?1 AND state = 'firing'",
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            match state.as_str() {
                "waiting" => prop_assert_eq!(
                    job_state.as_deref(),
                    Some("queued"),
                    "waiting incident {} without a stored next attempt",
                    id
                ),
                "acting" => prop_assert!(
                    matches!(job_state.as_deref(), Some("queued" | "running")),
                    "acting incident {} without its attempt: {:?}",
                    id,
                    job_state
                ),
                "verifying" => prop_assert_eq!(
                    job_state.as_deref(),
                    Some("running"),
                    "verifying incident {} without its running attempt",
                    id
                ),
                "healed" => prop_assert!(
                    next_check.is_some(),
                    "healed incident {} has no re-check time",
                    id
                ),
                "held" => {
                    let hold: Option<String> = db
                        .query_row("SELECT hold FROM incidents WHERE id = ?1", [id], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    if matches!(hold.as_deref(), Some("blast_radius" | "engine")) {
                        let group: i64 = db
                            .query_row(
                                "SELECT COUNT(*) FROM escalations WHERE hold_group = 't' AND state = 'firing'",
                                [],
                                |r| r.get(0),
                            )
                            .unwrap();
                        prop_assert_eq!(
                            group,
                            1,
                            "held incident {} ({:?}) without its target's page",
                            id,
                            hold
                        );
                    } else {
                        prop_assert!(
                            matches!(hold.as_deref(), Some("paused" | "dependency")),
                            "held incident {} for {:?}",
                            id,
                            hold
                        );
                    }
                }
                "escalated" => {
                    prop_assert_eq!(pages, 1, "escalated incident {} pages {} times", id, pages)
                }
                other => prop_assert!(false, "open incident {} in state {}", id, other),
            }
            if state != "escalated" {
                prop_assert_eq!(
                    pages,
                    0,
                    "incident {} ({}) pages while not escalated",
                    id,
                    state
                );
            }
            let seen = self.attempts_seen.entry(*id).or_default();
            prop_assert!(*attempts >= *seen, "attempts of incident {} went down", id);
            *seen = *attempts;
            prop_assert_eq!(
                *attempts,
                self.starts.get(id).copied().unwrap_or(0),
                "incident {} counts attempts other than the actions started",
                id
            );
        }
        let running: Vec<String> = db
            .prepare("SELECT subject FROM jobs WHERE state = 'running'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let distinct: BTreeSet<&String> = running.iter().collect();
        prop_assert_eq!(
            distinct.len(),
            running.len(),
            "two actions in flight on one subject"
        );
        // Nothing acts on an escalated subject.
        for f in &self.in_flight {
            if f.verify_only {
                continue;
            }
            let state: Option<String> = db
                .query_row(
                    "SELECT state FROM incidents WHERE id = ?1",
                    [f.job.incident.unwrap_or(-1)],
                    |r| r.get(0),
                )
                .optional()
                .unwrap();
            prop_assert_ne!(
                state.as_deref(),
                Some("escalated"),
                "an action runs on an escalated incident"
            );
        }
        Ok(())
    }

    /// Time runs on with every alert still firing as it is, every action in flight returns and
    /// the sweeper runs, until nothing is left to do; then every acknowledged occurrence must
    /// have ended in a heal, a page or a resolve.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.fault = false;
        // On-call resumes, the engine answers: holds that can end do.
        self.engine_down = false;
        let _ = self.rt.block_on(self.store.resume_actions(self.now));
        for _ in 0..40 {
            while !self.in_flight.is_empty() || !self.waiting_lock.is_empty() {
                self.start_waiting()?;
                self.complete(false, true)?;
                self.check()?;
            }
            self.now += 400.0;
            self.sweep()?;
            self.check()?;
        }
        let db = self.db();
        let busy: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND not_before <= ?1)",
                [self.now],
                |r| r.get(0),
            )
            .unwrap();
        prop_assert_eq!(busy, 0, "work left undone");
        for occ in self.acknowledged.keys() {
            let ended: Option<(Option<i64>, Option<f64>)> = db
                .query_row(
                    "SELECT incident_id, resolved_at FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2",
                    [&occ.fingerprint, &occ.starts_at],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .unwrap();
            let Some((incident, resolved_at)) = ended else {
                prop_assert!(false, "acknowledged occurrence {:?} is not stored", occ);
                unreachable!()
            };
            if resolved_at.is_some() {
                continue; // resolved
            }
            let results: Vec<String> = db
                .prepare("SELECT result FROM jobs WHERE fingerprint = ?1 AND starts_at = ?2 AND result IS NOT NULL")
                .unwrap()
                .query_map([&occ.fingerprint, &occ.starts_at], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // A dry run, or a job its rule's removal cancelled before it acted: audited ends.
            if incident.is_none() && results.iter().any(|r| r == "dry_run" || r == "cancelled") {
                continue;
            }
            let Some(incident) = incident else {
                prop_assert!(
                    false,
                    "occurrence {:?} firing without an incident: {:?}",
                    occ,
                    results
                );
                unreachable!()
            };
            let (state, healed_at): (String, Option<f64>) = db
                .query_row(
                    "SELECT state, healed_at FROM incidents WHERE id = ?1",
                    [incident],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let paged: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM escalations WHERE incident_id = ?1 AND state = 'firing'",
                    [incident],
                    |r| r.get(0),
                )
                .unwrap();
            let group_paged: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM escalations WHERE hold_group = 't' AND state = 'firing'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            // Held behind a dependency (s2 on s0) whose own incident pages: one page per cause.
            let dependency_paged: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM incidents i JOIN escalations e ON e.incident_id = i.id \
                     WHERE i.subject = 'container:s0' AND i.closed_at IS NULL AND i.state = 'escalated' \
                     AND e.state = 'firing'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let hold: Option<String> = db
                .query_row(
                    "SELECT hold FROM incidents WHERE id = ?1",
                    [incident],
                    |r| r.get(0),
                )
                .unwrap();
            prop_assert!(
                state == "escalated" && paged == 1
                    || state == "held" && group_paged == 1
                    || state == "held"
                        && hold.as_deref() == Some("dependency")
                        && dependency_paged == 1
                    || healed_at.is_some()
                    || state == "resolved",
                "occurrence {:?} of incident {} ended in {} without a heal, a page or a resolve",
                occ,
                incident,
                state
            );
        }
        Ok(())
    }
}

/// What the sequences reached, over all of them: audit results, close reasons and states, so a
/// run shows that it covered the model (printed at the end; `--no-capture` shows it).
static REACHED: std::sync::Mutex<BTreeMap<String, u64>> = std::sync::Mutex::new(BTreeMap::new());

impl Sim {
    fn tally(&self) {
        let db = self.db();
        let mut reached = REACHED.lock().unwrap();
        for sql in [
            "SELECT 'result ' || result, COUNT(*) FROM audit GROUP BY result",
            "SELECT 'closed ' || close_reason, COUNT(*) FROM incidents WHERE close_reason IS NOT NULL GROUP BY close_reason",
            "SELECT 'open ' || state, COUNT(*) FROM incidents WHERE closed_at IS NULL GROUP BY state",
        ] {
            let rows: Vec<(String, i64)> = db
                .prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (k, n) in rows {
                *reached.entry(k).or_default() += n as u64;
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("STACKMEDIC_INCIDENT_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn every_incident_ends_in_a_heal_a_page_or_a_resolve() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(event(), 1..60), |events| {
        let mut sim = Sim::new();
        let r = sim.run(&events);
        if r.is_err() {
            let db = sim.db();
            let audit: Vec<String> = db
                .prepare("SELECT id, incident_id, subject, result, detail FROM audit ORDER BY id")
                .unwrap()
                .query_map([], |r| {
                    Ok(format!(
                        "{} inc={:?} {} {}: {}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            eprintln!("--- audit ---\n{}", audit.join("\n"));
            eprintln!("--- steps ---\n{}", sim.log.join("\n"));
        } else {
            sim.tally();
        }
        r
    });
    let reached = REACHED.lock().unwrap().clone();
    eprintln!("reached over {} sequences: {reached:#?}", cases());
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences must reach every way an incident goes, or they prove little.
    for key in [
        "result succeeded",
        "result failed",
        "result rechecked",
        "result dry_run",
        "result expired",
        "result escalated",
        "result reset",
        "result skipped_escalated",
        "closed alert_resolved",
        "closed reconciled",
        "closed superseded",
        "closed reset",
        "closed unconfigured",
        "open held",
        "result held",
        "result released",
    ] {
        assert!(
            reached.contains_key(key),
            "no sequence reached {key}: {reached:?}"
        );
    }
}
