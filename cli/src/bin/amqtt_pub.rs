//! `amqtt_pub`: publish messages from the command line (aMQTT's flags, plus mosquitto's
//! `-h -p -u -P -L -I --repeat --repeat-delay --quiet`).
//!
//! Message sources (exactly one): `-m` one message; `-n` one empty message; `-s` all of stdin
//! as one message; `-l` one message per stdin line, published as lines arrive; `-f FILE` one
//! message per line of the file. As in aMQTT, `-l` and `-f` keep each line's newline in the
//! payload (mosquitto's `-f` sends the whole file as one message and `-l` strips newlines).
//! Exit codes: 0 published and disconnected, 1 connection or config error, 2 usage error.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::process::ExitCode;
use std::time::Duration;

use amqtt_cli::connect::{parse_qos, parse_secs, ConnectArgs};
use amqtt_cli::{init_logging, interrupted, run_to_exit, CliError};
use amqtt_client::{MQTTClient, PublishToken, QoS};
use bytes::Bytes;
use clap::{ArgAction, Parser};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Command-line MQTT client for publishing simple messages.
#[derive(Parser, Debug)]
#[command(
    name = "amqtt_pub",
    version,
    after_help = PUB_EXAMPLES,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Message topic (or the path of `-L mqtt://host/topic`).
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    topic: Option<String>,
    /// Quality of service (0, 1 or 2).
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Set the retain flag on the published messages.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Message data to send.
    #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
    message: Option<String>,
    /// Publish each line of FILE (newline included) as a separate message.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Read all of stdin and send it as a single message.
    #[arg(short = 's', long = "stdin")]
    stdin: bool,
    /// Read stdin and publish each line (newline included) as it arrives.
    #[arg(short = 'l', long = "lines")]
    lines: bool,
    /// Publish an empty (null, zero length) message.
    #[arg(short = 'n', long = "no-message")]
    no_message: bool,
    /// Publish the message(s) N times.
    #[arg(long = "repeat", value_name = "N", default_value = "1")]
    repeat: u32,
    /// Seconds to wait between repeats.
    #[arg(long = "repeat-delay", value_name = "SECS", value_parser = parse_secs)]
    repeat_delay: Option<Duration>,
    /// Show version and exit.
    #[arg(long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    /// Show this message and exit.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// Where the messages come from.
enum Source {
    One(Bytes),
    File(String),
    Stdin,
    Lines,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.connect.debug, args.connect.quiet);
    run_to_exit("amqtt_pub", run(args))
}

async fn run(args: Args) -> Result<(), CliError> {
    let source = source(&args)?;
    let prepared = args.connect.prepare("amqtt_pub")?;
    let topic = args
        .topic
        .clone()
        .or(prepared.url_topic.clone())
        .ok_or_else(|| CliError::usage("missing option '-t' / '--topic'"))?;
    amqtt_client::TopicName::new(topic.as_str())
        .map_err(|e| CliError::failure(format!("invalid topic '{topic}': {e}")))?;
    let client = prepared.client;
    tracing::debug!("clean session: {}", args.connect.clean_session);
    client
        .connect_with(prepared.uri.as_str(), prepared.params)
        .await
        .map_err(|e| CliError::failure(format!("connection failed: {e}")))?;

    let publishing = publish_all(&client, &args, &topic, source);
    let result = tokio::select! {
        result = publishing => result,
        _ = interrupted() => Ok(()),
    };
    let disconnected = client.disconnect().await;
    result?;
    disconnected.map_err(|e| CliError::failure(format!("disconnect failed: {e}")))
}

fn source(args: &Args) -> Result<Source, CliError> {
    let given = [
        args.message.is_some(),
        args.file.is_some(),
        args.stdin,
        args.lines,
        args.no_message,
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(CliError::failure(
            "you must provide exactly one of --message, --file, --stdin, --lines or --no-message",
        ));
    }
    Ok(if let Some(message) = &args.message {
        Source::One(Bytes::from(message.clone().into_bytes()))
    } else if let Some(file) = &args.file {
        Source::File(file.clone())
    } else if args.stdin {
        Source::Stdin
    } else if args.lines {
        Source::Lines
    } else {
        Source::One(Bytes::new())
    })
}

/// Publishes every message, pipelined: each is queued in order (so they go out in order) and
/// their completions are awaited together, at most [`MAX_PENDING`] at a time.
async fn publish_all(
    client: &MQTTClient,
    args: &Args,
    topic: &str,
    source: Source,
) -> Result<(), CliError> {
    let mut pending = Pending::default();
    let messages: Vec<Bytes> = match source {
        Source::One(payload) => vec![payload],
        Source::File(path) => {
            let data = tokio::fs::read(&path)
                .await
                .map_err(|e| CliError::failure(format!("cannot read {path}: {e}")))?;
            split_lines(&Bytes::from(data))
        }
        Source::Stdin => {
            let mut data = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut data)
                .await
                .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
            vec![Bytes::from(data)]
        }
        Source::Lines => {
            // Lines are published as they arrive, so `-l` works on an endless pipe.
            let mut reader = BufReader::new(tokio::io::stdin());
            loop {
                let mut line = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
                if n == 0 {
                    break;
                }
                pending
                    .publish(client, topic, Bytes::from(line), args)
                    .await?;
            }
            return pending.finish().await;
        }
    };
    for round in 0..args.repeat {
        if round > 0 {
            if let Some(delay) = args.repeat_delay {
                tokio::time::sleep(delay).await;
            }
        }
        for payload in &messages {
            pending
                .publish(client, topic, payload.clone(), args)
                .await?;
        }
    }
    pending.finish().await
}

const PUB_EXAMPLES: &str = "Examples:
  amqtt_pub -t sensors/temp -m 21.5                       publish one message to 127.0.0.1:1883
  amqtt_pub --url mqtt://user:pw@broker:1883 -t a/b -m hi -q 1 -r
  tail -f app.log | amqtt_pub -t logs/app -l              one message per line, as lines arrive
  amqtt_pub -h broker -p 1884 -t cmd -f commands.txt      one message per line of a file
  amqtt_pub --url mqtts://broker:8883 --ca-file ca.pem -t a -m secure
  amqtt_pub --url ws://broker:8080/mqtt -t a -m over-websocket";

/// Publishes awaiting completion at once, at most this many.
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct Pending(FuturesUnordered<PublishToken>, u64);

impl Pending {
    async fn publish(
        &mut self,
        client: &MQTTClient,
        topic: &str,
        payload: Bytes,
        args: &Args,
    ) -> Result<(), CliError> {
        while self.0.len() >= MAX_PENDING {
            self.next().await?;
        }
        let token = client
            .start_publish(topic, payload, args.qos, args.retain)
            .await
            .map_err(|e| CliError::failure(format!("publish failed: {e}")))?;
        self.0.push(token);
        Ok(())
    }

    async fn next(&mut self) -> Result<(), CliError> {
        match self.0.next().await {
            Some(done) => {
                done.map_err(|e| CliError::failure(format!("publish failed: {e}")))?;
                self.1 += 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn finish(mut self) -> Result<(), CliError> {
        while !self.0.is_empty() {
            self.next().await?;
        }
        // With -d, long runs (`-l`, `-f`, `--repeat`) end with how much went out.
        tracing::debug!("published {} messages", self.1);
        Ok(())
    }
}

/// Splits into lines, each keeping its `\n` (aMQTT's `-f`).
fn split_lines(data: &Bytes) -> Vec<Bytes> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, byte) in data.iter().enumerate() {
        if *byte == b'\n' {
            lines.push(data.slice(start..=i));
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(data.slice(start..));
    }
    lines
}
