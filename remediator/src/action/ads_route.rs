//! `ads_route_add`: a native TwinCAT route add over UDP (port 48899), with the router's
//! credentials from a file or the environment. The `ads` client blocks, so it runs on the
//! blocking pool.

use super::{ActionError, Context};

/// Asks the router to add a route to this side.
///
/// # Errors
/// A failure when the router does not answer or refuses.
pub async fn run(ctx: &Context<'_>) -> Result<String, ActionError> {
    let a = ctx
        .target
        .ads
        .clone()
        .ok_or_else(|| ActionError::Denied("target has no ads section".into()))?;
    let net_id: ads::AmsNetId = a
        .net_id
        .parse()
        .map_err(|e: &str| ActionError::Denied(format!("net_id {:?}: {e}", a.net_id)))?;
    let router = a.router.to_string();
    let description = format!(
        "route {} ({}) added on router {}:{}",
        a.route_name.as_deref().unwrap_or(&a.route_host),
        a.net_id,
        router,
        a.port
    );
    tokio::task::spawn_blocking(move || {
        ads::udp::add_route(
            (&router, a.port),
            net_id,
            &a.route_host,
            a.route_name.as_deref(),
            Some(&a.username),
            Some(&a.password),
            a.temporary,
        )
    })
    .await
    .map_err(|e| ActionError::Failed(format!("route add task: {e}")))?
    .map_err(|e| ActionError::Failed(format!("route add on {}:{}: {e}", a.router, a.port)))?;
    Ok(description)
}
