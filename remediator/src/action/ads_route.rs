//! `ads_route_add`: a native TwinCAT route add over UDP (port 48899), with the router's
//! credentials from a file or the environment. The `ads` client blocks, so it runs on the
//! blocking pool.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use stackmedic_common::config::{self as common, ConfigErrors};

use super::ActionError;
use crate::credentials::secret_key;

/// The target section key.
pub const SECTION: &str = "ads";

/// A TwinCAT router to add a route on (`targets[].ads`).
#[derive(Clone)]
pub struct AdsTarget {
    /// Router address.
    pub router: IpAddr,
    /// UDP port of the router (48899).
    pub port: u16,
    /// AMS Net ID of the route's destination (this side).
    pub net_id: ads::AmsNetId,
    /// Host name or address of the route's destination, as the router should reach it.
    pub route_host: String,
    /// Route name; default `route_host`.
    pub route_name: String,
    /// Router user name.
    pub username: String,
    /// Router password, from a file or the environment.
    pub password: String,
    /// Add the route as temporary.
    pub temporary: bool,
}

impl std::fmt::Debug for AdsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsTarget")
            .field("router", &self.router)
            .field("port", &self.port)
            .field("net_id", &self.net_id.to_string())
            .field("route_host", &self.route_host)
            .field("route_name", &self.route_name)
            .field("username", &self.username)
            .field("password", &"<secret>")
            .field("temporary", &self.temporary)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdsTargetFile {
    router: IpAddr,
    #[serde(default = "default_port")]
    port: u16,
    net_id: String,
    route_host: String,
    route_name: Option<String>,
    #[serde(default = "default_user")]
    username: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    #[serde(default)]
    temporary: bool,
}

fn default_port() -> u16 {
    48899
}
fn default_user() -> String {
    "Administrator".into()
}

impl AdsTarget {
    /// Parses the section at `path`, reading the router password.
    pub fn load(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let f: AdsTargetFile = common::typed(v, path, errs)?;
        let net_id = match f.net_id.parse::<ads::AmsNetId>() {
            Ok(id) if f.net_id.split('.').count() == 6 => Some(id),
            _ => {
                errs.push(
                    common::join(path, "net_id"),
                    format!("{:?} is not an AMS Net ID (a.b.c.d.e.f)", f.net_id),
                );
                None
            }
        };
        let (file, env) = (f.password_file.as_deref(), f.password_env.as_deref());
        let password = match common::read_secret(file, env) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(common::join(path, &secret_key(file, env, "password")), e);
                None
            }
        };
        Some(AdsTarget {
            router: f.router,
            port: f.port,
            net_id: net_id?,
            route_name: f.route_name.unwrap_or_else(|| f.route_host.clone()),
            route_host: f.route_host,
            username: f.username,
            password: password?,
            temporary: f.temporary,
        })
    }
}

/// The rule keys of `ads_route_add`: none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {}

/// A route add of a rule on one router.
#[derive(Debug, Clone)]
pub struct RouteAdd {
    /// The router.
    pub target: Arc<AdsTarget>,
}

impl RouteAdd {
    /// Asks the router to add a route to this side.
    pub(super) async fn run(&self) -> Result<String, ActionError> {
        let a = self.target.clone();
        let description = format!(
            "route {} ({}) added on router {}:{}",
            a.route_name, a.net_id, a.router, a.port
        );
        tokio::task::spawn_blocking(move || {
            ads::udp::add_route(
                (&a.router.to_string(), a.port),
                a.net_id,
                &a.route_host,
                Some(&a.route_name),
                Some(&a.username),
                Some(&a.password),
                a.temporary,
            )
            .map_err(|e| format!("route add on {}:{}: {e}", a.router, a.port))
        })
        .await
        .map_err(|e| ActionError::Failed(format!("route add task: {e}")))?
        .map_err(ActionError::Failed)?;
        Ok(description)
    }
}
