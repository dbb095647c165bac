//! One job, from its time to its result: the canonical subject (put off, never guessed, while
//! it cannot be made canonical), the incident decision, the subject's lock and the global limit,
//! the attempt (counted when its action starts, and only if dry run is off), the action with its
//! timeout, verification, and what follows by the incident model (healed, the next attempt at
//! its stored time, or escalation). A job whose action had started before a crash is verified,
//! not run again. The re-check of a heal whose alert still fires is here too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::action::{Action, ActionError, Context};
use crate::clock::{now, rfc3339};
use crate::config::{Config, Rule, Target};
use crate::incident::{Decision, Policy};
use crate::paging::PageSpec;
use crate::store::{
    Conditions, DecideInput, DueCheck, FinishInput, Finished, Guard, Job, Outcome, Start,
};
use crate::vocab::{Event, IncidentState};

/// Longest wait between two tries to make a subject canonical.
const POSTPONE_MAX: f64 = 30.0;

/// The configuration a job runs under.
struct Setting {
    rule: Arc<Rule>,
    target: Arc<Target>,
}

impl Setting {
    fn action(&self, job: &Job) -> Option<&Action> {
        self.rule.actions.get(&job.new.target)
    }
}

impl Engine {
    /// What the configuration in force now says about `job`: dry run, whether its rule and
    /// target are still configured, its target's policy, how escalations are labelled. Read
    /// afresh before each step, so a reload that switches dry run on stops the next execution.
    pub(super) fn conditions(&self, job: &Job) -> Conditions {
        let cfg = self.config();
        let setting = find_setting(&cfg, job);
        Conditions {
            policy: setting.map_or_else(Policy::default, |(_, t)| t.policy),
            dry_run: cfg.global.dry_run || setting.is_some_and(|(r, _)| r.dry_run),
            dry_run_note: None,
            configured: setting.is_some(),
            resume_max_age: cfg.global.resume_max_age.as_secs_f64(),
            page: page_spec(&cfg),
            guard: guard(&cfg, &job.new.target),
        }
    }

    pub(super) async fn execute(self: Arc<Self>, job: Job) {
        if job.started_at.is_some() {
            self.verify_interrupted(job).await;
            return;
        }
        let wait = job.new.not_before - now();
        if wait > 0.0 {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
            }
        }
        let setting = self.setting(&job);
        let action = setting.as_ref().and_then(|s| s.action(&job));
        let (Some(setting), Some(action)) = (setting.as_ref(), action) else {
            if job.incident.is_none() {
                // Not an incident's attempt yet: nothing to escalate, the job just ends.
                self.close(
                    job,
                    Event::Cancelled,
                    "its rule or target is no longer configured".into(),
                )
                .await;
            } else {
                // An incident's attempt whose rule is gone: the model escalates it.
                self.decide(job.clone(), job.new.subject.clone(), self.conditions(&job))
                    .await;
            }
            return;
        };
        let cx = Context {
            docker: &self.docker,
            http: &self.http,
            systemd: &self.systemd,
        };
        let mut cond = self.conditions(&job);
        // The canonical subject: a container named by ID, ID prefix or name is one subject. An
        // incident's attempt keeps what its incident was decided on. A selection that cannot be
        // made canonical now waits and is tried again; it never falls back to the label.
        let selection = if job.incident.is_some() {
            // An incident's next attempt acts through the same engine: held while it cannot be
            // reached, rather than failing an attempt on it.
            if action.allow_listed(&job.new.selection) {
                if let Err(e) = self.engine_reachable(&setting.target.verify.engine).await {
                    cond.guard.engine_down = true;
                    cond.guard.engine_error = Some(e);
                }
            }
            job.new.selection.clone()
        } else {
            match action.resolve(&cx, &job.new.selection).await {
                Ok(s) => s,
                Err(ActionError::Denied(reason)) => {
                    let detail = if cond.dry_run {
                        format!("dry run: {reason}")
                    } else {
                        reason
                    };
                    tracing::warn!(result = %Event::Denied, detail = %detail, "the action is refused");
                    self.close(job, Event::Denied, detail).await;
                    return;
                }
                Err(ActionError::Failed(e)) if action.allow_listed(&job.new.selection) => {
                    // The Engine cannot be asked, but the label names an allow-listed container
                    // exactly: that name is its subject, and its action is held for the engine.
                    tracing::warn!(error = %e, "the engine cannot be reached: the action is held");
                    cond.guard.engine_down = true;
                    cond.guard.engine_error = Some(e);
                    job.new.selection.clone()
                }
                Err(ActionError::Failed(e)) => {
                    self.postpone(&job, &e).await;
                    return;
                }
            }
        };
        let subject = action.subject(&setting.target.name, &selection);
        if cond.dry_run && job.incident.is_none() {
            // A dry run says what the action would have done, where its kind can tell.
            cond.dry_run_note = action.dry_run(&cx, &selection).await;
        }
        let mut job = job;
        job.new.selection = selection;
        let Some(Decision::Act { .. }) = self.decide(job.clone(), subject.clone(), cond).await
        else {
            return;
        };
        job.new.subject = subject;
        self.attempt(job, setting, action).await;
    }

    /// Whether `engine` answers a ping within 2 s; why not, in its words.
    pub(super) async fn engine_reachable(
        &self,
        engine: &crate::docker::Engine,
    ) -> Result<(), String> {
        let ping = async {
            let d = self.docker.get(engine).await?;
            d.ping()
                .await
                .map(|_| ())
                .map_err(|e| format!("the Docker Engine does not answer: {e}"))
        };
        tokio::time::timeout(Duration::from_secs(2), ping)
            .await
            .unwrap_or_else(|_| Err("the Docker Engine did not answer within 2s".into()))
    }

    /// Puts off a job whose subject cannot be made canonical now (the Docker Engine cannot be
    /// asked): it is decided later, never on the label alone. The sweeper picks it up again.
    async fn postpone(&self, job: &Job, error: &str) {
        let delay = (2f64.powi(job.postponed.min(8) as i32)).min(POSTPONE_MAX);
        let at = now() + delay;
        let note = format!("waiting to make the subject canonical: {error}");
        tracing::warn!(
            error = %error,
            next_try_at = %rfc3339(at),
            tries = job.postponed + 1,
            "cannot make the subject canonical; the job waits and is tried again"
        );
        if let Err(e) = self.store.postpone(job.id, at, note).await {
            tracing::error!(error = %e, "cannot store the job's next try; the sweeper retries it");
        }
        // Counted once the reason is stored, so the page shows it as soon as the count says so.
        self.metrics.postponed.inc();
    }

    /// Decides on a job and logs the decision; ended jobs are counted.
    async fn decide(&self, job: Job, subject: String, cond: Conditions) -> Option<Decision> {
        let kind = job.new.action;
        let input = DecideInput {
            selection: job.new.selection.clone(),
            job,
            subject: subject.clone(),
            cond,
        };
        let decision = match self.store.decide(input, now()).await {
            Ok(d) => d,
            Err(e) => {
                // The job stays queued in the database; the sweeper decides it again.
                tracing::error!(error = %e, "cannot record the decision; the job is tried again");
                return None;
            }
        };
        let ended = match &decision {
            Decision::Act { .. } => None,
            Decision::DryRun => Some(Event::DryRun),
            Decision::Joined { .. } => Some(Event::Joined),
            Decision::JoinedEscalated { .. } => Some(Event::SkippedEscalated),
            Decision::Escalated { why, .. } => Some(why.job_result()),
            Decision::Held { .. } => Some(Event::Held),
            Decision::Cancelled { .. } => Some(Event::Cancelled),
            Decision::Gone => return Some(decision),
        };
        tracing::info!(decision = %decision, subject = %subject, "decided");
        if let Some(result) = ended {
            self.metrics.job(kind, result);
            if matches!(
                decision,
                Decision::JoinedEscalated { .. }
                    | Decision::Escalated { .. }
                    | Decision::Held { .. }
            ) {
                self.escalations.notify_one();
            }
        }
        Some(decision)
    }

    /// Takes the subject's lock and a global permit, starts the attempt, and records its
    /// outcome.
    async fn attempt(self: &Arc<Self>, mut job: Job, setting: &Setting, action: &Action) {
        let lock = self.lock_for(&job.new.subject);
        let _held = tokio::select! {
            () = self.shutdown.cancelled() => return,
            g = lock.lock() => g,
        };
        let _permit = tokio::select! {
            () = self.shutdown.cancelled() => return,
            p = self.permits.acquire() => match p { Ok(p) => p, Err(_) => return },
        };
        // The attempt counts from here, and only if the gates let it (dry run switched on
        // meanwhile escalates instead): a crash before this line leaves the job queued, to run
        // once after the restart; a crash after it leaves it running, to be verified.
        let (attempt, max_attempts) = match self
            .store
            .start(job.clone(), self.conditions(&job), now())
            .await
        {
            Ok(Start::Started {
                attempt,
                max_attempts,
            }) => (attempt, max_attempts),
            Ok(Start::Escalated(why)) => {
                tracing::error!(subject = %job.new.subject, "not executed: {}; the incident is escalated", why.describe());
                self.metrics.job(job.new.action, why.job_result());
                self.escalations.notify_one();
                return;
            }
            Ok(Start::Held(hold)) => {
                tracing::warn!(subject = %job.new.subject, "not executed: {}", hold.describe());
                self.metrics.job(job.new.action, Event::Held);
                self.escalations.notify_one();
                return;
            }
            Ok(Start::Cancelled) => {
                tracing::info!(result = %Event::Cancelled, "its incident closed before the action started");
                self.metrics.job(job.new.action, Event::Cancelled);
                return;
            }
            Ok(Start::Gone) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the attempt's start; the job is tried again");
                return;
            }
        };
        let started_at = now();
        job.started_at = Some(started_at);
        self.metrics
            .job_start_delay
            .observe((started_at - job.accepted_at).max(0.0));
        tracing::info!(attempt, max_attempts, subject = %job.new.subject, "action started");
        let started = Instant::now();
        let cx = Context {
            docker: &self.docker,
            http: &self.http,
            systemd: &self.systemd,
        };
        let timeout = setting.target.timeout;
        let (outcome, detail) =
            match tokio::time::timeout(timeout, action.run(&cx, &job.new.selection)).await {
                Err(_) => (
                    Outcome::Failed,
                    format!(
                        "the action timed out after {}",
                        humantime::format_duration(timeout)
                    ),
                ),
                Ok(Err(ActionError::Denied(e))) => (Outcome::Refused, e),
                Ok(Err(ActionError::Failed(e))) => (Outcome::Failed, e),
                Ok(Ok(done)) => {
                    if let Err(e) = self.store.verifying(job.id, now()).await {
                        tracing::warn!(error = %e, "cannot record the verification's start");
                    }
                    match self
                        .verify(action, &job.new.selection, &setting.target.verify, None)
                        .await
                    {
                        Ok(v) => (Outcome::Succeeded, format!("{done}; {v}")),
                        Err(e) => (Outcome::Failed, format!("{done}; {e}")),
                    }
                }
            };
        let detail = format!("attempt {attempt} of {max_attempts}: {detail}");
        self.finish(job, outcome, detail, started.elapsed().as_secs_f64())
            .await;
    }

    /// A job whose action had started when the process stopped (or whose outcome could not be
    /// stored): it is verified, not run again, and continues by the model.
    async fn verify_interrupted(self: Arc<Self>, job: Job) {
        let started_at = job.started_at.unwrap_or_else(now);
        let lock = self.lock_for(&job.new.subject);
        let _held = tokio::select! {
            () = self.shutdown.cancelled() => return,
            g = lock.lock() => g,
        };
        tracing::info!(
            subject = %job.new.subject,
            started_at = %rfc3339(started_at),
            "the process stopped during this action: verifying it, not running it again"
        );
        let started = Instant::now();
        let setting = self.setting(&job);
        let (outcome, seen) = match setting
            .as_ref()
            .and_then(|s| s.action(&job).map(|a| (s, a)))
        {
            Some((s, action)) => {
                if let Err(e) = self.store.verifying(job.id, now()).await {
                    tracing::warn!(error = %e, "cannot record the verification's start");
                }
                match self
                    .verify(
                        action,
                        &job.new.selection,
                        &s.target.verify,
                        Some(started_at),
                    )
                    .await
                {
                    Ok(v) => (Outcome::Succeeded, v),
                    Err(e) => (Outcome::Failed, e),
                }
            }
            None => (
                Outcome::Failed,
                "its rule or target is no longer configured, so it cannot be verified".into(),
            ),
        };
        let detail = format!(
            "the process stopped during the action started at {}; not run again: {seen}",
            rfc3339(started_at)
        );
        self.finish(job, outcome, detail, started.elapsed().as_secs_f64())
            .await;
    }

    /// Records an attempt's outcome and acts on what follows.
    async fn finish(self: &Arc<Self>, job: Job, outcome: Outcome, detail: String, duration: f64) {
        let kind = job.new.action;
        let subject = job.new.subject.clone();
        let input = FinishInput {
            cond: self.conditions(&job),
            job,
            outcome,
            detail: detail.clone(),
            duration,
        };
        let finished = match self.store.finish(input, now()).await {
            Ok(f) => f,
            Err(e) => {
                // The job stays running in the database: the sweeper verifies it again.
                tracing::error!(error = %e, "cannot record the outcome; the attempt is verified again");
                return;
            }
        };
        let result = outcome.event();
        self.metrics.job(kind, result);
        if outcome != Outcome::Refused {
            self.metrics
                .action_duration
                .with_label_values(&[kind.as_str()])
                .observe(duration);
        }
        let state = finished.state.map_or("-", IncidentState::as_str);
        match &finished.retry {
            Some(next) => tracing::warn!(
                result = %result,
                state,
                next_attempt_at = %rfc3339(next.new.not_before),
                duration,
                detail = %detail,
                "attempt failed; the next one is scheduled"
            ),
            None if outcome == Outcome::Succeeded => {
                tracing::info!(result = %result, state, duration, detail = %detail, "healed")
            }
            None => {
                tracing::error!(result = %result, state, duration, detail = %detail, "attempt ended")
            }
        }
        self.follow_up(&subject, finished);
    }

    /// Logs an escalation and starts the next attempt, after an attempt or a re-check.
    fn follow_up(self: &Arc<Self>, subject: &str, finished: Finished) {
        if finished.state == Some(IncidentState::Escalated) {
            tracing::error!(subject = %subject, "the incident is escalated: on-call is paged");
            self.escalations.notify_one();
        }
        if let Some(c) = &finished.closed {
            tracing::info!(incident = c.id, reason = %c.reason, "incident closed");
            self.escalations.notify_one();
        }
        if let Some(next) = finished.retry {
            self.spawn(next);
        }
    }

    /// The re-check of a healed incident whose alert still fires `resolve_within` after the
    /// heal: verified again under the subject's lock; a heal that did not hold is a failed
    /// attempt of the same incident.
    pub(super) async fn recheck(self: Arc<Self>, check: DueCheck) {
        let lock = self.lock_for(&check.subject);
        let _held = tokio::select! {
            () = self.shutdown.cancelled() => return,
            g = lock.lock() => g,
        };
        let cond = self.conditions(&check.job);
        let setting = self.setting(&check.job);
        let (verified, detail) = match setting
            .as_ref()
            .and_then(|s| s.action(&check.job).map(|a| (s, a)))
        {
            Some((s, action)) => {
                match self
                    .check_now(action, &check.job.new.selection, &s.target.verify)
                    .await
                {
                    Ok(v) => (true, v),
                    Err(e) => (false, e),
                }
            }
            None => (false, "its rule or target is no longer configured".into()),
        };
        let subject = check.subject.clone();
        let incident = check.incident;
        let result = if verified { "passed" } else { "failed" };
        match self
            .store
            .recheck(check, verified, detail.clone(), cond, now())
            .await
        {
            Ok(finished) => {
                // Counted once recorded (a re-check the store could not record runs again), so
                // the page and the API show it as soon as the count says so.
                self.metrics.rechecks.with_label_values(&[result]).inc();
                tracing::warn!(incident, subject = %subject, result, detail = %detail, state = finished.state.map_or("-", IncidentState::as_str), "re-checked a heal whose alert still fires");
                self.follow_up(&subject, finished);
            }
            Err(e) => {
                tracing::error!(error = %e, incident, "cannot record the re-check; it is tried again");
            }
        }
    }

    /// The rule and target a job runs under, or `None` when its rule or target is gone (or the
    /// rule now names another action, or no longer acts on the target).
    fn setting(&self, job: &Job) -> Option<Setting> {
        let cfg = self.config();
        let (rule, target) = find_setting(&cfg, job)?;
        Some(Setting {
            rule: rule.clone(),
            target: target.clone(),
        })
    }

    /// Ends a job that never became an incident's attempt.
    async fn close(&self, job: Job, event: Event, detail: String) {
        let kind = job.new.action;
        tracing::info!(result = %event, detail = %detail, "job ended");
        if let Err(e) = self.store.close(job, event, detail, now()).await {
            tracing::error!(error = %e, "cannot record the job's end; it is tried again");
            return;
        }
        self.metrics.job(kind, event);
    }
}

/// The rule and target of `job` in `cfg`, when the rule still acts on the target by the same
/// action.
fn find_setting<'a>(cfg: &'a Config, job: &Job) -> Option<(&'a Arc<Rule>, &'a Arc<Target>)> {
    let rule = cfg.rules.iter().find(|r| r.name == job.new.rule)?;
    let target = cfg.targets.get(&job.new.target)?;
    (rule.kind == job.new.action && rule.actions.contains_key(&job.new.target))
        .then_some((rule, target))
}

/// The blast-radius guard's view of `target` under `cfg`: its settings, its subjects, every
/// subject's dependencies.
pub(super) fn guard(cfg: &Config, target: &str) -> Guard {
    Guard {
        blast: cfg
            .targets
            .get(target)
            .map_or(cfg.global.blast_radius, |t| t.guard),
        subjects: cfg.subjects.get(target).cloned().unwrap_or_default(),
        dependencies: cfg.dependencies.clone(),
        engine_down: false,
        engine_error: None,
    }
}

/// How escalations are labelled, or `None` without an `escalation` section.
pub(super) fn page_spec(cfg: &Config) -> Option<PageSpec> {
    cfg.escalation.as_ref().map(|e| PageSpec {
        labels: e.labels.clone(),
    })
}
