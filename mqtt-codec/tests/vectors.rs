//! Byte-exact vectors: the spec's examples, captures of mosquitto_pub/mosquitto_sub talking to a
//! mosquitto broker, and one test per malformed-input rule the decoder enforces, named after the
//! rule. Encoding-side refusals are at the end.

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, Decoder, EncodeError, KeepAlive, LastWill,
    Packet, PacketId, Protocol, Publish, QoS, QosPid, SubAck, SubAckReturnCode, Subscribe,
    TopicFilter, TopicName, Unsubscribe,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Bytes from hex, ignoring whitespace.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// Decodes `bytes`, which must hold exactly one complete packet or a body error.
fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::default()
        .decode(&mut buf)?
        .expect("a complete packet");
    assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
    Ok(packet)
}

/// Decodes `bytes` expecting an error, and returns it.
fn decode_err(bytes: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match Decoder::default().decode(&mut buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(&mut buf).unwrap();
    assert_eq!(buf.len(), packet.encoded_len());
    buf.to_vec()
}

/// `bytes` decodes to `packet` (whole and byte by byte) and `packet` encodes to `bytes`.
fn assert_vector(bytes: &[u8], packet: Packet) {
    assert_eq!(decode(bytes).as_ref(), Ok(&packet));
    assert_eq!(encode(&packet), bytes, "encoding {}", packet.name());
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    for (i, &byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let got = decoder.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(
                got,
                None,
                "complete after {} of {} bytes",
                i + 1,
                bytes.len()
            );
        } else {
            assert_eq!(got.as_ref(), Some(&packet));
        }
    }
}

fn encode_err(packet: &Packet) -> EncodeError {
    let mut buf = BytesMut::from(&b"kept"[..]);
    let err = packet.encode(&mut buf).expect_err("encoding must fail");
    assert_eq!(&buf[..], b"kept", "a failed encode appended bytes");
    err
}

// ---------------------------------------------------------------------------------------------
// The spec's examples (MQTT 3.1.1, section 3), completed into whole packets.

#[test]
fn spec_connect_variable_header_example_3_1_2_11() {
    // Figure 3.6: name MQTT, level 4, flags 0xCE (user name, password, will QoS 1, will,
    // clean session), keep alive 10; the payload fields follow in the order of 3.1.3.
    let bytes = hex("10 23  0004 4d515454  04  ce  000a
         0002 6964  0003 772f74  0002 6279  0004 75736572  0004 70617373");
    assert_vector(
        &bytes,
        Packet::from(Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive(10),
            client_id: "id".into(),
            clean_session: true,
            will: Some(LastWill {
                topic: topic("w/t"),
                payload: Bytes::from_static(b"by"),
                qos: QoS::AtLeastOnce,
                retain: false,
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pass")),
        }),
    );
}

#[test]
fn spec_connack_accepted() {
    assert_vector(
        &hex("20 02 00 00"),
        Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted,
        }),
    );
}

#[test]
fn spec_connack_return_codes_3_2_2_3() {
    for code in 1..=5u8 {
        let return_code = ConnectReturnCode::from_u8(code).unwrap();
        assert_vector(
            &[0x20, 0x02, 0x00, code],
            Packet::ConnAck(ConnAck {
                session_present: false,
                return_code,
            }),
        );
    }
}

#[test]
fn spec_publish_variable_header_example_3_3_2_3() {
    // Figure 3.11: topic "a/b", packet id 10; here with QoS 1 and a 3-byte payload.
    assert_vector(
        &hex("32 0a  0003 612f62  000a  010203"),
        Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(id(10)),
            retain: false,
            topic: topic("a/b"),
            payload: Bytes::from_static(&[1, 2, 3]),
        }),
    );
}

#[test]
fn publish_flags_dup_qos2_retain() {
    assert_vector(
        &hex("3d 07  0003 612f62  000a"),
        Packet::Publish(Publish {
            dup: true,
            qos_pid: QosPid::ExactlyOnce(id(10)),
            retain: true,
            topic: topic("a/b"),
            payload: Bytes::new(),
        }),
    );
}

#[test]
fn spec_acknowledgements_3_4_to_3_7_and_3_11() {
    assert_vector(&hex("40 02 00 0a"), Packet::PubAck(id(10)));
    assert_vector(&hex("50 02 00 0a"), Packet::PubRec(id(10)));
    assert_vector(&hex("62 02 00 0a"), Packet::PubRel(id(10)));
    assert_vector(&hex("70 02 00 0a"), Packet::PubComp(id(10)));
    assert_vector(&hex("b0 02 ff ff"), Packet::UnsubAck(id(65_535)));
}

#[test]
fn spec_subscribe_payload_example_3_8_3() {
    // Figures 3.21 and 3.22: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
    assert_vector(
        &hex("82 0e  000a  0003 612f62 01  0003 632f64 02"),
        Packet::Subscribe(Subscribe {
            packet_id: id(10),
            filters: vec![
                (filter("a/b"), QoS::AtLeastOnce),
                (filter("c/d"), QoS::ExactlyOnce),
            ],
        }),
    );
}

#[test]
fn spec_suback_payload_example_3_9_3() {
    // Figure 3.26: success QoS 0, success QoS 2, failure.
    assert_vector(
        &hex("90 05  000a  00 02 80"),
        Packet::SubAck(SubAck {
            packet_id: id(10),
            return_codes: vec![
                SubAckReturnCode::Success(QoS::AtMostOnce),
                SubAckReturnCode::Success(QoS::ExactlyOnce),
                SubAckReturnCode::Failure,
            ],
        }),
    );
}

#[test]
fn spec_unsubscribe_payload_example_3_10_3() {
    // Figure 3.30: "a/b" and "c/d".
    assert_vector(
        &hex("a2 0c  000a  0003 612f62  0003 632f64"),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(10),
            filters: vec![filter("a/b"), filter("c/d")],
        }),
    );
}

#[test]
fn spec_pingreq_pingresp_disconnect() {
    assert_vector(&hex("c0 00"), Packet::PingReq);
    assert_vector(&hex("d0 00"), Packet::PingResp);
    assert_vector(&hex("e0 00"), Packet::Disconnect);
}

#[test]
fn spec_remaining_length_of_two_bytes() {
    // 2.2.3: 321 = 0xC1 0x02.
    let payload = vec![0x55u8; 321 - 5];
    let mut bytes = hex("30 c1 02  0003 612f62");
    bytes.extend_from_slice(&payload);
    assert_vector(
        &bytes,
        Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: topic("a/b"),
            payload: payload.into(),
        }),
    );
}

#[test]
fn a_non_minimal_remaining_length_is_accepted() {
    // 3.1.1 does not forbid it (MQTT 5 does); the encoder always writes the minimal form.
    assert_eq!(decode(&hex("c0 80 00")), Ok(Packet::PingReq));
    assert_eq!(
        decode(&hex("40 82 80 00 00 0a")),
        Ok(Packet::PubAck(id(10)))
    );
}

#[test]
fn mqtt_3_1_connect_with_mqisdp_level_3() {
    // MQTT 3.1 as aMQTT and mosquitto still accept it.
    assert_vector(
        &hex("10 12  0006 4d5149736470  03  02  003c  0004 636c6964"),
        Packet::from(Connect {
            protocol: Protocol::V31,
            keep_alive: KeepAlive(60),
            client_id: "clid".into(),
            clean_session: true,
            will: None,
            username: None,
            password: None,
        }),
    );
}

#[test]
fn strings_keep_a_byte_order_mark() {
    // [MQTT-1.5.3-3] EF BB BF is U+FEFF and is neither skipped nor stripped.
    let bytes = hex("30 06  0004 efbbbf61  ");
    let Ok(Packet::Publish(publish)) = decode(&bytes) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(publish.topic.as_str(), "\u{feff}a");
    assert_eq!(encode(&Packet::Publish(publish)), bytes);
}

// ---------------------------------------------------------------------------------------------
// Captures: mosquitto_pub / mosquitto_sub 2.0.11 talking to mosquitto 2.0.11 through a logging
// proxy (Debian bookworm packages), one packet per line: scenario, direction, bytes. Commands:
//   pub_q0            mosquitto_pub -V mqttv311 -i pub-q0 -t a/b -m hello -q 0
//   pub_q1_will_auth  mosquitto_pub -V mqttv311 -i pub-q1 -t sensors/temp -m 21.5 -q 1 -r
//                     -u user -P secret --will-topic clients/pub-q1 --will-payload gone
//                     --will-qos 1 --will-retain
//   pub_q2            mosquitto_pub -V mqttv311 -i pub-q2 -t a/b -m exactly -q 2
//   pub_v31           mosquitto_pub -V mqttv31 -i pub-v31 -t a/b -m old -q 0
//   sub_retained      mosquitto_sub -V mqttv311 -i sub-1 -t 'sensors/#' -t 'a/+' -q 2 -C 1
//   unsub             mosquitto_sub -V mqttv311 -i sub-2 -c -q 1 -t x/y -U 'sensors/#' -E
//   sub_q2            mosquitto_sub -V mqttv311 -i sub-q2 -t q2/t -q 2 -C 1
//                     (then mosquitto_pub -t q2/t -m two -q 2 straight to the broker)
//   session_present   mosquitto_sub -V mqttv311 -i sub-2 -c -q 1 -t x/y -E   (second time)
//   ping              mosquitto_sub -V mqttv311 -i sub-ping -t nothing/here -k 5, stopped at 6.5 s
const MOSQUITTO_CAPTURE: &str = "\
pub_q0 c2s 101200044d5154540402003c00067075622d7130
pub_q0 s2c 20020000
pub_q0 c2s 300a0003612f6268656c6c6f
pub_q0 c2s e000
pub_q1_will_auth c2s 103600044d51545404ee003c00067075622d7131000e636c69656e74732f7075622d71310004676f6e650004757365720006736563726574
pub_q1_will_auth s2c 20020000
pub_q1_will_auth c2s 3314000c73656e736f72732f74656d70000132312e35
pub_q1_will_auth s2c 40020001
pub_q1_will_auth c2s e000
pub_q2 c2s 101200044d5154540402003c00067075622d7132
pub_q2 s2c 20020000
pub_q2 c2s 340e0003612f62000165786163746c79
pub_q2 s2c 50020001
pub_q2 c2s 62020001
pub_q2 s2c 70020001
pub_q2 c2s e000
pub_v31 c2s 101500064d51497364700302003c00077075622d763331
pub_v31 s2c 20020000
pub_v31 c2s 30080003612f626f6c64
pub_v31 c2s e000
sub_retained c2s 101100044d5154540402003c00057375622d31
sub_retained s2c 20020000
sub_retained c2s 82140001000973656e736f72732f23020003612f2b02
sub_retained s2c 900400010202
sub_retained s2c 3314000c73656e736f72732f74656d70000132312e35
sub_retained c2s 40020001
sub_retained c2s e000
unsub c2s 101100044d5154540400003c00057375622d32
unsub s2c 20020000
unsub c2s 820800010003782f7901
unsub s2c 9003000101
unsub c2s a20d0002000973656e736f72732f23
unsub c2s e000
unsub s2c b0020002
sub_q2 c2s 101200044d5154540402003c00067375622d7132
sub_q2 s2c 20020000
sub_q2 c2s 82090001000471322f7402
sub_q2 s2c 9003000102
sub_q2 s2c 340b000471322f74000174776f
sub_q2 c2s 50020001
sub_q2 s2c 62020001
sub_q2 c2s 70020001
sub_q2 c2s e000
session_present c2s 101100044d5154540400003c00057375622d32
session_present s2c 20020100
session_present c2s 820800010003782f7901
session_present s2c 9003000101
session_present c2s e000
ping c2s 101400044d5154540402000500087375622d70696e67
ping s2c 20020000
ping c2s 82110001000c6e6f7468696e672f6865726500
ping s2c 9003000100
ping c2s c000
ping s2c d000
ping c2s e000
";

fn captured(scenario: &str, direction: &str) -> Vec<Vec<u8>> {
    MOSQUITTO_CAPTURE
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (s, d, bytes) = (fields.next()?, fields.next()?, fields.next()?);
            (s == scenario && d == direction).then(|| hex(bytes))
        })
        .collect()
}

#[test]
fn every_captured_packet_decodes_and_re_encodes_byte_exactly() {
    let mut count = 0;
    for line in MOSQUITTO_CAPTURE.lines() {
        let bytes = hex(line.rsplit(' ').next().unwrap());
        let packet = decode(&bytes).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(encode(&packet), bytes, "{line}");
        count += 1;
    }
    assert_eq!(count, 55);
}

#[test]
fn captured_streams_decode_in_one_go_and_byte_by_byte() {
    for direction in ["c2s", "s2c"] {
        let stream: Vec<u8> = MOSQUITTO_CAPTURE
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(direction))
            .flat_map(|l| hex(l.rsplit(' ').next().unwrap()))
            .collect();
        let mut whole = BytesMut::from(&stream[..]);
        let mut decoder = Decoder::default();
        let mut at_once = Vec::new();
        while let Some(packet) = decoder.decode(&mut whole).unwrap() {
            at_once.push(packet);
        }
        assert!(whole.is_empty());
        let mut buf = BytesMut::new();
        let mut trickled = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            if let Some(packet) = decoder.decode(&mut buf).unwrap() {
                trickled.push(packet);
            }
        }
        assert_eq!(at_once, trickled);
    }
}

#[test]
fn mosquitto_pub_connect_with_will_and_credentials() {
    let connect = &captured("pub_q1_will_auth", "c2s")[0];
    assert_eq!(
        decode(connect),
        Ok(Packet::from(Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive(60),
            client_id: "pub-q1".into(),
            clean_session: true,
            will: Some(LastWill {
                topic: topic("clients/pub-q1"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"secret")),
        }))
    );
}

#[test]
fn mosquitto_pub_qos1_retained_publish() {
    let publish = &captured("pub_q1_will_auth", "c2s")[1];
    assert_eq!(
        decode(publish),
        Ok(Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(id(1)),
            retain: true,
            topic: topic("sensors/temp"),
            payload: Bytes::from_static(b"21.5"),
        }))
    );
    assert_eq!(
        decode(&captured("pub_q1_will_auth", "s2c")[1]),
        Ok(Packet::PubAck(id(1)))
    );
}

#[test]
fn mosquitto_qos2_flow_both_ways() {
    let c2s: Vec<Packet> = captured("pub_q2", "c2s")
        .iter()
        .map(|b| decode(b).unwrap())
        .collect();
    let s2c: Vec<Packet> = captured("pub_q2", "s2c")
        .iter()
        .map(|b| decode(b).unwrap())
        .collect();
    assert!(matches!(&c2s[1], Packet::Publish(p) if p.qos_pid == QosPid::ExactlyOnce(id(1))));
    assert_eq!(c2s[2], Packet::PubRel(id(1)));
    assert_eq!(s2c[1..], [Packet::PubRec(id(1)), Packet::PubComp(id(1))]);
    // The subscriber's side: the broker sends PUBLISH and PUBREL, the client PUBREC and PUBCOMP.
    let c2s: Vec<Packet> = captured("sub_q2", "c2s")
        .iter()
        .map(|b| decode(b).unwrap())
        .collect();
    let s2c: Vec<Packet> = captured("sub_q2", "s2c")
        .iter()
        .map(|b| decode(b).unwrap())
        .collect();
    assert_eq!(c2s[2..4], [Packet::PubRec(id(1)), Packet::PubComp(id(1))]);
    assert_eq!(s2c[3], Packet::PubRel(id(1)));
}

#[test]
fn mosquitto_pub_mqtt_3_1_connect() {
    let connect = decode(&captured("pub_v31", "c2s")[0]).unwrap();
    let Packet::Connect(connect) = connect else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.protocol, Protocol::V31);
    assert_eq!(connect.client_id, "pub-v31");
}

#[test]
fn mosquitto_sub_subscribe_suback_and_retained_delivery() {
    let c2s = captured("sub_retained", "c2s");
    let s2c = captured("sub_retained", "s2c");
    assert_eq!(
        decode(&c2s[1]),
        Ok(Packet::Subscribe(Subscribe {
            packet_id: id(1),
            filters: vec![
                (filter("sensors/#"), QoS::ExactlyOnce),
                (filter("a/+"), QoS::ExactlyOnce)
            ],
        }))
    );
    assert_eq!(
        decode(&s2c[1]),
        Ok(Packet::SubAck(SubAck {
            packet_id: id(1),
            return_codes: vec![SubAckReturnCode::Success(QoS::ExactlyOnce); 2],
        }))
    );
    let Ok(Packet::Publish(retained)) = decode(&s2c[2]) else {
        panic!("not a PUBLISH");
    };
    assert!(retained.retain);
    assert_eq!(retained.topic.as_str(), "sensors/temp");
}

#[test]
fn mosquitto_sub_unsubscribe_and_session_present() {
    let c2s = captured("unsub", "c2s");
    assert_eq!(
        decode(&c2s[2]),
        Ok(Packet::Unsubscribe(Unsubscribe {
            packet_id: id(2),
            filters: vec![filter("sensors/#")],
        }))
    );
    assert_eq!(
        decode(&captured("unsub", "s2c")[2]),
        Ok(Packet::UnsubAck(id(2)))
    );
    assert_eq!(
        decode(&captured("session_present", "s2c")[0]),
        Ok(Packet::ConnAck(ConnAck {
            session_present: true,
            return_code: ConnectReturnCode::Accepted,
        }))
    );
}

#[test]
fn mosquitto_sub_keep_alive_ping() {
    assert_eq!(decode(&captured("ping", "c2s")[2]), Ok(Packet::PingReq));
    assert_eq!(decode(&captured("ping", "s2c")[2]), Ok(Packet::PingResp));
}

// ---------------------------------------------------------------------------------------------
// Malformed input: one test per rule.

#[test]
fn mqtt_2_2_1_packet_types_0_and_15_are_rejected() {
    assert_eq!(
        decode_err(&hex("00 00")),
        DecodeError::ReservedPacketType(0)
    );
    assert_eq!(
        decode_err(&hex("f0 00")),
        DecodeError::ReservedPacketType(15)
    );
    // Known from the first byte alone.
    assert_eq!(decode_err(&hex("f0")), DecodeError::ReservedPacketType(15));
}

#[test]
fn mqtt_2_2_2_1_reserved_flags_must_be_zero() {
    for (first, packet_type) in [
        (0x11, 1),
        (0x28, 2),
        (0x41, 4),
        (0x54, 5),
        (0x78, 7),
        (0x92, 9),
        (0xb2, 11),
        (0xc1, 12),
        (0xd8, 13),
        (0xe2, 14),
    ] {
        assert_eq!(
            decode_err(&[first]),
            DecodeError::InvalidFixedHeaderFlags {
                packet_type,
                flags: first & 0x0f
            }
        );
    }
}

#[test]
fn mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    assert_eq!(
        decode_err(&hex("60 02 00 01")),
        DecodeError::InvalidFixedHeaderFlags {
            packet_type: 6,
            flags: 0
        }
    );
    assert_eq!(
        decode_err(&hex("6a 02 00 01")),
        DecodeError::InvalidFixedHeaderFlags {
            packet_type: 6,
            flags: 0xa
        }
    );
}

#[test]
fn mqtt_3_8_1_1_subscribe_flags_must_be_0010() {
    assert_eq!(
        decode_err(&hex("80 06 0001 0001 61 00")),
        DecodeError::InvalidFixedHeaderFlags {
            packet_type: 8,
            flags: 0
        }
    );
}

#[test]
fn mqtt_3_10_1_1_unsubscribe_flags_must_be_0010() {
    assert_eq!(
        decode_err(&hex("a0 05 0001 0001 61")),
        DecodeError::InvalidFixedHeaderFlags {
            packet_type: 10,
            flags: 0
        }
    );
}

#[test]
fn mqtt_2_2_3_remaining_length_over_four_bytes_is_rejected() {
    assert_eq!(
        decode_err(&hex("30 ff ff ff ff 01")),
        DecodeError::RemainingLengthTooLong
    );
    assert_eq!(
        decode_err(&hex("30 80 80 80 80")),
        DecodeError::RemainingLengthTooLong
    );
}

#[test]
fn an_oversized_packet_is_rejected_before_its_body_arrives() {
    let mut decoder = Decoder::new(1024);
    // Remaining length 268,435,455 and not a single body byte.
    let mut buf = BytesMut::from(&hex("30 ff ff ff 7f")[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        })
    );
    // Exactly the maximum is fine.
    let mut decoder = Decoder::new(4);
    assert_eq!(
        decoder.decode(&mut BytesMut::from(&hex("40 02 00 01")[..])),
        Ok(Some(Packet::PubAck(id(1))))
    );
    decoder.set_max_packet_size(3);
    assert_eq!(
        decoder.decode(&mut BytesMut::from(&hex("40 02")[..])),
        Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
    );
}

#[test]
fn a_partial_packet_consumes_nothing() {
    let bytes = hex("32 0a  0003 612f62  000a  010203");
    for len in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..len]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), len);
    }
}

#[test]
fn a_body_shorter_than_its_fields_is_truncated() {
    // Topic length 5 with 2 bytes left in the packet.
    assert_eq!(decode_err(&hex("30 04 0005 6162")), DecodeError::Truncated);
    // QoS 1 without the packet id.
    assert_eq!(
        decode_err(&hex("32 05 0003 612f62")),
        DecodeError::Truncated
    );
    assert_eq!(decode_err(&hex("40 01 00")), DecodeError::Truncated);
    assert_eq!(decode_err(&hex("20 01 00")), DecodeError::Truncated);
    assert_eq!(decode_err(&hex("10 03 0004 4d")), DecodeError::Truncated);
}

#[test]
fn trailing_bytes_after_the_last_field_are_rejected() {
    assert_eq!(
        decode_err(&hex("40 03 00 01 00")),
        DecodeError::TrailingBytes(1)
    );
    assert_eq!(
        decode_err(&hex("20 03 00 00 00")),
        DecodeError::TrailingBytes(1)
    );
    assert_eq!(decode_err(&hex("c0 01 00")), DecodeError::TrailingBytes(1));
    assert_eq!(
        decode_err(&hex("e0 02 00 00")),
        DecodeError::TrailingBytes(2)
    );
    assert_eq!(
        decode_err(&hex("10 0e  0004 4d515454 04 02 003c  0000  ffff")),
        DecodeError::TrailingBytes(2)
    );
}

#[test]
fn a_body_error_consumes_the_packet() {
    let mut buf = BytesMut::from(&hex("40 03 00 01 00  c0 00")[..]);
    assert_eq!(
        Decoder::default().decode(&mut buf),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(&buf[..], &hex("c0 00")[..]);
}

/// A CONNECT with the given client id, will topic and user name (raw bytes, length-prefixed
/// here) so each string field can carry a bad string.
fn connect_with(client_id: &[u8], will_topic: Option<&[u8]>, username: Option<&[u8]>) -> Vec<u8> {
    let mut body = hex("0004 4d515454 04");
    let mut flags = 0x02;
    if will_topic.is_some() {
        flags |= 0x04;
    }
    if username.is_some() {
        flags |= 0x80;
    }
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x3c]);
    let mut put = |s: &[u8]| {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s);
    };
    put(client_id);
    if let Some(will_topic) = will_topic {
        put(will_topic);
        put(b"bye");
    }
    if let Some(username) = username {
        put(username);
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

fn publish_with_topic(topic: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x30, 2 + topic.len() as u8, 0, topic.len() as u8];
    packet.extend_from_slice(topic);
    packet
}

fn subscribe_with_filter(filter: &[u8], qos: u8) -> Vec<u8> {
    let mut packet = vec![0x82, 5 + filter.len() as u8, 0, 1, 0, filter.len() as u8];
    packet.extend_from_slice(filter);
    packet.push(qos);
    packet
}

fn unsubscribe_with_filter(filter: &[u8]) -> Vec<u8> {
    let mut packet = vec![0xa2, 4 + filter.len() as u8, 0, 1, 0, filter.len() as u8];
    packet.extend_from_slice(filter);
    packet
}

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_is_rejected_in_every_string() {
    // C3 28: invalid continuation; ED A0 80: a surrogate (U+D800); C0 AF: overlong '/'.
    for bad in [&b"\xc3\x28"[..], b"\xed\xa0\x80", b"\xc0\xaf", b"a\xff"] {
        assert_eq!(
            decode_err(&connect_with(bad, None, None)),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            decode_err(&connect_with(b"c", Some(bad), None)),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            decode_err(&connect_with(b"c", None, Some(bad))),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            decode_err(&publish_with_topic(bad)),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            decode_err(&subscribe_with_filter(bad, 0)),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            decode_err(&unsubscribe_with_filter(bad)),
            DecodeError::InvalidUtf8
        );
    }
}

#[test]
fn mqtt_1_5_3_2_nul_is_rejected_in_every_string() {
    let bad = b"a\0b";
    assert_eq!(
        decode_err(&connect_with(bad, None, None)),
        DecodeError::NullCharacter
    );
    assert_eq!(
        decode_err(&connect_with(b"c", Some(bad), None)),
        DecodeError::NullCharacter
    );
    assert_eq!(
        decode_err(&connect_with(b"c", None, Some(bad))),
        DecodeError::NullCharacter
    );
    assert_eq!(
        decode_err(&publish_with_topic(bad)),
        DecodeError::NullCharacter
    );
    assert_eq!(
        decode_err(&subscribe_with_filter(bad, 0)),
        DecodeError::NullCharacter
    );
    assert_eq!(
        decode_err(&unsubscribe_with_filter(bad)),
        DecodeError::NullCharacter
    );
}

#[test]
fn mqtt_3_3_1_2_dup_on_a_qos0_publish_is_rejected() {
    assert_eq!(
        decode_err(&hex("38 05 0003 612f62")),
        DecodeError::DupWithQoS0
    );
}

#[test]
fn mqtt_3_3_1_4_publish_with_qos_3_is_rejected() {
    assert_eq!(
        decode_err(&hex("36 07 0003 612f62 0001")),
        DecodeError::InvalidQoS
    );
    // Known from the first byte alone.
    assert_eq!(decode_err(&hex("37")), DecodeError::InvalidQoS);
}

#[test]
fn mqtt_3_3_2_2_wildcards_in_a_topic_name_are_rejected() {
    for bad in [&b"a/+"[..], b"#", b"a/#", b"sport+"] {
        assert_eq!(
            decode_err(&publish_with_topic(bad)),
            DecodeError::WildcardInTopicName
        );
        assert_eq!(
            decode_err(&connect_with(b"c", Some(bad), None)),
            DecodeError::WildcardInTopicName
        );
    }
}

#[test]
fn mqtt_4_7_3_1_empty_topic_names_and_filters_are_rejected() {
    assert_eq!(
        decode_err(&publish_with_topic(b"")),
        DecodeError::EmptyTopic
    );
    assert_eq!(
        decode_err(&connect_with(b"c", Some(b""), None)),
        DecodeError::EmptyTopic
    );
    assert_eq!(
        decode_err(&subscribe_with_filter(b"", 0)),
        DecodeError::EmptyTopic
    );
    assert_eq!(
        decode_err(&unsubscribe_with_filter(b"")),
        DecodeError::EmptyTopic
    );
}

#[test]
fn mqtt_4_7_1_2_misplaced_multi_level_wildcard_in_filters_is_rejected() {
    for bad in [&b"a/#/b"[..], b"sport/tennis#", b"#/"] {
        assert_eq!(
            decode_err(&subscribe_with_filter(bad, 0)),
            DecodeError::MultiLevelWildcardNotLast
        );
        assert_eq!(
            decode_err(&unsubscribe_with_filter(bad)),
            DecodeError::MultiLevelWildcardNotLast
        );
    }
}

#[test]
fn mqtt_4_7_1_3_single_level_wildcard_not_alone_in_filters_is_rejected() {
    for bad in [&b"sport+"[..], b"a/+b/c"] {
        assert_eq!(
            decode_err(&subscribe_with_filter(bad, 0)),
            DecodeError::SingleLevelWildcardNotAlone
        );
        assert_eq!(
            decode_err(&unsubscribe_with_filter(bad)),
            DecodeError::SingleLevelWildcardNotAlone
        );
    }
}

#[test]
fn mqtt_2_3_1_1_packet_id_zero_is_rejected() {
    for bytes in [
        "32 07 0003 612f62 0000",
        "34 07 0003 612f62 0000",
        "40 02 0000",
        "50 02 0000",
        "62 02 0000",
        "70 02 0000",
        "82 06 0000 0001 61 00",
        "90 03 0000 00",
        "a2 05 0000 0001 61",
        "b0 02 0000",
    ] {
        assert_eq!(
            decode_err(&hex(bytes)),
            DecodeError::ZeroPacketId,
            "{bytes}"
        );
    }
}

#[test]
fn mqtt_2_3_1_5_a_qos0_publish_has_no_packet_id() {
    // Whatever follows the topic of a QoS 0 PUBLISH is payload, never a packet id.
    let Ok(Packet::Publish(publish)) = decode(&hex("30 07 0003 612f62 0001")) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(publish.qos_pid, QosPid::AtMostOnce);
    assert_eq!(&publish.payload[..], &[0, 1]);
}

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters_is_rejected() {
    assert_eq!(
        decode_err(&hex("82 02 0001")),
        DecodeError::SubscribeWithoutFilters
    );
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_is_rejected() {
    assert_eq!(
        decode_err(&hex("a2 02 0001")),
        DecodeError::UnsubscribeWithoutFilters
    );
}

#[test]
fn mqtt_3_8_3_4_requested_qos_3_or_reserved_bits_are_rejected() {
    assert_eq!(
        decode_err(&subscribe_with_filter(b"a", 3)),
        DecodeError::InvalidSubscribeQoS(3)
    );
    assert_eq!(
        decode_err(&subscribe_with_filter(b"a", 0x41)),
        DecodeError::InvalidSubscribeQoS(0x41)
    );
    assert_eq!(
        decode_err(&subscribe_with_filter(b"a", 0x80)),
        DecodeError::InvalidSubscribeQoS(0x80)
    );
    // A filter without its QoS byte.
    assert_eq!(
        decode_err(&hex("82 05 0001 0001 61")),
        DecodeError::Truncated
    );
}

#[test]
fn mqtt_3_9_3_2_reserved_suback_return_codes_are_rejected() {
    assert_eq!(
        decode_err(&hex("90 03 0001 03")),
        DecodeError::InvalidSubAckReturnCode(3)
    );
    assert_eq!(
        decode_err(&hex("90 03 0001 81")),
        DecodeError::InvalidSubAckReturnCode(0x81)
    );
}

#[test]
fn mqtt_3_1_2_1_unknown_protocol_name_is_rejected() {
    let err = decode_err(&hex("10 0e  0004 4d515458 04 02 003c  0002 6964"));
    assert_eq!(err, DecodeError::InvalidProtocolName);
    // Closed without a CONNACK.
    assert_eq!(err.connack_return_code(), None);
    assert_eq!(
        decode_err(&hex("10 0e  0004 6d717474 04 02 003c  0002 6964")),
        DecodeError::InvalidProtocolName
    );
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_is_answered_with_connack_0x01() {
    for (bytes, level) in [
        // MQTT 5 CONNECT (level 5, with a properties length byte) is consumed whole.
        ("10 0f  0004 4d515454 05 02 003c 00  0002 6964", 5),
        ("10 0e  0004 4d515454 03 02 003c  0002 6964", 3),
        ("10 10  0006 4d5149736470 04 02 003c  0002 6964", 4),
    ] {
        let mut buf = BytesMut::from(&hex(bytes)[..]);
        buf.extend_from_slice(&hex("c0 00"));
        let err = Decoder::default().decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedProtocolLevel(level));
        assert_eq!(
            err.connack_return_code(),
            Some(ConnectReturnCode::UnacceptableProtocolVersion)
        );
        assert_eq!(&buf[..], &hex("c0 00")[..], "the CONNECT was not consumed");
    }
}

#[test]
fn mqtt_3_1_2_3_connect_reserved_flag_is_rejected() {
    assert_eq!(
        decode_err(&hex("10 0e  0004 4d515454 04 03 003c  0002 6964")),
        DecodeError::ConnectReservedFlag
    );
}

#[test]
fn mqtt_3_1_2_11_will_qos_or_retain_without_will_flag_is_rejected() {
    // [MQTT-3.1.2-13] will QoS 1 without the will flag; [MQTT-3.1.2-15] will retain without it.
    for flags in ["0a", "22", "12"] {
        let bytes = hex(&format!("10 0e  0004 4d515454 04 {flags} 003c  0002 6964"));
        assert_eq!(
            decode_err(&bytes),
            DecodeError::WillFlagsWithoutWill,
            "{flags}"
        );
    }
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_is_rejected() {
    assert_eq!(
        decode_err(&hex(
            "10 15  0004 4d515454 04 1e 003c  0002 6964  0001 74  0002 6279"
        )),
        DecodeError::InvalidWillQoS
    );
}

#[test]
fn mqtt_3_1_2_9_will_flag_without_will_fields_is_truncated() {
    assert_eq!(
        decode_err(&hex("10 0e  0004 4d515454 04 06 003c  0002 6964")),
        DecodeError::Truncated
    );
}

#[test]
fn mqtt_3_1_2_19_user_name_flag_without_user_name_is_truncated() {
    assert_eq!(
        decode_err(&hex("10 0e  0004 4d515454 04 82 003c  0002 6964")),
        DecodeError::Truncated
    );
}

#[test]
fn mqtt_3_1_2_21_password_flag_without_password_is_truncated() {
    assert_eq!(
        decode_err(&hex("10 11  0004 4d515454 04 c2 003c  0002 6964  0001 75")),
        DecodeError::Truncated
    );
}

#[test]
fn mqtt_3_1_2_22_password_without_user_name_is_rejected() {
    assert_eq!(
        decode_err(&hex(
            "10 12  0004 4d515454 04 42 003c  0002 6964  0002 7077"
        )),
        DecodeError::PasswordWithoutUsername
    );
}

#[test]
fn mqtt_3_1_3_3_connect_without_client_id_field_is_truncated() {
    assert_eq!(
        decode_err(&hex("10 0a  0004 4d515454 04 02 003c")),
        DecodeError::Truncated
    );
}

#[test]
fn mqtt_3_2_2_1_connack_reserved_bits_are_rejected() {
    assert_eq!(decode_err(&hex("20 02 02 00")), DecodeError::InvalidConnAck);
    assert_eq!(decode_err(&hex("20 02 80 00")), DecodeError::InvalidConnAck);
}

#[test]
fn mqtt_3_2_2_3_unknown_connack_return_code_is_rejected() {
    assert_eq!(decode_err(&hex("20 02 00 06")), DecodeError::InvalidConnAck);
}

#[test]
fn mqtt_3_2_2_4_refusing_connack_with_session_present_is_rejected() {
    assert_eq!(decode_err(&hex("20 02 01 05")), DecodeError::InvalidConnAck);
}

// ---------------------------------------------------------------------------------------------
// The encoder refuses what the decoder would refuse.

fn plain_connect() -> Connect {
    Connect {
        protocol: Protocol::V311,
        keep_alive: KeepAlive(60),
        client_id: "c".into(),
        clean_session: true,
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn encoding_refuses_nul_in_client_id_and_user_name() {
    let connect = Connect {
        client_id: "a\0".into(),
        ..plain_connect()
    };
    assert_eq!(encode_err(&connect.into()), EncodeError::NullCharacter);
    let connect = Connect {
        username: Some("\0".into()),
        ..plain_connect()
    };
    assert_eq!(encode_err(&connect.into()), EncodeError::NullCharacter);
}

#[test]
fn encoding_refuses_strings_and_binaries_over_65535_bytes() {
    let connect = Connect {
        client_id: "a".repeat(65_536),
        ..plain_connect()
    };
    assert_eq!(encode_err(&connect.into()), EncodeError::StringTooLong);
    let connect = Connect {
        username: Some("u".into()),
        password: Some(vec![0; 65_536].into()),
        ..plain_connect()
    };
    assert_eq!(encode_err(&connect.into()), EncodeError::BinaryTooLong);
    let connect = Connect {
        client_id: "a".repeat(65_535),
        ..plain_connect()
    };
    assert_eq!(decode(&encode(&connect.clone().into())), Ok(connect.into()));
}

#[test]
fn encoding_refuses_password_without_user_name() {
    let connect = Connect {
        password: Some(Bytes::from_static(b"pw")),
        ..plain_connect()
    };
    assert_eq!(
        encode_err(&connect.into()),
        EncodeError::PasswordWithoutUsername
    );
}

#[test]
fn encoding_refuses_subscribe_and_unsubscribe_without_filters() {
    let subscribe = Subscribe {
        packet_id: id(1),
        filters: vec![],
    };
    assert_eq!(encode_err(&subscribe.into()), EncodeError::NoTopicFilters);
    let unsubscribe = Unsubscribe {
        packet_id: id(1),
        filters: vec![],
    };
    assert_eq!(encode_err(&unsubscribe.into()), EncodeError::NoTopicFilters);
}

#[test]
fn encoding_refuses_dup_on_qos0() {
    let publish = Publish {
        dup: true,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: topic("a"),
        payload: Bytes::new(),
    };
    assert_eq!(
        encode_err(&publish.clone().into()),
        EncodeError::DupWithQoS0
    );
    let mut header = BytesMut::new();
    assert_eq!(
        publish.encode_header(&mut header),
        Err(EncodeError::DupWithQoS0)
    );
    assert!(header.is_empty());
}

#[test]
fn encoding_refuses_a_refusing_connack_with_session_present() {
    let connack = ConnAck {
        session_present: true,
        return_code: ConnectReturnCode::NotAuthorized,
    };
    assert_eq!(
        encode_err(&connack.into()),
        EncodeError::SessionPresentWithRefusal
    );
}

#[test]
fn encoding_refuses_a_packet_over_the_largest_remaining_length() {
    // Zeroed allocations are lazy, and the encoder fails before touching the payload.
    let publish = Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: topic("a"),
        payload: vec![0u8; 268_435_455].into(),
    };
    assert_eq!(
        encode_err(&publish.into()),
        EncodeError::PacketTooLarge(268_435_458)
    );
}

#[test]
fn encode_header_writes_everything_but_the_payload() {
    let publish = Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(id(10)),
        retain: false,
        topic: topic("a/b"),
        payload: Bytes::from_static(&[1, 2, 3]),
    };
    let mut header = BytesMut::new();
    let payload = publish.encode_header(&mut header).unwrap();
    assert_eq!(&header[..], &hex("32 0a  0003 612f62  000a")[..]);
    assert_eq!(
        payload.as_ptr(),
        publish.payload.as_ptr(),
        "the payload was copied"
    );
}
