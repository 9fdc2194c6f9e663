//! Plain TCP (`mqtt://`), also the bottom layer of the other transports.

use tokio::net::TcpStream;

use crate::error::ClientError;

/// Connects to `host:port` with Nagle off: MQTT packets are small and latency matters; the
/// connection task batches its writes itself.
pub(crate) async fn connect(host: &str, port: u16) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
