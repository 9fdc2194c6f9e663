//! `amqtt`: runs the broker, with aMQTT's command-line flags (`-c FILE`, `-d`, `--version`).
//!
//! Without `-c` it runs the default configuration, listening on 127.0.0.1:1883 only. A bad
//! config file is a one-line error naming the file, the key and what was expected, and exit
//! status 1 (aMQTT silently falls back to its defaults). Ctrl-C and SIGTERM stop the broker
//! cleanly: clients are disconnected and queued writes flushed, then the process exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use amqtt_broker::{Broker, BrokerConfig};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Command-line script for running a MQTT 3.1.1 broker.
#[derive(Debug, Parser)]
#[command(
    name = "amqtt",
    version,
    about = "Command-line script for running a MQTT 3.1.1 broker."
)]
struct Args {
    /// broker configuration file
    #[arg(short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Enable debug messages
    #[arg(short = 'd')]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.debug);
    let config = match &args.config {
        Some(path) => match BrokerConfig::from_yaml_file(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("amqtt: config error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => BrokerConfig::default(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amqtt: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: BrokerConfig) -> ExitCode {
    let broker = match Broker::new(config) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("amqtt: broker failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = broker.start().await {
        eprintln!("amqtt: broker failed to start: {e}");
        broker.shutdown().await;
        return ExitCode::FAILURE;
    }
    match stop_signal().await {
        Ok(signal) => tracing::info!("{signal} received: stopping the broker"),
        Err(e) => tracing::error!("cannot wait for a stop signal ({e}); stopping the broker"),
    }
    broker.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM; returns which.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if debug {
        builder.with_target(true).with_line_number(true).init();
    } else {
        builder.with_target(false).init();
    }
}
