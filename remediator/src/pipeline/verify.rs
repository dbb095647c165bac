//! Verification after an action: the containers it acted on (and the target's `verify`
//! containers) run and are healthy, the action's own check passes (a systemd unit is active, or
//! a oneshot's last run succeeded), and the `verify.url` answers as expected — first within
//! `deadline`, then without a break for `stable_for`. A container or unit that stops, turns
//! unhealthy or restarts in that time fails the verification at once.

use std::time::{Duration, Instant};

use super::Engine;
use crate::action::container::check_running;
use crate::action::{Action, Context, Selection};
use crate::config::Verify;

impl Engine {
    /// Waits until the outcome is good and stays good, or says why not.
    pub(super) async fn verify(
        &self,
        action: &Action,
        selection: &Selection,
        v: &Verify,
    ) -> Result<String, String> {
        let mut containers = action.acted_on(selection);
        for c in &v.containers {
            if !containers.contains(c) {
                containers.push(c.clone());
            }
        }
        let own = action.checks(selection);
        if containers.is_empty() && v.url.is_none() && own.is_none() {
            return Ok("nothing to verify".into());
        }
        let mut what = containers.join(", ");
        if let Some(o) = &own {
            if !what.is_empty() {
                what.push_str(", ");
            }
            what.push_str(o);
        }
        if let Some(u) = &v.url {
            if !what.is_empty() {
                what.push_str(", ");
            }
            what.push_str(u.as_str());
        }
        let deadline = Instant::now() + v.deadline;
        // When the checks first passed, with each container's start time then.
        let mut good: Option<(Instant, Vec<String>)> = None;
        loop {
            match (
                self.check_once(action, selection, &containers, v).await,
                &good,
            ) {
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
                (Err(e), Some((since, _))) => {
                    return Err(format!(
                        "verification failed: {e}, {} after it was good",
                        human(since.elapsed())
                    ))
                }
                (Err(e), None) if Instant::now() + v.interval >= deadline => {
                    return Err(format!(
                        "verification failed within {}: {e}",
                        human(v.deadline)
                    ))
                }
                (Err(_), None) => {}
            }
            tokio::time::sleep(v.interval).await;
        }
    }

    /// One round of checks; returns each container's start time and the action's own token.
    async fn check_once(
        &self,
        action: &Action,
        selection: &Selection,
        containers: &[String],
        v: &Verify,
    ) -> Result<Vec<String>, String> {
        let mut started = Vec::with_capacity(containers.len() + 1);
        let cx = Context {
            docker: &self.docker,
            http: &self.http,
            systemd: &self.systemd,
        };
        started.push(action.check(&cx, selection).await?);
        if !containers.is_empty() {
            let docker = self.docker.get().await?;
            for c in containers {
                started.push(check_running(&docker, c).await?.started_at);
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
            if v.body_matches.is_some() || v.body_not_matches.is_some() {
                let body = r
                    .text()
                    .await
                    .map_err(|e| format!("GET {u}: reading the body: {e}"))?;
                if let Some(re) = &v.body_matches {
                    if !re.get().is_match(&body) {
                        return Err(format!(
                            "GET {u}: the body does not match {:?}",
                            re.get().as_str()
                        ));
                    }
                }
                if let Some(re) = &v.body_not_matches {
                    if re.get().is_match(&body) {
                        return Err(format!("GET {u}: the body matches {:?}", re.get().as_str()));
                    }
                }
            }
        }
        Ok(started)
    }
}

/// A duration for a person, to the millisecond at most: `1.5s`, `2m`.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}
