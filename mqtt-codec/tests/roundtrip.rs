//! Properties of the codec over generated packets and bytes: `decode(encode(p)) == p` for every
//! packet type, incremental decoding equals one-shot decoding, and no input panics the decoder.

use bytes::{Buf, Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, Decoder, KeepAlive, LastWill, OutBuf, Packet, PacketId,
    Protocol, Publish, QoS, QosPid, SubAck, SubAckReturnCode, Subscribe, TopicFilter, TopicName,
    Unsubscribe,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|n| PacketId::new(n).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Any string a packet may carry: no U+0000, multi-byte characters included.
fn mqtt_string() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,24}"
}

fn topic_level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9 $é😀]{1,8}",
        "\\PC{1,4}".prop_map(|s: String| s.replace(['+', '#', '/', '\0'], "_")),
    ]
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(topic_level(), 1..6).prop_filter_map("empty topic", |levels| {
        TopicName::new(levels.join("/")).ok()
    })
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    (
        prop::collection::vec(
            prop_oneof![3 => topic_level(), 1 => Just("+".to_string())],
            1..6,
        ),
        any::<bool>(),
    )
        .prop_filter_map("empty filter", |(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            TopicFilter::new(levels.join("/")).ok()
        })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..2048),
    ]
    .prop_map(Bytes::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn last_will() -> impl Strategy<Value = LastWill> {
    (topic_name(), binary(), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
        LastWill {
            topic,
            payload,
            qos,
            retain,
        }
    })
}

fn connect() -> impl Strategy<Value = Connect> {
    (
        prop_oneof![Just(Protocol::V311), Just(Protocol::V31)],
        any::<u16>(),
        mqtt_string(),
        any::<bool>(),
        prop::option::of(last_will()),
        prop::option::of((mqtt_string(), prop::option::of(binary()))),
    )
        .prop_map(
            |(protocol, keep_alive, client_id, clean_session, will, credentials)| {
                // [MQTT-3.1.2-22] a password only comes with a user name.
                let (username, password) = match credentials {
                    Some((username, password)) => (Some(username), password),
                    None => (None, None),
                };
                Connect {
                    protocol,
                    keep_alive: KeepAlive(keep_alive),
                    client_id,
                    clean_session,
                    will,
                    username,
                    password,
                }
            },
        )
}

fn connack() -> impl Strategy<Value = ConnAck> {
    (0..=5u8, any::<bool>()).prop_map(|(code, session_present)| {
        let return_code = ConnectReturnCode::from_u8(code).unwrap();
        ConnAck {
            // [MQTT-3.2.2-4]
            session_present: session_present && return_code == ConnectReturnCode::Accepted,
            return_code,
        }
    })
}

fn qos_pid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        packet_id().prop_map(QosPid::AtLeastOnce),
        packet_id().prop_map(QosPid::ExactlyOnce),
    ]
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos_pid(),
        any::<bool>(),
        topic_name(),
        payload(),
    )
        .prop_map(|(dup, qos_pid, retain, topic, payload)| Publish {
            // [MQTT-3.3.1-2]
            dup: dup && qos_pid != QosPid::AtMostOnce,
            qos_pid,
            retain,
            topic,
            payload,
        })
}

fn suback_code() -> impl Strategy<Value = SubAckReturnCode> {
    prop_oneof![
        qos().prop_map(SubAckReturnCode::Success),
        Just(SubAckReturnCode::Failure)
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::from),
        connack().prop_map(Packet::ConnAck),
        publish().prop_map(Packet::Publish),
        packet_id().prop_map(Packet::PubAck),
        packet_id().prop_map(Packet::PubRec),
        packet_id().prop_map(Packet::PubRel),
        packet_id().prop_map(Packet::PubComp),
        (
            packet_id(),
            prop::collection::vec((topic_filter(), qos()), 1..8)
        )
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters })),
        (packet_id(), prop::collection::vec(suback_code(), 0..8)).prop_map(
            |(packet_id, return_codes)| Packet::SubAck(SubAck {
                packet_id,
                return_codes
            })
        ),
        (packet_id(), prop::collection::vec(topic_filter(), 1..8)).prop_map(
            |(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters })
        ),
        packet_id().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn encode_all(packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode(&mut buf).unwrap();
    }
    buf
}

/// Decodes `bytes` arriving in pieces of the given sizes (cycled), asserting that `Ok(None)`
/// never consumes anything.
fn decode_in_pieces(bytes: &[u8], sizes: &[usize]) -> Vec<Packet> {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf).unwrap() {
                Some(packet) => packets.push(packet),
                None => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty());
    packets
}

/// Decodes until the buffer is exhausted, incomplete or malformed; must never panic.
fn decode_until_stuck(bytes: &[u8], max: usize) {
    let mut decoder = Decoder::new(max);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decoder.decode(&mut buf) {
        // Whatever decodes re-encodes.
        let mut out = BytesMut::new();
        packet.encode(&mut out).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_packet_decodes_to_itself(packet in packet()) {
        let mut buf = BytesMut::new();
        packet.encode(&mut buf).unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len());
        let decoded = Decoder::default().decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_into_an_outbuf_writes_the_same_bytes(packets in prop::collection::vec(packet(), 1..8)) {
        let expected = encode_all(&packets);
        let mut out = OutBuf::new();
        for packet in &packets {
            packet.encode_into(&mut out).unwrap();
        }
        prop_assert_eq!(out.remaining(), expected.len());
        let written = out.copy_to_bytes(expected.len());
        prop_assert_eq!(&written[..], &expected[..]);
    }

    #[test]
    fn encode_header_plus_payload_is_the_whole_publish(publish in publish()) {
        let mut header = BytesMut::new();
        let payload = publish.encode_header(&mut header).unwrap();
        header.extend_from_slice(&payload);
        let mut whole = BytesMut::new();
        Packet::Publish(publish).encode(&mut whole).unwrap();
        prop_assert_eq!(header, whole);
    }

    #[test]
    fn byte_by_byte_decoding_equals_one_shot(packets in prop::collection::vec(packet(), 1..8)) {
        let bytes = encode_all(&packets);
        prop_assert_eq!(decode_in_pieces(&bytes, &[1]), packets.clone());
        prop_assert_eq!(decode_in_pieces(&bytes, &[bytes.len()]), packets);
    }

    #[test]
    fn decoding_in_random_pieces_equals_one_shot(
        packets in prop::collection::vec(packet(), 1..8),
        sizes in prop::collection::vec(1..300usize, 1..16),
    ) {
        let bytes = encode_all(&packets);
        prop_assert_eq!(decode_in_pieces(&bytes, &sizes), packets);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        max in prop_oneof![Just(16usize), Just(1 << 20)],
    ) {
        decode_until_stuck(&bytes, max);
    }

    #[test]
    fn mutated_packets_never_panic_the_decoder(
        packets in prop::collection::vec(packet(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        // Valid packets with a few bytes overwritten reach deeper into the body decoders than
        // random bytes do.
        let mut bytes = encode_all(&packets).to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_until_stuck(&bytes, 1 << 20);
    }

    #[test]
    fn truncated_packets_are_incomplete_not_errors(packet in packet(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_all(std::slice::from_ref(&packet));
        let len = cut.index(bytes.len());
        let mut buf = BytesMut::from(&bytes[..len]);
        prop_assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        prop_assert_eq!(buf.len(), len);
    }
}
