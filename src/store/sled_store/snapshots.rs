//! Projection snapshots in the `snapshots` tree: writing one chunk by
//! chunk as it is encoded, dropping old ones, and reading them back.

use std::io::{BufWriter, Write};
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sha2::{Digest, Sha256};

use super::{read_u64, SledStore, SNAPSHOTS_KEPT, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_HEADER_INDEX};
use crate::store::{SnapshotEncoder, StoreError, StoreResult, StoredSnapshot};

/// Snapshot bytes written between two flushes of sled. A journal switch
/// flushes sled while the writer waits. Without these flushes, that switch
/// could have to write out most of a snapshot first (145 MiB at 1,000,000
/// postings), and sled would keep all of it in memory until then.
const SNAPSHOT_FLUSH_BYTES: u64 = 8 * 1024 * 1024;

impl SledStore {
    /// Reads one snapshot, or logs why it is unreadable and returns `None`.
    /// sled may panic on a corrupt page, which counts as unreadable.
    pub(super) fn load_snapshot(&self, seq: u64, header: &[u8]) -> Option<StoredSnapshot> {
        let read = catch_unwind(AssertUnwindSafe(|| self.read_snapshot(seq, header)))
            .unwrap_or_else(|_| Err("sled panicked while reading it".into()));
        match read {
            Ok(bytes) => Some(StoredSnapshot { seq, bytes }),
            Err(reason) => {
                tracing::warn!(seq, %reason, "skipping an unreadable projection snapshot");
                None
            }
        }
    }
}

impl SledStore {
    /// Stores the bytes `encode` writes as the chunks of snapshot `seq` and
    /// returns its header (chunk count as u32 BE, length as u64 BE, SHA-256)
    /// and its length.
    ///
    /// Each chunk is a plain insert. A sled batch of every chunk would hold
    /// sled's write lock, and with it the ledger writer, while the whole
    /// snapshot is applied: over a second at 1,000,000 postings.
    pub(super) fn write_snapshot_chunks(
        &self,
        seq: u64,
        encode: &mut SnapshotEncoder<'_>,
    ) -> StoreResult<(Vec<u8>, u64)> {
        // A snapshot at the same sequence is replaced whole, header first.
        self.snapshots.remove(snapshot_key(seq, SNAPSHOT_HEADER_INDEX))?;
        for entry in self.snapshots.range(snapshot_key(seq, 0)..=snapshot_key(seq, u32::MAX)) {
            let (key, _) = entry?;
            self.snapshots.remove(key)?;
        }

        let mut chunks = ChunkWriter {
            store: self,
            seq,
            pending: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES),
            next_index: 0,
            length: 0,
            unflushed: 0,
            digest: Sha256::new(),
            failure: None,
        };
        // The encoder may write a few bytes at a time.
        let mut buffered = BufWriter::with_capacity(SNAPSHOT_CHUNK_BYTES, &mut chunks);
        let encoded = encode(&mut buffered).and_then(|()| buffered.flush());
        drop(buffered);
        let encoded = encoded.and_then(|()| chunks.flush());
        if let Some(failure) = chunks.failure.take() {
            return Err(failure);
        }
        encoded?;
        let mut header = Vec::with_capacity(44);
        header.extend_from_slice(&chunks.next_index.to_be_bytes());
        header.extend_from_slice(&chunks.length.to_be_bytes());
        header.extend_from_slice(&chunks.digest.finalize());
        Ok((header, chunks.length))
    }

    /// Removes every snapshot but the newest `SNAPSHOTS_KEPT`, and chunks
    /// that belong to no header (left by a save that failed or crashed).
    /// Headers go first, so that an interrupted removal leaves chunks
    /// without a header, never a header without its chunks. The removals
    /// need no sync: if a crash undoes them, the next save repeats them.
    pub(super) fn drop_old_snapshots(&self) -> StoreResult<()> {
        let headers = self.snapshot_headers()?;
        for (seq, _) in headers.iter().skip(SNAPSHOTS_KEPT) {
            self.snapshots.remove(snapshot_key(*seq, SNAPSHOT_HEADER_INDEX))?;
        }
        let mut kept: Vec<u64> = headers.iter().take(SNAPSHOTS_KEPT).map(|(seq, _)| *seq).collect();
        kept.sort_unstable();

        // Remove every key outside the kept snapshots' key ranges.
        let mut outside = Vec::with_capacity(kept.len() + 1);
        let mut lower = Bound::Unbounded;
        for seq in kept {
            outside.push((lower, Bound::Excluded(snapshot_key(seq, 0))));
            lower = Bound::Excluded(snapshot_key(seq, SNAPSHOT_HEADER_INDEX));
        }
        outside.push((lower, Bound::Unbounded));
        for range in outside {
            for entry in self.snapshots.range(range) {
                let (key, _) = entry?;
                self.snapshots.remove(key)?;
            }
        }
        Ok(())
    }
}

/// The `io::Write` that `write_snapshot_chunks` hands the encoder: it cuts
/// the bytes into `SNAPSHOT_CHUNK_BYTES` chunks, inserts each one, and
/// keeps the length and SHA-256 for the header.
struct ChunkWriter<'a> {
    store: &'a SledStore,
    seq: u64,
    pending: Vec<u8>,
    next_index: u32,
    length: u64,
    unflushed: u64,
    digest: Sha256,
    /// The store error behind a failed write, which `io::Error` would
    /// otherwise reduce to text.
    failure: Option<StoreError>,
}

impl ChunkWriter<'_> {
    fn insert_pending(&mut self) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.next_index == SNAPSHOT_HEADER_INDEX {
            return Err(StoreError::Io(std::io::Error::other("a snapshot has too many chunks")));
        }
        let key = snapshot_key(self.seq, self.next_index);
        self.store.snapshots.insert(key, self.pending.as_slice())?;
        self.next_index += 1;
        self.unflushed += self.pending.len() as u64;
        self.pending.clear();
        if self.unflushed >= SNAPSHOT_FLUSH_BYTES {
            self.store.db.flush()?;
            self.unflushed = 0;
        }
        Ok(())
    }

    fn fail(&mut self, error: StoreError) -> std::io::Error {
        let io_error = std::io::Error::other(error.to_string());
        self.failure = Some(error);
        io_error
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let taken = bytes.len().min(SNAPSHOT_CHUNK_BYTES - self.pending.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        self.digest.update(&bytes[..taken]);
        self.length += taken as u64;
        if self.pending.len() == SNAPSHOT_CHUNK_BYTES {
            if let Err(error) = self.insert_pending() {
                return Err(self.fail(error));
            }
        }
        Ok(taken)
    }

    /// Inserts the last, partly filled chunk.
    fn flush(&mut self) -> std::io::Result<()> {
        match self.insert_pending() {
            Ok(()) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }
}

pub(super) fn snapshot_key(seq: u64, index: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

impl SledStore {
    /// Snapshot headers, newest first.
    ///
    /// A header has the largest key of its snapshot, so walking backwards
    /// meets it first and then skips the snapshot's chunks with one range
    /// lookup. Reading every chunk here read a 300 MiB snapshot once more
    /// on every start and after every save.
    pub(super) fn snapshot_headers(&self) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        let mut headers = Vec::new();
        let mut below: Option<Vec<u8>> = None;
        loop {
            let entry = match &below {
                None => self.snapshots.last()?,
                Some(bound) => self.snapshots.range(..bound.as_slice()).next_back().transpose()?,
            };
            let Some((key, value)) = entry else {
                return Ok(headers);
            };
            if key.len() != 12 {
                below = Some(key.to_vec());
                continue;
            }
            let seq = read_u64(&key).expect("snapshot keys are 12 bytes");
            if key[8..] == SNAPSHOT_HEADER_INDEX.to_be_bytes() {
                headers.push((seq, value.to_vec()));
            }
            // Chunks without a header belong to no snapshot and are skipped too.
            below = Some(snapshot_key(seq, 0).to_vec());
        }
    }

    /// Reassembles one snapshot and checks its length and SHA-256.
    fn read_snapshot(&self, seq: u64, header: &[u8]) -> Result<Vec<u8>, String> {
        if header.len() != 44 {
            return Err("snapshot header is not 44 bytes".into());
        }
        let chunk_count = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let length = read_u64(&header[4..12]).expect("8 bytes");
        let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
        for index in 0..chunk_count {
            let chunk = self
                .snapshots
                .get(snapshot_key(seq, index))
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("snapshot chunk {index} is missing"))?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != length {
            return Err(format!("snapshot is {} bytes, header says {length}", bytes.len()));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest[..] != header[12..] {
            return Err("snapshot SHA-256 does not match its header".into());
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{EventStore, SledStore, StoreResult};
    use sha2::Digest;

    /// Bytes of several chunks and a partial one, none of them alike.
    fn sample(length: usize) -> Vec<u8> {
        (0..length).map(|index| (index * 7 + index / 251) as u8).collect()
    }

    /// Saves `bytes` as snapshot `seq`, written in pieces of 1,000 bytes.
    fn save(store: &SledStore, seq: u64, bytes: &[u8]) -> StoreResult<u64> {
        store.save_snapshot(seq, &mut |out| {
            bytes.chunks(1000).try_for_each(|piece| out.write_all(piece))
        })
    }

    fn stored(store: &SledStore) -> Vec<(u64, Vec<u8>)> {
        let snapshots = store.snapshots().expect("list snapshots");
        snapshots.map(|snapshot| (snapshot.seq, snapshot.bytes)).collect()
    }

    /// Sequence numbers of every key in the `snapshots` tree.
    fn key_seqs(store: &SledStore) -> Vec<u64> {
        let mut seqs: Vec<u64> = store
            .snapshots
            .iter()
            .keys()
            .map(|key| super::read_u64(&key.expect("read a key")).expect("12-byte key"))
            .collect();
        seqs.dedup();
        seqs
    }

    #[test]
    fn saved_snapshot_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let bytes = sample(super::SNAPSHOT_CHUNK_BYTES * 3 + 123);
        let length = save(&store, 7, &bytes).expect("save the snapshot");
        assert_eq!(length, bytes.len() as u64, "returned length");
        assert_eq!(stored(&store), vec![(7, bytes)], "the snapshot reads back");
    }

    #[test]
    fn older_snapshots_dropped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        for seq in 1..=4 {
            save(&store, seq, &sample(40_000 + seq as usize)).expect("save a snapshot");
        }
        let seqs: Vec<u64> = stored(&store).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, vec![4, 3], "the newest two are kept");
        assert_eq!(key_seqs(&store), vec![3, 4], "no chunk of a dropped snapshot is left");
    }

    #[test]
    fn failed_encoding_stores_nothing() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        save(&store, 2, &sample(1000)).expect("save a snapshot");
        let failed = store.save_snapshot(5, &mut |out| {
            out.write_all(&sample(super::SNAPSHOT_CHUNK_BYTES * 2))?;
            Err(std::io::Error::other("encoding stopped"))
        });
        assert!(failed.is_err(), "the save reports the failure");
        let seqs: Vec<u64> = stored(&store).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, vec![2], "no snapshot at 5");

        // The next save removes the chunks the failed one left.
        save(&store, 6, &sample(1000)).expect("save a snapshot");
        assert_eq!(key_seqs(&store), vec![2, 6], "leftover chunks removed");
    }

    #[test]
    fn same_sequence_replaced() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        save(&store, 3, &sample(super::SNAPSHOT_CHUNK_BYTES * 4)).expect("save a snapshot");
        let shorter = sample(500);
        save(&store, 3, &shorter).expect("save it again");
        assert_eq!(stored(&store), vec![(3, shorter)], "the second save replaces the first");
        let keys = store.snapshots.scan_prefix(3u64.to_be_bytes()).count();
        assert_eq!(keys, 2, "one chunk and the header");
    }

    #[test]
    fn exact_chunk_multiple() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let bytes = sample(super::SNAPSHOT_CHUNK_BYTES * 2);
        save(&store, 4, &bytes).expect("save the snapshot");
        assert_eq!(stored(&store), vec![(4, bytes)], "the snapshot reads back");
        let keys = store.snapshots.scan_prefix(4u64.to_be_bytes()).count();
        assert_eq!(keys, 3, "two full chunks and the header, no empty chunk");
    }

    #[test]
    fn empty_output_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let length = store.save_snapshot(9, &mut |_| Ok(())).expect("save the snapshot");
        assert_eq!(length, 0, "returned length");
        assert_eq!(stored(&store), vec![(9, Vec::new())], "an empty snapshot reads back");
        assert_eq!(store.snapshots.len(), 1, "the header alone");
    }

    #[test]
    fn failed_resave_keeps_older() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let older = sample(30_000);
        save(&store, 2, &older).expect("save a snapshot");
        save(&store, 3, &sample(50_000)).expect("save a snapshot");
        let failed = store.save_snapshot(3, &mut |out| {
            out.write_all(&sample(super::SNAPSHOT_CHUNK_BYTES + 10))?;
            Err(std::io::Error::other("encoding stopped"))
        });
        assert!(failed.is_err(), "the save reports the failure");
        assert_eq!(stored(&store), vec![(2, older)], "the older snapshot still reads back");
    }

    #[test]
    fn store_error_surfaces() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let mut chunks = super::ChunkWriter {
            store: &store,
            seq: 1,
            pending: Vec::new(),
            next_index: super::SNAPSHOT_HEADER_INDEX - 1,
            length: 0,
            unflushed: 0,
            digest: sha2::Sha256::new(),
            failure: None,
        };
        let bytes = sample(super::SNAPSHOT_CHUNK_BYTES * 3);
        let written = std::io::Write::write_all(&mut chunks, &bytes);
        assert!(written.is_err(), "the write fails once the chunk indexes run out");
        let failure = chunks.failure.take().map(|error| error.to_string());
        assert!(
            failure.is_some_and(|text| text.contains("too many chunks")),
            "the store error is kept for the caller"
        );
        let keys = store.snapshots.len();
        assert_eq!(keys, 1, "only the last index below the header's was used");
    }

    #[test]
    fn interrupted_removal_cleaned() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        save(&store, 5, &sample(1000)).expect("save a snapshot");
        save(&store, 6, &sample(1000)).expect("save a snapshot");
        // Chunks of snapshot 1 without their header, as a removal that a
        // crash interrupted after the header leaves them.
        for index in 0..3 {
            let key = super::snapshot_key(1, index);
            store.snapshots.insert(key, sample(100)).expect("insert a chunk");
        }
        let seqs: Vec<u64> = stored(&store).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, vec![6, 5], "chunks without a header are no snapshot");
        save(&store, 7, &sample(1000)).expect("save a snapshot");
        assert_eq!(key_seqs(&store), vec![6, 7], "the headerless chunks are removed");
    }

    #[test]
    fn missing_chunk_skipped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open the log");
        let older = sample(20_000);
        save(&store, 2, &older).expect("save a snapshot");
        save(&store, 3, &sample(super::SNAPSHOT_CHUNK_BYTES * 3)).expect("save a snapshot");
        store.snapshots.remove(super::snapshot_key(3, 1)).expect("remove a chunk");
        assert_eq!(stored(&store), vec![(2, older)], "the incomplete snapshot is skipped");
    }
}
