//! PUBLISH (section 3.3): the application message, both ways.
//!
//! Decoding shares the read buffer: the payload is a [`Bytes`] slice of the packet's frame, and
//! so is the topic when it is too long to be stored inline in the [`TopicName`]. Encoding writes the fixed header, topic and packet id, and
//! either copies the payload ([`Publish::encode`]) or hands it back / queues it shared
//! ([`Publish::encode_header`], [`Publish::encode_into`]) so a fan-out never copies it per
//! subscriber.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::outbuf::OutBuf;
use crate::topic::{checked_name_str, TopicName, INLINE_TOPIC_LEN};
use crate::types::{PacketId, QosPid};
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

    #[inline]
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let (head, head_len) = self.head()?;
        let topic = self.topic.as_str();
        let packet_id = self.qos_pid.packet_id();
        let id_len = if packet_id.is_some() { 2 } else { 0 };
        // Room for the whole blocks that `put_prefix` writes before moving past their prefix.
        let room = head.len() + topic.len().max(INLINE_TOPIC_LEN) + id_len + self.payload.len();
        let written = wire::append_with(out, room, |spare| {
            spare.put_prefix(&head, head_len);
            match self.topic.inline_block() {
                Some(block) => spare.put_prefix(block, topic.len()),
                None => spare.put(topic.as_bytes()),
            }
            if let Some(id) = packet_id {
                spare.put(&id.get().to_be_bytes());
            }
            spare.put(&self.payload);
        });
        if !written {
            // Not reachable (`append_with` reserved `room`), but writing field by field is
            // always right.
            self.write_header(out, self.payload.len())?;
            out.extend_from_slice(&self.payload);
        }
        Ok(())
    }

    /// Checks what the encoder refuses and packs the fixed header and the topic length into a
    /// word (see [`wire::header_word`]).
    #[inline]
    fn head(&self) -> Result<([u8; 8], usize), EncodeError> {
        // [MQTT-3.3.1-2] a decoder refuses DUP on QoS 0, so the encoder does too.
        if self.dup && self.qos_pid == QosPid::AtMostOnce {
            return Err(EncodeError::DupWithQoS0);
        }
        let flags =
            u8::from(self.dup) << 3 | self.qos_pid.qos().as_u8() << 1 | u8::from(self.retain);
        // A `TopicName` is at most 65,535 bytes, so its length fits the u16.
        let topic_len = self.topic.as_str().len();
        wire::header_word(
            kind::PUBLISH << 4 | flags,
            self.remaining_len(),
            topic_len as u16,
        )
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
        let (head, head_len) = self.head()?;
        let topic = self.topic.as_str();
        let packet_id = self.qos_pid.packet_id();
        let id_len = if packet_id.is_some() { 2 } else { 0 };
        // One reservation for everything, with room for the whole blocks that `put_prefix`
        // copies before cutting them back.
        out.reserve(head.len() + topic.len().max(INLINE_TOPIC_LEN) + id_len + extra);
        wire::put_prefix(out, &head, head_len);
        match self.topic.inline_block() {
            Some(block) => wire::put_prefix(out, block, topic.len()),
            None => out.extend_from_slice(topic.as_bytes()),
        }
        if let Some(id) = packet_id {
            out.put_u16(id.get());
        }
        Ok(())
    }

    /// Decodes the complete PUBLISH at the front of `buf` (`size` bytes, of which `header_len`
    /// are the fixed header) and consumes it, also on error. `flags` is the low nibble of the
    /// first byte (QoS 3 was refused with the fixed header).
    ///
    /// The fields are parsed in place; only the payload (and a topic too long to be stored
    /// inline) is split off the buffer, so a PUBLISH costs one reference count, not a frame.
    #[inline]
    pub(crate) fn decode_from(
        flags: u8,
        buf: &mut BytesMut,
        header_len: usize,
        size: usize,
    ) -> Result<Publish, DecodeError> {
        let body = buf.get(header_len..size).unwrap_or_default();
        let (name, qos_pid) = match parse_fields(flags, body) {
            Ok(fields) => fields,
            Err(e) => {
                buf.advance(size.min(buf.len()));
                return Err(e);
            }
        };
        let name_len = name.len();
        let id_len = if qos_pid.packet_id().is_some() { 2 } else { 0 };
        // `parse_fields` checked that the fields fit in the body, so none of this overflows.
        let fields_len = 2 + name_len + id_len;
        // The topic is copied before the buffer is touched: splitting the payload off below
        // takes a locked instruction, which lets the copy reach the cache before the topic is
        // moved into the packet (a move straight after the copy waits for it).
        let inline = TopicName::inline_from_checked(name, body.get(2..).unwrap_or_default());
        let topic = match inline {
            Some(topic) => {
                buf.advance(header_len + fields_len);
                topic
            }
            None => {
                // A long topic: share it with the read buffer.
                buf.advance(header_len + 2);
                let Ok(name) = ByteString::try_from(buf.split_to(name_len).freeze()) else {
                    buf.advance(size - header_len - 2 - name_len);
                    return Err(DecodeError::InvalidUtf8);
                };
                buf.advance(id_len);
                TopicName::from_checked(name)
            }
        };
        let payload = buf.split_to(size - header_len - fields_len).freeze();
        Ok(Publish {
            dup: flags & 0b1000 != 0,
            qos_pid,
            retain: flags & 0b0001 != 0,
            topic,
            payload,
        })
    }
}

/// Parses and checks the variable header of a PUBLISH `body`: the topic name, and the QoS with
/// its packet id.
#[inline]
fn parse_fields(flags: u8, body: &[u8]) -> Result<(&str, QosPid), DecodeError> {
    let qos = (flags >> 1) & 0b11;
    // [MQTT-3.3.1-2]
    if flags & 0b1000 != 0 && qos == 0 {
        return Err(DecodeError::DupWithQoS0);
    }
    let [hi, lo, rest @ ..] = body else {
        return Err(DecodeError::Truncated);
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let (raw, after_topic) = rest.split_at_checked(len).ok_or(DecodeError::Truncated)?;
    let name = checked_name_str(raw)?;
    let qos_pid = match qos {
        0 => QosPid::AtMostOnce,
        _ => {
            let [hi, lo, ..] = *after_topic else {
                return Err(DecodeError::Truncated);
            };
            let id =
                PacketId::new(u16::from_be_bytes([hi, lo])).ok_or(DecodeError::ZeroPacketId)?;
            match qos {
                1 => QosPid::AtLeastOnce(id),
                2 => QosPid::ExactlyOnce(id),
                _ => return Err(DecodeError::InvalidQoS),
            }
        }
    };
    Ok((name, qos_pid))
}

/// Reads a topic name, checking every rule in one pass over its bytes: non-empty
/// ([MQTT-4.7.3-1]), no U+0000 ([MQTT-4.7.3-2]), no wildcard ([MQTT-3.3.2-2]), UTF-8
/// ([MQTT-1.5.3-1]). Short names are copied inline, long ones share the read buffer. Shared
/// with the will topic of CONNECT.
#[inline]
pub(crate) fn decode_topic_name(body: &mut Reader) -> Result<TopicName, DecodeError> {
    let len = usize::from(body.u16()?);
    let name = checked_name_str(body.peek(len)?)?;
    if let Some(topic) = TopicName::inline_from_checked(name, body.rest()) {
        body.skip(len);
        return Ok(topic);
    }
    let name = ByteString::try_from(body.take(len)?).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(TopicName::from_checked(name))
}
