//! `amqtt_bench`: an MQTT load generator (publishers, subscribers, idle connections) that
//! reports throughput, loss, duplicates, reordering and latency, as text or JSON.
//!
//! Built directly on `mqtt-codec` with one multi-threaded tokio runtime and one task per
//! connection. Exit status: 0 after a complete run, 1 when the run could not start (bad
//! arguments, unreachable broker, refused connection: one line on stderr), 3 when connections
//! failed during the run (the report lists them).
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod args;
mod connect;
mod error;
mod link;
mod payload;
mod publisher;
mod report;
mod run;
mod stats;
mod subscriber;
mod transport;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{subscribe_settings, Cli, Mode};
use crate::error::BenchError;
use crate::report::Report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (threads, json) = match &cli.mode {
        Mode::Pub(a) => (a.common.threads, a.common.json),
        Mode::Sub(a) => (a.common.threads, a.common.json),
        Mode::Pubsub(a) => (a.common.threads, a.common.json),
        Mode::Conn(a) => (a.common.threads, a.common.json),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&BenchError::Io(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(report) => {
            report.print(json);
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => fail(&e),
    }
}

async fn run(cli: Cli) -> Result<Report, BenchError> {
    match cli.mode {
        Mode::Pub(a) => {
            let settings = a.common.settings()?;
            let publish = a.publish.settings(a.clients)?;
            run::run_pub(settings, publish).await
        }
        Mode::Sub(a) => {
            let settings = a.common.settings()?;
            let subscribe = subscribe_settings(a.clients, &a.topic, a.qos, a.count)?;
            run::run_sub(settings, subscribe).await
        }
        Mode::Pubsub(a) => {
            let settings = a.common.settings()?;
            let publish = a.publish.settings(a.pubs)?;
            let qos = run::sub_qos(a.sub_qos, publish.qos);
            let subscribe = subscribe_settings(a.subs, &a.sub_topic, qos, None)?;
            run::run_pubsub(settings, publish, subscribe, a.quiet).await
        }
        Mode::Conn(a) => {
            let settings = a.common.settings()?;
            if a.clients == 0 {
                return Err(BenchError::Usage("--clients must be at least 1".into()));
            }
            run::run_conn(settings, a.clients, a.concurrency).await
        }
    }
}

fn fail(error: &BenchError) -> ExitCode {
    eprintln!("amqtt_bench: {error}");
    ExitCode::from(1)
}
