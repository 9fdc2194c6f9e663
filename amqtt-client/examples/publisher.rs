//! Publishes a few messages at QoS 1 and waits for each PUBACK.
//!
//! `cargo run -p amqtt-client --example publisher -- mqtt://127.0.0.1:1883 sensors/temp`

use amqtt_client::{ClientConfig, MQTTClient, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_string());
    let topic = args.next().unwrap_or_else(|| "amqtt/example".to_string());

    let client = MQTTClient::new(None, ClientConfig::default())?;
    client.connect(uri.as_str()).await?;
    for i in 0..5 {
        let payload = format!("reading {i}");
        // Resolves when the broker's PUBACK arrives.
        client
            .publish(&topic, payload.clone(), QoS::AtLeastOnce, false)
            .await?;
        println!("published {payload:?} to {topic}");
    }
    client.disconnect().await?;
    Ok(())
}
