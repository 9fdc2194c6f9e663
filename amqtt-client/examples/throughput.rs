//! Measures pipelined publish throughput through a broker: one publisher, one subscriber.
//!
//! `cargo run --release -p amqtt-client --example throughput -- mqtt://127.0.0.1:1883 100000 1`

use std::time::Instant;

use amqtt_client::{ClientConfig, MQTTClient, QoS};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_string());
    let count: usize = args.next().map_or(Ok(100_000), |n| n.parse())?;
    let qos =
        QoS::from_u8(args.next().map_or(Ok(1), |q| q.parse())?).ok_or("QoS must be 0, 1 or 2")?;
    let config = if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
        ClientConfig::default()
    } else {
        ClientConfig {
            plugins: amqtt_client::PluginsConfig(Vec::new()),
            ..ClientConfig::default()
        }
    };
    let sub = MQTTClient::new(None, config.clone())?;
    sub.connect(uri.as_str()).await?;
    sub.subscribe(&[("bench/#", qos)]).await?;
    let publisher = MQTTClient::new(None, config)?;
    publisher.connect(uri.as_str()).await?;
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    let started = Instant::now();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if std::env::var_os("PROGRESS").is_some() {
        let (got, sent) = (got.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                eprintln!(
                    "sent {} received {}",
                    sent.load(std::sync::atomic::Ordering::Relaxed),
                    got.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        });
    }
    let receiving = {
        let got = got.clone();
        tokio::spawn(async move {
            let mut messages = sub.messages();
            for _ in 0..count {
                messages.next().await;
                got.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            sub
        })
    };
    let mut tokens = futures_util::stream::FuturesUnordered::new();
    for _ in 0..count {
        tokens.push(
            publisher
                .start_publish("bench/t", payload.clone(), qos, false)
                .await?,
        );
        while tokens.len() > 1000 {
            tokens.next().await.transpose()?;
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    while let Some(done) = tokens.next().await {
        done?;
    }
    let published = started.elapsed();
    let sub = receiving.await?;
    let received = started.elapsed();
    println!(
        "QoS {}: {count} messages; published in {published:?} ({:.0}/s), received in {received:?} ({:.0}/s)",
        qos.as_u8(),
        count as f64 / published.as_secs_f64(),
        count as f64 / received.as_secs_f64()
    );
    publisher.disconnect().await?;
    sub.disconnect().await?;
    Ok(())
}
