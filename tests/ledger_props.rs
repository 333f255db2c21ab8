//! Property tests of the ledger, in process. Random sequences of commands
//! (developers, sub-accounts, postings with random amounts, types, pay
//! methods and references, status changes) go through `Ledger::submit` on a
//! real `SledStore` in a temporary directory. Each group of commands is sent
//! at once, so that the writer batches them. After every group the published state
//! must keep the double-entry and prepaid rules; at the end the log must
//! hold balanced legs and chained balances, and recovering a reopened store
//! must give exactly the live state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use proptest::prelude::*;
use rust_decimal::Decimal;

use subledger::crypto::{hash_api_key, hash_login_password};
use subledger::domain::error::DomainError;
use subledger::domain::events::{AccountStatus, Actor, BalancePosted, Event};
use subledger::domain::ids::{Sid, SidKind};
use subledger::domain::money::Currency;
use subledger::domain::posting::{contra_account, PAY_METHODS};
use subledger::ledger::command::{NewPosting, NewSubAccount, SubAccountChanges};
use subledger::ledger::recovery::{recover, replay_all, replay_tail};
use subledger::ledger::{Command, CommandContext, Ledger, Outcome, Secret, WriterConfig};
use subledger::projection::{subaccount_ledger_name, PostingType, State};
use subledger::store::{EventStore, SledStore, GENESIS_HASH};

/// Developers created before the random commands.
const DEVELOPERS: usize = 2;
/// Currencies the random sub-accounts use.
const CURRENCIES: [Currency; 3] = [Currency::Sgd, Currency::Usd, Currency::Eur];
/// The login password of every generated sub-account.
const PASSWORD: &str = "secret123";
/// How long the test waits for a background snapshot to release the store.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);
/// How long reopening the store may wait for the previous handle to let go.
const REOPEN_WAIT: Duration = Duration::from_secs(10);

/// One random step. Indexes pick among the sub-accounts created so far
/// (modulo their count), so every sequence is meaningful.
#[derive(Debug, Clone)]
enum Op {
    CreateAccount {
        developer: usize,
        currency: usize,
    },
    Post(PostOp),
    SetStatus {
        account: usize,
        status: AccountStatus,
    },
    /// Sends an earlier posting again, as a client retry would.
    Repeat {
        posting: usize,
    },
}

#[derive(Debug, Clone)]
struct PostOp {
    account: usize,
    kind: PostingType,
    amount: Decimal,
    pay_method: usize,
    reference: Option<u8>,
    desc: Option<u8>,
    idempotency_key: Option<u8>,
}

/// Draws an amount with up to four fraction digits, mostly small and
/// sometimes near the 10^9 limit. TOPUPs are positive, and ADJUSTMENTs are
/// non-zero with either sign.
fn amount(kind: PostingType) -> impl Strategy<Value = Decimal> {
    let small = (1i64..=2_000_000, 0u32..=4);
    let large = (1i64..=9_999_999_999_999, Just(4u32));
    let magnitude = prop_oneof![9 => small, 1 => large]
        .prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale));
    (magnitude, any::<bool>()).prop_map(move |(value, negative)| match kind {
        PostingType::Adjustment if negative => -value,
        _ => value,
    })
}

fn post_op() -> impl Strategy<Value = PostOp> {
    let kind = prop_oneof![Just(PostingType::TopUp), Just(PostingType::Adjustment)];
    kind.prop_flat_map(|kind| {
        (
            0usize..8,
            amount(kind),
            0..PAY_METHODS.len(),
            proptest::option::of(0u8..6),
            proptest::option::of(0u8..3),
            proptest::option::weighted(0.2, 0u8..4),
        )
            .prop_map(
                move |(account, amount, pay_method, reference, desc, idempotency_key)| PostOp {
                    account,
                    kind,
                    amount,
                    pay_method,
                    reference,
                    desc,
                    idempotency_key,
                },
            )
    })
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        2 => Just(AccountStatus::Active),
        2 => Just(AccountStatus::Suspended),
        1 => Just(AccountStatus::Closed),
    ];
    prop_oneof![
        2 => (0..DEVELOPERS, 0..CURRENCIES.len())
            .prop_map(|(developer, currency)| Op::CreateAccount { developer, currency }),
        12 => post_op().prop_map(Op::Post),
        1 => (0usize..8, status).prop_map(|(account, status)| Op::SetStatus { account, status }),
        3 => (0usize..64).prop_map(|posting| Op::Repeat { posting }),
    ]
}

/// Draws groups of random steps. The test sends each group at once.
fn groups() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 1..12), 1..10)
}

fn login_password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_login_password(PASSWORD))
}

/// What the test sent and got back.
struct Run {
    developers: Vec<Sid>,
    accounts: Vec<(Sid, Sid)>,
    logins: usize,
    /// Postings sent so far, for `Op::Repeat`.
    sent: Vec<(CommandContext, NewPosting)>,
    /// Acknowledged postings (`Outcome::Done`): sid to (account, amount).
    posted: BTreeMap<Sid, (Sid, Decimal)>,
}

fn context(actor: Actor, idempotency: Option<(String, String)>) -> CommandContext {
    CommandContext { actor, request_id: "props".to_string(), idempotency }
}

fn new_account(developer: Sid, login_id: String, currency: Currency) -> NewSubAccount {
    NewSubAccount {
        sid: Sid::generate(SidKind::Account),
        developer,
        login_id,
        password: Secret(PASSWORD.to_string()),
        password_argon2: login_password_hash().to_string(),
        first_name: None,
        last_name: None,
        email: None,
        mobile_phone: None,
        domain: "sip.example.com".to_string(),
        currency,
        sip_sid: Sid::generate(SidKind::SipAccount),
        alias_sid: Sid::generate(SidKind::SipAlias),
    }
}

/// Creates developer number `index` as the platform.
async fn create_developer(ledger: &Ledger, index: usize) -> Result<Sid, TestCaseError> {
    let sid = Sid::generate(SidKind::Developer);
    let command = Command::CreateDeveloper {
        sid,
        name: format!("developer {index}"),
        api_key_sha256: hex::encode(hash_api_key(&format!("key-{index}"))),
    };
    let result = ledger.submit(context(Actor::Platform, None), command).await;
    prop_assert_eq!(result, Ok(Outcome::Done(sid)), "developer {} created", index);
    Ok(sid)
}

/// Opens a new store in `directory` and starts a writer on it.
fn start_ledger(
    directory: &Path,
    snapshot_interval: u64,
) -> (Arc<SledStore>, Ledger, JoinHandle<()>) {
    let store = Arc::new(SledStore::open(directory).expect("open a new store"));
    let config = WriterConfig { snapshot_interval_events: snapshot_interval };
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let (ledger, writer) = Ledger::start(dyn_store, State::default(), config);
    (store, ledger, writer)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build a runtime")
}

impl Run {
    /// Builds the command for one step, or `None` when no sub-account
    /// exists yet for a posting or status change.
    fn command(&mut self, op: &Op) -> Option<(CommandContext, Command)> {
        match op {
            Op::CreateAccount { developer, currency } => {
                let developer = self.developers[*developer];
                self.logins += 1;
                let login_id = format!("user{:04}", self.logins);
                let new = new_account(developer, login_id, CURRENCIES[*currency]);
                self.accounts.push((new.sid, developer));
                let actor = Actor::Developer(developer);
                Some((context(actor, None), Command::CreateSubAccount(Box::new(new))))
            }
            Op::SetStatus { account, status } => {
                let (sid, developer) = *self.pick(*account)?;
                let changes = SubAccountChanges { status: Some(*status), ..Default::default() };
                let command = Command::UpdateSubAccount { sid, changes: Box::new(changes) };
                Some((context(Actor::Developer(developer), None), command))
            }
            Op::Repeat { posting } => {
                if self.sent.is_empty() {
                    return None;
                }
                let (context, earlier) = &self.sent[posting % self.sent.len()];
                let retry =
                    NewPosting { sid: Sid::generate(SidKind::Transaction), ..earlier.clone() };
                Some((context.clone(), Command::Post(Box::new(retry))))
            }
            Op::Post(post) => {
                let (account, developer) = *self.pick(post.account)?;
                let pay_method = PAY_METHODS[post.pay_method].0;
                let posting = NewPosting {
                    sid: Sid::generate(SidKind::Transaction),
                    account,
                    kind: post.kind,
                    amount: post.amount,
                    pay_method,
                    refer_trans_id: post.reference.map(|number| format!("ref-{number}")),
                    desc: post.desc.map(|number| format!("desc {number}")),
                };
                // Equal steps give equal fingerprints, as equal requests do.
                let idempotency = post.idempotency_key.map(|key| {
                    let fingerprint = format!(
                        "{account}|{}|{}|{pay_method}|{:?}|{:?}",
                        post.kind.as_str(),
                        post.amount,
                        posting.refer_trans_id,
                        posting.desc
                    );
                    (format!("key-{key}"), fingerprint)
                });
                let context = context(Actor::Developer(developer), idempotency);
                self.sent.push((context.clone(), posting.clone()));
                Some((context, Command::Post(Box::new(posting))))
            }
        }
    }

    fn pick(&self, index: usize) -> Option<&(Sid, Sid)> {
        if self.accounts.is_empty() {
            return None;
        }
        self.accounts.get(index % self.accounts.len())
    }
}

/// Checks the rules every published state keeps.
fn check_state(state: &State, run: &Run) -> Result<(), TestCaseError> {
    // All ledger accounts together sum to zero in each currency.
    let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for ((_, currency), balance) in state.ledger_balances.iter() {
        *totals.entry(*currency).or_default() += *balance;
    }
    for (currency, total) in &totals {
        prop_assert!(total.is_zero(), "ledger accounts in {currency} sum to {total}");
    }

    for account in state.accounts.values() {
        let sid = account.sid;
        prop_assert!(account.balance >= Decimal::ZERO, "balance of {sid} is {}", account.balance);

        let postings = state.account_transactions.get(&sid).cloned().unwrap_or_default();
        let mut running = Decimal::ZERO;
        for position in postings.iter() {
            let transaction = state.posting(position).expect("listed posting exists");
            prop_assert_eq!(transaction.account(), sid, "account of posting {}", position);
            let by_sid = state.transaction(transaction.sid()).expect("posting found by sid");
            prop_assert!(std::ptr::eq(by_sid, transaction), "posting {} by sid", position);
            running += transaction.amount;
            prop_assert_eq!(
                transaction.balance_after,
                running,
                "balance_after of {}",
                transaction.sid()
            );
        }
        prop_assert_eq!(account.balance, running, "balance of {} is the sum of its postings", sid);

        let ledger_name = subaccount_ledger_name(sid);
        let ledger_balance = state.ledger_balances.get(&(ledger_name, account.currency));
        prop_assert_eq!(
            ledger_balance.copied().unwrap_or_default(),
            account.balance,
            "ledger balance of {}",
            sid
        );

        let acknowledged: Decimal = run
            .posted
            .values()
            .filter(|(account_sid, _)| *account_sid == sid)
            .map(|(_, amount)| *amount)
            .sum();
        prop_assert_eq!(account.balance, acknowledged, "acknowledged postings of {}", sid);
    }
    for (sid, (account, amount)) in &run.posted {
        let transaction = state.transaction(*sid);
        prop_assert!(transaction.is_some(), "acknowledged posting {} is recorded", sid);
        if let Some(transaction) = transaction {
            prop_assert_eq!(transaction.account(), *account, "account of {}", sid);
            prop_assert_eq!(transaction.amount, *amount, "amount of {}", sid);
        }
    }
    Ok(())
}

/// Checks one command's result against the published state.
fn check_result(
    state: &State,
    command: &Command,
    result: &Result<Outcome, DomainError>,
    run: &mut Run,
) -> Result<(), TestCaseError> {
    match result {
        Err(DomainError::ConcurrencyConflict(message)) => {
            return Err(TestCaseError::fail(format!("a decided event did not apply: {message}")));
        }
        Err(DomainError::Unavailable(message)) => {
            return Err(TestCaseError::fail(format!("the writer stopped: {message}")));
        }
        Err(DomainError::Invalid { message, .. }) => {
            return Err(TestCaseError::fail(format!("a valid command was rejected: {message}")));
        }
        _ => {}
    }
    let Command::Post(posting) = command else {
        return Ok(());
    };
    match result {
        Ok(Outcome::Done(sid)) => {
            prop_assert_eq!(*sid, posting.sid, "a new posting keeps its sid");
            run.posted.insert(*sid, (posting.account, posting.amount));
        }
        Ok(Outcome::Replayed(sid)) => {
            // Replays come from a reference or an Idempotency-Key, and the
            // original agrees with the repeat in everything compared.
            let original = state.transaction(*sid);
            prop_assert!(original.is_some(), "replayed posting {} exists", sid);
            if let Some(original) = original {
                prop_assert_eq!(original.account(), posting.account, "replayed account");
                prop_assert_eq!(original.amount, posting.amount, "replayed amount");
                prop_assert_eq!(original.kind, posting.kind, "replayed type");
                prop_assert_eq!(original.desc(), posting.desc.as_deref(), "replayed desc");
            }
        }
        Err(DomainError::InsufficientBalance(_)) => {
            prop_assert!(posting.amount < Decimal::ZERO, "a positive posting hit the guard");
        }
        Err(DomainError::Closed(_)) => {
            let status = state.accounts.get(&posting.account).map(|account| account.status);
            prop_assert_eq!(status, Some(AccountStatus::Closed), "only closed accounts reject");
        }
        Err(DomainError::NotFound(_) | DomainError::IdempotencyMismatch { .. }) => {}
        Err(other) => return Err(TestCaseError::fail(format!("unexpected rejection: {other}"))),
    }
    Ok(())
}

/// Checks every posting in the log: two legs that sum to zero, on the
/// sub-account and the contra account its type and pay method name, and a
/// `balance_after` that continues the sub-account's previous one.
fn check_log(store: &dyn EventStore) -> Result<u64, TestCaseError> {
    let mut balances: BTreeMap<Sid, Decimal> = BTreeMap::new();
    let mut postings = 0;
    for raw in store.read_raw_from(1) {
        let raw = raw.map_err(|error| TestCaseError::fail(format!("read failed: {error}")))?;
        let recorded =
            raw.decode().map_err(|error| TestCaseError::fail(format!("decode failed: {error}")))?;
        let (kind, posted): (PostingType, &BalancePosted) = match &recorded.event {
            Event::BalanceToppedUp(posted) => (PostingType::TopUp, posted),
            Event::BalanceAdjusted(posted) => (PostingType::Adjustment, posted),
            _ => continue,
        };
        postings += 1;
        let [own, contra] = &posted.legs;
        prop_assert_eq!(own.amount + contra.amount, Decimal::ZERO, "legs of {}", posted.sid);
        prop_assert_eq!(&own.account, &subaccount_ledger_name(posted.account_sid), "first leg");
        prop_assert_eq!(own.amount, posted.amount, "first leg amount of {}", posted.sid);
        let expected_contra = contra_account(kind, posted.pay_method);
        prop_assert_eq!(&contra.account, &expected_contra, "contra leg of {}", posted.sid);
        if kind == PostingType::TopUp {
            prop_assert!(contra.account.starts_with("funding:"), "TOPUP contra {}", contra.account);
        } else {
            prop_assert_eq!(contra.account.as_str(), "adjustments", "ADJUSTMENT contra");
        }

        let before = balances.entry(posted.account_sid).or_default();
        prop_assert_eq!(*before + posted.amount, posted.balance_after, "chain of {}", posted.sid);
        prop_assert!(posted.balance_after >= Decimal::ZERO, "{} goes negative", posted.sid);
        *before = posted.balance_after;
    }
    Ok(postings)
}

/// Sends every group and checks the results and the published state after each.
async fn drive(ledger: &Ledger, run: &mut Run, groups: &[Vec<Op>]) -> Result<(), TestCaseError> {
    for group in groups {
        let commands: Vec<(CommandContext, Command)> =
            group.iter().filter_map(|op| run.command(op)).collect();
        let results = join_all(
            commands
                .iter()
                .map(|(context, command)| ledger.submit(context.clone(), command.clone())),
        )
        .await;
        let state = ledger.state();
        for ((_, command), result) in commands.iter().zip(&results) {
            check_result(&state, command, result, run)?;
        }
        check_state(&state, run)?;
    }
    Ok(())
}

/// Runs one case on a fresh store and checks the log it leaves. Returns the
/// live state after the writer has stopped and released the store.
fn run_case(
    directory: &Path,
    groups: &[Vec<Op>],
    snapshot_interval: u64,
) -> Result<State, TestCaseError> {
    let (store, ledger, writer) = start_ledger(directory, snapshot_interval);
    let mut run = Run {
        developers: Vec::new(),
        accounts: Vec::new(),
        logins: 0,
        sent: Vec::new(),
        posted: BTreeMap::new(),
    };
    let driven = runtime().block_on(async {
        for index in 0..DEVELOPERS {
            run.developers.push(create_developer(&ledger, index).await?);
        }
        drive(&ledger, &mut run, groups).await
    });
    let live = State::clone(&ledger.state());
    ledger.stop();
    writer.join().expect("the writer thread exits cleanly");
    drop(ledger);
    driven?;

    let postings = check_log(store.as_ref())?;
    prop_assert_eq!(postings as usize, live.transactions.len(), "postings in the log");

    // A background snapshot may still hold the store, so wait for it.
    let started = Instant::now();
    while Arc::strong_count(&store) > 1 {
        prop_assert!(started.elapsed() < SNAPSHOT_WAIT, "a snapshot kept the store open");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(live)
}

fn check_recovery(directory: &Path, live: &State) -> Result<(), TestCaseError> {
    // sled releases its file lock when its last handle is gone, which can
    // trail the drop of the store by a moment (its flusher thread exits on
    // its own schedule), so reopening retries for a bounded time.
    let started = Instant::now();
    let store = loop {
        match SledStore::open(directory) {
            Ok(store) => break store,
            Err(_) if started.elapsed() < REOPEN_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("reopen the store: {error}"),
        }
    };
    let recovered = recover(&store).map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(recovered.state.state_hash(), live.state_hash(), "state hash after recovery");
    prop_assert!(recovered.state == *live, "recovered state equals the live state");

    let (replayed, _) = replay_tail(&store, State::default(), GENESIS_HASH)
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(replayed.state_hash(), live.state_hash(), "state hash after full replay");
    prop_assert!(replayed == *live, "fully replayed state equals the live state");

    let (bulk, _) = replay_all(&store).map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(bulk.state_hash(), live.state_hash(), "state hash after a bulk replay");
    prop_assert!(bulk == *live, "the state of a bulk replay equals the live state");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ledger_keeps_invariants(
        groups in groups(),
        snapshot_interval in prop_oneof![Just(0u64), Just(4u64), Just(25u64)],
    ) {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        let path = directory.path().join("log");
        let live = run_case(&path, &groups, snapshot_interval)?;
        check_recovery(&path, &live)?;
    }
}

/// Attempts at sending identical postings into one writer batch.
const SAME_BATCH_ATTEMPTS: usize = 20;
/// Identical postings sent at once in each attempt.
const SAME_BATCH_COPIES: usize = 8;

/// Identical postings that meet in one writer batch post once: each later
/// copy is decided against the state the first one produced.
#[test]
fn identical_postings_in_one_batch() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let (_store, ledger, writer) = start_ledger(&directory.path().join("log"), 0);
    let outcome: Result<(), TestCaseError> = runtime().block_on(async {
        let developer = create_developer(&ledger, 0).await?;
        let new = new_account(developer, "batch01".to_string(), Currency::Sgd);
        let account = new.sid;
        let actor = Actor::Developer(developer);
        let created = ledger.submit(context(actor, None), Command::CreateSubAccount(Box::new(new)));
        assert_eq!(created.await, Ok(Outcome::Done(account)), "sub-account created");

        let mut single_batches = 0;
        for attempt in 0..SAME_BATCH_ATTEMPTS {
            let batches_before = ledger.stats.batches.load(Ordering::Relaxed);
            let copies = (0..SAME_BATCH_COPIES).map(|_| {
                let posting = NewPosting {
                    sid: Sid::generate(SidKind::Transaction),
                    account,
                    kind: PostingType::TopUp,
                    amount: Decimal::ONE,
                    pay_method: 4,
                    refer_trans_id: Some(format!("batch-{attempt}")),
                    desc: None,
                };
                ledger.submit(context(actor, None), Command::Post(Box::new(posting)))
            });
            let results = join_all(copies).await;
            if ledger.stats.batches.load(Ordering::Relaxed) - batches_before == 1 {
                single_batches += 1;
            }

            let created: Vec<Sid> = results
                .iter()
                .filter_map(|result| match result {
                    Ok(Outcome::Done(sid)) => Some(*sid),
                    _ => None,
                })
                .collect();
            assert_eq!(created.len(), 1, "attempt {attempt}: one posting created");
            let replayed = Ok(Outcome::Replayed(created[0]));
            let replays = results.iter().filter(|result| **result == replayed).count();
            assert_eq!(replays, SAME_BATCH_COPIES - 1, "attempt {attempt}: the others replayed");
        }
        assert!(single_batches > 0, "no attempt put all copies into one batch");

        let balance = ledger.state().accounts[&account].balance;
        assert_eq!(balance, Decimal::from(SAME_BATCH_ATTEMPTS), "one posting per attempt");
        Ok(())
    });
    ledger.stop();
    writer.join().expect("the writer thread exits cleanly");
    outcome.expect("developer created");
}
