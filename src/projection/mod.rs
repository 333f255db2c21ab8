//! Projections: the read views folded from the event log.
//!
//! `State` contains every view in persistent maps (`im`, and `sorted_run`
//! for the two largest indexes), so that a clone is cheap and shares
//! structure. The writer folds each batch into its own copy
//! and publishes it after the batch is durable; readers hold an `Arc` of the
//! last published copy and never wait. Live state, a cold start and a full
//! replay apply the same `State::apply`, and `state_hash` proves they agree.
//! A full replay (`BulkFold`) leaves the posting indexes to the end and
//! builds them in bulk.
//!
//! Every key a posting touches is plain data or a shared pointer (see
//! `keys`), so copying a map node on the write path allocates nothing per
//! key, and freeing an old copy frees whole nodes.

mod bulk;
#[cfg(test)]
mod bulk_props_tests;
#[cfg(test)]
mod fold_paths_tests;
mod indexes;
pub mod keys;
pub mod layered_set;
pub mod model;
mod parallel;
pub mod posting_list;
pub mod posting_order;
mod snapshot;
pub mod sorted_run;
#[cfg(test)]
mod test_log;
mod texts;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use im::{OrdMap, Vector};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::events::BalancePosted;
use crate::domain::events::{AccountStatus, Event, EventMeta};
use crate::domain::ids::{Sid, SidBits, SidKind};
use crate::domain::money::{checked_add, Currency};
use crate::domain::text::fold_name;
use crate::store::RecordedEvent;
use parallel::{run_jobs, Job};
use sorted_run::StagedView;

pub use bulk::BulkFold;
pub use keys::{LedgerAccount, ReferenceKey};
pub use layered_set::LayeredSet;
pub use model::{
    Account, Developer, IdempotentRequest, PostingType, SipAccount, SipAlias, Transaction,
    TransactionFields,
};
pub use posting_list::PostingList;
pub use posting_order::PostingOrder;
pub use snapshot::SnapshotError;
pub use sorted_run::SortedRunMap;

/// The key of a SIP name: the lower-case domain and the folded name. SIP ids
/// and aliases share one namespace per domain.
pub type SipNameKey = (String, String);

/// The key of an `Idempotency-Key`: the actor (`platform` or a developer
/// sid) and the key.
pub type IdempotencyKey = (String, String);

/// The writer rebuilds a run that postings change between two batches once
/// more than `1 / EARLY_REBUILD_SHARE` of its entries are replaced, before
/// the run rebuilds itself at a quarter (`sorted_run`). Each posting
/// changes the sub-accounts, their posting lists and the ledger balances,
/// so those runs reach a share together. Rebuilt within one batch, the
/// three or four runs of 100,000 entries stopped the writer for about
/// 20 ms. So the writer rebuilds one per batch (`rebuild_a_changed_run`).
pub const EARLY_REBUILD_SHARE: usize = 5;

/// Buffer between the state's encoder and the hasher in `state_hash`.
const STATE_HASH_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Sequence number of the last event folded in.
    pub last_seq: u64,
    pub developers: OrdMap<Sid, Arc<Developer>>,
    pub accounts: SortedRunMap<Sid, Arc<Account>>,
    /// Every sub-account in creation order.
    pub account_order: Vector<Sid>,
    /// Each developer's sub-accounts in creation order.
    pub developer_accounts: OrdMap<Sid, Vector<Sid>>,
    /// Folded `login_id` to sub-account.
    pub logins: SortedRunMap<Arc<str>, Sid>,
    pub sip_accounts: SortedRunMap<Sid, Arc<SipAccount>>,
    /// Each sub-account's SIP accounts in creation order.
    pub account_sip_accounts: SortedRunMap<Sid, Vector<Sid>>,
    /// Every SIP account each sub-account ever had, deleted ones included,
    /// in creation order: the event streams of the sub-account's history.
    pub account_sip_history: SortedRunMap<Sid, Vector<Sid>>,
    pub sip_aliases: SortedRunMap<Sid, Arc<SipAlias>>,
    /// SIP ids and aliases by domain and folded name, to their owner.
    pub sip_names: SortedRunMap<Arc<SipNameKey>, Sid>,
    /// Every transaction in posting order. A snapshot stores the
    /// transactions only here and rebuilds the indexes below from it.
    pub transaction_order: PostingOrder,
    /// Positions in `transaction_order` by sid, without the sid's kind,
    /// read through `transaction`. A snapshot start builds it, and
    /// `references`, as sorted runs in one pass (see `sorted_run` and
    /// `layered_set`).
    #[serde(skip)]
    pub transactions: SortedRunMap<SidBits, u32>,
    /// Each sub-account's transactions in posting order, as positions in
    /// `transaction_order` (see `posting`).
    #[serde(skip)]
    pub account_transactions: SortedRunMap<Sid, PostingList>,
    /// Each developer's transactions in posting order, as positions in
    /// `transaction_order`.
    #[serde(skip)]
    pub developer_transactions: OrdMap<Sid, Vector<u32>>,
    /// Transactions by `refer_trans_id`, read through `find_reference`.
    #[serde(skip)]
    pub references: LayeredSet<ReferenceKey>,
    /// `Idempotency-Key` by actor and key.
    pub idempotency: OrdMap<Arc<IdempotencyKey>, Arc<IdempotentRequest>>,
    /// Balance of every ledger account (sub-accounts and contra accounts) by
    /// currency. All of them together sum to zero per currency.
    pub ledger_balances: SortedRunMap<(LedgerAccount, Currency), Decimal>,
    pub stream_versions: SortedRunMap<Sid, u64>,
}

/// An event that does not fit the state it is applied to: the log is
/// damaged or the writer broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq} cannot be applied: {reason}")]
pub struct ApplyError {
    pub seq: u64,
    pub reason: String,
}

fn missing(seq: u64, what: &str, sid: Sid) -> ApplyError {
    ApplyError { seq, reason: format!("{what} {sid} does not exist") }
}

/// Returns the ledger account of a sub-account's balance. Its `Display`
/// form is the name postings' legs use.
pub fn subaccount_ledger_name(account: Sid) -> LedgerAccount {
    LedgerAccount::SubAccount(account)
}

/// Checks a posting against its sub-account's developer, currency and
/// balance before it. The two legs must be on ledger accounts and sum to
/// zero, the first on the sub-account with the posted amount. The balance
/// after must be the balance plus the amount, and not below zero. Returns
/// the ledger account of the second leg.
fn check_posting(
    e: &BalancePosted,
    developer: Sid,
    currency: Currency,
    balance: Decimal,
) -> Result<LedgerAccount, String> {
    if developer != e.developer_sid || currency != e.currency {
        return Err("posting does not match its sub-account".into());
    }
    let [own, contra] = &e.legs;
    if own.account != subaccount_ledger_name(e.account_sid) || own.amount != e.amount {
        return Err("the first leg is not the sub-account's".into());
    }
    let contra_account = LedgerAccount::parse(&contra.account)
        .ok_or_else(|| format!("{:?} is no ledger account", contra.account))?;
    if checked_add(own.amount, contra.amount) != Some(Decimal::ZERO) {
        return Err("the legs do not sum to zero".into());
    }
    let expected_balance =
        checked_add(balance, e.amount).ok_or_else(|| "balance overflows".to_string())?;
    if expected_balance != e.balance_after {
        return Err(format!(
            "balance after is {}, the legs give {expected_balance}",
            e.balance_after
        ));
    }
    if expected_balance.is_sign_negative() && !expected_balance.is_zero() {
        return Err("the prepaid balance goes below zero".into());
    }
    Ok(contra_account)
}

/// Builds the transaction that a posting event adds to the views.
fn posting_transaction(
    seq: u64,
    at: DateTime<Utc>,
    kind: PostingType,
    e: &BalancePosted,
) -> Result<Transaction, String> {
    Transaction::new(TransactionFields {
        sid: e.sid,
        account: e.account_sid,
        kind,
        amount: e.amount,
        currency: e.currency,
        pay_method: e.pay_method,
        refer_trans_id: e.refer_trans_id.as_deref(),
        desc: e.desc.as_deref(),
        balance_after: e.balance_after,
        created: at,
        seq,
    })
}

impl State {
    /// Folds a recorded event in, checking its sequence and stream version.
    pub fn apply_recorded(&mut self, recorded: &RecordedEvent) -> Result<(), ApplyError> {
        self.check_recorded(recorded)?;
        self.apply(recorded.seq, &recorded.meta, &recorded.event).map(|_| ())
    }

    /// Checks that a recorded event comes next: its sequence number and
    /// its stream's version.
    fn check_recorded(&self, recorded: &RecordedEvent) -> Result<(), ApplyError> {
        let seq = recorded.seq;
        if seq != self.last_seq + 1 {
            let reason = format!("expected sequence {}", self.last_seq + 1);
            return Err(ApplyError { seq, reason });
        }
        let stream_version = self.stream_versions.get(&recorded.stream).copied().unwrap_or(0);
        if recorded.version != stream_version + 1 {
            let reason = format!(
                "stream {} is at version {stream_version}, event has version {}",
                recorded.stream, recorded.version
            );
            return Err(ApplyError { seq, reason });
        }
        if recorded.event.stream() != recorded.stream {
            let reason = format!("event belongs to stream {}", recorded.event.stream());
            return Err(ApplyError { seq, reason });
        }
        Ok(())
    }

    /// Folds one event in and returns its stream's new version. The caller
    /// has checked the sequence number.
    pub fn apply(&mut self, seq: u64, meta: &EventMeta, event: &Event) -> Result<u64, ApplyError> {
        self.apply_with(seq, meta, event, None)
    }

    /// Folds one event in. With `deferred`, a posting goes into it instead
    /// of into `transaction_order` and the indexes, and so does the check
    /// of an `Idempotency-Key` record against its posting. `BulkFold`
    /// builds and checks them all at the end. Returns the stream's new
    /// version.
    fn apply_with(
        &mut self,
        seq: u64,
        meta: &EventMeta,
        event: &Event,
        deferred: Option<&mut bulk::Deferred>,
    ) -> Result<u64, ApplyError> {
        let at = meta.recorded_at;
        match event {
            Event::DeveloperCreated(e) => {
                let mut api_key_sha256 = [0u8; 32];
                hex::decode_to_slice(&e.api_key_sha256, &mut api_key_sha256).map_err(|_| {
                    ApplyError { seq, reason: "api_key_sha256 is not 64 hex digits".into() }
                })?;
                let developer =
                    Developer { sid: e.sid, name: e.name.clone(), api_key_sha256, created: at };
                if self.developers.insert(e.sid, Arc::new(developer)).is_some() {
                    return Err(ApplyError { seq, reason: format!("developer {} exists", e.sid) });
                }
            }
            Event::SubAccountCreated(e) => {
                if self.accounts.contains_key(&e.sid) {
                    return Err(ApplyError { seq, reason: format!("account {} exists", e.sid) });
                }
                if !self.developers.contains_key(&e.developer_sid) {
                    return Err(missing(seq, "developer", e.developer_sid));
                }
                let account = Account {
                    sid: e.sid,
                    developer: e.developer_sid,
                    login_id: Arc::from(e.login_id.as_str()),
                    status: AccountStatus::Active,
                    first_name: e.first_name.as_deref().map(Arc::from),
                    last_name: e.last_name.as_deref().map(Arc::from),
                    email: e.email.as_deref().map(Arc::from),
                    mobile_phone: e.mobile_phone.as_deref().map(Arc::from),
                    domain: Arc::from(e.domain.as_str()),
                    currency: e.currency,
                    balance: Decimal::ZERO,
                    balance_updated: at,
                    created: at,
                    updated: at,
                };
                self.accounts.insert(e.sid, Arc::new(account));
                self.account_order.push_back(e.sid);
                self.developer_accounts.entry(e.developer_sid).or_default().push_back(e.sid);
                if self.logins.insert(Arc::from(fold_name(&e.login_id)), e.sid).is_some() {
                    return Err(ApplyError {
                        seq,
                        reason: format!("login_id {} is taken", e.login_id),
                    });
                }
            }
            Event::SubAccountUpdated(e) => {
                let mut account = self.account_for_change(seq, e.sid)?;
                if let Some(value) = &e.first_name {
                    account.first_name = Some(Arc::from(value.as_str()));
                }
                if let Some(value) = &e.last_name {
                    account.last_name = Some(Arc::from(value.as_str()));
                }
                if let Some(value) = &e.email {
                    account.email = Some(Arc::from(value.as_str()));
                }
                if let Some(value) = &e.mobile_phone {
                    account.mobile_phone = Some(Arc::from(value.as_str()));
                }
                if let Some(value) = &e.domain {
                    account.domain = Arc::from(value.as_str());
                }
                account.updated = at;
                self.accounts.insert(e.sid, Arc::new(account));
            }
            Event::SubAccountStatusChanged(e) => {
                let mut account = self.account_for_change(seq, e.sid)?;
                if account.status != e.from {
                    let reason = format!(
                        "account {} is {}, not {}",
                        e.sid,
                        account.status.as_str(),
                        e.from.as_str()
                    );
                    return Err(ApplyError { seq, reason });
                }
                account.status = e.to;
                account.updated = at;
                self.accounts.insert(e.sid, Arc::new(account));
            }
            Event::SipAccountCreated(e) => {
                self.account_for_change(seq, e.account_sid)?;
                let sip = SipAccount {
                    sid: e.sid,
                    account: e.account_sid,
                    sip_id: e.sip_id.clone(),
                    domain: e.domain.clone(),
                    aliases: Vector::new(),
                    created: at,
                    updated: at,
                };
                if self.sip_accounts.insert(e.sid, Arc::new(sip)).is_some() {
                    return Err(ApplyError {
                        seq,
                        reason: format!("SIP account {} exists", e.sid),
                    });
                }
                for lists in [&mut self.account_sip_accounts, &mut self.account_sip_history] {
                    let mut list = lists.get(&e.account_sid).cloned().unwrap_or_default();
                    list.push_back(e.sid);
                    lists.insert(e.account_sid, list);
                }
                self.claim_sip_name(seq, &e.domain, &e.sip_id, e.sid)?;
            }
            Event::SipAccountUpdated(e) => {
                let mut sip = self.sip_account(seq, e.sid)?;
                if sip.domain != e.domain {
                    // Move the SIP id and every alias to the new domain.
                    self.release_sip_name(&sip.domain, &sip.sip_id);
                    self.claim_sip_name(seq, &e.domain, &sip.sip_id, sip.sid)?;
                    for alias_sid in sip.aliases.iter() {
                        let mut alias = self.alias(seq, *alias_sid)?;
                        self.release_sip_name(&alias.domain, &alias.alias);
                        self.claim_sip_name(seq, &e.domain, &alias.alias, alias.sid)?;
                        alias.domain = e.domain.clone();
                        alias.updated = at;
                        self.sip_aliases.insert(alias.sid, Arc::new(alias));
                    }
                    sip.domain = e.domain.clone();
                }
                sip.updated = at;
                self.sip_accounts.insert(e.sid, Arc::new(sip));
            }
            Event::SipAccountDeleted(e) => {
                let sip = self.sip_account(seq, e.sid)?;
                let listed: Vec<Sid> = sip.aliases.iter().copied().collect();
                if listed != e.alias_sids {
                    let reason =
                        format!("SIP account {} has other aliases than the event lists", e.sid);
                    return Err(ApplyError { seq, reason });
                }
                for alias_sid in &e.alias_sids {
                    let alias = self.alias(seq, *alias_sid)?;
                    self.release_sip_name(&alias.domain, &alias.alias);
                    self.sip_aliases.remove(alias_sid);
                }
                self.release_sip_name(&sip.domain, &sip.sip_id);
                self.sip_accounts.remove(&e.sid);
                if let Some(list) = self.account_sip_accounts.get(&sip.account) {
                    let mut list = list.clone();
                    list.retain(|sid| *sid != e.sid);
                    self.account_sip_accounts.insert(sip.account, list);
                }
            }
            Event::SipAliasAdded(e) => {
                let mut sip = self.sip_account(seq, e.sip_sid)?;
                if sip.domain != e.domain || sip.account != e.account_sid {
                    let reason = format!("alias {} does not match its SIP account", e.sid);
                    return Err(ApplyError { seq, reason });
                }
                let alias = SipAlias {
                    sid: e.sid,
                    account: e.account_sid,
                    sip: e.sip_sid,
                    alias: e.alias.clone(),
                    domain: e.domain.clone(),
                    created: at,
                    updated: at,
                };
                if self.sip_aliases.insert(e.sid, Arc::new(alias)).is_some() {
                    return Err(ApplyError { seq, reason: format!("alias {} exists", e.sid) });
                }
                self.claim_sip_name(seq, &e.domain, &e.alias, e.sid)?;
                sip.aliases.push_back(e.sid);
                self.sip_accounts.insert(sip.sid, Arc::new(sip));
            }
            Event::SipAliasChanged(e) => {
                let mut alias = self.alias(seq, e.sid)?;
                self.release_sip_name(&alias.domain, &alias.alias);
                self.claim_sip_name(seq, &alias.domain, &e.alias, alias.sid)?;
                alias.alias = e.alias.clone();
                alias.updated = at;
                self.sip_aliases.insert(e.sid, Arc::new(alias));
            }
            Event::SipAliasRemoved(e) => {
                let alias = self.alias(seq, e.sid)?;
                self.release_sip_name(&alias.domain, &alias.alias);
                self.sip_aliases.remove(&e.sid);
                let mut sip = self.sip_account(seq, e.sip_sid)?;
                sip.aliases.retain(|sid| *sid != e.sid);
                self.sip_accounts.insert(sip.sid, Arc::new(sip));
            }
            Event::IdempotencyKeyRecorded(e) if deferred.is_some() => {
                if meta.idempotency.is_none() {
                    let reason = format!("idempotency record for {} is inconsistent", e.resource);
                    return Err(ApplyError { seq, reason });
                }
                if let Some(deferred) = deferred {
                    deferred.check_idempotency(seq, e.resource, e.stream);
                }
            }
            Event::IdempotencyKeyRecorded(e) => {
                let transaction = self
                    .transaction(e.resource)
                    .ok_or_else(|| missing(seq, "transaction", e.resource))?;
                if transaction.account() != e.stream || meta.idempotency.is_none() {
                    let reason = format!("idempotency record for {} is inconsistent", e.resource);
                    return Err(ApplyError { seq, reason });
                }
            }
            Event::BalanceToppedUp(e) | Event::BalanceAdjusted(e) => {
                let kind = match event {
                    Event::BalanceToppedUp(_) => PostingType::TopUp,
                    _ => PostingType::Adjustment,
                };
                self.apply_posting(seq, at, kind, e, deferred)?;
            }
        }
        self.apply_idempotency(meta);
        self.last_seq = seq;
        let stream = event.stream();
        match self.stream_versions.get_mut(&stream) {
            Some(version) => {
                *version += 1;
                Ok(*version)
            }
            None => {
                self.stream_versions.insert(stream, 1);
                Ok(1)
            }
        }
    }

    fn apply_posting(
        &mut self,
        seq: u64,
        at: DateTime<Utc>,
        kind: PostingType,
        e: &BalancePosted,
        deferred: Option<&mut bulk::Deferred>,
    ) -> Result<(), ApplyError> {
        let account = self.open_account(seq, e.account_sid)?;
        let fail = |reason: String| ApplyError { seq, reason };
        let contra_account =
            check_posting(e, account.developer, account.currency, account.balance).map_err(fail)?;
        let [own, contra] = &e.legs;
        let own_account = subaccount_ledger_name(e.account_sid);
        for (ledger_account, amount) in [(own_account, own.amount), (contra_account, contra.amount)]
        {
            let key = (ledger_account, e.currency);
            let balance = self.ledger_balances.get(&key).copied().unwrap_or_default();
            let balance = checked_add(balance, amount)
                .ok_or_else(|| fail("ledger balance overflows".into()))?;
            self.ledger_balances.insert(key, balance);
        }

        // In place when the account is in the map's later layer and no
        // published state shares it, as during a replay. On a copy
        // otherwise, such as the first change after the run is rebuilt.
        let account = self.accounts.get_mut(&e.account_sid).expect("the account was found above");
        let account = Arc::make_mut(account);
        account.balance = e.balance_after;
        account.balance_updated = at;

        let transaction = posting_transaction(seq, at, kind, e).map_err(fail)?;
        match deferred {
            Some(deferred) => deferred.push_posting(transaction),
            None => {
                self.index_posting(&transaction, e.developer_sid).map_err(fail)?;
                self.transaction_order.push_back(transaction);
            }
        }
        Ok(())
    }

    /// Adds a posting to the indexes that `transaction_order` implies: by
    /// sid, by sub-account, by developer and by reference. Decoding a
    /// snapshot, or a `BulkFold`, builds the same indexes in bulk
    /// (`indexes::build`).
    fn index_posting(&mut self, transaction: &Transaction, developer: Sid) -> Result<(), String> {
        let sid = transaction.sid();
        if self.transaction(sid).is_some() {
            return Err(format!("transaction {sid} exists"));
        }
        // The caller appends the posting to `transaction_order` next.
        let position = u32::try_from(self.transaction_order.len())
            .map_err(|_| "the state holds 4,294,967,295 postings, its maximum".to_string())?;
        if let Some(reference) = transaction.refer_trans_id() {
            if self.find_reference(developer, transaction.pay_method, reference).is_some() {
                return Err(format!("refer_trans_id {reference:?} is taken"));
            }
            let digest = keys::reference_digest(developer, transaction.pay_method, reference);
            self.references.insert(keys::reference_key(digest, position));
        }
        match self.account_transactions.get_mut(&transaction.account()) {
            Some(postings) => postings.push_back(position),
            None => {
                let mut postings = PostingList::default();
                postings.push_back(position);
                self.account_transactions.insert(transaction.account(), postings);
            }
        }
        self.developer_transactions.entry(developer).or_default().push_back(position);
        self.transactions.insert(sid.bits(), position);
        Ok(())
    }

    /// Rebuilds the first of the runs that postings change of which more
    /// than `1 / EARLY_REBUILD_SHARE` has changed, and returns whether it
    /// rebuilt one. The views stay the same; only the memory they take
    /// and the layers they are in change.
    pub fn rebuild_a_changed_run(&mut self) -> bool {
        if self.accounts.changed_more_than(EARLY_REBUILD_SHARE) {
            self.accounts.compact();
        } else if self.account_transactions.changed_more_than(EARLY_REBUILD_SHARE) {
            self.account_transactions.compact();
        } else if self.ledger_balances.changed_more_than(EARLY_REBUILD_SHARE) {
            self.ledger_balances.compact();
        } else if self.stream_versions.changed_more_than(EARLY_REBUILD_SHARE) {
            self.stream_versions.compact();
        } else {
            return false;
        }
        true
    }

    /// Moves the views other than the posting indexes into sorted runs, the
    /// form that a snapshot start gives them, which takes less than half the
    /// memory of an `OrdMap` (see `sorted_run`).
    ///
    /// The views are compacted on every core (`run_jobs`). A full replay
    /// compacts them before a run of postings, while its reading thread
    /// waits for the fold with the second core idle.
    pub fn compact_views(&mut self) {
        run_jobs(self.staged_views().map(|view| Box::new(|| view.compact()) as Job<'_, ()>).into());
    }

    /// Keeps the changes to the views of `compact_views` in hash maps until
    /// they are compacted (`SortedRunMap::stage`). A full replay stages them.
    fn stage_views(&mut self) {
        for view in self.staged_views() {
            view.stage();
        }
    }

    /// Compacts the views of `compact_views`, on every core, and stages
    /// their changes no more.
    fn unstage_views(&mut self) {
        run_jobs(self.staged_views().map(|view| Box::new(|| view.unstage()) as Job<'_, ()>).into());
    }

    /// Returns the views other than the posting indexes: the sorted runs
    /// that postings, sub-accounts and SIP resources change. Those with
    /// the slowest keys to sort come first, so that `run_jobs` spreads
    /// them best.
    fn staged_views(&mut self) -> [&mut (dyn StagedView + Send); 9] {
        [
            &mut self.sip_names,
            &mut self.logins,
            &mut self.stream_versions,
            &mut self.accounts,
            &mut self.sip_aliases,
            &mut self.sip_accounts,
            &mut self.account_sip_history,
            &mut self.account_sip_accounts,
            &mut self.ledger_balances,
        ]
    }

    /// Finds the posting at `position` in `transaction_order`, as a
    /// `PostingList` names it.
    pub fn posting(&self, position: u32) -> Option<&Transaction> {
        self.transaction_order.get(position as usize)
    }

    /// Finds the transaction with this sid. A sid of another kind finds none.
    pub fn transaction(&self, sid: Sid) -> Option<&Transaction> {
        if sid.kind() != SidKind::Transaction {
            return None;
        }
        self.transactions.get(&sid.bits()).and_then(|position| self.posting(*position))
    }

    /// Finds the transaction that used `reference` with this developer and
    /// pay method. Each candidate with the reference's digest is compared in
    /// full, so a shared digest never matches another reference.
    pub fn find_reference(
        &self,
        developer: Sid,
        pay_method: u16,
        reference: &str,
    ) -> Option<&Transaction> {
        let digest = keys::reference_digest(developer, pay_method, reference);
        self.references
            .range_from(&keys::reference_range_start(digest))
            .take_while(|(candidate, _)| *candidate == digest)
            .filter_map(|key| self.posting(keys::reference_position(key)))
            .find(|transaction| {
                transaction.pay_method == pay_method
                    && transaction.refer_trans_id() == Some(reference)
                    && self.accounts.get(&transaction.account()).map(|account| account.developer)
                        == Some(developer)
            })
    }

    /// Records the `Idempotency-Key` an event's request carried.
    fn apply_idempotency(&mut self, meta: &EventMeta) {
        if let Some(record) = &meta.idempotency {
            let key = (meta.actor.to_text(), record.key.clone());
            let request = IdempotentRequest {
                fingerprint: record.fingerprint.clone(),
                resource: record.resource,
            };
            self.idempotency.insert(Arc::new(key), Arc::new(request));
        }
    }

    fn account_for_change(&self, seq: u64, sid: Sid) -> Result<Account, ApplyError> {
        self.open_account(seq, sid).cloned()
    }

    /// Returns a sub-account that exists and is not closed.
    fn open_account(&self, seq: u64, sid: Sid) -> Result<&Account, ApplyError> {
        let account = self.accounts.get(&sid).ok_or_else(|| missing(seq, "account", sid))?;
        if account.status == AccountStatus::Closed {
            let reason = format!("account {sid} is closed");
            return Err(ApplyError { seq, reason });
        }
        Ok(account)
    }

    fn sip_account(&self, seq: u64, sid: Sid) -> Result<SipAccount, ApplyError> {
        let sip = self.sip_accounts.get(&sid).ok_or_else(|| missing(seq, "SIP account", sid))?;
        Ok(SipAccount::clone(sip))
    }

    fn alias(&self, seq: u64, sid: Sid) -> Result<SipAlias, ApplyError> {
        let alias = self.sip_aliases.get(&sid).ok_or_else(|| missing(seq, "alias", sid))?;
        Ok(SipAlias::clone(alias))
    }

    fn claim_sip_name(
        &mut self,
        seq: u64,
        domain: &str,
        name: &str,
        owner: Sid,
    ) -> Result<(), ApplyError> {
        let key = sip_name_key(domain, name);
        if let Some(holder) = self.sip_names.insert(Arc::new(key), owner) {
            let reason = format!("SIP name {name:?} in {domain} is taken by {holder}");
            return Err(ApplyError { seq, reason });
        }
        Ok(())
    }

    fn release_sip_name(&mut self, domain: &str, name: &str) {
        self.sip_names.remove(&sip_name_key(domain, name));
    }

    /// SHA-256 over the canonical encoding (`encode_canonical_into`),
    /// lower-case hex. It covers every view a snapshot stores, and the
    /// indexes are derived from them. Equal states give equal hashes
    /// whatever order they were built in, because every map iterates in key
    /// order. The encoding streams into the hasher, since at a million
    /// postings it is over 100 MiB.
    pub fn state_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let buffered = std::io::BufWriter::with_capacity(STATE_HASH_BUFFER_BYTES, &mut hasher);
        // Writing into a hasher cannot fail, and the state serializes.
        self.encode_canonical_into(buffered).expect("the state streams into the hasher");
        hex::encode(hasher.finalize())
    }
}

/// The namespace key of a SIP id or alias in a domain.
pub fn sip_name_key(domain: &str, name: &str) -> SipNameKey {
    (domain.to_ascii_lowercase(), fold_name(name))
}
