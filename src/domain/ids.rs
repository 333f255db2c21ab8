//! Resource ids: a two-letter prefix naming the kind of resource and 32
//! lower-case hex digits, 34 characters in all (`AC` followed by 128 random
//! bits). A transaction's id starts with its creation time instead, see
//! `Sid::generate_in_time_order`. Ids are kept as a kind and a `u128` so
//! that maps keyed by them stay small and compare fast. The text form
//! exists only at the edges.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of an id in text form: two prefix letters and 32 hex digits.
pub const SID_CHARS: usize = 34;
/// Length of an id in binary form (`Sid::to_bytes`).
pub const SID_BYTES: usize = 18;

/// Returns `drawn` when it is greater than `last`, the id drawn before it.
/// Otherwise, as when both fall in one millisecond, returns `last` plus 1
/// and up to 2^32 - 1 more from `step`, so that a client that knows the
/// last id can only guess the next among 2^32 values. An id that this
/// carries into the next millisecond still sorts in the order of drawing.
/// At the largest value, where no greater one exists, returns `drawn`.
fn after_last(last: u128, drawn: u128, step: u32) -> u128 {
    if drawn > last {
        return drawn;
    }
    last.checked_add(1 + u128::from(step)).unwrap_or(drawn)
}

/// The kind of resource an id names, given by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SidKind {
    Developer,
    Account,
    SipAccount,
    SipAlias,
    Transaction,
}

impl SidKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SidKind::Developer => "DV",
            SidKind::Account => "AC",
            SidKind::SipAccount => "SC",
            SidKind::SipAlias => "SA",
            SidKind::Transaction => "BA",
        }
    }

    fn from_prefix(prefix: &str) -> Option<SidKind> {
        match prefix {
            "DV" => Some(SidKind::Developer),
            "AC" => Some(SidKind::Account),
            "SC" => Some(SidKind::SipAccount),
            "SA" => Some(SidKind::SipAlias),
            "BA" => Some(SidKind::Transaction),
            _ => None,
        }
    }
}

/// A resource id such as `AC5d130a2fe4d483a29d1939f0003ae8e9`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    kind: SidKind,
    // Two halves instead of one `u128`, which is 16-byte aligned and would
    // make every id 32 bytes instead of 24.
    high: u64,
    low: u64,
}

/// The 128 bits of an id without its kind: 16 bytes, for records that
/// hold many ids of one known kind. The bits are four `u32`s, most
/// significant first, so that they order as the id's value does and align
/// to 4 bytes. Paired with a `u32`, they take 20 bytes instead of 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SidBits {
    words: [u32; 4],
}

impl SidBits {
    pub fn with_kind(self, kind: SidKind) -> Sid {
        let [a, b, c, d] = self.words.map(u64::from);
        Sid { kind, high: (a << 32) | b, low: (c << 32) | d }
    }
}

impl Sid {
    pub fn new(kind: SidKind, value: u128) -> Sid {
        let high = (value >> 64) as u64;
        let low = value as u64;
        Sid { kind, high, low }
    }

    pub fn value(self) -> u128 {
        (u128::from(self.high) << 64) | u128::from(self.low)
    }

    /// Draws a fresh id from the operating system's random source.
    pub fn generate(kind: SidKind) -> Sid {
        Sid::new(kind, rand::random::<u128>())
    }

    /// Draws a fresh id whose first 48 bits are the Unix time in
    /// milliseconds and whose other 80 bits are random, so it sorts after
    /// ids of earlier milliseconds. Within one process each id is also
    /// greater than the one drawn before it (`after_last`). Transactions
    /// use it for their index by id (`SortedRunMap`). An id above every
    /// earlier one is appended to a compact list there, where any other id
    /// takes a node entry of an `im` map, about twice the memory. Each
    /// batch then also changes only the newest part of that index. A clock
    /// set back only costs that memory and those copies again.
    pub fn generate_in_time_order(kind: SidKind) -> Sid {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let drawn = Sid::in_time_order(kind, millis, rand::random()).value();
        static LAST: Mutex<u128> = Mutex::new(0);
        // A panic cannot leave the value half-written, so a poisoned lock
        // still holds a valid last id.
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = after_last(*last, drawn, rand::random());
        *last = value;
        Sid::new(kind, value)
    }

    /// Builds the id of `generate_in_time_order` from a time and random
    /// bits: the low 48 bits of `millis`, then the high 80 bits of `random`.
    fn in_time_order(kind: SidKind, millis: u128, random: u128) -> Sid {
        const MILLIS_MASK: u128 = (1 << 48) - 1;
        Sid::new(kind, ((millis & MILLIS_MASK) << 80) | (random >> 48))
    }

    pub fn kind(self) -> SidKind {
        self.kind
    }

    /// Returns the 128 bits without the kind.
    pub fn bits(self) -> SidBits {
        let (high, low) = (self.high, self.low);
        SidBits { words: [(high >> 32) as u32, high as u32, (low >> 32) as u32, low as u32] }
    }

    /// Parses the text form; `None` for anything that is not exactly a known
    /// prefix and 32 lower-case hex digits.
    pub fn parse(text: &str) -> Option<Sid> {
        if text.len() != SID_CHARS || !text.is_ascii() {
            return None;
        }
        let (prefix, digits) = text.split_at(2);
        let kind = SidKind::from_prefix(prefix)?;
        // One pass over the digits: every stored event names a few ids, so
        // this runs millions of times in a replay.
        let (high, low) = digits.as_bytes().split_at(16);
        Some(Sid { kind, high: parse_hex_u64(high)?, low: parse_hex_u64(low)? })
    }

    /// Returns the binary form: the two prefix letters, then the value as
    /// 16 big-endian bytes.
    pub fn to_bytes(self) -> [u8; SID_BYTES] {
        let mut bytes = [0; SID_BYTES];
        bytes[..2].copy_from_slice(self.kind.prefix().as_bytes());
        bytes[2..].copy_from_slice(&self.value().to_be_bytes());
        bytes
    }

    /// Reads the binary form of `to_bytes`; `None` for an unknown prefix.
    pub fn from_bytes(bytes: &[u8; SID_BYTES]) -> Option<Sid> {
        let kind = SidKind::from_prefix(std::str::from_utf8(&bytes[..2]).ok()?)?;
        let value = u128::from_be_bytes(bytes[2..].try_into().ok()?);
        Some(Sid::new(kind, value))
    }

    /// Parses the text form and requires the given kind.
    pub fn parse_kind(text: &str, kind: SidKind) -> Option<Sid> {
        Sid::parse(text).filter(|sid| sid.kind == kind)
    }
}

/// Hashes sids with one multiply per word, as FxHash does, for hash
/// tables keyed by sids that the service generated. Such a sid has at
/// least 80 bits from the operating system's random source, so this
/// spreads them as well as the standard SipHash at a fraction of its cost,
/// and no client can choose keys that collide.
#[derive(Default)]
pub struct SidHasher(u64);

impl SidHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for SidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.add(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_isize(&mut self, word: isize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The value of each lower-case hex digit by byte, and `NOT_HEX` for every
/// other byte. A table lookup has no branch to mispredict on random ids.
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// Reads 16 lower-case hex digits, and returns `None` for any other byte.
fn parse_hex_u64(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = HEX_VALUES[usize::from(digit)];
        // Collect invalid digits and check once, after the loop.
        invalid |= nibble & 0xf0;
        value = value << 4 | u64::from(nibble & 0x0f);
    }
    (invalid == 0).then_some(value)
}

/// The text form of an id, in a buffer on the stack, written by the `hex`
/// crate instead of the formatting machinery. A posting's event body, its
/// response and its log line each contain several ids. In a profile of the
/// writer thread, serializing ids through `write!` with two `{:016x}` took
/// about a sixth of the time of encoding a posting's body.
pub struct SidText([u8; SID_CHARS]);

impl SidText {
    pub fn as_str(&self) -> &str {
        // The buffer contains two ASCII prefix letters and ASCII hex digits.
        std::str::from_utf8(&self.0).expect("an id's text is ASCII")
    }
}

impl Sid {
    /// Returns the text form, as `Display` writes it.
    pub fn text(self) -> SidText {
        let mut text = [0; SID_CHARS];
        text[..2].copy_from_slice(self.kind.prefix().as_bytes());
        hex::encode_to_slice(self.value().to_be_bytes(), &mut text[2..])
            .expect("16 bytes fill the 32 hex digits");
        SidText(text)
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sid {
    type Err = InvalidSid;

    fn from_str(text: &str) -> Result<Sid, InvalidSid> {
        Sid::parse(text).ok_or(InvalidSid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid id: expected a two-letter prefix and 32 lower-case hex digits")]
pub struct InvalidSid;

impl Serialize for Sid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.text().as_str())
        } else {
            (self.kind as u8, self.high, self.low).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Sid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sid, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            Sid::parse(&text).ok_or_else(|| D::Error::custom(InvalidSid))
        } else {
            let (tag, high, low) = <(u8, u64, u64)>::deserialize(deserializer)?;
            let kind = match tag {
                0 => SidKind::Developer,
                1 => SidKind::Account,
                2 => SidKind::SipAccount,
                3 => SidKind::SipAlias,
                4 => SidKind::Transaction,
                _ => return Err(D::Error::custom("unknown id kind")),
            };
            Ok(Sid { kind, high, low })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_round_trips_through_bytes() {
        let sid = Sid::generate(SidKind::SipAlias);
        let bytes = sid.to_bytes();
        assert_eq!(&bytes[..2], b"SA");
        assert_eq!(Sid::from_bytes(&bytes), Some(sid));
        let mut unknown = bytes;
        unknown[..2].copy_from_slice(b"ZZ");
        assert_eq!(Sid::from_bytes(&unknown), None);
    }

    #[test]
    fn sid_round_trips_through_text() {
        let sid = Sid::new(SidKind::Account, 0x5d13_0a2f);
        let text = sid.to_string();
        assert_eq!(text, "AC0000000000000000000000005d130a2f");
        assert_eq!(Sid::parse(&text), Some(sid));
    }

    #[test]
    fn time_ordered_sids_put_the_time_first() {
        let sid = Sid::in_time_order(SidKind::Transaction, 0x0123_4567_89ab, u128::MAX);
        assert_eq!(sid.to_string(), "BA0123456789abffffffffffffffffffff");
        let later = Sid::in_time_order(SidKind::Transaction, 0x0123_4567_89ac, 0);
        assert!(sid < later, "an id of a later millisecond sorts after");

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_millis();
        let drawn = Sid::generate_in_time_order(SidKind::Transaction);
        let millis = drawn.value() >> 80;
        assert!(millis.abs_diff(now) < 60_000, "{drawn} carries the time {millis}, now is {now}");
        assert_ne!(drawn, Sid::generate_in_time_order(SidKind::Transaction));
    }

    #[test]
    fn time_ordered_sids_increase_within_a_process() {
        let drawn: Vec<Sid> =
            (0..10_000).map(|_| Sid::generate_in_time_order(SidKind::Transaction)).collect();
        // Other tests draw too, so these need not be adjacent, only rising.
        for pair in drawn.windows(2) {
            assert!(pair[0] < pair[1], "{} is drawn before {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn time_ordered_sids_from_threads_are_unique() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5_000)
                        .map(|_| Sid::generate_in_time_order(SidKind::Transaction))
                        .collect::<Vec<Sid>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            let drawn = thread.join().expect("the thread draws ids");
            for pair in drawn.windows(2) {
                assert!(pair[0] < pair[1], "{} is drawn before {} on a thread", pair[0], pair[1]);
            }
            all.extend(drawn);
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "every id is drawn once");
    }

    #[test]
    fn after_last_steps_past_lower_ids() {
        assert_eq!(after_last(10, 11, 7), 11, "a greater id is kept");
        assert_eq!(after_last(10, 10, 7), 18, "an equal id steps past");
        assert_eq!(after_last(10, 3, 0), 11, "a smaller id steps past by at least 1");
        assert_eq!(after_last(10, 3, u32::MAX), 10 + (1 << 32), "at most 2^32");
        assert_eq!(after_last(u128::MAX, 5, 0), 5, "no id above the largest");
    }

    #[test]
    fn text_matches_hex_format() {
        let values =
            [0, 1, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, u128::MAX, 1 << 64, (1 << 64) - 1];
        let kinds = [
            SidKind::Developer,
            SidKind::Account,
            SidKind::SipAccount,
            SidKind::SipAlias,
            SidKind::Transaction,
        ];
        for (value, kind) in values.into_iter().zip(kinds.into_iter().cycle()) {
            let sid = Sid::new(kind, value);
            let expected = format!("{}{value:032x}", kind.prefix());
            assert_eq!(sid.text().as_str(), expected);
            assert_eq!(sid.to_string(), expected);
            assert_eq!(
                serde_json::to_string(&sid).expect("an id serializes"),
                format!("\"{expected}\"")
            );
            assert_eq!(Sid::parse(&expected), Some(sid));
        }
    }

    #[test]
    fn sid_reads_every_hex_digit() {
        let sid = Sid::parse("AC0123456789abcdeffedcba9876543210");
        let expected = Sid::new(SidKind::Account, 0x0123456789abcdeffedcba9876543210);
        assert_eq!(sid, Some(expected), "every digit keeps its value and place");
    }

    #[test]
    fn sid_rejects_malformed_text() {
        let cases = [
            "",
            "AC",
            "XX0000000000000000000000005d130a2f",
            "ac0000000000000000000000005d130a2f",
            "AC0000000000000000000000005D130A2F",
            "AC0000000000000000000000005d130a2",
            "AC0000000000000000000000005d130a2f0",
            "AC+000000000000000000000005d130a2f",
            "AC00000000000000000000000005d130aé",
            "ACg000000000000000000000005d130a2f",
            "AC00000000000000000000000005d130ag",
            "AC0000000000000/00000000005d130a2f",
            "AC0000000000000000:00000005d130a2f",
            "AC00000000000000000`0000005d130a2f",
        ];
        for case in cases {
            assert_eq!(Sid::parse(case), None, "{case:?} must not parse");
        }
    }

    #[test]
    fn sid_parse_kind_checks_prefix() {
        let sid = Sid::generate(SidKind::SipAccount);
        let text = sid.to_string();
        assert_eq!(Sid::parse_kind(&text, SidKind::SipAccount), Some(sid));
        assert_eq!(Sid::parse_kind(&text, SidKind::Account), None);
    }

    #[test]
    fn bits_keep_value_and_order() {
        let values = [0, 1, u128::from(u32::MAX), 1 << 32, 1 << 64, (1 << 96) + 7, u128::MAX];
        for value in values {
            let sid = Sid::new(SidKind::Transaction, value);
            assert_eq!(sid.bits().with_kind(SidKind::Transaction), sid, "round trip of {value}");
        }
        for pair in values.windows(2) {
            let [lower, higher] = [pair[0], pair[1]].map(|value| Sid::new(SidKind::Account, value));
            assert!(lower.bits() < higher.bits(), "{} before {}", pair[0], pair[1]);
        }
        assert_eq!(std::mem::align_of::<SidBits>(), 4);
        assert_eq!(std::mem::size_of::<(SidBits, u32)>(), 20);
    }
}
