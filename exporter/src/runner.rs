//! The probe runner: schedules every probe on its own interval, spreads the first runs over the
//! interval, bounds runs in flight, enforces timeouts, and keeps the latest result of each probe
//! for `/metrics`, rendered into text at the end of each run, so that a scrape only copies
//! texts, whenever it comes.
//!
//! The probes run on a thread and runtime of their own ([`Runner::new`]). One scheduler task
//! per configuration holds every probe's next due time in a heap and sleeps on one timer until
//! the earliest; it starts a task for the probe's run, so a slow probe delays neither the
//! schedule nor other probes, and a waiting probe holds no task of its own (its memory at ten
//! thousand probes). Probes due within a hundredth of their interval share one wake-up.
//!
//! **Invariant:** a scrape only reads stored results; it never waits on a target.
//! **Invariant:** a probe never runs twice at once; a run still going when the next is due is
//! followed right away by one more run.
//! **Invariant:** a probe whose configuration did not change keeps its state across a reload
//! (access-log offsets and counters, warming start, …).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::board::{Board, Lines};
use crate::config::{Config, ProbeSpec};
use crate::exposition::Exposition;
use crate::metrics::{Family, Rendered, Samples};
use crate::probe::fetch::TlsOptions;
use crate::probe::{certificate, Items, Probe, ProbeError, Reason, RunContext, Shared};
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

/// What a slot keeps of its probe's configuration entry; the kind's settings live in the probe
/// itself (ten thousand probes keep one copy of them, not two).
struct SlotSpec {
    name: String,
    interval: Duration,
    timeout: Duration,
    kind: &'static str,
    /// SHA-256 of the entry as written and of the CA file it names as read: what
    /// [`ProbeSpec::unchanged`] compares, kept as a digest (ten thousand entries kept whole
    /// took a mebibyte).
    identity: [u8; 32],
    /// The `https` endpoint whose certificate facts the runner exports (boxed: most probes
    /// have none, and every probe keeps its slot).
    https: Option<Box<(url::Url, TlsOptions)>>,
}

impl SlotSpec {
    fn of(spec: &ProbeSpec) -> Self {
        Self {
            name: spec.name.clone(),
            interval: spec.interval,
            timeout: spec.timeout,
            kind: spec.kind.name(),
            identity: identity(spec),
            https: spec
                .kind
                .https_endpoint()
                .map(|(url, tls)| Box::new((url.clone(), tls.clone()))),
        }
    }

    /// Whether `newer` is this probe as written and as read (see [`ProbeSpec::unchanged`]).
    fn unchanged(&self, newer: &ProbeSpec) -> bool {
        self.identity == identity(newer)
    }
}

/// See [`SlotSpec::identity`]. The entry is JSON, which holds no NUL byte: the CA file's
/// contents cannot be mistaken for part of it.
fn identity(spec: &ProbeSpec) -> [u8; 32] {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut c = Context::new(&SHA256);
    c.update(spec.raw.as_bytes());
    if let Some(tls) = spec.kind.tls() {
        c.update(b"\0");
        match tls.ca_bundle() {
            Ok(Some(pem)) => c.update(&pem),
            Ok(None) => {}
            // Unreadable: differs from any contents read before.
            Err(e) => c.update(e.as_bytes()),
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// A probe with its schedule and results.
pub struct Slot {
    spec: SlotSpec,
    probe: Probe,
    /// The context of the probe's own log lines. At debug level, because probes log only at
    /// debug level and an enabled span costs every run its bookkeeping.
    span: tracing::Span,
    state: Mutex<SlotState>,
    /// A task is running the probe (or waiting for its turn to).
    busy: std::sync::atomic::AtomicBool,
    /// The probe came due while it was busy: one more run follows right away.
    again: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct SlotState {
    last: Option<LastRun>,
    runs: u64,
    failures: BTreeMap<Reason, u64>,
    /// Where the probe's series are kept for scrapes: the current configuration's board and
    /// the probe's place on it. Its series are rendered there when a run ends (and when the
    /// probe takes its place): a scrape never renders, and the run's samples are not kept.
    place: Option<(Arc<Board>, usize)>,
}

struct LastRun {
    success: bool,
    duration: f64,
    finished_at: f64,
    reason: Option<Reason>,
    /// The failure's message, cut to a length fit for a status page.
    message: Option<String>,
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
    fn new(spec: SlotSpec, probe: Probe) -> Self {
        let span = tracing::debug_span!("probe", probe = %spec.name, kind = spec.kind);
        Self {
            spec,
            probe,
            span,
            state: Mutex::new(SlotState::default()),
            busy: std::sync::atomic::AtomicBool::new(false),
            again: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The probe's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The probe's kind name.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.spec.kind
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
        let mut certificate = Samples::default();
        // The certificate facts of a probe's `https` endpoint are read beside its run, on a
        // handshake of their own, so a slow body does not leave them without time; while the
        // facts kept from an earlier run are fresh and the run meets the same leaf, they are
        // used again instead (no second handshake per run).
        let endpoint = self.spec.https.as_deref().map(|(url, tls)| (url, tls));
        let cached = endpoint.and_then(|(url, tls)| certificate::cached_for_url(&cx, url, tls));
        let run = async {
            let facts = async {
                if let (Some((url, tls)), None) = (endpoint, &cached) {
                    certificate::inspect_url(&cx, url, tls, &mut certificate).await;
                }
            };
            let result = tokio::join!(self.probe.run(&cx, &mut samples), facts).0;
            if let (Some((url, tls)), Some(facts)) = (endpoint, cached) {
                certificate::use_cached(&cx, url, tls, facts, &mut certificate).await;
            }
            result
        };
        // Probes end their own work by the context's deadline and then report what they learned
        // (a status of 0, partial counts); the runner's limit is a backstop a little later, for
        // work that cannot be bounded from inside.
        let backstop = self.spec.timeout + BACKSTOP_GRACE;
        let result = match tokio::time::timeout(backstop, run).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::new(
                Reason::Timeout,
                format!("no result within {:?}", self.spec.timeout),
            )),
        };
        samples.0.append(&mut certificate.0);
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
            items: cx.take_items(),
        });
        // Rendered here, on the probes' thread, once per run: a scrape, which may come right
        // after ten thousand runs, only copies blocks of text.
        publish(&self.spec, &st, &samples);
    }

    /// Moves the probe's series to place `at` on `board` (from its place on the previous
    /// board, or rendered from its state when it has none yet). Under the state's lock, so a
    /// run that ends meanwhile writes either before the move or on the new board.
    fn place(&self, board: &Arc<Board>, at: usize) {
        let mut st = lock(&self.state);
        let moved = st.place.as_ref().map(|(old, was)| old.get(*was));
        st.place = Some((board.clone(), at));
        match moved {
            Some(lines) => board.set(at, &lines),
            None => publish(&self.spec, &st, &Samples::default()),
        }
    }
}

thread_local! {
    /// Memory for a probe's series between rendering and the board, used again by every run
    /// on the thread.
    static SCRATCH: std::cell::RefCell<(Rendered, Lines)> = std::cell::RefCell::default();
}

/// Renders the series of a probe in `state`, with the samples of its last run, onto its place.
fn publish(spec: &SlotSpec, state: &SlotState, samples: &Samples) {
    let Some((board, at)) = &state.place else {
        return;
    };
    SCRATCH.with_borrow_mut(|(rendered, lines)| {
        let r = render_into(std::mem::take(rendered), spec, state, samples);
        lines.fill(&r);
        board.set(*at, lines);
        *rendered = r;
    });
}

/// [`render`] in the memory of `old`.
fn render_into(old: Rendered, spec: &SlotSpec, state: &SlotState, samples: &Samples) -> Rendered {
    let kind = [("kind", spec.kind)];
    let mut b = old.rebuild(&spec.name);
    b.series(&INTERVAL, &kind, spec.interval.as_secs_f64());
    b.series(&RUNS, &kind, state.runs as f64);
    for (reason, n) in &state.failures {
        b.series(
            &FAILURES,
            &[kind[0], ("reason", reason.as_str())],
            *n as f64,
        );
    }
    if let Some(last) = &state.last {
        b.series(&SUCCESS, &kind, if last.success { 1.0 } else { 0.0 });
        b.series(&DURATION, &kind, last.duration);
        b.series(&LAST_RUN, &kind, last.finished_at);
        if let Some(r) = last.reason {
            b.series(&FAILURE_REASON, &[kind[0], ("reason", r.as_str())], 1.0);
        }
        for s in &samples.0 {
            b.sample(s);
        }
    }
    b.finish()
}

/// Runs the probes of the current configuration.
pub struct Runner {
    shared: Arc<Shared>,
    current: RwLock<Generation>,
    /// Cancelled at shutdown or when the runner is dropped; ends the probes' runtime.
    shutdown: CancellationToken,
    /// The runtime the probes run on (see [`Runner::new`]).
    probes: tokio::runtime::Handle,
}

struct Generation {
    slots: Vec<Arc<Slot>>,
    /// The probes' series, in the order of `slots`.
    board: Arc<Board>,
    cancel: CancellationToken,
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Runner {
    /// A runner with no probes; call [`Runner::apply`] to start some.
    ///
    /// The probes run on a runtime of their own, one thread beside the ones serving HTTP:
    /// probes mostly wait, and on one thread their wake-ups need no hand-over between worker
    /// threads (on the shared runtime that cost each run about two context switches and often
    /// a wake-up on the other CPU); and `/metrics` never queues behind a probe's work. Blocking
    /// steps still go to that runtime's blocking pool.
    ///
    /// # Errors
    /// When the runtime or its thread cannot be started.
    pub fn new(shutdown: CancellationToken) -> std::io::Result<Self> {
        let shutdown = shutdown.child_token();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("stackmedic-probe")
            .build()?;
        let probes = runtime.handle().clone();
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("stackmedic-probes".into())
            .spawn(move || {
                runtime.block_on(stop.cancelled());
                // Hashing and other blocking steps stop at their next check of the run's
                // cancellation; do not hold the exit for longer than that.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            shared: Arc::new(Shared::default()),
            current: RwLock::new(Generation {
                slots: Vec::new(),
                board: Arc::new(Board::new(0)),
                cancel: shutdown.child_token(),
            }),
            shutdown,
            probes,
        })
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
                Ok(probe) => slots.push(Arc::new(Slot::new(SlotSpec::of(spec), probe))),
                Err(e) => problems.push(format!("probe {:?}: {e}", spec.name)),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let board = Arc::new(Board::new(slots.len()));
        for (i, slot) in slots.iter().enumerate() {
            slot.place(&board, i);
        }
        let cancel = self.shutdown.child_token();
        let runs = Runs {
            shared: self.shared.clone(),
            limit: Arc::new(Semaphore::new(config.global.max_concurrency.max(1))),
            cancel: cancel.clone(),
        };
        self.probes.spawn(schedule(slots.clone(), runs));
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.cancel.cancel();
        *cur = Generation {
            slots,
            board,
            cancel,
        };
        drop(cur);
        // Verifiers and clients of TLS settings the new configuration no longer uses would
        // otherwise stay for the life of the process, one set per reload that changed them.
        let used: Vec<&TlsOptions> = config.probes.iter().filter_map(|p| p.kind.tls()).collect();
        self.shared.certificates.retain(|t| used.contains(&t));
        self.shared.facts.retain(|t| used.contains(&t));
        self.shared.http.retain(|t| used.contains(&t));
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

    /// Every probe's latest series, for one scrape (the texts are shared, not copied).
    #[must_use]
    pub fn exposition(&self) -> Exposition {
        let board = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .board
            .clone();
        Exposition::of(&board)
    }
}

/// What the runs of one configuration share: the process's resources, the bound on runs in
/// flight, and the cancellation of the configuration.
#[derive(Clone)]
struct Runs {
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
}

impl Runs {
    /// The probe is due: a task runs it, unless one is running it already; then one more run
    /// follows that one right away (at most one is kept).
    fn start(&self, slot: &Arc<Slot>) {
        use std::sync::atomic::Ordering;
        if slot.busy.swap(true, Ordering::AcqRel) {
            slot.again.store(true, Ordering::Release);
            return;
        }
        // A run starts now: one asked for while the probe was busy is this one.
        slot.again.store(false, Ordering::Release);
        tokio::spawn(self.clone().run(slot.clone()));
    }

    /// Runs the probe, and again while it came due meanwhile, until the configuration is
    /// replaced.
    async fn run(self, slot: Arc<Slot>) {
        use std::sync::atomic::Ordering;
        let cancelled = self.cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut cancelled => break,
                p = self.limit.acquire() => match p { Ok(p) => p, Err(_) => break },
            };
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = slot.run_once(&self.shared).instrument(slot.span.clone()) => {}
            }
            drop(permit);
            // Free for the scheduler first, then take a run that came due meanwhile, unless
            // the scheduler has started a task for it already.
            slot.busy.store(false, Ordering::Release);
            if !slot.again.swap(false, Ordering::AcqRel) || slot.busy.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        // Replaced: the next configuration's scheduler runs the probe from now on.
        slot.busy.store(false, Ordering::Release);
    }
}

/// How late a probe may start so that it shares a wake-up with other probes: a hundredth of
/// its interval, at most this. Every wake-up of the probes' thread costs about as much as the
/// request of a fast target, so probes due at nearly the same time start together.
const MAX_SLACK: Duration = Duration::from_millis(100);

/// Starts each probe's runs when it is due, until the configuration is replaced: first runs
/// are spread evenly over each probe's interval, so 1,000 probes with one interval do not all
/// fire at once; after that a probe is due every interval, and starts at most a hundredth of
/// its interval (at most [`MAX_SLACK`]) late. One timer serves all probes.
async fn schedule(probes: Vec<Arc<Slot>>, runs: Runs) {
    let cancel = runs.cancel.clone();
    let slack = |interval: Duration| (interval / 100).min(MAX_SLACK);
    let start = tokio::time::Instant::now();
    let n = probes.len().max(1) as f64;
    // Each entry is (latest start, probe): its due time plus its slack.
    let mut due: BinaryHeap<Reverse<(tokio::time::Instant, usize)>> = probes
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let interval = slot.spec.interval;
            let at = start + interval.mul_f64(i as f64 / n);
            Reverse((at + slack(interval), i))
        })
        .collect();
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let timer = tokio::time::sleep_until(start);
    tokio::pin!(timer);
    while let Some(&Reverse((latest, _))) = due.peek() {
        timer.as_mut().reset(latest);
        tokio::select! {
            biased;
            () = &mut cancelled => return,
            () = &mut timer => {}
        }
        let now = tokio::time::Instant::now();
        // Start every probe whose latest start has come, and with them those already due.
        while let Some(&Reverse((latest, i))) = due.peek() {
            let slot = &probes[i];
            let interval = &slot.spec.interval;
            let at = latest - slack(*interval);
            if latest > now && at > now {
                break;
            }
            due.pop();
            runs.start(slot);
            // A scheduler that woke late does not make up for missed runs.
            let next = if at + *interval > now {
                at + *interval
            } else {
                now + *interval
            };
            due.push(Reverse((next + slack(*interval), i)));
        }
    }
    cancelled.await;
}
