//! `stackmedic-remediator`: parses flags and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::{healthcheck, runtime};
use stackmedic_remediator::{config, contract, Options, DEFAULT_LISTEN_ADDRESS};
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

    /// With --config.check: a Prometheus rule file whose alerts the configuration must agree
    /// with (repeatable); every remediable alert must have a rule, every rule an alert.
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

Signals:
  SIGHUP           reload the configuration file; a bad file keeps the running configuration
                   and sets stackmedic_remediator_config_last_reload_successful to 0
  SIGTERM          stop; jobs not yet run stay in the store and run after the next start, and
                   an action that had started is verified then, not run again

Environment:
  STACKMEDIC_WEB_LISTEN_ADDRESS   --web.listen-address when the flag is not given
  DOCKER_HOST                     the Docker Engine of docker targets that name no host

Files of the Debian package:
  /etc/stackmedic/remediator.yml           the configuration (the embedded default, written out)
  /etc/default/stackmedic-remediator       ARGS: further flags for the systemd unit
  /var/lib/stackmedic-remediator/          the store (--storage.path)
  /usr/share/doc/stackmedic-remediator/    docs/remediator.md, docs/configuration.md and
                                           docker-socket.conf, the drop-in that grants the
                                           Docker socket (opt-in)

Contract check (reads files only):
  stackmedic-remediator --config.check --config.file remediator.yml \\
      --rules.file stackmedic.rules.yml --alertmanager.config.file alertmanager.yml \\
      --exporter.config.file exporter.yml
  reports every remediable alert (one with a `remediation` label) no rule matches, every rule
  whose alertname matcher names no alert, every allow-list naming values the alert's labels
  cannot take, and every Alertmanager route or inhibition that would keep a remediable alert
  or its resolve from the remediator, each with its file.

Exit status: 0 after a clean stop, a valid --config.check or a healthy --healthcheck; 1 otherwise.";

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let config = match config::load(cli.common.config_file.as_deref()) {
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
        return check(&cli, &config);
    }
    for warning in config::check_host(&config).warnings {
        eprintln!("warning: {warning}");
    }
    if config.rules.is_empty() {
        eprintln!("warning: {}", config::NO_RULES);
    }
    let args = cli.common.clone();
    runtime::run_until_signal(&args, "stackmedic-remediator", |shutdown| {
        start(cli, config, shutdown)
    })
}

/// `--config.check` past loading: the web configuration, the host (a compose command that
/// does not exist), and with `--rules.file` the contract with the rules, Alertmanager and the
/// exporter.
fn check(cli: &Cli, config: &config::Config) -> ExitCode {
    let mut ok = cli.common.check_web_config();
    let host = config::check_host(config);
    for e in &host.errors {
        eprintln!("{e}");
    }
    for w in &host.warnings {
        eprintln!("warning: {w}");
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
    let listener = cli.common.bind(DEFAULT_LISTEN_ADDRESS).await?;
    stackmedic_remediator::run(
        listener,
        config,
        Options {
            config_file: cli.common.config_file,
            storage_path: cli.storage_path,
            security,
        },
        shutdown,
    )
    .await
}
