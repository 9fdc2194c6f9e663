//! In-memory harness for the protocol state machines: a [`ClientConnection`] and a
//! [`ServerConnection`] joined by byte buffers, with a fake clock that only moves when a test
//! advances it. Every byte goes through the real encoder and decoder; a test can watch and drop
//! packets in transit.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqtt_codec::client::{ClientConnection, ClientEvent, ConnectOptions};
use mqtt_codec::server::{ServerConfig, ServerConnection, ServerEvent};
use mqtt_codec::session::{Message, Session};
use mqtt_codec::{Decoder, OutBuf, Packet, QoS, TopicName};

/// A filter deciding whether a packet in transit is delivered (`true`) or lost (`false`).
pub type Filter = Box<dyn FnMut(&Packet) -> bool>;

/// A client and a server connection joined in memory.
pub struct Pair {
    /// The fake clock.
    pub now: Instant,
    pub client: ClientConnection,
    pub server: ServerConnection,
    /// Every event the client produced, in order (tests take what they need).
    pub client_events: Vec<ClientEvent>,
    /// Every event the server produced, in order.
    pub server_events: Vec<ServerEvent>,
    /// Every packet the client sent (before filtering), in order.
    pub client_sent: Vec<Packet>,
    /// Every packet the server sent (before filtering), in order.
    pub server_sent: Vec<Packet>,
    /// Loses client-to-server packets for which it returns `false`.
    pub client_to_server: Option<Filter>,
    /// Loses server-to-client packets for which it returns `false`.
    pub server_to_client: Option<Filter>,
    /// The server session given to `accept` when the next CONNECT arrives, and whether it is
    /// "present". `None`: the test answers CONNECT itself.
    pub accept_with: Option<(Session, bool)>,
    server_in: BytesMut,
    client_in: BytesMut,
    pub server_config: ServerConfig,
}

impl Pair {
    /// A client with `options` and `client_session`, and a server that accepts it with
    /// `server_session` / `session_present`; runs the handshake.
    pub fn connected(
        options: ConnectOptions,
        client_session: Session,
        server_session: Session,
        session_present: bool,
    ) -> Pair {
        let now = Instant::now();
        let server_config = ServerConfig::default();
        let mut pair = Pair {
            now,
            client: ClientConnection::new(options, client_session, now),
            server: ServerConnection::new(server_config.clone(), now),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            client_to_server: None,
            server_to_client: None,
            accept_with: Some((server_session, session_present)),
            server_in: BytesMut::new(),
            client_in: BytesMut::new(),
            server_config,
        };
        pair.pump();
        assert!(
            pair.client.is_connected(),
            "handshake failed: {:?}",
            pair.client_events
        );
        pair
    }

    /// A connected pair with default options ("c1", clean session 0) and default sessions.
    pub fn new() -> Pair {
        Pair::connected(
            ConnectOptions::new("c1").clean_session(false),
            Session::default(),
            Session::default(),
            false,
        )
    }

    /// Moves bytes both ways, feeding events, until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            let mut out = OutBuf::new();
            if self.client.poll_transmit(&mut out) {
                moved = true;
                let packets = drain(&mut out);
                for packet in packets {
                    self.client_sent.push(packet.clone());
                    let keep = delivered(&mut self.client_to_server, &packet);
                    if keep {
                        packet.encode(&mut self.server_in).expect("encodable");
                    }
                }
            }
            if !self.server_in.is_empty() {
                let _ = self.server.handle_read(self.now, &mut self.server_in);
            }
            moved |= self.drain_server_events();
            let mut out = OutBuf::new();
            if self.server.poll_transmit(&mut out) {
                moved = true;
                for packet in drain(&mut out) {
                    self.server_sent.push(packet.clone());
                    let keep = delivered(&mut self.server_to_client, &packet);
                    if keep {
                        packet.encode(&mut self.client_in).expect("encodable");
                    }
                }
            }
            if !self.client_in.is_empty() {
                let _ = self.client.handle_read(self.now, &mut self.client_in);
            }
            while let Some(event) = self.client.poll_event() {
                moved = true;
                self.client_events.push(event);
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    fn drain_server_events(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.server.poll_event() {
            any = true;
            if let ServerEvent::Connect(_) = &event {
                if let Some((session, present)) = self.accept_with.take() {
                    self.server.accept(self.now, session, present);
                }
            }
            self.server_events.push(event);
        }
        any
    }

    /// Advances the clock by `by`, fires both machines' timers, and pumps.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }

    /// Advances the clock to the earliest deadline of either machine (if any), fires, pumps.
    pub fn advance_to_next_deadline(&mut self) -> Option<Instant> {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()?;
        if next > self.now {
            self.now = next;
        }
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
        Some(next)
    }

    /// Drops the network connection (nothing in transit arrives) and reconnects with the
    /// sessions both sides kept; the server says session present = `session_present`.
    pub fn reconnect(&mut self, options: ConnectOptions, session_present: bool) {
        let now = self.now;
        let client = std::mem::replace(
            &mut self.client,
            ClientConnection::new(options.clone(), Session::default(), now),
        );
        let server = std::mem::replace(
            &mut self.server,
            ServerConnection::new(self.server_config.clone(), now),
        );
        let client_session = client.into_session();
        let server_session = if session_present {
            server.into_session()
        } else {
            Session::default()
        };
        self.client = ClientConnection::new(options, client_session, now);
        self.server = ServerConnection::new(self.server_config.clone(), now);
        self.server_in.clear();
        self.client_in.clear();
        self.accept_with = Some((server_session, session_present));
        self.pump();
    }

    /// Takes the server events so far.
    pub fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    /// Takes the client events so far.
    pub fn take_client_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    /// Takes the packets each side sent so far: (client's, server's).
    pub fn take_sent(&mut self) -> (Vec<Packet>, Vec<Packet>) {
        (
            std::mem::take(&mut self.client_sent),
            std::mem::take(&mut self.server_sent),
        )
    }
}

/// Whether `filter` lets `packet` through (no filter: everything passes).
fn delivered(filter: &mut Option<Filter>, packet: &Packet) -> bool {
    match filter {
        Some(filter) => filter(packet),
        None => true,
    }
}

/// Decodes every packet in `out` (which must hold whole packets).
pub fn drain(out: &mut OutBuf) -> Vec<Packet> {
    let mut bytes = BytesMut::new();
    while out.has_remaining() {
        let chunk = out.chunk();
        bytes.extend_from_slice(chunk);
        let n = chunk.len();
        out.advance(n);
    }
    decode_all(&mut bytes)
}

/// Decodes every packet in `bytes`, panicking on leftovers or errors.
pub fn decode_all(bytes: &mut BytesMut) -> Vec<Packet> {
    let mut decoder = Decoder::new(usize::MAX);
    let mut packets = Vec::new();
    while let Some(packet) = decoder.decode(bytes).expect("valid packets") {
        packets.push(packet);
    }
    assert!(bytes.is_empty(), "a partial packet was transmitted");
    packets
}

/// Encodes packets into a read buffer.
pub fn encode_all(packets: &[Packet]) -> BytesMut {
    let mut bytes = BytesMut::new();
    for packet in packets {
        packet.encode(&mut bytes).expect("encodable");
    }
    bytes
}

/// What a machine transmits now, decoded.
pub fn transmitted_by_server(server: &mut ServerConnection) -> Vec<Packet> {
    let mut out = OutBuf::new();
    let _ = server.poll_transmit(&mut out);
    drain(&mut out)
}

/// What a client transmits now, decoded.
pub fn transmitted_by_client(client: &mut ClientConnection) -> Vec<Packet> {
    let mut out = OutBuf::new();
    let _ = client.poll_transmit(&mut out);
    drain(&mut out)
}

/// All pending server events.
pub fn server_events(server: &mut ServerConnection) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

/// All pending client events.
pub fn client_events(client: &mut ClientConnection) -> Vec<ClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// A message to topic `t` with `payload`.
pub fn msg(qos: QoS, payload: &str) -> Message {
    Message::new(
        TopicName::new("t").expect("valid topic"),
        payload.to_owned(),
        qos,
        false,
    )
}
