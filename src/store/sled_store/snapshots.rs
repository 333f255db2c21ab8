//! Reading projection snapshots back from the `snapshots` tree.

use std::panic::{catch_unwind, AssertUnwindSafe};

use sha2::{Digest, Sha256};

use super::{read_u64, SledStore, SNAPSHOT_HEADER_INDEX};
use crate::store::{StoreResult, StoredSnapshot};

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
