//! decode → encode → decode: every packet the decoder accepts must encode (to exactly
//! `encoded_len` bytes) and decode back to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{Decoder, OutBuf};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decoder.decode(&mut buf) {
        let mut encoded = BytesMut::new();
        packet.encode(&mut encoded).expect("a decoded packet must encode");
        assert_eq!(encoded.len(), packet.encoded_len());
        let mut out = OutBuf::new();
        packet.encode_into(&mut out).expect("a decoded packet must encode");
        assert_eq!(bytes::Buf::copy_to_bytes(&mut out, encoded.len()), encoded);
        let again = Decoder::new(1 << 20)
            .decode(&mut encoded)
            .expect("re-encoded packet must decode");
        assert_eq!(again.as_ref(), Some(&packet));
        assert!(encoded.is_empty());
    }
});
