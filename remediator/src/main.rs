//! `stackmedic-remediator`: parses flags and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::include::Included;
use stackmedic_common::{healthcheck, runtime};
use stackmedic_remediator::{config, contract, Options, Storage, DEFAULT_LISTEN_ADDRESS};
use tokio_util::sync::CancellationToken;

/// Acts on Alertmanager webhooks with scoped, durable, audited recovery actions.
#[derive(Debug, Parser)]
#[command(
    name = "stackmedic-remediator",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Directory of the durable store (jobs, incidents, escalations, audit history).
    #[arg(long = "storage.path", value_name = "DIR", default_value = "data")]
    storage_path: PathBuf,

    #[command(flatten)]
    storage: StorageArgs,

    /// This replica's name among those sharing a store: on the page, in the audit history,
    /// logs and metrics. Default: the host name.
    #[arg(long = "replica.name", value_name = "NAME")]
    replica_name: Option<String>,

    /// How long this replica's claim on its jobs (and the leadership) lasts without renewal:
    /// another replica takes its jobs over after it. Renewed every sixth of it.
    #[arg(long = "replica.lease", value_name = "DURATION", default_value = "6s", value_parser = duration)]
    replica_lease: std::time::Duration,

    /// With --config.check: a Prometheus rule file, or a glob pattern of them as Prometheus'
    /// rule_files take it (repeatable), whose alerts the configuration must agree with; every
    /// remediable alert must have a rule, every rule an alert.
    #[arg(long = "rules.file", value_name = "PATH", requires = "config_check")]
    rules_files: Vec<PathBuf>,

    /// With --config.check and --rules.file: Alertmanager's configuration, whose routes and
    /// inhibitions must let every remediable alert and its resolve reach the remediator.
    #[arg(
        long = "alertmanager.config.file",
        value_name = "PATH",
        requires = "rules_files"
    )]
    alertmanager_config_file: Option<PathBuf>,

    /// With --config.check and --rules.file: a stackmedic-exporter configuration (repeatable),
    /// whose probe names and containers tell which values alert labels can take.
    #[arg(
        long = "exporter.config.file",
        value_name = "PATH",
        requires = "rules_files"
    )]
    exporter_config_files: Vec<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// On-call's commands against a running remediator.
#[derive(Debug, Subcommand)]
enum Command {
    /// Reset an escalated or flapping subject and re-arm it: its escalated incident closes (the
    /// page resolves), its flapping history is cleared, and its alerts still firing are acted
    /// on again (POST /api/subjects/{subject}/reset).
    Reset(ResetArgs),
    /// Pause the remediator: no action starts until `resume`; alerts are still recorded and
    /// incidents opened, held (POST /api/pause).
    Pause(PauseArgs),
    /// End the pause: held incidents act again, one subject of a target at a time
    /// (POST /api/resume).
    Resume(Remote),
    /// The store itself.
    #[command(subcommand)]
    Storage(StorageCommand),
}

/// Commands on a store (run with the remediators stopped).
#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Copy a store into an empty one: jobs, incidents, escalations, occurrences and the audit
    /// history, such as from one host's SQLite to the PostgreSQL a pair of replicas shares.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The store to copy: sqlite:///DIR or postgres://USER@HOST:PORT/DATABASE.
    #[arg(long, value_name = "URL")]
    from: String,

    /// The store to copy into (empty, or without jobs, incidents and history).
    #[arg(long, value_name = "URL")]
    to: String,

    #[command(flatten)]
    storage: StorageArgs,
}

/// How to reach the store.
#[derive(Debug, Args, Clone)]
struct StorageArgs {
    /// The store as a URL instead of --storage.path: sqlite:///DIR, or
    /// postgres://USER@HOST:PORT/DATABASE[?sslmode=require] for replicas sharing one
    /// PostgreSQL.
    #[arg(long = "storage.url", value_name = "URL")]
    url: Option<String>,

    /// A file holding PostgreSQL's password (else the environment variable PGPASSWORD; never
    /// in the URL).
    #[arg(long = "storage.password-file", value_name = "PATH")]
    password_file: Option<PathBuf>,

    /// A CA certificate (PEM) to trust for PostgreSQL's server certificate, besides the
    /// system's.
    #[arg(long = "storage.tls-ca-file", value_name = "PATH")]
    tls_ca_file: Option<PathBuf>,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) {
        return Err("at least 1s".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// The subject as the page and /api/actions show it, such as container:owui.
    subject: String,

    /// Why, kept in the audit history.
    #[arg(long, default_value = "")]
    note: String,

    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
struct PauseArgs {
    /// Why (required), shown on the page and kept in the audit history.
    #[arg(long)]
    reason: String,

    /// The planned end, RFC 3339 (an alert fires when the pause lasts longer).
    #[arg(long, conflicts_with = "length")]
    until: Option<String>,

    /// The planned length instead of --until, such as 2h.
    #[arg(long = "for", value_name = "DURATION")]
    length: Option<String>,

    #[command(flatten)]
    remote: Remote,
}

/// How to reach a running remediator.
#[derive(Debug, Args)]
struct Remote {
    /// The remediator's base URL.
    #[arg(
        long = "remediator.url",
        value_name = "URL",
        default_value = "http://127.0.0.1:8791"
    )]
    url: String,

    /// A file holding the webhook's bearer token.
    #[arg(long = "bearer-token-file", value_name = "PATH")]
    bearer_token_file: Option<PathBuf>,

    /// An environment variable holding the webhook's bearer token.
    #[arg(long = "bearer-token-env", value_name = "NAME")]
    bearer_token_env: Option<String>,

    /// A basic-auth user name (the webhook's, or a web user's).
    #[arg(long = "basic-auth.username", value_name = "NAME")]
    username: Option<String>,

    /// A file holding the basic-auth password.
    #[arg(long = "basic-auth.password-file", value_name = "PATH")]
    password_file: Option<PathBuf>,

    /// An environment variable holding the basic-auth password.
    #[arg(long = "basic-auth.password-env", value_name = "NAME")]
    password_env: Option<String>,

    /// A CA certificate (PEM) to trust for an https:// URL.
    #[arg(long = "tls.ca-file", value_name = "PATH")]
    ca_file: Option<PathBuf>,
}

const LONG_ABOUT: &str = "\
Acts on Alertmanager webhooks with scoped, durable, audited recovery actions.

Alertmanager posts firing alerts to POST /webhook. Each alert is matched against the configured
rules; a rule names an action (restart or start a container, a sequence of admin-API calls, a
TwinCAT route add, docker compose up) on a target defined in the configuration, and a label can
only choose among configured targets and allow-listed names. Every job is stored before the
webhook is answered. Each subject has one incident: an alert acts once, a failed attempt is
retried at a stored time (backoff), and when attempts run out or the subject flaps, an
escalation alert pages a human through Alertmanager until the alert resolves.
Without --config.file the embedded default configuration is used: loopback only, a dry run, and
restarts only of containers labelled stackmedic.restart=true (--config.print-default shows it).";

const AFTER_LONG_HELP: &str = "\
Endpoints:
  POST /webhook    Alertmanager webhook receiver (payload version 4)
  /                on-call page: incidents, escalations, recent actions
  /api/actions     incidents, escalations and the audit history as JSON
  /metrics         the remediator's metrics
  /-/healthy       200 while the process serves
  /-/ready         200 when ready to accept webhooks
  /-/reload        POST: reload the configuration file (with --web.enable-lifecycle)
  /api/subjects/{subject}/reset
                   POST: reset an escalated or flapping subject (webhook credentials or a
                   web user); the same as `stackmedic-remediator reset SUBJECT`

Signals:
  SIGHUP           reload the configuration file; a bad file keeps the running configuration
                   and sets stackmedic_remediator_config_last_reload_successful to 0
  SIGTERM          stop; jobs not yet run stay in the store and run after the next start, and
                   an action that had started is verified then, not run again

Environment:
  STACKMEDIC_WEB_LISTEN_ADDRESS   --web.listen-address when the flag is not given
  DOCKER_HOST                     the Docker Engine of docker targets that name no host
  PGPASSWORD                      PostgreSQL's password when --storage.password-file is not given

Replicas sharing one PostgreSQL (docs/ha.md):
  stackmedic-remediator --storage.url=postgres://stackmedic@db.example:5432/stackmedic \\
      --storage.password-file=/etc/stackmedic/secrets/postgres-password --replica.name=a
  each replica holds a lease (--replica.lease) on the jobs it runs; when it dies, another takes
  them over after the lease and verifies a started action instead of running it again. One
  leader posts escalations, reconciles, re-checks heals and prunes.
  stackmedic-remediator storage migrate --from sqlite:///var/lib/stackmedic-remediator \\
      --to postgres://stackmedic@db.example:5432/stackmedic --storage.password-file=PATH
  copies one host's store into an empty PostgreSQL (remediators stopped).

Files of the Debian package:
  /etc/stackmedic/remediator.yml           the configuration (the embedded default, written out)
  /etc/stackmedic/remediator.d/            one file per stack (*.yml): its targets and rules
  /etc/default/stackmedic-remediator       ARGS: further flags for the systemd unit
  /var/lib/stackmedic-remediator/          the store (--storage.path)
  /usr/share/doc/stackmedic-remediator/    docs/remediator.md, docs/ha.md,
                                           docs/configuration.md and docker-socket.conf, the
                                           drop-in that grants the Docker socket (opt-in)
  /usr/share/doc/stackmedic-remediator/examples/  the example set and its README

Contract check (reads files only, and the files the configurations include):
  stackmedic-remediator --config.check --config.file remediator.yml \\
      --rules.file stackmedic.rules.yml --rules.file 'stacks/*.rules.yml' \\
      --alertmanager.config.file alertmanager.yml --exporter.config.file exporter.yml
  reports every remediable alert (one with a `remediation` label) no rule matches, every rule
  whose alertname matcher names no alert, every allow-list naming values the alert's labels
  cannot take, every Alertmanager route or inhibition that would keep a remediable alert or
  its resolve from the remediator, and every remediable alert whose ...Persistent twin and
  escalation would both page, each with its file. --rules.file takes globs like rule_files.

Exit status: 0 after a clean stop, a valid --config.check or a healthy --healthcheck; 1 otherwise.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Reset(a)) => {
            let subject: String = percent_encoding::utf8_percent_encode(
                &a.subject,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            return remote(
                &a.remote,
                &format!("/api/subjects/{subject}/reset"),
                &serde_json::json!({ "note": a.note }),
            );
        }
        Some(Command::Pause(a)) => {
            let mut body = serde_json::json!({ "reason": a.reason });
            if let Some(u) = &a.until {
                body["until"] = u.clone().into();
            }
            if let Some(l) = &a.length {
                body["for"] = l.clone().into();
            }
            return remote(&a.remote, "/api/pause", &body);
        }
        Some(Command::Resume(r)) => return remote(r, "/api/resume", &serde_json::json!({})),
        Some(Command::Storage(StorageCommand::Migrate(m))) => return migrate(m),
        None => {}
    }
    if cli.common.config_print_default {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    if cli.common.healthcheck {
        return healthcheck::run(
            "stackmedic-remediator",
            cli.common.listen_address_or(DEFAULT_LISTEN_ADDRESS),
        );
    }
    // The configuration is checked before anything starts, so `--config.check` and a normal
    // start report the same problems the same way.
    let (config, origins) = match config::load_included(cli.common.config_file.as_deref()) {
        Ok(c) => c,
        Err(errs) => {
            for p in &errs.problems {
                eprintln!("{p}");
            }
            eprintln!(
                "configuration is invalid: {} problem(s)",
                errs.problems.len()
            );
            return ExitCode::FAILURE;
        }
    };
    if cli.common.config_check {
        return check(&cli, &config, &origins);
    }
    for warning in config::check_host(&config).warnings {
        eprintln!("warning: {}", located(&origins, &warning));
    }
    if config.rules.is_empty() {
        eprintln!("warning: {}", config::NO_RULES);
    }
    let args = cli.common.clone();
    runtime::run_until_signal(&args, "stackmedic-remediator", |shutdown| {
        start(cli, config, shutdown)
    })
}

/// A host check's message (`targets[2].compose.file: …`) with its path as written: in the
/// configuration file, or in the file it includes.
fn located(origins: &Included, message: &str) -> String {
    match message.split_once(": ") {
        Some((path, rest)) => format!("{}: {rest}", origins.locate_path(path)),
        None => message.to_string(),
    }
}

/// `--config.check` past loading: the web configuration, the host (a compose command that
/// does not exist), and with `--rules.file` the contract with the rules, Alertmanager and the
/// exporter.
fn check(cli: &Cli, config: &config::Config, origins: &Included) -> ExitCode {
    let mut ok = cli.common.check_web_config();
    let host = config::check_host(config);
    for e in &host.errors {
        eprintln!("{}", located(origins, e));
    }
    for w in &host.warnings {
        eprintln!("warning: {}", located(origins, w));
    }
    if config.rules.is_empty() {
        eprintln!("warning: {}", config::NO_RULES);
    }
    ok &= host.errors.is_empty();
    let summary = format!(
        "{} rules, {} targets",
        config.rules.len(),
        config.targets.len()
    );
    if cli.rules_files.is_empty() {
        if !ok {
            eprintln!("configuration is invalid");
            return ExitCode::FAILURE;
        }
        println!("configuration is valid: {summary}");
        return ExitCode::SUCCESS;
    }
    let file = cli
        .common
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("(embedded default)"));
    let report = contract::check(&contract::Sources {
        remediator_file: &file,
        config,
        remediator_origins: origins,
        rule_files: &cli.rules_files,
        alertmanager_file: cli.alertmanager_config_file.as_deref(),
        exporter_files: &cli.exporter_config_files,
    });
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for f in &report.findings {
        eprintln!("{f}");
    }
    if !report.findings.is_empty() || !ok {
        eprintln!(
            "contract is broken: {} finding(s) over {} alerts, {} of them remediable",
            report.findings.len(),
            report.alerts,
            report.remediable
        );
        return ExitCode::FAILURE;
    }
    println!(
        "configuration is valid: {summary}; contract holds: {} alerts, {} remediable, each matched by a rule{}",
        report.alerts,
        report.remediable,
        if cli.alertmanager_config_file.is_some() {
            " and routed to the remediator with its resolve"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}

async fn start(
    cli: Cli,
    config: config::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let security = cli
        .common
        .web_security()
        .map_err(|errs| anyhow::anyhow!("invalid web configuration:\n{errs}"))?;
    let replica_name = cli
        .replica_name
        .clone()
        .unwrap_or_else(stackmedic_remediator::store::Replica::host_name);
    let storage = match &cli.storage.url {
        Some(url) => Storage::from_url(
            url,
            cli.storage.password_file.as_deref(),
            cli.storage.tls_ca_file.as_deref(),
            &replica_name,
        )?,
        None => Storage::Sqlite(cli.storage_path.clone()),
    };
    let listener = cli.common.bind(DEFAULT_LISTEN_ADDRESS).await?;
    stackmedic_remediator::run(
        listener,
        config,
        Options {
            config_file: cli.common.config_file,
            storage,
            replica_name,
            lease: cli.replica_lease,
            security,
        },
        shutdown,
    )
    .await
}

/// `storage migrate`: copies one store into another.
fn migrate(m: &MigrateArgs) -> ExitCode {
    let open = |url: &str| -> anyhow::Result<stackmedic_remediator::store::Store> {
        Storage::from_url(
            url,
            m.storage.password_file.as_deref(),
            m.storage.tls_ca_file.as_deref(),
            "storage-migrate",
        )?
        .open(stackmedic_remediator::store::Replica::new(
            "storage-migrate",
        ))
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let from = open(&m.from)?;
        let to = open(&m.to)?;
        Ok::<_, anyhow::Error>(stackmedic_remediator::store::migrate::copy(&from, &to).await?)
    });
    match result {
        Ok(copied) => {
            println!("copied {} into {}: {copied}", m.from, m.to);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One of on-call's commands: POSTs `body` to `path` of the running remediator and prints its
/// answer; exit 0 when it was done.
fn remote(args: &Remote, path: &str, body: &serde_json::Value) -> ExitCode {
    match remote_request(args, path, body) {
        Ok((true, text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok((false, text)) => {
            eprintln!("{text}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the request; returns whether it was done and what to print.
fn remote_request(
    args: &Remote,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(bool, String)> {
    use stackmedic_common::config::read_secret;
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &args.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let client = builder.build()?;
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let mut req = client.post(&url).json(body);
    if args.bearer_token_file.is_some() || args.bearer_token_env.is_some() {
        let token = read_secret(
            args.bearer_token_file.as_deref(),
            args.bearer_token_env.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("bearer token: {e}"))?;
        req = req.bearer_auth(token);
    } else if let Some(user) = &args.username {
        let password = read_secret(args.password_file.as_deref(), args.password_env.as_deref())
            .map_err(|e| anyhow::anyhow!("basic-auth password: {e}"))?;
        req = req.basic_auth(user, Some(password));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!("POST {url}: {}", stackmedic_common::errors::error_chain(&e))
        })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let text = body
            .get("message")
            .or_else(|| body.get("error"))
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| body.to_string(), str::to_string);
        Ok((status.is_success(), format!("{status}: {text}")))
    })
}
