//! Builds the indexes over a snapshot's transactions, as folding the
//! postings one by one would build them, and checks the transactions on the
//! way: no sid twice, no reference twice for one developer and pay method,
//! and no posting on a sub-account the snapshot lacks. A snapshot is
//! trusted only as far as these checks hold.
//!
//! The job that decodes a section of transactions also looks up the
//! sub-account of each posting and computes its reference digest
//! (`section_keys`), while the section is in the cache. `build` then builds
//! the four indexes as parallel jobs, each sorted by key.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use im::{OrdMap, Vector};

use super::parallel::{run_jobs, Job};
use crate::domain::ids::{Sid, SidBits, SidHasher, SidKind};
use crate::projection::keys::{reference_digest, reference_key, reference_position, ReferenceKey};
use crate::projection::{
    Account, LayeredSet, PostingList, PostingOrder, SortedRunMap, Transaction,
};

/// The indexes that `State` keeps over `transaction_order`.
pub(super) struct Indexes {
    pub transactions: SortedRunMap<SidBits, u32>,
    pub references: LayeredSet<ReferenceKey>,
    pub account_transactions: SortedRunMap<Sid, PostingList>,
    pub developer_transactions: OrdMap<Sid, Vector<u32>>,
}

/// The result of one index job.
enum Built {
    Transactions(SortedRunMap<SidBits, u32>),
    References(LayeredSet<ReferenceKey>),
    Accounts(SortedRunMap<Sid, PostingList>),
    Developers(OrdMap<Sid, Vector<u32>>),
}

/// The snapshot's sub-accounts in sid order, the developer of each, and
/// the position (rank) of each sid in that order.
///
/// Developers are numbered, and each sub-account's developer is kept as
/// its number in 4 bytes. A posting's lookup then finds its rank and its
/// developer in one hash table bucket. The developer numbers by rank fit
/// in the cache, where a table of two sids per sub-account did not.
pub(super) struct AccountTable {
    /// The sub-accounts in sid order.
    accounts: Vec<Sid>,
    /// The developer number of each sub-account, by rank.
    developer_numbers: Vec<u32>,
    /// Each developer's sid, by developer number.
    developers: Vec<Sid>,
    keys: HashMap<Sid, AccountKey, BuildHasherDefault<SidHasher>>,
}

/// A sub-account's rank and its developer's number.
#[derive(Clone, Copy)]
struct AccountKey {
    rank: u32,
    developer: u32,
}

impl AccountTable {
    pub fn new(accounts: &SortedRunMap<Sid, Arc<Account>>) -> AccountTable {
        let mut table = AccountTable {
            accounts: Vec::with_capacity(accounts.len()),
            developer_numbers: Vec::with_capacity(accounts.len()),
            developers: Vec::new(),
            keys: HashMap::with_capacity_and_hasher(accounts.len(), Default::default()),
        };
        let mut numbers: HashMap<Sid, u32, BuildHasherDefault<SidHasher>> = HashMap::default();
        // Keyed by the map's keys, which are in strictly increasing order,
        // so that `by_account` can build its run from the table's order.
        for (rank, (sid, account)) in accounts.iter().enumerate() {
            let rank = u32::try_from(rank).expect("fewer than 2^32 sub-accounts");
            let developer = *numbers.entry(account.developer).or_insert_with(|| {
                table.developers.push(account.developer);
                u32::try_from(table.developers.len() - 1).expect("fewer than 2^32 developers")
            });
            table.accounts.push(*sid);
            table.developer_numbers.push(developer);
            table.keys.insert(*sid, AccountKey { rank, developer });
        }
        table
    }

    /// Returns the rank and developer number of the posting's sub-account,
    /// or why the snapshot is inconsistent.
    fn key(&self, transaction: &Transaction) -> Result<AccountKey, String> {
        let account = transaction.account();
        self.keys.get(&account).copied().ok_or_else(|| {
            format!("account {account} of transaction {} does not exist", transaction.sid())
        })
    }

    fn developer(&self, number: u32) -> Sid {
        self.developers[number as usize]
    }

    fn developer_number(&self, rank: u32) -> u32 {
        self.developer_numbers[rank as usize]
    }
}

/// Keys of one section of transactions: the rank of each posting's
/// sub-account, and the reference keys, unsorted, with each posting's
/// position within the section.
pub(super) struct SectionKeys {
    ranks: Vec<u32>,
    references: Vec<ReferenceKey>,
}

/// Builds and checks the four indexes over `runs`, the decoded sections
/// of transactions in posting order, or returns the first check that
/// failed. `keys` contains
/// the `section_keys` of each run.
pub(super) fn build(
    runs: &[PostingOrder],
    keys: Vec<SectionKeys>,
    table: &AccountTable,
) -> Result<Indexes, String> {
    // The reference keys move into the job that sorts them, which frees
    // each section's keys as soon as it has copied them.
    let (ranks, references): (Vec<Vec<u32>>, Vec<Vec<ReferenceKey>>) =
        keys.into_iter().map(|section| (section.ranks, section.references)).unzip();
    let ranks = &ranks;
    // Jobs in order of decreasing run time, so that the last two finish
    // close together.
    let jobs: Vec<Job<'_, Result<Built, String>>> = vec![
        Box::new(move || by_sid(runs).map(Built::Transactions)),
        Box::new(move || by_account(runs, ranks, table).map(Built::Accounts)),
        Box::new(move || by_reference(runs, references, table).map(Built::References)),
        Box::new(move || by_developer(runs, ranks, table).map(Built::Developers)),
    ];
    let mut indexes = Indexes {
        transactions: SortedRunMap::default(),
        references: LayeredSet::default(),
        account_transactions: SortedRunMap::default(),
        developer_transactions: OrdMap::new(),
    };
    for built in run_jobs(jobs) {
        match built? {
            Built::Transactions(map) => indexes.transactions = map,
            Built::References(set) => indexes.references = set,
            Built::Accounts(map) => indexes.account_transactions = map,
            Built::Developers(map) => indexes.developer_transactions = map,
        }
    }
    Ok(indexes)
}

/// Finds the sub-account rank and the reference key of each posting in a
/// section of transactions.
pub(super) fn section_keys(
    run: &PostingOrder,
    table: &AccountTable,
) -> Result<SectionKeys, String> {
    let mut keys = SectionKeys { ranks: Vec::with_capacity(run.len()), references: Vec::new() };
    for (index, transaction) in run.iter().enumerate() {
        let key = table.key(transaction)?;
        keys.ranks.push(key.rank);
        if let Some(reference) = transaction.refer_trans_id() {
            let developer = table.developer(key.developer);
            let digest = reference_digest(developer, transaction.pay_method, reference);
            keys.references.push(reference_key(digest, position(index)?));
        }
    }
    Ok(keys)
}

/// Converts a posting's index in the posting order, or in a section of it,
/// to the `u32` that posting lists and reference keys hold.
fn position(index: usize) -> Result<u32, String> {
    u32::try_from(index).map_err(|_| format!("more than {} postings, the maximum", u32::MAX))
}

/// Returns each posting with the rank of its sub-account, in posting order.
fn ranked<'a>(
    runs: &'a [PostingOrder],
    ranks: &'a [Vec<u32>],
) -> impl Iterator<Item = (&'a Transaction, u32)> {
    runs.iter().zip(ranks).flat_map(|(run, ranks)| run.iter().zip(ranks.iter().copied()))
}

fn by_sid(runs: &[PostingOrder]) -> Result<SortedRunMap<SidBits, u32>, String> {
    let count = runs.iter().map(PostingOrder::len).sum();
    let mut by_sid: Vec<(SidBits, u32)> = Vec::with_capacity(count);
    for (index, transaction) in runs.iter().flat_map(PostingOrder::iter).enumerate() {
        by_sid.push((transaction.sid().bits(), position(index)?));
    }
    by_sid.sort_unstable_by_key(|(sid, _)| *sid);
    SortedRunMap::from_sorted(by_sid).map_err(|bits| {
        format!("transaction {} is listed twice", bits.with_kind(SidKind::Transaction))
    })
}

/// Sorts the reference keys, with positions in the whole posting order.
/// Keys with one digest are adjacent then, and any two of them must differ
/// in developer, pay method or reference.
fn by_reference(
    runs: &[PostingOrder],
    sections: Vec<Vec<ReferenceKey>>,
    table: &AccountTable,
) -> Result<LayeredSet<ReferenceKey>, String> {
    let count = sections.iter().map(Vec::len).sum();
    let mut references: Vec<ReferenceKey> = Vec::with_capacity(count);
    let mut first = 0;
    for (run, section) in runs.iter().zip(sections) {
        for (digest, index) in section {
            references.push(reference_key(digest, position(first + index as usize)?));
        }
        first += run.len();
    }
    references.sort_unstable();
    check_shared_digests(runs, table, &references)?;
    LayeredSet::from_sorted(references).map_err(|key| {
        format!("the posting at position {} is listed twice", reference_position(&key))
    })
}

/// Compares in full the transactions whose reference keys share a digest.
/// Two different references share one with a chance of about 2^-64, so
/// finding their transactions by a scan of every posting costs nothing in
/// practice.
fn check_shared_digests(
    runs: &[PostingOrder],
    table: &AccountTable,
    references: &[ReferenceKey],
) -> Result<(), String> {
    let groups: Vec<&[ReferenceKey]> = references
        .chunk_by(|left, right| left.0 == right.0)
        .filter(|group| group.len() > 1)
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let mut shared: HashMap<u32, Option<&Transaction>> = groups
        .iter()
        .flat_map(|group| group.iter())
        .map(|key| (reference_position(key), None))
        .collect();
    for (index, transaction) in runs.iter().flat_map(PostingOrder::iter).enumerate() {
        if let Some(slot) = shared.get_mut(&position(index)?) {
            *slot = Some(transaction);
        }
    }
    for group in groups {
        let transactions: Vec<&Transaction> =
            group.iter().filter_map(|key| shared[&reference_position(key)]).collect();
        for (index, first) in transactions.iter().enumerate() {
            for second in &transactions[index + 1..] {
                let same_developer = table.key(first)?.developer == table.key(second)?.developer;
                if same_developer
                    && first.pay_method == second.pay_method
                    && first.refer_trans_id() == second.refer_trans_id()
                {
                    return Err(format!("refer_trans_id of {} is used twice", second.sid()));
                }
            }
        }
    }
    Ok(())
}

/// Groups the postings' positions by sub-account rank, which is sid order,
/// so the map is built in key order. A counting sort puts every position
/// into one array, each sub-account's in posting order, and each list is
/// then copied from its slice of it.
fn by_account(
    runs: &[PostingOrder],
    ranks: &[Vec<u32>],
    table: &AccountTable,
) -> Result<SortedRunMap<Sid, PostingList>, String> {
    // `next[rank]` is first the count of the sub-account's postings, then
    // the slot of its next position, and after the filling the end of its
    // slice, which is where the next sub-account's slice starts.
    let mut next = vec![0usize; table.accounts.len()];
    for rank in ranks.iter().flatten() {
        next[*rank as usize] += 1;
    }
    let mut total = 0;
    for slot in &mut next {
        let count = *slot;
        *slot = total;
        total += count;
    }
    let mut positions = vec![0u32; total];
    for (index, (_, rank)) in ranked(runs, ranks).enumerate() {
        let slot = &mut next[rank as usize];
        positions[*slot] = position(index)?;
        *slot += 1;
    }
    let mut start = 0;
    let mut lists = Vec::new();
    for (end, account) in next.into_iter().zip(&table.accounts) {
        if end > start {
            lists.push((*account, PostingList::from_positions(&positions[start..end])));
        }
        start = end;
    }
    Ok(SortedRunMap::from_sorted(lists).expect("the table's sub-accounts are in sid order"))
}

/// Groups the postings' positions by developer, each developer's in
/// posting order.
fn by_developer(
    runs: &[PostingOrder],
    ranks: &[Vec<u32>],
    table: &AccountTable,
) -> Result<OrdMap<Sid, Vector<u32>>, String> {
    let mut by_number: Vec<Vector<u32>> = vec![Vector::new(); table.developers.len()];
    for (index, (_, rank)) in ranked(runs, ranks).enumerate() {
        by_number[table.developer_number(rank) as usize].push_back(position(index)?);
    }
    let mut by_developer: Vec<(Sid, Vector<u32>)> = (0..)
        .zip(by_number)
        .filter(|(_, positions)| !positions.is_empty())
        .map(|(number, positions)| (table.developer(number), positions))
        .collect();
    by_developer.sort_unstable_by_key(|(sid, _)| *sid);
    Ok(by_developer.into_iter().collect())
}
