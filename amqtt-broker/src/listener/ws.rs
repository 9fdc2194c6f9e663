//! MQTT over WebSocket (`type: ws` listeners): the HTTP upgrade and [`WsStream`], a byte
//! stream over WebSocket messages.
//!
//! The upgrade accepts any URL path and requires the client to offer the `mqtt` subprotocol
//! ([MQTT-6.0.0-3]; `mqttv3.1`, which older clients offer, is accepted too); the server
//! answers with the one it picked ([MQTT-6.0.0-4]). A client offering neither gets HTTP 400,
//! as aMQTT answers.
//!
//! [`WsStream`] (shared with the client, in `amqtt-ws`) knows nothing of MQTT
//! ([MQTT-6.0.0-2]: packets need not be aligned with frames): a packet may span messages and a
//! message may hold several packets; each write goes out as one binary message.

pub(crate) use amqtt_ws::WsStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Subprotocols accepted, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Room for the packets that share a message with the largest allowed one.
const MESSAGE_SLACK: usize = 64 * 1024;

/// WebSocket limits of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSettings {
    config: WebSocketConfig,
}

impl WsSettings {
    /// Limits derived from the broker's `max_packet_size`: a message may hold one largest
    /// packet plus some smaller ones, no more; anything larger closes the connection before it
    /// is buffered.
    pub(crate) fn new(max_packet_size: usize) -> WsSettings {
        let max_message = max_packet_size.saturating_add(MESSAGE_SLACK);
        WsSettings {
            config: WebSocketConfig::default()
                .max_message_size(Some(max_message))
                .max_frame_size(Some(max_message))
                .max_write_buffer_size(max_message.saturating_mul(2)),
        }
    }
}

/// Runs the server side of the WebSocket upgrade on `stream`.
pub(crate) async fn accept<S>(stream: S, settings: &WsSettings) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        pick_subprotocol,
        Some(settings.config),
    )
    .await?;
    Ok(WsStream::new(ws))
}

/// The upgrade callback: picks the MQTT subprotocol or refuses the upgrade.
#[allow(clippy::result_large_err)] // The signature is tungstenite's `Callback`.
fn pick_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let chosen = SUBPROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
    match chosen {
        Some(p) => {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
            Ok(response)
        }
        None => {
            let mut refusal = ErrorResponse::new(Some(
                "[MQTT-6.0.0-3] the client must offer the WebSocket subprotocol \"mqtt\"".into(),
            ));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    }
}
