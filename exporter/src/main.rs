//! `stackmedic-exporter`: parses flags and runs the library.

use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::{runtime, server, webconfig};
use stackmedic_exporter::{config, run, Options, DEFAULT_LISTEN_ADDRESS};
use tokio_util::sync::CancellationToken;

/// Probes the health of a self-hosted stack and publishes it for Prometheus.
#[derive(Parser)]
#[command(name = "stackmedic-exporter", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Ok(c) => println!(
            "{}: ok ({} probes)",
            args.config_file
                .as_ref()
                .map_or("embedded default".into(), |p| p.display().to_string()),
            c.probes.len()
        ),
        Err(errs) => {
            ok = false;
            for p in &errs.problems {
                eprintln!("{p}");
            }
        }
    }
    if let Some(web) = &args.web_config_file {
        if let Err(errs) = webconfig::load(Some(web)) {
            ok = false;
            for p in &errs.problems {
                eprintln!("{}: {p}", web.display());
            }
        }
    }
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
    let address = args
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let listener = server::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
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
