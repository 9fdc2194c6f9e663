//! `amqtt`: runs the broker, with aMQTT's command-line flags (`-c FILE`, `-d`, `--version`).
//!
//! Without `-c` it runs the default configuration, listening on 127.0.0.1:1883 only. A bad
//! config file is a one-line error naming the file, the key and what was expected, and exit
//! status 1 (aMQTT silently falls back to its defaults). Ctrl-C and SIGTERM stop the broker
//! cleanly: clients are disconnected and queued writes flushed, then the process exits 0.
//! SIGHUP re-reads the config file and reloads password files and ACLs without dropping
//! clients; a reload that fails keeps every old setting and logs why. `--check-config`
//! validates a config (plugins, password files, certificate files included) and exits.
//! Logs go to stderr from a writer thread behind a bounded queue: when stderr is not read (a
//! full pipe), log lines are dropped and counted, and the broker keeps serving.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amqtt_broker::{Broker, BrokerConfig};
use clap::Parser;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
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
    /// Validate the configuration given with -c and exit: 0 when it is valid, 1 with
    /// `file:line: key: problem` when it is not
    #[arg(long = "check-config", requires = "config")]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check_config {
        return check_config(args.config.as_deref());
    }
    let (_log_guard, dropped_lines) = init_logging(args.debug);
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
    let code = runtime.block_on(run(config, args.config));
    let dropped = dropped_lines.dropped_lines();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "log lines were dropped: stderr was not read fast enough"
        );
    }
    code
}

/// `--check-config`: loads the file as the broker would (plugins and their password files
/// included), checks that the certificate files it names exist, and reports the first problem
/// as `file:line: key: problem`.
fn check_config(path: Option<&Path>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("amqtt: --check-config needs -c FILE");
        return ExitCode::FAILURE;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let report = |key: &str, problem: &dyn std::fmt::Display| {
        let line = line_of_key(&text, key);
        eprintln!("{}:{line}: {key}: {problem}", path.display());
        ExitCode::FAILURE
    };
    let config = match BrokerConfig::from_yaml_file(path) {
        Ok(config) => config,
        Err(e) => return report(&e.key, &e.message),
    };
    for (name, l) in &config.listeners {
        let files = [
            ("certfile", &l.certfile),
            ("keyfile", &l.keyfile),
            ("cafile", &l.cafile),
            ("capath", &l.capath),
        ];
        for (key, file) in files {
            if let Some(file) = file {
                if !file.exists() {
                    let key = format!("listeners.{name}.{key}");
                    return report(&key, &format!("{} does not exist", file.display()));
                }
            }
        }
    }
    match Broker::new(config) {
        Ok(_) => {
            println!("{}: configuration OK", path.display());
            ExitCode::SUCCESS
        }
        Err(amqtt_broker::BrokerError::Config(e)) => report(&e.key, &e.message),
        Err(e) => report("plugins", &e),
    }
}

/// The 1-based line of the YAML key at dotted path `key` in `text` (1 when it cannot be
/// found). Segments are matched greedily, so plugin names containing dots are found too.
fn line_of_key(text: &str, key: &str) -> usize {
    let segments: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = 0; // index of the last line matched
    let mut from = 0;
    let mut i = 0;
    while i < segments.len() {
        let mut matched = false;
        // The longest run of segments that names one key.
        for j in (i + 1..=segments.len()).rev() {
            let name = segments.get(i..j).map(|s| s.join(".")).unwrap_or_default();
            let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                let t = t.trim_start_matches(['"', '\'']);
                t.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.trim_start_matches(['"', '\'']).starts_with(':'))
            });
            if let Some((n, _)) = hit {
                found = n;
                from = n + 1;
                i = j;
                matched = true;
                break;
            }
        }
        if !matched {
            break;
        }
    }
    found + 1
}

async fn run(config: BrokerConfig, path: Option<PathBuf>) -> ExitCode {
    // Install the signal handlers before anything listens: a SIGTERM or SIGHUP sent as soon as
    // the broker logs that it is listening must be handled, never kill the process.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
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
    loop {
        match signals.next().await {
            Received::Stop(signal) => {
                tracing::info!("{signal} received: stopping the broker");
                break;
            }
            Received::Reload => reload(&broker, path.as_deref()),
        }
    }
    broker.shutdown().await;
    ExitCode::SUCCESS
}

/// Re-reads the config file and reloads the plugins' password files and ACLs
/// ([`Broker::reload_plugins`]); a file that no longer loads keeps every old setting (unlike
/// mosquitto before CVE-2017-7652).
fn reload(broker: &Broker, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP received: no config file to reload (started without -c)");
        return;
    };
    let reloaded =
        BrokerConfig::from_yaml_file(path).and_then(|config| broker.reload_plugins(&config));
    match reloaded {
        Ok(()) => tracing::info!(
            "SIGHUP received: reloaded password files and ACLs from {}",
            path.display()
        ),
        Err(e) => {
            tracing::error!("SIGHUP received: reload failed, keeping the previous settings: {e}")
        }
    }
}

/// What a signal asks for.
enum Received {
    /// Ctrl-C (SIGINT) or SIGTERM: stop the broker.
    Stop(&'static str),
    /// SIGHUP: reload password files and ACLs.
    Reload,
}

/// The signals the broker listens for, watched from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next signal.
    async fn next(&mut self) -> Received {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Received::Stop("SIGTERM"),
                _ = self.int.recv() => Received::Stop("SIGINT"),
                _ = self.hup.recv() => Received::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Received::Stop("Ctrl-C")
        }
    }
}

/// Log lines buffered for the writer thread. Beyond this the broker drops lines (and counts
/// them) rather than wait: a stderr nobody reads must never stall the broker.
const LOG_BUFFERED_LINES: usize = 16 * 1024;

/// Logs to stderr through a writer thread with a bounded, lossy queue. Keep the guard until
/// exit: dropping it flushes what is queued (for at most about a second).
fn init_logging(debug: bool) -> (WorkerGuard, ErrorCounter) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFERED_LINES)
        .thread_name("amqtt-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if debug {
        builder.with_target(true).with_line_number(true).init();
    } else {
        builder.with_target(false).init();
    }
    (guard, dropped)
}
