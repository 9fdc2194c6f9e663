//! State-machine flows: a client and a server connection paired in memory with a fake clock
//! (see `common/mod.rs`), plus single machines fed raw packets for the rules a well-behaved peer
//! never breaks.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{
    client_events, encode_all, msg, server_events, transmitted_by_client, transmitted_by_server,
    Pair,
};
use mqtt_codec::client::{
    ClientCloseReason, ClientConnection, ClientEvent, ConnectOptions, Ticket,
};
use mqtt_codec::server::{CloseReason, ServerConfig, ServerConnection, ServerEvent};
use mqtt_codec::session::{Session, SessionLimits};
use mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, KeepAlive, Packet, PacketId, Protocol,
    ProtocolError, Publish, QoS, QosPid, SubAck, SubAckReturnCode, Subscribe, TopicFilter,
    TopicName, Unsubscribe,
};

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero id")
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name.to_owned()).expect("valid topic")
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f.to_owned()).expect("valid filter")
}

fn connect_packet(client_id: &str, clean_session: bool, keep_alive: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        keep_alive: KeepAlive(keep_alive),
        client_id: client_id.to_owned(),
        clean_session,
        will: None,
        username: None,
        password: None,
    }))
}

fn publish_packet(qos_pid: QosPid, dup: bool, payload: &str) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos_pid,
        retain: false,
        topic: topic("t"),
        payload: Bytes::from(payload.to_owned()),
    })
}

fn feed_server(
    server: &mut ServerConnection,
    now: Instant,
    packets: &[Packet],
) -> Result<(), ProtocolError> {
    let mut bytes = encode_all(packets);
    server.handle_read(now, &mut bytes)
}

fn feed_client(
    client: &mut ClientConnection,
    now: Instant,
    packets: &[Packet],
) -> Result<(), ProtocolError> {
    let mut bytes = encode_all(packets);
    client.handle_read(now, &mut bytes)
}

/// A server connection that has accepted a raw client with `keep_alive`, its output drained.
fn accepted_server(
    config: ServerConfig,
    session: Session,
    keep_alive: u16,
    now: Instant,
) -> ServerConnection {
    let mut server = ServerConnection::new(config, now);
    feed_server(
        &mut server,
        now,
        &[connect_packet("raw", false, keep_alive)],
    )
    .expect("valid CONNECT");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Connect(_))));
    server.accept(now, session, false);
    let sent = transmitted_by_server(&mut server);
    assert_eq!(
        sent.first(),
        Some(&Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted
        }))
    );
    server
}

/// A client connection that has received CONNACK, its output drained.
fn connected_client(options: ConnectOptions, session: Session, now: Instant) -> ClientConnection {
    let mut client = ClientConnection::new(options, session, now);
    let sent = transmitted_by_client(&mut client);
    assert!(matches!(sent.first(), Some(Packet::Connect(_))));
    feed_client(
        &mut client,
        now,
        &[Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted,
        })],
    )
    .expect("valid CONNACK");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Connected {
            session_present: false
        })
    );
    client
}

fn published_tickets(events: &[ClientEvent]) -> Vec<Ticket> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published(t) => Some(*t),
            _ => None,
        })
        .collect()
}

fn server_publishes(events: &[ServerEvent]) -> Vec<Publish> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn client_messages(events: &[ClientEvent]) -> Vec<Publish> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn limits(max_inflight: u16, max_queued_messages: usize) -> SessionLimits {
    SessionLimits {
        max_inflight,
        max_queued_messages,
        ..SessionLimits::default()
    }
}

// ----- handshake -----

#[test]
fn the_handshake_surfaces_connect_and_answers_connack_0_mqtt_3_1_4_4() {
    let mut pair = Pair::new();
    let events = pair.take_server_events();
    match events.as_slice() {
        [ServerEvent::Connect(connect)] => {
            assert_eq!(connect.client_id, "c1");
            assert!(!connect.clean_session);
        }
        other => panic!("unexpected server events {other:?}"),
    }
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Connected {
            session_present: false
        }]
    );
    assert!(pair.server.is_connected());
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(60))
    );
}

#[test]
fn a_first_packet_other_than_connect_closes_the_connection_mqtt_3_1_0_1() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let result = feed_server(&mut server, now, &[Packet::PingReq]);
    assert_eq!(result, Err(ProtocolError::FirstPacketNotConnect));
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::Protocol(
            ProtocolError::FirstPacketNotConnect
        ))]
    );
    assert!(server.is_closed());
    assert!(transmitted_by_server(&mut server).is_empty());
}

#[test]
fn a_second_connect_closes_the_connection_mqtt_3_1_0_2() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::default(), 0, now);
    let result = feed_server(&mut server, now, &[connect_packet("raw", true, 0)]);
    assert_eq!(result, Err(ProtocolError::SecondConnect));
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::Protocol(
            ProtocolError::SecondConnect
        ))]
    );
    assert!(server.is_closed());
}

#[test]
fn server_only_packets_from_a_client_close_the_connection() {
    let now = Instant::now();
    let server_only = [
        Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted,
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            return_codes: vec![SubAckReturnCode::Failure],
        }),
        Packet::UnsubAck(pid(1)),
        Packet::PingResp,
    ];
    for packet in server_only {
        let mut server = accepted_server(ServerConfig::default(), Session::default(), 0, now);
        let expected = ProtocolError::UnexpectedPacket(packet.name());
        assert_eq!(
            feed_server(&mut server, now, &[packet]),
            Err(expected.clone())
        );
        assert_eq!(
            server_events(&mut server),
            vec![ServerEvent::Closed(CloseReason::Protocol(expected))]
        );
        assert!(server.is_closed());
    }
}

#[test]
fn client_only_packets_from_the_server_close_the_client_connection() {
    let now = Instant::now();
    let client_only = [
        connect_packet("x", true, 0),
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(filter("a"), QoS::AtMostOnce)],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(1),
            filters: vec![filter("a")],
        }),
        Packet::PingReq,
        Packet::Disconnect,
    ];
    for packet in client_only {
        let mut client = connected_client(ConnectOptions::new("c"), Session::default(), now);
        let expected = ProtocolError::UnexpectedPacket(packet.name());
        assert_eq!(
            feed_client(&mut client, now, &[packet]),
            Err(expected.clone())
        );
        assert_eq!(
            client_events(&mut client),
            vec![ClientEvent::Closed(ClientCloseReason::Protocol(expected))]
        );
        assert!(client.is_closed());
    }
}

#[test]
fn a_server_that_sends_anything_before_connack_breaks_mqtt_3_2_0_1() {
    let now = Instant::now();
    let mut client = ClientConnection::new(ConnectOptions::new("c"), Session::default(), now);
    let _ = transmitted_by_client(&mut client);
    let result = feed_client(&mut client, now, &[Packet::PingResp]);
    assert_eq!(result, Err(ProtocolError::UnexpectedPacket("PINGRESP")));
    assert!(client.is_closed());
}

#[test]
fn no_connect_within_the_connect_timeout_closes_the_connection() {
    let now = Instant::now();
    let config = ServerConfig {
        connect_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let mut server = ServerConnection::new(config, now);
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(5)));
    server.handle_timeout(now + Duration::from_millis(4_999));
    assert!(!server.is_closed());
    assert_eq!(server.poll_event(), None);
    server.handle_timeout(now + Duration::from_secs(5));
    assert!(server.is_closed());
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::ConnectTimeout)]
    );
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn an_empty_client_id_with_clean_session_0_gets_connack_0x02_and_closes_mqtt_3_1_3_8() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let result = feed_server(&mut server, now, &[connect_packet("", false, 30)]);
    let refused = ProtocolError::Refused(ConnectReturnCode::IdentifierRejected);
    assert_eq!(result, Err(refused.clone()));
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::IdentifierRejected
        })]
    );
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::Protocol(refused))]
    );
    assert!(server.is_closed());
}

#[test]
fn an_empty_client_id_with_clean_session_1_is_left_to_the_broker() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    feed_server(&mut server, now, &[connect_packet("", true, 30)]).expect("valid CONNECT");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Connect(c)) if c.client_id.is_empty()));
    assert!(!server.is_closed());
}

#[test]
fn an_unsupported_protocol_level_gets_connack_0x01_then_close_mqtt_3_1_2_2() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    // CONNECT, protocol "MQTT" level 5, clean session, keep-alive 60, client id "a".
    let mut bytes = BytesMut::from(
        &[
            0x10u8, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 1, b'a',
        ][..],
    );
    let result = server.handle_read(now, &mut bytes);
    let refused = ProtocolError::Refused(ConnectReturnCode::UnacceptableProtocolVersion);
    assert_eq!(result, Err(refused.clone()));
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::UnacceptableProtocolVersion
        })]
    );
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::Protocol(refused))]
    );
}

#[test]
fn an_unknown_protocol_name_closes_without_connack_mqtt_3_1_4_1() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let mut bytes = BytesMut::from(
        &[
            0x10u8, 13, 0, 4, b'M', b'Q', b'X', b'X', 4, 0x02, 0, 60, 0, 1, b'a',
        ][..],
    );
    let result = server.handle_read(now, &mut bytes);
    assert_eq!(
        result,
        Err(ProtocolError::Decode(DecodeError::InvalidProtocolName))
    );
    assert!(transmitted_by_server(&mut server).is_empty());
    assert!(server.is_closed());
}

#[test]
fn packets_after_connect_wait_for_the_broker_decision_mqtt_3_1_4_5() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let publish = publish_packet(QosPid::AtLeastOnce(pid(3)), false, "early");
    feed_server(
        &mut server,
        now,
        &[connect_packet("c", true, 0), publish.clone()],
    )
    .expect("valid packets");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Connect(_))));
    assert_eq!(
        server.poll_event(),
        None,
        "the PUBLISH waits for the decision"
    );
    assert!(
        transmitted_by_server(&mut server).is_empty(),
        "no PUBACK before CONNACK"
    );

    server.accept(now, Session::default(), false);
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![
            Packet::ConnAck(ConnAck {
                session_present: false,
                return_code: ConnectReturnCode::Accepted
            }),
            Packet::PubAck(pid(3)),
        ]
    );
    let Packet::Publish(expected) = publish else {
        unreachable!()
    };
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Publish(expected)]
    );
}

#[test]
fn a_refused_connect_discards_the_packets_that_followed_it_mqtt_3_1_4_5() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let publish = publish_packet(QosPid::AtLeastOnce(pid(3)), false, "early");
    feed_server(&mut server, now, &[connect_packet("c", true, 0), publish]).expect("valid packets");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Connect(_))));
    server.refuse(ConnectReturnCode::NotAuthorized);
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::NotAuthorized
        })]
    );
    assert_eq!(server.poll_event(), None);
    assert!(server.is_closed());
}

#[test]
fn the_decoder_limit_is_the_connect_cap_until_accepted_then_max_packet_size() {
    let now = Instant::now();
    let config = ServerConfig {
        max_connect_packet_size: 64,
        max_packet_size: 1_000,
        ..ServerConfig::default()
    };
    // Before CONNECT: a 200-byte packet is refused from its fixed header.
    let mut server = ServerConnection::new(config.clone(), now);
    let big = publish_packet(QosPid::AtMostOnce, false, &"x".repeat(200));
    assert!(matches!(
        feed_server(&mut server, now, std::slice::from_ref(&big)),
        Err(ProtocolError::Decode(DecodeError::PacketTooLarge {
            max: 64,
            ..
        }))
    ));
    // After accept the same packet is fine.
    let mut server = accepted_server(config, Session::default(), 0, now);
    feed_server(&mut server, now, &[big]).expect("within max_packet_size");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Publish(_))));
}

#[test]
fn a_refusing_connack_closes_the_client_with_its_code() {
    let now = Instant::now();
    let mut client = ClientConnection::new(ConnectOptions::new("c"), Session::default(), now);
    let _ = transmitted_by_client(&mut client);
    feed_client(
        &mut client,
        now,
        &[Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::BadUsernameOrPassword,
        })],
    )
    .expect("a refusal is not a protocol error");
    assert_eq!(
        client_events(&mut client),
        vec![ClientEvent::Refused(
            ConnectReturnCode::BadUsernameOrPassword
        )]
    );
    assert!(client.is_closed());
    assert!(!client.is_connected());
}

#[test]
fn a_late_connack_closes_the_client_with_timeout() {
    let now = Instant::now();
    let options = ConnectOptions::new("c").response_timeout(Duration::from_secs(3));
    let mut client = ClientConnection::new(options, Session::default(), now);
    let _ = transmitted_by_client(&mut client);
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(3)));
    client.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(
        client_events(&mut client),
        vec![ClientEvent::Closed(ClientCloseReason::Timeout)]
    );
    assert!(client.is_closed());
}

#[test]
fn requests_made_before_connack_go_out_after_it() {
    let now = Instant::now();
    let mut client = ClientConnection::new(ConnectOptions::new("c"), Session::default(), now);
    let t0 = client
        .publish(now, msg(QoS::AtMostOnce, "zero"))
        .expect("room");
    let t1 = client
        .publish(now, msg(QoS::AtLeastOnce, "one"))
        .expect("room");
    let ts = client
        .subscribe(now, vec![(filter("a/#"), QoS::ExactlyOnce)])
        .expect("room");
    let sent = transmitted_by_client(&mut client);
    assert_eq!(sent.len(), 1, "only CONNECT before CONNACK: {sent:?}");
    feed_client(
        &mut client,
        now,
        &[Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted,
        })],
    )
    .expect("valid");
    let sent = transmitted_by_client(&mut client);
    let names: Vec<_> = sent.iter().map(Packet::name).collect();
    assert_eq!(names, vec!["SUBSCRIBE", "PUBLISH", "PUBLISH"]);
    assert!(
        matches!(&sent[1], Packet::Publish(p) if p.qos_pid == QosPid::AtMostOnce && p.payload == "zero")
    );
    assert!(
        matches!(&sent[2], Packet::Publish(p) if !p.dup && p.qos_pid.qos() == QoS::AtLeastOnce)
    );
    let events = client_events(&mut client);
    assert_eq!(published_tickets(&events), vec![t0]);
    assert_ne!(t1, ts);
}

// ----- QoS flows -----

#[test]
fn qos0_from_client_is_delivered_and_its_ticket_completes_once_written_mqtt_4_3_1_1() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::AtMostOnce, "hello"))
        .expect("room");
    pair.pump();
    assert_eq!(published_tickets(&pair.take_client_events()), vec![ticket]);
    let delivered = server_publishes(&pair.take_server_events());
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].payload, "hello");
    assert_eq!(delivered[0].qos_pid, QosPid::AtMostOnce);
}

#[test]
fn qos1_from_client_completes_on_puback_mqtt_4_3_2_1() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_sent();
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::AtLeastOnce, "one"))
        .expect("room");
    pair.pump();
    let (client_sent, server_sent) = pair.take_sent();
    assert!(
        matches!(&client_sent[..], [Packet::Publish(p)] if p.qos_pid == QosPid::AtLeastOnce(pid(1)) && !p.dup)
    );
    assert_eq!(server_sent, vec![Packet::PubAck(pid(1))]);
    assert_eq!(published_tickets(&pair.take_client_events()), vec![ticket]);
    assert_eq!(server_publishes(&pair.server_events).len(), 1);
    assert_eq!(pair.client.session().inflight_len(), 0);
}

#[test]
fn qos2_from_client_runs_pubrec_pubrel_pubcomp_mqtt_4_3_3_1() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    pair.take_sent();
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::ExactlyOnce, "two"))
        .expect("room");
    pair.pump();
    let (client_sent, server_sent) = pair.take_sent();
    assert!(
        matches!(&client_sent[0], Packet::Publish(p) if p.qos_pid == QosPid::ExactlyOnce(pid(1)))
    );
    assert_eq!(client_sent[1], Packet::PubRel(pid(1)));
    assert_eq!(
        server_sent,
        vec![Packet::PubRec(pid(1)), Packet::PubComp(pid(1))]
    );
    assert_eq!(published_tickets(&pair.take_client_events()), vec![ticket]);
    assert_eq!(server_publishes(&pair.take_server_events()).len(), 1);
    assert_eq!(pair.server.session().incoming_unreleased_len(), 0);
    assert_eq!(pair.client.session().inflight_len(), 0);
}

#[test]
fn qos0_1_2_from_server_reach_the_client_and_complete_with_delivered() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    pair.take_sent();
    for (qos, payload) in [
        (QoS::AtMostOnce, "0"),
        (QoS::AtLeastOnce, "1"),
        (QoS::ExactlyOnce, "2"),
    ] {
        assert_eq!(pair.server.publish(pair.now, msg(qos, payload)), None);
    }
    pair.pump();
    let messages = client_messages(&pair.take_client_events());
    let payloads: Vec<_> = messages.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(payloads, vec!["0", "1", "2"]);
    assert_eq!(messages[1].qos_pid, QosPid::AtLeastOnce(pid(1)));
    assert_eq!(messages[2].qos_pid, QosPid::ExactlyOnce(pid(2)));
    assert_eq!(
        pair.take_server_events(),
        vec![
            ServerEvent::Delivered(pid(1)),
            ServerEvent::Delivered(pid(2))
        ]
    );
    let (client_sent, _) = pair.take_sent();
    assert_eq!(
        client_sent,
        vec![
            Packet::PubAck(pid(1)),
            Packet::PubRec(pid(2)),
            Packet::PubComp(pid(2))
        ]
    );
}

#[test]
fn a_duplicate_qos2_publish_is_acknowledged_but_not_delivered_twice_mqtt_4_3_3_2() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::default(), 0, now);
    let first = publish_packet(QosPid::ExactlyOnce(pid(7)), false, "once");
    let again = publish_packet(QosPid::ExactlyOnce(pid(7)), true, "once");
    feed_server(&mut server, now, &[first, again]).expect("valid");
    assert_eq!(server_publishes(&server_events(&mut server)).len(), 1);
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::PubRec(pid(7)), Packet::PubRec(pid(7))]
    );
    // After PUBREL/PUBCOMP the id is free: the same id is a new message.
    feed_server(&mut server, now, &[Packet::PubRel(pid(7))]).expect("valid");
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::PubComp(pid(7))]
    );
    feed_server(
        &mut server,
        now,
        &[publish_packet(QosPid::ExactlyOnce(pid(7)), false, "new")],
    )
    .expect("valid");
    assert_eq!(server_publishes(&server_events(&mut server)).len(), 1);
}

#[test]
fn a_duplicate_qos2_publish_to_the_client_is_not_delivered_twice_mqtt_4_3_3_2() {
    let now = Instant::now();
    let mut client = connected_client(ConnectOptions::new("c"), Session::default(), now);
    let p = publish_packet(QosPid::ExactlyOnce(pid(9)), false, "x");
    let dup = publish_packet(QosPid::ExactlyOnce(pid(9)), true, "x");
    feed_client(&mut client, now, &[p, dup]).expect("valid");
    assert_eq!(client_messages(&client_events(&mut client)).len(), 1);
    assert_eq!(
        transmitted_by_client(&mut client),
        vec![Packet::PubRec(pid(9)), Packet::PubRec(pid(9))]
    );
}

#[test]
fn a_pubrel_for_an_unknown_id_is_still_answered_with_pubcomp() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::default(), 0, now);
    feed_server(&mut server, now, &[Packet::PubRel(pid(42))]).expect("valid");
    assert_eq!(
        transmitted_by_server(&mut server),
        vec![Packet::PubComp(pid(42))]
    );
}

#[test]
fn too_many_unreleased_qos2_ids_close_the_connection() {
    let now = Instant::now();
    let session = Session::new(SessionLimits {
        max_incoming_unreleased: 3,
        ..SessionLimits::default()
    });
    let mut server = accepted_server(ServerConfig::default(), session, 0, now);
    let packets: Vec<_> = (1..=4)
        .map(|id| publish_packet(QosPid::ExactlyOnce(pid(id)), false, "p"))
        .collect();
    let result = feed_server(&mut server, now, &packets);
    assert_eq!(result, Err(ProtocolError::TooManyUnreleased(4)));
    let events = server_events(&mut server);
    assert_eq!(server_publishes(&events).len(), 3);
    assert_eq!(
        events.last(),
        Some(&ServerEvent::Closed(CloseReason::Protocol(
            ProtocolError::TooManyUnreleased(4)
        )))
    );
    assert!(server.is_closed());
}

#[test]
fn subscribe_and_unsubscribe_complete_their_tickets() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    let ticket = pair
        .client
        .subscribe(pair.now, vec![(filter("a/+"), QoS::AtLeastOnce)])
        .expect("room");
    pair.pump();
    let events = pair.take_server_events();
    let Some(ServerEvent::Subscribe(subscribe)) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(subscribe.filters, vec![(filter("a/+"), QoS::AtLeastOnce)]);
    pair.server.suback(
        subscribe.packet_id,
        vec![SubAckReturnCode::Success(QoS::AtLeastOnce)],
    );
    pair.pump();
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Subscribed(
            ticket,
            vec![SubAckReturnCode::Success(QoS::AtLeastOnce)]
        )]
    );
    let ticket = pair
        .client
        .unsubscribe(pair.now, vec![filter("a/+")])
        .expect("room");
    pair.pump();
    let events = pair.take_server_events();
    let Some(ServerEvent::Unsubscribe(unsubscribe)) = events.first() else {
        panic!("{events:?}")
    };
    pair.server.unsuback(unsubscribe.packet_id);
    pair.pump();
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Unsubscribed(ticket)]
    );
    assert_eq!(pair.client.session().pending_requests_len(), 0);
}

#[test]
fn disconnect_closes_the_client_once_written_and_the_server_reports_it_mqtt_3_14_4_1() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    pair.client.disconnect();
    pair.pump();
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Closed(ClientCloseReason::Disconnected)]
    );
    assert_eq!(pair.take_server_events(), vec![ServerEvent::Disconnect]);
    assert!(pair.client.is_closed());
    assert!(pair.server.is_closed());
}

// ----- retransmission after reconnect -----

#[test]
fn a_lost_puback_is_followed_by_a_retransmission_with_dup_after_reconnect_mqtt_4_4_0_1() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.server_to_client = Some(Box::new(|p| !matches!(p, Packet::PubAck(_))));
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::AtLeastOnce, "m"))
        .expect("room");
    pair.pump();
    assert!(published_tickets(&pair.take_client_events()).is_empty());
    assert_eq!(pair.client.session().inflight_len(), 1);
    pair.server_to_client = None;
    pair.take_server_events();
    pair.take_sent();

    pair.reconnect(ConnectOptions::new("c1").clean_session(false), true);
    let (client_sent, _) = pair.take_sent();
    assert!(matches!(&client_sent[0], Packet::Connect(_)));
    match &client_sent[1] {
        Packet::Publish(p) => {
            assert!(p.dup, "[MQTT-3.3.1-1] a re-delivery carries DUP 1");
            assert_eq!(
                p.qos_pid,
                QosPid::AtLeastOnce(pid(1)),
                "[MQTT-2.3.1-3] same packet id"
            );
        }
        other => panic!("expected the retransmitted PUBLISH, got {other:?}"),
    }
    let events = pair.take_client_events();
    assert_eq!(
        events[0],
        ClientEvent::Connected {
            session_present: true
        }
    );
    assert_eq!(published_tickets(&events), vec![ticket]);
    // QoS 1 is at least once: the server sees the message again, flagged DUP.
    assert!(server_publishes(&pair.take_server_events())
        .iter()
        .all(|p| p.dup));
}

#[test]
fn the_server_retransmits_unacknowledged_messages_with_dup_when_the_session_resumes() {
    let mut pair = Pair::new();
    pair.take_server_events();
    pair.client_to_server = Some(Box::new(|p| {
        !matches!(p, Packet::PubAck(_) | Packet::PubRec(_))
    }));
    pair.server.publish(pair.now, msg(QoS::AtLeastOnce, "a"));
    pair.server.publish(pair.now, msg(QoS::ExactlyOnce, "b"));
    pair.pump();
    assert_eq!(pair.server.session().inflight_len(), 2);
    pair.client_to_server = None;
    pair.take_sent();
    pair.take_client_events();

    pair.reconnect(ConnectOptions::new("c1").clean_session(false), true);
    let (_, server_sent) = pair.take_sent();
    assert!(matches!(
        &server_sent[0],
        Packet::ConnAck(ConnAck {
            session_present: true,
            ..
        })
    ));
    let resent: Vec<_> = server_sent[1..3]
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.dup, p.qos_pid, p.payload.clone()),
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect();
    assert_eq!(
        resent,
        vec![
            (true, QosPid::AtLeastOnce(pid(1)), Bytes::from("a")),
            (true, QosPid::ExactlyOnce(pid(2)), Bytes::from("b")),
        ]
    );
    assert_eq!(
        pair.take_server_events()
            .into_iter()
            .filter(|e| matches!(e, ServerEvent::Delivered(_)))
            .count(),
        2
    );
    // The client had the QoS 2 id awaiting PUBREL from the first connection: no second delivery.
    let messages = client_messages(&pair.take_client_events());
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, "a");
}

#[test]
fn pubrel_is_retransmitted_after_reconnect_and_the_message_is_not_delivered_twice() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    // PUBCOMP is lost: the client must send PUBREL again (not the PUBLISH) on the new connection.
    pair.server_to_client = Some(Box::new(|p| !matches!(p, Packet::PubComp(_))));
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::ExactlyOnce, "x"))
        .expect("room");
    pair.pump();
    assert_eq!(server_publishes(&pair.take_server_events()).len(), 1);
    pair.server_to_client = None;
    pair.take_sent();

    pair.reconnect(ConnectOptions::new("c1").clean_session(false), true);
    let (client_sent, server_sent) = pair.take_sent();
    assert_eq!(
        client_sent[1..],
        [Packet::PubRel(pid(1))],
        "[MQTT-4.3.3-1] no PUBLISH after PUBREL"
    );
    assert_eq!(server_sent[1..], [Packet::PubComp(pid(1))]);
    assert_eq!(published_tickets(&pair.take_client_events()), vec![ticket]);
    assert!(server_publishes(&pair.take_server_events()).is_empty());
}

#[test]
fn a_lost_pubrec_leads_to_a_dup_publish_that_is_not_delivered_twice() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.take_server_events();
    pair.server_to_client = Some(Box::new(|p| !matches!(p, Packet::PubRec(_))));
    let ticket = pair
        .client
        .publish(pair.now, msg(QoS::ExactlyOnce, "x"))
        .expect("room");
    pair.pump();
    assert_eq!(server_publishes(&pair.take_server_events()).len(), 1);
    pair.server_to_client = None;
    pair.reconnect(ConnectOptions::new("c1").clean_session(false), true);
    assert!(
        server_publishes(&pair.take_server_events()).is_empty(),
        "exactly once"
    );
    assert_eq!(published_tickets(&pair.take_client_events()), vec![ticket]);
    assert!(pair.server.session().is_empty());
    assert!(pair.client.session().is_empty());
}

#[test]
fn retransmission_keeps_the_original_order_mqtt_4_6_0_1() {
    let mut pair = Pair::new();
    pair.server_to_client = Some(Box::new(|p| {
        !matches!(p, Packet::PubAck(_) | Packet::PubComp(_))
    }));
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        pair.client
            .publish(pair.now, msg(qos, &i.to_string()))
            .expect("room");
    }
    pair.pump();
    pair.server_to_client = None;
    pair.take_sent();
    pair.reconnect(ConnectOptions::new("c1").clean_session(false), true);
    let (client_sent, _) = pair.take_sent();
    let resent: Vec<String> = client_sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            Packet::PubRel(id) => Some(format!("rel{}", id.get())),
            _ => None,
        })
        .collect();
    // In the order they were first sent: the QoS 1 PUBLISHes 0, 2, 4 (ids 1, 3, 5), then the
    // PUBRELs of the QoS 2 messages 1 and 3 (ids 2, 4) in the order their PUBRECs arrived
    // ([MQTT-4.6.0-4]).
    assert_eq!(resent, ["0", "2", "4", "rel2", "rel4"]);
}

#[test]
fn session_present_0_makes_the_client_send_its_messages_in_flight_as_new() {
    let mut pair = Pair::new();
    pair.take_client_events();
    pair.server_to_client = Some(Box::new(|p| {
        !matches!(p, Packet::PubAck(_) | Packet::PubComp(_))
    }));
    let t1 = pair
        .client
        .publish(pair.now, msg(QoS::AtLeastOnce, "one"))
        .expect("room");
    let t2 = pair
        .client
        .publish(pair.now, msg(QoS::ExactlyOnce, "two"))
        .expect("room");
    pair.pump();
    pair.server_to_client = None;
    pair.take_sent();
    pair.take_server_events();

    pair.reconnect(ConnectOptions::new("c1").clean_session(false), false);
    let (client_sent, _) = pair.take_sent();
    let publishes: Vec<_> = client_sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.dup, p.payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(publishes, vec![(false, Bytes::from("one"))]);
    assert!(!client_sent.iter().any(|p| matches!(p, Packet::PubRel(_))));
    let events = pair.take_client_events();
    assert_eq!(
        events[0],
        ClientEvent::Connected {
            session_present: false
        }
    );
    let mut tickets = published_tickets(&events);
    tickets.sort();
    assert_eq!(tickets, vec![t1, t2]);
}

// ----- packet ids, window and queue -----

#[test]
fn packet_ids_run_out_at_65535_in_flight_and_are_reused_after_an_ack_mqtt_2_3_1_2() {
    let now = Instant::now();
    let session = Session::new(SessionLimits {
        max_inflight: 0,
        max_queued_messages: 10,
        ..SessionLimits::default()
    });
    let mut client = connected_client(
        ConnectOptions::new("c").keep_alive(KeepAlive(0)),
        session,
        now,
    );
    for i in 0..65_535u32 {
        client
            .publish(now, msg(QoS::AtLeastOnce, &i.to_string()))
            .expect("room in the window");
    }
    let sent = transmitted_by_client(&mut client);
    assert_eq!(sent.len(), 65_535);
    let mut seen = vec![false; 65_536];
    for packet in &sent {
        let Packet::Publish(p) = packet else {
            panic!("expected PUBLISH")
        };
        let id = p.qos_pid.packet_id().expect("QoS 1 has an id").get();
        assert!(!seen[usize::from(id)], "packet id {id} handed out twice");
        seen[usize::from(id)] = true;
    }
    assert_eq!(client.session().inflight_len(), 65_535);

    // No id is free: the next message waits, and so does a SUBSCRIBE.
    client
        .publish(now, msg(QoS::AtLeastOnce, "waiting"))
        .expect("queued");
    assert!(client
        .subscribe(now, vec![(filter("a"), QoS::AtMostOnce)])
        .is_err());
    assert!(transmitted_by_client(&mut client).is_empty());
    assert_eq!(client.session().queued_len(), 1);

    // One PUBACK frees its id, which the waiting message then takes.
    feed_client(&mut client, now, &[Packet::PubAck(pid(40_000))]).expect("valid");
    let sent = transmitted_by_client(&mut client);
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.qos_pid == QosPid::AtLeastOnce(pid(40_000)) && p.payload == "waiting")
    );
    assert_eq!(published_tickets(&client_events(&mut client)).len(), 1);
}

#[test]
fn publish_subscribe_and_unsubscribe_share_one_packet_id_allocator_mqtt_2_3_1_2() {
    let now = Instant::now();
    let mut client = connected_client(ConnectOptions::new("c"), Session::default(), now);
    client
        .publish(now, msg(QoS::AtLeastOnce, "a"))
        .expect("room");
    client
        .subscribe(now, vec![(filter("a"), QoS::AtMostOnce)])
        .expect("room");
    client.unsubscribe(now, vec![filter("a")]).expect("room");
    client
        .publish(now, msg(QoS::ExactlyOnce, "b"))
        .expect("room");
    let ids: Vec<u16> = transmitted_by_client(&mut client)
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.qos_pid.packet_id().expect("id").get(),
            Packet::Subscribe(s) => s.packet_id.get(),
            Packet::Unsubscribe(u) => u.packet_id.get(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
}

#[test]
fn the_server_window_holds_max_inflight_and_a_full_queue_drops_the_oldest() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::new(limits(2, 2)), 0, now);
    for i in 1..=4 {
        assert_eq!(
            server.publish(now, msg(QoS::AtLeastOnce, &i.to_string())),
            None
        );
    }
    assert_eq!(server.session().inflight_len(), 2);
    assert_eq!(server.session().queued_len(), 2);
    // The queue is full: message 3 (the oldest queued) makes room for message 5.
    assert_eq!(
        server.publish(now, msg(QoS::AtLeastOnce, "5")),
        Some(msg(QoS::AtLeastOnce, "3"))
    );
    let sent = transmitted_by_server(&mut server);
    assert_eq!(sent.len(), 2);
    // Acks release the queue in order.
    feed_server(
        &mut server,
        now,
        &[Packet::PubAck(pid(1)), Packet::PubAck(pid(2))],
    )
    .expect("valid");
    let payloads: Vec<_> = transmitted_by_server(&mut server)
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p.payload,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(payloads, vec!["4", "5"]);
    assert_eq!(
        server_events(&mut server),
        vec![
            ServerEvent::Delivered(pid(1)),
            ServerEvent::Delivered(pid(2))
        ]
    );
}

#[test]
fn the_client_gets_backpressure_when_window_and_queue_are_full() {
    let now = Instant::now();
    let mut client = connected_client(ConnectOptions::new("c"), Session::new(limits(1, 1)), now);
    client
        .publish(now, msg(QoS::AtLeastOnce, "in flight"))
        .expect("window");
    client
        .publish(now, msg(QoS::AtLeastOnce, "queued"))
        .expect("queue");
    let refused = client.publish(now, msg(QoS::ExactlyOnce, "refused"));
    assert_eq!(
        refused.map_err(|b| b.0),
        Err(msg(QoS::ExactlyOnce, "refused"))
    );
    // QoS 0 does not wait for the window.
    assert!(client.publish(now, msg(QoS::AtMostOnce, "zero")).is_ok());
}

#[test]
fn messages_queued_offline_are_sent_when_the_session_resumes() {
    let now = Instant::now();
    let mut session = Session::new(limits(1, 10));
    assert_eq!(session.enqueue(msg(QoS::AtLeastOnce, "a")), None);
    assert_eq!(session.enqueue(msg(QoS::AtLeastOnce, "b")), None);
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    feed_server(&mut server, now, &[connect_packet("c", false, 0)]).expect("valid");
    let _ = server.poll_event();
    server.accept(now, session, true);
    let sent = transmitted_by_server(&mut server);
    assert!(
        matches!(&sent[..], [Packet::ConnAck(ConnAck { session_present: true, .. }), Packet::Publish(p)] if p.payload == "a" && !p.dup)
    );
    feed_server(&mut server, now, &[Packet::PubAck(pid(1))]).expect("valid");
    let sent = transmitted_by_server(&mut server);
    assert!(matches!(&sent[..], [Packet::Publish(p)] if p.payload == "b"));
}

// ----- keep-alive -----

#[test]
fn the_client_sends_pingreq_after_keep_alive_without_sending_mqtt_3_1_2_23() {
    let options = ConnectOptions::new("c1").keep_alive(KeepAlive(10));
    let mut pair = Pair::connected(options, Session::default(), Session::default(), false);
    pair.take_sent();
    pair.take_client_events();
    pair.advance(Duration::from_secs(6));
    // Sending something postpones the ping.
    pair.client
        .publish(pair.now, msg(QoS::AtMostOnce, "x"))
        .expect("room");
    pair.pump();
    pair.advance(Duration::from_secs(6));
    assert!(!pair.take_sent().0.contains(&Packet::PingReq));
    pair.advance(Duration::from_secs(4));
    let (client_sent, server_sent) = pair.take_sent();
    assert_eq!(client_sent, vec![Packet::PingReq]);
    assert_eq!(server_sent, vec![Packet::PingResp]);
    assert!(pair.take_client_events().contains(&ClientEvent::PingResp));
    assert!(pair.client.is_connected());
}

#[test]
fn a_missing_pingresp_closes_the_client_with_timeout() {
    let options = ConnectOptions::new("c1")
        .keep_alive(KeepAlive(10))
        .response_timeout(Duration::from_secs(5));
    let mut pair = Pair::connected(options, Session::default(), Session::default(), false);
    pair.take_client_events();
    pair.server_to_client = Some(Box::new(|p| *p != Packet::PingResp));
    pair.advance(Duration::from_secs(10));
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(5))
    );
    pair.advance(Duration::from_millis(4_999));
    assert!(pair.client.is_connected());
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Closed(ClientCloseReason::Timeout)]
    );
    assert!(pair.client.is_closed());
}

#[test]
fn the_server_closes_after_one_and_a_half_keep_alive_of_silence_mqtt_3_1_2_24() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::default(), 10, now);
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(15)));
    // Any packet resets the deadline.
    let later = now + Duration::from_secs(10);
    feed_server(&mut server, later, &[Packet::PingReq]).expect("valid");
    assert_eq!(transmitted_by_server(&mut server), vec![Packet::PingResp]);
    server.handle_timeout(now + Duration::from_secs(15));
    assert!(!server.is_closed());
    server.handle_timeout(later + Duration::from_millis(14_999));
    assert!(!server.is_closed());
    server.handle_timeout(later + Duration::from_secs(15));
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::KeepAliveTimeout)]
    );
    assert!(server.is_closed());
}

#[test]
fn the_keep_alive_grace_and_cap_shape_the_server_deadline() {
    let now = Instant::now();
    let config = ServerConfig {
        keep_alive_grace: Duration::from_secs(2),
        max_keep_alive: Some(20),
        ..ServerConfig::default()
    };
    let server = accepted_server(config.clone(), Session::default(), 10, now);
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(17)));
    let capped = accepted_server(config.clone(), Session::default(), 100, now);
    assert_eq!(capped.poll_timeout(), Some(now + Duration::from_secs(32)));
    let zero_capped = accepted_server(config, Session::default(), 0, now);
    assert_eq!(
        zero_capped.poll_timeout(),
        Some(now + Duration::from_secs(32))
    );
}

#[test]
fn keep_alive_0_means_no_server_deadline() {
    let now = Instant::now();
    let mut server = accepted_server(ServerConfig::default(), Session::default(), 0, now);
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(now + Duration::from_secs(1_000_000));
    assert!(!server.is_closed());
}

#[test]
fn keep_alive_expiry_on_both_sides_in_the_paired_harness() {
    let options = ConnectOptions::new("c1")
        .keep_alive(KeepAlive(4))
        .response_timeout(Duration::from_secs(30));
    let mut pair = Pair::connected(options, Session::default(), Session::default(), false);
    pair.take_client_events();
    pair.take_server_events();
    // The network goes silent in both directions.
    pair.client_to_server = Some(Box::new(|_| false));
    pair.server_to_client = Some(Box::new(|_| false));
    let start = pair.now;
    while !pair.server.is_closed() {
        pair.advance_to_next_deadline()
            .expect("a deadline is pending");
    }
    assert_eq!(
        pair.now - start,
        Duration::from_secs(6),
        "1.5 x keep-alive of 4 s"
    );
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::Closed(CloseReason::KeepAliveTimeout)]
    );
    while !pair.client.is_closed() {
        pair.advance_to_next_deadline()
            .expect("a deadline is pending");
    }
    assert_eq!(
        pair.now - start,
        Duration::from_secs(34),
        "PINGREQ at 4 s, 30 s response timeout"
    );
    assert_eq!(
        pair.take_client_events(),
        vec![ClientEvent::Closed(ClientCloseReason::Timeout)]
    );
}

// ----- property: no loss, no duplicate for QoS 2, across broken connections -----

mod across_reconnects {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        ClientPublish(bool),
        ServerPublish(bool),
        Pump,
        /// The connection breaks after `.0` more client packets and `.1` more server packets;
        /// both sides reconnect and resume their sessions.
        Break(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<bool>().prop_map(Op::ClientPublish),
            3 => any::<bool>().prop_map(Op::ServerPublish),
            2 => Just(Op::Pump),
            1 => (0usize..6, 0usize..6).prop_map(|(c, s)| Op::Break(c, s)),
        ]
    }

    fn budget(n: usize) -> Filter {
        let left = Rc::new(Cell::new(n));
        Box::new(move |_| {
            let l = left.get();
            left.set(l.saturating_sub(1));
            l > 0
        })
    }

    use common::Filter;

    fn counts<'a>(payloads: impl Iterator<Item = &'a Bytes>) -> HashMap<Bytes, usize> {
        let mut counts = HashMap::new();
        for p in payloads {
            *counts.entry(p.clone()).or_insert(0) += 1;
        }
        counts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn qos1_is_delivered_at_least_once_and_qos2_exactly_once_across_reconnects_mqtt_4_3_3_2(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let options = ConnectOptions::new("c1").clean_session(false).keep_alive(KeepAlive(0));
            let session = || Session::new(limits(3, 1000));
            let mut pair = Pair::connected(options.clone(), session(), session(), false);
            let mut client_sent: Vec<(Ticket, Bytes, QoS)> = Vec::new();
            let mut server_sent: Vec<(Bytes, QoS)> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::ClientPublish(two) => {
                        let qos = if two { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                        let payload = format!("c{i}");
                        let ticket = pair.client.publish(pair.now, msg(qos, &payload)).expect("room");
                        client_sent.push((ticket, Bytes::from(payload), qos));
                    }
                    Op::ServerPublish(two) => {
                        let qos = if two { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                        let payload = format!("s{i}");
                        prop_assert_eq!(pair.server.publish(pair.now, msg(qos, &payload)), None);
                        server_sent.push((Bytes::from(payload), qos));
                    }
                    Op::Pump => pair.pump(),
                    Op::Break(c, s) => {
                        pair.client_to_server = Some(budget(c));
                        pair.server_to_client = Some(budget(s));
                        pair.pump();
                        pair.client_to_server = None;
                        pair.server_to_client = None;
                        pair.reconnect(options.clone(), true);
                    }
                }
            }
            pair.pump();
            // One last clean reconnect flushes whatever the last break left in flight.
            pair.reconnect(options, true);
            pair.pump();

            let received_by_server = server_publishes(&pair.server_events);
            let at_server = counts(received_by_server.iter().map(|p| &p.payload));
            for (_, payload, qos) in &client_sent {
                let n = at_server.get(payload).copied().unwrap_or(0);
                match qos {
                    QoS::ExactlyOnce => prop_assert_eq!(n, 1, "QoS 2 {:?}", payload),
                    _ => prop_assert!(n >= 1, "QoS 1 {:?} lost", payload),
                }
            }
            let received_by_client = client_messages(&pair.client_events);
            let at_client = counts(received_by_client.iter().map(|p| &p.payload));
            for (payload, qos) in &server_sent {
                let n = at_client.get(payload).copied().unwrap_or(0);
                match qos {
                    QoS::ExactlyOnce => prop_assert_eq!(n, 1, "QoS 2 {:?}", payload),
                    _ => prop_assert!(n >= 1, "QoS 1 {:?} lost", payload),
                }
            }
            // Every ticket completes exactly once; every server message is delivered once.
            let mut tickets = published_tickets(&pair.client_events);
            tickets.sort();
            let mut expected: Vec<Ticket> = client_sent.iter().map(|(t, _, _)| *t).collect();
            expected.sort();
            prop_assert_eq!(tickets, expected);
            let delivered = pair.server_events.iter().filter(|e| matches!(e, ServerEvent::Delivered(_))).count();
            prop_assert_eq!(delivered, server_sent.len());
            prop_assert!(pair.client.session().is_empty());
            prop_assert!(pair.server.session().is_empty());
        }
    }
}

// ----- property: any sequence of well-formed packets and commands keeps the machines sound -----

mod arbitrary_sequences {
    use proptest::prelude::*;

    use super::*;

    fn any_packet() -> impl Strategy<Value = Packet> {
        let id = (1u16..6).prop_map(pid);
        let qos_pid = prop_oneof![
            Just(QosPid::AtMostOnce),
            id.clone().prop_map(QosPid::AtLeastOnce),
            id.clone().prop_map(QosPid::ExactlyOnce),
        ];
        prop_oneof![
            (any::<bool>(), any::<u16>()).prop_map(|(clean, ka)| connect_packet("p", clean, ka)),
            any::<bool>().prop_map(|present| Packet::ConnAck(ConnAck {
                session_present: present,
                return_code: ConnectReturnCode::Accepted
            })),
            (qos_pid, any::<bool>()).prop_map(|(qos_pid, dup)| publish_packet(
                qos_pid,
                dup && qos_pid != QosPid::AtMostOnce,
                "p"
            )),
            id.clone().prop_map(Packet::PubAck),
            id.clone().prop_map(Packet::PubRec),
            id.clone().prop_map(Packet::PubRel),
            id.clone().prop_map(Packet::PubComp),
            id.clone().prop_map(|id| Packet::Subscribe(Subscribe {
                packet_id: id,
                filters: vec![(filter("a/+"), QoS::ExactlyOnce)]
            })),
            id.clone().prop_map(|id| Packet::SubAck(SubAck {
                packet_id: id,
                return_codes: vec![SubAckReturnCode::Failure]
            })),
            id.clone().prop_map(|id| Packet::Unsubscribe(Unsubscribe {
                packet_id: id,
                filters: vec![filter("a")]
            })),
            id.prop_map(Packet::UnsubAck),
            Just(Packet::PingReq),
            Just(Packet::PingResp),
            Just(Packet::Disconnect),
        ]
    }

    #[derive(Clone, Debug)]
    enum Step {
        Packet(Packet),
        /// The local side acts: accept/refuse/publish/suback/close on the server, publish,
        /// subscribe, ping, disconnect on the client (chosen by the number).
        Command(u8, u8),
        Advance(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => any_packet().prop_map(Step::Packet),
            3 => (any::<u8>(), 0u8..3).prop_map(|(c, q)| Step::Command(c, q)),
            1 => (0u16..20_000).prop_map(Step::Advance),
        ]
    }

    fn qos(q: u8) -> QoS {
        QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn a_server_survives_any_packet_sequence(steps in proptest::collection::vec(step(), 0..60)) {
            let mut now = Instant::now();
            let session = Session::new(SessionLimits {
                max_inflight: 2,
                max_queued_messages: 2,
                max_queued_bytes: 100,
                max_incoming_unreleased: 2,
            });
            let mut session = Some(session);
            let mut server = ServerConnection::new(ServerConfig::default(), now);
            for step in steps {
                match step {
                    Step::Packet(packet) => {
                        let closed = server.is_closed();
                        let result = feed_server(&mut server, now, &[packet]);
                        prop_assert!(result.is_ok() || server.is_closed());
                        prop_assert!(!(closed && result.is_err()));
                    }
                    Step::Command(c, q) => match c % 6 {
                        0 => {
                            if let Some(s) = session.take() {
                                server.accept(now, s, q == 1);
                            }
                        }
                        1 => server.refuse(ConnectReturnCode::NotAuthorized),
                        2 | 3 => {
                            let _ = server.publish(now, msg(qos(q), "m"));
                        }
                        4 => server.suback(pid(1), vec![SubAckReturnCode::Success(qos(q))]),
                        _ => server.close(),
                    },
                    Step::Advance(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        server.handle_timeout(now);
                    }
                }
                let _ = server_events(&mut server);
                let _ = transmitted_by_server(&mut server);
                if server.session().limits().max_inflight == 2 {
                    // The accepted session's bounds hold (until one is accepted, a placeholder
                    // with default limits holds what the broker publishes early).
                    prop_assert!(server.session().inflight_len() <= 2);
                    prop_assert!(server.session().queued_len() <= 2);
                    prop_assert!(server.session().incoming_unreleased_len() <= 2);
                }
                if server.is_closed() {
                    prop_assert_eq!(server.poll_timeout(), None);
                }
            }
            let _ = server.into_session();
        }

        #[test]
        fn a_client_survives_any_packet_sequence(steps in proptest::collection::vec(step(), 0..60)) {
            let mut now = Instant::now();
            let session = Session::new(SessionLimits {
                max_inflight: 2,
                max_queued_messages: 2,
                max_queued_bytes: 100,
                max_incoming_unreleased: 2,
            });
            let options = ConnectOptions::new("c").keep_alive(KeepAlive(5));
            let mut client = ClientConnection::new(options, session, now);
            for step in steps {
                match step {
                    Step::Packet(packet) => {
                        let result = feed_client(&mut client, now, &[packet]);
                        prop_assert!(result.is_ok() || client.is_closed());
                    }
                    Step::Command(c, q) => match c % 5 {
                        0 | 1 => {
                            let _ = client.publish(now, msg(qos(q), "m"));
                        }
                        2 => {
                            let _ = client.subscribe(now, vec![(filter("a"), qos(q))]);
                        }
                        3 => client.ping(now),
                        _ => client.disconnect(),
                    },
                    Step::Advance(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        client.handle_timeout(now);
                    }
                }
                let _ = client_events(&mut client);
                let _ = transmitted_by_client(&mut client);
                prop_assert!(client.session().inflight_len() <= 2);
                prop_assert!(client.session().queued_len() <= 2);
                if client.is_closed() {
                    prop_assert_eq!(client.poll_timeout(), None);
                }
            }
            let session = client.into_session();
            // The session carries over to a new connection without trouble.
            let mut next = ClientConnection::new(ConnectOptions::new("c"), session, now);
            let _ = transmitted_by_client(&mut next);
        }
    }
}
