//! PUBLISH (section 3.3): the application message, both ways.
//!
//! Decoding shares the read buffer: the topic is a [`ByteString`] and the payload a [`Bytes`]
//! slice of the packet's frame. Encoding writes the fixed header, topic and packet id, and
//! either copies the payload ([`Publish::encode`]) or hands it back / queues it shared
//! ([`Publish::encode_header`], [`Publish::encode_into`]) so a fan-out never copies it per
//! subscriber.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::outbuf::OutBuf;
use crate::topic::TopicName;
use crate::types::QosPid;
use crate::wire::{self, Reader};

/// PUBLISH: an application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this may be a re-delivery. Always `false` with QoS 0 ([MQTT-3.3.1-2]).
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

impl Publish {
    /// Appends this PUBLISH's fixed header, topic and packet id to `out`, and returns the
    /// payload to be written right after it, without copying it (a clone of the shared
    /// [`Bytes`]). Fan-out uses this to encode one message for many subscribers while sharing
    /// the payload. On error nothing is appended.
    pub fn encode_header(&self, out: &mut BytesMut) -> Result<Bytes, EncodeError> {
        self.write_header(out, 0)?;
        Ok(self.payload.clone())
    }

    /// Appends this PUBLISH to `out`: header, topic and packet id to its tail, the payload
    /// through [`OutBuf::push_shared`] (shared for large payloads, copied for small ones).
    pub fn encode_into(&self, out: &mut OutBuf) -> Result<(), EncodeError> {
        self.write_header(out.tail_mut(), 0)?;
        out.push_shared(self.payload.clone());
        Ok(())
    }

    /// The number of bytes the encoded packet takes, fixed header included.
    pub fn encoded_len(&self) -> usize {
        let remaining = self.remaining_len();
        1 + wire::remaining_length_len(remaining) + remaining
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.write_header(out, self.payload.len())?;
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    pub(crate) fn remaining_len(&self) -> usize {
        let id_len = if self.qos_pid.packet_id().is_some() {
            2
        } else {
            0
        };
        wire::field_len(self.topic.as_str().len()) + id_len + self.payload.len()
    }

    /// Writes everything but the payload, reserving room for `extra` more bytes after it.
    #[inline]
    fn write_header(&self, out: &mut BytesMut, extra: usize) -> Result<(), EncodeError> {
        // [MQTT-3.3.1-2] a decoder refuses DUP on QoS 0, so the encoder does too.
        if self.dup && self.qos_pid == QosPid::AtMostOnce {
            return Err(EncodeError::DupWithQoS0);
        }
        let remaining = self.remaining_len();
        let flags =
            u8::from(self.dup) << 3 | self.qos_pid.qos().as_u8() << 1 | u8::from(self.retain);
        let header_len = 1 + wire::remaining_length_len(remaining) + remaining - self.payload.len();
        out.reserve(header_len + extra);
        wire::write_fixed_header(out, kind::PUBLISH << 4 | flags, remaining)?;
        wire::put_valid_string(out, self.topic.as_str());
        if let Some(id) = self.qos_pid.packet_id() {
            out.put_u16(id.get());
        }
        Ok(())
    }

    /// Decodes a PUBLISH body; `flags` is the low nibble of the first byte (QoS 3 was refused
    /// with the fixed header).
    pub(crate) fn decode(flags: u8, body: &mut Reader) -> Result<Publish, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let retain = flags & 0b0001 != 0;
        let qos = (flags >> 1) & 0b11;
        // [MQTT-3.3.1-2]
        if dup && qos == 0 {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = decode_topic_name(body)?;
        let qos_pid = match qos {
            0 => QosPid::AtMostOnce,
            1 => QosPid::AtLeastOnce(body.packet_id()?),
            2 => QosPid::ExactlyOnce(body.packet_id()?),
            _ => return Err(DecodeError::InvalidQoS),
        };
        Ok(Publish {
            dup,
            qos_pid,
            retain,
            topic,
            payload: body.rest(),
        })
    }
}

/// Reads a topic name, checking every rule in one pass over its bytes: non-empty
/// ([MQTT-4.7.3-1]), no U+0000 ([MQTT-4.7.3-2]), no wildcard ([MQTT-3.3.2-2]), UTF-8
/// ([MQTT-1.5.3-1]). Shared with the will topic of CONNECT.
#[inline]
pub(crate) fn decode_topic_name(body: &mut Reader) -> Result<TopicName, DecodeError> {
    let raw = body.binary()?;
    if raw.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if let Some(at) = memchr::memchr3(0, b'+', b'#', &raw) {
        return Err(if raw.get(at) == Some(&0) {
            DecodeError::NullCharacter
        } else {
            DecodeError::WildcardInTopicName
        });
    }
    let name = ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(TopicName::from_checked(name))
}
