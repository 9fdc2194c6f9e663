//! Arbitrary bytes into the decoder: it must never panic, and feeding the same bytes in two
//! pieces must give the same packets and the same error as feeding them at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{DecodeError, Decoder, Packet};

fn decode_all(chunks: &[&[u8]], max: usize) -> (Vec<Packet>, Option<DecodeError>) {
    let mut decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => return (packets, Some(e)),
            }
        }
    }
    (packets, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    // A small maximum exercises the size check; a large one lets every packet through.
    let max = if split & 1 == 0 { 1 << 20 } else { 64 };
    let at = usize::from(split).min(data.len());
    let whole = decode_all(&[data], max);
    let (head, tail) = data.split_at(at);
    let pieces = decode_all(&[head, tail], max);
    assert_eq!(whole, pieces);
});
