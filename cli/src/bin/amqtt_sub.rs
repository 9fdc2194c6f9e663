//! `amqtt_sub`: subscribe to topic filters and print the messages (aMQTT's flags, plus
//! mosquitto's `-h -p -u -P -L -I -C -v -F -N -R -E -W -T -U --retained-only --remove-retained
//! --pretty --quiet`, and `--json`).
//!
//! By default each message's raw payload is printed followed by a newline and empty payloads are
//! skipped, as aMQTT does; `-v`, `-F` and `--json` print every message. Output is flushed after
//! every message, so it can be piped. `-n`/`-C N` stops after N printed messages; Ctrl-C or
//! SIGTERM disconnects cleanly. Exit codes: 0 done, 1 connection or config error (or every
//! subscription refused), 2 usage error, 27 `-W` timeout.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use amqtt_cli::connect::{parse_qos, ConnectArgs};
use amqtt_cli::format::Format;
use amqtt_cli::{init_logging, interrupted, run_to_exit, CliError, EXIT_TIMEOUT};
use amqtt_client::{ApplicationMessage, MQTTClient, QoS, SubAckReturnCode, TopicFilter, TopicName};
use clap::{ArgAction, Parser};
use futures_util::StreamExt;

/// Command line MQTT client to subscribe to one or more topics and display any messages
/// received.
const SUB_EXAMPLES: &str = "Examples:
  amqtt_sub -t '#' -v                                     print every topic and payload
  amqtt_sub --url mqtt://broker:1883 -t 'sensors/+' -n 10 exit after 10 messages
  amqtt_sub -t alerts -W 5                                give up after 5 s without a message
  amqtt_sub -t 'a/#' --json                               one JSON object per message
  amqtt_sub --url mqtts://broker:8883 --ca-file ca.pem -t a
  amqtt_sub --url ws://broker:8080/mqtt -t a";

#[derive(Parser, Debug)]
#[command(
    name = "amqtt_sub",
    version,
    after_help = SUB_EXAMPLES,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic filter to subscribe to; can be given several times.
    #[arg(short = 't', long = "topic", value_name = "FILTER")]
    topics: Vec<String>,
    /// Quality of service of the subscriptions (0, 1 or 2).
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Number of messages to print before ending (default: read indefinitely).
    #[arg(short = 'n', short_alias = 'C', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Print `topic payload` (mosquitto's -v).
    #[arg(short = 'v', long = "verbose", conflicts_with_all = ["format", "json"])]
    verbose: bool,
    /// Output format with mosquitto's % tokens: %t topic, %p payload, %x/%X hex payload,
    /// %l length, %q QoS, %r retain, %d dup, %m packet id, %I ISO-8601 time, %U Unix time,
    /// %j JSON, %J JSON with a JSON payload embedded, %% percent; \n \t \e escapes.
    #[arg(
        short = 'F',
        long = "format",
        value_name = "FORMAT",
        conflicts_with = "json"
    )]
    format: Option<String>,
    /// One JSON object per message (payload as "payload", or "payload_hex" when not UTF-8).
    #[arg(short = 'j', long = "json")]
    json: bool,
    /// Indent JSON output.
    #[arg(long = "pretty")]
    pretty: bool,
    /// Do not print a newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    no_newline: bool,
    /// Do not print retained (stale) messages.
    #[arg(short = 'R', long = "no-retained", conflicts_with = "retained_only")]
    no_retained: bool,
    /// Print only retained messages: stop at the first live one.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear every retained message received (publishes an empty retained message to its topic).
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E', long = "exit-after-subscribe")]
    exit_after_subscribe: bool,
    /// Stop after this many seconds (exit code 27).
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    timeout: Option<u64>,
    /// Do not print messages whose topic matches this filter; can be given several times.
    #[arg(short = 'T', long = "filter-out", value_name = "FILTER")]
    filter_out: Vec<String>,
    /// Unsubscribe from this filter first (for persistent sessions); can be given several times.
    #[arg(short = 'U', long = "unsubscribe", value_name = "FILTER")]
    unsubscribe: Vec<String>,
    /// Show version and exit.
    #[arg(long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    /// Show this message and exit.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.connect.debug, args.connect.quiet);
    run_to_exit("amqtt_sub", run(args))
}

async fn run(args: Args) -> Result<(), CliError> {
    let format = if args.json {
        Format::Json {
            pretty: args.pretty,
        }
    } else if let Some(template) = &args.format {
        Format::template(template)
    } else if args.verbose {
        Format::Verbose
    } else {
        Format::Payload
    };
    let filter_out = args
        .filter_out
        .iter()
        .map(|f| {
            TopicFilter::new(f.as_str())
                .map_err(|e| CliError::failure(format!("invalid filter '{f}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let prepared = args.connect.prepare("amqtt_sub")?;
    let mut topics = args.topics.clone();
    if topics.is_empty() {
        topics.extend(prepared.url_topic.clone());
    }
    if topics.is_empty() && !args.exit_after_subscribe && args.unsubscribe.is_empty() {
        return Err(CliError::usage("missing option '-t'"));
    }
    let client = prepared.client;
    client
        .connect_with(prepared.uri.as_str(), prepared.params)
        .await
        .map_err(|e| CliError::failure(format!("connection failed: {e}")))?;
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));

    let session = async {
        subscribe(&client, &args, &topics).await?;
        if args.exit_after_subscribe {
            return Ok(());
        }
        print_messages(&client, &args, &format, &filter_out).await
    };
    let result = tokio::select! {
        result = session => result,
        _ = interrupted() => Ok(()),
        _ = sleep_until(deadline) => Err(CliError {
            code: EXIT_TIMEOUT,
            message: "timed out waiting for messages".to_string(),
        }),
    };
    let disconnected = client.disconnect().await;
    result?;
    disconnected.map_err(|e| CliError::failure(format!("disconnect failed: {e}")))
}

async fn subscribe(client: &MQTTClient, args: &Args, topics: &[String]) -> Result<(), CliError> {
    if !args.unsubscribe.is_empty() {
        client
            .unsubscribe(&args.unsubscribe)
            .await
            .map_err(|e| CliError::failure(format!("unsubscribe failed: {e}")))?;
    }
    if topics.is_empty() {
        return Ok(());
    }
    let filters: Vec<(&str, QoS)> = topics.iter().map(|t| (t.as_str(), args.qos)).collect();
    let granted = client
        .subscribe(&filters)
        .await
        .map_err(|e| CliError::failure(format!("subscribe failed: {e}")))?;
    let mut refused = 0;
    for (topic, code) in topics.iter().zip(&granted) {
        if *code == SubAckReturnCode::Failure {
            refused += 1;
            eprintln!("amqtt_sub: subscription to '{topic}' was refused by the broker");
        }
    }
    if refused == topics.len() {
        return Err(CliError::failure("all subscription requests were refused"));
    }
    Ok(())
}

async fn print_messages(
    client: &MQTTClient,
    args: &Args,
    format: &Format,
    filter_out: &[TopicFilter],
) -> Result<(), CliError> {
    let mut messages = client.messages();
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    while !matches!(args.count, Some(n) if printed >= n) {
        let Some(message) = messages.next().await else {
            return Err(CliError::failure("the connection ended"));
        };
        if args.remove_retained && message.retain {
            clear_retained(client, &message.topic).await?;
        }
        if args.retained_only && !message.retain {
            break;
        }
        if (args.no_retained && message.retain) || filtered_out(filter_out, &message) {
            continue;
        }
        let Some(mut line) = format.render(&message, SystemTime::now()) else {
            continue;
        };
        if !args.no_newline {
            line.push(b'\n');
        }
        // Line-buffered: each message is flushed as soon as it is printed.
        let mut out = stdout.lock();
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            // stdout is closed (e.g. `| head`): stop quietly.
            break;
        }
        printed += 1;
    }
    Ok(())
}

fn filtered_out(filters: &[TopicFilter], message: &ApplicationMessage) -> bool {
    filters.iter().any(|f| f.matches(&message.topic))
}

async fn clear_retained(client: &MQTTClient, topic: &TopicName) -> Result<(), CliError> {
    client
        .publish(topic.as_str(), bytes::Bytes::new(), QoS::AtMostOnce, true)
        .await
        .map_err(|e| CliError::failure(format!("cannot clear retained message of '{topic}': {e}")))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
