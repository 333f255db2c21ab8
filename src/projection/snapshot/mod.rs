//! The snapshot encoding of `State`, format version 3, and the canonical
//! encoding that the state hash covers.
//!
//! A snapshot is `SNAPSHOT_PREFIX`, the sections, each in postcard and
//! decodable on its own, then a table of their lengths and, last, the
//! section count. With the table at the end, the sections are written out
//! one at a time as they are encoded, and a snapshot is never in memory
//! whole. The first contains
//! the views other than the SIP views and the transactions, and the second
//! the SIP views. The others contain the transactions in posting order,
//! `TRANSACTIONS_PER_SECTION` to a section. Decoding runs the sections as
//! parallel jobs, then builds the indexes over the transactions (by sid,
//! sub-account, developer and reference) the same way (`super::indexes`).
//! Transactions are stored once and the indexes rebuilt: with this layout
//! and the plain-value map keys, a snapshot of 1,000,000 postings fell from
//! 298 to 145 MiB.

use std::fmt;
use std::sync::{Arc, OnceLock};

use im::{OrdMap, Vector};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::indexes::{self, AccountTable, SectionKeys};
use super::keys::LedgerAccount;
use super::parallel::{run_jobs, Job};
use super::{
    Account, Developer, IdempotencyKey, IdempotentRequest, PostingOrder, SipAccount, SipAlias,
    SipNameKey, SortedRunMap, State, Transaction,
};
use crate::domain::ids::Sid;
use crate::domain::money::Currency;
use crate::store::SnapshotSource;

/// Starts every snapshot encoding: a zero byte and the format version. An
/// encoding of an older format starts with another version, or with its
/// sequence number, which is never zero in a snapshot, so `decode` rejects
/// it instead of misreading it.
const SNAPSHOT_PREFIX: [u8; 2] = [0, 3];

/// Starts the canonical encoding that `state_hash` covers, followed by the
/// state in postcard. This is the layout of snapshot format version 2, kept
/// so that state hashes stay comparable with the builds that wrote it.
const CANONICAL_PREFIX: [u8; 2] = [0, 2];

/// Transactions per snapshot section: 65,536 postings are about 5 MiB of
/// encoding, so 1,000,000 postings make 16 sections for the threads to
/// share.
const TRANSACTIONS_PER_SECTION: usize = 1 << 16;

/// Bytes of the section count and of each length in the section table.
const SECTION_COUNT_BYTES: usize = 4;
const SECTION_LENGTH_BYTES: usize = 8;

/// A snapshot that this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot is of another format than version {}", SNAPSHOT_PREFIX[1])]
    Format,
    #[error("the snapshot's section table is invalid: {0}")]
    Sections(String),
    #[error("the snapshot's {section} section does not decode: {source}")]
    Decode { section: &'static str, source: postcard::Error },
    #[error("the snapshot's transactions do not fit its other views: {0}")]
    Inconsistent(String),
    #[error("reading the snapshot failed: {0}")]
    Read(#[from] std::io::Error),
}

/// The first section: every view but the SIP views and the transactions.
type CoreViews = (
    u64,
    DecodedMap<Sid, Arc<Developer>>,
    SortedRunMap<Sid, Arc<Account>>,
    Vector<Sid>,
    DecodedMap<Sid, Vector<Sid>>,
    SortedRunMap<Arc<str>, Sid>,
    DecodedMap<Arc<IdempotencyKey>, Arc<IdempotentRequest>>,
    SortedRunMap<(LedgerAccount, Currency), Decimal>,
    SortedRunMap<Sid, u64>,
);

/// The second section: the SIP accounts, their aliases and names.
type SipViews = (
    SortedRunMap<Sid, Arc<SipAccount>>,
    SortedRunMap<Sid, Vector<Sid>>,
    SortedRunMap<Sid, Vector<Sid>>,
    SortedRunMap<Sid, Arc<SipAlias>>,
    SortedRunMap<Arc<SipNameKey>, Sid>,
);

/// An `OrdMap` decoded without reserving room for the entry count that the
/// snapshot states. im 15.1's own `Deserialize` reserves that many entries
/// first, and postcard 1.2 passes a map's count on unchecked, so a count
/// far beyond the section's bytes made the allocation fail and the process
/// abort.
struct DecodedMap<K, V>(OrdMap<K, V>);

impl<'de, K, V> Deserialize<'de> for DecodedMap<K, V>
where
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DecodedMapVisitor(std::marker::PhantomData))
    }
}

struct DecodedMapVisitor<K, V>(std::marker::PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for DecodedMapVisitor<K, V>
where
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    type Value = DecodedMap<K, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
        let mut map = OrdMap::new();
        while let Some((key, value)) = entries.next_entry()? {
            map.insert(key, value);
        }
        Ok(DecodedMap(map))
    }
}

/// The result of decoding one section.
enum Section {
    Core(Box<CoreViews>),
    Sip(Box<SipViews>),
    /// A section of transactions and their keys.
    Transactions(PostingOrder, SectionKeys),
}

impl State {
    /// Encodes the snapshot: `SNAPSHOT_PREFIX`, the sections and the section
    /// table.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_sections(TRANSACTIONS_PER_SECTION)
    }

    /// Writes the snapshot that `encode` returns to `out`, a section at a
    /// time, so that only the largest section is in memory at once.
    pub fn encode_into(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.write_sections(TRANSACTIONS_PER_SECTION, out)
    }

    fn encode_sections(&self, transactions_per_section: usize) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a `Vec` does not fail.
        self.write_sections(transactions_per_section, &mut out).expect("a Vec takes every write");
        out
    }

    fn write_sections(
        &self,
        transactions_per_section: usize,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        // Every field is named, so that a new view fails to compile here
        // until it has a section.
        let State {
            last_seq,
            developers,
            accounts,
            account_order,
            developer_accounts,
            logins,
            sip_accounts,
            account_sip_accounts,
            account_sip_history,
            sip_aliases,
            sip_names,
            transaction_order,
            transactions: _,
            account_transactions: _,
            developer_transactions: _,
            references: _,
            idempotency,
            ledger_balances,
            stream_versions,
        } = self;
        let postings: Vec<&Transaction> = transaction_order.iter().collect();
        let runs = postings.chunks(transactions_per_section);
        let section_count = 2 + runs.len();
        out.write_all(&SNAPSHOT_PREFIX)?;

        let core = (
            last_seq,
            developers,
            accounts,
            account_order,
            developer_accounts,
            logins,
            idempotency,
            ledger_balances,
            stream_versions,
        );
        let sip = (sip_accounts, account_sip_accounts, account_sip_history, sip_aliases, sip_names);
        let mut sections = SectionWriter { out, lengths: Vec::new() };
        sections.write(&core)?;
        sections.write(&sip)?;
        for run in runs {
            sections.write(run)?;
        }

        let SectionWriter { out, lengths, .. } = sections;
        for length in lengths {
            out.write_all(&length.to_le_bytes())?;
        }
        let count = u32::try_from(section_count).expect("fewer than 2^32 sections");
        out.write_all(&count.to_le_bytes())
    }

    /// Writes the canonical encoding, `CANONICAL_PREFIX` and the state in
    /// postcard, to `out` as it is produced, so that hashing it needs no
    /// copy of the whole state in memory.
    pub fn encode_canonical_into(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        out.write_all(&CANONICAL_PREFIX)?;
        postcard::to_io(self, &mut out).map_err(std::io::Error::other)?;
        out.flush()
    }

    /// Reads a snapshot of this build's format and rebuilds its indexes.
    pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
        State::decode_from(bytes)
    }

    /// Decodes a snapshot as `decode` does, reading each section from
    /// `source` in the job that decodes it. Every byte is read once: the
    /// prefix, the section count, the table, then each section. A
    /// section's bytes are in memory only while its job runs.
    pub fn decode_from<S>(source: &S) -> Result<State, SnapshotError>
    where
        S: SnapshotSource + ?Sized,
    {
        let sections = section_ranges(source)?;
        let [core, sip, transaction_sections @ ..] = sections.as_slice() else {
            let reason = format!("{} sections, expected at least 2", sections.len());
            return Err(SnapshotError::Sections(reason));
        };

        // The core section's job is first, so it starts before any
        // transaction job waits for its table.
        let table = OnceLock::new();
        let table = &table;
        let mut jobs: Vec<Job<'_, Result<Section, SnapshotError>>> = vec![
            Box::new(move || decode_core(source, *core, table)),
            Box::new(move || decode_sip(&source.read(sip.0, sip.1)?)),
        ];
        for &(offset, length) in transaction_sections {
            jobs.push(Box::new(move || decode_transactions(&source.read(offset, length)?, table)));
        }
        let mut core = None;
        let mut sip = None;
        let mut runs = Vec::with_capacity(transaction_sections.len());
        let mut keys = Vec::with_capacity(transaction_sections.len());
        for section in run_jobs(jobs) {
            match section? {
                Section::Core(views) => core = Some(views),
                Section::Sip(views) => sip = Some(views),
                Section::Transactions(run, run_keys) => {
                    runs.push(run);
                    keys.push(run_keys);
                }
            }
        }
        let core = core.expect("the core section was decoded");
        let sip = sip.expect("the SIP section was decoded");
        let table = table.get().and_then(Option::as_ref).expect("the core job built the table");
        let indexes = indexes::build(&runs, keys, table).map_err(SnapshotError::Inconsistent)?;
        let transaction_order = PostingOrder::concat(runs);
        let (
            last_seq,
            developers,
            accounts,
            account_order,
            developer_accounts,
            logins,
            idempotency,
            ledger_balances,
            stream_versions,
        ) = *core;
        let (sip_accounts, account_sip_accounts, account_sip_history, sip_aliases, sip_names) =
            *sip;
        Ok(State {
            last_seq,
            developers: developers.0,
            accounts,
            account_order,
            developer_accounts: developer_accounts.0,
            logins,
            sip_accounts,
            account_sip_accounts,
            account_sip_history,
            sip_aliases,
            sip_names,
            transaction_order,
            transactions: indexes.transactions,
            account_transactions: indexes.account_transactions,
            developer_transactions: indexes.developer_transactions,
            references: indexes.references,
            idempotency: idempotency.0,
            ledger_balances,
            stream_versions,
        })
    }
}

/// Writes sections to `out` one at a time and records their lengths.
struct SectionWriter<'a> {
    out: &'a mut dyn std::io::Write,
    lengths: Vec<u64>,
}

/// Bytes buffered between postcard and the snapshot's writer, which
/// computes a CRC-32 of each write and is cheaper for larger writes.
const SECTION_WRITE_BUFFER_BYTES: usize = 64 * 1024;

impl SectionWriter<'_> {
    /// Encodes a section straight into the output and records its length.
    /// The table of lengths comes after the sections, so no section needs
    /// to be in memory whole.
    fn write(&mut self, value: &(impl serde::Serialize + ?Sized)) -> std::io::Result<()> {
        let mut counted = CountingWriter { out: &mut *self.out, written: 0 };
        let mut buffered =
            std::io::BufWriter::with_capacity(SECTION_WRITE_BUFFER_BYTES, &mut counted);
        postcard::to_io(value, &mut buffered).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut buffered)?;
        drop(buffered);
        self.lengths.push(counted.written);
        Ok(())
    }
}

/// A writer that counts the bytes written through it.
struct CountingWriter<'a> {
    out: &'a mut dyn std::io::Write,
    written: u64,
}

impl std::io::Write for CountingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Reads the prefix, the section count and the table, and returns the
/// offset and length of each section, checking that the sections and the
/// table cover the snapshot exactly.
fn section_ranges<S>(source: &S) -> Result<Vec<(u64, usize)>, SnapshotError>
where
    S: SnapshotSource + ?Sized,
{
    let invalid = |reason: String| SnapshotError::Sections(reason);
    let total = source.length();
    let prefix_length = SNAPSHOT_PREFIX.len() as u64;
    if total < prefix_length || *source.read(0, SNAPSHOT_PREFIX.len())? != SNAPSHOT_PREFIX {
        return Err(SnapshotError::Format);
    }
    let count_offset = total
        .checked_sub(SECTION_COUNT_BYTES as u64)
        .filter(|offset| *offset >= prefix_length)
        .ok_or_else(|| invalid("the section count is cut short".into()))?;
    let count = source.read(count_offset, SECTION_COUNT_BYTES)?;
    let count = u32::from_le_bytes((*count).try_into().expect("4 bytes")) as usize;
    let table_bytes = count
        .checked_mul(SECTION_LENGTH_BYTES)
        .filter(|bytes| *bytes as u64 <= count_offset - prefix_length)
        .ok_or_else(|| invalid(format!("the table of {count} sections is cut short")))?;
    let table_offset = count_offset - table_bytes as u64;
    let table = source.read(table_offset, table_bytes)?;

    let mut sections = Vec::with_capacity(count);
    let mut offset = prefix_length;
    for (index, length) in table.chunks_exact(SECTION_LENGTH_BYTES).enumerate() {
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let Some(length) =
            usize::try_from(length).ok().filter(|length| *length as u64 <= table_offset - offset)
        else {
            return Err(invalid(format!("section {index} of {length} bytes runs past the end")));
        };
        sections.push((offset, length));
        offset += length as u64;
    }
    if offset != table_offset {
        return Err(invalid(format!("{} bytes follow the last section", table_offset - offset)));
    }
    Ok(sections)
}

/// Decodes a section that must hold exactly one `T`. The error names the
/// section by `name`.
fn decode_section<T: DeserializeOwned>(
    section: &[u8],
    name: &'static str,
) -> Result<T, SnapshotError> {
    let (value, rest) = postcard::take_from_bytes(section)
        .map_err(|source| SnapshotError::Decode { section: name, source })?;
    if !rest.is_empty() {
        let reason = format!("{} bytes follow the contents of a section", rest.len());
        return Err(SnapshotError::Sections(reason));
    }
    Ok(value)
}

/// Reads and decodes the core views and publishes the table of their
/// sub-accounts for the transaction jobs. When the section cannot be read,
/// the views do not decode, or the job panics, `None` is published, so
/// that no job waits for ever.
fn decode_core<S>(
    source: &S,
    (offset, length): (u64, usize),
    table: &OnceLock<Option<AccountTable>>,
) -> Result<Section, SnapshotError>
where
    S: SnapshotSource + ?Sized,
{
    let _publish_none = PublishNone(table);
    let section = source.read(offset, length)?;
    let views: Box<CoreViews> = Box::new(decode_section(&section, "core views")?);
    drop(section);
    if let Some((sid, account)) = views.2.iter().find(|(sid, account)| **sid != account.sid) {
        let reason = format!("sub-account {sid} contains the record of {}", account.sid);
        return Err(SnapshotError::Inconsistent(reason));
    }
    let _ = table.set(Some(AccountTable::new(&views.2)));
    Ok(Section::Core(views))
}

/// Publishes `None` when dropped, unless a table was published first.
struct PublishNone<'a>(&'a OnceLock<Option<AccountTable>>);

impl Drop for PublishNone<'_> {
    fn drop(&mut self) {
        let _ = self.0.set(None);
    }
}

/// Decodes a section of transactions, then finds the keys of its postings
/// while they are in the cache, where a separate pass read every posting
/// from memory again.
fn decode_transactions(
    section: &[u8],
    table: &OnceLock<Option<AccountTable>>,
) -> Result<Section, SnapshotError> {
    let run = decode_section::<PostingOrder>(section, "transactions")?;
    let Some(table) = table.wait() else {
        // The core job reports why.
        return Err(SnapshotError::Sections("the core section did not decode".into()));
    };
    let keys = indexes::section_keys(&run, table).map_err(SnapshotError::Inconsistent)?;
    Ok(Section::Transactions(run, keys))
}

fn decode_sip(section: &[u8]) -> Result<Section, SnapshotError> {
    Ok(Section::Sip(Box::new(decode_section(section, "SIP views")?)))
}

#[cfg(test)]
mod tests;
