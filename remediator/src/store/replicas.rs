//! Replicas sharing the store: each holds a lease on its work and renews it; one is the leader.
//!
//! A replica is one process (an *instance*: its name, process id and start time). Every job
//! that is not finished is held by one instance (`jobs.owner`): the one that accepted it, or
//! the one that took it over. An instance renews its lease every sixth of its length; when the
//! lease runs out (the process was killed, its host is gone, it lost the database for longer
//! than the lease), the next replica to renew takes over its jobs — a queued one runs there, a
//! started one is verified there, not run again, as after a crash — and audits that it did.
//! Starting an action requires holding its job (see `incidents::start`), so a replica that lost
//! its jobs while cut off can no longer act on them when it comes back.
//!
//! The work that belongs to no job (posting escalations, reconciliation with Alertmanager,
//! re-checks of heals, releasing held incidents, pruning the history) runs on the leader only:
//! the replica holding the `leader` row, renewed with the lease and handed over when it runs
//! out.

use super::audit::{self, About};
use super::{args, exec, row, row_opt, rows, Db, Store, StoreError};
use crate::vocab::Event;

/// What one renewal found.
#[derive(Debug, Clone, Default)]
pub struct Renewal {
    /// Whether this replica is the leader until the lease ends.
    pub leader: bool,
    /// The leader's name, if any replica leads.
    pub leader_name: Option<String>,
    /// Jobs taken over, per replica whose lease ran out: its name and how many.
    pub taken_over: Vec<(String, usize)>,
    /// Replicas whose lease runs, this one included.
    pub live: usize,
    /// Jobs not yet finished that this replica holds.
    pub held: usize,
}

impl Store {
    /// Renews this replica's lease until `now + lease`, takes the leadership when nobody holds
    /// it, and takes over the jobs of replicas whose lease ran out. SQLite, one process's store,
    /// takes over every job of an earlier process at once.
    ///
    /// # Errors
    /// On a database failure (then the lease is not renewed).
    pub async fn renew(&self, now: f64, lease: f64) -> Result<Renewal, StoreError> {
        self.run(move |c| renew(c, now, lease)).await
    }

    /// A clean stop: the lease ends now and the leadership is given up, so another replica
    /// takes over this one's jobs at its next renewal.
    ///
    /// # Errors
    /// On a database failure (the lease then runs out by itself).
    pub async fn leave(&self, now: f64) -> Result<(), StoreError> {
        self.run(move |c| {
            let me = &c.replica().instance;
            exec(
                c,
                "UPDATE replicas SET lease_until = ?2, stopped_at = ?2 WHERE instance = ?1",
                args![me, now],
            )?;
            exec(c, "DELETE FROM leader WHERE instance = ?1", args![me])?;
            Ok(())
        })
        .await
    }
}

const OPEN: &str = "state IN ('queued', 'running')";

fn renew(c: &dyn Db, now: f64, lease: f64) -> Result<Renewal, StoreError> {
    let me = c.replica();
    let until = now + lease;
    exec(
        c,
        "INSERT INTO replicas (instance, name, started_at, renewed_at, lease_until) VALUES (?1, ?2, ?3, ?3, ?4) \
         ON CONFLICT (instance) DO UPDATE SET name = excluded.name, renewed_at = excluded.renewed_at, \
         lease_until = excluded.lease_until, stopped_at = NULL",
        args![me.instance, me.name, now, until],
    )?;
    // The leadership: kept while renewed, taken when its lease ran out.
    let renewed = exec(
        c,
        "UPDATE leader SET instance = ?1, name = ?2, \
         since = CASE WHEN instance = ?1 THEN since ELSE ?3 END, until = ?4 \
         WHERE id = 1 AND (instance = ?1 OR until < ?3)",
        args![me.instance, me.name, now, until],
    )?;
    if renewed == 0 {
        exec(
            c,
            "INSERT INTO leader (id, instance, name, since, until) VALUES (1, ?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO NOTHING",
            args![me.instance, me.name, now, until],
        )?;
    }
    let leader: Option<(String, String)> = row_opt(
        c,
        "SELECT instance, name FROM leader WHERE id = 1 AND until >= ?1",
        args![now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut out = Renewal {
        leader: leader.as_ref().is_some_and(|(i, _)| *i == me.instance),
        leader_name: leader.map(|(_, n)| n),
        ..Renewal::default()
    };
    out.taken_over = take_over(c, now)?;
    // Replicas gone for a day and holding nothing are forgotten.
    exec(
        c,
        &format!(
            "DELETE FROM replicas WHERE lease_until < ?1 AND instance NOT IN \
             (SELECT owner FROM jobs WHERE {OPEN} AND owner IS NOT NULL)"
        ),
        args![now - 86_400.0],
    )?;
    out.live = row(
        c,
        "SELECT COUNT(*) FROM replicas WHERE lease_until >= ?1",
        args![now],
        |r| r.get(0),
    )?;
    out.held = row(
        c,
        &format!("SELECT COUNT(*) FROM jobs WHERE {OPEN} AND owner = ?1"),
        args![me.instance],
        |r| r.get(0),
    )?;
    Ok(out)
}

/// Takes over the unfinished jobs of instances whose lease ran out, or of no instance (stored
/// before replicas, or copied by `storage migrate`); on SQLite, one process's store, those of
/// every earlier process. Returns, per replica taken from, its name and the jobs taken.
pub(super) fn take_over(c: &dyn Db, now: f64) -> Result<Vec<(String, usize)>, StoreError> {
    let me = c.replica();
    let mut out = Vec::new();
    let gone: Vec<Option<String>> = match c.engine() {
        // One process's store: every other instance is an earlier process of this one.
        super::db::Engine::Sqlite => rows(
            c,
            &format!(
                "SELECT DISTINCT owner FROM jobs WHERE {OPEN} AND (owner IS NULL OR owner != ?1)"
            ),
            args![me.instance],
            |r| r.get(0),
        )?,
        super::db::Engine::Postgres => rows(
            c,
            &format!(
                "SELECT DISTINCT owner FROM jobs WHERE {OPEN} AND (owner IS NULL OR owner NOT IN \
                 (SELECT instance FROM replicas WHERE lease_until >= ?1))"
            ),
            args![now],
            |r| r.get(0),
        )?,
    };
    for owner in gone {
        let n = match &owner {
            Some(o) => exec(
                c,
                &format!("UPDATE jobs SET owner = ?1 WHERE {OPEN} AND owner = ?2"),
                args![me.instance, o],
            )?,
            None => exec(
                c,
                &format!("UPDATE jobs SET owner = ?1 WHERE {OPEN} AND owner IS NULL"),
                args![me.instance],
            )?,
        };
        if n == 0 {
            continue;
        }
        if c.engine() == super::db::Engine::Sqlite {
            // A restart of the one process: its log says what it resumed.
            out.push((me.name.clone(), n));
            continue;
        }
        let (name, lease_until): (String, Option<f64>) = match &owner {
            Some(o) => row_opt(
                c,
                "SELECT name, lease_until FROM replicas WHERE instance = ?1",
                args![o],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or_else(|| (o.split('/').next().unwrap_or(o).to_string(), None)),
            None => ("an earlier release".to_string(), None),
        };
        let detail = format!(
            "{n} unfinished job(s) of replica {name}{} taken over by replica {}: a started action is verified, not run again",
            lease_until.map_or_else(String::new, |t| format!(
                " (its lease ran out at {})",
                crate::clock::rfc3339(t)
            )),
            me.name
        );
        audit::write(
            c,
            &audit::Row {
                at: now,
                about: About::default(),
                event: Event::TakenOver,
                detail: &detail,
                duration: None,
            },
        )?;
        out.push((name, n));
    }
    Ok(out)
}
