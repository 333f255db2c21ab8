//! Reading the log in sequence order while checking its hash chain: every
//! sequence number follows the one before, every `prev_hash` is the hash
//! of the event before (zero before the first), and every hash is
//! `SHA-256(prev_hash ‖ body)` over the stored body bytes.

use crate::store::{ChainHead, RawEvent, RawEventIter, StoreError, GENESIS_HASH};

/// The first place where the log breaks a rule, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq}: {reason}")]
pub struct Break {
    pub seq: u64,
    pub reason: String,
}

impl Break {
    pub fn new(seq: u64, reason: impl Into<String>) -> Break {
        Break { seq, reason: reason.into() }
    }
}

/// Why a scan stopped: a break in the log, or storage that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Break(#[from] Break),
    #[error("failed to read the event log: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ScanError {
    /// Classifies a store error. A stored value that does not split into
    /// header and body is a break at its sequence number. Every other store
    /// error is unreadable storage.
    fn from(error: StoreError) -> ScanError {
        match error {
            StoreError::Corrupt { seq, reason } => ScanError::Break(Break { seq, reason }),
            other => ScanError::Store(other),
        }
    }
}

/// Iterates raw events from the first, checking the chain before yielding
/// each. After the last item, [`ChainReader::check_end`] checks that the
/// log reached its recorded head.
pub struct ChainReader<'a> {
    events: RawEventIter<'a>,
    expected_seq: u64,
    prev_hash: [u8; 32],
    stopped: bool,
}

impl<'a> ChainReader<'a> {
    /// Reads `events`, which must start at sequence 1.
    pub fn from_start(events: RawEventIter<'a>) -> ChainReader<'a> {
        ChainReader { events, expected_seq: 1, prev_hash: GENESIS_HASH, stopped: false }
    }

    /// Checks that the scan ended at the head recorded in the log's metadata.
    pub fn check_end(&self, head: ChainHead) -> Result<(), Break> {
        let last = self.expected_seq - 1;
        if last < head.seq {
            let reason = format!("missing: the log ends at event {last}, its head is {}", head.seq);
            return Err(Break::new(last + 1, reason));
        }
        if last > head.seq {
            let reason = format!("present beyond the log's recorded head {}", head.seq);
            return Err(Break::new(head.seq + 1, reason));
        }
        if self.prev_hash != head.hash {
            return Err(Break::new(last, "its hash differs from the head recorded in the log"));
        }
        Ok(())
    }

    fn gap(&self, found: u64) -> Break {
        let reason = format!("missing: event {found} follows event {}", self.expected_seq - 1);
        Break::new(self.expected_seq, reason)
    }

    fn check(&mut self, raw: &RawEvent) -> Result<(), Break> {
        if raw.seq != self.expected_seq {
            return Err(self.gap(raw.seq));
        }
        if raw.prev_hash != self.prev_hash {
            let reason = format!(
                "prev_hash {} is not the hash of the event before ({})",
                hex::encode(raw.prev_hash),
                hex::encode(self.prev_hash)
            );
            return Err(Break::new(raw.seq, reason));
        }
        if !raw.hash_is_valid() {
            let reason = format!(
                "stored hash {} does not match SHA-256(prev_hash ‖ body); the body was altered",
                hex::encode(raw.hash)
            );
            return Err(Break::new(raw.seq, reason));
        }
        self.expected_seq += 1;
        self.prev_hash = raw.hash;
        Ok(())
    }
}

impl Iterator for ChainReader<'_> {
    type Item = Result<RawEvent, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let result = match self.events.next()? {
            Ok(raw) => self.check(&raw).map(|()| raw).map_err(ScanError::from),
            Err(StoreError::Corrupt { seq, .. }) if seq > self.expected_seq => {
                Err(ScanError::Break(self.gap(seq)))
            }
            Err(error) => Err(ScanError::from(error)),
        };
        self.stopped = result.is_err();
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain_hash;

    /// Builds a chain of `count` events with bodies `b"1"`, `b"2"`, ….
    fn chain(count: u64) -> Vec<RawEvent> {
        let mut prev_hash = GENESIS_HASH;
        let mut events = Vec::new();
        for seq in 1..=count {
            let body = seq.to_string().into_bytes();
            let hash = chain_hash(&prev_hash, &body);
            events.push(RawEvent { seq, prev_hash, hash, body: body.into() });
            prev_hash = hash;
        }
        events
    }

    fn first_break(events: Vec<RawEvent>) -> Option<Break> {
        let iter: RawEventIter<'static> = Box::new(events.into_iter().map(Ok));
        ChainReader::from_start(iter).find_map(|item| match item {
            Err(ScanError::Break(found)) => Some(found),
            _ => None,
        })
    }

    #[test]
    fn intact_chain_reaches_head() {
        let events = chain(3);
        let head = ChainHead { seq: 3, hash: events[2].hash };
        let iter: RawEventIter<'static> = Box::new(events.into_iter().map(Ok));
        let mut reader = ChainReader::from_start(iter);
        assert_eq!(reader.by_ref().filter(Result::is_ok).count(), 3, "every event passes");
        assert_eq!(reader.check_end(head), Ok(()), "the scan ends at the head");
        let later = ChainHead { seq: 4, hash: head.hash };
        assert_eq!(reader.check_end(later).map_err(|found| found.seq), Err(4), "missing head");
    }

    #[test]
    fn altered_body_breaks_at_its_event() {
        let mut events = chain(3);
        events[1].body = b"two".to_vec().into();
        let found = first_break(events).expect("a break");
        assert_eq!(found.seq, 2, "the altered event");
        assert!(found.reason.contains("SHA-256"), "names the hash: {}", found.reason);
    }

    #[test]
    fn relinked_event_breaks_at_its_event() {
        let mut events = chain(3);
        events[2].prev_hash = [7; 32];
        events[2].hash = chain_hash(&events[2].prev_hash, &events[2].body);
        let found = first_break(events).expect("a break");
        assert_eq!(found.seq, 3, "the relinked event");
        assert!(found.reason.contains("prev_hash"), "names the link: {}", found.reason);
    }

    #[test]
    fn removed_event_is_a_gap() {
        let mut events = chain(4);
        events.remove(1);
        let found = first_break(events).expect("a break");
        assert_eq!(found.seq, 2, "the first missing sequence number");
        assert!(found.reason.starts_with("missing"), "says missing: {}", found.reason);
    }
}
