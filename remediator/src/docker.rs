//! A lazily connected Docker Engine client, shared by the container actions and verification.

use bollard::Docker;
use tokio::sync::Mutex;

/// Connects on first use (and again after a failed connect), negotiating the API version so an
/// older engine is spoken to in its own version.
pub struct DockerClient {
    host: Option<String>,
    client: Mutex<Option<Docker>>,
}

/// Time one Docker API request may take.
const REQUEST_TIMEOUT_SECS: u64 = 120;

impl DockerClient {
    /// A client for `host` (`unix:///…` or `http://…`), or `DOCKER_HOST` and the local socket.
    #[must_use]
    pub fn new(host: Option<String>) -> Self {
        Self {
            host,
            client: Mutex::new(None),
        }
    }

    /// The connected client.
    ///
    /// # Errors
    /// When the engine cannot be reached.
    pub async fn get(&self) -> Result<Docker, String> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let docker = match &self.host {
            None => Docker::connect_with_defaults(),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                Docker::connect_with_socket(h, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => {
                Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| format!("cannot connect to the Docker Engine: {e}"))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| format!("cannot reach the Docker Engine: {e}"))?;
        *guard = Some(docker.clone());
        Ok(docker)
    }
}
