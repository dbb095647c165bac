//! ADS route and PLC state (the camera/PLC app): a TwinCAT device over native AMS/ADS (TCP 48898) — TCP
//! connected, target answered, ADS state as a state set, device state, device name and version
//! — or the camera/PLC app's own `GET /api/plc/ads/route/status`, mapped to the same metrics.
//!
//! The failure reason tells the cases an operator handles differently apart: `connect` (nothing
//! listens, the host is down), `timeout` (no answer in time), `no_route` (the router answered
//! with an ADS error such as 0x7 "target machine not found", or closed a fresh connection
//! without an answer, which is how TwinCAT treats a host it has no route for), `protocol`
//! (another ADS error) and `mismatch` (the device is not in the expected state, `run` by
//! default).
//!
//! **Invariant:** one TCP connection per router address and source, shared by every probe that
//! uses it and kept across runs and reloads: an AMS router accepts one connection per host and
//! closes the older one when a second arrives. The `ads` client is blocking and not `Sync`, so
//! it lives behind a mutex and is only used on blocking threads.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::join;
use stackmedic_common::ConfigErrors;
use url::Url;

use super::fetch::{self, TlsOptions};
use super::{Health, Item, ProbeError, Reason, RunContext, Shared};
use crate::metrics::{Family, Samples};
use crate::support::{lock, truncate};

mod link;

pub use link::AdsConnections;
use link::{Failure, Link, LinkKey};

static CONNECTED: Family = Family::gauge(
    "stackmedic_ads_connected",
    "Whether a TCP connection to the target's AMS router is established (1) or not (0); native mode only.",
);
static REACHABLE: Family = Family::gauge(
    "stackmedic_ads_reachable",
    "Whether the ADS device answered its state (1) or not (0); in route-status mode, the app's reachable field.",
);
static ROUTE: Family = Family::gauge(
    "stackmedic_ads_route_present",
    "Whether a route to the device exists (1) or the router reported none (0); absent when unknown (e.g. connection refused).",
);
static STATE: Family = Family::gauge(
    "stackmedic_ads_state",
    "State set of the device's ADS state (run, stop, config, error, ...; unknown for a value outside the ADS list).",
);
static DEVICE_STATE: Family = Family::gauge(
    "stackmedic_ads_device_state",
    "The device-specific state word returned with the ADS state.",
);
static ERROR_CODE: Family = Family::gauge(
    "stackmedic_ads_error_code",
    "The ADS error code of the last answer (0 for none), e.g. 7 for target machine not found.",
);
static DEVICE_INFO: Family = Family::gauge(
    "stackmedic_ads_device_info",
    "Constant 1 labelled with the ADS device's name and version (native mode).",
);
static CONNECTS: Family = Family::counter(
    "stackmedic_ads_connects_total",
    "TCP connections opened to the target's AMS router; more than one means reconnects (native mode).",
);

/// The ADS states by their numeric value, as label values.
const STATES: [&str; 20] = [
    "invalid",
    "idle",
    "reset",
    "init",
    "start",
    "run",
    "stop",
    "savecfg",
    "loadcfg",
    "powerfail",
    "powergood",
    "error",
    "shutdown",
    "suspend",
    "resume",
    "config",
    "reconfig",
    "stopping",
    "incompatible",
    "exception",
];
const UNKNOWN: &str = "unknown";

/// The default TCP port of AMS/ADS.
pub const DEFAULT_PORT: u16 = ads::PORT;
/// The default AMS port: the first PLC runtime of TwinCAT 3.
pub const DEFAULT_AMS_PORT: u16 = 851;
/// The default AMS port of a configured source address (an ephemeral one).
pub const DEFAULT_SOURCE_AMS_PORT: u16 = 58913;

fn default_expected() -> String {
    "run".into()
}
fn default_max_body() -> u64 {
    fetch::DEFAULT_MAX_BODY
}

/// Settings of an `ads` probe: either a native target (`host`, `ams_net_id`, …) or
/// `route_status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdsConfig {
    /// Host name or IP address of the AMS router (the PLC).
    pub host: Option<String>,
    /// TCP port of the AMS router; 48898 by default.
    pub port: Option<u16>,
    /// AMS Net ID of the device, `a.b.c.d.e.f`.
    pub ams_net_id: Option<String>,
    /// AMS port of the device; 851 (first TwinCAT 3 PLC runtime) by default.
    pub ams_port: Option<u16>,
    /// AMS Net ID this exporter presents; the PLC needs a route for it. By default the local
    /// IPv4 address of the connection with `.1.1` appended.
    pub source_ams_net_id: Option<String>,
    /// AMS port this exporter presents with `source_ams_net_id`.
    pub source_ams_port: Option<u16>,
    /// The state the device must be in (`run`, `stop`, `config`, …; case-insensitive).
    #[serde(default = "default_expected")]
    pub expected_state: String,
    /// Read the app's route-status endpoint instead of talking ADS.
    pub route_status: Option<RouteStatusConfig>,
}

/// JSON pointers (RFC 6901) into the app's `GET /api/plc/ads/route/status` response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteStatusConfig {
    /// The endpoint, e.g. `http://127.0.0.1:8000/api/plc/ads/route/status`.
    pub url: Url,
    /// Extra request headers (such as an API token).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Largest body read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Pointer to a boolean: the PLC answers.
    pub reachable: Option<String>,
    /// Pointer to a boolean: the ADS route exists.
    pub route: Option<String>,
    /// Pointer to the ADS state: a name (`Run`, `ADSSTATE_RUN`) or its number (5).
    pub ads_state: Option<String>,
    /// Pointer to the device state number.
    pub device_state: Option<String>,
    /// Pointer to the last ADS error code (a number, or a string such as `0x745`).
    pub error_code: Option<String>,
}

impl AdsConfig {
    /// Checks the mode, the addresses, the expected state and the pointers.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        // A key with a problem of its own is at its default here; what depends on it is not
        // checked again (the problem was reported).
        if parse_state(&self.expected_state).is_none() {
            errs.push(
                join(path, "expected_state"),
                format!(
                    "unknown ADS state {:?}; one of {}",
                    self.expected_state,
                    STATES.join(", ")
                ),
            );
        }
        match (&self.host, &mut self.route_status) {
            (Some(_), Some(_)) => {
                errs.push(
                    path,
                    "set either `host` (native ADS) or `route_status`, not both",
                );
            }
            (None, None) => {
                if !errs.has_any(&[&join(path, "host"), &join(path, "route_status")]) {
                    errs.push(path, "set `host` (native ADS) or `route_status`");
                }
            }
            (Some(host), None) => {
                if host.trim().is_empty() {
                    errs.push(join(path, "host"), "must not be empty");
                }
                match &self.ams_net_id {
                    None if errs.has(&join(path, "ams_net_id")) => {}
                    None => errs.push(join(path, "ams_net_id"), "is required with `host`"),
                    Some(id) => check_net_id(id, &join(path, "ams_net_id"), errs),
                }
                if let Some(id) = &self.source_ams_net_id {
                    check_net_id(id, &join(path, "source_ams_net_id"), errs);
                } else if self.source_ams_port.is_some()
                    && !errs.has(&join(path, "source_ams_net_id"))
                {
                    errs.push(join(path, "source_ams_port"), "needs `source_ams_net_id`");
                }
                if self.port == Some(0) {
                    errs.push(join(path, "port"), "must not be 0");
                }
            }
            (None, Some(rs)) => {
                let native = [
                    ("port", self.port.is_some()),
                    ("ams_net_id", self.ams_net_id.is_some()),
                    ("ams_port", self.ams_port.is_some()),
                    ("source_ams_net_id", self.source_ams_net_id.is_some()),
                    ("source_ams_port", self.source_ams_port.is_some()),
                ];
                for (key, set) in native {
                    if set {
                        errs.push(join(path, key), "only applies to native ADS (`host`)");
                    }
                }
                rs.validate(&join(path, "route_status"), errs);
            }
        }
    }
}

impl RouteStatusConfig {
    fn pointers(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("reachable", &self.reachable),
            ("route", &self.route),
            ("ads_state", &self.ads_state),
            ("device_state", &self.device_state),
            ("error_code", &self.error_code),
        ]
    }

    fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        fetch::validate_url(&self.url, &join(path, "url"), errs);
        self.tls.load(&join(path, "tls"), errs);
        fetch::validate_headers(&self.headers, &join(path, "headers"), errs);
        let pointers = self.pointers();
        if pointers.iter().all(|(_, p)| p.is_none())
            && !pointers.iter().any(|(name, _)| errs.has(&join(path, name)))
        {
            errs.push(path, "names no field; set at least one pointer");
        }
        for (name, p) in pointers {
            if let Some(p) = p {
                if !p.is_empty() && !p.starts_with('/') {
                    errs.push(
                        join(path, name),
                        format!("{p:?} is not a JSON pointer (it must start with `/`)"),
                    );
                }
            }
        }
    }
}

fn check_net_id(id: &str, path: &str, errs: &mut ConfigErrors) {
    if parse_net_id(id).is_none() {
        errs.push(
            path,
            format!("{id:?} is not an AMS Net ID (six numbers 0-255 separated by dots)"),
        );
    }
}

fn parse_net_id(id: &str) -> Option<ads::AmsNetId> {
    let parts: Vec<&str> = id.split('.').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.parse::<u8>().is_err()) {
        return None;
    }
    ads::AmsNetId::from_str(id).ok()
}

/// The label value of an ADS state name as written in a config or a JSON field.
fn parse_state(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("adsstate_").unwrap_or(&lower);
    let bare = match bare {
        "saveconfig" => "savecfg",
        "loadconfig" => "loadcfg",
        other => other,
    };
    STATES.iter().copied().find(|s| *s == bare)
}

fn state_name(code: u16) -> &'static str {
    STATES.get(usize::from(code)).copied().unwrap_or(UNKNOWN)
}

/// ADS error codes meaning that the router has no way to the device: no route, no such AMS
/// port or Net ID, router or port not active. Others are reported as `protocol`.
#[must_use]
pub fn is_no_route_code(code: u32) -> bool {
    matches!(
        code,
        0x006 // target port not found
            | 0x007 // target machine not found: missing ADS route
            | 0x00D // port not connected
            | 0x012 // port disabled
            | 0x018 // invalid AMS port
            | 0x01B // host unreachable
            | 0x507 // router: port not registered
            | 0x50A // router not active
            | 0x745 // client: timeout elapsed, check the route
            | 0x748 // client: ADS port not opened
            | 0x749 // client: no AMS address
    )
}

fn ads_code_error(code: u32, what: &str) -> ProbeError {
    let reason = if is_no_route_code(code) {
        Reason::NoRoute
    } else {
        Reason::Protocol
    };
    let text = ads::errors::ADS_ERRORS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown error", |(_, t)| t);
    ProbeError::new(reason, format!("{what}: ADS error {code:#x} ({text})"))
}

/// An `ads` probe.
pub struct AdsProbe {
    mode: Mode,
    expected: &'static str,
}

enum Mode {
    Native {
        link: Arc<Link>,
        device: ads::AmsAddr,
    },
    RouteStatus {
        cfg: Box<RouteStatusConfig>,
        client: reqwest::Client,
        headers: HeaderMap,
    },
}

impl AdsProbe {
    /// Builds the probe; a native target's connection is opened on the first run.
    ///
    /// # Errors
    /// When the configuration was not validated or the HTTP client cannot be built.
    pub fn new(cfg: AdsConfig, shared: &Shared) -> Result<Self, String> {
        let expected = parse_state(&cfg.expected_state)
            .ok_or_else(|| format!("unknown ADS state {:?}", cfg.expected_state))?;
        let mode = match (&cfg.host, cfg.route_status) {
            (Some(host), None) => {
                let net_id = cfg
                    .ams_net_id
                    .as_deref()
                    .and_then(parse_net_id)
                    .ok_or("invalid or missing ams_net_id")?;
                let source_id = match &cfg.source_ams_net_id {
                    Some(id) => Some(parse_net_id(id).ok_or("invalid source_ams_net_id")?),
                    None => None,
                };
                let source_port = cfg.source_ams_port.unwrap_or(DEFAULT_SOURCE_AMS_PORT);
                let source = match source_id {
                    Some(id) => ads::Source::Addr(ads::AmsAddr::new(id, source_port)),
                    None => ads::Source::Auto,
                };
                let key = LinkKey {
                    host: host.trim().to_string(),
                    port: cfg.port.unwrap_or(DEFAULT_PORT),
                    source: source_id.map(|id| (id.to_string(), source_port)),
                };
                Mode::Native {
                    link: shared.ads.link(key, source),
                    device: ads::AmsAddr::new(net_id, cfg.ams_port.unwrap_or(DEFAULT_AMS_PORT)),
                }
            }
            (None, Some(rs)) => {
                let client = shared.http.get(&rs.tls, true)?;
                let headers = fetch::header_map(&rs.headers);
                Mode::RouteStatus {
                    cfg: Box::new(rs),
                    client,
                    headers,
                }
            }
            _ => return Err("set either host or route_status".into()),
        };
        Ok(Self { mode, expected })
    }

    /// Runs once.
    ///
    /// # Errors
    /// `connect`, `timeout`, `no_route`, `protocol`, `mismatch` (not in the expected state);
    /// in route-status mode also the HTTP reasons and `parse`.
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        match &self.mode {
            Mode::Native { link, device } => self.run_native(link, *device, cx, out).await,
            Mode::RouteStatus {
                cfg,
                client,
                headers,
            } => self.run_route_status(cfg, client, headers, cx, out).await,
        }
    }

    async fn run_native(
        &self,
        link: &Arc<Link>,
        device: ads::AmsAddr,
        cx: &RunContext,
        out: &mut Samples,
    ) -> Result<(), ProbeError> {
        let l = link.clone();
        let deadline = cx.deadline();
        let reply_timeout = cx.timeout();
        let job = tokio::task::spawn_blocking(move || {
            l.query(device, deadline.into_std(), reply_timeout)
        });
        // The blocking query checks the deadline between its steps; a step that blocks past
        // it (a device that never answers) is left to finish on its own thread.
        let result = match tokio::time::timeout_at(deadline, job).await {
            Ok(joined) => joined
                .map_err(|e| ProbeError::new(Reason::Other, format!("ads query panicked: {e}")))?,
            Err(_) => Err(Failure::down(
                Reason::Timeout,
                format!("no answer within {:?}", cx.timeout()),
            )),
        };
        out.push(&CONNECTS, &[], link.connects.load(Ordering::Relaxed) as f64);
        match result {
            Ok(r) => {
                out.flag(&CONNECTED, &[], true);
                out.flag(&REACHABLE, &[], true);
                out.flag(&ROUTE, &[], true);
                out.push(&ERROR_CODE, &[], 0.0);
                match &r.info {
                    Ok((name, version)) => {
                        let name = truncate(name, 64);
                        let version = truncate(version, 32);
                        out.push(&DEVICE_INFO, &[("name", &name), ("version", &version)], 1.0);
                    }
                    // The probe still succeeds: the state is what it checks. The series is
                    // left out, and the log says why.
                    Err(why) => tracing::debug!(
                        error = %why,
                        "device info not read; stackmedic_ads_device_info left out"
                    ),
                }
                self.report_state(Some(state_name(r.state)), Some(r.device_state), cx, out)
            }
            Err(f) => {
                out.flag(&CONNECTED, &[], f.connected);
                out.flag(&REACHABLE, &[], false);
                if f.error.reason == Reason::NoRoute {
                    out.flag(&ROUTE, &[], false);
                }
                if let Some(code) = f.code {
                    out.push(&ERROR_CODE, &[], f64::from(code));
                }
                Err(f.error)
            }
        }
    }

    async fn run_route_status(
        &self,
        cfg: &RouteStatusConfig,
        client: &reqwest::Client,
        headers: &HeaderMap,
        cx: &RunContext,
        out: &mut Samples,
    ) -> Result<(), ProbeError> {
        let req = client.get(cfg.url.clone()).headers(headers.clone());
        let resp = fetch::send(cx, req, cfg.max_body_bytes).await?;
        if !resp.status.is_success() {
            return Err(ProbeError::new(
                Reason::HttpStatus,
                format!("route status: status {}", resp.status.as_u16()),
            ));
        }
        let doc: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            ProbeError::new(Reason::Parse, format!("route status is not JSON: {e}"))
        })?;
        let mut problems = Vec::new();
        let reachable = field(&doc, cfg.reachable.as_deref(), as_bool, &mut problems);
        let route = field(&doc, cfg.route.as_deref(), as_bool, &mut problems);
        let code = field(&doc, cfg.error_code.as_deref(), as_code, &mut problems);
        let device_state = field(&doc, cfg.device_state.as_deref(), as_u16, &mut problems);
        let state = field(
            &doc,
            cfg.ads_state.as_deref(),
            |v| match v {
                Value::String(s) => Some(parse_state(s).unwrap_or(UNKNOWN)),
                Value::Number(n) => n
                    .as_u64()
                    .map(|n| u16::try_from(n).map_or(UNKNOWN, state_name)),
                _ => None,
            },
            &mut problems,
        );
        if let Some(b) = reachable {
            out.flag(&REACHABLE, &[], b);
        }
        if let Some(b) = route {
            out.flag(&ROUTE, &[], b);
        }
        if let Some(c) = code {
            out.push(&ERROR_CODE, &[], f64::from(c));
        }
        if !problems.is_empty() {
            return Err(ProbeError::new(Reason::Parse, problems.join("; ")));
        }
        if route == Some(false) {
            return Err(ProbeError::new(
                Reason::NoRoute,
                "the app reports no ADS route to the PLC",
            ));
        }
        if let Some(c) = code.filter(|c| is_no_route_code(*c)) {
            return Err(ads_code_error(c, "the app's last ADS call"));
        }
        if reachable == Some(false) {
            // The state the app reports for an unreachable PLC is its last known one.
            return Err(ProbeError::new(
                Reason::Connect,
                "the app reports the PLC as unreachable",
            ));
        }
        if state.is_none() && device_state.is_none() {
            return Ok(());
        }
        self.report_state(state, device_state, cx, out)
    }

    fn report_state(
        &self,
        state: Option<&'static str>,
        device_state: Option<u16>,
        cx: &RunContext,
        out: &mut Samples,
    ) -> Result<(), ProbeError> {
        if let Some(d) = device_state {
            out.push(&DEVICE_STATE, &[], f64::from(d));
        }
        let Some(state) = state else {
            return Ok(());
        };
        let mut all: Vec<&str> = STATES.to_vec();
        all.push(UNKNOWN);
        out.state_set(&STATE, &[], "state", &all, state);
        // The PLC is the probe's own target: its item carries the state in words; a PLC that
        // did not answer is told by the probe's failure instead.
        if state == self.expected {
            cx.report(Item::new(
                "PLC",
                "",
                Health::Ok,
                format!("ADS state {state}"),
            ));
            Ok(())
        } else {
            cx.report(Item::new(
                "PLC",
                "",
                Health::Failing,
                format!("ADS state {state}, expected {}", self.expected),
            ));
            Err(ProbeError::new(
                Reason::Mismatch,
                format!("ADS state is {state}, expected {}", self.expected),
            ))
        }
    }
}

/// Reads one optional field; a configured pointer that finds nothing usable is a problem.
fn field<T>(
    doc: &Value,
    pointer: Option<&str>,
    convert: impl Fn(&Value) -> Option<T>,
    problems: &mut Vec<String>,
) -> Option<T> {
    let pointer = pointer?;
    match doc.pointer(pointer) {
        None => {
            problems.push(format!("no field at JSON pointer {pointer:?}"));
            None
        }
        Some(v) => {
            let r = convert(v);
            if r.is_none() {
                let shown = truncate(&v.to_string(), 40);
                problems.push(format!("unexpected value at {pointer:?}: {shown}"));
            }
            r
        }
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "ok" | "yes" | "connected" | "reachable" => Some(true),
            "false" | "no" | "disconnected" | "unreachable" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_u16(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|n| u16::try_from(n).ok())
}

fn as_code(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        }
        Value::Null => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::link::{classify, Broken};
    use super::*;
    use std::io;
    use std::time::Duration;

    #[test]
    fn error_codes_tell_no_route_apart() {
        for code in [0x6, 0x7, 0x745, 0x1B] {
            assert_eq!(
                ads_code_error(code, "x").reason,
                Reason::NoRoute,
                "{code:#x}"
            );
        }
        for code in [0x701, 0x710, 0x8] {
            assert_eq!(
                ads_code_error(code, "x").reason,
                Reason::Protocol,
                "{code:#x}"
            );
        }
        let e = ads_code_error(0x7, "read state");
        assert!(
            e.message.contains("0x7") && e.message.contains("routes"),
            "{e}"
        );
    }

    #[test]
    fn io_failures_are_classified() {
        let op = Duration::from_secs(1);
        let io = |k| ads::Error::Io("receiving reply (route set?)", io::Error::from(k));
        assert!(matches!(
            classify(&io(io::ErrorKind::BrokenPipe), Duration::ZERO, op),
            Broken::Closed
        ));
        // A receive "timeout" that came at once is a reader that saw the socket close.
        assert!(matches!(
            classify(&io(io::ErrorKind::TimedOut), Duration::from_millis(5), op),
            Broken::Closed
        ));
        assert!(matches!(
            classify(&io(io::ErrorKind::TimedOut), op, op),
            Broken::Timeout
        ));
        assert!(matches!(
            classify(&ads::Error::Ads("read state", "x", 7), Duration::ZERO, op),
            Broken::Code(7)
        ));
    }

    #[test]
    fn states_and_net_ids() {
        assert_eq!(parse_state("Run"), Some("run"));
        assert_eq!(parse_state("ADSSTATE_STOP"), Some("stop"));
        assert_eq!(parse_state("SaveConfig"), Some("savecfg"));
        assert_eq!(parse_state("running"), None);
        assert_eq!(state_name(5), "run");
        assert_eq!(state_name(15), "config");
        assert_eq!(state_name(99), UNKNOWN);
        assert!(parse_net_id("5.32.116.5.1.1").is_some());
        assert!(parse_net_id("5.32.116.5").is_none());
        assert!(parse_net_id("5.32.116.5.1.300").is_none());
        assert_eq!(as_code(&serde_json::json!("0x745")), Some(0x745));
        assert_eq!(as_code(&serde_json::json!(7)), Some(7));
    }

    #[test]
    fn config_errors() {
        let cases: &[(&str, &str)] = &[
            ("{}", "probes[0].ads: set `host` (native ADS) or `route_status`"),
            (
                "{host: plc}",
                "probes[0].ads.ams_net_id: is required with `host`",
            ),
            (
                "{host: plc, ams_net_id: 5.32.116.5}",
                "probes[0].ads.ams_net_id: \"5.32.116.5\" is not an AMS Net ID",
            ),
            (
                "{host: plc, ams_net_id: 5.32.116.5.1.1, expected_state: running}",
                "probes[0].ads.expected_state: unknown ADS state \"running\"",
            ),
            (
                "{host: plc, ams_net_id: 5.32.116.5.1.1, source_ams_port: 30000}",
                "probes[0].ads.source_ams_port: needs `source_ams_net_id`",
            ),
            (
                "{route_status: {url: 'http://127.0.0.1/s'}}",
                "probes[0].ads.route_status: names no field",
            ),
            (
                "{route_status: {url: 'http://127.0.0.1/s', route: present}}",
                "probes[0].ads.route_status.route: \"present\" is not a JSON pointer",
            ),
            (
                "{ams_port: 851, route_status: {url: 'http://127.0.0.1/s', route: /ok}}",
                "probes[0].ads.ams_port: only applies to native ADS",
            ),
            (
                "{host: plc, ams_net_id: 5.32.116.5.1.1, route_status: {url: 'http://127.0.0.1/s', route: /ok}}",
                "probes[0].ads: set either `host` (native ADS) or `route_status`, not both",
            ),
        ];
        for (ads, expected) in cases {
            let yaml = format!("probes:\n  - name: p\n    ads: {ads}\n");
            let v = stackmedic_common::config::parse_yaml(&yaml).expect("yaml");
            let text = crate::config::from_value(&v).expect_err(ads).to_string();
            assert!(text.contains(expected), "{ads}: {text}");
        }
    }

    #[test]
    fn one_link_per_router_and_source() {
        let conns = AdsConnections::default();
        let key = |h: &str| LinkKey {
            host: h.into(),
            port: 48898,
            source: None,
        };
        let a = conns.link(key("plc"), ads::Source::Auto);
        let b = conns.link(key("plc"), ads::Source::Auto);
        assert!(Arc::ptr_eq(&a, &b));
        let c = conns.link(key("other"), ads::Source::Auto);
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let d = conns.link(key("plc"), ads::Source::Auto);
        assert_eq!(d.connects.load(Ordering::Relaxed), 0);
        assert_eq!(lock(&conns.links).len(), 2);
    }
}
