//! How `amqtt_sub` prints a message: aMQTT's raw payload, mosquitto's `-v` and `-F` templates,
//! and JSON.
//!
//! `-F` tokens (mosquitto's): `%t` topic, `%p` payload, `%x`/`%X` payload in lower/upper hex,
//! `%l` payload length, `%q` QoS, `%r` retain (0/1), `%d` dup (0/1), `%m` packet id (0 for QoS 0),
//! `%I` ISO-8601 UTC receive time, `%U` Unix time with nanoseconds, `%j` the JSON object,
//! `%J` the JSON object with a JSON payload embedded as JSON, `%%` a percent sign; escapes
//! `\n`, `\t`, `\e`, `\\`. JSON never loses data: a payload that is not UTF-8 is given as
//! `"payload_hex"` instead of `"payload"` (mosquitto prints an empty string there).

use std::time::{SystemTime, UNIX_EPOCH};

use amqtt_client::ApplicationMessage;

/// How each message is printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The raw payload (aMQTT's output); empty payloads are skipped, as aMQTT does.
    Payload,
    /// `topic payload` (mosquitto's `-v`).
    Verbose,
    /// A `-F` template.
    Template(Vec<Token>),
    /// One JSON object per message (`--json`); indented with `--pretty`.
    Json {
        /// Indent the object over several lines.
        pretty: bool,
    },
}

/// One piece of a `-F` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// Text printed as is.
    Literal(Vec<u8>),
    /// `%t`.
    Topic,
    /// `%p`.
    Payload,
    /// `%x`.
    HexLower,
    /// `%X`.
    HexUpper,
    /// `%l`.
    Length,
    /// `%q`.
    Qos,
    /// `%r`.
    Retain,
    /// `%d`.
    Dup,
    /// `%m`.
    PacketId,
    /// `%I`.
    IsoTime,
    /// `%U`.
    UnixTime,
    /// `%j`.
    Json,
    /// `%J`.
    JsonEmbedded,
}

impl Format {
    /// Parses a `-F` template.
    pub fn template(template: &str) -> Format {
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '%' => match chars.next() {
                    Some('t') => Token::Topic,
                    Some('p') => Token::Payload,
                    Some('x') => Token::HexLower,
                    Some('X') => Token::HexUpper,
                    Some('l') => Token::Length,
                    Some('q') => Token::Qos,
                    Some('r') => Token::Retain,
                    Some('d') => Token::Dup,
                    Some('m') => Token::PacketId,
                    Some('I') => Token::IsoTime,
                    Some('U') => Token::UnixTime,
                    Some('j') => Token::Json,
                    Some('J') => Token::JsonEmbedded,
                    Some(other) => {
                        if other != '%' {
                            literal.push(b'%');
                        }
                        push_char(&mut literal, other);
                        continue;
                    }
                    None => {
                        literal.push(b'%');
                        continue;
                    }
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => literal.push(b'\n'),
                        Some('t') => literal.push(b'\t'),
                        Some('e') => literal.push(0x1b),
                        Some('\\') => literal.push(b'\\'),
                        Some(other) => {
                            literal.push(b'\\');
                            push_char(&mut literal, other);
                        }
                        None => literal.push(b'\\'),
                    }
                    continue;
                }
                other => {
                    push_char(&mut literal, other);
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(token);
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Format::Template(tokens)
    }

    /// The bytes to print for `message` received at `at`, without the trailing newline;
    /// `None` when this format skips the message.
    pub fn render(&self, message: &ApplicationMessage, at: SystemTime) -> Option<Vec<u8>> {
        match self {
            Format::Payload if message.payload.is_empty() => None,
            Format::Payload => Some(message.payload.to_vec()),
            Format::Verbose => {
                let mut out = message.topic.as_str().as_bytes().to_vec();
                out.push(b' ');
                if message.payload.is_empty() {
                    out.extend_from_slice(b"(null)");
                } else {
                    out.extend_from_slice(&message.payload);
                }
                Some(out)
            }
            Format::Json { pretty } => Some(json(message, at, false, *pretty).into_bytes()),
            Format::Template(tokens) => {
                let mut out = Vec::new();
                for token in tokens {
                    render_token(token, message, at, &mut out);
                }
                Some(out)
            }
        }
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn render_token(token: &Token, m: &ApplicationMessage, at: SystemTime, out: &mut Vec<u8>) {
    match token {
        Token::Literal(bytes) => out.extend_from_slice(bytes),
        Token::Topic => out.extend_from_slice(m.topic.as_str().as_bytes()),
        Token::Payload => out.extend_from_slice(&m.payload),
        Token::HexLower => out.extend_from_slice(hex(&m.payload, false).as_bytes()),
        Token::HexUpper => out.extend_from_slice(hex(&m.payload, true).as_bytes()),
        Token::Length => out.extend_from_slice(m.payload.len().to_string().as_bytes()),
        Token::Qos => out.extend_from_slice(m.qos.as_u8().to_string().as_bytes()),
        Token::Retain => out.push(if m.retain { b'1' } else { b'0' }),
        Token::Dup => out.push(if m.dup { b'1' } else { b'0' }),
        Token::PacketId => {
            let id = m.packet_id.map_or(0, |id| id.get());
            out.extend_from_slice(id.to_string().as_bytes());
        }
        Token::IsoTime => out.extend_from_slice(iso8601(at).as_bytes()),
        Token::UnixTime => {
            let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            out.extend_from_slice(
                format!("{}.{:09}", since.as_secs(), since.subsec_nanos()).as_bytes(),
            );
        }
        Token::Json => out.extend_from_slice(json(m, at, false, false).as_bytes()),
        Token::JsonEmbedded => out.extend_from_slice(json(m, at, true, false).as_bytes()),
    }
}

/// The JSON object of a message: `tst`, `topic`, `qos`, `retain`, `dup`, `mid` (QoS 1/2),
/// `payloadlen`, then `payload` (a string, or with `embed` the JSON value itself when the
/// payload is JSON) or `payload_hex` when the payload is not UTF-8.
pub fn json(m: &ApplicationMessage, at: SystemTime, embed: bool, pretty: bool) -> String {
    // Built by hand to keep mosquitto's key order (serde_json's map sorts keys).
    let mut fields: Vec<(&str, String)> = vec![
        ("tst", quote(&iso8601(at))),
        ("topic", quote(m.topic.as_str())),
        ("qos", m.qos.as_u8().to_string()),
        ("retain", u8::from(m.retain).to_string()),
        ("dup", u8::from(m.dup).to_string()),
    ];
    if let Some(id) = m.packet_id {
        fields.push(("mid", id.get().to_string()));
    }
    fields.push(("payloadlen", m.payload.len().to_string()));
    match std::str::from_utf8(&m.payload) {
        Ok(text) => {
            let embedded = embed
                .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
                .flatten()
                .map(|value| value.to_string());
            fields.push(("payload", embedded.unwrap_or_else(|| quote(text))));
        }
        Err(_) => fields.push(("payload_hex", quote(&hex(&m.payload, false)))),
    }
    let (open, sep, colon, close) = if pretty {
        ("{\n  ", ",\n  ", ": ", "\n}")
    } else {
        ("{", ",", ":", "}")
    };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\"{colon}{v}"))
        .collect();
    format!("{open}{}{close}", body.join(sep))
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// `2026-11-22T00:26:16.480332Z` (UTC, microseconds).
pub fn iso8601(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = i64::try_from(since.as_secs())
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use amqtt_client::{QoS, TopicName};
    use bytes::Bytes;

    use super::*;

    fn message(payload: &'static [u8]) -> ApplicationMessage {
        ApplicationMessage {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: false,
            packet_id: mqtt_codec::PacketId::new(7),
        }
    }

    fn at() -> SystemTime {
        // 2021-03-04T05:06:07.000008Z
        UNIX_EPOCH + Duration::new(1_614_834_367, 8_000)
    }

    #[test]
    fn iso8601_is_utc_with_microseconds() {
        assert_eq!(iso8601(at()), "2021-03-04T05:06:07.000008Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn default_format_is_the_raw_payload_and_skips_empty_ones() {
        assert_eq!(
            Format::Payload.render(&message(b"hi"), at()),
            Some(b"hi".to_vec())
        );
        assert_eq!(Format::Payload.render(&message(b""), at()), None);
    }

    #[test]
    fn verbose_is_topic_space_payload() {
        assert_eq!(
            Format::Verbose.render(&message(b"hi"), at()),
            Some(b"a/b hi".to_vec())
        );
    }

    #[test]
    fn template_tokens_render_like_mosquitto() {
        let f = Format::template(r"%t|%p|%x|%X|%l|%q|%r|%d|%m|%U|%%|%z\t");
        let out = f.render(&message(b"\x00\xffhi"), at()).unwrap();
        let mut expected =
            b"a/b|\x00\xffhi|00ff6869|00FF6869|4|1|1|0|7|1614834367.000008000|%|%z\t".to_vec();
        expected.truncate(expected.len());
        assert_eq!(out, expected);
    }

    #[test]
    fn json_keeps_non_utf8_payloads_as_hex() {
        let text = json(&message(b"\x00\xff"), at(), false, false);
        assert_eq!(
            text,
            r#"{"tst":"2021-03-04T05:06:07.000008Z","topic":"a/b","qos":1,"retain":1,"dup":0,"mid":7,"payloadlen":2,"payload_hex":"00ff"}"#
        );
    }

    #[test]
    fn json_embeds_json_payloads_with_capital_j() {
        let f = Format::template("%J");
        let out = String::from_utf8(f.render(&message(br#"{"t":21.5}"#), at()).unwrap()).unwrap();
        assert!(out.ends_with(r#""payload":{"t":21.5}}"#), "{out}");
        let f = Format::template("%j");
        let out = String::from_utf8(f.render(&message(br#"{"t":21.5}"#), at()).unwrap()).unwrap();
        assert!(out.ends_with(r#""payload":"{\"t\":21.5}"}"#), "{out}");
    }
}
