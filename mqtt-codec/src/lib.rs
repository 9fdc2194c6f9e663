//! Sans-IO MQTT 3.1.1 (and 3.1) for amqtt-rs.
//!
//! This crate holds everything MQTT-specific that the client and the broker share:
//!
//! * [`packet`]: every control packet, an incremental [`packet::Decoder`] over
//!   [`bytes::BytesMut`] and encoding that appends to a `BytesMut`;
//! * [`topic`]: validated [`TopicName`]s and [`TopicFilter`]s and the matching rules of section 4.7;
//! * [`session`], [`client`], [`server`]: the protocol state machines (packet ids, QoS 1/2 flows,
//!   retransmission, keep-alive deadlines).
//!
//! No IO happens here: bytes, application commands and `Instant`s go in; packets to send, events
//! and the next deadline come out. There is no tokio, no socket, no clock read and no thread in
//! this crate.
#![warn(missing_docs)]
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod client;
pub mod error;
pub mod outbuf;
pub mod packet;
pub mod server;
pub mod session;
pub mod topic;
pub mod types;
mod wire;

pub use error::{DecodeError, EncodeError, ProtocolError};
pub use outbuf::OutBuf;
pub use packet::{
    ConnAck, Connect, Decoder, LastWill, Packet, Publish, SubAck, SubAckReturnCode, Subscribe,
    Unsubscribe,
};
pub use topic::{TopicFilter, TopicName};
pub use types::{ConnectReturnCode, KeepAlive, PacketId, Protocol, QoS, QosPid};
