//! The write-ahead journal that makes a written batch durable with one
//! `fdatasync`.
//!
//! Two files in the log directory, `journal-0` and `journal-1`, take turns.
//! Each is filled with zeros and synced when it is created, so later
//! writes land inside allocated blocks and change no file metadata: making
//! them durable takes `File::sync_data` and one device flush. A file starts
//! with a header that names its generation; records follow from
//! `RECORDS_START`. Generation `g` lives in file `g % 2`, and every start
//! and every switch begins a higher generation than any written before.
//!
//! Layout, integers big-endian:
//!
//! - header: magic (16 bytes) ‖ generation u64 ‖ CRC-32 of the first 24
//!   bytes.
//! - record: CRC-32 of the rest u32 ‖ generation u64 ‖ payload length u32 ‖
//!   payload.
//! - payload: event count u32, then per event seq u64 ‖ version u64 ‖
//!   stream id (34 bytes) ‖ value length u32 ‖ value, where the value is
//!   the stored event exactly as it went into sled's `events` tree.
//!
//! Reading stops at the first record whose CRC-32 fails, whose generation is
//! not the header's, or that does not fit the file. Such a record was never
//! synced (a torn write) or is left from an earlier use of the file, so it
//! was never acknowledged. A record whose CRC-32 matches but whose payload
//! does not decode makes the log `Damaged`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::ids::{Sid, SID_CHARS};
use crate::store::{StoreError, StoreResult};

/// Size of a new journal file. Every switch to the other file first makes
/// sled durable (a flush and an fsync, a few milliseconds), so a larger
/// file means fewer of those pauses, but every new log writes both files in
/// full. A TOPUP takes about 750 bytes of journal, so at 15,000 postings
/// per second 16 MiB lasts about 1.5 s. The largest batch the writer makes,
/// 1,024 sub-account creations of three events each (500 to 660 bytes per
/// event), is about 2 MiB.
pub const JOURNAL_BYTES: u64 = 16 * 1024 * 1024;
/// Offset of the first record. The header gets a page of its own, so that
/// rewriting it never touches a page that contains records.
const RECORDS_START: u64 = 4096;
const FILE_NAMES: [&str; 2] = ["journal-0", "journal-1"];
const MAGIC: &[u8; 16] = b"subledger-jrnl-1";
const HEADER_BYTES: usize = 16 + 8 + 4;
/// CRC-32, generation and payload length.
const RECORD_HEADER_BYTES: usize = 4 + 8 + 4;
/// Sequence number, version, stream id and value length.
const EVENT_HEADER_BYTES: usize = 8 + 8 + SID_CHARS + 4;
/// Zeros written per call while a new file is filled.
const FILL_CHUNK_BYTES: usize = 1024 * 1024;

/// One event of a journal record, as it is redone into sled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEvent {
    pub seq: u64,
    pub stream: Sid,
    pub version: u64,
    /// The stored event value, byte for byte as in the `events` tree.
    pub value: Vec<u8>,
}

/// The records of the newest generation, as read at open.
#[derive(Debug)]
pub struct Recovered {
    pub generation: u64,
    /// One entry per written batch, in write order.
    pub records: Vec<Vec<JournalEvent>>,
}

/// Outcome of `Journal::append`.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// The record is written (not yet synced).
    Written,
    /// The record does not fit behind the records of this generation;
    /// nothing was written.
    Full,
    /// The record is larger than a whole file; nothing was written.
    TooLarge,
}

/// The two journal files and the place of the next record.
pub struct Journal {
    files: [Arc<File>; 2],
    /// Length of each file, fixed when it was created.
    lengths: [u64; 2],
    generation: u64,
    /// Offset of the next record of the current generation.
    offset: u64,
}

impl Journal {
    /// Opens the journal files in `dir`, creating them with `new_file_bytes`
    /// each when they do not exist, and reads the records of the newest
    /// generation. The journal takes no appends until `start_generation`.
    pub fn open(dir: &Path, new_file_bytes: u64) -> StoreResult<(Journal, Recovered)> {
        let paths = FILE_NAMES.map(|name| dir.join(name));
        create_missing(&paths, new_file_bytes)?;
        let files = [open_file(&paths[0])?, open_file(&paths[1])?];
        let headers = [read_header(&files[0])?, read_header(&files[1])?];

        // A torn header write during a switch leaves the other file's
        // header the newest valid one.
        let newest = match headers {
            [None, None] => {
                return Err(StoreError::Damaged(format!(
                    "both journal files in {} have an invalid header. Removing them starts \
                     the log from sled's contents alone, which loses every batch \
                     acknowledged since sled's last flush",
                    dir.display()
                )));
            }
            [Some(generation), None] | [None, Some(generation)] => generation,
            [Some(first), Some(second)] => first.max(second),
        };
        let mut lengths = [0; 2];
        for (index, file) in files.iter().enumerate() {
            lengths[index] = file.metadata()?.len();
            if lengths[index] <= RECORDS_START {
                let path = paths[index].display();
                let reason = format!("journal file {path} is only {} bytes", lengths[index]);
                return Err(StoreError::Damaged(reason));
            }
        }
        // Both files are created at the same size and never resized, so a
        // shorter one was cut and its records past the cut are gone.
        if lengths[0] != lengths[1] {
            return Err(StoreError::Damaged(format!(
                "the journal files in {} differ in size ({} and {} bytes), so one was \
                 truncated and batches it held may be lost. Restore the data directory \
                 from a backup",
                dir.display(),
                lengths[0],
                lengths[1]
            )));
        }
        // A torn header write leaves the file's records of the previous
        // use. A record of a newer generation than the valid header's means
        // the header was altered after the file took over.
        for (index, header) in headers.iter().enumerate() {
            if header.is_some() {
                continue;
            }
            if let Some(found) = first_record_generation(&files[index])? {
                if found > newest {
                    return Err(StoreError::Damaged(format!(
                        "journal file {} has an invalid header but holds records of \
                         generation {found}, newer than generation {newest}. Restore the data \
                         directory from a backup",
                        paths[index].display()
                    )));
                }
            }
        }
        // Generation 0 is the one new files are created with, and it never
        // takes records.
        let active = file_index(newest);
        let records = match newest {
            0 => Vec::new(),
            _ => read_records(&files[active], lengths[active], newest)?,
        };
        let journal = Journal {
            files: files.map(Arc::new),
            lengths,
            generation: newest,
            offset: RECORDS_START,
        };
        Ok((journal, Recovered { generation: newest, records }))
    }

    /// Begins the next generation in the other file: writes its header and
    /// syncs it. Every record written before is then obsolete, so the caller
    /// makes sled durable first.
    pub fn start_generation(&mut self) -> std::io::Result<()> {
        let generation = self.generation + 1;
        let file = &self.files[file_index(generation)];
        file.write_all_at(&encode_header(generation), 0)?;
        file.sync_data()?;
        self.generation = generation;
        self.offset = RECORDS_START;
        Ok(())
    }

    /// Writes one record for a batch at the current offset, without syncing.
    pub fn append<'a>(
        &mut self,
        events: impl ExactSizeIterator<Item = (u64, Sid, u64, &'a [u8])> + Clone,
    ) -> std::io::Result<Appended> {
        let record = encode_record(self.generation, events);
        let length = self.lengths[file_index(self.generation)];
        let record_bytes = record.len() as u64;
        if RECORDS_START + record_bytes > length {
            return Ok(Appended::TooLarge);
        }
        if self.offset + record_bytes > length {
            return Ok(Appended::Full);
        }
        self.active_file().write_all_at(&record, self.offset)?;
        self.offset += record_bytes;
        Ok(Appended::Written)
    }

    /// Returns the file that records of the current generation go to.
    pub fn active_file(&self) -> Arc<File> {
        self.files[file_index(self.generation)].clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Returns the offset of the next record.
    #[cfg(test)]
    pub fn next_offset(&self) -> u64 {
        self.offset
    }
}

/// Returns the index of the file that `generation` lives in.
fn file_index(generation: u64) -> usize {
    usize::from(generation % 2 == 1)
}

/// Creates both journal files when neither exists, `journal-1` first.
/// Generation 1, the first that takes records, lives in `journal-1`, so a
/// `journal-1` alone with a generation 0 header is left only by a crash
/// before `journal-0` was created. Any other lone file means that a file
/// in use was removed.
fn create_missing(paths: &[PathBuf; 2], new_file_bytes: u64) -> StoreResult<()> {
    let [first, second] = paths;
    match (first.exists(), second.exists()) {
        (true, true) => return Ok(()),
        (false, false) => create_file(second, new_file_bytes)?,
        (false, true) if read_header(&open_file(second)?)? == Some(0) => {
            // Complete the pair at the size the first file was given.
            let size = std::fs::metadata(second)?.len();
            create_file(first, size)?;
            let dir = first.parent().expect("journal files are inside the log directory");
            return Ok(sync_dir(dir)?);
        }
        (false, true) => return Err(missing_file(first, second)),
        (true, false) => return Err(missing_file(second, first)),
    }
    create_file(first, new_file_bytes)?;
    let dir = first.parent().expect("journal files are inside the log directory");
    Ok(sync_dir(dir)?)
}

fn missing_file(missing: &Path, present: &Path) -> StoreError {
    StoreError::Damaged(format!(
        "journal file {} is missing while {} is present, so batches acknowledged since \
         sled's last flush may be lost. Restore the missing file from a backup of this \
         directory",
        missing.display(),
        present.display()
    ))
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Creates a journal file of `length` zero bytes with a generation 0
/// header under a temporary name, syncs it and renames it into place, so
/// that a file under its final name is always complete. The caller syncs
/// the directory.
fn create_file(path: &Path, length: u64) -> StoreResult<()> {
    let temporary = path.with_extension("new");
    let mut file = File::create(&temporary)?;
    let zeros = vec![0; FILL_CHUNK_BYTES];
    let mut filled = 0;
    while filled < length {
        let chunk = (length - filled).min(FILL_CHUNK_BYTES as u64);
        file.write_all(&zeros[..chunk as usize])?;
        filled += chunk;
    }
    file.write_all_at(&encode_header(0), 0)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    tracing::debug!(path = %path.display(), length, "created a journal file");
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_header(generation: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..16].copy_from_slice(MAGIC);
    header[16..24].copy_from_slice(&generation.to_be_bytes());
    let crc = crc32fast::hash(&header[..24]);
    header[24..].copy_from_slice(&crc.to_be_bytes());
    header
}

/// Reads a file's generation, or `None` when its header is invalid (a
/// header write torn by a crash, which leaves the other file's header the
/// newest valid one).
fn read_header(file: &File) -> std::io::Result<Option<u64>> {
    let mut header = [0; HEADER_BYTES];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let crc = u32::from_be_bytes(header[24..].try_into().expect("4 bytes"));
    if &header[..16] != MAGIC || crc32fast::hash(&header[..24]) != crc {
        return Ok(None);
    }
    Ok(Some(u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"))))
}

fn encode_record<'a>(
    generation: u64,
    events: impl ExactSizeIterator<Item = (u64, Sid, u64, &'a [u8])> + Clone,
) -> Vec<u8> {
    let count = u32::try_from(events.len()).expect("a batch has fewer than 2^32 events");
    let payload_bytes: usize =
        4 + events.clone().map(|(_, _, _, value)| EVENT_HEADER_BYTES + value.len()).sum::<usize>();
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload_bytes);
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&generation.to_be_bytes());
    let payload_length = u32::try_from(payload_bytes).expect("a record is below 4 GiB");
    record.extend_from_slice(&payload_length.to_be_bytes());
    record.extend_from_slice(&count.to_be_bytes());
    for (seq, stream, version, value) in events {
        record.extend_from_slice(&seq.to_be_bytes());
        record.extend_from_slice(&version.to_be_bytes());
        write!(record, "{stream}").expect("writing to a Vec cannot fail");
        let value_length = u32::try_from(value.len()).expect("an event value is below 4 GiB");
        record.extend_from_slice(&value_length.to_be_bytes());
        record.extend_from_slice(value);
    }
    let crc = crc32fast::hash(&record[4..]);
    record[..4].copy_from_slice(&crc.to_be_bytes());
    record
}

/// Reason that reading a journal file stopped before a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordEnd {
    /// Zeros or a record left from an earlier generation: the normal end.
    OtherGeneration,
    /// A record header whose length runs past the file.
    PastFile,
    /// A record whose CRC-32 does not match: a write torn by a crash.
    Torn,
}

/// Reads the records of `generation` from `RECORDS_START` up to the first
/// record that is torn, from an earlier generation, or zeros.
fn read_records(file: &File, length: u64, generation: u64) -> StoreResult<Vec<Vec<JournalEvent>>> {
    let mut bytes = vec![0; usize::try_from(length).expect("a journal file fits in memory")];
    file.read_exact_at(&mut bytes, 0)?;
    let mut records = Vec::new();
    let mut offset = RECORDS_START as usize;
    loop {
        match decode_record(&bytes[offset..], generation) {
            Ok(Ok((events, record_bytes))) => {
                records.push(events);
                offset += record_bytes;
            }
            Ok(Err(RecordEnd::OtherGeneration)) => return Ok(records),
            Ok(Err(RecordEnd::Torn)) => {
                // A write torn by a crash was never synced, so never
                // acknowledged. After a power loss, unsynced records written
                // after it may be on disk too. A synced record damaged later
                // looks the same, so the warning counts the records after it.
                let following = valid_records_after(&bytes, offset, generation);
                if following == 0 {
                    tracing::info!(generation, offset, "ignoring the journal's torn last record");
                } else {
                    tracing::warn!(
                        generation,
                        offset,
                        following,
                        "a journal record fails its CRC-32 and valid records follow it; all \
                         of them are ignored. After a power loss none of them was \
                         acknowledged; otherwise the journal was damaged and acknowledged \
                         batches from this record on are lost"
                    );
                }
                return Ok(records);
            }
            Ok(Err(end)) => {
                // Only a write that was never synced, and so never
                // acknowledged, can end this way.
                tracing::info!(generation, offset, ?end, "ignoring the journal's torn last record");
                return Ok(records);
            }
            Err(reason) => {
                let reason = format!(
                    "journal record at offset {offset} of generation {generation} has a valid \
                     CRC-32 but {reason}"
                );
                return Err(StoreError::Damaged(reason));
            }
        }
    }
}

/// Counts the records of `generation` that decode one after another after
/// the torn record at `offset`, using the torn record's stated length.
fn valid_records_after(bytes: &[u8], offset: usize, generation: u64) -> usize {
    let Some(header) = bytes.get(offset..offset + RECORD_HEADER_BYTES) else {
        return 0;
    };
    let payload_length = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    let mut next = offset + RECORD_HEADER_BYTES + payload_length as usize;
    let mut count = 0;
    while let Some(rest) = bytes.get(next..) {
        match decode_record(rest, generation) {
            Ok(Ok((_, record_bytes))) => {
                count += 1;
                next += record_bytes;
            }
            _ => break,
        }
    }
    count
}

/// Returns the generation of a file's first record, if that record has a
/// valid CRC-32.
fn first_record_generation(file: &File) -> std::io::Result<Option<u64>> {
    let mut header = [0; RECORD_HEADER_BYTES];
    match file.read_exact_at(&mut header, RECORDS_START) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let generation = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes"));
    let payload_length = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    let record_end = RECORDS_START + (RECORD_HEADER_BYTES as u64) + u64::from(payload_length);
    if record_end > file.metadata()?.len() {
        return Ok(None);
    }
    let mut record = vec![0; RECORD_HEADER_BYTES + payload_length as usize];
    match file.read_exact_at(&mut record, RECORDS_START) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let crc = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let valid = generation != 0 && crc32fast::hash(&record[4..]) == crc;
    Ok(valid.then_some(generation))
}

type Decoded = Result<(Vec<JournalEvent>, usize), RecordEnd>;

/// Decodes one record of `generation` at the start of `bytes` and returns
/// its events and its length, or why no record of the generation is there.
/// A record with a valid CRC-32 that does not decode is an error.
fn decode_record(bytes: &[u8], generation: u64) -> Result<Decoded, &'static str> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Ok(Err(RecordEnd::PastFile));
    };
    let crc = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let record_generation = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes"));
    let payload_length = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    if record_generation != generation {
        return Ok(Err(RecordEnd::OtherGeneration));
    }
    let end = RECORD_HEADER_BYTES + payload_length as usize;
    let Some(record) = bytes.get(..end) else {
        return Ok(Err(RecordEnd::PastFile));
    };
    if crc32fast::hash(&record[4..]) != crc {
        return Ok(Err(RecordEnd::Torn));
    }
    let events = decode_payload(&record[RECORD_HEADER_BYTES..]).ok_or("a malformed payload")?;
    Ok(Ok((events, end)))
}

fn decode_payload(payload: &[u8]) -> Option<Vec<JournalEvent>> {
    let mut reader = Reader { bytes: payload };
    let count = reader.u32()?;
    let mut events = Vec::with_capacity(count.min(65_536) as usize);
    for _ in 0..count {
        let seq = reader.u64()?;
        let version = reader.u64()?;
        let stream = Sid::parse(std::str::from_utf8(reader.take(SID_CHARS)?).ok()?)?;
        let value_length = reader.u32()? as usize;
        let value = reader.take(value_length)?.to_vec();
        events.push(JournalEvent { seq, stream, version, value });
    }
    reader.bytes.is_empty().then_some(events)
}

/// Takes fixed-size fields off the front of a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}
