//! One job, from its time to its result: the canonical subject, the incident decision, the
//! subject's lock and the global limit, the attempt (counted when its action starts), the
//! action with its timeout, verification, and what follows by the incident model (healed,
//! the next attempt at its stored time, or escalation). A job whose action had started before
//! a crash is verified, not run again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::action::{Action, ActionError, Context};
use crate::clock::{now, rfc3339};
use crate::config::{Config, Rule, Target};
use crate::escalation::{self, About};
use crate::incident::Decision;
use crate::store::{DecideInput, FinishInput, Job, Outcome, Start};
use crate::vocab::{CloseReason, Event, IncidentState};

/// The configuration a job runs under.
struct Setting {
    cfg: Arc<Config>,
    rule: Arc<Rule>,
    target: Arc<Target>,
}

impl Setting {
    fn action(&self, job: &Job) -> Option<&Action> {
        self.rule.actions.get(&job.new.target)
    }
}

impl Engine {
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
        let Some(setting) = self.setting(&job).await else {
            return;
        };
        let Some(action) = setting.action(&job) else {
            return;
        };
        let cx = Context {
            docker: &self.docker,
            http: &self.http,
            systemd: &self.systemd,
        };
        let dry_run = setting.cfg.global.dry_run || setting.rule.dry_run;
        // The canonical subject: a container named by ID, ID prefix or name is one subject.
        // A scheduled next attempt keeps what its incident was decided on.
        let selection = if job.retry {
            job.new.selection.clone()
        } else {
            match action.resolve(&cx, &job.new.selection).await {
                Ok(s) => s,
                Err(ActionError::Denied(reason)) => {
                    let detail = if dry_run {
                        format!("dry run: {reason}")
                    } else {
                        reason
                    };
                    tracing::warn!(result = %Event::Denied, detail = %detail, "the action is refused");
                    self.close(job, Event::Denied, detail, CloseReason::Refused)
                        .await;
                    return;
                }
                Err(ActionError::Failed(e)) => {
                    tracing::debug!(error = %e, "cannot resolve the selection; it stays as the labels gave it");
                    job.new.selection.clone()
                }
            }
        };
        let subject = action.subject(&setting.target.name, &selection);
        // A dry run says what the action would have done, where its kind can tell.
        let dry_run_note = if dry_run {
            action.dry_run(&cx, &selection).await
        } else {
            None
        };
        let flapping = format!(
            "the subject is flapping (at least {} incidents healed within {})",
            setting.target.policy.flapping.count,
            humantime::format_duration(setting.target.policy.flapping.window)
        );
        let input = DecideInput {
            job: job.clone(),
            subject: subject.clone(),
            selection: selection.clone(),
            policy: setting.target.policy,
            dry_run,
            dry_run_note,
            flapping_page: escalation::alert(
                &setting.cfg,
                &About {
                    job: &job,
                    rule: &setting.rule.name,
                    subject: &subject,
                    why: &flapping,
                },
            ),
        };
        let decision = match self.store.decide(input, now()).await {
            Ok(d) => d,
            Err(e) => {
                // The job stays queued in the database and is decided again at the next start.
                tracing::error!(error = %e, "cannot record the decision; job left for resume");
                return;
            }
        };
        let kind = job.new.action;
        let ended = match &decision {
            Decision::Act { .. } => None,
            Decision::DryRun => Some(Event::DryRun),
            Decision::Joined { .. } => Some(Event::Joined),
            Decision::JoinedEscalated { .. } => Some(Event::SkippedEscalated),
            Decision::Flapping { .. } => Some(Event::SkippedFlapping),
            Decision::Cancelled { .. } => Some(Event::Cancelled),
            Decision::Gone => return,
        };
        tracing::info!(decision = %decision, subject = %subject, "decided");
        if let Some(result) = ended {
            self.metrics.job(kind, result);
            if matches!(
                decision,
                Decision::JoinedEscalated { .. } | Decision::Flapping { .. }
            ) {
                self.escalations.notify_one();
            }
            return;
        }
        let mut job = job;
        job.new.subject = subject;
        job.new.selection = selection;
        self.attempt(job, &setting, action).await;
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
        // The attempt counts from here: a crash before this line leaves the job queued, to run
        // once after the restart; a crash after it leaves it running, to be verified.
        let (attempt, max_attempts) = match self.store.start(job.clone(), now()).await {
            Ok(Start::Started {
                attempt,
                max_attempts,
            }) => (attempt, max_attempts),
            Ok(Start::Cancelled) => {
                tracing::info!(result = %Event::Cancelled, "its incident closed before the action started");
                self.metrics.job(job.new.action, Event::Cancelled);
                return;
            }
            Ok(Start::Gone) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the attempt's start; job left for resume");
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
                        .verify(action, &job.new.selection, &setting.target.verify)
                        .await
                    {
                        Ok(v) => (Outcome::Succeeded, format!("{done}; {v}")),
                        Err(e) => (Outcome::Failed, format!("{done}; {e}")),
                    }
                }
            };
        let detail = format!("attempt {attempt} of {max_attempts}: {detail}");
        self.finish(
            job,
            setting,
            outcome,
            detail,
            started.elapsed().as_secs_f64(),
        )
        .await;
    }

    /// A job whose action had started when the process stopped: it is verified, not run
    /// again, and continues by the model.
    async fn verify_interrupted(self: Arc<Self>, job: Job) {
        let Some(setting) = self.setting(&job).await else {
            return;
        };
        let Some(action) = setting.action(&job) else {
            return;
        };
        let lock = self.lock_for(&job.new.subject);
        let _held = tokio::select! {
            () = self.shutdown.cancelled() => return,
            g = lock.lock() => g,
        };
        let started_at = job.started_at.unwrap_or_else(now);
        tracing::info!(
            subject = %job.new.subject,
            started_at = %rfc3339(started_at),
            "the process stopped during this action: verifying it, not running it again"
        );
        if let Err(e) = self.store.verifying(job.id, now()).await {
            tracing::warn!(error = %e, "cannot record the verification's start");
        }
        let started = Instant::now();
        let (outcome, seen) = match self
            .verify(action, &job.new.selection, &setting.target.verify)
            .await
        {
            Ok(v) => (Outcome::Succeeded, v),
            Err(e) => (Outcome::Failed, e),
        };
        let detail = format!(
            "the process stopped during the action started at {}; not run again: {seen}",
            rfc3339(started_at)
        );
        self.finish(
            job,
            &setting,
            outcome,
            detail,
            started.elapsed().as_secs_f64(),
        )
        .await;
    }

    /// Records an attempt's outcome and acts on what follows.
    async fn finish(
        self: &Arc<Self>,
        job: Job,
        setting: &Setting,
        outcome: Outcome,
        detail: String,
        duration: f64,
    ) {
        let kind = job.new.action;
        let subject = job.new.subject.clone();
        let page = escalation::alert(
            &setting.cfg,
            &About {
                job: &job,
                rule: &setting.rule.name,
                subject: &job.new.subject,
                why: &detail,
            },
        );
        let input = FinishInput {
            job,
            outcome,
            detail: detail.clone(),
            duration,
            policy: setting.target.policy,
            page,
        };
        let finished = match self.store.finish(input, now()).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the outcome");
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
        if finished.state == Some(IncidentState::Escalated) {
            tracing::error!(subject = %subject, "no attempts left: the incident is escalated");
            self.escalations.notify_one();
        }
        if let Some(c) = &finished.closed {
            tracing::info!(incident = c.id, reason = %c.reason, "incident closed");
        }
        if let Some(next) = finished.retry {
            self.spawn(next);
        }
    }

    /// The rule and target a job runs under, or `None` after closing a job whose rule or
    /// target is gone.
    async fn setting(&self, job: &Job) -> Option<Setting> {
        let cfg = self.config();
        let rule = cfg.rules.iter().find(|r| r.name == job.new.rule).cloned();
        let target = cfg.targets.get(&job.new.target).cloned();
        let why = match (&rule, &target) {
            (Some(r), Some(_)) if r.kind != job.new.action => "its rule now names another action",
            (Some(r), Some(_)) if !r.actions.contains_key(&job.new.target) => {
                "its rule no longer acts on its target"
            }
            (Some(_), Some(_)) => "",
            _ => "its rule or target is no longer configured",
        };
        match (rule, target) {
            (Some(rule), Some(target)) if why.is_empty() => Some(Setting { cfg, rule, target }),
            _ => {
                self.close(
                    job.clone(),
                    Event::Cancelled,
                    why.to_string(),
                    CloseReason::Unconfigured,
                )
                .await;
                None
            }
        }
    }

    /// Ends a job without an attempt.
    async fn close(&self, job: Job, event: Event, detail: String, reason: CloseReason) {
        let kind = job.new.action;
        tracing::info!(result = %event, detail = %detail, "job ended");
        match self.store.close(job, event, detail, reason, now()).await {
            Ok(Some(c)) => {
                tracing::info!(incident = c.id, reason = %c.reason, "incident closed");
                self.escalations.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot record the job's end"),
        }
        self.metrics.job(kind, event);
    }
}
