//! Fuzz target for stored event decoding. It checks that
//! `RawEvent::from_stored`, the hash check and `decode` do not panic on
//! arbitrary bytes, that the direct reader of posting bodies declines a
//! body or reads the same event as the serde reader, and that an event
//! that decodes seals and decodes again to the same event.
//!
//! Input layout: byte 0 selects the mode. With 0, the rest is an event
//! body and gets a valid header, stored under the body's own `seq`, so the
//! fuzzer reaches the JSON decoding at once. Otherwise the rest is a
//! stored value as it would come from the log, under sequence number 1.

#![no_main]

use libfuzzer_sys::fuzz_target;
use subledger::store::{seal, PendingEvent, RawEvent, FORMAT_V1, GENESIS_HASH};

/// The format byte and the two hashes in front of every stored body.
const HEADER_BYTES: usize = 1 + 32 + 32;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let (seq, value) = if *mode == 0 {
        let seq = serde_json::from_slice::<serde_json::Value>(rest)
            .ok()
            .and_then(|body| body["seq"].as_u64())
            .unwrap_or(1);
        let mut value = Vec::with_capacity(HEADER_BYTES + rest.len());
        value.push(FORMAT_V1);
        value.extend_from_slice(&[0; 64]);
        value.extend_from_slice(rest);
        (seq, value)
    } else {
        (1, rest.to_vec())
    };

    let Ok(raw) = RawEvent::from_stored(seq, &value) else {
        return;
    };
    let _ = raw.hash_is_valid();
    let _ = raw.body_json();
    // The direct reader of posting bodies either declines a body or reads
    // exactly the event that the serde reader reads.
    if let Some(direct) = raw.decode_posting_directly() {
        match raw.decode_through_serde() {
            Ok(through_serde) => assert_eq!(direct, through_serde, "both readers agree"),
            Err(error) => panic!("the direct reader accepts a body serde rejects: {error}"),
        }
    }
    let Ok(recorded) = raw.decode() else {
        return;
    };
    assert_eq!(recorded.seq, seq, "a decoded event keeps its key's sequence number");

    let pending = PendingEvent {
        seq: recorded.seq,
        stream: recorded.stream,
        version: recorded.version,
        meta: recorded.meta.clone(),
        event: recorded.event.clone(),
    };
    let (sealed, hash) = seal(&pending, &GENESIS_HASH);
    let again = RawEvent::from_stored(seq, &sealed).expect("a sealed event splits");
    assert_eq!(again.hash, hash, "the sealed hash is stored");
    assert!(again.hash_is_valid(), "a sealed event passes the hash check");
    let decoded = again.decode().expect("a sealed event decodes");
    assert_eq!(decoded.event, recorded.event, "the event survives sealing");
    assert_eq!(decoded.stream, recorded.stream, "the stream survives sealing");
    assert_eq!(decoded.version, recorded.version, "the version survives sealing");
});
