//! CONNECT (section 3.1): protocol name and level, flags, keep-alive, then the payload fields in
//! their fixed order: client id, will topic and message, user name, password ([MQTT-3.1.3-1]).
//!
//! Both MQTT 3.1.1 (`MQTT`, level 4) and MQTT 3.1 (`MQIsdp`, level 3) are decoded. A known
//! protocol name with another level is [`DecodeError::UnsupportedProtocolLevel`], which the
//! server answers with CONNACK 0x01; an unknown name is [`DecodeError::InvalidProtocolName`],
//! which it answers by closing.

use bytes::{BufMut, Bytes, BytesMut};

use super::kind;
use super::publish::decode_topic_name;
use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicName;
use crate::types::{KeepAlive, Protocol, QoS};
use crate::wire::{self, Reader};

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

const FLAG_RESERVED: u8 = 0b0000_0001;
const FLAG_CLEAN_SESSION: u8 = 0b0000_0010;
const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_QOS: u8 = 0b0001_1000;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

impl Connect {
    pub(crate) fn remaining_len(&self) -> usize {
        let mut len = wire::field_len(self.protocol.name().len()) + 1 + 1 + 2;
        len += wire::field_len(self.client_id.len());
        if let Some(will) = &self.will {
            len += wire::field_len(will.topic.as_str().len()) + wire::field_len(will.payload.len());
        }
        if let Some(username) = &self.username {
            len += wire::field_len(username.len());
        }
        if let Some(password) = &self.password {
            len += wire::field_len(password.len());
        }
        len
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        // [MQTT-3.1.2-22] a decoder refuses a password without a user name.
        if self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        let mut flags = 0;
        if self.clean_session {
            flags |= FLAG_CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | will.qos.as_u8() << FLAG_WILL_QOS_SHIFT;
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        // Encode into a scratch buffer first so that an error appends nothing.
        let remaining = self.remaining_len();
        let start = out.len();
        out.reserve(5 + remaining);
        let result = (|| {
            wire::write_fixed_header(out, kind::CONNECT << 4, remaining)?;
            wire::put_valid_string(out, self.protocol.name());
            out.put_u8(self.protocol.level());
            out.put_u8(flags);
            out.put_u16(self.keep_alive.0);
            wire::put_string(out, &self.client_id)?;
            if let Some(will) = &self.will {
                wire::put_valid_string(out, will.topic.as_str());
                wire::put_binary(out, &will.payload)?;
            }
            if let Some(username) = &self.username {
                wire::put_string(out, username)?;
            }
            if let Some(password) = &self.password {
                wire::put_binary(out, password)?;
            }
            Ok(())
        })();
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    pub(crate) fn decode(body: &mut Reader) -> Result<Connect, DecodeError> {
        let name = body.binary()?;
        let level = body.u8()?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => Protocol::V311,
            (b"MQIsdp", 3) => Protocol::V31,
            // [MQTT-3.1.2-2] a known name with an unknown level is answered with CONNACK 0x01;
            // the rest of the packet may follow another version's layout, so stop here.
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(DecodeError::UnsupportedProtocolLevel(level))
            }
            // [MQTT-3.1.2-1]
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = body.u8()?;
        // [MQTT-3.1.2-3]
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_qos = (flags & FLAG_WILL_QOS) >> FLAG_WILL_QOS_SHIFT;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
        if !has_will && (will_qos != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        // [MQTT-3.1.2-14]
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillQoS)?;
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        // [MQTT-3.1.2-22]
        if has_password && !has_username {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = KeepAlive(body.u16()?);
        // [MQTT-3.1.3-3] [MQTT-3.1.3-4]
        let client_id = body.owned_string()?;
        let will = if has_will {
            // [MQTT-3.1.2-9] [MQTT-3.1.3-10]
            let topic = decode_topic_name(body)?;
            let payload = body.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        // [MQTT-3.1.2-19] [MQTT-3.1.3-11]
        let username = if has_username {
            Some(body.owned_string()?)
        } else {
            None
        };
        // [MQTT-3.1.2-21]
        let password = if has_password {
            Some(body.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol,
            keep_alive,
            client_id,
            clean_session: flags & FLAG_CLEAN_SESSION != 0,
            will,
            username,
            password,
        })
    }
}
