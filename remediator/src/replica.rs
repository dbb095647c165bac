//! This process among the replicas sharing a store: it renews its lease (every sixth of
//! `--replica.lease`), takes over the jobs of replicas whose lease ran out, and knows whether
//! it is the leader (see [`crate::store`]'s `replicas`). On SQLite it is the only replica and
//! always the leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now;
use crate::pipeline::Engine;
use crate::store::db::Engine as StoreEngine;

/// The default `--replica.lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);

/// Renewals per lease: a replica whose lease ran out is noticed within a sixth of the lease.
const RENEWALS_PER_LEASE: u32 = 6;

/// What this replica knows of its lease and the leadership.
#[derive(Debug)]
pub struct ReplicaState {
    lease_ms: AtomicU64,
    /// Until when this replica leads (its lease end as last renewed), seconds since the epoch.
    leader_until: Mutex<f64>,
    /// The leader's name, as the latest renewal found.
    leader_name: Mutex<Option<String>>,
    /// Replicas whose lease runs, as the latest renewal found.
    live: AtomicU64,
    single: bool,
}

impl ReplicaState {
    /// The state of a replica on a store of `engine`.
    #[must_use]
    pub fn new(engine: StoreEngine) -> ReplicaState {
        ReplicaState {
            lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
            leader_until: Mutex::new(0.0),
            leader_name: Mutex::new(None),
            live: AtomicU64::new(1),
            single: engine == StoreEngine::Sqlite,
        }
    }

    /// The lease's length.
    #[must_use]
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed))
    }

    /// Sets the lease's length (`--replica.lease`).
    pub fn set_lease(&self, lease: Duration) {
        self.lease_ms
            .store(lease.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Whether this replica leads now: always on SQLite (one process), while its lease as
    /// leader runs on PostgreSQL.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.single || now() < *self.leader_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader's name, when known.
    #[must_use]
    pub fn leader_name(&self) -> Option<String> {
        self.leader_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replicas whose lease runs, as the latest renewal found.
    #[must_use]
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
}

/// Renews the lease until shutdown.
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    loop {
        renew_once(&engine).await;
        let every = engine.replica.lease() / RENEWALS_PER_LEASE;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// A clean stop: gives up the lease and the leadership, so another replica takes this one's
/// jobs over at its next renewal instead of after the lease.
pub async fn leave(engine: &Arc<Engine>) {
    match engine.store.leave(now()).await {
        Ok(()) => tracing::info!("lease given up: another replica takes over the jobs not yet run"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot give up the lease at stop; it runs out by itself");
        }
    }
}

/// One renewal: the lease, the leadership, and the jobs of replicas whose lease ran out.
pub async fn renew_once(engine: &Arc<Engine>) {
    let state = &engine.replica;
    let lease = state.lease().as_secs_f64();
    // The lease is counted from before the renewal: this replica never believes it leads
    // longer than the store says.
    let t0 = now();
    match engine.store.renew(t0, lease).await {
        Ok(r) => {
            engine
                .metrics
                .lease_renewals
                .with_label_values(&["ok"])
                .inc();
            let was = state.is_leader();
            *state.leader_until.lock().unwrap_or_else(|p| p.into_inner()) =
                if r.leader { t0 + lease } else { 0.0 };
            *state.leader_name.lock().unwrap_or_else(|p| p.into_inner()) = r.leader_name.clone();
            state.live.store(r.live as u64, Ordering::Relaxed);
            engine.metrics.leader.set(i64::from(r.leader));
            engine.metrics.replicas.set(r.live as i64);
            engine.metrics.jobs_held.set(r.held as i64);
            if r.leader && !was && !state.single {
                tracing::info!(replica = %engine.store.replica.name, "this replica is the leader now");
                engine.escalations.notify_one();
            } else if was && !r.leader && !state.single {
                tracing::warn!(replica = %engine.store.replica.name, leader = ?r.leader_name, "this replica is no longer the leader");
            }
            let mut taken = 0;
            for (from, n) in &r.taken_over {
                tracing::warn!(
                    from = %from,
                    jobs = n,
                    "took over the unfinished jobs of a replica whose lease ran out: a started action is verified, not run again"
                );
                taken += n;
            }
            if taken > 0 {
                engine.metrics.takeovers.inc_by(taken as u64);
                engine.wake_sweeper();
            }
        }
        Err(e) => {
            engine
                .metrics
                .lease_renewals
                .with_label_values(&["failed"])
                .inc();
            tracing::warn!(error = %e, "cannot renew this replica's lease; it runs out if the store stays unreachable, and another replica takes its jobs over");
        }
    }
}
