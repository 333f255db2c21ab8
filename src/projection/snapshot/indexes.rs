//! Builds the indexes over a snapshot's transactions, as folding the
//! postings one by one would build them, and checks the transactions on the
//! way: no sid twice, no reference twice for one developer and pay method,
//! and no posting on a sub-account the snapshot lacks. A snapshot is
//! trusted only as far as these checks hold.
//!
//! The four indexes are independent, so they are built as parallel jobs.
//! Each one is collected, sorted and built in key order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use im::{OrdMap, Vector};

use super::parallel::{run_jobs, Job};
use crate::domain::ids::Sid;
use crate::projection::keys::{reference_digest, ReferenceKey};
use crate::projection::{PostingList, SortedRunMap, SortedRunSet, Transaction};

/// The indexes that `State` keeps over `transaction_order`.
pub(super) struct Indexes {
    pub transactions: SortedRunMap<Sid, Arc<Transaction>>,
    pub references: SortedRunSet<ReferenceKey>,
    pub account_transactions: OrdMap<Sid, PostingList>,
    pub developer_transactions: OrdMap<Sid, Vector<Arc<Transaction>>>,
}

/// The result of one index job.
enum Built {
    Transactions(SortedRunMap<Sid, Arc<Transaction>>),
    References(SortedRunSet<ReferenceKey>),
    Accounts(OrdMap<Sid, PostingList>),
    Developers(OrdMap<Sid, Vector<Arc<Transaction>>>),
}

/// The transactions of a snapshot in posting order, as its sections held
/// them, with each sub-account's developer.
#[derive(Clone, Copy)]
pub(super) struct Postings<'a> {
    pub runs: &'a [Vec<Arc<Transaction>>],
    pub developers: &'a HashMap<Sid, Sid>,
}

impl<'a> Postings<'a> {
    fn iter(self) -> impl Iterator<Item = &'a Arc<Transaction>> {
        self.runs.iter().flatten()
    }

    fn count(self) -> usize {
        self.runs.iter().map(Vec::len).sum()
    }

    fn developer(self, transaction: &Transaction) -> Result<Sid, String> {
        let account = transaction.account;
        self.developers.get(&account).copied().ok_or_else(|| {
            format!("account {account} of transaction {} does not exist", transaction.sid)
        })
    }
}

/// Builds and checks the four indexes, or returns the first check that
/// failed.
pub(super) fn build(postings: Postings<'_>) -> Result<Indexes, String> {
    // The reference job is the longest (a SHA-256 per posting), so it is
    // listed first and the others share the other threads.
    let jobs: Vec<Job<'_, Result<Built, String>>> = vec![
        Box::new(move || by_reference(postings).map(Built::References)),
        Box::new(move || by_sid(postings).map(Built::Transactions)),
        Box::new(move || by_account(postings).map(Built::Accounts)),
        Box::new(move || by_developer(postings).map(Built::Developers)),
    ];
    let mut indexes = Indexes {
        transactions: SortedRunMap::default(),
        references: SortedRunSet::default(),
        account_transactions: OrdMap::new(),
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

fn by_sid(postings: Postings<'_>) -> Result<SortedRunMap<Sid, Arc<Transaction>>, String> {
    let mut by_sid: Vec<(Sid, Arc<Transaction>)> = Vec::with_capacity(postings.count());
    by_sid.extend(postings.iter().map(|transaction| (transaction.sid, Arc::clone(transaction))));
    by_sid.sort_unstable_by_key(|(sid, _)| *sid);
    SortedRunMap::from_sorted(by_sid).map_err(|sid| format!("transaction {sid} is listed twice"))
}

/// Collects the reference keys, sorted. Keys with one digest are adjacent
/// then, and any two of them must differ in developer, pay method or
/// reference.
fn by_reference(postings: Postings<'_>) -> Result<SortedRunSet<ReferenceKey>, String> {
    let mut keys: Vec<ReferenceKey> = Vec::with_capacity(postings.count());
    for transaction in postings.iter() {
        if let Some(reference) = &transaction.refer_trans_id {
            let developer = postings.developer(transaction)?;
            let digest = reference_digest(developer, transaction.pay_method, reference);
            keys.push((digest, transaction.sid));
        }
    }
    keys.sort_unstable();
    check_shared_digests(postings, &keys)?;
    SortedRunSet::from_sorted(keys).map_err(|(_, sid)| format!("transaction {sid} is listed twice"))
}

/// Compares in full the transactions whose reference keys share a digest.
/// Two different references share one with a chance of about 2^-64, so
/// finding their transactions by a scan of every posting costs nothing in
/// practice.
fn check_shared_digests(postings: Postings<'_>, keys: &[ReferenceKey]) -> Result<(), String> {
    let groups: Vec<&[ReferenceKey]> =
        keys.chunk_by(|left, right| left.0 == right.0).filter(|group| group.len() > 1).collect();
    if groups.is_empty() {
        return Ok(());
    }
    let shared: HashSet<Sid> =
        groups.iter().flat_map(|group| group.iter().map(|key| key.1)).collect();
    let found: HashMap<Sid, &Transaction> = postings
        .iter()
        .filter(|transaction| shared.contains(&transaction.sid))
        .map(|transaction| (transaction.sid, transaction.as_ref()))
        .collect();
    for group in groups {
        let transactions: Vec<&Transaction> = group.iter().map(|(_, sid)| found[sid]).collect();
        for (index, first) in transactions.iter().enumerate() {
            for second in &transactions[index + 1..] {
                let same_developer = postings.developer(first)? == postings.developer(second)?;
                if same_developer
                    && first.pay_method == second.pay_method
                    && first.refer_trans_id == second.refer_trans_id
                {
                    return Err(format!("refer_trans_id of {} is used twice", second.sid));
                }
            }
        }
    }
    Ok(())
}

fn by_account(postings: Postings<'_>) -> Result<OrdMap<Sid, PostingList>, String> {
    let mut by_account: HashMap<Sid, Vec<Sid>> = HashMap::with_capacity(postings.developers.len());
    for transaction in postings.iter() {
        by_account.entry(transaction.account).or_default().push(transaction.sid);
    }
    let mut by_account: Vec<(Sid, Vec<Sid>)> = by_account.into_iter().collect();
    by_account.sort_unstable_by_key(|(sid, _)| *sid);
    Ok(by_account.into_iter().map(|(sid, ids)| (sid, PostingList::from(ids))).collect())
}

/// Also the check that every posting's sub-account exists, since it looks
/// up the developer of each one.
fn by_developer(postings: Postings<'_>) -> Result<OrdMap<Sid, Vector<Arc<Transaction>>>, String> {
    let mut by_developer: HashMap<Sid, Vector<Arc<Transaction>>> = HashMap::new();
    for transaction in postings.iter() {
        let developer = postings.developer(transaction)?;
        by_developer.entry(developer).or_default().push_back(Arc::clone(transaction));
    }
    let mut by_developer: Vec<(Sid, Vector<Arc<Transaction>>)> = by_developer.into_iter().collect();
    by_developer.sort_unstable_by_key(|(sid, _)| *sid);
    Ok(by_developer.into_iter().collect())
}
