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
    // Install the signal handlers before anything listens, so a SIGTERM sent as soon as the
    // broker logs that it is listening is always handled (and never kills the process).
    let stop = match StopSignals::install() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("amqtt: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let signal = stop.wait().await;
    tracing::info!("{signal} received: stopping the broker");
    broker.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the moment they are installed.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Waits for the first stop signal; returns its name.
    async fn wait(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
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
