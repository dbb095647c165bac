//! [`Process`]: a guard owning a child process whose output goes to files.
//!
//! Used by every peer helper of this crate (nginx, Prometheus, Alertmanager) and available to
//! tests that start the workspace binaries themselves. stdout and stderr are written to
//! `<log_dir>/<name>.stdout.log` and `<log_dir>/<name>.stderr.log` (never to a pipe, so a chatty
//! child can never block and nextest never sees a leaked pipe), and [`Process::describe`] shows
//! their tails when a test has to fail.
//!
//! Dropping the guard stops the process: `SIGTERM`, up to [`STOP_GRACE`] to exit, then `SIGKILL`,
//! and always a `wait` so no zombie is left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`Process::stop`] (and `Drop`) waits after `SIGTERM` before sending `SIGKILL`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How many bytes of each output file [`Process::describe`] shows.
const TAIL_BYTES: usize = 4000;

/// A running child process, stopped and reaped on drop. See the [module docs](self).
#[derive(Debug)]
pub struct Process {
    name: String,
    program: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Process {
    /// Spawns `command` with stdin from `/dev/null` and stdout/stderr appended to
    /// `<log_dir>/<name>.stdout.log` / `.stderr.log` (`log_dir` must exist).
    ///
    /// # Panics
    /// When the log files cannot be created or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Process {
        let program = command.get_program().to_string_lossy().into_owned();
        let stdout_path = log_dir.join(format!("{name}.stdout.log"));
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let open = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot create log file {}: {e}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(open(&stdout_path))
            .stderr(open(&stderr_path));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process {
            name: name.to_owned(),
            program,
            child,
            status: None,
            stdout_path,
            stderr_path,
        }
    }

    /// The name given to [`Process::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => panic!("cannot poll {} (pid {}): {e}", self.name, self.pid()),
            }
        }
        self.status
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits until `GET http://127.0.0.1:<port>/-/ready` answers 200 while the process runs.
    /// Returns false when it exits first or is not ready within `timeout`.
    pub fn wait_ready(&mut self, port: u16, timeout: Duration) -> bool {
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let ready = crate::wait_until(timeout, Duration::from_millis(50), || {
            !self.is_running()
                || crate::http::request_with_timeout("GET", &url, &[], None, Duration::from_secs(2))
                    .is_ok_and(|r| r.status == 200)
        });
        ready && self.is_running()
    }

    /// Path of the file receiving the process's stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// Path of the file receiving the process's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything the process has written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"USR1"`, …) with `kill(1)`, if the process
    /// has not been reaped yet. Returns whether the signal was delivered.
    pub fn signal(&mut self, signal: &str) -> bool {
        if self.try_status().is_some() {
            return false;
        }
        // Not reaped yet, so the pid cannot have been reused by another process.
        Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its status if it did.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process: `SIGTERM`, up to [`STOP_GRACE`] to exit, then `SIGKILL`. Returns the
    /// exit status. Calling it again (or dropping the guard afterwards) is harmless.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        self.signal("TERM");
        if let Some(status) = self.wait_timeout(STOP_GRACE) {
            return status;
        }
        self.kill()
    }

    /// Kills the process with `SIGKILL` at once and reaps it. Returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap {} (pid {}): {e}", self.name, self.pid()));
        self.status = Some(status);
        status
    }

    /// A multi-line description for failure messages: name, pid, program, state, and the tails
    /// of stdout and stderr.
    pub fn describe(&mut self) -> String {
        let state = match self.try_status() {
            Some(status) => format!("exited with {status}"),
            None => "still running".to_owned(),
        };
        format!(
            "{} (pid {}, {}) {state}\n--- stderr ({}) ---\n{}\n--- stdout ({}) ---\n{}",
            self.name,
            self.pid(),
            self.program,
            self.stderr_path.display(),
            tail(&self.stderr(), TAIL_BYTES),
            self.stdout_path.display(),
            tail(&self.stdout(), TAIL_BYTES),
        )
    }
}

impl Drop for Process {
    /// Same as [`Process::stop`], but never panics (a panic while unwinding would abort).
    fn drop(&mut self) {
        if self.status.is_some() || !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `max` bytes of `text` (at a character boundary), prefixed with `…` when cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
