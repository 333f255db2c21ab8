//! Checks `BulkFold` against the fold of one event at a time on random
//! logs: postings between events that read or change what the posting
//! cache of a bulk fold holds, postings whose other leg is on a
//! sub-account, balances taken to zero, a second currency, ledger balances
//! near `Decimal::MAX`, SIP accounts and aliases that claim and release
//! names, and damaged events anywhere. Both folds must accept the same
//! logs and build equal states, and a bulk fold that stops at an event
//! must not stop before the one-at-a-time fold does. Where that event is
//! neither a posting nor an `Idempotency-Key` record, whose checks the
//! bulk fold defers, both must stop there for the same reason.

use std::collections::HashMap;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::test_log::recorded;
use super::{ApplyError, BulkFold, State};
use crate::crypto::SipDigests;
use crate::domain::events::fixtures::{sub_account_created, top_up};
use crate::domain::events::{
    AccountStatus, Actor, DeveloperCreated, Event, IdempotencyKeyRecorded, IdempotencyRecord, Leg,
    SipAccountCreated, SipAccountDeleted, SipAccountUpdated, SipAliasAdded, SipAliasChanged,
    SipAliasRemoved, SubAccountStatusChanged, SubAccountUpdated,
};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::money::Currency;
use crate::store::RecordedEvent;

/// Sub-accounts the steps choose from. The last one is created only by a
/// `Create` step, so that postings on it may come before it exists.
const ACCOUNTS: usize = 4;

/// The other leg of a generated posting.
#[derive(Debug, Clone, Copy)]
enum Contra {
    Funding(u16),
    Adjustments,
    /// The ledger account of the sub-account with this index.
    SubAccount(usize),
    /// A name that is no ledger account.
    Bogus,
}

/// The defect of a generated event, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    None,
    BalanceAfter,
    Version,
    /// The version of the event before on the same stream.
    RepeatedVersion,
    /// Recorded on the stream of another sub-account.
    Stream,
    Currency,
    Developer,
    /// The legs do not sum to zero.
    Legs,
    /// A sequence number one too high.
    Seq,
}

/// The amount of a generated posting.
#[derive(Debug, Clone, Copy)]
enum Amount {
    /// Cents, with the scale of cents.
    Cents(i64),
    /// The same value in a scale of four digits.
    Scaled(i64),
    /// The whole balance taken away, to zero.
    ToZero,
    /// Half of `Decimal::MAX`, so that two of them overflow a balance.
    Huge,
}

#[derive(Debug, Clone)]
enum Step {
    Post {
        account: usize,
        adjustment: bool,
        amount: Amount,
        contra: Contra,
        /// No reference, a reference of its own, or one of four that
        /// other postings may use too.
        reference: Option<Option<u8>>,
        key: Option<u8>,
        damage: Damage,
        /// Keeps a posting on a sub-account that is closed or not created
        /// yet, which a writer would not record.
        raw: bool,
    },
    Status {
        account: usize,
        to: u8,
        wrong_from: bool,
    },
    Update {
        account: usize,
    },
    /// An `Idempotency-Key` record for an earlier posting (by its index
    /// modulo the postings so far), or for a sid no posting has, on the
    /// posting's sub-account or on `account`.
    Bind {
        account: Option<usize>,
        posting: Option<usize>,
        with_meta: bool,
    },
    Sip {
        account: usize,
    },
    Create,
    /// A SIP account on `account` whose SIP id is one of `SHARED_NAMES`
    /// (by index) or a name of its own.
    SipNamed {
        account: usize,
        name: Option<u8>,
    },
    /// Moves a SIP account (by index modulo those not deleted) to one of
    /// `SIP_DOMAINS`, with its SIP id and aliases.
    SipMove {
        sip: usize,
        domain: u8,
    },
    SipDelete {
        sip: usize,
    },
    AliasAdd {
        sip: usize,
        name: Option<u8>,
    },
    AliasChange {
        sip: usize,
        alias: usize,
        name: Option<u8>,
    },
    AliasRemove {
        sip: usize,
        alias: usize,
    },
    /// A sub-account that no step changes, with a login of its own, or
    /// with the login of sub-account `login_of` in upper case, which is
    /// taken.
    Login {
        login_of: Option<u8>,
    },
}

/// SIP ids and aliases that steps share, so that some claim a name that
/// is taken. Names are compared folded, so "alice" takes "Alice".
const SHARED_NAMES: [&str; 6] = ["alice", "Alice", "bob", "BOB", "carol", "dave"];

/// The domains of SIP accounts. Names are claimed per domain, compared in
/// lower case.
const SIP_DOMAINS: [&str; 2] = ["sip.example.com", "Moved.Example.com"];

fn contra() -> impl Strategy<Value = Contra> {
    prop_oneof![
        240 => (1u16..=4).prop_map(Contra::Funding),
        80 => Just(Contra::Adjustments),
        40 => (0..ACCOUNTS).prop_map(Contra::SubAccount),
        1 => Just(Contra::Bogus),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1500 => Just(Damage::None),
        1 => Just(Damage::BalanceAfter),
        1 => Just(Damage::Version),
        8 => Just(Damage::RepeatedVersion),
        1 => Just(Damage::Stream),
        1 => Just(Damage::Currency),
        1 => Just(Damage::Developer),
        1 => Just(Damage::Legs),
        1 => Just(Damage::Seq),
    ]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        32 => (-300i64..1000).prop_map(Amount::Cents),
        8 => (-300i64..1000).prop_map(Amount::Scaled),
        8 => Just(Amount::ToZero),
        1 => Just(Amount::Huge),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (
            0..ACCOUNTS,
            any::<bool>(),
            amount(),
            contra(),
            proptest::option::weighted(0.3, prop_oneof![49 => Just(None), 1 => (0u8..4).prop_map(Some)]),
            proptest::option::weighted(0.2, 0u8..4),
            damage(),
            proptest::bool::weighted(0.02),
        )
            .prop_map(|(account, adjustment, amount, contra, reference, key, damage, raw)| {
                Step::Post { account, adjustment, amount, contra, reference, key, damage, raw }
            }),
        2 => (0..ACCOUNTS, prop_oneof![9 => 0u8..2, 1 => Just(2u8)], proptest::bool::weighted(0.01))
            .prop_map(|(account, to, wrong_from)| Step::Status { account, to, wrong_from }),
        1 => (0..ACCOUNTS).prop_map(|account| Step::Update { account }),
        2 => (
            proptest::option::weighted(0.01, 0..ACCOUNTS),
            proptest::option::weighted(0.99, any::<usize>()),
            proptest::bool::weighted(0.99),
        )
            .prop_map(|(account, posting, with_meta)| Step::Bind { account, posting, with_meta }),
        1 => (0..ACCOUNTS).prop_map(|account| Step::Sip { account }),
        1 => Just(Step::Create),
    ]
}

fn shared_name() -> impl Strategy<Value = Option<u8>> {
    proptest::option::weighted(0.06, 0u8..SHARED_NAMES.len() as u8)
}

/// Steps that create, move and delete SIP accounts and aliases between
/// postings, which compact the views of a bulk fold once enough other
/// events came before them.
fn sip_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..ACCOUNTS, 1u16..=4, -300i64..1000).prop_map(|(account, method, cents)| Step::Post {
            account,
            adjustment: false,
            amount: Amount::Cents(cents),
            contra: Contra::Funding(method),
            reference: None,
            key: None,
            damage: Damage::None,
            raw: false,
        }),
        3 => (0..ACCOUNTS, shared_name()).prop_map(|(account, name)| Step::SipNamed { account, name }),
        2 => (any::<usize>(), 0u8..2).prop_map(|(sip, domain)| Step::SipMove { sip, domain }),
        1 => any::<usize>().prop_map(|sip| Step::SipDelete { sip }),
        3 => (any::<usize>(), shared_name()).prop_map(|(sip, name)| Step::AliasAdd { sip, name }),
        2 => (any::<usize>(), any::<usize>(), shared_name())
            .prop_map(|(sip, alias, name)| Step::AliasChange { sip, alias, name }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(sip, alias)| Step::AliasRemove { sip, alias }),
        1 => (0..ACCOUNTS, 0u8..2).prop_map(|(account, to)| Step::Status { account, to, wrong_from: false }),
        1 => (0..ACCOUNTS).prop_map(|account| Step::Update { account }),
        1 => proptest::option::weighted(0.02, 0..ACCOUNTS as u8 - 1).prop_map(|login_of| Step::Login { login_of }),
        1 => Just(Step::Create),
    ]
}

fn status(code: u8) -> AccountStatus {
    match code {
        0 => AccountStatus::Active,
        1 => AccountStatus::Suspended,
        _ => AccountStatus::Closed,
    }
}

/// Builds the events of the steps, numbered and versioned as a store
/// would, with the balances and statuses a correct writer would give, so
/// that most logs fold and the damaged ones fail at the damaged event.
struct Writer {
    events: Vec<RecordedEvent>,
    versions: HashMap<Sid, u64>,
    balances: HashMap<Sid, Decimal>,
    statuses: HashMap<Sid, AccountStatus>,
    developers: [Sid; 2],
    accounts: Vec<Sid>,
    postings: Vec<(Sid, usize)>,
    next_sid: u128,
    skipped: u64,
    /// The SIP accounts created and not deleted, in creation order.
    sips: Vec<WrittenSip>,
}

/// A SIP account of a `Writer`, with the aliases it lists in the order
/// that the state lists them.
struct WrittenSip {
    sid: Sid,
    account: usize,
    domain: String,
    aliases: Vec<Sid>,
}

impl Writer {
    fn new() -> Writer {
        let developers = [Sid::new(SidKind::Developer, 1), Sid::new(SidKind::Developer, 2)];
        let accounts = (0..ACCOUNTS).map(|index| Sid::new(SidKind::Account, 10 + index as u128));
        let mut writer = Writer {
            events: Vec::new(),
            versions: HashMap::new(),
            balances: HashMap::new(),
            statuses: HashMap::new(),
            developers,
            accounts: accounts.collect(),
            postings: Vec::new(),
            next_sid: 1000,
            skipped: 0,
            sips: Vec::new(),
        };
        for (index, sid) in developers.iter().enumerate() {
            let created = DeveloperCreated {
                sid: *sid,
                name: format!("Developer {index}"),
                api_key_sha256: "00".repeat(32),
            };
            writer.record(Actor::Platform, Event::DeveloperCreated(created), None, None);
        }
        for index in 0..ACCOUNTS - 1 {
            writer.create(index);
        }
        writer
    }

    fn sid(&mut self, kind: SidKind) -> Sid {
        self.next_sid += 1;
        Sid::new(kind, self.next_sid)
    }

    fn developer(&self, index: usize) -> Sid {
        self.developers[index % 2]
    }

    fn currency(index: usize) -> Currency {
        if index.is_multiple_of(2) {
            Currency::Sgd
        } else {
            Currency::Usd
        }
    }

    /// Records `event` on its own stream, or on `stream`.
    fn record(
        &mut self,
        actor: Actor,
        event: Event,
        idempotency: Option<IdempotencyRecord>,
        stream: Option<Sid>,
    ) {
        let seq = self.events.len() as u64 + 1 + self.skipped;
        let stream = stream.unwrap_or_else(|| event.stream());
        let version = self.versions.entry(stream).or_default();
        *version += 1;
        self.events.push(recorded(seq, stream, *version, actor, event, idempotency));
    }

    fn create(&mut self, index: usize) {
        let account = self.accounts[index];
        let developer = self.developer(index);
        let mut created = sub_account_created(account, developer, &format!("user{index}"));
        created.currency = Writer::currency(index);
        self.record(Actor::Developer(developer), Event::SubAccountCreated(created), None, None);
        self.statuses.entry(account).or_insert(AccountStatus::Active);
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Post { account, adjustment, amount, contra, reference, key, damage, raw } => {
                let account = if raw { account } else { self.open(account) };
                self.post(account, adjustment, amount, contra, reference, key, damage)
            }
            Step::Status { account, to, wrong_from } => {
                let sid = self.accounts[self.open(account)];
                let current = self.statuses.get(&sid).copied().unwrap_or(AccountStatus::Active);
                let from = if wrong_from { status((to + 1) % 3) } else { current };
                let to = status(to);
                self.statuses.insert(sid, to);
                let event =
                    Event::SubAccountStatusChanged(SubAccountStatusChanged { sid, from, to });
                self.record(Actor::Platform, event, None, None);
            }
            Step::Update { account } => {
                let sid = self.accounts[self.open(account)];
                let event = Event::SubAccountUpdated(SubAccountUpdated {
                    sid,
                    password_argon2: None,
                    first_name: Some(format!("First {}", self.events.len())),
                    last_name: None,
                    email: None,
                    mobile_phone: None,
                    domain: None,
                });
                self.record(Actor::Platform, event, None, None);
            }
            Step::Bind { account, posting, with_meta } => {
                let (resource, owner) = match posting {
                    Some(index) if !self.postings.is_empty() => {
                        self.postings[index % self.postings.len()]
                    }
                    Some(_) => return self.apply(Step::Update { account: 0 }),
                    None => (self.sid(SidKind::Transaction), 0),
                };
                let account = account.unwrap_or(owner);
                let stream = self.accounts[account];
                let record = with_meta.then(|| IdempotencyRecord {
                    key: format!("retry-{}", self.events.len()),
                    fingerprint: "11".repeat(32),
                    resource,
                });
                let event =
                    Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded { stream, resource });
                self.record(Actor::Developer(self.developer(account)), event, record, None);
            }
            Step::Sip { account } => {
                let account = self.open(account);
                let sip = self.sid(SidKind::SipAccount);
                let event = Event::SipAccountCreated(SipAccountCreated {
                    sid: sip,
                    account_sid: self.accounts[account],
                    sip_id: format!("sip{}", self.next_sid),
                    domain: "sip.example.com".to_string(),
                    digests: SipDigests { ha1_md5: "00".repeat(16), ha1_sha256: "00".repeat(32) },
                });
                self.record(Actor::Developer(self.developer(account)), event, None, None);
                let domain = "sip.example.com".to_string();
                self.sips.push(WrittenSip { sid: sip, account, domain, aliases: Vec::new() });
            }
            Step::Create if !self.statuses.contains_key(&self.accounts[ACCOUNTS - 1]) => {
                self.create(ACCOUNTS - 1);
            }
            Step::Create => self.apply(Step::Update { account: ACCOUNTS - 1 }),
            Step::SipNamed { account, name } => self.create_sip(account, name),
            Step::Login { login_of } => {
                let sid = self.sid(SidKind::Account);
                let login_id = match login_of {
                    Some(index) => format!("USER{index}"),
                    None => format!("extra{}", self.next_sid),
                };
                let developer = self.developer(0);
                let created = sub_account_created(sid, developer, &login_id);
                self.record(
                    Actor::Developer(developer),
                    Event::SubAccountCreated(created),
                    None,
                    None,
                );
            }
            Step::SipMove { sip, domain } => {
                let Some(index) = self.pick_sip(sip) else {
                    return self.create_sip(sip % ACCOUNTS, None);
                };
                let actor = Actor::Developer(self.developer(self.sips[index].account));
                let written = &mut self.sips[index];
                written.domain = SIP_DOMAINS[usize::from(domain) % SIP_DOMAINS.len()].to_string();
                let event = Event::SipAccountUpdated(SipAccountUpdated {
                    sid: written.sid,
                    account_sid: self.accounts[written.account],
                    domain: written.domain.clone(),
                    digests: SipDigests { ha1_md5: "11".repeat(16), ha1_sha256: "11".repeat(32) },
                });
                self.record(actor, event, None, None);
            }
            Step::SipDelete { sip } => {
                let Some(index) = self.pick_sip(sip) else {
                    return self.create_sip(sip % ACCOUNTS, None);
                };
                let written = self.sips.remove(index);
                let event = Event::SipAccountDeleted(SipAccountDeleted {
                    sid: written.sid,
                    account_sid: self.accounts[written.account],
                    alias_sids: written.aliases,
                });
                let actor = Actor::Developer(self.developer(written.account));
                self.record(actor, event, None, None);
            }
            Step::AliasAdd { sip, name } => {
                let Some(index) = self.pick_sip(sip) else {
                    return self.create_sip(sip % ACCOUNTS, name);
                };
                let alias = self.sid(SidKind::SipAlias);
                let name = self.sip_name(name);
                let actor = Actor::Developer(self.developer(self.sips[index].account));
                let written = &mut self.sips[index];
                written.aliases.push(alias);
                let event = Event::SipAliasAdded(SipAliasAdded {
                    sid: alias,
                    account_sid: self.accounts[written.account],
                    sip_sid: written.sid,
                    alias: name,
                    domain: written.domain.clone(),
                });
                self.record(actor, event, None, None);
            }
            Step::AliasChange { sip, alias, name } => {
                let Some((index, alias_index)) = self.pick_alias(sip, alias) else {
                    return self.apply(Step::AliasAdd { sip, name });
                };
                let name = self.sip_name(name);
                let written = &self.sips[index];
                let event = Event::SipAliasChanged(SipAliasChanged {
                    sid: written.aliases[alias_index],
                    sip_sid: written.sid,
                    alias: name,
                });
                let actor = Actor::Developer(self.developer(written.account));
                self.record(actor, event, None, None);
            }
            Step::AliasRemove { sip, alias } => {
                let Some((index, alias_index)) = self.pick_alias(sip, alias) else {
                    return self.apply(Step::AliasAdd { sip, name: None });
                };
                let actor = Actor::Developer(self.developer(self.sips[index].account));
                let written = &mut self.sips[index];
                let alias = written.aliases.remove(alias_index);
                let event =
                    Event::SipAliasRemoved(SipAliasRemoved { sid: alias, sip_sid: written.sid });
                self.record(actor, event, None, None);
            }
        }
    }

    /// Records a SIP account on the first open sub-account from `account`
    /// on, in the first of `SIP_DOMAINS`.
    fn create_sip(&mut self, account: usize, name: Option<u8>) {
        let account = self.open(account);
        let sid = self.sid(SidKind::SipAccount);
        let sip_id = self.sip_name(name);
        let domain = SIP_DOMAINS[0].to_string();
        let event = Event::SipAccountCreated(SipAccountCreated {
            sid,
            account_sid: self.accounts[account],
            sip_id,
            domain: domain.clone(),
            digests: SipDigests { ha1_md5: "00".repeat(16), ha1_sha256: "00".repeat(32) },
        });
        self.record(Actor::Developer(self.developer(account)), event, None, None);
        self.sips.push(WrittenSip { sid, account, domain, aliases: Vec::new() });
    }

    /// Returns one of `SHARED_NAMES` by index, or a name no other step uses.
    fn sip_name(&mut self, shared: Option<u8>) -> String {
        match shared {
            Some(index) => SHARED_NAMES[usize::from(index) % SHARED_NAMES.len()].to_string(),
            None => {
                self.next_sid += 1;
                format!("name{}", self.next_sid)
            }
        }
    }

    /// Returns the index of a SIP account not deleted, picked by `pick`
    /// modulo their number, or `None` when there is none.
    fn pick_sip(&self, pick: usize) -> Option<usize> {
        (!self.sips.is_empty()).then(|| pick % self.sips.len())
    }

    /// Returns the indexes of a SIP account and one of its aliases, or
    /// `None` when the picked SIP account has none.
    fn pick_alias(&self, sip: usize, alias: usize) -> Option<(usize, usize)> {
        let index = self.pick_sip(sip)?;
        let aliases = self.sips[index].aliases.len();
        (aliases > 0).then(|| (index, alias % aliases))
    }

    /// Returns the first sub-account from `index` on that exists and is
    /// not closed, or `index` when there is none.
    fn open(&self, index: usize) -> usize {
        let open = |index: &usize| {
            let status = self.statuses.get(&self.accounts[*index]);
            status.is_some_and(|status| *status != AccountStatus::Closed)
        };
        (0..ACCOUNTS).cycle().skip(index).take(ACCOUNTS).find(open).unwrap_or(index)
    }

    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        index: usize,
        adjustment: bool,
        amount: Amount,
        contra: Contra,
        reference: Option<Option<u8>>,
        key: Option<u8>,
        damage: Damage,
    ) {
        let account = self.accounts[index];
        let developer = self.developer(index);
        let balance = self.balances.get(&account).copied().unwrap_or_default();
        let amount = match amount {
            Amount::Cents(cents) => Decimal::new(cents, 2),
            Amount::Scaled(cents) => Decimal::new(cents * 100, 4),
            Amount::ToZero => -balance,
            Amount::Huge => Decimal::MAX / Decimal::TWO + Decimal::ONE,
        };

        // A writer never takes a balance below zero, so a negative amount
        // larger than the balance becomes a TOPUP of its size.
        let below_zero = balance.checked_add(amount).is_some_and(|after| after < Decimal::ZERO);
        let amount = if below_zero { -amount } else { amount };
        let balance_after = balance.checked_add(amount).unwrap_or(Decimal::MAX);

        let sid = self.sid(SidKind::Transaction);
        let reference = reference.map(|shared| match shared {
            Some(number) => format!("PAY-{number}"),
            None => format!("PAY-{}", self.next_sid),
        });
        let mut posting =
            top_up(sid, account, developer, amount, balance_after, reference.as_deref());
        posting.currency = Writer::currency(index);
        posting.legs[1] = Leg {
            account: match contra {
                Contra::Funding(method) => {
                    posting.pay_method = method;
                    let name = ["balance", "yeepay", "cash_on_arrival", "paypal"];
                    format!("funding:{}", name[method as usize - 1])
                }
                Contra::Adjustments => "adjustments".to_string(),
                Contra::SubAccount(other) => format!("subaccount:{}", self.accounts[other]),
                Contra::Bogus => "funding:nowhere".to_string(),
            },
            amount: -amount,
        };

        // Damage leaves the writer's balance as it was, since the log stops
        // folding at the damaged event.
        let mut stream = None;
        match damage {
            Damage::None => {}
            Damage::BalanceAfter if posting.balance_after >= Decimal::ONE => {
                posting.balance_after -= Decimal::ONE;
            }
            Damage::BalanceAfter => posting.balance_after += Decimal::ONE,
            Damage::Version => {
                *self.versions.entry(account).or_default() += 1;
            }
            Damage::RepeatedVersion => {
                let version = self.versions.entry(account).or_default();
                *version = version.saturating_sub(1);
            }
            Damage::Stream => stream = Some(self.accounts[(index + 1) % ACCOUNTS]),
            Damage::Currency => posting.currency = Writer::currency(index + 1),
            Damage::Developer => posting.developer_sid = self.developer(index + 1),
            Damage::Legs => {
                posting.legs[1].amount =
                    Decimal::ZERO - posting.legs[0].amount / Decimal::TWO - Decimal::ONE
            }
            Damage::Seq => self.skipped += 1,
        }
        if damage == Damage::None {
            self.balances.insert(account, balance_after);
        }

        let idempotency = key.map(|number| IdempotencyRecord {
            key: format!("key-{number}"),
            fingerprint: "00".repeat(32),
            resource: sid,
        });
        let event = if adjustment {
            Event::BalanceAdjusted(posting)
        } else {
            Event::BalanceToppedUp(posting)
        };
        self.record(Actor::Developer(developer), event, idempotency, stream);
        self.postings.push((sid, index));
    }
}

fn fold_one_at_a_time(events: &[RecordedEvent]) -> Result<State, ApplyError> {
    let mut state = State::default();
    for recorded in events {
        state.apply_recorded(recorded)?;
    }
    Ok(state)
}

/// Folds in bulk. An error comes with `true` when the fold of an event
/// returned it, and `false` when `finish` did.
fn fold_in_bulk(events: &[RecordedEvent]) -> Result<State, (ApplyError, bool)> {
    let mut fold = BulkFold::new();
    for recorded in events {
        fold.apply_recorded(recorded).map_err(|error| (error, true))?;
    }
    fold.finish().map_err(|error| (error, false))
}

/// Folds `steps` both ways and compares the results.
fn check_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut writer = Writer::new();
    for step in steps {
        writer.apply(step);
    }
    let events = &writer.events;
    let exact = fold_one_at_a_time(events);
    let bulk = fold_in_bulk(events);
    match (&exact, &bulk) {
        (Ok(expected), Ok(state)) => {
            prop_assert_eq!(state.state_hash(), expected.state_hash(), "state hashes");
            prop_assert!(state == expected, "the bulk fold builds the same views");
        }
        (Err(exact), Err((bulk, while_folding))) => {
            // The bulk fold leaves some checks for `finish`, and so may
            // stop later than the one-at-a-time fold, never earlier.
            prop_assert!(bulk.seq >= exact.seq, "bulk {} before {}", bulk, exact);
            let failed_event =
                events.iter().find(|recorded| recorded.seq == exact.seq).map(|r| &r.event);
            let posting =
                matches!(failed_event, Some(Event::BalanceToppedUp(_) | Event::BalanceAdjusted(_)));
            if *while_folding && bulk.seq == exact.seq && posting {
                prop_assert_eq!(&bulk.reason, &exact.reason, "the same reason at {}", exact.seq);
            }
            // Every event before the one that breaks the log passes all
            // checks, the deferred ones included. An event that is neither
            // a posting nor an `Idempotency-Key` record is checked at once
            // in both folds, so the bulk fold stops there too.
            let deferred = matches!(
                failed_event,
                Some(Event::BalanceToppedUp(_) | Event::BalanceAdjusted(_))
                    | Some(Event::IdempotencyKeyRecorded(_))
            );
            if !deferred {
                prop_assert!(*while_folding, "bulk {} stops while folding", bulk);
                prop_assert_eq!(bulk.seq, exact.seq, "the same event: {}", exact);
                prop_assert_eq!(&bulk.reason, &exact.reason, "the same reason at {}", exact.seq);
            }
        }
        (Ok(_), Err((error, _))) => {
            prop_assert!(false, "only the bulk fold fails: {}", error);
        }
        (Err(error), Ok(_)) => {
            prop_assert!(false, "only the one-at-a-time fold fails: {}", error);
        }
    }
    Ok(())
}

proptest! {
    // A fixed seed, so that every run checks the same logs.
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(1),
        ..ProptestConfig::default()
    })]

    /// Random logs of postings between events on the same sub-accounts.
    #[test]
    fn bulk_fold_matches_one_at_a_time(steps in proptest::collection::vec(step(), 0..150)) {
        check_steps(steps)?;
    }

    /// Random logs that create, move and delete SIP accounts and aliases,
    /// some claiming names that are taken, between postings. The views
    /// of a bulk fold stage these changes and compact them before
    /// postings, so a name may be released before a compaction and
    /// claimed again after it.
    #[test]
    fn sip_changes_fold_the_same_in_bulk(steps in proptest::collection::vec(sip_step(), 0..150)) {
        check_steps(steps)?;
    }
}

/// Builds a log that folds. Its postings, some with the other leg on a
/// sub-account, come between updates, status changes, SIP accounts and
/// `Idempotency-Key` records on the same sub-accounts.
fn mixed_log() -> Vec<RecordedEvent> {
    let mut writer = Writer::new();
    writer.apply(Step::Create);
    for round in 0..40usize {
        let account = round % ACCOUNTS;
        let contra = match round % 5 {
            0 => Contra::SubAccount((account + 1) % ACCOUNTS),
            1 => Contra::Adjustments,
            _ => Contra::Funding(1 + (round % 4) as u16),
        };
        let amount =
            if round % 7 == 6 { Amount::ToZero } else { Amount::Cents(100 + round as i64) };
        for offset in 0..2 {
            writer.apply(Step::Post {
                account: (account + offset) % ACCOUNTS,
                adjustment: round % 3 == 0,
                amount,
                contra,
                reference: (round % 2 == 0).then_some(None),
                key: (round % 4 == 0).then_some((round % 3) as u8),
                damage: Damage::None,
                raw: false,
            });
        }
        match round % 6 {
            0 => writer.apply(Step::Update { account }),
            1 => writer.apply(Step::Bind { account: None, posting: Some(round), with_meta: true }),
            2 => writer.apply(Step::Status { account, to: 1, wrong_from: false }),
            3 => writer.apply(Step::Status {
                account: (account + 3) % ACCOUNTS,
                to: 0,
                wrong_from: false,
            }),
            4 => writer.apply(Step::Sip { account }),
            _ => {}
        }
    }
    writer.events
}

/// Damages event `index` of `events` in one of several ways, or returns
/// `None` when the way does not apply to that event.
fn damaged(events: &[RecordedEvent], index: usize, way: usize) -> Option<Vec<RecordedEvent>> {
    let mut events = events.to_vec();
    let recorded = &mut events[index];
    match (way, &mut recorded.event) {
        (0, _) => recorded.version += 1,
        (1, _) => recorded.seq += 1,
        (2, _) => recorded.version -= 1,
        (3, Event::BalanceToppedUp(posting) | Event::BalanceAdjusted(posting)) => {
            posting.balance_after += Decimal::new(1, 2);
        }
        (4, Event::BalanceToppedUp(posting) | Event::BalanceAdjusted(posting)) => {
            posting.legs[1].account = "funding:nowhere".to_string();
        }
        (5, Event::BalanceToppedUp(posting) | Event::BalanceAdjusted(posting)) => {
            posting.legs[1].amount = Decimal::MAX;
            posting.legs[0].amount = Decimal::MIN;
        }
        (6, Event::SubAccountStatusChanged(change)) => change.to = AccountStatus::Closed,
        _ => return None,
    }
    Some(events)
}

#[test]
fn damaged_event_fails_both_folds() {
    let events = mixed_log();
    let expected = fold_one_at_a_time(&events).expect("the log folds");
    let bulk = fold_in_bulk(&events).map_err(|(error, _)| error).expect("folds in bulk");
    assert!(bulk == expected, "the undamaged log folds to the same state");
    let mut checked = 0;
    for index in 0..events.len() {
        for way in 0..7 {
            let Some(damaged) = damaged(&events, index, way) else {
                continue;
            };
            let exact = fold_one_at_a_time(&damaged);
            let bulk = fold_in_bulk(&damaged);
            match (exact, bulk) {
                (Ok(expected), Ok(state)) => {
                    assert!(state == expected, "event {index} damaged by way {way}");
                }
                (Err(exact), Err((bulk, true))) => {
                    assert_eq!(bulk, exact, "event {index} damaged by way {way}");
                    checked += 1;
                }
                (exact, bulk) => panic!(
                    "event {index} damaged by way {way}: {:?} and {:?}",
                    exact.map(|_| ()),
                    bulk.map(|_| ())
                ),
            }
        }
    }
    assert!(checked > events.len() * 3, "most damage breaks the log: {checked}");
}
