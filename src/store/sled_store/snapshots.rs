//! Projection snapshots as files in the log's `projection-snapshots`
//! directory, one per snapshot, named by its sequence number
//! (`00000000000001300001.snapshot`).
//!
//! A file is a header (`SNAPSHOT_MAGIC`, the sequence number, the hash of
//! the event at that number, the length and CRC-32 of the snapshot)
//! followed by the snapshot. The event's hash ties the snapshot to its log:
//! a start takes it only when the log's event at that number has the same
//! hash. It is encoded
//! straight into a file under a temporary name, so the whole encoding is
//! never in memory, then the header is filled in, the file synced and
//! renamed into place: a crash leaves no partial file under a snapshot's
//! name. Files are read without sled, so
//! a start can read and decode the newest while sled opens. Earlier builds
//! kept snapshots in sled's `snapshots` tree. There, reading and checking
//! the 145 MiB snapshot of `loadgen scale` took 0.3 to 0.4 s on a 2-core
//! VM and could not start before sled was open. From a file it takes about
//! 0.1 s.
//!
//! A start does not read the file whole (`SnapshotFile::open`): each
//! decode job reads its section and checksums it, and the pieces' CRC-32s
//! are combined and checked once every byte is read. That keeps the 145
//! MiB out of the start's peak memory. `SnapshotFile::read` reads and
//! checks a whole file, for `verify` and the older snapshots a start falls
//! back to.
//!
//! The CRC-32 detects damage, as it does for the journal's records. It
//! replaced a SHA-256, which took 0.11 s of that read and gave no more
//! protection against a deliberate change, because it sat in the same file.
//! A snapshot that passes the check is still checked against its log
//! (`recovery`).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::{
    outside_snapshot, SnapshotEncoder, SnapshotSource, StoreResult, StoredSnapshot,
};

/// The directory of the snapshot files, inside the log's directory. sled
/// 0.34.7 touches only its own `snap.*` files and `blobs` there.
const SNAPSHOT_DIR: &str = "projection-snapshots";
/// The file name extension of a snapshot. A file being written has
/// `TEMPORARY_SUFFIX` after it.
const SNAPSHOT_EXTENSION: &str = ".snapshot";
const TEMPORARY_SUFFIX: &str = ".tmp";
/// Digits of the sequence number in a file name, enough for any `u64`, so
/// that names sort as numbers do.
const SEQ_DIGITS: usize = 20;
/// Starts every snapshot file: "subledger projection snapshot", file
/// format 2. Format 1 had no event hash, and its files are skipped.
const SNAPSHOT_MAGIC: [u8; 8] = *b"SLPSNAP2";
/// Bytes of the header: the magic, the sequence number (u64 big-endian),
/// the event's hash, the length (u64 big-endian) and the CRC-32 of the
/// snapshot (u32 big-endian).
const HEADER_BYTES: usize = 8 + 8 + HASH_BYTES + 8 + 4;
const HASH_BYTES: usize = 32;
/// How many snapshots are kept; older ones are removed after a new one.
const SNAPSHOTS_KEPT: usize = 2;
/// Write buffer of a snapshot file, because the encoder writes a few bytes
/// at a time.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// A snapshot file in a log directory, read only when `open` or `read` is
/// called.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub seq: u64,
    path: PathBuf,
}

impl SnapshotFile {
    /// Lists the snapshot files in the log directory `log_dir`, newest
    /// first. A directory without any lists none.
    pub fn list(log_dir: &Path) -> StoreResult<Vec<SnapshotFile>> {
        let entries = match std::fs::read_dir(log_dir.join(SNAPSHOT_DIR)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(seq) = name.to_str().and_then(parse_file_name) {
                files.push(SnapshotFile { seq, path: entry.path() });
            }
        }
        files.sort_unstable_by_key(|file| std::cmp::Reverse(file.seq));
        Ok(files)
    }

    /// Reads the snapshot and checks its header, or logs why it is
    /// unreadable and returns `None`.
    pub fn read(&self) -> Option<StoredSnapshot> {
        match read_checked(&self.path, self.seq) {
            Ok((event_hash, bytes)) => Some(StoredSnapshot { seq: self.seq, event_hash, bytes }),
            Err(reason) => {
                warn_unreadable(self.seq, &self.path, &reason);
                None
            }
        }
    }
}

/// Returns the sequence number in a snapshot's file name, or `None` for
/// any other name.
fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_EXTENSION)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn file_name(seq: u64) -> String {
    format!("{seq:0width$}{SNAPSHOT_EXTENSION}", width = SEQ_DIGITS)
}

/// A snapshot file whose header is checked, open for reads by range
/// (`SnapshotSource`). Each read is checksummed as it is made, and
/// `check_crc` combines those checksums once a decoder has read every byte,
/// so a decoder need not hold the whole file in memory. Until `check_crc`
/// passes, the bytes read are unchecked, and a decoder must treat them as
/// untrusted.
#[derive(Debug)]
pub struct OpenedSnapshot {
    pub seq: u64,
    /// The hash of event `seq` when the snapshot was saved.
    pub event_hash: [u8; HASH_BYTES],
    file: File,
    path: PathBuf,
    length: u64,
    stored_crc: u32,
    /// The offset, length and CRC-32 state of every read so far.
    reads: Mutex<Vec<(u64, usize, crc32fast::Hasher)>>,
}

impl SnapshotFile {
    /// Opens the snapshot and checks its header, or logs why it is
    /// unreadable and returns `None`. The contents are read later, by
    /// range, and checked by `OpenedSnapshot::check_crc`.
    pub fn open(&self) -> Option<OpenedSnapshot> {
        match open_checked(&self.path, self.seq) {
            Ok(header) => Some(OpenedSnapshot {
                seq: self.seq,
                event_hash: header.event_hash,
                file: header.file,
                path: self.path.clone(),
                length: header.length,
                stored_crc: header.crc,
                reads: Mutex::new(Vec::new()),
            }),
            Err(reason) => {
                warn_unreadable(self.seq, &self.path, &reason);
                None
            }
        }
    }
}

impl OpenedSnapshot {
    /// Checks that the reads so far covered the snapshot exactly once and
    /// that their combined CRC-32 is the header's. Logs why not and returns
    /// `false` otherwise.
    pub fn check_crc(&self) -> bool {
        let reason = match self.combined_crc() {
            Ok(crc) if crc == self.stored_crc => return true,
            Ok(_) => "its CRC-32 does not match its header".to_string(),
            Err(reason) => reason,
        };
        warn_unreadable(self.seq, &self.path, &reason);
        false
    }

    /// Takes the reads so far and combines their CRC-32s in offset order,
    /// or returns which bytes they left unread or read more than once.
    fn combined_crc(&self) -> Result<u32, String> {
        let mut reads = std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()));
        // An empty read covers no byte. It is dropped because, sorted after
        // a read at the same offset, it would look like a second read there.
        reads.retain(|(_, length, _)| *length > 0);
        reads.sort_unstable_by_key(|(offset, _, _)| *offset);
        let mut combined = crc32fast::Hasher::new();
        let mut next = 0u64;
        for (offset, length, checksum) in &reads {
            if *offset > next {
                return Err(format!("bytes {next} to {} were not read", offset - 1));
            }
            if *offset < next {
                let end = next.min(offset + *length as u64);
                return Err(format!("bytes {offset} to {} were read more than once", end - 1));
            }
            combined.combine(checksum);
            next += *length as u64;
        }
        if next != self.length {
            return Err(format!("bytes {next} to {} were not read", self.length - 1));
        }
        Ok(combined.finalize())
    }
}

impl SnapshotSource for OpenedSnapshot {
    fn length(&self) -> u64 {
        self.length
    }

    fn read(&self, offset: u64, length: usize) -> std::io::Result<Cow<'_, [u8]>> {
        if offset.checked_add(length as u64).is_none_or(|end| end > self.length) {
            return Err(outside_snapshot(offset, length, self.length));
        }
        // The range lies within the file's length, checked at open, so
        // the buffer is no larger than the file.
        let mut bytes = vec![0u8; length];
        self.file.read_exact_at(&mut bytes, HEADER_BYTES as u64 + offset)?;
        let mut checksum = crc32fast::Hasher::new();
        checksum.update(&bytes);
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).push((offset, length, checksum));
        Ok(Cow::Owned(bytes))
    }
}

fn warn_unreadable(seq: u64, path: &Path, reason: &str) {
    tracing::warn!(
        seq,
        path = %path.display(),
        %reason,
        "skipping an unreadable projection snapshot"
    );
}

/// The fields of a checked snapshot header, with the file open just past it.
struct Header {
    file: File,
    event_hash: [u8; HASH_BYTES],
    length: u64,
    crc: u32,
}

/// Opens a snapshot file and checks its header against the file name's
/// sequence number and the file's size.
fn open_checked(path: &Path, seq: u64) -> Result<Header, String> {
    let mut file = File::open(path).map_err(|error| format!("failed to open it: {error}"))?;
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact(&mut header).map_err(|error| format!("failed to read its header: {error}"))?;
    let (magic, rest) = header.split_at(8);
    let (stored_seq, rest) = rest.split_at(8);
    let (event_hash, rest) = rest.split_at(HASH_BYTES);
    let (length, stored_crc) = rest.split_at(8);
    if magic != SNAPSHOT_MAGIC {
        return Err("the file does not start with the snapshot magic".into());
    }
    let stored_seq = u64::from_be_bytes(stored_seq.try_into().expect("8 bytes"));
    if stored_seq != seq {
        return Err(format!("the header is for sequence {stored_seq}"));
    }
    let length = u64::from_be_bytes(length.try_into().expect("8 bytes"));
    let on_disk = file.metadata().map_err(|error| error.to_string())?.len();
    if on_disk != HEADER_BYTES as u64 + length {
        return Err(format!("the file is {on_disk} bytes, the header says {length} after it"));
    }
    Ok(Header {
        file,
        event_hash: event_hash.try_into().expect("32 bytes"),
        length,
        crc: u32::from_be_bytes(stored_crc.try_into().expect("4 bytes")),
    })
}

/// Reads a snapshot file into memory and checks its header against the
/// file name's sequence number and the contents.
fn read_checked(path: &Path, seq: u64) -> Result<([u8; HASH_BYTES], Vec<u8>), String> {
    let Header { mut file, event_hash, length, crc } = open_checked(path, seq)?;
    // The length equals the file's size, so the allocation is no larger
    // than the file.
    let mut bytes = Vec::with_capacity(length as usize);
    file.read_to_end(&mut bytes).map_err(|error| format!("failed to read it: {error}"))?;
    if bytes.len() as u64 != length {
        return Err(format!("read {} bytes, the header says {length}", bytes.len()));
    }
    if crc32fast::hash(&bytes) != crc {
        return Err("its CRC-32 does not match its header".into());
    }
    Ok((event_hash, bytes))
}

/// Checksums and counts the bytes on their way to the file.
struct ChecksumWriter<W> {
    out: W,
    checksum: crc32fast::Hasher,
    length: u64,
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.checksum.update(&bytes[..written]);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes a snapshot file, taken after the event `seq` whose hash is
/// `event_hash`, durably from what `encode` writes, then removes
/// the snapshots beyond the newest `SNAPSHOTS_KEPT` and files left by
/// interrupted writes. Returns the snapshot's length. A failure leaves at
/// most a temporary file, which the next save removes.
pub(super) fn save(
    log_dir: &Path,
    seq: u64,
    event_hash: &[u8; HASH_BYTES],
    encode: &mut SnapshotEncoder<'_>,
) -> StoreResult<u64> {
    let dir = log_dir.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(file_name(seq));
    let temporary = dir.join(format!("{}{TEMPORARY_SUFFIX}", file_name(seq)));

    // The length and CRC-32 are known only at the end, so the snapshot
    // follows a blank header that is filled in last.
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::create(&temporary)?);
    out.write_all(&[0; HEADER_BYTES])?;
    let mut counted = ChecksumWriter { out, checksum: crc32fast::Hasher::new(), length: 0 };
    encode(&mut counted)?;
    let ChecksumWriter { out, checksum, length } = counted;
    let file = out.into_inner().map_err(|error| error.into_error())?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&seq.to_be_bytes());
    header.extend_from_slice(event_hash);
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&checksum.finalize().to_be_bytes());
    file.write_all_at(&header, 0)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    File::open(&dir)?.sync_all()?;

    for old in SnapshotFile::list(log_dir)?.iter().skip(SNAPSHOTS_KEPT) {
        remove_if_present(&old.path)?;
    }
    // Only one snapshot is written at a time, so any other temporary file
    // is left from a write that a crash interrupted.
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|name| name.ends_with(TEMPORARY_SUFFIX)) {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(length)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saves `bytes` as snapshot `seq`, written in pieces of 1,000 bytes.
    fn save_bytes(dir: &Path, seq: u64, bytes: &[u8]) -> StoreResult<u64> {
        let hash = event_hash(seq);
        save(dir, seq, &hash, &mut |out| {
            bytes.chunks(1000).try_for_each(|piece| out.write_all(piece))
        })
    }

    fn event_hash(seq: u64) -> [u8; HASH_BYTES] {
        [seq as u8; HASH_BYTES]
    }

    fn snapshot_bytes(seq: u64) -> Vec<u8> {
        format!("snapshot at {seq}").repeat(100).into_bytes()
    }

    fn listed(dir: &Path) -> Vec<u64> {
        SnapshotFile::list(dir).expect("list").iter().map(|file| file.seq).collect()
    }

    fn read_seq(dir: &Path, seq: u64) -> Option<Vec<u8>> {
        read_snapshot(dir, seq).map(|snapshot| snapshot.bytes)
    }

    fn read_snapshot(dir: &Path, seq: u64) -> Option<StoredSnapshot> {
        let files = SnapshotFile::list(dir).expect("list");
        let file = files.iter().find(|file| file.seq == seq).expect("the snapshot is listed");
        file.read()
    }

    fn path_of(dir: &Path, seq: u64) -> PathBuf {
        dir.join(SNAPSHOT_DIR).join(file_name(seq))
    }

    #[test]
    fn saved_snapshot_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert!(listed(dir.path()).is_empty(), "no directory, no snapshots");
        save_bytes(dir.path(), 7, &snapshot_bytes(7)).expect("save");
        assert_eq!(listed(dir.path()), vec![7], "one snapshot");
        assert_eq!(read_seq(dir.path(), 7), Some(snapshot_bytes(7)), "the bytes saved");
        let hash = read_snapshot(dir.path(), 7).map(|snapshot| snapshot.event_hash);
        assert_eq!(hash, Some(event_hash(7)), "the event hash saved");
        let name = path_of(dir.path(), 7);
        assert!(name.ends_with("00000000000000000007.snapshot"), "file name {name:?}");
    }

    #[test]
    fn keeps_newest_two() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for seq in [5, 20, 10, 30] {
            save_bytes(dir.path(), seq, &snapshot_bytes(seq)).expect("save");
        }
        assert_eq!(listed(dir.path()), vec![30, 20], "the newest two, newest first");
    }

    #[test]
    fn damaged_file_unreadable() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 3, &snapshot_bytes(3)).expect("save");
        let path = path_of(dir.path(), 3);
        let original = std::fs::read(&path).expect("read the file");

        let mut flipped = original.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        assert_eq!(read_seq(dir.path(), 3), None, "a changed byte");

        std::fs::write(&path, &original[..original.len() - 1]).expect("write");
        assert_eq!(read_seq(dir.path(), 3), None, "a cut file");

        std::fs::write(&path, &original[..10]).expect("write");
        assert_eq!(read_seq(dir.path(), 3), None, "a cut header");

        let mut magic = original.clone();
        magic[0] = b'X';
        std::fs::write(&path, &magic).expect("write");
        assert_eq!(read_seq(dir.path(), 3), None, "another magic");

        std::fs::write(&path, &original).expect("write");
        std::fs::rename(&path, path_of(dir.path(), 4)).expect("rename");
        assert_eq!(read_seq(dir.path(), 4), None, "a header for another sequence");
    }

    #[test]
    fn other_files_ignored() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 9, &snapshot_bytes(9)).expect("save");
        let snapshot_dir = dir.path().join(SNAPSHOT_DIR);
        for name in ["9.snapshot", "notes.txt", "0000000000000000000x.snapshot"] {
            std::fs::write(snapshot_dir.join(name), b"other").expect("write");
        }
        let leftover = format!("{}{TEMPORARY_SUFFIX}", file_name(8));
        std::fs::write(snapshot_dir.join(&leftover), b"interrupted").expect("write");
        assert_eq!(listed(dir.path()), vec![9], "only snapshot names are listed");

        save_bytes(dir.path(), 10, &snapshot_bytes(10)).expect("save");
        assert!(!snapshot_dir.join(&leftover).exists(), "an interrupted write is removed");
        assert!(snapshot_dir.join("notes.txt").exists(), "other files stay");
        assert_eq!(listed(dir.path()), vec![10, 9], "both snapshots");
    }

    #[test]
    fn streamed_snapshot_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bytes: Vec<u8> = (0..3 * WRITE_BUFFER_BYTES + 123).map(|i| (i % 251) as u8).collect();
        let length = save_bytes(dir.path(), 4, &bytes).expect("save");
        assert_eq!(length, bytes.len() as u64, "returned length");
        assert_eq!(read_seq(dir.path(), 4), Some(bytes), "the bytes saved");
    }

    #[test]
    fn empty_snapshot_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(save_bytes(dir.path(), 1, &[]).expect("save"), 0, "length");
        assert_eq!(read_seq(dir.path(), 1), Some(Vec::new()), "reads back empty");
    }

    #[test]
    fn failed_encoding_keeps_older() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 2, &snapshot_bytes(2)).expect("save");
        let failed = save(dir.path(), 5, &event_hash(5), &mut |out| {
            out.write_all(&vec![7; 2 * WRITE_BUFFER_BYTES])?;
            Err(std::io::Error::other("encoding stopped"))
        });
        assert!(failed.is_err(), "the save reports the failure");
        assert_eq!(listed(dir.path()), vec![2], "no snapshot at 5");
        let leftover =
            dir.path().join(SNAPSHOT_DIR).join(format!("{}{TEMPORARY_SUFFIX}", file_name(5)));
        assert!(leftover.exists(), "the failed save leaves its temporary file");

        save_bytes(dir.path(), 6, &snapshot_bytes(6)).expect("save");
        assert_eq!(listed(dir.path()), vec![6, 2], "the next save is listed");
        assert!(!leftover.exists(), "the next save removes the temporary file");
    }

    fn open_seq(dir: &Path, seq: u64) -> OpenedSnapshot {
        let files = SnapshotFile::list(dir).expect("list");
        let file = files.iter().find(|file| file.seq == seq).expect("the snapshot is listed");
        file.open().expect("the header is good")
    }

    /// Reads `snapshot` in pieces of `piece` bytes, last piece first.
    fn read_backwards(snapshot: &OpenedSnapshot, piece: usize) -> Vec<u8> {
        let length = snapshot.length() as usize;
        let starts: Vec<usize> = (0..length).step_by(piece).collect();
        let mut pieces: Vec<Vec<u8>> = starts
            .iter()
            .rev()
            .map(|start| {
                let end = (start + piece).min(length);
                snapshot.read(*start as u64, end - start).expect("read a piece").into_owned()
            })
            .collect();
        pieces.reverse();
        pieces.concat()
    }

    #[test]
    fn opened_snapshot_reads_by_range() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 7, &snapshot_bytes(7)).expect("save");
        let snapshot = open_seq(dir.path(), 7);
        assert_eq!(snapshot.event_hash, event_hash(7), "the event hash saved");
        assert_eq!(read_backwards(&snapshot, 333), snapshot_bytes(7), "the bytes saved");
        assert!(snapshot.check_crc(), "pieces read in any order make the file's CRC-32");

        let past_end = snapshot.read(snapshot.length() - 1, 2).expect_err("one byte too many");
        assert_eq!(past_end.kind(), std::io::ErrorKind::UnexpectedEof, "{past_end}");
        assert!(snapshot.read(u64::MAX, 1).is_err(), "an offset past any file");
    }

    #[test]
    fn opened_snapshot_ignores_empty_reads() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 7, &snapshot_bytes(7)).expect("save");
        let length = snapshot_bytes(7).len();

        // An empty read covers no byte, wherever it is and whenever it is
        // made, so it neither fills a gap nor counts as a second read.
        let snapshot = open_seq(dir.path(), 7);
        snapshot.read(0, length).expect("read");
        snapshot.read(0, 0).expect("read");
        snapshot.read(10, 0).expect("read");
        snapshot.read(length as u64, 0).expect("read");
        assert!(snapshot.check_crc(), "every byte read once, with empty reads between");

        let snapshot = open_seq(dir.path(), 7);
        snapshot.read(0, 10).expect("read");
        snapshot.read(10, 0).expect("read");
        snapshot.read(11, length - 11).expect("read");
        assert!(!snapshot.check_crc(), "an empty read at byte 10 does not read it");
    }

    #[test]
    fn opened_snapshot_needs_every_byte_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 7, &snapshot_bytes(7)).expect("save");
        let length = snapshot_bytes(7).len();
        let last = length - 1;

        // The reads made, by offset and length, and why they fail the check.
        let cases: [(Vec<(u64, usize)>, String); 5] = [
            (vec![(0, length), (10, 5)], "bytes 10 to 14 were read more than once".into()),
            (vec![(0, 10), (12, length - 12)], "bytes 10 to 11 were not read".into()),
            (vec![(0, 10), (11, length - 11)], "bytes 10 to 10 were not read".into()),
            (vec![(0, last)], format!("bytes {last} to {last} were not read")),
            (vec![], format!("bytes 0 to {last} were not read")),
        ];
        for (reads, reason) in cases {
            let read_ranges = || {
                let snapshot = open_seq(dir.path(), 7);
                for (offset, length) in &reads {
                    snapshot.read(*offset, *length).expect("read");
                }
                snapshot
            };
            assert_eq!(read_ranges().combined_crc(), Err(reason), "reads {reads:?}");
            assert!(!read_ranges().check_crc(), "reads {reads:?} pass the check");
        }
    }

    #[test]
    fn opened_snapshot_finds_damage() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        save_bytes(dir.path(), 3, &snapshot_bytes(3)).expect("save");
        let path = path_of(dir.path(), 3);
        let mut bytes = std::fs::read(&path).expect("read the file");
        bytes[HEADER_BYTES + 500] ^= 1;
        std::fs::write(&path, &bytes).expect("write");

        let snapshot = open_seq(dir.path(), 3);
        read_backwards(&snapshot, 1000);
        assert!(!snapshot.check_crc(), "a flipped bit inside the contents");

        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        let files = SnapshotFile::list(dir.path()).expect("list");
        assert!(files[0].open().is_none(), "a file shorter than its header says");
    }
}
