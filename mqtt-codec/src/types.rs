//! Small value types that carry protocol rules: QoS, packet ids, return codes, keep-alive.

use std::num::NonZeroU16;
use std::time::Duration;

/// Quality of service of a PUBLISH or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum QoS {
    /// QoS 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value 0..=2; `None` for 3 and above.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value, 0..=2.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A non-zero packet identifier ([MQTT-2.3.1-1]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The packet id for a wire value; `None` for 0.
    pub fn new(value: u16) -> Option<PacketId> {
        NonZeroU16::new(value).map(PacketId)
    }

    /// The wire value, never 0.
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

/// A PUBLISH's QoS together with its packet id: QoS 0 has none, QoS 1 and 2 always have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum QosPid {
    /// QoS 0, no packet id ([MQTT-2.3.1-5]).
    AtMostOnce,
    /// QoS 1 with its packet id.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet id.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// The QoS part.
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet id, if the QoS has one.
    pub fn packet_id(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(id) | QosPid::ExactlyOnce(id) => Some(id),
        }
    }

    /// Combines a QoS with a packet id; `None` when QoS > 0 and no id is given.
    pub fn from_parts(qos: QoS, packet_id: Option<PacketId>) -> Option<QosPid> {
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => Some(QosPid::AtMostOnce),
            (QoS::AtLeastOnce, Some(id)) => Some(QosPid::AtLeastOnce(id)),
            (QoS::ExactlyOnce, Some(id)) => Some(QosPid::ExactlyOnce(id)),
            _ => None,
        }
    }
}

/// The protocol a CONNECT asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    #[default]
    V311,
}

impl Protocol {
    /// The protocol name written in CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V31 => "MQIsdp",
            Protocol::V311 => "MQTT",
        }
    }

    /// The protocol level byte written in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V31 => 3,
            Protocol::V311 => 4,
        }
    }
}

/// The CONNACK return code (section 3.2.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: unacceptable protocol version.
    UnacceptableProtocolVersion = 1,
    /// 0x02: identifier rejected.
    IdentifierRejected = 2,
    /// 0x03: server unavailable.
    ServerUnavailable = 3,
    /// 0x04: bad user name or password.
    BadUsernameOrPassword = 4,
    /// 0x05: not authorized.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The return code for a wire value 0..=5.
    pub fn from_u8(value: u8) -> Option<ConnectReturnCode> {
        Some(match value {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUsernameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for ConnectReturnCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ConnectReturnCode::Accepted => "connection accepted",
            ConnectReturnCode::UnacceptableProtocolVersion => "unacceptable protocol version",
            ConnectReturnCode::IdentifierRejected => "identifier rejected",
            ConnectReturnCode::ServerUnavailable => "server unavailable",
            ConnectReturnCode::BadUsernameOrPassword => "bad user name or password",
            ConnectReturnCode::NotAuthorized => "not authorized",
        };
        write!(f, "{text} (0x{:02x})", self.as_u8())
    }
}

/// The keep-alive interval of a CONNECT, in seconds; 0 turns keep-alive off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeepAlive(pub u16);

impl KeepAlive {
    /// A keep-alive of `secs` seconds.
    pub fn from_secs(secs: u16) -> KeepAlive {
        KeepAlive(secs)
    }

    /// The interval, or `None` when keep-alive is off.
    pub fn interval(self) -> Option<Duration> {
        (self.0 > 0).then(|| Duration::from_secs(u64::from(self.0)))
    }
}
