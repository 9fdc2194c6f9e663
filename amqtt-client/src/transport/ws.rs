//! WebSocket (`ws://`, and `wss://` over TLS): the HTTP upgrade with the `mqtt` subprotocol
//! ([MQTT-6.0.0-3]), the URL's path and query and the `additional_headers`, then
//! [`WsStream`], a byte stream over WebSocket messages.
//!
//! [`WsStream`] (shared with the broker, in `amqtt-ws`) knows nothing of MQTT
//! ([MQTT-6.0.0-2]): a packet may span messages and a message may hold several packets; the
//! driver's vectored writes make one binary message per batch of packets.

pub(crate) use amqtt_ws::WsStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use super::tls;
use crate::error::ClientError;

/// The subprotocol offered ([MQTT-6.0.0-3]).
const SUBPROTOCOL: &str = "mqtt";

/// Runs the client side of the WebSocket upgrade for `url` over `stream` (to `host`).
pub(crate) async fn connect<S>(
    stream: S,
    host: &str,
    url: &str,
    headers: &[(String, String)],
) -> Result<WsStream<S>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bad_header = |name: &str, e: &dyn std::fmt::Display| {
        ClientError::WebSocket(format!("invalid additional header '{name}': {e}"))
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::WebSocket(format!("invalid WebSocket URL '{url}': {e}")))?;
    let fields = request.headers_mut();
    fields.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad_header(name, &e))?;
        let value = HeaderValue::from_str(value).map_err(|e| bad_header(name, &e))?;
        fields.append(header, value);
    }
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| {
            // Over TLS 1.3 the broker refuses a client certificate only now, in the upgrade.
            tls::rejection(host, &e)
                .unwrap_or_else(|| ClientError::WebSocket(format!("upgrade to {url} failed: {e}")))
        })?;
    Ok(WsStream::new(ws))
}
