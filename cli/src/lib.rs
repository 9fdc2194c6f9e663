//! Shared code of the command-line tools: the connection options `amqtt_pub` and `amqtt_sub`
//! have in common (aMQTT's flags plus mosquitto's `-h -p -u -P -L`), turning them into a
//! configured [`amqtt_client::MQTTClient`], logging setup, exit codes, and `amqtt_sub`'s output
//! formats. No MQTT is parsed here: the client crate does that.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod connect;
pub mod format;

use std::fmt;
use std::future::Future;
use std::process::ExitCode;

/// A failure that ends a tool: a one-line message and the exit code.
///
/// Exit codes follow aMQTT: 1 for connection and configuration errors, 2 for usage errors
/// (clap reports those itself), plus 27 for `amqtt_sub -W` timeouts (libmosquitto's
/// `MOSQ_ERR_TIMEOUT`, as `mosquitto_sub` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The process exit code.
    pub code: u8,
    /// What went wrong, on one line.
    pub message: String,
}

impl CliError {
    /// A connection or configuration error (exit code 1).
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Exit code of `amqtt_sub -W` when the timeout expires.
pub const EXIT_TIMEOUT: u8 = 27;

/// Prints `tool: message` on stderr as one line and returns the exit code.
pub fn report(tool: &str, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let one_line = error.message.replace('\n', " ");
            eprintln!("{tool}: {one_line}");
            ExitCode::from(error.code)
        }
    }
}

/// Runs a tool's `run` future on a new tokio runtime and returns its exit code, reporting a
/// failure (including a runtime that cannot start) as one line (see [`report`]).
pub fn run_to_exit<F>(tool: &str, run: F) -> ExitCode
where
    F: Future<Output = Result<(), CliError>>,
{
    let result = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run),
        Err(e) => Err(CliError::failure(format!("cannot start: {e}"))),
    };
    report(tool, result)
}

/// Logs to stderr: nothing by default (a failure is reported as one line by [`report`]),
/// everything (including each packet, through the packet logger plugin) with `-d`. `--quiet`
/// keeps it silent even with `RUST_LOG`, which otherwise overrides the default.
pub fn init_logging(debug: bool, quiet: bool) {
    if quiet {
        return;
    }
    let default = if debug { "debug" } else { "off" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(debug)
        .try_init();
}

/// Waits for Ctrl-C or, on Unix, SIGTERM: the signals after which the tools disconnect cleanly.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
