//! Every MQTT 3.1.1 control packet (and CONNECT/CONNACK of 3.1), encoding and incremental decoding.
//!
//! Encoding appends to a [`BytesMut`]. [`Decoder::decode`] works over a `BytesMut` that the
//! caller fills from its transport: it returns `Ok(None)` and consumes nothing while a packet is
//! incomplete, and splits a complete packet off without copying, so PUBLISH payloads share the
//! read buffer. The maximum packet size is checked as soon as the remaining length is known,
//! before any body byte is buffered.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::topic::{TopicFilter, TopicName};
use crate::types::{ConnectReturnCode, KeepAlive, PacketId, Protocol, QoS, QosPid};

/// The default maximum packet size of a [`Decoder`]: 1 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;
/// The largest remaining length MQTT can express: 268,435,455 bytes.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1), client to server.
    Connect(Box<Connect>),
    /// CONNACK (2), server to client.
    ConnAck(ConnAck),
    /// PUBLISH (3), both ways.
    Publish(Publish),
    /// PUBACK (4).
    PubAck(PacketId),
    /// PUBREC (5).
    PubRec(PacketId),
    /// PUBREL (6).
    PubRel(PacketId),
    /// PUBCOMP (7).
    PubComp(PacketId),
    /// SUBSCRIBE (8), client to server.
    Subscribe(Subscribe),
    /// SUBACK (9), server to client.
    SubAck(SubAck),
    /// UNSUBSCRIBE (10), client to server.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11), server to client.
    UnsubAck(PacketId),
    /// PINGREQ (12), client to server.
    PingReq,
    /// PINGRESP (13), server to client.
    PingResp,
    /// DISCONNECT (14), client to server.
    Disconnect,
}

/// CONNECT: the first packet of every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// MQTT 3.1.1 (`MQTT`, level 4) or 3.1 (`MQIsdp`, level 3).
    pub protocol: Protocol,
    /// The keep-alive interval.
    pub keep_alive: KeepAlive,
    /// The client identifier; may be empty (the server then assigns one or refuses).
    pub client_id: String,
    /// Clean session flag.
    pub clean_session: bool,
    /// The will message, if the will flag is set.
    pub will: Option<LastWill>,
    /// The user name, if the user name flag is set.
    pub username: Option<String>,
    /// The password, if the password flag is set (binary data).
    pub password: Option<Bytes>,
}

/// A will message carried in CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LastWill {
    /// Where the will is published.
    pub topic: TopicName,
    /// The will payload.
    pub payload: Bytes,
    /// The will QoS.
    pub qos: QoS,
    /// Whether the will is published retained.
    pub retain: bool,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// Accepted or the reason for refusing.
    pub return_code: ConnectReturnCode,
}

/// PUBLISH: an application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this may be a re-delivery.
    pub dup: bool,
    /// QoS with the packet id it requires.
    pub qos_pid: QosPid,
    /// RETAIN flag.
    pub retain: bool,
    /// The topic name.
    pub topic: TopicName,
    /// The payload; when decoded, it shares the read buffer.
    pub payload: Bytes,
}

/// SUBSCRIBE: topic filters with their requested QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet id.
    pub packet_id: PacketId,
    /// At least one filter with its requested QoS ([MQTT-3.8.3-3]).
    pub filters: Vec<(TopicFilter, QoS)>,
}

/// One return code of a SUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubAckReturnCode {
    /// The subscription was granted at this maximum QoS.
    Success(QoS),
    /// 0x80: the subscription was refused.
    Failure,
}

impl SubAckReturnCode {
    /// The wire value: 0x00, 0x01, 0x02 or 0x80.
    pub fn as_u8(self) -> u8 {
        match self {
            SubAckReturnCode::Success(qos) => qos.as_u8(),
            SubAckReturnCode::Failure => 0x80,
        }
    }
}

/// SUBACK: one return code per filter of the SUBSCRIBE, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The packet id of the SUBSCRIBE answered.
    pub packet_id: PacketId,
    /// One return code per requested filter.
    pub return_codes: Vec<SubAckReturnCode>,
}

/// UNSUBSCRIBE: topic filters to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet id.
    pub packet_id: PacketId,
    /// At least one filter ([MQTT-3.10.3-2]).
    pub filters: Vec<TopicFilter>,
}

impl Packet {
    /// Appends the encoded packet to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = out;
        todo!("wire encoding")
    }

    /// The packet type's name as the spec writes it (`"PUBLISH"`), for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }
}

impl Publish {
    /// Appends this PUBLISH's fixed header, topic and packet id to `out`, and returns the
    /// payload to be written right after it, without copying it. Fan-out uses this to encode
    /// one message for many subscribers while sharing the payload.
    pub fn encode_header(&self, out: &mut BytesMut) -> Result<Bytes, EncodeError> {
        let _ = out;
        todo!("wire encoding")
    }
}

/// Incremental packet decoder with a maximum packet size.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_packet_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder {
    /// A decoder that refuses packets larger than `max_packet_size` bytes (fixed header included).
    pub fn new(max_packet_size: usize) -> Decoder {
        Decoder { max_packet_size }
    }

    /// The current maximum packet size.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the maximum packet size (e.g. a small cap before CONNECT, a larger one after).
    pub fn set_max_packet_size(&mut self, max_packet_size: usize) {
        self.max_packet_size = max_packet_size;
    }

    /// Decodes the next packet from the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed; nothing was consumed. `Ok(Some(packet))`: the packet's
    /// bytes were split off `buf`. `Err`: the stream is malformed and the connection must close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let _ = buf;
        todo!("wire decoding")
    }
}
