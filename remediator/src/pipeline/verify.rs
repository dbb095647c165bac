//! Verification after an action: the containers it acted on (and the target's `verify`
//! containers) run and are healthy, the action's own check passes (a systemd unit is active, or
//! a oneshot's last run succeeded), and the `verify.url` answers as expected — first within
//! `deadline`, then without a break for `stable_for`.
//!
//! It fails at once, whether or not the outcome was good before, when waiting cannot help: a
//! container that exited, is restarting, was never started or is gone, or that started again
//! since verification began (a crash loop). Its exit code and last log lines are in the
//! message, which the attempt's detail and the page carry. A check that is only not good yet
//! (a health check starting, a URL not answering) is waited for until `deadline`; once good, any
//! break within `stable_for` fails it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Engine;
use crate::action::container::{check_running, Bad};
use crate::action::{Action, Context, Selection};
use crate::config::Verify;

/// One round of checks that did not pass.
enum Round {
    /// Not good yet.
    NotYet(String),
    /// Down: waiting cannot help.
    Down(String),
}

/// The start of an interrupted action and the containers it acts on (see [`Engine::verify`]).
#[derive(Default)]
struct Before {
    at: Option<f64>,
    acted_on: Vec<String>,
}

/// Rounds a re-check may take before it counts as failed.
const RECHECK_ROUNDS: u32 = 3;

impl Engine {
    /// Waits until the outcome is good and stays good, or says why not.
    ///
    /// `interrupted_at` is the start of an action whose process stopped while it ran (a crash,
    /// or a replica whose lease ran out): the Docker Engine may still be carrying it out (a
    /// restart waits out its stop timeout), so a container the action acts on that still runs,
    /// or has stopped, with the instance started before the action is not yet its outcome, and
    /// is waited for until `deadline` (a restart that never reaches the Engine then fails the
    /// verification, and the next attempt runs).
    pub(super) async fn verify(
        &self,
        action: &Action,
        selection: &Selection,
        v: &Verify,
        interrupted_at: Option<f64>,
    ) -> Result<String, String> {
        let containers = containers(action, selection, v);
        let before = Before {
            at: interrupted_at,
            acted_on: action.acted_on(selection),
        };
        let Some(what) = what(action, selection, v, &containers) else {
            return Ok("nothing to verify".into());
        };
        let deadline = Instant::now() + v.deadline;
        let mut first_starts: BTreeMap<String, String> = BTreeMap::new();
        // When the checks first passed, with each token (container start, unit invocation) then.
        let mut good: Option<(Instant, Vec<String>)> = None;
        loop {
            let round = self
                .check_once(
                    action,
                    selection,
                    &containers,
                    v,
                    &before,
                    &mut first_starts,
                )
                .await;
            match (round, &good) {
                (Err(Round::Down(e)), _) => {
                    return Err(format!("verification failed: {e}"));
                }
                (Ok(started), None) => {
                    if v.stable_for.is_zero() {
                        return Ok(format!("verified {what}"));
                    }
                    good = Some((Instant::now(), started));
                }
                (Ok(started), Some((since, first))) => {
                    if &started != first {
                        return Err(format!(
                            "verification failed: {what} restarted {} after it was good",
                            human(since.elapsed())
                        ));
                    }
                    if since.elapsed() >= v.stable_for {
                        return Ok(format!(
                            "verified {what} (good for {})",
                            human(v.stable_for)
                        ));
                    }
                }
                (Err(Round::NotYet(e)), Some((since, _))) => {
                    return Err(format!(
                        "verification failed: {e}, {} after it was good",
                        human(since.elapsed())
                    ))
                }
                (Err(Round::NotYet(e)), None) if Instant::now() + v.interval >= deadline => {
                    return Err(format!(
                        "verification failed within {}: {e}",
                        human(v.deadline)
                    ))
                }
                (Err(Round::NotYet(_)), None) => {}
            }
            tokio::time::sleep(v.interval).await;
        }
    }

    /// The re-check of a heal: is the outcome good now? A few rounds `interval` apart, so one
    /// slow answer does not fail it; a container that is down fails it at once.
    pub(super) async fn check_now(
        &self,
        action: &Action,
        selection: &Selection,
        v: &Verify,
    ) -> Result<String, String> {
        let containers = containers(action, selection, v);
        let Some(what) = what(action, selection, v, &containers) else {
            return Ok("nothing to verify".into());
        };
        let mut starts = BTreeMap::new();
        let mut last = String::new();
        for round in 0..RECHECK_ROUNDS {
            if round > 0 {
                tokio::time::sleep(v.interval).await;
            }
            match self
                .check_once(
                    action,
                    selection,
                    &containers,
                    v,
                    &Before::default(),
                    &mut starts,
                )
                .await
            {
                Ok(_) => return Ok(format!("verified {what}")),
                Err(Round::Down(e)) => return Err(e),
                Err(Round::NotYet(e)) => last = e,
            }
        }
        Err(last)
    }

    /// One round of checks; returns each container's start time and the action's own token.
    /// `first_starts` remembers each container's start when first seen running: a later
    /// different one means it restarted meanwhile.
    async fn check_once(
        &self,
        action: &Action,
        selection: &Selection,
        containers: &[String],
        v: &Verify,
        before: &Before,
        first_starts: &mut BTreeMap<String, String>,
    ) -> Result<Vec<String>, Round> {
        let mut started = Vec::with_capacity(containers.len() + 1);
        let cx = Context {
            docker: &self.docker,
            http: &self.http,
            systemd: &self.systemd,
        };
        started.push(action.check(&cx, selection).await.map_err(Round::NotYet)?);
        if !containers.is_empty() {
            let docker = self.docker.get(&v.engine).await.map_err(Round::NotYet)?;
            for c in containers {
                let interrupted_at = before.at.filter(|_| before.acted_on.contains(c));
                let running = match check_running(&docker, c).await {
                    Ok(r) => r,
                    Err(Bad::NotYet(e)) => return Err(Round::NotYet(e)),
                    Err(Bad::Down(e)) => {
                        // Stopped by the interrupted action and not yet started again: the
                        // Engine may still be between the two halves of a restart.
                        // Asked again: it may have started meanwhile (then the next round
                        // sees the new instance).
                        let before_action = match interrupted_at {
                            Some(at) => crate::action::container::started_at(&docker, c)
                                .await
                                .is_some_and(|(s, running)| {
                                    running
                                        || crate::clock::parse_rfc3339(&s).is_some_and(|s| s < at)
                                }),
                            None => false,
                        };
                        return Err(if before_action {
                            Round::NotYet(format!(
                                "{e}; not started since the action began at {}",
                                crate::clock::rfc3339(before.at.unwrap_or_default())
                            ))
                        } else {
                            Round::Down(e)
                        });
                    }
                };
                if let Some(at) = interrupted_at {
                    if crate::clock::parse_rfc3339(&running.started_at).is_some_and(|s| s < at) {
                        return Err(Round::NotYet(format!(
                            "container {c} still runs its instance started at {}, before the action began at {}",
                            running.started_at,
                            crate::clock::rfc3339(at)
                        )));
                    }
                }
                let first = first_starts
                    .entry(c.clone())
                    .or_insert_with(|| running.started_at.clone());
                if *first != running.started_at {
                    return Err(Round::Down(format!(
                        "container {c} started again during verification (at {}, first seen started at {first}): it keeps exiting",
                        running.started_at
                    )));
                }
                started.push(running.started_at);
            }
        }
        if let Some(u) = &v.url {
            let r = self
                .http
                .get(u.clone())
                .timeout(v.interval.max(Duration::from_secs(2)))
                .send()
                .await
                .map_err(|e| {
                    Round::NotYet(format!(
                        "GET {u}: {}",
                        stackmedic_common::errors::error_chain(&e)
                    ))
                })?;
            let s = r.status().as_u16();
            let ok = if v.expect_status.is_empty() {
                (200..300).contains(&s)
            } else {
                v.expect_status.contains(&s)
            };
            if !ok {
                return Err(Round::NotYet(format!("GET {u} answered {s}")));
            }
            if v.body_matches.is_some() || v.body_not_matches.is_some() {
                let body = r
                    .text()
                    .await
                    .map_err(|e| Round::NotYet(format!("GET {u}: reading the body: {e}")))?;
                if let Some(re) = &v.body_matches {
                    if !re.get().is_match(&body) {
                        return Err(Round::NotYet(format!(
                            "GET {u}: the body does not match {:?}",
                            re.get().as_str()
                        )));
                    }
                }
                if let Some(re) = &v.body_not_matches {
                    if re.get().is_match(&body) {
                        return Err(Round::NotYet(format!(
                            "GET {u}: the body matches {:?}",
                            re.get().as_str()
                        )));
                    }
                }
            }
        }
        Ok(started)
    }
}

/// The containers verification checks: those the action acted on, then the target's.
fn containers(action: &Action, selection: &Selection, v: &Verify) -> Vec<String> {
    let mut containers = action.acted_on(selection);
    for c in &v.containers {
        if !containers.contains(c) {
            containers.push(c.clone());
        }
    }
    containers
}

/// What is verified, in words; `None` when there is nothing to verify.
fn what(
    action: &Action,
    selection: &Selection,
    v: &Verify,
    containers: &[String],
) -> Option<String> {
    let own = action.checks(selection);
    if containers.is_empty() && v.url.is_none() && own.is_none() {
        return None;
    }
    let mut parts: Vec<String> = containers.to_vec();
    parts.extend(own);
    parts.extend(v.url.as_ref().map(|u| u.as_str().to_string()));
    Some(parts.join(", "))
}

/// A duration for a person, to the millisecond at most: `1.5s`, `2m`.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}
