//! `stackmedic-remediator`: parses flags and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::{runtime, server, webconfig};
use stackmedic_remediator::{config, Options, DEFAULT_LISTEN_ADDRESS};
use tokio_util::sync::CancellationToken;

/// Acts on Alertmanager webhooks with scoped, durable, audited recovery actions.
#[derive(Debug, Parser)]
#[command(name = "stackmedic-remediator", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Directory of the durable store (jobs, audit history, escalations).
    #[arg(long = "storage.path", value_name = "DIR", default_value = "data")]
    storage_path: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        if let Some(web) = &cli.common.web_config_file {
            if let Err(errs) = webconfig::load(Some(web)) {
                for p in &errs.problems {
                    eprintln!("{}: {p}", web.display());
                }
                return ExitCode::FAILURE;
            }
        }
        println!(
            "configuration is valid: {} rules, {} targets",
            config.rules.len(),
            config.targets.len()
        );
        return ExitCode::SUCCESS;
    }
    let args = cli.common.clone();
    runtime::run_until_signal(&args, "stackmedic-remediator", |shutdown| {
        start(cli, config, shutdown)
    })
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
    let address = cli
        .common
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let listener = server::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
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
