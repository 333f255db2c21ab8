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
    /// A stored value that does not split into header and body is a break
    /// at its sequence number; every other store error is unreadable storage.
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
