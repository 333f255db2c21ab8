//! A full replay that builds the posting indexes once, at the end.
//!
//! Folding a posting into the indexes one at a time costs five map updates
//! (by sid, by sub-account, by developer, by reference, and the posting
//! order). At a million postings, the lookups in those maps took most of a
//! replay's time. `BulkFold` folds every view except these,
//! keeps the postings in order, and then builds the indexes as a snapshot
//! decode does (`indexes::build`): sorted, in parallel jobs, and with the
//! same checks. The one-at-a-time fold checks that no posting repeats a
//! sid, and no reference repeats for one developer and pay method. It also
//! checks that each `Idempotency-Key` record names an earlier posting on
//! the record's sub-account. The bulk fold makes all of these checks there,
//! at once.
//!
//! A failed check names no single event. The caller then folds the log
//! again one event at a time, which stops at the event that breaks it.
//!
//! Postings also skip the sorted maps of `State` while they come one after
//! another. A posting reads and changes its sub-account, that
//! sub-account's stream version and ledger balance, and the balance of
//! the other leg's ledger account: eight lookups in maps of a key per
//! sub-account. `PostingCache` keeps those values in hash maps instead and
//! writes them back before any other event is folded, and at the end.
//!
//! The other events change the views through `State::apply`, and the
//! views stage those changes in hash maps (`SortedRunMap::stage`) until
//! the fold compacts them: before a run of postings, and at the end.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::indexes::{self, AccountTable, SectionKeys};
use super::parallel::{run_jobs, Job};
use super::{
    check_posting, posting_transaction, subaccount_ledger_name, ApplyError, LedgerAccount,
    PostingOrder, PostingType, State, Transaction,
};
use crate::domain::events::{AccountStatus, BalancePosted, Event};
use crate::domain::ids::{Sid, SidHasher};
use crate::domain::money::{checked_add, Currency};
use crate::memory;
use crate::store::RecordedEvent;

/// Postings per run: the unit of the parallel key jobs, as a snapshot
/// section is. Tests use short runs, so that a few postings make several.
const POSTINGS_PER_RUN: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// The postings of a bulk fold in order, and the `Idempotency-Key` records
/// to check against them at the end.
#[derive(Default)]
pub(super) struct Deferred {
    runs: Vec<PostingOrder>,
    /// Sequence number, posting sid and sub-account of each record.
    idempotency: Vec<(u64, Sid, Sid)>,
}

impl Deferred {
    pub(super) fn push_posting(&mut self, transaction: Transaction) {
        match self.runs.last_mut() {
            Some(run) if run.len() < POSTINGS_PER_RUN => run.push_back(transaction),
            _ => {
                let mut run = PostingOrder::new();
                run.push_back(transaction);
                self.runs.push(run);
            }
        }
    }

    pub(super) fn check_idempotency(&mut self, seq: u64, resource: Sid, account: Sid) {
        self.idempotency.push((seq, resource, account));
    }
}

/// Folds a log from its first event, building the posting indexes at the
/// end (`finish`). The result equals folding every event with
/// `State::apply_recorded`.
pub struct BulkFold {
    state: State,
    deferred: Deferred,
    cache: PostingCache,
    /// Events the state folded itself, in all and since the views were
    /// last compacted.
    folded_by_state: u64,
    folded_since_compacted: u64,
}

impl Default for BulkFold {
    fn default() -> BulkFold {
        BulkFold::new()
    }
}

/// Events the state folds itself between two compactions of its views, at
/// least; see `BulkFold::compact_before_postings`. Tests compact after a
/// few events, so that their logs compact several times.
const COMPACT_AFTER_EVENTS: u64 = if cfg!(test) { 8 } else { 4096 };

/// Events between two returns of freed memory to the system during a fold
/// (`memory::return_freed`). The events a fold decodes and frees, and the
/// map nodes that compactions replace, leave free pages that new postings
/// cannot always reuse. jemalloc carves the slabs of each size class from
/// contiguous pages, and the reading thread's pages belong to its own
/// arena. Before postings were stored in chunks (`PostingOrder`), without
/// these returns a cold start at 100,000 sub-accounts and
/// 1,000,000 postings kept about 120 MiB of such pages by the end of its
/// fold. With one every 131,072 events, nine returns of about 10 ms each,
/// it peaked about 50 MiB lower (docs/benchmarks.md).
const RETURN_FREED_EVERY_EVENTS: u64 = 1 << 17;

impl BulkFold {
    pub fn new() -> BulkFold {
        let mut state = State::default();
        state.stage_views();
        BulkFold {
            state,
            deferred: Deferred::default(),
            cache: PostingCache::default(),
            folded_by_state: 0,
            folded_since_compacted: 0,
        }
    }

    /// Sequence number of the last event folded in.
    pub fn last_seq(&self) -> u64 {
        self.state.last_seq
    }

    /// Folds a recorded event in, checking its sequence and stream version
    /// as `State::apply_recorded` does.
    pub fn apply_recorded(&mut self, recorded: &RecordedEvent) -> Result<(), ApplyError> {
        if recorded.seq.is_multiple_of(RETURN_FREED_EVERY_EVENTS) {
            memory::return_freed("a stretch of a full replay");
        }
        let posting = match &recorded.event {
            Event::BalanceToppedUp(e) => Some((PostingType::TopUp, e)),
            Event::BalanceAdjusted(e) => Some((PostingType::Adjustment, e)),
            _ => None,
        };
        if let Some((kind, e)) = posting {
            self.compact_before_postings();
            if self.cache.post(&self.state, recorded, kind, e, &mut self.deferred) {
                self.state.last_seq = recorded.seq;
                self.state.apply_idempotency(&recorded.meta);
                return Ok(());
            }
            // A posting that fails a check, or whose other leg is on a
            // sub-account: the state folds it, or names what is wrong.
            self.cache.write_back(&mut self.state);
            self.cache.clear();
        } else {
            self.cache.write_back(&mut self.state);
            self.cache.forget(recorded.stream);
        }
        self.state.check_recorded(recorded)?;
        self.state.apply_with(
            recorded.seq,
            &recorded.meta,
            &recorded.event,
            Some(&mut self.deferred),
        )?;
        self.folded_by_state += 1;
        self.folded_since_compacted += 1;
        Ok(())
    }

    /// Moves the views into sorted runs before a posting, once the state
    /// has folded enough events since the last time. The sub-accounts and
    /// SIP resources created before a run of postings then leave the staged
    /// hash maps, which take more memory than a run. (The write-backs of
    /// the posting cache replace entries, and a map rebuilds its run
    /// itself once they replace a quarter of it.) Enough is
    /// `COMPACT_AFTER_EVENTS`, and half as many as the state has folded in
    /// all, which keeps the cost per event constant on average.
    fn compact_before_postings(&mut self) {
        let due = COMPACT_AFTER_EVENTS.max(self.folded_by_state / 2);
        if self.folded_since_compacted >= due {
            self.state.compact_views();
            self.folded_since_compacted = 0;
        }
    }

    /// Builds the posting indexes and checks the postings and
    /// `Idempotency-Key` records that the fold left for the end. A failed
    /// index check carries the sequence number of the last event folded,
    /// and a failed record check the sequence number of the record.
    pub fn finish(self) -> Result<State, ApplyError> {
        let BulkFold { mut state, deferred, cache, .. } = self;
        // The fold has freed the decoded events, and the write-back and the
        // compaction free the posting cache and the views' replaced values
        // and map nodes. Returned, those pages do not add to the peak RSS
        // that the index build sets.
        memory::return_freed("the fold");
        cache.write_back_at_end(&mut state);
        state.unstage_views();
        memory::return_freed("the posting cache's write-back");
        let Deferred { runs, idempotency } = deferred;
        let seq = state.last_seq;
        let fail = |reason: String| ApplyError { seq, reason };

        let table = AccountTable::new(&state.accounts);
        let table = &table;
        let jobs: Vec<Job<'_, Result<SectionKeys, String>>> = runs
            .iter()
            .map(|run| Box::new(move || indexes::section_keys(run, table)) as Job<'_, _>)
            .collect();
        let keys = run_jobs(jobs).into_iter().collect::<Result<Vec<_>, _>>().map_err(fail)?;
        let built = indexes::build(&runs, keys, table).map_err(fail)?;
        state.transaction_order = PostingOrder::concat(runs);
        state.transactions = built.transactions;
        state.references = built.references;
        state.account_transactions = built.account_transactions;
        state.developer_transactions = built.developer_transactions;

        for (record_seq, resource, account) in idempotency {
            match state.transaction(resource) {
                Some(transaction)
                    if transaction.seq < record_seq && transaction.account() == account => {}
                Some(transaction) if transaction.seq < record_seq => {
                    let reason = format!("idempotency record for {resource} is inconsistent");
                    return Err(ApplyError { seq: record_seq, reason });
                }
                _ => {
                    let reason = format!("transaction {resource} does not exist");
                    return Err(ApplyError { seq: record_seq, reason });
                }
            }
        }
        Ok(state)
    }
}

/// The values of a sub-account that a posting reads or changes.
struct CachedAccount {
    developer: Sid,
    currency: Currency,
    closed: bool,
    balance: Decimal,
    balance_updated: DateTime<Utc>,
    /// The version of the sub-account's stream.
    version: u64,
    /// The balance of the sub-account's ledger account, absent before its
    /// first posting.
    ledger: Option<Decimal>,
    /// Changed since the state last had these values.
    changed: bool,
}

/// The balance of a ledger account on the other leg of postings.
struct CachedLedger {
    balance: Option<Decimal>,
    changed: bool,
}

/// Sub-accounts and ledger accounts that postings of a bulk fold read or
/// changed, kept in hash maps so that each posting looks its sub-account
/// up once. Every entry either equals the state or is listed as changed,
/// and `write_back` makes the state equal to every entry.
///
/// Only postings change balances and ledger balances, and only an event on
/// a sub-account's stream changes that sub-account or its stream version.
/// So an event other than a posting leaves every entry equal to the state,
/// once it is written back, except the entry of the event's own stream,
/// which `forget` drops.
#[derive(Default)]
struct PostingCache {
    accounts: HashMap<Sid, CachedAccount, BuildHasherDefault<SidHasher>>,
    ledgers: HashMap<(LedgerAccount, Currency), CachedLedger>,
    changed_accounts: Vec<Sid>,
    changed_ledgers: Vec<(LedgerAccount, Currency)>,
}

impl PostingCache {
    /// Folds a posting into the cache and `deferred` when every check that
    /// `State::apply_recorded` makes passes, and returns whether it did.
    /// A posting whose other leg is on a sub-account is not folded here,
    /// since that leg changes a ledger balance that another entry may
    /// hold. Changes nothing when it returns `false`.
    fn post(
        &mut self,
        state: &State,
        recorded: &RecordedEvent,
        kind: PostingType,
        e: &BalancePosted,
        deferred: &mut Deferred,
    ) -> bool {
        let seq = recorded.seq;
        if seq != state.last_seq + 1 || e.account_sid != recorded.stream {
            return false;
        }
        let account = match self.accounts.entry(e.account_sid) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let Some(account) = state.accounts.get(&e.account_sid) else {
                    return false;
                };
                let ledger_key = (subaccount_ledger_name(e.account_sid), account.currency);
                entry.insert(CachedAccount {
                    developer: account.developer,
                    currency: account.currency,
                    closed: account.status == AccountStatus::Closed,
                    balance: account.balance,
                    balance_updated: account.balance_updated,
                    version: state.stream_versions.get(&e.account_sid).copied().unwrap_or(0),
                    ledger: state.ledger_balances.get(&ledger_key).copied(),
                    changed: false,
                })
            }
        };
        if account.closed || recorded.version != account.version + 1 {
            return false;
        }
        let Ok(contra) = check_posting(e, account.developer, account.currency, account.balance)
        else {
            return false;
        };
        if matches!(contra, LedgerAccount::SubAccount(_)) {
            return false;
        }
        let [own, other] = &e.legs;
        let Some(ledger) = checked_add(account.ledger.unwrap_or_default(), own.amount) else {
            return false;
        };
        let contra_key = (contra, e.currency);
        let contra_ledger = self.ledgers.entry(contra_key).or_insert_with(|| CachedLedger {
            balance: state.ledger_balances.get(&contra_key).copied(),
            changed: false,
        });
        let Some(contra_balance) =
            checked_add(contra_ledger.balance.unwrap_or_default(), other.amount)
        else {
            return false;
        };
        let at = recorded.meta.recorded_at;
        let Ok(transaction) = posting_transaction(seq, at, kind, e) else {
            return false;
        };

        account.balance = e.balance_after;
        account.balance_updated = at;
        account.version += 1;
        account.ledger = Some(ledger);
        if !account.changed {
            account.changed = true;
            self.changed_accounts.push(e.account_sid);
        }
        contra_ledger.balance = Some(contra_balance);
        if !contra_ledger.changed {
            contra_ledger.changed = true;
            self.changed_ledgers.push(contra_key);
        }
        deferred.push_posting(transaction);
        true
    }

    /// Writes every changed entry into `state`.
    fn write_back(&mut self, state: &mut State) {
        for sid in self.changed_accounts.drain(..) {
            let cached = self.accounts.get_mut(&sid).expect("a changed entry is cached");
            cached.changed = false;
            let account = state.accounts.get_mut(&sid).expect("a cached sub-account exists");
            let account = Arc::make_mut(account);
            account.balance = cached.balance;
            account.balance_updated = cached.balance_updated;
            state.stream_versions.insert(sid, cached.version);
            if let Some(ledger) = cached.ledger {
                state
                    .ledger_balances
                    .insert((subaccount_ledger_name(sid), cached.currency), ledger);
            }
        }
        for key in self.changed_ledgers.drain(..) {
            let cached = self.ledgers.get_mut(&key).expect("a changed entry is cached");
            cached.changed = false;
            if let Some(balance) = cached.balance {
                state.ledger_balances.insert(key, balance);
            }
        }
    }

    /// Writes every changed entry into `state`, as `write_back` does, at
    /// the end of the fold. The sub-accounts and their stream versions
    /// change in place in their runs. Through the staged hash maps, a copy
    /// of each would be sorted into a new run, which took about 0.2 s of a
    /// cold start with 100,000 sub-accounts.
    fn write_back_at_end(self, state: &mut State) {
        let mut updated = 0;
        let changed = |sid: &Sid| self.accounts.get(sid).filter(|cached| cached.changed);
        state.accounts.update_values(|sid, account| {
            if let Some(cached) = changed(sid) {
                let account = Arc::make_mut(account);
                account.balance = cached.balance;
                account.balance_updated = cached.balance_updated;
                updated += 1;
            }
        });
        state.stream_versions.update_values(|sid, version| {
            if let Some(cached) = changed(sid) {
                *version = cached.version;
                updated += 1;
            }
        });
        // `post` caches only a sub-account of the state, whose creation set
        // its stream version.
        let expected = 2 * self.changed_accounts.len();
        assert_eq!(updated, expected, "a changed sub-account lacks an entry in the state");
        for sid in &self.changed_accounts {
            let cached = &self.accounts[sid];
            if let Some(ledger) = cached.ledger {
                let key = (subaccount_ledger_name(*sid), cached.currency);
                state.ledger_balances.insert(key, ledger);
            }
        }
        for key in &self.changed_ledgers {
            if let Some(balance) = self.ledgers[key].balance {
                state.ledger_balances.insert(*key, balance);
            }
        }
    }

    /// Drops the entry of a sub-account whose stream an event other than a
    /// posting changes. The entry must have been written back.
    fn forget(&mut self, stream: Sid) {
        if let Some(cached) = self.accounts.remove(&stream) {
            debug_assert!(!cached.changed, "a forgotten entry was written back");
        }
    }

    /// Drops every entry, after a posting that the state folds itself. The
    /// entries must have been written back.
    fn clear(&mut self) {
        debug_assert!(self.changed_accounts.is_empty() && self.changed_ledgers.is_empty());
        self.accounts.clear();
        self.ledgers.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::events::fixtures::{sub_account_created, top_up};
    use crate::domain::events::{
        Actor, DeveloperCreated, Event, IdempotencyKeyRecorded, IdempotencyRecord, Leg,
        SubAccountStatusChanged, SubAccountUpdated,
    };
    use crate::domain::ids::SidKind;
    use crate::projection::test_log::recorded;

    /// A log of recorded events, numbered and versioned as a store would.
    #[derive(Default)]
    struct Log {
        events: Vec<RecordedEvent>,
        versions: HashMap<Sid, u64>,
        balances: HashMap<Sid, Decimal>,
    }

    impl Log {
        /// Starts a log with a developer and `accounts` sub-accounts.
        fn with_accounts(accounts: usize) -> (Log, Sid, Vec<Sid>) {
            let mut log = Log::default();
            let developer = Sid::generate(SidKind::Developer);
            log.record(
                Event::DeveloperCreated(DeveloperCreated {
                    sid: developer,
                    name: "Bulk".to_string(),
                    api_key_sha256: "00".repeat(32),
                }),
                None,
            );
            let sids: Vec<Sid> = (0..accounts)
                .map(|index| {
                    let sid = Sid::generate(SidKind::Account);
                    let login_id = format!("user{index}");
                    let created = sub_account_created(sid, developer, &login_id);
                    log.record(Event::SubAccountCreated(created), None);
                    sid
                })
                .collect();
            (log, developer, sids)
        }

        fn record(&mut self, event: Event, idempotency: Option<IdempotencyRecord>) {
            let seq = self.events.len() as u64 + 1;
            let stream = event.stream();
            let version = self.versions.entry(stream).or_default();
            *version += 1;
            let actor = Actor::Platform;
            self.events.push(recorded(seq, stream, *version, actor, event, idempotency));
        }

        /// Records a TOPUP of 1.00 and returns its sid.
        fn post(&mut self, developer: Sid, account: Sid, reference: Option<&str>) -> Sid {
            let sid = Sid::generate(SidKind::Transaction);
            self.post_as(sid, developer, account, reference);
            sid
        }

        fn post_as(&mut self, sid: Sid, developer: Sid, account: Sid, reference: Option<&str>) {
            let balance = self.balances.entry(account).or_default();
            *balance += Decimal::ONE;
            let balance_after = *balance;
            let posting = top_up(sid, account, developer, Decimal::ONE, balance_after, reference);
            let event = Event::BalanceToppedUp(posting);
            self.record(event, None);
        }

        fn record_idempotency(&mut self, account: Sid, resource: Sid) {
            let record = IdempotencyRecord {
                key: format!("key-{resource}"),
                fingerprint: "00".repeat(32),
                resource,
            };
            let event =
                Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded { stream: account, resource });
            self.record(event, Some(record));
        }

        fn fold_one_at_a_time(&self) -> Result<State, ApplyError> {
            let mut state = State::default();
            for recorded in &self.events {
                state.apply_recorded(recorded)?;
            }
            Ok(state)
        }

        fn fold_in_bulk(&self) -> Result<State, ApplyError> {
            let mut fold = BulkFold::new();
            for recorded in &self.events {
                fold.apply_recorded(recorded)?;
            }
            assert_eq!(fold.last_seq(), self.events.len() as u64, "every event folded");
            fold.finish()
        }
    }

    #[test]
    fn bulk_fold_equals_fold_one_at_a_time() {
        let (mut log, developer, accounts) = Log::with_accounts(5);
        // Enough postings for several runs, some with references and some
        // with an Idempotency-Key record.
        for index in 0..POSTINGS_PER_RUN * 3 + 7 {
            let account = accounts[index * 7 % accounts.len()];
            let reference = format!("PAY-{index}");
            let reference = index.is_multiple_of(3).then_some(reference.as_str());
            let sid = log.post(developer, account, reference);
            if index % 11 == 0 {
                log.record_idempotency(account, sid);
            }
        }
        let expected = log.fold_one_at_a_time().expect("the log folds");
        let bulk = log.fold_in_bulk().expect("the log folds in bulk");
        assert_eq!(bulk.state_hash(), expected.state_hash(), "state hashes");
        assert!(bulk == expected, "the bulk fold builds the same views and indexes");
        let reference = bulk.find_reference(developer, 4, "PAY-30").expect("found by reference");
        assert_eq!(reference.refer_trans_id(), Some("PAY-30"));
    }

    /// Records a TOPUP of 1.00 on `account` whose other leg is the ledger
    /// account of the sub-account `other`, which only the state folds.
    fn post_against(log: &mut Log, developer: Sid, account: Sid, other: Sid) {
        let balance = log.balances.entry(account).or_default();
        *balance += Decimal::ONE;
        let balance_after = *balance;
        let sid = Sid::generate(SidKind::Transaction);
        let mut posting = top_up(sid, account, developer, Decimal::ONE, balance_after, None);
        posting.legs[1] = Leg { account: format!("subaccount:{other}"), amount: -Decimal::ONE };
        log.record(Event::BalanceToppedUp(posting), None);
    }

    fn update(log: &mut Log, account: Sid, email: &str) {
        let event = Event::SubAccountUpdated(SubAccountUpdated {
            sid: account,
            password_argon2: None,
            first_name: None,
            last_name: None,
            email: Some(email.to_string()),
            mobile_phone: None,
            domain: None,
        });
        log.record(event, None);
    }

    fn change_status(log: &mut Log, account: Sid, from: AccountStatus, to: AccountStatus) {
        let event =
            Event::SubAccountStatusChanged(SubAccountStatusChanged { sid: account, from, to });
        log.record(event, None);
    }

    #[test]
    fn postings_between_other_events_fold_the_same() {
        let (mut log, developer, accounts) = Log::with_accounts(3);
        let [first, second, third] = [accounts[0], accounts[1], accounts[2]];
        for round in 0..5 {
            log.post(developer, first, None);
            log.post(developer, second, Some(&format!("PAY-{round}")));
            let sid = log.post(developer, first, None);
            // Events on a sub-account's stream between its postings.
            update(&mut log, first, &format!("user{round}@example.com"));
            log.record_idempotency(first, sid);
            log.post(developer, first, None);
            // A posting that takes from another sub-account's ledger
            // account, which the state folds after the cached values are
            // written back.
            post_against(&mut log, developer, third, second);
            log.post(developer, second, None);
            change_status(&mut log, third, AccountStatus::Active, AccountStatus::Suspended);
            change_status(&mut log, third, AccountStatus::Suspended, AccountStatus::Active);
            log.post(developer, third, None);
        }
        let expected = log.fold_one_at_a_time().expect("the log folds");
        let bulk = log.fold_in_bulk().expect("the log folds in bulk");
        assert_eq!(bulk.state_hash(), expected.state_hash(), "state hashes");
        assert!(bulk == expected, "the bulk fold builds the same views and indexes");
        let ledger = |state: &State, sid: Sid| {
            state.ledger_balances.get(&(LedgerAccount::SubAccount(sid), Currency::DEFAULT)).copied()
        };
        assert_eq!(ledger(&bulk, second), Some(Decimal::from(10 - 5)), "10 TOPUPs, 5 taken");
        assert_eq!(bulk.accounts[&second].balance, Decimal::from(10), "the account's balance");
        assert_eq!(bulk.stream_versions.get(&first).copied(), Some(1 + 5 * 5), "first's version");
    }

    #[test]
    fn cached_postings_fail_as_one_at_a_time() {
        // A posting on a closed sub-account after postings the cache holds.
        let (mut log, developer, accounts) = Log::with_accounts(2);
        log.post(developer, accounts[0], None);
        log.post(developer, accounts[1], None);
        change_status(&mut log, accounts[0], AccountStatus::Active, AccountStatus::Closed);
        log.post(developer, accounts[1], None);
        log.post(developer, accounts[0], None);
        let closed = log.events;

        // A balance after that does not follow from the cached balance.
        let (mut log, developer, accounts) = Log::with_accounts(1);
        log.post(developer, accounts[0], None);
        log.post(developer, accounts[0], None);
        log.balances.insert(accounts[0], Decimal::from(7));
        log.post(developer, accounts[0], None);
        let wrong_balance = log.events;

        // A stream version that skips one.
        let (mut log, developer, accounts) = Log::with_accounts(1);
        log.post(developer, accounts[0], None);
        log.post(developer, accounts[0], None);
        log.events.last_mut().expect("a posting").version += 1;
        let skipped_version = log.events;

        for (events, what) in
            [(closed, "closed"), (wrong_balance, "balance after"), (skipped_version, "version")]
        {
            let log = Log { events, ..Log::default() };
            let exact = log.fold_one_at_a_time().expect_err("the last posting fails");
            let bulk = log.fold_in_bulk().expect_err("the last posting fails in bulk");
            assert_eq!(exact.seq, log.events.len() as u64, "the last event: {exact}");
            assert!(exact.reason.contains(what), "{exact}");
            assert_eq!(
                (bulk.seq, bulk.reason),
                (exact.seq, exact.reason),
                "same event, same reason"
            );
        }
    }

    #[test]
    fn empty_log_folds_in_bulk() {
        let state = BulkFold::new().finish().expect("nothing to check");
        assert!(state == State::default(), "an empty state");
    }

    #[test]
    fn repeated_reference_fails_both_folds() {
        let (mut log, developer, accounts) = Log::with_accounts(2);
        log.post(developer, accounts[0], Some("PAY-1"));
        log.post(developer, accounts[1], Some("PAY-2"));
        log.post(developer, accounts[1], Some("PAY-1"));
        let exact = log.fold_one_at_a_time().expect_err("the reference is taken");
        assert_eq!(exact.seq, 6, "the third posting breaks the log: {exact}");
        let bulk = log.fold_in_bulk().expect_err("the reference is used twice");
        assert!(bulk.reason.contains("refer_trans_id"), "{bulk}");
    }

    #[test]
    fn repeated_posting_sid_fails_both_folds() {
        let (mut log, developer, accounts) = Log::with_accounts(2);
        let sid = log.post(developer, accounts[0], None);
        log.post_as(sid, developer, accounts[1], None);
        log.fold_one_at_a_time().expect_err("the sid exists");
        let bulk = log.fold_in_bulk().expect_err("the sid is listed twice");
        assert!(bulk.reason.contains(&sid.to_string()), "{bulk}");
    }

    #[test]
    fn idempotency_record_checked_against_posting() {
        // Before its posting.
        let (mut log, developer, accounts) = Log::with_accounts(2);
        let sid = Sid::generate(SidKind::Transaction);
        log.record_idempotency(accounts[0], sid);
        log.post_as(sid, developer, accounts[0], None);
        let exact = log.fold_one_at_a_time().expect_err("no such posting yet");
        let bulk = log.fold_in_bulk().expect_err("the posting comes later");
        assert_eq!((bulk.seq, bulk.reason), (exact.seq, exact.reason), "same event, same reason");

        // On another sub-account.
        let (mut log, developer, accounts) = Log::with_accounts(2);
        let sid = log.post(developer, accounts[0], None);
        log.record_idempotency(accounts[1], sid);
        let exact = log.fold_one_at_a_time().expect_err("the record names another account");
        let bulk = log.fold_in_bulk().expect_err("the record names another account");
        assert_eq!((bulk.seq, bulk.reason), (exact.seq, exact.reason), "same event, same reason");

        // For no posting at all.
        let (mut log, _, accounts) = Log::with_accounts(1);
        log.record_idempotency(accounts[0], Sid::generate(SidKind::Transaction));
        let exact = log.fold_one_at_a_time().expect_err("no such posting");
        let bulk = log.fold_in_bulk().expect_err("no such posting");
        assert_eq!((bulk.seq, bulk.reason), (exact.seq, exact.reason), "same event, same reason");
    }

    #[test]
    fn reference_repeats_across_developers() {
        // A second developer, whose sub-account is created after the first
        // developer's posting, uses the same reference with the same pay
        // method. The digest differs by developer, so both folds accept it.
        let (mut log, developer, accounts) = Log::with_accounts(1);
        let other = Sid::generate(SidKind::Developer);
        log.record(
            Event::DeveloperCreated(DeveloperCreated {
                sid: other,
                name: "Other".to_string(),
                api_key_sha256: "11".repeat(32),
            }),
            None,
        );
        let first = log.post(developer, accounts[0], Some("PAY-1"));

        let late = Sid::generate(SidKind::Account);
        log.record(Event::SubAccountCreated(sub_account_created(late, other, "late")), None);
        let second = log.post(other, late, Some("PAY-1"));

        let expected = log.fold_one_at_a_time().expect("the log folds");
        let bulk = log.fold_in_bulk().expect("the log folds in bulk");
        assert_eq!(bulk.state_hash(), expected.state_hash(), "state hashes");
        assert!(bulk == expected, "the bulk fold builds the same views and indexes");

        let found = bulk.find_reference(developer, 4, "PAY-1").expect("the first developer's");
        assert_eq!(found.sid(), first, "the first developer's posting");
        let found = bulk.find_reference(other, 4, "PAY-1").expect("the other developer's");
        assert_eq!(found.sid(), second, "the other developer's posting");
        assert!(bulk.find_reference(developer, 5, "PAY-1").is_none(), "another pay method");
    }
}
