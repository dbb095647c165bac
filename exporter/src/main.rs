//! `stackmedic-exporter`: parses flags and runs the library.

use std::process::ExitCode;

use clap::Parser;
use stackmedic_common::cli::CommonArgs;
use stackmedic_common::{logging, server, webconfig};
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
    if let Err(e) = logging::init(cli.common.log_level, cli.common.log_format) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(cli.common)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exporter stopped");
            ExitCode::FAILURE
        }
    }
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

async fn start(args: CommonArgs) -> anyhow::Result<()> {
    let config = config::load(args.config_file.as_deref())
        .map_err(|errs| anyhow::anyhow!("invalid configuration:\n{errs}"))?;
    let web = webconfig::load(args.web_config_file.as_deref())
        .map_err(|errs| anyhow::anyhow!("invalid web configuration:\n{errs}"))?;
    let address = args
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let listener = server::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
