//! The `stackmedic-remediator` binary: flags, configuration, then [`stackmedic_remediator::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_remediator::{config, Options, DEFAULT_LISTEN_ADDRESS};
use tokio_util::sync::CancellationToken;

/// Acts on Alertmanager webhooks with scoped, durable, audited recovery actions.
#[derive(Debug, Parser)]
#[command(name = "stackmedic-remediator", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Directory of the durable store (jobs, audit history, escalations).
    #[arg(long = "storage.path", value_name = "DIR", default_value = "data")]
    storage_path: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        println!(
            "configuration is valid: {} rules, {} targets",
            config.rules.len(),
            config.targets.len()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = stackmedic_common::logging::init(cli.common.log_level, cli.common.log_format) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stackmedic-remediator stopped");
            eprintln!("stackmedic-remediator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, config: config::Config) -> anyhow::Result<()> {
    let security = stackmedic_common::webconfig::load(cli.common.web_config_file.as_deref())
        .map_err(|e| anyhow::anyhow!("web configuration: {e}"))?;
    let address = cli
        .common
        .listen_address
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let listener = stackmedic_common::server::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal_token.cancel();
    });
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
