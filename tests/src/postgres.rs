//! A private, real PostgreSQL server (Debian package `postgresql`): a cluster of its own, made by
//! `initdb` in a temporary directory, never the system service.
//!
//! [`Postgres::start`] finds the server's programs under `/usr/lib/postgresql/<version>/bin`
//! (the highest version installed, see [`program`]), and, as the system user `postgres` (the
//! server refuses to run as root; the package creates that user):
//!
//! 1. runs `initdb --no-sync` on `<dir>/data` (superuser `postgres`, UTF-8, C locale; its
//!    files are left to the page cache, which survives a killed server, not a crashed machine);
//! 2. appends its settings to `postgresql.conf`: `listen_addresses = '127.0.0.1'` only, the Unix
//!    socket in `<dir>/socket` (never `/var/run/postgresql`), `fsync`, `synchronous_commit` and
//!    `full_page_writes` on (a committed row survives a crash), the log on stderr; with TLS,
//!    `ssl = on` and a server certificate for `127.0.0.1` made by `openssl` ([`crate::tls`]);
//! 3. replaces `pg_hba.conf`: the superuser over the Unix socket by `peer`, every role over TCP
//!    from `127.0.0.1/32` by `scram-sha-256` (`hostssl` only, with TLS), nothing else;
//! 4. runs `postgres -D <dir>/data -p <port>` on a port from [`crate::free_port`] (another port
//!    when that one was taken meanwhile), waits until `pg_isready` says it accepts connections,
//!    creates the login role `stackmedic` with a random password and the database `stackmedic`
//!    it owns, and logs in as that role over TCP with the password (and `verify-full` with TLS)
//!    before returning.
//!
//! The postmaster is the guard's own child ([`Process`]), not a daemon `pg_ctl start` would leave
//! behind: the guard knows its pid for [`Postgres::kill9`], reaps it, knows at once whether it
//! runs, and keeps its log (`postgres-start<N>.stderr.log` in the directory). [`Postgres::stop`]
//! is a clean `pg_ctl stop -m fast`.
//!
//! ```text
//! let pg = Postgres::start();
//! // --storage.url=<pg.url()>, password from pg.password_file()
//! assert_eq!(pg.psql("SELECT count(*) FROM jobs"), "3");
//! pg.kill9();
//! pg.start_again();
//! ```
//!
//! Dropping the guard shuts the server down at once (immediate mode, as a crash would) and
//! deletes the directory.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Process;

/// Where Debian installs the server's programs, one folder per major version.
pub const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// The login role and the database it owns in every cluster.
pub const ROLE: &str = "stackmedic";

/// The database of [`ROLE`].
pub const DATABASE: &str = "stackmedic";

/// The system user the server runs as.
const SYSTEM_USER: &str = "postgres";

/// How long the server may take to accept connections after it was started (crash recovery
/// included) or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a client waits for a connection (`PGCONNECT_TIMEOUT`).
const CONNECT_TIMEOUT_SECS: &str = "10";

/// How a cluster is started: see [`Postgres::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `ssl = on` with a server certificate for `127.0.0.1`, and TCP clients must use TLS.
    pub tls: bool,
    /// Extra `postgresql.conf` settings (`("max_connections", "300")`), written after the
    /// helper's own, so they win.
    pub settings: Vec<(String, String)>,
}

/// A running PostgreSQL cluster of a test; shut down and deleted when dropped. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Postgres {
    // Field order matters: the server is stopped (in `Drop`) before the directory is deleted.
    process: Process,
    port: u16,
    password: String,
    tls: bool,
    starts: u32,
    bin: PathBuf,
    user: (u32, u32),
    dir: TempDir,
}

/// The path of a program of the highest PostgreSQL version installed:
/// `/usr/lib/postgresql/<version>/bin/<name>` (`postgres`, `initdb`, `pg_ctl`, `psql`,
/// `pg_isready`, `pgbench`, `pg_dump`, …).
///
/// # Panics
/// When no server is installed there, or it lacks the program.
pub fn program(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing (Debian package `postgresql`); run scripts/test.sh as root, which \
         installs it",
        path.display()
    );
    path
}

/// `/usr/lib/postgresql/<highest version with a server>/bin`.
fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir(INSTALL_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            entry
                .path()
                .join("bin/postgres")
                .is_file()
                .then(|| (version, entry.path().join("bin")))
        });
    versions
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server under {INSTALL_ROOT}/<version>/bin (Debian package \
                 `postgresql`); run scripts/test.sh as root, which installs it"
            )
        })
}

/// The uid and gid of the system user `postgres`, from `/etc/passwd`.
fn system_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_else(|e| panic!("cannot read /etc/passwd: {e}"));
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == SYSTEM_USER)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "no system user `{SYSTEM_USER}` in /etc/passwd: the Debian package `postgresql` \
                 creates it; run scripts/test.sh as root, which installs it"
            )
        })
}

/// A password of 48 hexadecimal digits from `/dev/urandom`.
fn random_password() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read /dev/urandom: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` as an SQL string literal.
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Postgres {
    /// Starts a fresh cluster without TLS. See the [module docs](self).
    ///
    /// # Panics
    /// When not running as root, PostgreSQL is not installed, or the server does not start
    /// (with `initdb`'s output or the server's log).
    pub fn start() -> Postgres {
        Self::start_with(&Options::default())
    }

    /// Starts a fresh cluster with TLS: `ssl = on`, a server certificate for `127.0.0.1` signed
    /// by the CA in [`Postgres::ca_file`], and TCP clients must use TLS (`hostssl`), so that a
    /// client can connect with `sslmode=verify-full`.
    ///
    /// # Panics
    /// As [`Postgres::start`], and when `openssl` fails.
    pub fn start_tls() -> Postgres {
        Self::start_with(&Options {
            tls: true,
            ..Options::default()
        })
    }

    /// Starts a fresh cluster as `options` say.
    ///
    /// # Panics
    /// As [`Postgres::start`].
    pub fn start_with(options: &Options) -> Postgres {
        assert!(
            crate::is_root(),
            "a private PostgreSQL cluster is started as the system user `postgres`, which needs \
             root: run the tests as root (scripts/test.sh does)"
        );
        let bin = bin_dir();
        let user = system_user();
        // Short, in /tmp: the Unix socket's path (`<dir>/socket/.s.PGSQL.<port>`) has at most
        // 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("sm-pg-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let chown = |path: &Path| {
            std::os::unix::fs::chown(path, Some(user.0), Some(user.1))
                .unwrap_or_else(|e| panic!("cannot give {} to `postgres`: {e}", path.display()));
        };
        chown(dir.path());
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", socket.display()));
        chown(&socket);

        let data = dir.path().join("data");
        let initdb = as_postgres(Command::new(bin.join("initdb")), user, dir.path())
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username=postgres",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
                // The new files are not flushed to disk at the end (2–3 s saved on a busy
                // disk): they are in the page cache, which a killed server does not lose; only
                // a crash of the machine would. The server itself runs with fsync on.
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/initdb: {e}", bin.display()));
        assert!(
            initdb.status.success(),
            "initdb of a test cluster in {} failed with {}:\n{}{}",
            data.display(),
            initdb.status,
            String::from_utf8_lossy(&initdb.stderr),
            String::from_utf8_lossy(&initdb.stdout)
        );

        let mut conf = format!(
            "\n# Written by the stackmedic tests' PostgreSQL helper.\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             logging_collector = off\n\
             log_destination = 'stderr'\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
            sql_literal(&socket.display().to_string())
        );
        if options.tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", certs.display()));
            crate::tls::make_certificates(&certs);
            // The server refuses a key others can read; it must be its own.
            let key = certs.join("server.key");
            chown(&key);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", key.display()));
            chown(&certs);
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
                sql_literal(&certs.join("server.crt").display().to_string()),
                sql_literal(&key.display().to_string()),
            ));
        }
        for (name, value) in &options.settings {
            conf.push_str(&format!("{name} = {}\n", sql_literal(value)));
        }
        let conf_path = data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot append to {}: {e}", conf_path.display()));
        let host = if options.tls { "hostssl" } else { "host" };
        let hba = format!(
            "# Written by the stackmedic tests' PostgreSQL helper.\n\
             local all postgres peer\n\
             {host} all all 127.0.0.1/32 scram-sha-256\n"
        );
        let hba_path = data.join("pg_hba.conf");
        std::fs::write(&hba_path, hba)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", hba_path.display()));

        let password = random_password();
        let password_path = dir.path().join("password");
        std::fs::write(&password_path, format!("{password}\n"))
            .and_then(|()| {
                std::fs::set_permissions(&password_path, std::fs::Permissions::from_mode(0o600))
            })
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", password_path.display()));

        let mut failure = String::new();
        // A free port may be taken before the server binds it: try a few.
        for attempt in 1..=4 {
            let port = crate::free_port();
            let mut process = spawn_server(&bin, user, dir.path(), port, attempt);
            if !wait_accepting(&mut process, &bin, port) {
                let log = process.stderr();
                failure = format!(
                    "PostgreSQL did not start on 127.0.0.1:{port} (it exited, or did not accept \
                     connections within {START_TIMEOUT:?}):\n{}",
                    process.describe()
                );
                let _ = kill_server(&mut process);
                if log.contains("already in use") {
                    continue;
                }
                break;
            }
            let mut pg = Postgres {
                process,
                port,
                password,
                tls: options.tls,
                starts: attempt,
                bin,
                user,
                dir,
            };
            pg.psql_in(
                "postgres",
                &format!(
                    "CREATE ROLE {ROLE} LOGIN PASSWORD {};\n\
                     CREATE DATABASE {DATABASE} OWNER {ROLE};\n",
                    sql_literal(&pg.password)
                ),
            );
            pg.check_login();
            return pg;
        }
        panic!("{failure}");
    }

    /// Logs in as [`ROLE`] over TCP with the password (and `verify-full` with TLS), or panics
    /// with the server's log.
    fn check_login(&mut self) {
        if let Err(e) = psql_client(&self.client_url(), &self.password, "SELECT 1") {
            panic!(
                "PostgreSQL accepts connections, but {ROLE} cannot log in at {}: {e}\n{}",
                self.client_url(),
                self.process.describe()
            );
        }
    }

    /// [`Postgres::url`] with what `psql` needs to verify the server (`sslmode=verify-full`
    /// and the CA) with TLS, or `sslmode=disable` without.
    pub fn client_url(&self) -> String {
        match self.ca_file() {
            Some(ca) => format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                self.url(),
                ca.display()
            ),
            None => format!("{}?sslmode=disable", self.url()),
        }
    }

    /// `postgres://stackmedic@127.0.0.1:<port>/stackmedic`: no password (see
    /// [`Postgres::password`] and [`Postgres::password_file`]) and no TLS options (see
    /// [`Postgres::ca_file`]).
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The password of [`ROLE`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A file holding [`Postgres::password`] followed by a newline (as `echo` writes it), mode
    /// 0600, owned by root.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (for `127.0.0.1`), when started with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("certs/ca.crt"))
    }

    /// The folder of the Unix socket (`.s.PGSQL.<port>`), for `psql -h`.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The cluster's temporary directory (data, socket, certificates, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's process guard (pid, log, describe).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The server's log of its current run (its stderr).
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// Whether the postmaster runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Runs `sql` (one or more statements, `;`-separated, each in its own transaction unless
    /// it says `BEGIN`) with `psql -X -q -At -v ON_ERROR_STOP=1` as the superuser over the Unix
    /// socket in the database `stackmedic`, and returns what it printed without the last
    /// newline: one line per row, columns separated by `|`.
    ///
    /// # Panics
    /// When `psql` fails, with its output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// As [`Postgres::psql`], returning `psql`'s error output instead of panicking (for a
    /// server that is stopped, or a statement expected to fail).
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_in(DATABASE, sql)
    }

    /// As [`Postgres::psql`], in database `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        self.try_psql_in(database, sql).unwrap_or_else(|e| {
            panic!(
                "psql as the superuser in {database} failed: {e}\n--- SQL ---\n{sql}\n--- server \
                 log ---\n{}",
                crate::process::tail(&self.process.stderr(), 4000)
            )
        })
    }

    /// As [`Postgres::try_psql`], in database `database`.
    pub fn try_psql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut command = as_postgres(Command::new(self.bin.join("psql")), self.user, self.dir());
        command
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .arg("--host")
            .arg(self.socket_dir())
            .args(["--port", &self.port.to_string()])
            .args(["--username=postgres", "--dbname", database]);
        run_psql(command, sql)
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`: clients are disconnected, a checkpoint
    /// is written) and waits for the postmaster to exit. Nothing happens when it is not
    /// running.
    ///
    /// # Panics
    /// When `pg_ctl` fails or the server does not exit within 90 s, with its log.
    pub fn stop(&mut self) {
        if !self.process.is_running() {
            return;
        }
        let out = as_postgres(Command::new(self.bin.join("pg_ctl")), self.user, self.dir())
            .args(["stop", "--mode=fast", "--wait"])
            .arg(format!("--timeout={}", START_TIMEOUT.as_secs()))
            .arg("--pgdata")
            .arg(self.data_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/pg_ctl: {e}", self.bin.display()));
        let exited = self.process.wait_timeout(START_TIMEOUT).is_some();
        assert!(
            out.status.success() && exited,
            "pg_ctl stop -m fast failed with {}:\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.process.describe()
        );
    }

    /// Kills the server as a crash would: the postmaster is stopped (so it forks nothing more),
    /// then it and every process it had started (backends, checkpointer, WAL writer, …) get
    /// `SIGKILL` at once; returns when they are all gone. Nothing is flushed or checkpointed;
    /// [`Postgres::start_again`] then runs crash recovery. Nothing happens when the server is
    /// not running.
    ///
    /// The children are killed too, so that none of them writes anything after the crash: a
    /// postmaster killed alone leaves them running until they notice its death, and a new
    /// postmaster started meanwhile refuses to start while they hold the old shared memory.
    ///
    /// # Panics
    /// When a child is still there 30 s after `SIGKILL`.
    pub fn kill9(&mut self) {
        if let Err(left) = kill_server(&mut self.process) {
            panic!("PostgreSQL's processes {left:?} are still there 30 s after SIGKILL");
        }
    }

    /// Starts the stopped or killed server again on the same data directory and port, and
    /// waits until it accepts connections (after crash recovery, when it was killed).
    ///
    /// # Panics
    /// When it is still running, or does not accept connections within 90 s (the port may have
    /// been taken meanwhile: the log says so).
    pub fn start_again(&mut self) {
        assert!(
            !self.process.is_running(),
            "start_again: PostgreSQL still runs (pid {}); stop() or kill9() it first",
            self.process.pid()
        );
        self.starts += 1;
        self.process = spawn_server(&self.bin, self.user, self.dir(), self.port, self.starts);
        if !wait_accepting(&mut self.process, &self.bin, self.port) {
            panic!(
                "PostgreSQL did not start again on 127.0.0.1:{} (it exited, or did not accept \
                 connections within {START_TIMEOUT:?}):\n{}",
                self.port,
                self.process.describe()
            );
        }
        self.check_login();
    }
}

impl Drop for Postgres {
    /// Immediate shutdown (`SIGQUIT`: no checkpoint, as a crash; the postmaster ends its
    /// children), then `SIGKILL` after 10 s; never panics.
    fn drop(&mut self) {
        if self.process.is_running() {
            self.process.signal("QUIT");
            if self.process.wait_timeout(Duration::from_secs(10)).is_none() {
                let _ = kill_server(&mut self.process);
            }
        }
    }
}

/// `command` run as the system user `postgres` in `dir`, with an environment of its own (no
/// `PG*` variable of the test's).
fn as_postgres(mut command: Command, user: (u32, u32), dir: &Path) -> Command {
    command
        .uid(user.0)
        .gid(user.1)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("LC_ALL", "C");
    command
}

/// Starts `postgres -D <dir>/data -p <port>` as the system user `postgres`.
fn spawn_server(bin: &Path, user: (u32, u32), dir: &Path, port: u16, start: u32) -> Process {
    let mut command = as_postgres(Command::new(bin.join("postgres")), user, dir);
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string()]);
    Process::spawn(&format!("postgres-start{start}"), command, dir)
}

/// Waits until the server accepts connections on TCP (its recovery done), or exits.
fn wait_accepting(process: &mut Process, bin: &Path, port: u16) -> bool {
    let port = port.to_string();
    let pg_isready = bin.join("pg_isready");
    let ready = crate::wait_until(START_TIMEOUT, Duration::from_millis(100), || {
        !process.is_running()
            || Command::new(&pg_isready)
                .args(["--host=127.0.0.1", "--port", &port, "--timeout=2"])
                .args(["--dbname=postgres", "--username=postgres", "--quiet"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    ready && process.is_running()
}

/// Runs `psql` (`command`, with its arguments) with `sql` on stdin; its stdout without the last
/// newline, or its exit status and stderr.
fn run_psql(mut command: Command, sql: &str) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run psql (Debian package `postgresql`): {e}"))?;
    let mut stdin = child.stdin.take().expect("psql's stdin is piped");
    let input = sql.to_owned();
    // Written by a thread: psql may print more than a pipe holds before it has read it all.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out: Output = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for psql: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    } else {
        Err(format!(
            "psql exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Runs `sql` with `psql -X -q -At -v ON_ERROR_STOP=1 <url>` as a client of the server over
/// TCP, with `password` in `PGPASSWORD`: the way an application role logs in. `url` is a
/// libpq connection string or URI (`postgres://…?sslmode=verify-full&sslrootcert=…`, or
/// `host=… hostaddr=… port=… …`). Returns what `psql` printed without the last newline, or
/// its exit status and error output.
pub fn psql_client(url: &str, password: &str, sql: &str) -> Result<String, String> {
    let mut command = Command::new(program("psql"));
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // No home, no client certificate, no pass file: nothing of the machine's user is used.
        .env("HOME", "/nonexistent")
        .env("PGSSLCERT", "/dev/null/none")
        .env("PGSSLKEY", "/dev/null/none")
        .env("PGPASSFILE", "/dev/null")
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
        .env("LC_ALL", "C")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "--dbname", url]);
    run_psql(command, sql)
}

/// Stops the postmaster (so it forks nothing more), then kills it and the processes it had
/// started with `SIGKILL`, and waits up to 30 s for them to be gone: the pids still there, if
/// any. Nothing happens when it is not running.
fn kill_server(process: &mut Process) -> Result<(), Vec<u32>> {
    if !process.is_running() {
        return Ok(());
    }
    process.signal("STOP");
    let children = children_of(process.pid());
    process.kill();
    for pid in &children {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    crate::wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        children.iter().all(|&pid| !alive(pid))
    });
    let left: Vec<u32> = children.into_iter().filter(|&pid| alive(pid)).collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(left)
    }
}

/// Pids of the processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let (_, ppid) = stat_state_ppid(pid)?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// The state letter and parent pid of `pid`, from `/proc/<pid>/stat`.
fn stat_state_ppid(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` exists and is not a zombie (an exited process whose new parent has not reaped
/// it yet holds nothing of the server's).
fn alive(pid: u32) -> bool {
    stat_state_ppid(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}
