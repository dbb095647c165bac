//! A small client of systemd's D-Bus API (`org.freedesktop.systemd1`): the few methods,
//! properties and the one signal the `systemd_*` actions use, and one connection per bus address,
//! made on first use and made again after a failure.
//!
//! No `systemctl` child is ever run: the remediator speaks to the service manager over the bus,
//! which also gives it the job's result (the `JobRemoved` signal) instead of a parsed exit code.

use std::collections::HashMap;

use futures_util::StreamExt;
use tokio::sync::Mutex;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

/// The system bus when a target names no address (as `sd_bus_open_system` finds it).
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// systemd's answer when a connection subscribes a second time.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    /// Loads a unit (or finds it loaded) and returns its object path.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a start job; returns the job's object path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a restart job (a start when the unit is not running).
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Asks systemd to send its signals to this connection.
    fn subscribe(&self) -> zbus::Result<()>;

    /// A job finished: its id, path, unit and result (`done`, `canceled`, `timeout`, `failed`,
    /// `dependency`, `skipped`).
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Unit {
    /// The unit's primary name (an alias resolves to it).
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;

    /// `loaded`, `not-found`, `bad-setting`, `error`, `masked`.
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;

    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;

    /// The unit-type specific state (`running`, `exited`, `dead`, …).
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;

    /// Changes with every start of the unit.
    #[zbus(property, name = "InvocationID")]
    fn invocation_id(&self) -> zbus::Result<Vec<u8>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Service {
    /// `simple`, `exec`, `forking`, `oneshot`, `dbus`, `notify`, `idle`.
    #[zbus(property, name = "Type")]
    fn service_type(&self) -> zbus::Result<String>;

    /// Whether a oneshot stays active after its process exited.
    #[zbus(property)]
    fn remain_after_exit(&self) -> zbus::Result<bool>;

    /// The result of the last run: `success`, `exit-code`, `signal`, `timeout`, …
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
}

/// What a unit's state is, as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// The primary name.
    pub id: String,
    /// `LoadState`.
    pub load_state: String,
    /// `ActiveState`.
    pub active_state: String,
    /// `SubState`.
    pub sub_state: String,
    /// The invocation ID in hex (empty when the unit never ran).
    pub invocation: String,
    /// For a service: its `Type` and `Result`, and whether it stays active after exiting.
    pub service: Option<ServiceState>,
}

/// The service-specific part of [`UnitState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// `Type`.
    pub service_type: String,
    /// `RemainAfterExit`.
    pub remain_after_exit: bool,
    /// `Result`.
    pub result: String,
}

impl UnitState {
    /// Whether the unit runs to completion and is then inactive (a oneshot service without
    /// `RemainAfterExit`, such as a backup): its success is its `Result`, not `active`.
    #[must_use]
    pub fn runs_to_completion(&self) -> bool {
        self.service
            .as_ref()
            .is_some_and(|s| s.service_type == "oneshot" && !s.remain_after_exit)
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// The job's numeric id.
    pub id: u32,
    /// `done` when it succeeded.
    pub result: String,
}

/// Which job to enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `StartUnit`.
    Start,
    /// `RestartUnit`.
    Restart,
}

/// One connection per bus address, shared by the actions and their verification.
#[derive(Default)]
pub struct SystemdBuses {
    connections: Mutex<HashMap<String, Connection>>,
}

impl SystemdBuses {
    /// An empty set: connections are made on first use.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection to `address`, made now if there is none.
    async fn connection(&self, address: &str) -> Result<Connection, String> {
        let mut guard = self.connections.lock().await;
        if let Some(c) = guard.get(address) {
            return Ok(c.clone());
        }
        let c = zbus::connection::Builder::address(address)
            .map_err(|e| format!("bus address {address}: {e}"))?
            .build()
            .await
            .map_err(|e| format!("cannot connect to the bus at {address}: {e}"))?;
        let manager = ManagerProxy::new(&c)
            .await
            .map_err(|e| format!("bus {address}: {e}"))?;
        // Without a subscription systemd may not send JobRemoved to this connection.
        match manager.subscribe().await {
            Ok(()) => {}
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == ALREADY_SUBSCRIBED => {}
            Err(e) => return Err(format!("bus {address}: subscribe to systemd: {e}")),
        }
        guard.insert(address.to_string(), c.clone());
        Ok(c)
    }

    /// Forgets the connection to `address` after an error, so the next use connects again
    /// (the bus or systemd may have restarted).
    async fn forget(&self, address: &str) {
        self.connections.lock().await.remove(address);
    }

    /// Runs `f` on the connection to `address`; a failure drops the connection.
    async fn with<T, F, Fut>(&self, address: &str, f: F) -> Result<T, String>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let c = self.connection(address).await?;
        let out = f(c).await;
        if out.is_err() {
            self.forget(address).await;
        }
        out
    }

    /// The state of `unit` (loading it if systemd has not).
    ///
    /// # Errors
    /// When the bus or systemd cannot be reached or answers with an error.
    pub async fn unit_state(&self, address: &str, unit: &str) -> Result<UnitState, String> {
        self.with(address, |c| async move { unit_state(&c, unit).await })
            .await
    }

    /// Enqueues a start or restart job of `unit` in mode `replace` and waits until it is
    /// removed; returns how it ended. The signal stream exists before the job is enqueued, so a
    /// job that ends at once is not missed.
    ///
    /// # Errors
    /// When the bus, systemd or the call fails, or the signal stream ends.
    pub async fn run_job(
        &self,
        address: &str,
        unit: &str,
        kind: JobKind,
    ) -> Result<JobEnd, String> {
        self.with(address, |c| async move {
            let manager = ManagerProxy::new(&c).await.map_err(|e| e.to_string())?;
            let mut removed = manager
                .receive_job_removed()
                .await
                .map_err(|e| format!("cannot listen for JobRemoved: {e}"))?;
            let job = match kind {
                JobKind::Start => manager.start_unit(unit, "replace").await,
                JobKind::Restart => manager.restart_unit(unit, "replace").await,
            }
            .map_err(|e| describe_call_error(unit, &e))?;
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return Ok(JobEnd {
                        id: args.id,
                        result: args.result.clone(),
                    });
                }
            }
            Err(format!(
                "the bus closed before job {} of {unit} ended",
                job.as_str()
            ))
        })
        .await
    }
}

async fn unit_state(c: &Connection, unit: &str) -> Result<UnitState, String> {
    let manager = ManagerProxy::new(c).await.map_err(|e| e.to_string())?;
    let path = manager
        .load_unit(unit)
        .await
        .map_err(|e| describe_call_error(unit, &e))?;
    let u = UnitProxy::builder(c)
        .path(path.clone())
        .map_err(|e| e.to_string())?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let read = |what: &str, e: zbus::Error| format!("unit {unit}: cannot read {what}: {e}");
    let id = u.id().await.map_err(|e| read("Id", e))?;
    let load_state = u.load_state().await.map_err(|e| read("LoadState", e))?;
    let active_state = u.active_state().await.map_err(|e| read("ActiveState", e))?;
    let sub_state = u.sub_state().await.map_err(|e| read("SubState", e))?;
    let invocation: String = u
        .invocation_id()
        .await
        .map_err(|e| read("InvocationID", e))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let service = if id.ends_with(".service") && load_state == "loaded" {
        let s = ServiceProxy::builder(c)
            .path(path)
            .map_err(|e| e.to_string())?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        Some(ServiceState {
            service_type: s.service_type().await.map_err(|e| read("Type", e))?,
            remain_after_exit: s
                .remain_after_exit()
                .await
                .map_err(|e| read("RemainAfterExit", e))?,
            result: s.result().await.map_err(|e| read("Result", e))?,
        })
    } else {
        None
    };
    Ok(UnitState {
        id,
        load_state,
        active_state,
        sub_state,
        invocation,
        service,
    })
}

/// A method error in words: systemd's error name says most (`NoSuchUnit`, `AccessDenied`, …).
fn describe_call_error(unit: &str, e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(text), _) => {
            format!("unit {unit}: {} ({text})", name.as_str())
        }
        zbus::Error::MethodError(name, None, _) => format!("unit {unit}: {}", name.as_str()),
        other => format!("unit {unit}: {other}"),
    }
}
