//! Repair at open: removing what sled kept of an unfinished batch, and
//! redoing the journaled batches that sled lost in a crash.

use std::collections::HashMap;

use crate::domain::ids::Sid;
use crate::store::envelope::RawEvent;
use crate::store::journal::{JournalEvent, Recovered};
use crate::store::{ChainHead, StoreError, StoreResult};

use super::{read_u64, seq_key, EventRow, SledStore};

impl SledStore {
    /// Removes the events past the chain head in `meta`. A write inserts
    /// the chain head after its events, so such events belong to a batch
    /// whose write did not finish before a crash. If that batch was made
    /// durable, its journal record brings it back in `redo`; if not, it was
    /// never acknowledged. The events must chain from one to the next, and
    /// the first from the head when it directly follows it: anything else
    /// means the log was altered, and is `Damaged`.
    ///
    /// They are removed newest first. sled keeps a prefix of the removals
    /// after a crash, so an interrupted removal leaves a run that still
    /// starts right after the head. An oldest-first removal, as older
    /// builds did it, can leave a run that starts later. Such a run is
    /// removed all the same.
    pub(super) fn remove_unfinished(&self) -> StoreResult<()> {
        let head = self.state().written;
        let mut previous: Option<ChainHead> = None;
        let mut unfinished = Vec::new();
        for entry in self.events.range(seq_key(head.seq + 1)..) {
            let (key, value) = entry?;
            let seq = read_u64(&key)
                .ok_or_else(|| StoreError::Damaged("event key is not 8 bytes".into()))?;
            let raw = RawEvent::from_sled(seq, &value)?;
            let chains = match previous {
                None if seq == head.seq + 1 => raw.prev_hash == head.hash,
                None => true,
                Some(previous) => seq == previous.seq + 1 && raw.prev_hash == previous.hash,
            };
            if !chains || !raw.hash_is_valid() {
                return Err(StoreError::Damaged(format!(
                    "event {seq} lies past the chain head {} in meta but does not continue the \
                     chain from it. The data directory was altered; restore it from a backup",
                    head.seq
                )));
            }
            unfinished.push((key, seq));
            previous = Some(ChainHead { seq, hash: raw.hash });
        }
        for (key, _) in unfinished.iter().rev() {
            self.events.remove(key)?;
        }
        if let (Some((_, first)), Some(last)) = (unfinished.first(), previous) {
            tracing::info!(
                events = unfinished.len(),
                from = first,
                to = last.seq,
                "removed the events of a write that a crash interrupted"
            );
        }
        Ok(())
    }

    /// Writes again, one journal record at a time, every journaled event
    /// past the chain head, after checking that it continues the chain:
    /// the next sequence number, the head's hash as its `prev_hash`, a
    /// valid hash, and its stream's next version. Events at or below the
    /// chain head are in sled already, since sled recovers a prefix of the
    /// inserts, and are skipped.
    pub(super) fn redo(&self, recovered: Recovered) -> StoreResult<()> {
        let head = self.state().written.seq;
        if !recovered.records.iter().flatten().any(|event| event.seq > head) {
            tracing::debug!(generation = recovered.generation, "no journaled events to redo");
            return Ok(());
        }
        if let Some(reason) = self.index().broken() {
            return Err(StoreError::Damaged(reason.to_string()));
        }
        let mut state = self.state();
        let sled_head = state.written;
        let mut redone_events = 0;
        let mut redone_batches = 0;
        for record in &recovered.records {
            let mut batch_versions: HashMap<Sid, u64> = HashMap::new();
            let mut streams: Vec<(u64, Sid, u64)> = Vec::new();
            let mut rows: Vec<EventRow> = Vec::new();
            let mut head = state.written;
            for event in record.iter().filter(|event| event.seq > sled_head.seq) {
                head = self.check_redo(&mut batch_versions, head, event).map_err(|reason| {
                    StoreError::Damaged(format!(
                        "journal generation {} contains event {}, which {reason}. The journal \
                             files do not belong to this log, or sled lost events it had made \
                             durable. Restore the data directory from a backup",
                        recovered.generation, event.seq
                    ))
                })?;
                streams.push((event.seq, event.stream, event.version));
                rows.push((seq_key(event.seq), event.value.clone()));
            }
            if rows.is_empty() {
                continue;
            }
            self.commit_rows(streams, &rows, head)?;
            redone_events += rows.len();
            redone_batches += 1;
            state.written = head;
            state.durable = head;
        }

        if redone_events > 0 {
            tracing::info!(
                events = redone_events,
                batches = redone_batches,
                from = sled_head.seq + 1,
                to = state.written.seq,
                generation = recovered.generation,
                "redid journaled events that sled lost"
            );
        } else {
            tracing::debug!(generation = recovered.generation, "no journaled events to redo");
        }
        Ok(())
    }

    /// Checks that a journaled event continues the chain after `head` and
    /// returns the head it leads to, or why it does not continue it.
    fn check_redo(
        &self,
        batch_versions: &mut HashMap<Sid, u64>,
        head: ChainHead,
        event: &JournalEvent,
    ) -> Result<ChainHead, String> {
        if event.seq <= head.seq {
            return Err(format!("comes again after event {}", head.seq));
        }
        if event.seq > head.seq + 1 {
            return Err(format!(
                "leaves a gap after the log's last event {}: events {} to {} are in neither \
                 sled nor the journal",
                head.seq,
                head.seq + 1,
                event.seq - 1
            ));
        }
        let raw =
            RawEvent::from_stored(event.seq, &event.value).map_err(|error| error.to_string())?;
        if raw.prev_hash != head.hash {
            return Err(format!(
                "does not chain: its prev_hash is not the hash of event {}",
                head.seq
            ));
        }
        if !raw.hash_is_valid() {
            return Err("does not match its SHA-256".into());
        }
        let recorded = raw.decode().map_err(|error| error.to_string())?;
        if recorded.stream != event.stream || recorded.version != event.version {
            return Err(format!(
                "is stored as version {} of {} but journaled as version {} of {}",
                recorded.version, recorded.stream, event.version, event.stream
            ));
        }
        let current = match batch_versions.get(&event.stream) {
            Some(version) => *version,
            None => self.index().version(event.stream),
        };
        if event.version != current + 1 {
            return Err(format!(
                "is version {} of stream {}, but the stream is at version {current}",
                event.version, event.stream
            ));
        }
        batch_versions.insert(event.stream, event.version);
        Ok(ChainHead { seq: event.seq, hash: raw.hash })
    }
}
