//! The pipeline every alert goes through: matching and selection ([`select`]), durable
//! acceptance, then per job ([`execute`]): its time, the canonical subject, the incident
//! decision, the subject's lock and the global limit, the attempt, verification ([`verify`]),
//! and what follows by the incident model.
//!
//! **Invariant:** a label never becomes a URL, a command, a path or an unlisted container name;
//! it may only pick a configured target or an allow-listed value.

mod execute;
mod select;
mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::now;
use crate::config::{Config, Live};
use crate::docker::DockerClient;
use crate::escalation::{self, Escalator};
use crate::limits;
use crate::matcher;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::store::{
    Batch, Denial, Job, NewJob, ResetOutcome, Resolution, ResolvedAlert, Store, StoreError,
};
use crate::systemd_bus::SystemdBuses;
use crate::unmatched::Unmatched;
use crate::vocab::{AlertDecision, Event};
use crate::webhook::{AlertStatus, Payload};

/// What a webhook led to, returned to Alertmanager as JSON.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Jobs queued.
    pub queued: usize,
    /// Alerts whose occurrence was seen before.
    pub duplicates: usize,
    /// Refusals recorded.
    pub denied: usize,
    /// Firing alerts no rule matched.
    pub unmatched: usize,
    /// Resolved alerts.
    pub resolved: usize,
    /// The remediator's own escalations, never acted on.
    pub ignored: usize,
}

/// The shared state of the running remediator.
pub struct Engine {
    config: Live,
    generation: AtomicU64,
    /// Durable state.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    docker: DockerClient,
    systemd: SystemdBuses,
    /// The process' one HTTP client.
    pub http: reqwest::Client,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
    /// Woken when an escalation is stored or starts resolving.
    pub escalations: Arc<Notify>,
    shutdown: CancellationToken,
    inflight: Arc<Semaphore>,
    in_memory: Mutex<HashSet<i64>>,
    rechecking: Mutex<HashSet<i64>>,
    sweep: Notify,
    /// Set when the next sweep must do the leader's part at once (the pause ended, the store
    /// writes again, leadership came here); otherwise that part runs once per
    /// `SWEEP_INTERVAL`, since a finished job wakes the sweeper only to load stored jobs.
    sweep_all: std::sync::atomic::AtomicBool,
    /// Set when a stored job was left in the database for want of room in memory: a finished
    /// task then wakes the sweeper to load it.
    left_out: std::sync::atomic::AtomicBool,
    /// Firing alerts no rule matched, for the page.
    pub unmatched: Unmatched,
    /// This replica's lease and leadership.
    pub replica: Arc<crate::replica::ReplicaState>,
}

/// Most jobs held in memory at once. Further accepted jobs stay in the database only and are
/// picked up by the sweeper as room frees, so memory stays flat through a storm.
pub const MAX_JOBS_IN_MEMORY: usize = 1024;

/// How often the sweeper looks for work nobody holds: jobs left in the database (a storm beyond
/// [`MAX_JOBS_IN_MEMORY`], a job whose task ended on a store error, one put off) and due
/// re-checks of heals.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Re-checks started per sweep at most.
const CHECKS_PER_SWEEP: usize = 64;

impl Engine {
    /// Creates the engine.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        config: Config,
        store: Store,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stackmedic-remediator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let replica = Arc::new(crate::replica::ReplicaState::new(store.engine()));
        Ok(Arc::new(Self {
            replica,
            docker: DockerClient::default(),
            systemd: SystemdBuses::new(),
            permits: Semaphore::new(config.global.max_concurrent_actions),
            config: Live::new(config),
            generation: AtomicU64::new(1),
            store,
            metrics,
            http,
            locks: Mutex::new(HashMap::new()),
            escalations: Arc::new(Notify::new()),
            shutdown,
            inflight: Arc::new(Semaphore::new(MAX_JOBS_IN_MEMORY)),
            in_memory: Mutex::new(HashSet::new()),
            rechecking: Mutex::new(HashSet::new()),
            sweep: Notify::new(),
            sweep_all: std::sync::atomic::AtomicBool::new(true),
            left_out: std::sync::atomic::AtomicBool::new(false),
            unmatched: Unmatched::default(),
        }))
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Swaps in a new configuration; running jobs finish under the one they started with.
    pub fn set_config(&self, config: Config) {
        self.config.set(config);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// What the escalation task needs.
    #[must_use]
    pub fn escalator(&self) -> Escalator {
        Escalator {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            http: self.http.clone(),
            config: self.config.clone(),
            wake: self.escalations.clone(),
            replica: self.replica.clone(),
        }
    }

    /// What the reconciliation task needs.
    #[must_use]
    pub fn reconciler(&self) -> Reconciler {
        Reconciler {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            http: self.http.clone(),
            config: self.config.clone(),
            escalations: self.escalations.clone(),
            replica: self.replica.clone(),
        }
    }

    /// Decides on every alert of a webhook and stores the result; then starts the new jobs.
    ///
    /// # Errors
    /// When the store could not commit; nothing was accepted then.
    pub async fn accept(self: &Arc<Self>, payload: &Payload) -> Result<Summary, StoreError> {
        let cfg = self.config();
        if payload.truncated_alerts > 0 {
            tracing::warn!(
                truncated = payload.truncated_alerts,
                group = %payload.group_key,
                "Alertmanager truncated this notification (max_alerts); the dropped alerts cannot be acted on"
            );
        }
        let mut batch = Batch::default();
        let mut summary = Summary::default();
        let accepted_at = now();
        for alert in &payload.alerts {
            let (fingerprint, starts_at) = alert.occurrence();
            if alert.status == AlertStatus::Resolved {
                summary.resolved += 1;
                // A resolve of an alert a rule matches is remembered when it arrives before its
                // firing, so the late firing never acts.
                let matched = alert.labels.get("alertname").map(String::as_str)
                    != Some(escalation::ALERTNAME)
                    && cfg
                        .rules
                        .iter()
                        .any(|r| matcher::all_match(&r.matchers, &alert.labels));
                batch.resolved.push(ResolvedAlert {
                    fingerprint,
                    starts_at,
                    matched,
                });
                continue;
            }
            // What is stored, logged and shown of an alert is bounded (`limits`); matching and
            // selection below see it as it came.
            let alertname = limits::value(alert.labels.get("alertname").map_or("", String::as_str));
            // The escalation carries the original alert's labels, so a broad rule would match
            // it; acting on it would retry what just failed, and escalate again, in a loop.
            if alertname == escalation::ALERTNAME {
                summary.ignored += 1;
                continue;
            }
            let mut matched = false;
            for rule in cfg
                .rules
                .iter()
                .filter(|r| matcher::all_match(&r.matchers, &alert.labels))
            {
                matched = true;
                match select::select(&cfg, rule, &alert.labels) {
                    Ok(s) => {
                        let subject = s.action.subject(&s.target.name, &s.selection);
                        // Alerts of one mass outage, or of a subject and its dependency, arrive
                        // over a few seconds: where the guard or the order can hold, the job
                        // waits `settle` so it is decided seeing them together.
                        let guarded =
                            s.target.guard.can_hold(
                                cfg.subjects.get(&s.target.name).map_or(0, |set| set.len()),
                            ) || cfg.dependencies.contains_key(&subject);
                        let settle = if guarded {
                            s.target.guard.settle
                        } else {
                            Duration::ZERO
                        };
                        batch.jobs.push(NewJob {
                            rule: rule.name.clone(),
                            action: rule.kind,
                            subject,
                            target: s.target.name.clone(),
                            selection: s.selection,
                            fingerprint: fingerprint.clone(),
                            starts_at: starts_at.clone(),
                            labels: Arc::new(limits::map(&alert.labels)),
                            annotations: Arc::new(limits::map(&alert.annotations)),
                            not_before: accepted_at + rule.delay.max(settle).as_secs_f64(),
                        });
                    }
                    Err(mut d) => {
                        d.reason = limits::value(&d.reason);
                        tracing::warn!(rule = %rule.name, target = %d.target, fingerprint = %fingerprint, reason = %d.reason, "denied");
                        self.metrics.job(rule.kind, Event::Denied);
                        batch.denials.push(Denial {
                            rule: rule.name.clone(),
                            action: rule.kind,
                            target: d.target,
                            alertname: alertname.clone(),
                            fingerprint: fingerprint.clone(),
                            reason: d.reason,
                        });
                    }
                }
            }
            if !matched {
                summary.unmatched += 1;
                self.metrics.unmatched(&alertname);
                let generation = self.generation.load(Ordering::SeqCst);
                if self.unmatched.record(&alertname, generation, accepted_at) {
                    tracing::info!(
                        alertname = %alertname,
                        fingerprint = %fingerprint,
                        "no rule matches this alert: nothing is done for it (logged once per alert name and configuration)"
                    );
                }
            }
        }
        summary.denied = batch.denials.len();
        let accepted = self.store.accept(batch, now()).await?;
        summary.queued = accepted.queued.len();
        summary.duplicates = accepted.duplicates;
        let m = &self.metrics;
        m.alerts(AlertDecision::Queued, summary.queued);
        m.alerts(AlertDecision::Duplicate, summary.duplicates);
        m.alerts(AlertDecision::Denied, summary.denied);
        m.alerts(AlertDecision::Unmatched, summary.unmatched);
        m.alerts(AlertDecision::Resolved, summary.resolved);
        m.alerts(AlertDecision::Ignored, summary.ignored);
        self.report(&accepted.resolution, "the alert resolved");
        for job in accepted.queued {
            self.spawn(job);
        }
        Ok(summary)
    }

    /// Logs and counts what resolving alerts changed, and wakes the escalator when an
    /// escalation is to be resolved.
    pub(crate) fn report(&self, r: &Resolution, why: &str) {
        for job in &r.cancelled {
            tracing::info!(job = job.id, rule = %job.new.rule, subject = %job.new.subject, result = %Event::Cancelled, "job cancelled: {why}");
            self.metrics.job(job.new.action, Event::Cancelled);
        }
        for c in &r.closed {
            tracing::info!(incident = c.id, subject = %c.subject, reason = %c.reason, "incident closed");
        }
        if r.escalations_resolving > 0 {
            tracing::info!(
                escalations = r.escalations_resolving,
                "escalated incidents closed: resolving their escalations in Alertmanager"
            );
            self.escalations.notify_one();
        }
        if r.escalated > 0 {
            tracing::error!(
                incidents = r.escalated,
                "incidents escalated: {why}; on-call is paged"
            );
            self.escalations.notify_one();
        }
        if r.remembered > 0 {
            tracing::info!(
                alerts = r.remembered,
                "resolves arrived before their firing: remembered, a later firing will not act"
            );
        }
    }

    /// Applies the configuration in force to open incidents: one whose rule or target is gone
    /// is escalated when an attempt of it is pending, and closed when it healed. Run at start
    /// and after each reload.
    pub async fn apply_config(&self) {
        let cfg = self.config();
        let configured: Vec<(String, String)> = cfg
            .rules
            .iter()
            .flat_map(|r| {
                r.actions
                    .keys()
                    .map(|t| (r.name.clone(), t.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        match self
            .store
            .unconfigured(configured, execute::page_spec(&cfg), now())
            .await
        {
            Ok(r) => self.report(
                &r,
                "their rule or target was removed from the configuration",
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot apply the configuration to open incidents")
            }
        }
    }

    /// On-call resets `subject`: an escalated incident closes and its alerts still firing are
    /// handled again; the flapping history is cleared.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reset(
        self: &Arc<Self>,
        subject: &str,
        note: &str,
    ) -> Result<ResetOutcome, StoreError> {
        let out = self
            .store
            .reset(subject.to_string(), note.to_string(), now())
            .await?;
        match &out {
            ResetOutcome::Reset { closed, requeued } => {
                self.metrics.resets.inc();
                tracing::warn!(
                    subject,
                    incident = closed.id,
                    requeued = requeued.len(),
                    note,
                    "reset by on-call: the escalated incident closed and the subject is re-armed"
                );
                self.escalations.notify_one();
                for job in requeued {
                    self.spawn(job.clone());
                }
            }
            ResetOutcome::Forgotten => {
                self.metrics.resets.inc();
                tracing::warn!(
                    subject,
                    note,
                    "reset by on-call: the flapping history is cleared"
                );
            }
            ResetOutcome::Busy(state) => {
                tracing::info!(subject, state = %state, "reset refused: the subject is being remediated");
            }
        }
        Ok(out)
    }

    /// Starts a stored job's task, or leaves the job to the sweeper when too many are in
    /// memory.
    pub fn spawn(self: &Arc<Self>, job: Job) {
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            // Left in the database: the sweeper starts it as room frees.
            self.left_out
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let id = job.id;
        // Already in memory (the sweeper read it while its task was being started): one task
        // per job.
        if !self
            .in_memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return;
        }
        let engine = self.clone();
        let span = tracing::info_span!("job", job = job.id, rule = %job.new.rule, action = %job.new.action, target = %job.new.target);
        tokio::spawn(
            async move {
                engine.clone().execute(job).await;
                engine
                    .in_memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                drop(permit);
                if engine.left_out.load(std::sync::atomic::Ordering::Relaxed) {
                    engine.sweep.notify_one();
                }
            }
            .instrument(span),
        );
    }

    /// Starts the work nobody holds, every [`SWEEP_INTERVAL`] and when room frees, until
    /// shutdown: jobs left in the database (beyond [`MAX_JOBS_IN_MEMORY`], put off, or whose
    /// task ended on a store error — a running one is verified, not run again) and due
    /// re-checks of heals. So no stored work waits for a restart.
    pub async fn sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_full = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.sweep.notified() => {}
                () = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            let all = self
                .sweep_all
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            if all || last_full.elapsed() >= SWEEP_INTERVAL {
                last_full = Instant::now();
                self.sweep_once().await;
            } else {
                self.load_stored_jobs().await;
            }
        }
    }

    /// Releases held incidents whose hold ended, one subject of a target at a time: the guard's
    /// group fell below its threshold, the engine answers again, a dependency healed, the pause
    /// ended. The released attempt starts at once.
    async fn release_held(self: &Arc<Self>) {
        let held = match self.store.held_targets().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot read held incidents");
                return;
            }
        };
        for (target, engine) in held {
            let cfg = self.config();
            let Some(t) = cfg.targets.get(&target) else {
                continue;
            };
            let mut guard = execute::guard(&cfg, &target);
            if engine {
                if let Err(e) = self.engine_reachable(&t.verify.engine).await {
                    guard.engine_down = true;
                    guard.engine_error = Some(e);
                }
            }
            let cond = crate::store::Conditions {
                policy: t.policy,
                dry_run: cfg.global.dry_run,
                dry_run_note: None,
                configured: true,
                resume_max_age: cfg.global.resume_max_age.as_secs_f64(),
                page: execute::page_spec(&cfg),
                guard,
            };
            match self.store.release(target.clone(), cond, now()).await {
                Ok(r) => {
                    if let Some(job) = r.job {
                        tracing::info!(target = %target, subject = %job.new.subject, "the hold ended: one held incident is released");
                        self.spawn(job);
                    }
                    if r.escalated || r.resolving > 0 {
                        self.escalations.notify_one();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, target = %target, "cannot release held incidents")
                }
            }
        }
    }

    /// On-call pauses the remediator: no action starts until [`Engine::resume`].
    ///
    /// # Errors
    /// When the store fails.
    pub async fn pause(
        &self,
        reason: &str,
        until: Option<f64>,
    ) -> Result<crate::store::Pause, StoreError> {
        let p = self.store.pause(reason.to_string(), until, now()).await?;
        tracing::warn!(reason, until = ?until.map(crate::clock::rfc3339), "paused by on-call: no action starts until it is resumed");
        Ok(p)
    }

    /// On-call ends the pause; the sweeper releases held incidents.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn resume(&self) -> Result<Option<crate::store::Pause>, StoreError> {
        let p = self.store.resume_actions(now()).await?;
        tracing::warn!(was_paused = p.is_some(), "resumed by on-call");
        self.wake_sweeper();
        Ok(p)
    }

    /// Wakes the sweeper now (the store writes again).
    pub fn wake_sweeper(&self) {
        self.sweep_all
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.sweep.notify_one();
    }

    /// One round of the sweeper. While the store cannot write it waits: the store's watcher
    /// probes it and wakes the sweeper when it writes again.
    pub async fn sweep_once(self: &Arc<Self>) {
        if self.store.health.failing().is_some() {
            return;
        }
        self.load_stored_jobs().await;
        // What belongs to no job is the leader's.
        if !self.replica.is_leader() {
            return;
        }
        self.leader_sweep().await;
    }

    /// Loads the stored jobs this replica holds that no task works on, as far as there is room.
    async fn load_stored_jobs(self: &Arc<Self>) {
        if self.store.health.failing().is_some() {
            return;
        }
        let room = self.inflight.available_permits();
        if room > 0 {
            // Whatever is left out now is read below; a job left out meanwhile sets it again.
            self.left_out
                .store(false, std::sync::atomic::Ordering::Relaxed);
            let exclude: Vec<i64> = self
                .in_memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect();
            match self.store.orphans(now(), exclude, room).await {
                Ok(jobs) => {
                    if jobs.len() >= room {
                        // The room is full again; more may wait.
                        self.left_out
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    for job in jobs {
                        self.spawn(job);
                    }
                }
                Err(e) => {
                    self.left_out
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot load stored jobs");
                }
            }
        }
    }

    /// The sweeper's part that belongs to no job: held incidents released, heals re-checked.
    async fn leader_sweep(self: &Arc<Self>) {
        self.release_held().await;
        match self.store.due_checks(now(), CHECKS_PER_SWEEP).await {
            Ok(checks) => {
                for check in checks {
                    let fresh = self
                        .rechecking
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(check.incident);
                    if !fresh {
                        continue;
                    }
                    let engine = self.clone();
                    let id = check.incident;
                    let span =
                        tracing::info_span!("recheck", incident = id, subject = %check.subject);
                    tokio::spawn(
                        async move {
                            engine.clone().recheck(check).await;
                            engine
                                .rechecking
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                        }
                        .instrument(span),
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot load due re-checks"),
        }
    }

    fn lock_for(&self, subject: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits for, so the map stays as small as the work.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(subject.to_string()).or_default().clone()
    }
}
