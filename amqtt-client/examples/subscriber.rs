//! Subscribes to a filter and prints messages until Ctrl-C, then disconnects cleanly.
//!
//! `cargo run -p amqtt-client --example subscriber -- mqtt://127.0.0.1:1883 'sensors/#'`

use amqtt_client::{ClientConfig, ConnectionState, MQTTClient, QoS};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_string());
    let filter = args.next().unwrap_or_else(|| "amqtt/#".to_string());

    let client = MQTTClient::new(None, ClientConfig::default())?;
    client.connect(uri.as_str()).await?;
    let granted = client
        .subscribe(&[(filter.as_str(), QoS::AtLeastOnce)])
        .await?;
    println!("subscribed to {filter}: {granted:?}");

    // Report reconnects (the client re-subscribes by itself when the broker lost our session).
    let mut state = client.state();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            if let ConnectionState::Reconnected { session_present } = *state.borrow() {
                println!("reconnected (session present: {session_present})");
            }
        }
    });

    let mut messages = client.messages();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(m) => println!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await?;
    Ok(())
}
