//! Every MQTT 3.1.1 control packet (and CONNECT/CONNACK of 3.1), encoding and incremental decoding.
//!
//! Encoding appends to a [`BytesMut`] ([`Packet::encode`]) or to an [`OutBuf`]
//! ([`Packet::encode_into`], which queues large PUBLISH payloads as shared chunks instead of
//! copying them). [`Decoder::decode`] works over a `BytesMut` that the caller fills from its
//! transport: it returns `Ok(None)` and consumes nothing while a packet is incomplete, and
//! splits a complete packet off without copying, so PUBLISH payloads and topics share the read
//! buffer. The maximum packet size is checked as soon as the remaining length is known, before
//! any body byte is buffered.
//!
//! One file per packet holds its struct, its body encoding and its body decoding; this module
//! holds the fixed header and the dispatch. No IO here.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_codec::{Decoder, Packet, Publish, QosPid, TopicName};
//!
//! let publish = Packet::Publish(Publish {
//!     dup: false,
//!     qos_pid: QosPid::AtMostOnce,
//!     retain: false,
//!     topic: TopicName::new("a/b").unwrap(),
//!     payload: "hi".into(),
//! });
//! let mut buf = BytesMut::new();
//! publish.encode(&mut buf).unwrap();
//! assert_eq!(&buf[..], b"\x30\x07\x00\x03a/bhi");
//!
//! let mut decoder = Decoder::default();
//! let mut partial = BytesMut::from(&buf[..4]);
//! assert_eq!(decoder.decode(&mut partial), Ok(None)); // need more bytes
//! assert_eq!(partial.len(), 4); // nothing consumed
//! assert_eq!(decoder.decode(&mut buf), Ok(Some(publish)));
//! assert!(buf.is_empty());
//! ```

mod ack;
mod connack;
mod connect;
mod disconnect;
mod ping;
mod publish;
mod suback;
mod subscribe;
mod unsubscribe;

use bytes::{Buf, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::outbuf::OutBuf;
use crate::types::PacketId;
use crate::wire::{self, Cursor, Reader};

pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use publish::Publish;
pub use suback::{SubAck, SubAckReturnCode};
pub use subscribe::Subscribe;
pub use unsubscribe::Unsubscribe;

/// The default maximum packet size of a [`Decoder`]: 1 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;
/// The largest remaining length MQTT can express: 268,435,455 bytes.
pub const MAX_REMAINING_LENGTH: usize = wire::MAX_REMAINING_LENGTH;

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

/// Packet type numbers (the high nibble of the first byte, section 2.2.1).
pub(crate) mod kind {
    pub(crate) const CONNECT: u8 = 1;
    pub(crate) const CONNACK: u8 = 2;
    pub(crate) const PUBLISH: u8 = 3;
    pub(crate) const PUBACK: u8 = 4;
    pub(crate) const PUBREC: u8 = 5;
    pub(crate) const PUBREL: u8 = 6;
    pub(crate) const PUBCOMP: u8 = 7;
    pub(crate) const SUBSCRIBE: u8 = 8;
    pub(crate) const SUBACK: u8 = 9;
    pub(crate) const UNSUBSCRIBE: u8 = 10;
    pub(crate) const UNSUBACK: u8 = 11;
    pub(crate) const PINGREQ: u8 = 12;
    pub(crate) const PINGRESP: u8 = 13;
    pub(crate) const DISCONNECT: u8 = 14;
}

impl Packet {
    /// Appends the encoded packet to `out`. On error nothing is appended.
    ///
    /// The encoder refuses what a decoder would refuse where that is cheap to check (strings
    /// with U+0000, SUBSCRIBE without filters, DUP on QoS 0, …); values that the types already
    /// guarantee ([`crate::TopicName`], [`PacketId`]) are not checked again.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(connect) => connect.encode(out),
            Packet::ConnAck(connack) => connack.encode(out),
            Packet::Publish(publish) => publish.encode(out),
            Packet::PubAck(id) => ack::encode(out, kind::PUBACK << 4, *id),
            Packet::PubRec(id) => ack::encode(out, kind::PUBREC << 4, *id),
            Packet::PubRel(id) => ack::encode(out, kind::PUBREL << 4 | 0b0010, *id),
            Packet::PubComp(id) => ack::encode(out, kind::PUBCOMP << 4, *id),
            Packet::Subscribe(subscribe) => subscribe.encode(out),
            Packet::SubAck(suback) => suback.encode(out),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.encode(out),
            Packet::UnsubAck(id) => ack::encode(out, kind::UNSUBACK << 4, *id),
            Packet::PingReq => ping::encode(out, kind::PINGREQ),
            Packet::PingResp => ping::encode(out, kind::PINGRESP),
            Packet::Disconnect => disconnect::encode(out),
        }
    }

    /// Appends the encoded packet to `out`. A PUBLISH payload of at least
    /// [`crate::outbuf::SHARE_PAYLOAD_AT`] bytes is queued as a shared chunk, not copied.
    pub fn encode_into(&self, out: &mut OutBuf) -> Result<(), EncodeError> {
        match self {
            Packet::Publish(publish) => publish.encode_into(out),
            other => other.encode(out.tail_mut()),
        }
    }

    /// The number of bytes [`Packet::encode`] appends: fixed header plus remaining length.
    ///
    /// Computed, never cached; for a packet too large to encode it is the size it would have.
    pub fn encoded_len(&self) -> usize {
        let remaining = self.remaining_len();
        1 + wire::remaining_length_len(remaining) + remaining
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

    fn remaining_len(&self) -> usize {
        match self {
            Packet::Connect(connect) => connect.remaining_len(),
            Packet::ConnAck(_) => 2,
            Packet::Publish(publish) => publish.remaining_len(),
            Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::UnsubAck(_) => 2,
            Packet::Subscribe(subscribe) => subscribe.remaining_len(),
            Packet::SubAck(suback) => suback.remaining_len(),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.remaining_len(),
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
        }
    }
}

impl From<Connect> for Packet {
    fn from(connect: Connect) -> Packet {
        Packet::Connect(Box::new(connect))
    }
}

impl From<ConnAck> for Packet {
    fn from(connack: ConnAck) -> Packet {
        Packet::ConnAck(connack)
    }
}

impl From<Publish> for Packet {
    fn from(publish: Publish) -> Packet {
        Packet::Publish(publish)
    }
}

impl From<Subscribe> for Packet {
    fn from(subscribe: Subscribe) -> Packet {
        Packet::Subscribe(subscribe)
    }
}

impl From<SubAck> for Packet {
    fn from(suback: SubAck) -> Packet {
        Packet::SubAck(suback)
    }
}

impl From<Unsubscribe> for Packet {
    fn from(unsubscribe: Unsubscribe) -> Packet {
        Packet::Unsubscribe(unsubscribe)
    }
}

/// Incremental packet decoder with a maximum packet size.
///
/// Feed it the bytes read from the transport, appended to one `BytesMut`, and call
/// [`Decoder::decode`] until it returns `Ok(None)`. Any `Err` means the stream is malformed: the
/// connection must close (after a CONNACK for [`DecodeError::connack_return_code`]), and the
/// decoder must not be used again on that stream.
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
    ///
    /// Errors in the fixed header (packet type, flags, remaining length, size) are reported as
    /// soon as the bytes that show them arrive, and consume nothing; errors in the body are
    /// reported once the whole packet has arrived, and consume it.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = first >> 4;
        let flags = first & 0x0f;
        check_fixed_header_flags(packet_type, flags)?;
        let Some((remaining, len_len)) = wire::read_remaining_length(buf.get(1..).unwrap_or(&[]))?
        else {
            return Ok(None);
        };
        let header_len = 1 + len_len;
        let size = header_len + remaining;
        if size > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            return Ok(None);
        }
        // Packets without a variable-length body are read in place: no split, no refcount.
        match packet_type {
            kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP | kind::UNSUBACK => {
                let id = ack::decode_in_place(buf.get(header_len..size).unwrap_or(&[]));
                buf.advance(size);
                let id = id?;
                return Ok(Some(match packet_type {
                    kind::PUBACK => Packet::PubAck(id),
                    kind::PUBREC => Packet::PubRec(id),
                    kind::PUBREL => Packet::PubRel(id),
                    kind::PUBCOMP => Packet::PubComp(id),
                    _ => Packet::UnsubAck(id),
                }));
            }
            kind::PINGREQ | kind::PINGRESP | kind::DISCONNECT => {
                buf.advance(size);
                if remaining != 0 {
                    return Err(DecodeError::TrailingBytes(remaining));
                }
                return Ok(Some(match packet_type {
                    kind::PINGREQ => Packet::PingReq,
                    kind::PINGRESP => Packet::PingResp,
                    _ => Packet::Disconnect,
                }));
            }
            kind::PUBLISH => {
                return Publish::decode_from(flags, buf, header_len, size).map(|p| Some(p.into()));
            }
            _ => {}
        }
        decode_rare(packet_type, buf, header_len, size)
    }
}

/// Decodes the complete CONNECT, CONNACK, SUBSCRIBE, SUBACK or UNSUBSCRIBE at the front of
/// `buf` and consumes it, also on error.
///
/// Out of line, so the hot path of [`Decoder::decode`] stays small, and returning the decoder's
/// own result type, so the packet is built where the caller wants it instead of being moved
/// from one wrapper to the next (each move of a value just written reads it back from memory
/// in pieces that may straddle the writes, and waits for them).
#[inline(never)]
fn decode_rare(
    packet_type: u8,
    buf: &mut BytesMut,
    header_len: usize,
    size: usize,
) -> Result<Option<Packet>, DecodeError> {
    if packet_type == kind::CONNECT {
        // CONNECT's will payload and password are `Bytes` sharing the frame.
        let mut frame = buf.split_to(size);
        frame.advance(header_len);
        let mut body = Reader::new(frame.freeze());
        let connect = Connect::decode(&mut body)?;
        body.finish()?;
        return Ok(Some(Packet::Connect(Box::new(connect))));
    }
    // The other packets copy every field out, so they are parsed in place: no split, no
    // reference count. The packet is consumed whether or not its body is valid. Each arm
    // consumes it before wrapping the fields it read into the packet.
    let body = buf.get(header_len..size).unwrap_or_default();
    let packet = match packet_type {
        kind::CONNACK => {
            let connack = decode_whole(body, ConnAck::decode);
            buf.advance(size);
            Packet::ConnAck(connack?)
        }
        kind::SUBSCRIBE => {
            let subscribe = decode_whole(body, Subscribe::decode);
            buf.advance(size);
            Packet::Subscribe(subscribe?)
        }
        kind::SUBACK => {
            let suback = decode_whole(body, SubAck::decode);
            buf.advance(size);
            Packet::SubAck(suback?)
        }
        kind::UNSUBSCRIBE => {
            let unsubscribe = decode_whole(body, Unsubscribe::decode);
            buf.advance(size);
            Packet::Unsubscribe(unsubscribe?)
        }
        // check_fixed_header_flags refused every other type.
        other => {
            buf.advance(size);
            return Err(DecodeError::ReservedPacketType(other));
        }
    };
    Ok(Some(packet))
}

/// Decodes a whole packet `body` with `decode`: bytes left over are an error.
#[inline]
fn decode_whole<T>(
    body: &[u8],
    decode: impl FnOnce(&mut Cursor<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut body = Cursor::new(body);
    let fields = decode(&mut body)?;
    body.finish()?;
    Ok(fields)
}

/// Checks the packet type and the reserved flag bits of the first byte ([MQTT-2.2.2-1]).
#[inline]
fn check_fixed_header_flags(packet_type: u8, flags: u8) -> Result<(), DecodeError> {
    let required = match packet_type {
        kind::PUBLISH => {
            // [MQTT-3.3.1-4] QoS bits 11 are malformed; other PUBLISH flags are free.
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::InvalidQoS);
            }
            return Ok(());
        }
        // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        kind::CONNECT..=kind::DISCONNECT => 0,
        other => return Err(DecodeError::ReservedPacketType(other)),
    };
    if flags != required {
        return Err(DecodeError::InvalidFixedHeaderFlags { packet_type, flags });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::topic::{TopicFilter, TopicName};
    use crate::types::{ConnectReturnCode, KeepAlive, Protocol, QoS, QosPid};

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn one_of_each() -> Vec<Packet> {
        vec![
            Packet::from(Connect {
                protocol: Protocol::V311,
                keep_alive: KeepAlive(60),
                client_id: "client".into(),
                clean_session: true,
                will: Some(LastWill {
                    topic: TopicName::new("will/topic").unwrap(),
                    payload: Bytes::from_static(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                username: Some("user".into()),
                password: Some(Bytes::from_static(b"\x00pw")),
            }),
            Packet::from(Connect {
                protocol: Protocol::V31,
                keep_alive: KeepAlive(0),
                client_id: String::new(),
                clean_session: false,
                will: None,
                username: None,
                password: None,
            }),
            Packet::ConnAck(ConnAck {
                session_present: true,
                return_code: ConnectReturnCode::Accepted,
            }),
            Packet::Publish(Publish {
                dup: true,
                qos_pid: QosPid::ExactlyOnce(id(7)),
                retain: true,
                topic: TopicName::new("a/b").unwrap(),
                payload: Bytes::from(vec![1u8; 300]),
            }),
            Packet::PubAck(id(1)),
            Packet::PubRec(id(2)),
            Packet::PubRel(id(3)),
            Packet::PubComp(id(4)),
            Packet::Subscribe(Subscribe {
                packet_id: id(5),
                filters: vec![
                    (TopicFilter::new("a/+").unwrap(), QoS::ExactlyOnce),
                    (TopicFilter::new("#").unwrap(), QoS::AtMostOnce),
                ],
            }),
            Packet::SubAck(SubAck {
                packet_id: id(5),
                return_codes: vec![
                    SubAckReturnCode::Success(QoS::AtLeastOnce),
                    SubAckReturnCode::Failure,
                ],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id(6),
                filters: vec![TopicFilter::new("a/+").unwrap()],
            }),
            Packet::UnsubAck(id(6)),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect,
        ]
    }

    #[test]
    fn every_packet_round_trips_and_reports_its_length() {
        for packet in one_of_each() {
            let mut buf = BytesMut::new();
            packet.encode(&mut buf).unwrap();
            assert_eq!(buf.len(), packet.encoded_len(), "{}", packet.name());
            let decoded = Decoder::default().decode(&mut buf).unwrap();
            assert_eq!(decoded.as_ref(), Some(&packet));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_stream_fed_one_byte_at_a_time_decodes_the_same_packets() {
        let packets = one_of_each();
        let mut stream = BytesMut::new();
        for packet in &packets {
            packet.encode(&mut stream).unwrap();
        }
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &byte in stream.iter() {
            buf.extend_from_slice(&[byte]);
            let before = buf.len();
            match decoder.decode(&mut buf).unwrap() {
                Some(packet) => decoded.push(packet),
                None => assert_eq!(buf.len(), before, "a partial packet consumed bytes"),
            }
        }
        assert_eq!(decoded, packets);
    }

    #[test]
    fn an_oversized_packet_is_refused_from_its_fixed_header() {
        let mut decoder = Decoder::new(100);
        // PUBLISH announcing 200 bytes, none of which has arrived.
        let mut buf = BytesMut::from(&[0x30, 0xc8, 0x01][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge {
                size: 203,
                max: 100
            })
        );
    }

    #[test]
    fn a_decoded_publish_payload_shares_the_read_buffer() {
        let mut buf = BytesMut::from(&b"\x30\x07\x00\x03a/bhi"[..]);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(publish)) = Decoder::default().decode(&mut buf).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.payload.as_ptr() as usize, start + 7);
        // A short topic is copied inline.
        assert_eq!(publish.topic.as_str(), "a/b");
    }

    #[test]
    fn a_long_decoded_topic_shares_the_read_buffer() {
        let topic = "t/".repeat(40);
        let mut packet = BytesMut::new();
        Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: TopicName::new(topic.as_str()).unwrap(),
            payload: Bytes::new(),
        })
        .encode(&mut packet)
        .unwrap();
        let start = packet.as_ptr() as usize;
        let Some(Packet::Publish(publish)) = Decoder::default().decode(&mut packet).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.topic.as_str(), topic);
        assert_eq!(publish.topic.as_str().as_ptr() as usize, start + 4);
    }

    #[test]
    fn encode_into_shares_large_payloads_and_matches_encode() {
        let publish = Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(id(9)),
            retain: false,
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from(vec![7u8; 4096]),
        };
        let mut out = OutBuf::new();
        publish.encode_into(&mut out).unwrap();
        Packet::PingReq.encode_into(&mut out).unwrap();
        let mut expected = BytesMut::new();
        Packet::Publish(publish.clone())
            .encode(&mut expected)
            .unwrap();
        Packet::PingReq.encode(&mut expected).unwrap();
        assert_eq!(out.len(), expected.len());
        let mut chunks = [std::io::IoSlice::new(&[]); 4];
        let n = bytes::Buf::chunks_vectored(&out, &mut chunks);
        assert_eq!(n, 3, "header, shared payload, trailing PINGREQ");
        assert_eq!(chunks[1].as_ptr(), publish.payload.as_ptr());
        let written: Vec<u8> = chunks[..n].iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(written, expected.to_vec());
    }
}
