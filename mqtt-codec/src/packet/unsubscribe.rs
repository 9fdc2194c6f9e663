//! UNSUBSCRIBE (section 3.10): a packet id and at least one topic filter.

use bytes::{BufMut, BytesMut};

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicFilter;
use crate::types::PacketId;
use crate::wire::{self, Cursor};

/// UNSUBSCRIBE: topic filters to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet id.
    pub packet_id: PacketId,
    /// At least one filter ([MQTT-3.10.3-2]).
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn remaining_len(&self) -> usize {
        2 + self
            .filters
            .iter()
            .map(|filter| wire::field_len(filter.as_str().len()))
            .sum::<usize>()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        // [MQTT-3.10.3-2]
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let remaining = self.remaining_len();
        out.reserve(5 + remaining);
        // [MQTT-3.10.1-1] flags 0b0010
        wire::write_fixed_header(out, kind::UNSUBSCRIBE << 4 | 0b0010, remaining)?;
        out.put_u16(self.packet_id.get());
        for filter in &self.filters {
            wire::put_valid_string(out, filter.as_str());
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn decode(body: &mut Cursor<'_>) -> Result<Unsubscribe, DecodeError> {
        let packet_id = body.packet_id()?;
        let mut filters = Vec::with_capacity(body.count_fields(0));
        while body.remaining() > 0 {
            // [MQTT-3.10.3-1] Decoded in place: see `TopicFilter::decode_in_place`.
            filters.push(TopicFilter::placeholder());
            let Some(filter) = filters.last_mut() else {
                break;
            };
            TopicFilter::decode_in_place(body, filter)?;
        }
        // [MQTT-3.10.3-2]
        if filters.is_empty() {
            return Err(DecodeError::UnsubscribeWithoutFilters);
        }
        Ok(Unsubscribe { packet_id, filters })
    }
}
