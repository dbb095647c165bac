//! The probe runner: schedules every probe on its own interval, spreads the first runs over the
//! interval, bounds runs in flight, enforces timeouts, and keeps the latest result of each probe
//! for `/metrics`.
//!
//! **Invariant:** a scrape only reads stored results; it never waits on a target.
//! **Invariant:** a probe whose configuration did not change keeps its state across a reload
//! (access-log offsets and counters, warming start, …).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, ProbeSpec};
use crate::metrics::{Family, FamilySet, Samples};
use crate::probe::{Items, Probe, ProbeError, Reason, RunContext, Shared};
use crate::support::{lock, truncate};

static SUCCESS: Family = Family::gauge(
    "stackmedic_probe_success",
    "Whether the probe's last run succeeded (1) or failed (0).",
);
static DURATION: Family = Family::gauge(
    "stackmedic_probe_duration_seconds",
    "How long the probe's last run took, in seconds.",
);
static LAST_RUN: Family = Family::gauge(
    "stackmedic_probe_last_run_timestamp_seconds",
    "Unix time at which the probe's last run finished.",
);
static INTERVAL: Family = Family::gauge(
    "stackmedic_probe_interval_seconds",
    "The probe's configured interval, in seconds.",
);
static RUNS: Family = Family::counter("stackmedic_probe_runs_total", "Runs of the probe.");
static FAILURES: Family = Family::counter(
    "stackmedic_probe_failures_total",
    "Failed runs of the probe, by reason.",
);
static FAILURE_REASON: Family = Family::gauge(
    "stackmedic_probe_failure_reason",
    "1 for the reason of the current failure; absent while the probe succeeds.",
);

/// A probe with its schedule and results.
pub struct Slot {
    spec: ProbeSpec,
    probe: Probe,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    last: Option<LastRun>,
    runs: u64,
    failures: BTreeMap<Reason, u64>,
}

struct LastRun {
    success: bool,
    duration: f64,
    finished_at: f64,
    reason: Option<Reason>,
    /// The failure's message, cut to a length fit for a status page.
    message: Option<String>,
    samples: Samples,
    /// What the run reported of the things it watches, for the status page.
    items: Items,
}

/// What the status page shows of a probe's last run.
#[derive(Debug, Clone)]
pub struct RunView {
    /// Whether it succeeded.
    pub success: bool,
    /// The failure reason.
    pub reason: Option<Reason>,
    /// The failure's message.
    pub message: Option<String>,
    /// How long it took, in seconds.
    pub duration: f64,
    /// When it finished, as Unix time.
    pub finished_at: f64,
    /// The things it watches and how they were, worst first.
    pub items: Items,
}

/// How much later than a probe's timeout the runner gives up on the run itself.
const BACKSTOP_GRACE: Duration = Duration::from_millis(100);

/// Longest failure message kept for the landing page.
const MAX_MESSAGE: usize = 300;

impl Slot {
    /// The probe's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The probe's kind name.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.spec.kind.name()
    }

    /// The probe's interval.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.spec.interval
    }

    /// The outcome of the last run, `None` before the first run.
    #[must_use]
    pub fn last_run(&self) -> Option<RunView> {
        lock(&self.state).last.as_ref().map(|l| RunView {
            success: l.success,
            reason: l.reason,
            message: l.message.clone(),
            duration: l.duration,
            finished_at: l.finished_at,
            items: l.items.clone(),
        })
    }

    async fn run_once(&self, shared: &Arc<Shared>) {
        let cx = RunContext::new(self.spec.timeout, shared.clone());
        let started = Instant::now();
        let mut samples = Samples::default();
        // Probes end their own work by the context's deadline and then report what they learned
        // (a status of 0, partial counts); the runner's limit is a backstop a little later, for
        // work that cannot be bounded from inside.
        let backstop = self.spec.timeout + BACKSTOP_GRACE;
        let result = match tokio::time::timeout(backstop, self.probe.run(&cx, &mut samples)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::new(
                Reason::Timeout,
                format!("no result within {:?}", self.spec.timeout),
            )),
        };
        let duration = started.elapsed().as_secs_f64();
        let mut st = lock(&self.state);
        let was_ok = st.last.as_ref().map(|l| l.success);
        st.runs += 1;
        let reason = match &result {
            Ok(()) => {
                if was_ok == Some(false) {
                    tracing::info!(probe = %self.spec.name, kind = self.kind(), "probe recovered");
                }
                None
            }
            Err(e) => {
                *st.failures.entry(e.reason).or_default() += 1;
                // Transitions are worth a warning; a target that stays down is logged at debug
                // level so that it does not flood the log every interval.
                if was_ok != Some(false) {
                    tracing::warn!(probe = %self.spec.name, kind = self.kind(), reason = e.reason.as_str(), error = %e.message, "probe failed");
                } else {
                    tracing::debug!(probe = %self.spec.name, kind = self.kind(), reason = e.reason.as_str(), error = %e.message, "probe still failing");
                }
                Some(e.reason)
            }
        };
        st.last = Some(LastRun {
            success: result.is_ok(),
            duration,
            finished_at: stackmedic_common::reload::unix_now(),
            reason,
            message: result.err().map(|e| truncate(&e.message, MAX_MESSAGE)),
            samples,
            items: cx.take_items(),
        });
    }

    fn collect(&self, set: &mut FamilySet) {
        let name = self.spec.name.as_str();
        let kind = self.kind();
        let st = lock(&self.state);
        let kl = vec![("kind", kind.to_string())];
        let mut push =
            |family: &'static Family, labels: Vec<(&'static str, String)>, value: f64| {
                set.add(
                    name,
                    &crate::metrics::Sample {
                        family,
                        labels,
                        value,
                    },
                );
            };
        push(&INTERVAL, kl.clone(), self.spec.interval.as_secs_f64());
        push(&RUNS, kl.clone(), st.runs as f64);
        for (reason, n) in &st.failures {
            push(
                &FAILURES,
                vec![
                    ("kind", kind.to_string()),
                    ("reason", reason.as_str().to_string()),
                ],
                *n as f64,
            );
        }
        if let Some(last) = &st.last {
            push(&SUCCESS, kl.clone(), if last.success { 1.0 } else { 0.0 });
            push(&DURATION, kl.clone(), last.duration);
            push(&LAST_RUN, kl.clone(), last.finished_at);
            if let Some(r) = last.reason {
                push(
                    &FAILURE_REASON,
                    vec![
                        ("kind", kind.to_string()),
                        ("reason", r.as_str().to_string()),
                    ],
                    1.0,
                );
            }
            for s in &last.samples.0 {
                set.add(name, s);
            }
        }
    }
}

/// Runs the probes of the current configuration.
pub struct Runner {
    shared: Arc<Shared>,
    current: RwLock<Generation>,
    shutdown: CancellationToken,
}

struct Generation {
    slots: Vec<Arc<Slot>>,
    cancel: CancellationToken,
}

impl Runner {
    /// A runner with no probes; call [`Runner::apply`] to start some.
    #[must_use]
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            current: RwLock::new(Generation {
                slots: Vec::new(),
                cancel: shutdown.child_token(),
            }),
            shutdown,
        }
    }

    /// Builds the probes of `config` and swaps them in; unchanged probes keep their state.
    /// On error nothing changes.
    ///
    /// # Errors
    /// A message naming each probe that could not be built.
    pub fn apply(&self, config: &Config) -> Result<(), String> {
        let old: HashMap<String, Arc<Slot>> = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .slots
            .iter()
            .map(|s| (s.spec.name.clone(), s.clone()))
            .collect();
        let mut slots = Vec::with_capacity(config.probes.len());
        let mut problems = Vec::new();
        for spec in &config.probes {
            if let Some(prev) = old.get(&spec.name).filter(|p| p.spec.unchanged(spec)) {
                slots.push(prev.clone());
                continue;
            }
            match Probe::build(&spec.kind, &self.shared) {
                Ok(probe) => slots.push(Arc::new(Slot {
                    spec: spec.clone(),
                    probe,
                    state: Mutex::new(SlotState::default()),
                })),
                Err(e) => problems.push(format!("probe {:?}: {e}", spec.name)),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let cancel = self.shutdown.child_token();
        let limit = Arc::new(Semaphore::new(config.global.max_concurrency.max(1)));
        let n = slots.len().max(1) as u32;
        for (i, slot) in slots.iter().enumerate() {
            // Spread first runs evenly over the interval, so 1,000 probes with one interval do
            // not all fire in the same instant.
            let offset = slot
                .spec
                .interval
                .mul_f64(f64::from(i as u32) / f64::from(n));
            tokio::spawn(schedule(
                slot.clone(),
                self.shared.clone(),
                limit.clone(),
                cancel.clone(),
                offset,
            ));
        }
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.cancel.cancel();
        *cur = Generation { slots, cancel };
        Ok(())
    }

    /// The current probes.
    #[must_use]
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .slots
            .clone()
    }

    /// The metric families of every probe's latest results.
    #[must_use]
    pub fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut set = FamilySet::default();
        for slot in self.slots() {
            slot.collect(&mut set);
        }
        set.into_families()
    }
}

async fn schedule(
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
    offset: Duration,
) {
    tokio::select! {
        () = cancel.cancelled() => return,
        () = tokio::time::sleep(offset) => {}
    }
    let mut ticker = tokio::time::interval(slot.spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let span = tracing::info_span!("probe", probe = %slot.spec.name, kind = slot.kind());
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = slot.run_once(&shared).instrument(span.clone()) => {}
        }
        drop(permit);
    }
}
