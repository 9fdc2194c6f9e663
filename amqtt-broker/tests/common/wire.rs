//! Packets built byte by byte, so that a test can get any field wrong (the codec refuses to
//! encode what the spec forbids). Everything here is plain bytes: nothing is checked.

/// A packet from its first byte and body, with the remaining length encoded in between.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Appends `s` with its two-byte length prefix.
pub fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT with protocol `name` and `level`, connect `flags` (the user-name flag is added
/// when `username` is given), keep-alive 60 s and `client_id`.
pub fn raw_connect(
    name: &[u8],
    level: u8,
    flags: u8,
    client_id: &[u8],
    username: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = Vec::new();
    string(name, &mut body);
    body.push(level);
    body.push(flags | if username.is_some() { 0x80 } else { 0 });
    body.extend_from_slice(&60u16.to_be_bytes());
    string(client_id, &mut body);
    if let Some(u) = username {
        string(u, &mut body);
    }
    frame(0x10, &body)
}

/// A valid MQTT 3.1.1 CONNECT with clean session.
pub fn good_connect(client_id: &str) -> Vec<u8> {
    raw_connect(b"MQTT", 4, 0x02, client_id.as_bytes(), None)
}

/// A PUBLISH (not retained, no DUP); `packet_id` is left out at QoS 0.
pub fn raw_publish(topic: &[u8], qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic, &mut body);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

/// A SUBSCRIBE with first byte `first` (0x82 is the valid one) and one filter.
pub fn raw_subscribe(first: u8, packet_id: u16, filter: &[u8], qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(filter, &mut body);
    body.push(qos);
    frame(first, &body)
}

/// A QoS 0 PUBLISH to `t` of exactly `size` bytes on the wire (at least 6).
pub fn publish_of_size(size: usize) -> Vec<u8> {
    // 1 header byte, the remaining length's bytes, 2 + 1 topic bytes, the payload.
    let rl_len = |rl: usize| match rl {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    let mut rl = size - 2;
    while 1 + rl_len(rl) + rl != size {
        rl -= 1;
    }
    let p = raw_publish(b"t", 0, 0, &vec![b'p'; rl - 3]);
    assert_eq!(p.len(), size);
    p
}
