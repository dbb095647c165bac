//! The pipeline every alert goes through: matching, target and name selection, deduplicated
//! durable acceptance, then per job: delay, per-subject lock, global concurrency limit, safety
//! decision (circuit, cooldown, attempts, dry run), action with timeout, verification, audit,
//! metrics and escalation.
//!
//! **Invariant:** a label never becomes a URL, a command, a path or an unlisted container name;
//! it may only pick a configured target or an allow-listed value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::action::{self, ActionError, ActionKind, Context};
use crate::config::{valid_container_name, Config, Rule, Target, TargetChoice};
use crate::docker::DockerClient;
use crate::matcher;
use crate::metrics::Metrics;
use crate::store::{
    Batch, Decision, Denial, Job, Limits, NewJob, Outcome, PostResult, Selection, Store, StoreError,
};
use crate::webhook::{AlertStatus, Payload};

/// The name of the alert the remediator posts when it gives up; it never acts on it.
pub const ESCALATION_ALERTNAME: &str = "StackmedicRemediationFailed";

/// Seconds since the Unix epoch.
#[must_use]
pub fn now() -> f64 {
    stackmedic_common::reload::unix_now()
}

/// What a webhook led to, returned to Alertmanager as JSON.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Jobs queued.
    pub queued: usize,
    /// Alerts whose occurrence already has a job.
    pub duplicates: usize,
    /// Refusals recorded.
    pub denied: usize,
    /// Firing alerts no rule matched.
    pub unmatched: usize,
    /// Resolved alerts.
    pub resolved: usize,
}

/// The shared state of the running remediator.
pub struct Engine {
    config: RwLock<Arc<Config>>,
    /// Durable state.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    docker: DockerClient,
    /// The process' one HTTP client.
    pub http: reqwest::Client,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
    /// Woken when an escalation is stored.
    pub escalations: Notify,
    shutdown: CancellationToken,
    inflight: Arc<Semaphore>,
    in_memory: Mutex<HashSet<i64>>,
    spilled: AtomicBool,
    sweep: Notify,
}

/// Most jobs held in memory at once. Further accepted jobs stay in the database only and are
/// picked up by the sweeper as room frees, so memory stays flat through a storm.
pub const MAX_JOBS_IN_MEMORY: usize = 1024;

impl Engine {
    /// Creates the engine.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        config: Config,
        store: Store,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stackmedic-remediator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            docker: DockerClient::new(config.docker.host.clone()),
            permits: Semaphore::new(config.global.max_concurrent_actions),
            config: RwLock::new(Arc::new(config)),
            store,
            metrics,
            http,
            locks: Mutex::new(HashMap::new()),
            escalations: Notify::new(),
            shutdown,
            inflight: Arc::new(Semaphore::new(MAX_JOBS_IN_MEMORY)),
            in_memory: Mutex::new(HashSet::new()),
            spilled: AtomicBool::new(false),
            sweep: Notify::new(),
        }))
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map_or_else(|p| p.into_inner().clone(), |c| c.clone())
    }

    /// Swaps in a new configuration; running jobs finish under the one they started with.
    pub fn set_config(&self, config: Config) {
        let mut guard = self.config.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(config);
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
                batch.resolved.push((fingerprint, starts_at));
                continue;
            }
            // The escalation carries the original alert's labels, so a broad rule would match
            // it; acting on it would retry what just failed, and escalate again, in a loop.
            if alert.labels.get("alertname").map(String::as_str) == Some(ESCALATION_ALERTNAME) {
                summary.unmatched += 1;
                continue;
            }
            let mut matched = false;
            for rule in cfg
                .rules
                .iter()
                .filter(|r| matcher::all_match(&r.matchers, &alert.labels))
            {
                matched = true;
                match select(&cfg, rule, &alert.labels) {
                    Ok((target, subject, selection)) => batch.jobs.push(NewJob {
                        rule: rule.name.clone(),
                        action: rule.action.as_str().to_string(),
                        target: target.name.clone(),
                        subject,
                        selection,
                        fingerprint: fingerprint.clone(),
                        starts_at: starts_at.clone(),
                        labels: alert.labels.clone(),
                        annotations: alert.annotations.clone(),
                        not_before: accepted_at + rule.delay.as_secs_f64(),
                        cooldown: target.cooldown.as_secs_f64(),
                    }),
                    Err((target, reason)) => {
                        tracing::warn!(rule = %rule.name, target = %target, fingerprint = %fingerprint, reason = %reason, "denied");
                        self.metrics
                            .actions
                            .with_label_values(&[rule.action.as_str(), "denied"])
                            .inc();
                        batch.denials.push(Denial {
                            rule: rule.name.clone(),
                            action: rule.action.as_str().to_string(),
                            target,
                            alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
                            fingerprint: fingerprint.clone(),
                            reason,
                        });
                    }
                }
            }
            if !matched {
                summary.unmatched += 1;
            }
        }
        summary.denied = batch.denials.len();
        let accepted = self.store.accept(batch, now()).await?;
        summary.queued = accepted.queued.len();
        summary.duplicates = accepted.duplicates;
        let m = &self.metrics.alerts;
        m.with_label_values(&["queued"])
            .inc_by(summary.queued as u64);
        m.with_label_values(&["duplicate"])
            .inc_by(summary.duplicates as u64);
        m.with_label_values(&["denied"])
            .inc_by(summary.denied as u64);
        m.with_label_values(&["unmatched"])
            .inc_by(summary.unmatched as u64);
        m.with_label_values(&["resolved"])
            .inc_by(summary.resolved as u64);
        if accepted.resolved_escalations > 0 {
            tracing::info!(
                escalations = accepted.resolved_escalations,
                "the alert of an active escalation resolved: resolving it in Alertmanager"
            );
            self.escalations.notify_one();
        }
        for job in accepted.cancelled {
            tracing::info!(job = job.id, rule = %job.new.rule, "job cancelled: the alert resolved");
            self.metrics
                .actions
                .with_label_values(&[&job.new.action, "cancelled"])
                .inc();
        }
        for job in accepted.queued {
            self.spawn(job);
        }
        Ok(summary)
    }

    /// Starts a stored job's task, or leaves the job to the sweeper when too many are in
    /// memory.
    pub fn spawn(self: &Arc<Self>, job: Job) {
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            self.spilled.store(true, Ordering::SeqCst);
            return;
        };
        let id = job.id;
        self.in_memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        let engine = self.clone();
        let span = tracing::info_span!("job", job = job.id, rule = %job.new.rule, action = %job.new.action, target = %job.new.subject);
        tokio::spawn(
            async move {
                engine.clone().execute(job).await;
                engine
                    .in_memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                drop(permit);
                if engine.spilled.load(Ordering::SeqCst) {
                    engine.sweep.notify_one();
                }
            }
            .instrument(span),
        );
    }

    /// Loads jobs left in the database by [`Engine::spawn`] as room frees; runs until shutdown.
    pub async fn sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.sweep.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if !self.spilled.swap(false, Ordering::SeqCst) {
                continue;
            }
            let room = self.inflight.available_permits();
            let exclude = self
                .in_memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if room == 0 {
                self.spilled.store(true, Ordering::SeqCst);
                continue;
            }
            match self.store.queued(room + exclude.len()).await {
                Ok(jobs) => {
                    let fresh: Vec<Job> = jobs
                        .into_iter()
                        .filter(|j| !exclude.contains(&j.id))
                        .collect();
                    if fresh.len() >= room {
                        self.spilled.store(true, Ordering::SeqCst);
                    }
                    for job in fresh.into_iter().take(room) {
                        self.spawn(job);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load queued jobs");
                    self.spilled.store(true, Ordering::SeqCst);
                }
            }
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

    async fn execute(self: Arc<Self>, job: Job) {
        let wait = job.new.not_before - now();
        if wait > 0.0 {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
            }
        }
        let cfg = self.config();
        let rule = cfg.rules.iter().find(|r| r.name == job.new.rule).cloned();
        let target = cfg.targets.get(&job.new.target).cloned();
        let (Some(rule), Some(target)) = (rule, target) else {
            self.close(
                job,
                "cancelled",
                "its rule or target is no longer configured",
            )
            .await;
            return;
        };
        let kind = rule.action;
        if kind.as_str() != job.new.action {
            self.close(job, "cancelled", "its rule now names another action")
                .await;
            return;
        }
        let limits = Limits {
            cooldown: target.cooldown.as_secs_f64(),
            max_attempts: target.max_attempts,
            attempt_window: target.attempt_window.as_secs_f64(),
            circuit_open_for: target.circuit_open_for.as_secs_f64(),
            dry_run: cfg.global.dry_run || rule.dry_run,
        };
        if limits.dry_run {
            let ctx = Context {
                docker: &self.docker,
                http: &self.http,
                target: &target,
                rule: &rule,
                selection: &job.new.selection,
            };
            if let Err(ActionError::Denied(reason)) = action::preflight(kind, &ctx).await {
                tracing::warn!(reason = %reason, "dry run: the action would be refused");
                self.close(job, "denied", &format!("dry run: {reason}"))
                    .await;
                return;
            }
        }
        let escalation = escalation_payload(&cfg, &job, &rule, "no attempts left in the window");
        let decision = match self
            .store
            .decide(job.clone(), limits, escalation, now())
            .await
        {
            Ok(d) => d,
            Err(e) => {
                // The job stays queued in the database and is resumed at the next start.
                tracing::error!(error = %e, "cannot record the decision; job left for resume");
                return;
            }
        };
        let result = match &decision {
            Decision::Run => None,
            Decision::DryRun => Some("dry_run"),
            Decision::SkippedCooldown { .. } => Some("skipped_cooldown"),
            Decision::SkippedCircuitOpen { .. } | Decision::Exhausted => {
                Some("skipped_circuit_open")
            }
            Decision::Gone => return,
        };
        if let Some(result) = result {
            tracing::info!(result, decision = ?decision, "not acting");
            self.metrics
                .actions
                .with_label_values(&[kind.as_str(), result])
                .inc();
            if decision == Decision::Exhausted {
                tracing::error!("no attempts left: circuit opened, escalating");
                self.escalations.notify_one();
            }
            return;
        }
        // Decisions are taken by the store thread one after the other, so they need no lock
        // and commit together in a storm; the lock and the concurrency limit only bound the
        // actions themselves.
        let lock = self.lock_for(&job.new.subject);
        let _held = tokio::select! {
            () = self.shutdown.cancelled() => return,
            g = lock.lock() => g,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        if self.shutdown.is_cancelled() {
            return;
        }
        self.metrics
            .job_start_delay
            .observe((now() - job.accepted_at).max(0.0));
        let started = Instant::now();
        let ctx = Context {
            docker: &self.docker,
            http: &self.http,
            target: &target,
            rule: &rule,
            selection: &job.new.selection,
        };
        let (outcome, detail) =
            match tokio::time::timeout(target.timeout, action::run(kind, &ctx)).await {
                Err(_) => (
                    Outcome::Failed,
                    format!("action timed out after {:?}", target.timeout),
                ),
                Ok(Err(ActionError::Denied(e))) => (Outcome::Denied, e),
                Ok(Err(ActionError::Failed(e))) => (Outcome::Failed, e),
                Ok(Ok(done)) => match self.verify(kind, &target, &job.new.selection).await {
                    Ok(v) => (Outcome::Succeeded, format!("{done}; {v}")),
                    Err(e) => (Outcome::Failed, format!("{done}; {e}")),
                },
            };
        let duration = started.elapsed().as_secs_f64();
        let escalation = escalation_payload(&cfg, &job, &rule, &detail);
        let opened = match self
            .store
            .finish(
                job.clone(),
                outcome,
                detail.clone(),
                duration,
                limits,
                escalation,
                now(),
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the outcome");
                false
            }
        };
        self.metrics
            .actions
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .inc();
        if outcome != Outcome::Denied {
            self.metrics
                .action_duration
                .with_label_values(&[kind.as_str()])
                .observe(duration);
        }
        match outcome {
            Outcome::Succeeded => {
                tracing::info!(result = "succeeded", duration, detail = %detail, "action done")
            }
            Outcome::Denied => {
                tracing::warn!(result = "denied", detail = %detail, "action refused")
            }
            Outcome::Failed => {
                tracing::error!(result = "failed", duration, detail = %detail, circuit_opened = opened, "action failed")
            }
        }
        if opened {
            self.escalations.notify_one();
        }
    }

    async fn close(&self, job: Job, result: &'static str, detail: &str) {
        let kind = job.new.action.clone();
        tracing::info!(result, detail, "job closed");
        if let Err(e) = self
            .store
            .close(job, result, detail.to_string(), now())
            .await
        {
            tracing::error!(error = %e, "cannot record the job's end");
        }
        self.metrics
            .actions
            .with_label_values(&[&kind, result])
            .inc();
    }

    /// Waits until the outcome is good or the deadline passes.
    async fn verify(
        &self,
        kind: ActionKind,
        target: &Target,
        selection: &Selection,
    ) -> Result<String, String> {
        let v = &target.verify;
        let mut containers: Vec<String> = Vec::new();
        if kind.acts_on_container() {
            if let Some(c) = selection.container.clone().or_else(|| {
                target
                    .docker
                    .as_ref()
                    .and_then(|d| d.containers.first().cloned())
            }) {
                containers.push(c);
            }
        }
        containers.extend(v.containers.iter().cloned());
        if containers.is_empty() && v.url.is_none() {
            return Ok("nothing to verify".into());
        }
        let deadline = Instant::now() + v.deadline;
        loop {
            match self.check_once(&containers, v).await {
                Ok(()) => {
                    let mut what = containers.join(", ");
                    if let Some(u) = &v.url {
                        if !what.is_empty() {
                            what.push_str(", ");
                        }
                        what.push_str(u.as_str());
                    }
                    return Ok(format!("verified {what}"));
                }
                Err(e) if Instant::now() + v.interval >= deadline => {
                    return Err(format!("verification failed within {:?}: {e}", v.deadline))
                }
                Err(_) => tokio::time::sleep(v.interval).await,
            }
        }
    }

    async fn check_once(
        &self,
        containers: &[String],
        v: &crate::config::Verify,
    ) -> Result<(), String> {
        if !containers.is_empty() {
            let docker = self.docker.get().await?;
            for c in containers {
                action::check_running(&docker, c).await?;
            }
        }
        if let Some(u) = &v.url {
            let r = self
                .http
                .get(u.clone())
                .timeout(v.interval.max(Duration::from_secs(2)))
                .send()
                .await
                .map_err(|e| format!("GET {u}: {e}"))?;
            let s = r.status().as_u16();
            let ok = if v.expect_status.is_empty() {
                (200..300).contains(&s)
            } else {
                v.expect_status.contains(&s)
            };
            if !ok {
                return Err(format!("GET {u} answered {s}"));
            }
        }
        Ok(())
    }
}

/// Chooses the target and allow-listed names for an alert, or says why it is denied (with the
/// target name when known).
fn select(
    cfg: &Config,
    rule: &Rule,
    labels: &BTreeMap<String, String>,
) -> Result<(Arc<Target>, String, Selection), (String, String)> {
    let target_name = match &rule.target {
        TargetChoice::Fixed(t) => t.clone(),
        TargetChoice::Label { label, allowed } => {
            let v = labels.get(label).cloned().unwrap_or_default();
            if !allowed.contains(&v) {
                return Err((
                    String::new(),
                    format!("label {label}={v:?} does not name an allowed target"),
                ));
            }
            v
        }
    };
    let Some(target) = cfg.targets.get(&target_name).cloned() else {
        return Err((
            target_name.clone(),
            format!("unknown target {target_name:?}"),
        ));
    };
    let mut selection = Selection::default();
    let mut subject = target.name.clone();
    if let Some(label) = &rule.container_label {
        let v = labels.get(label).cloned().unwrap_or_default();
        let Some(d) = &target.docker else {
            return Err((target_name, "target has no docker section".into()));
        };
        if !valid_container_name(&v) {
            return Err((
                target_name,
                format!("label {label}={v:?} is not a valid container name"),
            ));
        }
        if !d.containers.is_empty() && !d.containers.contains(&v) {
            return Err((
                target_name,
                format!("label {label}={v:?} names a container outside the allow-list"),
            ));
        }
        subject = format!("{subject}/{v}");
        selection.container = Some(v);
    }
    for (name, p) in &rule.params {
        let v = labels.get(&p.label).cloned().unwrap_or_default();
        if !p.allowed.contains(&v) {
            return Err((
                target_name,
                format!(
                    "label {}={v:?} is not an allowed value of {{{name}}}",
                    p.label
                ),
            ));
        }
        selection.params.insert(name.clone(), v);
    }
    if !selection.params.is_empty() {
        let parts: Vec<String> = selection
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        subject = format!("{subject}?{}", parts.join("&"));
    }
    Ok((target, subject, selection))
}

/// The alert posted to Alertmanager when remediation gives up, or `None` when no Alertmanager
/// is configured.
fn escalation_payload(cfg: &Config, job: &Job, rule: &Rule, tried: &str) -> Option<Value> {
    let esc = cfg.escalation.as_ref()?;
    let mut labels = job.new.labels.clone();
    let original = labels.get("alertname").cloned().unwrap_or_default();
    labels.insert("alertname".into(), ESCALATION_ALERTNAME.into());
    labels.insert("severity".into(), "page".into());
    labels.insert("original_alertname".into(), original.clone());
    labels.insert("remediation_rule".into(), rule.name.clone());
    labels.insert("remediation_target".into(), job.new.target.clone());
    labels.insert("remediation_action".into(), job.new.action.clone());
    for (k, v) in &esc.labels {
        labels.insert(k.clone(), v.clone());
    }
    // Stored once: the labels and startsAt stay the same in every post, so Alertmanager sees
    // one alert; endsAt is set at each post (see `escalator`).
    let start = std::time::SystemTime::now();
    Some(json!([{
        "labels": labels,
        "annotations": {
            "summary": format!("stackmedic-remediator could not fix {original} on {}", job.new.subject),
            "description": format!(
                "Rule {} ran {} on {} and gave up: {tried}. Attempts on this subject are stopped until the circuit closes; a human must look.",
                rule.name, job.new.action, job.new.subject
            ),
            "remediation_tried": tried,
        },
        "startsAt": humantime::format_rfc3339_millis(start).to_string(),
    }]))
}

/// The stored escalation with `endsAt` set for this post.
fn with_ends_at(payload: &Value, ends_at: std::time::SystemTime) -> Value {
    let mut p = payload.clone();
    let ends = Value::String(humantime::format_rfc3339_millis(ends_at).to_string());
    if let Some(alerts) = p.as_array_mut() {
        for a in alerts.iter_mut().filter_map(Value::as_object_mut) {
            a.insert("endsAt".into(), ends.clone());
        }
    }
    p
}

/// Posts stored escalations to Alertmanager, as Prometheus sends its alerts: a new
/// escalation at once, an active one again every `resend_interval` with
/// `endsAt = now + alert_duration` (so it resolves on its own when the remediator stops), and
/// once more with `endsAt = now` when its alert resolved or its circuit closed. A failed post is
/// retried with exponential backoff (at most `resend_interval` apart while the escalation is
/// active). Everything is read from the store, so a restart resumes where it stopped; runs until
/// shutdown.
pub async fn escalator(engine: Arc<Engine>, shutdown: CancellationToken) {
    match engine.store.resume_escalations(now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            escalations = n,
            "active escalations found at start: posting them again"
        ),
        Err(e) => tracing::error!(error = %e, "cannot resume escalations"),
    }
    loop {
        let cfg = engine.config();
        if let Some(esc) = &cfg.escalation {
            match engine.store.due_escalations(now()).await {
                Ok(due) => {
                    for e in due {
                        post_escalation(&engine, esc, e).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read escalations"),
            }
        }
        let next = engine.store.next_escalation_at().await.ok().flatten();
        let wait = next.map_or(5.0, |n| (n - now()).clamp(0.05, 5.0));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = engine.escalations.notified() => {}
            () = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
        }
    }
}

async fn post_escalation(
    engine: &Engine,
    esc: &crate::config::Escalation,
    e: crate::store::PendingEscalation,
) {
    let sent = std::time::SystemTime::now();
    let ends_at = if e.resolving {
        sent
    } else {
        sent + esc.alert_duration
    };
    let result = deliver(&engine.http, esc, &with_ends_at(&e.payload, ends_at)).await;
    let t = now();
    let (metric, post) = match result {
        Ok(()) if e.resolving => {
            tracing::info!(
                escalation = e.id,
                reason = e.resolve_reason.as_deref().unwrap_or(""),
                "escalation resolved in Alertmanager"
            );
            ("resolved", PostResult::Resolved)
        }
        Ok(()) => {
            if e.first {
                tracing::info!(escalation = e.id, "escalation delivered to Alertmanager");
            } else {
                tracing::debug!(escalation = e.id, "escalation posted again");
            }
            (
                if e.first { "delivered" } else { "resent" },
                PostResult::Firing {
                    next_post_at: t + esc.resend_interval.as_secs_f64(),
                },
            )
        }
        Err(error) => {
            let mut backoff = esc
                .min_backoff
                .saturating_mul(1u32 << e.failures.min(16))
                .min(esc.max_backoff);
            if !e.resolving {
                backoff = backoff.min(esc.resend_interval);
            }
            tracing::warn!(escalation = e.id, resolving = e.resolving, error = %error, retry_in = ?backoff, "escalation post failed");
            (
                "failed",
                PostResult::Failed {
                    error,
                    retry_at: t + backoff.as_secs_f64(),
                },
            )
        }
    };
    engine
        .metrics
        .escalations
        .with_label_values(&[metric])
        .inc();
    if let Err(err) = engine
        .store
        .escalation_posted(e.id, e.resolving, post, t)
        .await
    {
        tracing::error!(error = %err, "cannot record an escalation post");
    }
}

async fn deliver(
    http: &reqwest::Client,
    esc: &crate::config::Escalation,
    payload: &Value,
) -> Result<(), String> {
    let mut url = esc.alertmanager_url.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/api/v2/alerts"));
    let mut req = http.post(url).json(payload).timeout(esc.timeout);
    if let Some(t) = &esc.credentials.bearer_token {
        req = req.bearer_auth(t);
    }
    if let Some((u, p)) = &esc.credentials.basic_auth {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        let s = r.status();
        let body = r.text().await.unwrap_or_default();
        Err(format!("Alertmanager answered {s}: {}", body.trim()))
    }
}
