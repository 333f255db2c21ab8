//! A direct reader for the bodies of postings in the exact form that
//! `encode_body` writes them: the members in their order, no whitespace,
//! and strings without escapes. Postings are most of a log, and decoding
//! their bodies through serde took about a third of a cold start's CPU at
//! 1,000,000 postings. Any body that departs from that form by one byte
//! is left to the serde reader, which accepts every valid body and names
//! what is wrong with an invalid one. Each value goes through the same
//! parser as there (`Sid::parse`, the `Deserialize` of `Decimal` and
//! `Currency`, `parse_recorded_at`, `Actor::parse`), so both readers give
//! the same event.

use rust_decimal::Decimal;
use serde::de::value::{BorrowedStrDeserializer, Error as ValueError};
use serde::Deserialize;

use super::{parse_recorded_at, RawEvent, RecordedEvent};
use crate::domain::events::{Actor, BalancePosted, Event, EventMeta, Leg};
use crate::domain::ids::Sid;
use crate::domain::money::Currency;

/// The digits of the largest number read here: every 19-digit number fits
/// in a `u64`. A longer one goes to the serde reader.
const MAX_DIGITS: usize = 19;

/// Decodes `raw` when its body is a posting in the form `encode_body`
/// writes and its sequence number matches, and returns `None` otherwise.
pub(super) fn decode(raw: &RawEvent) -> Option<RecordedEvent> {
    let mut body = Cursor { bytes: &raw.body, at: 0 };
    body.literal(b"{\"seq\":")?;
    let seq = body.number()?;
    if seq != raw.seq {
        return None;
    }

    body.literal(b",\"stream\":")?;
    let stream = Sid::parse(body.string()?)?;
    body.literal(b",\"version\":")?;
    let version = body.number()?;
    body.literal(b",\"type\":")?;
    let kind = body.string()?;
    body.literal(b",\"schema\":1,\"recorded_at\":")?;
    let recorded_at = parse_recorded_at(body.string()?)?;
    body.literal(b",\"actor\":")?;
    let actor = Actor::parse(body.string()?)?;
    body.literal(b",\"request_id\":")?;
    let request_id = body.string()?.to_string();

    body.literal(b",\"data\":")?;
    let posting = posting(&mut body)?;
    body.literal(b"}")?;
    if body.at != body.bytes.len() {
        return None;
    }
    let event = match kind {
        "BalanceToppedUp" => Event::BalanceToppedUp(posting),
        "BalanceAdjusted" => Event::BalanceAdjusted(posting),
        _ => return None,
    };
    Some(RecordedEvent {
        seq,
        stream,
        version,
        meta: EventMeta { recorded_at, actor, request_id, idempotency: None },
        event,
        prev_hash: raw.prev_hash,
        hash: raw.hash,
    })
}

/// Reads the data of a posting, as `BalancePosted` serializes it.
fn posting(body: &mut Cursor<'_>) -> Option<BalancePosted> {
    body.literal(b"{\"sid\":")?;
    let sid = Sid::parse(body.string()?)?;
    body.literal(b",\"account_sid\":")?;
    let account_sid = Sid::parse(body.string()?)?;
    body.literal(b",\"developer_sid\":")?;
    let developer_sid = Sid::parse(body.string()?)?;
    body.literal(b",\"amount\":")?;
    let amount = decimal(body.string()?)?;
    body.literal(b",\"currency\":")?;
    let currency = Currency::deserialize(text(body.string()?)).ok()?;
    body.literal(b",\"pay_method\":")?;
    let pay_method = u16::try_from(body.number()?).ok()?;

    let refer_trans_id = body.optional_member(b",\"refer_trans_id\":")?;
    let desc = body.optional_member(b",\"desc\":")?;
    body.literal(b",\"legs\":[")?;
    let own = leg(body)?;
    body.literal(b",")?;
    let other = leg(body)?;
    body.literal(b"],\"balance_after\":")?;
    let balance_after = decimal(body.string()?)?;
    body.literal(b"}")?;
    Some(BalancePosted {
        sid,
        account_sid,
        developer_sid,
        amount,
        currency,
        pay_method,
        refer_trans_id,
        desc,
        legs: [own, other],
        balance_after,
    })
}

fn leg(body: &mut Cursor<'_>) -> Option<Leg> {
    body.literal(b"{\"account\":")?;
    let account = body.string()?.to_string();
    body.literal(b",\"amount\":")?;
    let amount = decimal(body.string()?)?;
    body.literal(b"}")?;
    Some(Leg { account, amount })
}

/// Wraps a string as serde reads it from a JSON string without escapes.
fn text(value: &str) -> BorrowedStrDeserializer<'_, ValueError> {
    BorrowedStrDeserializer::new(value)
}

fn decimal(value: &str) -> Option<Decimal> {
    <Decimal as Deserialize>::deserialize(text(value)).ok()
}

/// A position in a body.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `literal`, or returns `None` where the body differs.
    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        if !rest.starts_with(literal) {
            return None;
        }
        self.at += literal.len();
        Some(())
    }

    /// Reads a string that JSON allows without escapes: `None` at a
    /// backslash, a control character or invalid UTF-8, each of which the
    /// serde reader handles.
    fn string(&mut self) -> Option<&'a str> {
        self.literal(b"\"")?;
        let rest = self.bytes.get(self.at..)?;
        let length = rest.iter().position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
        if rest[length] != b'"' {
            return None;
        }
        let value = std::str::from_utf8(&rest[..length]).ok()?;
        self.at += length + 1;
        Some(value)
    }

    /// Reads a number of 1 to `MAX_DIGITS` digits without a leading zero,
    /// as JSON writes an unsigned integer.
    fn number(&mut self) -> Option<u64> {
        let rest = self.bytes.get(self.at..)?;
        let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_DIGITS || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        let value =
            rest[..digits].iter().fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0'));
        self.at += digits;
        Some(value)
    }

    /// Reads a string member that serialization skips when it is `None`:
    /// `Some(None)` when the body does not continue with `name`.
    fn optional_member(&mut self, name: &[u8]) -> Option<Option<String>> {
        if self.literal(name).is_none() {
            return Some(None);
        }
        Some(Some(self.string()?.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::ids::SidKind;
    use crate::store::envelope::{seal, PendingEvent, GENESIS_HASH};

    /// Seals a posting as the writer does and splits the stored value.
    fn stored(seq: u64, pending: &PendingEvent) -> RawEvent {
        let (value, _) = seal(pending, &GENESIS_HASH);
        RawEvent::from_stored(seq, &value).expect("a sealed value splits")
    }

    fn pending(
        adjustment: bool,
        text: (String, Option<String>, Option<String>),
        amount: Decimal,
        at: DateTime<Utc>,
    ) -> PendingEvent {
        let (request_id, refer_trans_id, desc) = text;
        let account = Sid::new(SidKind::Account, 0xac);
        let posted = BalancePosted {
            sid: Sid::new(SidKind::Transaction, 0xba),
            account_sid: account,
            developer_sid: Sid::new(SidKind::Developer, 0xde),
            amount,
            currency: Currency::Sgd,
            pay_method: 4,
            refer_trans_id,
            desc,
            legs: [
                Leg { account: format!("subaccount:{account}"), amount },
                Leg { account: "funding:paypal".to_string(), amount: -amount },
            ],
            balance_after: amount,
        };
        let event = if adjustment {
            Event::BalanceAdjusted(posted)
        } else {
            Event::BalanceToppedUp(posted)
        };
        let actor = Actor::Developer(Sid::new(SidKind::Developer, 0xde));
        PendingEvent {
            seq: 7,
            stream: account,
            version: 3,
            meta: EventMeta { recorded_at: at, actor, request_id, idempotency: None },
            event,
        }
    }

    /// Text with the characters that JSON escapes, and others.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 -]{0,24}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\n'),
                    Just('\u{1}'),
                    Just('é'),
                    Just('€'),
                    any::<char>()
                ],
                0..12
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    proptest! {
        /// Every sealed posting decodes the same through both readers, and
        /// one without escapes through the direct reader.
        #[test]
        fn direct_reader_agrees_with_serde(
            adjustment in any::<bool>(),
            request_id in any_text(),
            refer_trans_id in proptest::option::of(any_text()),
            desc in proptest::option::of(any_text()),
            mantissa in -10_000_000_000i64..10_000_000_000,
            scale in 0u32..8,
            micros in 0i64..4_102_444_800_000_000,
        ) {
            let amount = Decimal::new(mantissa, scale);
            let at = DateTime::from_timestamp_micros(micros).expect("a time in range");
            let text = (request_id, refer_trans_id, desc);
            let raw = stored(7, &pending(adjustment, text, amount, at));
            let through_serde = raw.decode_with_serde().expect("a sealed posting decodes");
            let direct = decode(&raw);
            let body = std::str::from_utf8(&raw.body).expect("a body is UTF-8");
            if !body.contains('\\') {
                prop_assert!(direct.is_some(), "a body without escapes is read directly: {}", body);
            }
            if let Some(direct) = direct {
                prop_assert_eq!(direct, through_serde);
            }
        }

        /// Any change of one byte of a sealed posting's body leaves the two
        /// readers in agreement: the same event, or the direct reader
        /// declines.
        #[test]
        fn one_changed_byte_reads_the_same_or_declines(position in any::<usize>(), byte in any::<u8>()) {
            let text = ("0123456789abcdef".to_string(), Some("ref-1".to_string()), None);
            let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("a time");
            let mut raw = stored(7, &pending(false, text, Decimal::new(100, 2), at));
            let position = position % raw.body.len();
            raw.body[position] = byte;
            if let Some(direct) = decode(&raw) {
                let through_serde = raw.decode_with_serde();
                prop_assert_eq!(Some(direct), through_serde.ok());
            }
        }
    }

    /// Returns `raw` with `body` in place of its body.
    fn with_body(raw: &RawEvent, body: Vec<u8>) -> RawEvent {
        RawEvent { body: body.into(), ..raw.clone() }
    }

    /// Returns the direct reader's result, after checking that it is
    /// `None` or the event that the serde reader returns.
    fn decode_checked(raw: &RawEvent, case: &str) -> Option<RecordedEvent> {
        let direct = decode(raw);
        if let Some(direct) = &direct {
            let through_serde = raw.decode_with_serde();
            assert!(through_serde.is_ok(), "{case}: serde rejects {through_serde:?}");
            assert_eq!(Some(direct), through_serde.as_ref().ok(), "{case}");
        }
        direct
    }

    /// Seals a posting with every optional member and returns it with its
    /// body as text.
    fn full_posting() -> (RawEvent, String) {
        let text = ("req-1".to_string(), Some("ref-1".to_string()), Some("d".to_string()));
        let at = DateTime::from_timestamp_micros(1_714_566_896_123_456).expect("a time");
        let raw = stored(7, &pending(false, text, Decimal::new(1250, 2), at));
        let body = String::from_utf8(raw.body.to_vec()).expect("a body is UTF-8");
        (raw, body)
    }

    #[test]
    fn edited_postings_read_as_through_serde() {
        let (raw, body) = full_posting();
        assert!(decode_checked(&raw, "the sealed body").is_some(), "{body}");
        // Each case replaces the first `from` in the body with `to`, and
        // gives whether the direct reader and the serde reader accept it.
        let cases: &[(&str, &str, bool, bool)] = &[
            // Numbers.
            ("\"seq\":7,", "\"seq\":07,", false, false),
            ("\"seq\":7,", "\"seq\":7.0,", false, false),
            ("\"seq\":7,", "\"seq\":7e0,", false, false),
            ("\"seq\":7,", "\"seq\":-7,", false, false),
            ("\"seq\":7,", "\"seq\": 7,", false, true),
            ("\"seq\":7,", "\"seq\":\"7\",", false, false),
            ("\"version\":3,", "\"version\":03,", false, false),
            ("\"version\":3,", "\"version\":0,", true, true),
            ("\"version\":3,", "\"version\":9999999999999999999,", true, true),
            ("\"version\":3,", "\"version\":18446744073709551615,", false, true),
            ("\"version\":3,", "\"version\":18446744073709551616,", false, false),
            ("\"version\":3,", "\"version\":3.5,", false, false),
            ("\"pay_method\":4,", "\"pay_method\":65535,", true, true),
            ("\"pay_method\":4,", "\"pay_method\":65536,", false, false),
            ("\"pay_method\":4,", "\"pay_method\":4294967300,", false, false),
            ("\"pay_method\":4,", "\"pay_method\":04,", false, false),
            ("\"pay_method\":4,", "\"pay_method\":4.0,", false, false),
            ("\"pay_method\":4,", "\"pay_method\":-0,", false, false),
            ("\"schema\":1,", "\"schema\":01,", false, false),
            ("\"schema\":1,", "\"schema\":2,", false, false),
            // Strings.
            ("\"req-1\"", "\"req-\\\"1\"", false, true),
            ("\"req-1\"", "\"req-\\u0031\"", false, true),
            ("\"req-1\"", "\"req-\\/1\"", false, true),
            ("\"req-1\"", "\"req-\\ud800\"", false, false),
            ("\"req-1\"", "\"req-\\x\"", false, false),
            ("\"req-1\"", "\"req-\t1\"", false, false),
            ("\"req-1\"", "\"req-\u{7f}1\"", true, true),
            ("\"req-1\"", "\"req-\u{2028}1\"", true, true),
            ("\"req-1\"", "\"r\u{e9}q-\u{1f600}\"", true, true),
            ("\"req-1\"", "\"req\"-1\"", false, false),
            ("\"req-1\"", "\"\"", true, true),
            ("\"req-1\"", "null", false, false),
            ("\"ref-1\"", "\"ref-\\n\"", false, true),
            ("\"funding:paypal\"", "\"funding:\\u0070aypal\"", false, true),
            ("\"funding:paypal\"", "\"\u{2029}\"", true, true),
            // Ids and actors.
            ("\"stream\":\"AC", "\"stream\":\"ac", false, false),
            ("\"stream\":\"AC", "\"stream\":\"XX", false, false),
            ("\"actor\":\"DV", "\"actor\":\"AC", false, false),
            ("\"actor\":\"DV000000000000000000000000000000de\"", "\"actor\":\"platform\"", true, true),
            ("\"actor\":\"DV000000000000000000000000000000de\"", "\"actor\":\"Platform\"", false, false),
            ("\"sid\":\"BA000000000000000000000000000000ba\"", "\"sid\":\"BA000000000000000000000000000000BA\"", false, false),
            // Times.
            (".123456Z\"", "Z\"", true, true),
            (".123456Z\"", ".123456789Z\"", true, true),
            (".123456Z\"", ".123456+00:00\"", true, true),
            (".123456Z\"", ".123456-08:30\"", true, true),
            (".123456Z\"", ".123456z\"", true, true),
            (".123456Z\"", ".123456\"", false, false),
            ("T12:34:56.123456Z", "t12:34:56.123456Z", true, true),
            ("T12:34:56.123456Z", " 12:34:56.123456Z", true, true),
            ("T12:34:56.123456Z", "T23:59:60.123456Z", true, true),
            ("T12:34:56.123456Z", "T24:00:00.000000Z", false, false),
            ("2024-05-01T", "2024-02-30T", false, false),
            ("2024-05-01T", "+2024-05-01T", true, true),
            ("2024-05-01T", "0000-05-01T", true, true),
            // Decimals.
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"1e3\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"1.25E-1\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"+12.50\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"-0\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"0012.50\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"12.\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\".5\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"1_250\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\" 12.50\",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"12.50 \",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"\",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"NaN\",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":12.50,\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"79228162514264337593543950335\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"79228162514264337593543950336\",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"0.00000000000000000000000000000000001\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"1.00000000000000000000000000000000000000001\",\"currency", true, true),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"\u{661}\",\"currency", false, false),
            ("\"amount\":\"12.50\",\"currency", "\"amount\":\"1\\u0032.50\",\"currency", false, true),
            ("\"balance_after\":\"12.50\"", "\"balance_after\":\"1e-28\"", true, true),
            ("\"balance_after\":\"12.50\"", "\"balance_after\":\"1e29\"", false, false),
            // Currencies.
            ("\"SGD\"", "\"sgd\"", false, false),
            ("\"SGD\"", "\"Sgd\"", false, false),
            ("\"SGD\"", "\"USD\"", true, true),
            ("\"SGD\"", "\"XXX\"", false, false),
            ("\"SGD\"", "\"\\u0053GD\"", false, true),
            // Members.
            ("\"refer_trans_id\":\"ref-1\"", "\"refer_trans_id\":null", false, true),
            ("\"desc\":\"d\"", "\"desc\":null", false, true),
            (",\"refer_trans_id\":\"ref-1\"", "", true, true),
            (",\"desc\":\"d\"", "", true, true),
            ("\"refer_trans_id\":\"ref-1\",\"desc\":\"d\"", "\"desc\":\"d\",\"refer_trans_id\":\"ref-1\"", false, true),
            ("\"desc\":\"d\"", "\"desc\":\"d\",\"desc\":\"e\"", false, false),
            ("\"desc\":\"d\"", "\"desc\":\"d\",\"note\":1", false, true),
            ("\"seq\":7,", "\"seq\":7,\"seq\":7,", false, false),
            ("\"seq\":7,", "\"seq\":7,\"note\":[1,{}],", false, true),
            (",\"data\":", ",\"idempotency\":null,\"data\":", false, true),
            (",\"data\":", ",\"idempotency\":{\"key\":\"k\",\"fingerprint\":\"f\",\"resource\":\"BA000000000000000000000000000000ba\"},\"data\":", false, true),
            ("{\"seq\":7,", "{ \"seq\":7,", false, true),
            ("\"legs\":[", "\"legs\":[ ", false, true),
            ("],\"balance_after\"", ",{\"account\":\"x\",\"amount\":\"0\"}],\"balance_after\"", false, false),
            // Types.
            ("\"BalanceToppedUp\"", "\"BalanceAdjusted\"", true, true),
            ("\"BalanceToppedUp\"", "\"balancetoppedup\"", false, false),
            ("\"BalanceToppedUp\"", "\"IdempotencyKeyRecorded\"", false, false),
            ("\"BalanceToppedUp\"", "\"SubAccountCreated\"", false, false),
        ];
        for &(from, to, direct_reads, serde_reads) in cases {
            assert!(body.contains(from), "the body contains {from}: {body}");
            let edited = with_body(&raw, body.replacen(from, to, 1).into_bytes());
            let case = format!("{from} -> {to}");
            let direct = decode_checked(&edited, &case);
            assert_eq!(direct.is_some(), direct_reads, "direct reader, {case}");
            let serde = edited.decode_with_serde();
            assert_eq!(serde.is_ok(), serde_reads, "serde reader, {case}: {serde:?}");
        }
    }

    #[test]
    fn edited_bytes_read_as_through_serde() {
        let (raw, body) = full_posting();
        // Invalid UTF-8 inside a string: a lone continuation byte, an
        // overlong slash, a surrogate and a truncated sequence.
        let invalid: [&[u8]; 4] = [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"];
        for bytes in invalid {
            let edited = body.replacen("req-1", "req-\u{0}", 1).into_bytes();
            let at = edited.iter().position(|&byte| byte == 0).expect("the marker");
            let mut edited = edited;
            edited.splice(at..=at, bytes.iter().copied());
            let edited = with_body(&raw, edited);
            let case = format!("{bytes:x?} in a string");
            assert!(decode_checked(&edited, &case).is_none(), "direct reader, {case}");
            assert!(edited.decode_with_serde().is_err(), "serde reader, {case}");
        }
        // Bytes after the body: JSON whitespace is allowed, nothing else.
        for (suffix, serde_reads) in
            [(" ", true), ("\n", true), ("}", false), ("x", false), ("\u{0}", false)]
        {
            let edited = with_body(&raw, format!("{body}{suffix}").into_bytes());
            let case = format!("{suffix:?} after the body");
            assert!(decode_checked(&edited, &case).is_none(), "direct reader, {case}");
            assert_eq!(edited.decode_with_serde().is_ok(), serde_reads, "serde reader, {case}");
        }
        // Every proper prefix of the body is invalid JSON.
        for length in 0..body.len() {
            let edited = with_body(&raw, body.as_bytes()[..length].to_vec());
            let case = format!("the first {length} bytes");
            assert!(decode_checked(&edited, &case).is_none(), "direct reader, {case}");
            assert!(edited.decode_with_serde().is_err(), "serde reader, {case}");
        }
    }

    #[test]
    fn sequence_numbers_of_19_and_20_digits() {
        let (raw, body) = full_posting();
        for (seq, direct_reads) in [
            (999_999_999_999_999_999u64, true),
            (9_999_999_999_999_999_999, true),
            (10_000_000_000_000_000_000, false),
            (u64::MAX, false),
        ] {
            let edited = body.replacen("\"seq\":7,", &format!("\"seq\":{seq},"), 1);
            let edited = RawEvent { seq, ..with_body(&raw, edited.into_bytes()) };
            let case = format!("seq {seq}");
            let direct = decode_checked(&edited, &case);
            assert_eq!(direct.is_some(), direct_reads, "direct reader, {case}");
            assert!(edited.decode_with_serde().is_ok(), "serde reader, {case}");
        }
    }

    #[test]
    fn declines_a_body_of_another_sequence_number() {
        let text = ("0123456789abcdef".to_string(), None, None);
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("a time");
        let raw = stored(8, &pending(false, text, Decimal::ONE, at));
        assert!(decode(&raw).is_none(), "the body says 7, the key 8");
        assert!(raw.decode().is_err(), "the serde reader names the mismatch");
    }

    #[test]
    fn declines_other_event_types() {
        let raw = RawEvent {
            seq: 1,
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
            body: br#"{"seq":1,"stream":"DV000000000000000000000000000000de","version":1,"type":"DeveloperCreated","schema":1,"recorded_at":"2024-05-01T12:34:56.123456Z","actor":"platform","request_id":"r","data":{"sid":"DV000000000000000000000000000000de","name":"n","api_key_sha256":"00"}}"#.to_vec().into(),
        };
        assert!(decode(&raw).is_none(), "a developer's creation");
    }
}
