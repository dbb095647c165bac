//! A real ADS/AMS server: pyads' test server (`pyads.testserver`, PyPI `pyads`) started by
//! `tests/fixtures/ads/ads_server.py`, whose handler answers ReadState with the state, error
//! code or silence a test chooses (see the script's `--help`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// A running `ads_server.py` on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct AdsServer {
    process: Process,
    port: u16,
    _logs: tempfile::TempDir,
}

impl AdsServer {
    /// Starts the server on `port` with the script's `args` (`["--state", "stop"]`) and waits
    /// until it accepts connections.
    ///
    /// # Panics
    /// When the server does not start within 20 s (pyads missing, port taken), with its log.
    pub fn start(port: u16, args: &[&str]) -> AdsServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ads/ads_server.py");
        let logs = tempfile::tempdir().expect("log dir");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .args(args);
        let mut process = Process::spawn(&format!("ads-server-{port}"), cmd, logs.path());
        let up = crate::wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            !process.is_running() || crate::port_accepts(port)
        });
        assert!(
            up && process.is_running(),
            "the ADS test server did not start (is pyads installed for python3?):\n{}",
            process.describe()
        );
        AdsServer {
            process,
            port,
            _logs: logs,
        }
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process guard (to kill it, or read its log).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
