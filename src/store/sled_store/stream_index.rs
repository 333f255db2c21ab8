//! The stream index: each stream's sequence numbers in version order.
//!
//! Every event belongs to exactly one stream, so the index is the stream
//! of each sequence number, grouped by stream. It is kept in memory, and
//! saved in sled's `stream_index` tree as rows, each naming the stream of
//! every event in a run of consecutive sequence numbers:
//!
//! | key                         | value                                          |
//! |-----------------------------|------------------------------------------------|
//! | first sequence, u64 BE      | format byte, count (u32 BE), `count` sids in binary form, CRC-32 (u32 BE) of all before it |
//!
//! A row names up to 64 events. The store writes rows at open, before
//! it makes sled durable for a journal record that does not fit the
//! active journal file (a switch, about every 16 MiB of events), and when
//! it is closed. So an append inserts one sled
//! row per event, its `events` row, and later one index row per 64
//! events. At open the rows are read back and
//! the events after the last row are decoded to complete the index: none
//! after a clean close, at most one journal file's worth after a crash.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::domain::ids::{Sid, SidHasher, SID_BYTES};

/// The first byte of every row.
const ROW_FORMAT: u8 = 1;
/// A row names at most this many events. Rows of 1,161 bytes stay far below
/// the size at which sled 0.34.7 stores a value, or a node of values, in a
/// blob file of its own, so they are written and recovered as the events
/// are.
const ROW_EVENTS: usize = 64;
const ROW_HEADER: usize = 1 + 4;
const ROW_CHECKSUM: usize = 4;

#[derive(Default)]
pub(super) struct StreamIndex {
    /// Each stream's version and newest event.
    streams: HashMap<Sid, StreamHead, BuildHasherDefault<SidHasher>>,
    /// The event before each event in its stream. Each stream's events are
    /// a chain back from its newest, so adding an event is one hash lookup
    /// and one value at the end, with no list per stream to grow.
    previous: Predecessors,
    /// The newest sequence number in the index.
    last_seq: u64,
    /// The newest sequence number in a row in sled.
    saved_seq: u64,
    /// The streams of the events after `saved_seq`, in sequence order.
    unsaved: Vec<Sid>,
    /// Why the index stops before the chain head: an event after the
    /// saved rows could not be added at open.
    broken: Option<String>,
}

#[derive(Clone, Copy)]
struct StreamHead {
    version: u64,
    newest: u64,
}

impl StreamIndex {
    /// The newest version of `stream`, 0 for a stream without events.
    pub fn version(&self, stream: Sid) -> u64 {
        self.streams.get(&stream).map_or(0, |head| head.version)
    }

    /// Returns the sequence numbers of `stream`, in version order.
    pub fn sequences(&self, stream: Sid) -> Vec<u64> {
        let Some(head) = self.streams.get(&stream) else {
            return Vec::new();
        };
        let mut sequences = Vec::with_capacity(head.version as usize);
        let mut seq = head.newest;
        while seq != 0 {
            sequences.push(seq);
            seq = self.previous.get(seq);
        }
        debug_assert_eq!(sequences.len() as u64, head.version, "a chain per version");
        sequences.reverse();
        sequences
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Returns why the index stops before the chain head, if it does.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    pub fn set_broken(&mut self, reason: String) {
        self.broken = Some(reason);
    }

    /// Adds the next event. The error names why it does not come next.
    pub fn push(&mut self, seq: u64, stream: Sid, version: u64) -> Result<(), String> {
        if seq != self.last_seq + 1 {
            return Err(format!("event {seq} follows event {} in the index", self.last_seq));
        }
        let current = self.version(stream);
        if version != current + 1 {
            return Err(format!(
                "event {seq} is version {version} of stream {stream}, which is at version {current}"
            ));
        }
        self.add(stream, seq);
        self.last_seq = seq;
        self.unsaved.push(stream);
        Ok(())
    }

    /// Encodes the events not yet in a row as rows, keyed by their first
    /// sequence number.
    pub fn unsaved_rows(&self) -> Vec<([u8; 8], Vec<u8>)> {
        let mut first = self.saved_seq + 1;
        let mut rows = Vec::new();
        for streams in self.unsaved.chunks(ROW_EVENTS) {
            let capacity = ROW_HEADER + streams.len() * SID_BYTES + ROW_CHECKSUM;
            let mut value = Vec::with_capacity(capacity);
            value.push(ROW_FORMAT);
            let count = u32::try_from(streams.len()).expect("a row names at most 64 events");
            value.extend_from_slice(&count.to_be_bytes());
            for stream in streams {
                value.extend_from_slice(&stream.to_bytes());
            }
            let checksum = crc32fast::hash(&value);
            value.extend_from_slice(&checksum.to_be_bytes());
            rows.push((first.to_be_bytes(), value));
            first += streams.len() as u64;
        }
        rows
    }

    /// Adds event `seq`, the one after `last_seq`, to `stream`.
    fn add(&mut self, stream: Sid, seq: u64) {
        let head = self.streams.entry(stream).or_insert(StreamHead { version: 0, newest: 0 });
        self.previous.push(head.newest);
        head.version += 1;
        head.newest = seq;
    }

    /// Frees the unused room of the table of streams, which grew by
    /// doubling while the index was read.
    pub fn shrink_to_fit(&mut self) {
        self.streams.shrink_to_fit();
    }

    /// Marks the rows of `unsaved_rows` as saved in sled.
    pub fn mark_saved(&mut self) {
        self.saved_seq = self.last_seq;
        self.unsaved = Vec::new();
    }

    /// Adds the events of a row read from sled, which must come right
    /// after the rows read before it.
    pub fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let first = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| "a stream index key is not 8 bytes".to_string())?;
        if first != self.last_seq + 1 {
            return Err(format!(
                "the stream index row for events from {first} does not follow event {}",
                self.last_seq
            ));
        }
        let streams = decode_row(value)
            .ok_or_else(|| format!("the stream index row for events from {first} is damaged"))?;
        for (seq, stream) in (first..).zip(streams) {
            let stream = stream.ok_or_else(|| {
                format!("the stream index row for events from {first} names an unknown stream")
            })?;
            self.add(stream, seq);
            self.last_seq = seq;
        }
        self.saved_seq = self.last_seq;
        Ok(())
    }
}

/// A sequence number per event, kept in pages of up to `PAGE_EVENTS`. A
/// page grows by doubling, so a small log takes little memory, and a
/// growing index never copies more than one page while a write waits.
#[derive(Default)]
struct Predecessors {
    pages: Vec<Vec<u64>>,
}

/// 512 KiB in a full page.
const PAGE_EVENTS: usize = 1 << 16;

impl Predecessors {
    fn push(&mut self, value: u64) {
        match self.pages.last_mut() {
            Some(page) if page.len() < PAGE_EVENTS => page.push(value),
            _ => self.pages.push(vec![value]),
        }
    }

    /// Returns the value pushed for event `seq`, the `seq`-th value.
    fn get(&self, seq: u64) -> u64 {
        let position = (seq - 1) as usize;
        self.pages[position / PAGE_EVENTS][position % PAGE_EVENTS]
    }
}

/// Returns the streams a row names, `None` for each unknown one, or
/// `None` for a row that is truncated, of another format, or fails its
/// checksum.
fn decode_row(value: &[u8]) -> Option<impl Iterator<Item = Option<Sid>> + '_> {
    let (body, checksum) = value.split_last_chunk::<ROW_CHECKSUM>()?;
    if crc32fast::hash(body) != u32::from_be_bytes(*checksum) {
        return None;
    }
    let (header, sids) = body.split_first_chunk::<ROW_HEADER>()?;
    let count = u32::from_be_bytes(header[1..].try_into().ok()?) as usize;
    if header[0] != ROW_FORMAT || sids.len() != count.checked_mul(SID_BYTES)? {
        return None;
    }
    let sids = sids.chunks_exact(SID_BYTES);
    Some(sids.map(|bytes| Sid::from_bytes(bytes.try_into().expect("chunks of SID_BYTES"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::SidKind;

    fn filled(streams: &[Sid]) -> StreamIndex {
        let mut index = StreamIndex::default();
        let mut versions: HashMap<Sid, u64> = HashMap::new();
        for (seq, stream) in (1..).zip(streams) {
            let version = versions.entry(*stream).or_default();
            *version += 1;
            index.push(seq, *stream, *version).expect("next event");
        }
        index
    }

    #[test]
    fn rows_round_trip() {
        let a = Sid::generate(SidKind::Account);
        let b = Sid::generate(SidKind::SipAccount);
        let mut index = filled(&[a, b, a, a, b]);
        let rows = index.unsaved_rows();
        assert_eq!(rows.len(), 1);
        index.mark_saved();
        assert!(index.unsaved_rows().is_empty(), "nothing unsaved after mark_saved");

        let mut loaded = StreamIndex::default();
        for (key, value) in &rows {
            loaded.load_row(key, value).expect("load the row");
        }
        assert_eq!(loaded.sequences(a), vec![1, 3, 4]);
        assert_eq!(loaded.sequences(b), vec![2, 5]);
        assert_eq!(loaded.version(a), 3);
        assert_eq!(loaded.last_seq(), 5);
        loaded.push(6, b, 3).expect("the next event after the rows");
        let more = loaded.unsaved_rows();
        assert_eq!(more.len(), 1);
        assert_eq!(u64::from_be_bytes(more[0].0), 6, "the new row starts after the loaded ones");
    }

    #[test]
    fn long_runs_split_into_rows() {
        let stream = Sid::generate(SidKind::Account);
        let index = filled(&vec![stream; ROW_EVENTS + 3]);
        let rows = index.unsaved_rows();
        let firsts: Vec<u64> = rows.iter().map(|(key, _)| u64::from_be_bytes(*key)).collect();
        assert_eq!(firsts, vec![1, ROW_EVENTS as u64 + 1]);
        let mut loaded = StreamIndex::default();
        for (key, value) in &rows {
            loaded.load_row(key, value).expect("load the row");
        }
        assert_eq!(loaded.version(stream), ROW_EVENTS as u64 + 3);
    }

    #[test]
    fn chains_cross_pages() {
        let once = Sid::generate(SidKind::Developer);
        let busy = Sid::generate(SidKind::Account);
        let other = Sid::generate(SidKind::Account);
        let mut streams = vec![once];
        for event in 0..PAGE_EVENTS + 10 {
            streams.push(if event % 3 == 0 { other } else { busy });
        }
        let mut index = filled(&streams);
        index.shrink_to_fit();
        assert_eq!(index.previous.pages.len(), 2, "the events fill more than one page");
        let full = index.previous.pages[0].capacity();
        assert_eq!(full, PAGE_EVENTS, "a full page has grown to the page size and no further");
        let expected = |stream: Sid| -> Vec<u64> {
            (1..).zip(&streams).filter(|(_, s)| **s == stream).map(|(seq, _)| seq).collect()
        };
        for stream in [once, busy, other] {
            let sequences = index.sequences(stream);
            assert_eq!(sequences, expected(stream));
            assert_eq!(index.version(stream), sequences.len() as u64);
        }
        let next = streams.len() as u64 + 1;
        index.push(next, once, 2).expect("the next event");
        assert_eq!(index.sequences(once), vec![1, next]);
        assert_eq!(index.sequences(Sid::generate(SidKind::Account)), Vec::<u64>::new());
        assert_eq!(index.version(Sid::generate(SidKind::Account)), 0);
    }

    #[test]
    fn out_of_order_events_rejected() {
        let stream = Sid::generate(SidKind::Account);
        let mut index = filled(&[stream]);
        assert!(index.push(3, stream, 2).is_err(), "a sequence gap");
        assert!(index.push(2, stream, 3).is_err(), "a version gap");
        assert!(index.push(2, stream, 1).is_err(), "a version again");
        index.push(2, stream, 2).expect("the next event");
    }

    #[test]
    fn damaged_rows_rejected() {
        let stream = Sid::generate(SidKind::Account);
        let rows = filled(&[stream, stream]).unsaved_rows();
        let (key, value) = &rows[0];

        let mut flipped = value.clone();
        flipped[7] ^= 1;
        assert!(StreamIndex::default().load_row(key, &flipped).is_err(), "a flipped bit");
        let short = &value[..value.len() - 1];
        assert!(StreamIndex::default().load_row(key, short).is_err(), "a truncated row");
        let later = 2u64.to_be_bytes();
        assert!(StreamIndex::default().load_row(&later, value).is_err(), "a row after a gap");
        assert!(StreamIndex::default().load_row(&key[..7], value).is_err(), "a short key");
    }
}
