//! Projection snapshots, one file each in the log's `snapshots` directory:
//! writing one as it is encoded, dropping old ones, and reading them back.
//!
//! A snapshot file is `SNAPSHOT_MAGIC`, the snapshot's bytes, and a trailer
//! of their length (u64 big-endian) and SHA-256. It is written under a
//! `.partial` name, synced, and renamed to `SEQ.snapshot` (the sequence
//! number in 20 digits), so a crash never leaves a complete name on an
//! incomplete file. Snapshots used to be chunks in a sled tree. sled
//! reclaimed their space slowly, and after SIGKILL tests the blob files
//! of replaced chunk nodes were still on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{SledStore, SNAPSHOTS_KEPT};
use crate::store::{SnapshotEncoder, StoreResult, StoredSnapshot};

/// The first bytes of every snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"slsnap01";
/// The length and SHA-256 after a snapshot's bytes.
const TRAILER_BYTES: usize = 8 + 32;
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const PARTIAL_SUFFIX: &str = ".snapshot.partial";
/// Write buffer of a snapshot file: the encoder writes a few bytes at a
/// time.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Returns the directory of the snapshot files inside the log directory.
pub(super) fn snapshot_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("snapshots")
}

fn snapshot_name(seq: u64) -> String {
    format!("{seq:020}{SNAPSHOT_SUFFIX}")
}

/// Parses the sequence number out of a complete snapshot's file name.
fn snapshot_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Hashes and counts the bytes on their way to the file.
struct HashingWriter<W> {
    out: W,
    digest: Sha256,
    length: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.digest.update(&bytes[..written]);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl SledStore {
    /// Writes snapshot `seq` to its file and makes it durable; returns the
    /// snapshot's length. A failure leaves at most a `.partial` file, which
    /// the next save removes, and any earlier snapshot of the same `seq`.
    pub(super) fn write_snapshot_file(
        &self,
        seq: u64,
        encode: &mut SnapshotEncoder<'_>,
    ) -> StoreResult<u64> {
        let dir = snapshot_dir(&self.path);
        std::fs::create_dir_all(&dir)?;
        let partial = dir.join(format!("{seq:020}{PARTIAL_SUFFIX}"));
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&partial)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        out.write_all(SNAPSHOT_MAGIC)?;
        let mut hashing = HashingWriter { out, digest: Sha256::new(), length: 0 };
        encode(&mut hashing)?;
        let HashingWriter { mut out, digest, length } = hashing;
        out.write_all(&length.to_be_bytes())?;
        out.write_all(&digest.finalize())?;
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&partial, dir.join(snapshot_name(seq)))?;
        File::open(&dir)?.sync_all()?;
        Ok(length)
    }

    /// Removes every snapshot file but the newest `SNAPSHOTS_KEPT`, and the
    /// `.partial` files of saves that failed or crashed. Other files in the
    /// directory are left alone. The removals need no sync: if a crash
    /// undoes them, the next save repeats them.
    pub(super) fn drop_old_snapshots(&self) -> StoreResult<()> {
        let dir = snapshot_dir(&self.path);
        for (_, path) in self.snapshot_files()?.into_iter().skip(SNAPSHOTS_KEPT) {
            remove_if_present(&path)?;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX) {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Lists the complete snapshot files by sequence number, newest first.
    pub(super) fn snapshot_files(&self) -> StoreResult<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(snapshot_dir(&self.path)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(seq) = snapshot_seq(&entry.file_name().to_string_lossy()) {
                files.push((seq, entry.path()));
            }
        }
        files.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(files)
    }

    /// Reads one snapshot file, or logs why it is unreadable and returns
    /// `None`.
    pub(super) fn load_snapshot(&self, seq: u64, path: &Path) -> Option<StoredSnapshot> {
        match read_snapshot_file(path) {
            Ok(bytes) => Some(StoredSnapshot { seq, bytes }),
            Err(reason) => {
                let file = path.display();
                tracing::warn!(seq, %file, %reason, "skipping an unreadable projection snapshot");
                None
            }
        }
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Reads a snapshot file and checks its magic, length and SHA-256.
fn read_snapshot_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut file = File::open(path).map_err(|error| error.to_string())?;
    let size = file.metadata().map_err(|error| error.to_string())?.len();
    let framing = (SNAPSHOT_MAGIC.len() + TRAILER_BYTES) as u64;
    if size < framing {
        return Err(format!("the file is {size} bytes, shorter than its framing"));
    }
    let mut magic = [0; SNAPSHOT_MAGIC.len()];
    file.read_exact(&mut magic).map_err(|error| error.to_string())?;
    if &magic != SNAPSHOT_MAGIC {
        return Err("the file does not start with the snapshot magic".into());
    }
    let length = size - framing;
    let mut bytes = vec![0; usize::try_from(length).map_err(|error| error.to_string())?];
    file.read_exact(&mut bytes).map_err(|error| error.to_string())?;
    let mut trailer = [0; TRAILER_BYTES];
    file.read_exact(&mut trailer).map_err(|error| error.to_string())?;
    let stated = u64::from_be_bytes(trailer[..8].try_into().expect("8 bytes"));
    if stated != length {
        return Err(format!("the snapshot is {length} bytes, its trailer says {stated}"));
    }
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if digest[..] != trailer[8..] {
        return Err("the snapshot's SHA-256 does not match its trailer".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;

    /// Bytes that differ from one position to the next.
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

    fn stored_seqs(store: &SledStore) -> Vec<u64> {
        stored(store).into_iter().map(|(seq, _)| seq).collect()
    }

    /// Names of the files in the snapshot directory, sorted.
    fn file_names(store: &SledStore) -> Vec<String> {
        let entries = std::fs::read_dir(snapshot_dir(&store.path)).expect("list the directory");
        let mut names: Vec<String> = entries
            .map(|entry| entry.expect("read an entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn open_store(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open(dir.path()).expect("open the log")
    }

    #[test]
    fn saved_snapshot_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        let bytes = sample(3 * WRITE_BUFFER_BYTES + 123);
        let length = save(&store, 7, &bytes).expect("save the snapshot");
        assert_eq!(length, bytes.len() as u64, "returned length");
        assert_eq!(stored(&store), vec![(7, bytes)], "the snapshot reads back");
        let name = "00000000000000000007.snapshot".to_string();
        assert_eq!(file_names(&store), vec![name], "one file, named by its sequence");
    }

    #[test]
    fn empty_snapshot_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        assert_eq!(save(&store, 1, &[]).expect("save an empty snapshot"), 0, "length");
        assert_eq!(stored(&store), vec![(1, Vec::new())], "reads back empty");
    }

    #[test]
    fn older_snapshots_dropped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        for seq in 1..=4 {
            save(&store, seq, &sample(40_000 + seq as usize)).expect("save a snapshot");
        }
        assert_eq!(stored_seqs(&store), vec![4, 3], "the newest two are listed");
        assert_eq!(file_names(&store).len(), 2, "the older files are removed");
    }

    #[test]
    fn failed_encoding_keeps_older() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        save(&store, 2, &sample(1000)).expect("save a snapshot");
        let failed = store.save_snapshot(5, &mut |out| {
            out.write_all(&sample(2 * WRITE_BUFFER_BYTES))?;
            Err(std::io::Error::other("encoding stopped"))
        });
        assert!(failed.is_err(), "the save reports the failure");
        assert_eq!(stored_seqs(&store), vec![2], "no snapshot at 5");
        let partial = "00000000000000000005.snapshot.partial".to_string();
        assert!(file_names(&store).contains(&partial), "the failed save leaves its partial file");

        save(&store, 6, &sample(1000)).expect("save a snapshot");
        assert_eq!(stored_seqs(&store), vec![6, 2], "the next save is listed");
        assert!(!file_names(&store).contains(&partial), "the next save removes the partial file");
    }

    #[test]
    fn same_sequence_replaced() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        save(&store, 3, &sample(50_000)).expect("save a snapshot");
        let shorter = sample(500);
        save(&store, 3, &shorter).expect("save it again");
        assert_eq!(stored(&store), vec![(3, shorter)], "the second save replaces the first");
    }

    #[test]
    fn damaged_files_skipped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        for seq in [10, 20] {
            save(&store, seq, &sample(5000)).expect("save a snapshot");
        }
        let newest = snapshot_dir(&store.path).join(snapshot_name(20));
        let mut bytes = std::fs::read(&newest).expect("read the file");
        bytes[100] ^= 0xff;
        std::fs::write(&newest, &bytes).expect("write the altered file");
        assert_eq!(stored_seqs(&store), vec![10], "an altered byte fails the SHA-256 check");

        let oldest = snapshot_dir(&store.path).join(snapshot_name(10));
        let length = std::fs::metadata(&oldest).expect("file size").len();
        let file = OpenOptions::new().write(true).open(&oldest).expect("open the file");
        file.set_len(length - 1).expect("truncate the file");
        assert!(stored_seqs(&store).is_empty(), "a truncated file is skipped");
    }

    #[test]
    fn other_files_left_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(&dir);
        save(&store, 1, &sample(100)).expect("save a snapshot");
        let notes = snapshot_dir(&store.path).join("notes.txt");
        std::fs::write(&notes, b"kept").expect("write an unrelated file");
        for seq in 2..=4 {
            save(&store, seq, &sample(100)).expect("save a snapshot");
        }
        assert!(notes.exists(), "a file of another name is not removed");
        assert_eq!(stored_seqs(&store), vec![4, 3], "and not listed");
    }

    #[test]
    fn names_parsed_strictly() {
        assert_eq!(snapshot_seq("00000000000000000042.snapshot"), Some(42), "a snapshot");
        assert_eq!(snapshot_seq("42.snapshot"), None, "too few digits");
        assert_eq!(snapshot_seq("00000000000000000042.snapshot.partial"), None, "partial");
        assert_eq!(snapshot_seq("0000000000000000004x.snapshot"), None, "not a digit");
    }
}
