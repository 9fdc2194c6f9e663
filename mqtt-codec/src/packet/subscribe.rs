//! SUBSCRIBE (section 3.8): a packet id and at least one topic filter with its requested QoS.

use bytes::{BufMut, BytesMut};

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicFilter;
use crate::types::{PacketId, QoS};
use crate::wire::{self, Cursor};

/// SUBSCRIBE: topic filters with their requested QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet id.
    pub packet_id: PacketId,
    /// At least one filter with its requested QoS ([MQTT-3.8.3-3]).
    pub filters: Vec<(TopicFilter, QoS)>,
}

impl Subscribe {
    pub(crate) fn remaining_len(&self) -> usize {
        2 + self
            .filters
            .iter()
            .map(|(filter, _)| wire::field_len(filter.as_str().len()) + 1)
            .sum::<usize>()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        // [MQTT-3.8.3-3]
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let remaining = self.remaining_len();
        out.reserve(5 + remaining);
        // [MQTT-3.8.1-1] flags 0b0010
        wire::write_fixed_header(out, kind::SUBSCRIBE << 4 | 0b0010, remaining)?;
        out.put_u16(self.packet_id.get());
        for (filter, qos) in &self.filters {
            wire::put_valid_string(out, filter.as_str());
            out.put_u8(qos.as_u8());
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn decode(body: &mut Cursor<'_>) -> Result<Subscribe, DecodeError> {
        let packet_id = body.packet_id()?;
        let mut filters = Vec::with_capacity(body.count_fields(1));
        while body.remaining() > 0 {
            // Decoded in place: see `TopicFilter::decode_in_place`.
            filters.push((TopicFilter::placeholder(), QoS::AtMostOnce));
            let Some((filter, qos)) = filters.last_mut() else {
                break;
            };
            // [MQTT-3.8.3-1] [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]
            TopicFilter::decode_in_place(body, filter)?;
            let requested = body.u8()?;
            // [MQTT-3.8.3-4] the upper six bits are reserved and QoS 3 is malformed.
            *qos = match requested {
                0..=2 => QoS::from_u8(requested),
                _ => None,
            }
            .ok_or(DecodeError::InvalidSubscribeQoS(requested))?;
        }
        // [MQTT-3.8.3-3]
        if filters.is_empty() {
            return Err(DecodeError::SubscribeWithoutFilters);
        }
        Ok(Subscribe { packet_id, filters })
    }
}
