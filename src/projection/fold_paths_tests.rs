//! Checks that the three ways of building a `State` give equal states:
//! folding one event at a time, `BulkFold`, and decoding a snapshot. The
//! bulk and snapshot states keep their maps in sorted runs, so the events
//! folded after them change run entries in place (`SortedRunMap::get_mut`)
//! and rebuild the runs, which the one-at-a-time fold never does.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::test_log::recorded;
use super::{BulkFold, State};
use crate::crypto::SipDigests;
use crate::domain::events::fixtures::{sub_account_created, top_up};
use crate::domain::events::{
    AccountStatus, Actor, BalancePosted, DeveloperCreated, Event, IdempotencyKeyRecorded,
    IdempotencyRecord, Leg, SipAccountCreated, SipAccountDeleted, SipAccountUpdated, SipAliasAdded,
    SipAliasChanged, SipAliasRemoved, SubAccountStatusChanged, SubAccountUpdated,
};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::money::Currency;
use crate::store::RecordedEvent;

/// Sub-accounts in the log, half of them in a second currency.
const ACCOUNTS: usize = 60;

/// One sub-account of the log, with the SIP account and alias made for it.
#[derive(Clone, Copy)]
struct Owned {
    developer: Sid,
    account: Sid,
    currency: Currency,
    sip: Sid,
    alias: Sid,
}

/// A log numbered and versioned as a store would, and the balances that
/// its postings leave.
#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    versions: HashMap<Sid, u64>,
    balances: HashMap<Sid, Decimal>,
}

impl Log {
    fn record(&mut self, actor: Actor, event: Event, idempotency: Option<IdempotencyRecord>) {
        let seq = self.events.len() as u64 + 1;
        let stream = event.stream();
        let version = self.versions.entry(stream).or_default();
        *version += 1;
        self.events.push(recorded(seq, stream, *version, actor, event, idempotency));
    }

    /// Records a TOPUP of `amount` by PayPal, or an ADJUSTMENT, with an
    /// `Idempotency-Key` on every third one. Returns the posting's sid.
    fn post(&mut self, owned: Owned, amount: Decimal, adjustment: bool, index: usize) -> Sid {
        let sid = Sid::generate(SidKind::Transaction);
        let balance = self.balances.entry(owned.account).or_default();
        *balance += amount;
        let balance_after = *balance;

        let reference = format!("PAY-{index}");
        let reference = index.is_multiple_of(2).then_some(reference.as_str());
        let mut posting =
            top_up(sid, owned.account, owned.developer, amount, balance_after, reference);
        posting.currency = owned.currency;

        let event = if adjustment {
            posting = BalancePosted {
                pay_method: 0,
                legs: [
                    Leg { account: format!("subaccount:{}", owned.account), amount },
                    Leg { account: "adjustments".to_string(), amount: -amount },
                ],
                desc: Some(format!("adjustment {index}")),
                ..posting
            };
            Event::BalanceAdjusted(posting)
        } else {
            Event::BalanceToppedUp(posting)
        };

        let idempotency = index.is_multiple_of(3).then(|| IdempotencyRecord {
            key: format!("key-{index}"),
            fingerprint: "00".repeat(32),
            resource: sid,
        });
        self.record(Actor::Developer(owned.developer), event, idempotency);
        sid
    }

    /// Binds a second `Idempotency-Key` to an earlier posting, as a retry
    /// of the posting by its reference does.
    fn bind_key(&mut self, owned: Owned, resource: Sid, index: usize) {
        let record = IdempotencyRecord {
            key: format!("retry-{index}"),
            fingerprint: "11".repeat(32),
            resource,
        };
        let event = Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded {
            stream: owned.account,
            resource,
        });
        self.record(Actor::Developer(owned.developer), event, Some(record));
    }
}

fn digests() -> SipDigests {
    SipDigests { ha1_md5: "00".repeat(16), ha1_sha256: "00".repeat(32) }
}

/// Builds the log's first part: two developers, `ACCOUNTS` sub-accounts,
/// each with a SIP account and an alias, and postings, adjustments and
/// key bindings on every sub-account.
fn first_part(log: &mut Log) -> Vec<Owned> {
    let developers = [Sid::generate(SidKind::Developer), Sid::generate(SidKind::Developer)];
    for (index, sid) in developers.iter().enumerate() {
        let created = DeveloperCreated {
            sid: *sid,
            name: format!("Developer {index}"),
            api_key_sha256: "00".repeat(32),
        };
        log.record(Actor::Platform, Event::DeveloperCreated(created), None);
    }
    let mut owned = Vec::new();
    for index in 0..ACCOUNTS {
        let developer = developers[index % 2];
        let account = Sid::generate(SidKind::Account);
        let mut created = sub_account_created(account, developer, &format!("user{index}"));
        let currency = if index % 4 < 2 { Currency::Sgd } else { Currency::Usd };
        created.currency = currency;
        let actor = Actor::Developer(developer);
        log.record(actor, Event::SubAccountCreated(created), None);
        let sip = Sid::generate(SidKind::SipAccount);
        let event = Event::SipAccountCreated(SipAccountCreated {
            sid: sip,
            account_sid: account,
            sip_id: format!("user{index}"),
            domain: "sip.example.com".to_string(),
            digests: digests(),
        });
        log.record(actor, event, None);
        let alias = Sid::generate(SidKind::SipAlias);
        let event = Event::SipAliasAdded(SipAliasAdded {
            sid: alias,
            account_sid: account,
            sip_sid: sip,
            alias: format!("alias{index}"),
            domain: "sip.example.com".to_string(),
        });
        log.record(actor, event, None);
        owned.push(Owned { developer, account, currency, sip, alias });
    }
    for round in 0..3 {
        for (index, subaccount) in owned.iter().enumerate() {
            let number = round * ACCOUNTS + index;
            let sid = log.post(*subaccount, Decimal::new(250, 2), false, number);
            if number.is_multiple_of(7) {
                log.bind_key(*subaccount, sid, number);
            }
        }
    }
    owned
}

/// Builds the log's second part, which changes every sub-account, most SIP
/// accounts and aliases, and the status of a few sub-accounts, so that the
/// runs of a decoded or bulk-folded state are rebuilt several times.
fn second_part(log: &mut Log, owned: &[Owned]) {
    for round in 0..4 {
        for (index, subaccount) in owned.iter().enumerate() {
            let number = 1000 + round * ACCOUNTS + index;
            let adjustment = index % 5 == 0;
            let amount = if adjustment { Decimal::new(-125, 2) } else { Decimal::new(99, 2) };
            let sid = log.post(*subaccount, amount, adjustment, number);
            if number.is_multiple_of(5) {
                log.bind_key(*subaccount, sid, number);
            }
        }
    }
    for (index, subaccount) in owned.iter().enumerate() {
        let actor = Actor::Developer(subaccount.developer);
        match index % 6 {
            0 => {
                let event = Event::SubAccountUpdated(SubAccountUpdated {
                    sid: subaccount.account,
                    password_argon2: None,
                    first_name: Some(format!("First {index}")),
                    last_name: None,
                    email: Some(format!("user{index}@example.com")),
                    mobile_phone: None,
                    domain: None,
                });
                log.record(actor, event, None);
            }
            1 => {
                let event = Event::SipAliasChanged(SipAliasChanged {
                    sid: subaccount.alias,
                    sip_sid: subaccount.sip,
                    alias: format!("renamed{index}"),
                });
                log.record(actor, event, None);
            }
            2 => {
                let event = Event::SipAliasRemoved(SipAliasRemoved {
                    sid: subaccount.alias,
                    sip_sid: subaccount.sip,
                });
                log.record(actor, event, None);
            }
            3 => {
                let event = Event::SipAccountUpdated(SipAccountUpdated {
                    sid: subaccount.sip,
                    account_sid: subaccount.account,
                    domain: "moved.example.com".to_string(),
                    digests: digests(),
                });
                log.record(actor, event, None);
            }
            4 => {
                let event = Event::SipAccountDeleted(SipAccountDeleted {
                    sid: subaccount.sip,
                    account_sid: subaccount.account,
                    alias_sids: vec![subaccount.alias],
                });
                log.record(actor, event, None);
            }
            _ => {
                let event = Event::SubAccountStatusChanged(SubAccountStatusChanged {
                    sid: subaccount.account,
                    from: AccountStatus::Active,
                    to: AccountStatus::Suspended,
                });
                log.record(actor, event, None);
            }
        }
    }
    // Postings after the SIP changes, on the sub-accounts still active.
    for (index, subaccount) in owned.iter().enumerate().filter(|(index, _)| index % 6 != 5) {
        log.post(*subaccount, Decimal::new(1, 2), false, 5000 + index);
    }
}

/// Builds the log of both parts and returns it with the sub-accounts and
/// the number of events in the first part.
fn two_part_log() -> (Log, Vec<Owned>, usize) {
    let mut log = Log::default();
    let owned = first_part(&mut log);
    let split = log.events.len();
    second_part(&mut log, &owned);
    (log, owned, split)
}

fn fold_one_at_a_time(events: &[RecordedEvent]) -> State {
    let mut state = State::default();
    for recorded in events {
        state.apply_recorded(recorded).expect("the event folds");
    }
    state
}

fn fold_in_bulk(events: &[RecordedEvent]) -> State {
    let mut fold = BulkFold::new();
    for recorded in events {
        fold.apply_recorded(recorded).expect("the event folds in bulk");
    }
    fold.finish().expect("the bulk fold finishes")
}

fn decoded(state: &State) -> State {
    State::decode(&state.encode()).expect("the snapshot decodes")
}

/// Asserts that `state` equals `expected`, by `==` and by state hash.
fn assert_same(state: &State, expected: &State, description: &str) {
    assert_eq!(state.state_hash(), expected.state_hash(), "state hash of {description}");
    assert!(state == expected, "views of {description}");
}

#[test]
fn fold_paths_give_equal_states() {
    let (log, owned, split) = two_part_log();
    let (first, second) = log.events.split_at(split);

    let folded = fold_one_at_a_time(first);
    let bulk = fold_in_bulk(first);
    let snapshot = decoded(&folded);
    assert_same(&bulk, &folded, "the bulk fold of the first part");
    assert_same(&snapshot, &folded, "the decoded first part");

    // A published copy of each, which the folds below must leave as it is.
    let published = [folded.clone(), bulk.clone(), snapshot.clone()];
    let published_hash = folded.state_hash();

    let mut states = [folded, bulk, snapshot];
    for (index, recorded) in second.iter().enumerate() {
        for state in &mut states {
            state.apply_recorded(recorded).expect("the second part folds");
        }
        if index % 25 == 0 {
            assert_same(&states[1], &states[0], "the bulk state after more events");
            assert_same(&states[2], &states[0], "the decoded state after more events");
        }
    }
    let [folded, bulk, snapshot] = states;
    assert_same(&bulk, &folded, "the bulk state after the whole log");
    assert_same(&snapshot, &folded, "the decoded state after the whole log");
    for (copy, path) in published.iter().zip(["one at a time", "bulk", "decoded"]) {
        assert_eq!(copy.state_hash(), published_hash, "the published {path} state");
    }

    assert_same(&fold_in_bulk(&log.events), &folded, "the bulk fold of the whole log");
    assert_same(&decoded(&folded), &folded, "the decoded whole log");
    assert_same(&decoded(&snapshot), &folded, "the decoded state decoded again");
    assert_same(&fold_one_at_a_time(&log.events), &folded, "the whole log folded again");

    // Each sub-account's balance and postings, read through the maps.
    for subaccount in &owned {
        let account = &folded.accounts[&subaccount.account];
        let postings = &folded.account_transactions[&subaccount.account];
        for state in [&bulk, &snapshot] {
            let balance = state.accounts[&subaccount.account].balance;
            assert_eq!(balance, account.balance, "balance of {}", subaccount.account);
            let listed = &state.account_transactions[&subaccount.account];
            assert_eq!(listed, postings, "postings of {}", subaccount.account);
        }
    }
}

/// Folds the second part into one state and keeps a copy of it every 10
/// events, as the writer publishes a copy after each batch. Each copy must
/// still equal the one-at-a-time fold of the log up to its last event.
#[test]
fn published_copies_keep_their_state() {
    let (log, _, split) = two_part_log();
    let (first, second) = log.events.split_at(split);

    let mut working = decoded(&fold_one_at_a_time(first));
    let mut published: Vec<(State, String)> = Vec::new();
    for (index, recorded) in second.iter().enumerate() {
        working.apply_recorded(recorded).expect("the second part folds");
        if index % 10 == 0 {
            // As the writer does between batches.
            let hash = working.state_hash();
            working.rebuild_a_changed_run();
            assert_eq!(working.state_hash(), hash, "a rebuilt run after event {index}");
            published.push((working.clone(), hash));
        }
    }
    for (copy, hash) in &published {
        assert_eq!(&copy.state_hash(), hash, "the copy published at event {}", copy.last_seq);
        let expected = fold_one_at_a_time(&log.events[..copy.last_seq as usize]);
        assert!(copy == &expected, "the copy published at event {}", copy.last_seq);
    }
}

/// Returns which of the runs that postings change have had more than a
/// fifth of their entries replaced: the sub-accounts, their posting
/// lists, the ledger balances and the stream versions.
fn changed_runs(state: &State) -> [bool; 4] {
    let share = super::EARLY_REBUILD_SHARE;
    [
        state.accounts.changed_more_than(share),
        state.account_transactions.changed_more_than(share),
        state.ledger_balances.changed_more_than(share),
        state.stream_versions.changed_more_than(share),
    ]
}

/// Folds the second part into a decoded state and calls
/// `rebuild_a_changed_run` after each event, as the writer does between
/// batches. Each call rebuilds the first changed run and no other.
#[test]
fn rebuild_a_changed_run_rebuilds_one_per_call() {
    let (log, _, split) = two_part_log();
    let (first, second) = log.events.split_at(split);

    let mut state = decoded(&fold_one_at_a_time(first));
    let mut rebuilt = 0;
    for recorded in second {
        state.apply_recorded(recorded).expect("the second part folds");
        let before = changed_runs(&state);
        let did_rebuild = state.rebuild_a_changed_run();
        assert_eq!(did_rebuild, before.contains(&true), "a rebuild at event {}", recorded.seq);
        let mut expected = before;
        if let Some(first_changed) = before.iter().position(|changed| *changed) {
            expected[first_changed] = false;
            rebuilt += 1;
        }
        assert_eq!(changed_runs(&state), expected, "the runs after event {}", recorded.seq);
    }
    assert!(rebuilt > 0, "the second part changes more than a fifth of a run");
    assert_same(&state, &fold_one_at_a_time(&log.events), "the state with rebuilt runs");
}
