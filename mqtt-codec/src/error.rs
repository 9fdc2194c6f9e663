//! Errors of the codec and the protocol state machines, each naming the spec rule it enforces.

use crate::types::ConnectReturnCode;

/// Why bytes could not be decoded into a packet. Every variant closes the connection.
///
/// "Need more bytes" is never an error: the decoder returns `Ok(None)` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type 0 or 15.
    #[error("[MQTT-2.2.1] reserved packet type {0}")]
    ReservedPacketType(u8),
    /// Fixed-header flags that differ from the values section 2.2.2 requires.
    #[error("[MQTT-2.2.2-1] invalid fixed-header flags 0x{flags:x} for packet type {packet_type}")]
    InvalidFixedHeaderFlags {
        /// The packet type, 1..=14.
        packet_type: u8,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// A remaining length that needs a fifth byte.
    #[error("[MQTT-2.2.3] remaining length uses more than 4 bytes")]
    RemainingLengthTooLong,
    /// A packet larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// The packet's announced size (fixed header plus remaining length).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The packet's body ends before a field it must contain.
    #[error("packet body is shorter than its fields")]
    Truncated,
    /// The packet's body has bytes after its last field.
    #[error("packet body has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// Ill-formed UTF-8 in a string field.
    #[error("[MQTT-1.5.3-1] string is not well-formed UTF-8")]
    InvalidUtf8,
    /// U+0000 in a string field.
    #[error("[MQTT-1.5.3-2] string contains U+0000")]
    NullCharacter,
    /// A string longer than 65,535 bytes (encoding side).
    #[error("[MQTT-1.5.3] string is longer than 65,535 bytes")]
    StringTooLong,
    /// A QoS 0 PUBLISH with the DUP flag set.
    #[error("[MQTT-3.3.1-2] PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQoS0,
    /// A PUBLISH QoS of 3.
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidQoS,
    /// A PUBLISH topic name with `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name contains a wildcard")]
    WildcardInTopicName,
    /// An empty topic name or topic filter.
    #[error("[MQTT-4.7.3-1] topic name or filter is empty")]
    EmptyTopic,
    /// `#` not alone in its level or not the last level.
    #[error("[MQTT-4.7.1-2] multi-level wildcard '#' must be alone in the last level")]
    MultiLevelWildcardNotLast,
    /// `+` sharing its level with other characters.
    #[error("[MQTT-4.7.1-3] single-level wildcard '+' must occupy a whole level")]
    SingleLevelWildcardNotAlone,
    /// Packet id 0 where a non-zero one is required.
    #[error("[MQTT-2.3.1-1] packet identifier is 0")]
    ZeroPacketId,
    /// A SUBSCRIBE without any topic filter.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE without a topic filter")]
    SubscribeWithoutFilters,
    /// An UNSUBSCRIBE without any topic filter.
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter")]
    UnsubscribeWithoutFilters,
    /// A SUBSCRIBE requested-QoS byte with reserved bits or QoS 3.
    #[error("[MQTT-3.8.3-4] invalid requested QoS byte 0x{0:02x} in SUBSCRIBE")]
    InvalidSubscribeQoS(u8),
    /// A protocol name other than `MQTT` or `MQIsdp`: close without CONNACK.
    #[error("[MQTT-3.1.2-1] unknown protocol name")]
    InvalidProtocolName,
    /// A CONNECT with a known protocol name but a level other than 4 (`MQTT`) or 3 (`MQIsdp`).
    ///
    /// Unlike every other variant, the server answers this one with CONNACK return code 0x01
    /// before closing ([MQTT-3.1.2-2]); see [`DecodeError::connack_return_code`]. The decoder
    /// has consumed the whole CONNECT when it returns this error.
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT's reserved flag bit is set.
    #[error("[MQTT-3.1.2-3] CONNECT reserved flag is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag.
    #[error("[MQTT-3.1.2-11] will QoS or retain set without the will flag")]
    WillFlagsWithoutWill,
    /// A Will QoS of 3.
    #[error("[MQTT-3.1.2-14] will QoS is 3")]
    InvalidWillQoS,
    /// The password flag without the user name flag.
    #[error("[MQTT-3.1.2-22] password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// CONNACK's reserved bits are set, its return code is unknown, or it refuses the
    /// connection with Session Present set ([MQTT-3.2.2-4]).
    #[error("[MQTT-3.2.2-1] invalid CONNACK")]
    InvalidConnAck,
    /// A SUBACK return code other than 0x00, 0x01, 0x02, 0x80.
    #[error("[MQTT-3.9.3-2] invalid SUBACK return code 0x{0:02x}")]
    InvalidSubAckReturnCode(u8),
}

impl DecodeError {
    /// The CONNACK return code a server sends before closing the connection for this error, if
    /// any: `Some(UnacceptableProtocolVersion)` for [`DecodeError::UnsupportedProtocolLevel`]
    /// ([MQTT-3.1.2-2]); `None` for every other error, which closes without a CONNACK.
    pub fn connack_return_code(self) -> Option<ConnectReturnCode> {
        match self {
            DecodeError::UnsupportedProtocolLevel(_) => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            _ => None,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed the largest remaining length MQTT can express (268,435,455).
    #[error("packet too large to encode: remaining length {0}")]
    PacketTooLarge(usize),
    /// A string field is longer than 65,535 bytes.
    #[error("[MQTT-1.5.3] string field longer than 65,535 bytes")]
    StringTooLong,
    /// A binary field (will message, password) is longer than 65,535 bytes.
    #[error("binary field longer than 65,535 bytes")]
    BinaryTooLong,
    /// A string field (client id, user name) contains U+0000.
    #[error("[MQTT-1.5.3-2] string field contains U+0000")]
    NullCharacter,
    /// A CONNECT with a password but no user name.
    #[error("[MQTT-3.1.2-22] password without a user name")]
    PasswordWithoutUsername,
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("[MQTT-3.8.3-3] [MQTT-3.10.3-2] SUBSCRIBE or UNSUBSCRIBE without a topic filter")]
    NoTopicFilters,
    /// A QoS 0 PUBLISH with the DUP flag set.
    #[error("[MQTT-3.3.1-2] PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQoS0,
    /// A CONNACK that refuses the connection with Session Present set.
    #[error("[MQTT-3.2.2-4] CONNACK refusing the connection has Session Present set")]
    SessionPresentWithRefusal,
}

/// A violation of the protocol by the peer: what to tell it, and that the connection closes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The first packet on a connection was not CONNECT.
    #[error("[MQTT-3.1.0-1] first packet is not CONNECT")]
    FirstPacketNotConnect,
    /// A second CONNECT on one connection.
    #[error("[MQTT-3.1.0-2] second CONNECT on the same connection")]
    SecondConnect,
    /// A packet that only the other side may send (e.g. CONNACK from a client).
    #[error("unexpected {0} packet from this peer")]
    UnexpectedPacket(&'static str),
    /// The connection must be answered with this CONNACK return code and then closed.
    #[error("connection refused: {0}")]
    Refused(ConnectReturnCode),
    /// Too many incoming QoS 2 packet ids awaiting PUBREL.
    #[error("too many unreleased QoS 2 messages ({0})")]
    TooManyUnreleased(usize),
    /// An acknowledgement for a packet id that is not in flight.
    #[error("[MQTT-2.3.1-6] acknowledgement for unknown packet id {0}")]
    UnknownPacketId(u16),
}
