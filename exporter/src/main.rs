//! `stackmedic-exporter`: parses flags and runs the library.

use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::{healthcheck, runtime};
use stackmedic_exporter::{config, run, Options, DEFAULT_LISTEN_ADDRESS};
use tokio_util::sync::CancellationToken;

/// Probes the health of a self-hosted stack and publishes it for Prometheus.
#[derive(Parser)]
#[command(
    name = "stackmedic-exporter",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

const LONG_ABOUT: &str = "\
Probes the health of a self-hosted stack and publishes it for Prometheus.

Each probe of the configuration (readiness and status endpoints, X-Status-Path sampling and access
logs, SRI manifests, backups, HLS streams, TwinCAT ADS routes, Docker containers, DNS names, TCP
ports and TLS certificates, disk space, Docker disk usage, JSON admin APIs) runs on its own
interval with its own timeout; /metrics serves the latest results, so a slow or dead target never
delays a scrape. Without --config.file the embedded default configuration is used: it reports
every container of the local Docker Engine (--config.print-default shows it).";

const AFTER_LONG_HELP: &str = "\
Endpoints:
  /             status page: every probe and each thing it watches, problems first
  /metrics      the probes' metrics and the exporter's own
  /-/healthy    200 while the process serves
  /-/ready      200 when ready to serve
  /-/reload     POST: reload the configuration file (with --web.enable-lifecycle)

Signals:
  SIGHUP        reload the configuration file; a bad file keeps the running configuration and
                sets stackmedic_exporter_config_last_reload_successful to 0
  SIGTERM       stop

Environment:
  STACKMEDIC_WEB_LISTEN_ADDRESS   --web.listen-address when the flag is not given
  DOCKER_HOST                     the Docker Engine of docker probes that name no host

Files of the Debian package:
  /etc/stackmedic/exporter.yml           the configuration (the embedded default, written out)
  /etc/stackmedic/exporter.d/            one file per stack (*.yml): its probes
  /etc/default/stackmedic-exporter       ARGS: further flags for the systemd unit
  /usr/share/doc/stackmedic-exporter/    docs/configuration.md, docs/metrics.md and
                                         docker-socket.conf, the drop-in that grants the
                                         Docker socket (opt-in)
  /usr/share/doc/stackmedic-exporter/examples/  the example set and its README

Exit status: 0 after a clean stop, a valid --config.check or a healthy --healthcheck; 1 otherwise.";

fn main() -> ExitCode {
    stackmedic_exporter::memory::configure_allocator();
    let cli = Cli::parse();
    if cli.common.config_print_default {
        print!("{}", config::EMBEDDED_DEFAULT);
        return ExitCode::SUCCESS;
    }
    if cli.common.healthcheck {
        return healthcheck::run(
            "stackmedic-exporter",
            cli.common.listen_address_or(DEFAULT_LISTEN_ADDRESS),
        );
    }
    if cli.common.config_check {
        return check(&cli.common);
    }
    let args = cli.common.clone();
    runtime::run_until_signal(&args, "stackmedic-exporter", |shutdown| {
        start(cli.common, shutdown)
    })
}

fn check(args: &CommonArgs) -> ExitCode {
    let mut ok = true;
    match config::load(args.config_file.as_deref()) {
        Ok(c) => {
            let name = args
                .config_file
                .as_ref()
                .map_or("embedded default".into(), |p| p.display().to_string());
            println!("{name}: ok ({} probes)", c.probes.len());
            if c.probes.is_empty() {
                eprintln!("warning: {name}: {}", config::NO_PROBES);
            }
        }
        Err(errs) => {
            ok = false;
            for p in &errs.problems {
                eprintln!("{p}");
            }
        }
    }
    ok &= args.check_web_config();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn start(args: CommonArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = config::load(args.config_file.as_deref())
        .map_err(|errs| anyhow::anyhow!("invalid configuration:\n{errs}"))?;
    let web = args
        .web_security()
        .map_err(|errs| anyhow::anyhow!("invalid web configuration:\n{errs}"))?;
    let listener = args.bind(DEFAULT_LISTEN_ADDRESS).await?;
    run(
        listener,
        Options {
            config_file: args.config_file,
            config,
            web,
        },
        shutdown,
    )
    .await
}
