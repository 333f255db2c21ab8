//! Heap cost of the projections per posting. Folds a developer, sub-accounts
//! and TOPUP postings (round-robin, each with a unique `refer_trans_id`, as
//! the load generator sends them) straight into a `State`, and counts the
//! bytes allocated before and after the postings.
//!
//! It then decodes a snapshot of that state, as a start from the snapshot
//! would. It folds WRITES more postings into the decoded state, each on a
//! sub-account drawn at random. After every `PUBLISH_EVERY` postings it
//! keeps a copy of the state, as the writer publishes one per batch.
//! It reports the peak of the heap during those writes and the heap of a
//! state decoded from a snapshot of the result: the difference is what
//! the layers of the maps that writes change cost over a fresh start.
//!
//! ```text
//! cargo run --release --example projection_memory -- [ACCOUNTS] [POSTINGS] [WRITES]
//! ```
//!
//! Defaults: 100,000 sub-accounts, 1,000,000 postings and 300,000 writes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use subledger::domain::events::{
    Actor, BalancePosted, DeveloperCreated, Event, EventMeta, Leg, SubAccountCreated,
};
use subledger::domain::ids::{Sid, SidKind};
use subledger::domain::money::Currency;
use subledger::domain::posting::contra_account;
use subledger::projection::{subaccount_ledger_name, PostingType, State, Transaction};

/// Counts the bytes currently allocated through the system allocator.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's layout and only
// adds bookkeeping of the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ACCOUNTS_DEFAULT: usize = 100_000;
const POSTINGS_DEFAULT: usize = 1_000_000;
const WRITES_DEFAULT: usize = 300_000;
/// Postings between two published copies of the state during the writes,
/// about the batch size of `loadgen` at 16 clients.
const PUBLISH_EVERY: usize = 6;
/// `pay_method` of every posting: 4, PayPal.
const PAY_METHOD: u16 = 4;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Returns the CPU time this thread has used, in seconds. Wall time varies
/// on a shared machine, where other processes take turns on the cores.
fn thread_cpu_seconds() -> f64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `time` is a valid `timespec` for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(status, 0, "the thread CPU clock is readable");
    time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9
}

fn meta(actor: Actor, seq: u64) -> EventMeta {
    let recorded_at =
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + chrono::Duration::seconds(seq as i64);
    EventMeta { recorded_at, actor, request_id: format!("{seq:032x}"), idempotency: None }
}

/// Folds one event, checking it applies.
fn fold(state: &mut State, actor: Actor, event: Event) {
    let seq = state.last_seq + 1;
    state.apply(seq, &meta(actor, seq), &event).expect("a built event applies");
}

fn sub_account(sid: Sid, developer: Sid, index: usize) -> Event {
    Event::SubAccountCreated(SubAccountCreated {
        sid,
        developer_sid: developer,
        login_id: format!("load{index:07}"),
        password_argon2: String::new(),
        first_name: None,
        last_name: None,
        email: None,
        mobile_phone: None,
        domain: "sip.example.com".to_string(),
        currency: Currency::DEFAULT,
    })
}

fn topup(account: Sid, developer: Sid, index: usize, balance_after: Decimal) -> Event {
    let amount = Decimal::new(100, 2);
    Event::BalanceToppedUp(BalancePosted {
        sid: Sid::generate_in_time_order(SidKind::Transaction),
        account_sid: account,
        developer_sid: developer,
        amount,
        currency: Currency::DEFAULT,
        pay_method: PAY_METHOD,
        refer_trans_id: Some(format!("build-{index:010}")),
        desc: None,
        legs: [
            Leg { account: subaccount_ledger_name(account).to_string(), amount },
            Leg { account: contra_account(PostingType::TopUp, PAY_METHOD), amount: -amount },
        ],
        balance_after,
    })
}

fn argument(position: usize, default: usize) -> usize {
    std::env::args()
        .nth(position)
        .map(|text| text.parse().expect("arguments are whole numbers"))
        .unwrap_or(default)
}

fn main() {
    let accounts_count = argument(1, ACCOUNTS_DEFAULT);
    let postings = argument(2, POSTINGS_DEFAULT);
    let writes = argument(3, WRITES_DEFAULT);
    let mut state = State::default();

    // The developer and its sub-accounts.
    let developer = Sid::generate(SidKind::Developer);
    let created = DeveloperCreated {
        sid: developer,
        name: "Memory".to_string(),
        api_key_sha256: "00".repeat(32),
    };
    fold(&mut state, Actor::Platform, Event::DeveloperCreated(created));
    let accounts: Vec<Sid> = (0..accounts_count).map(|_| Sid::generate(SidKind::Account)).collect();
    let actor = Actor::Developer(developer);
    for (index, sid) in accounts.iter().enumerate() {
        fold(&mut state, actor, sub_account(*sid, developer, index));
    }
    let before = live_bytes();

    // Postings, round-robin. Each event is dropped once folded in, as the
    // writer drops its batch.
    let mut balances = vec![Decimal::ZERO; accounts.len()];
    let started = Instant::now();
    let started_cpu = thread_cpu_seconds();
    for index in 0..postings {
        let slot = index % accounts.len();
        balances[slot] += Decimal::new(100, 2);
        let event = topup(accounts[slot], developer, index, balances[slot]);
        fold(&mut state, actor, event);
    }
    let fold_seconds = started.elapsed().as_secs_f64();
    let fold_cpu_seconds = thread_cpu_seconds() - started_cpu;
    let after = live_bytes();

    // A start from a snapshot: decode it into a second state.
    let snapshot = state.encode();
    let before_decode = live_bytes();
    let started = Instant::now();
    let started_cpu = thread_cpu_seconds();
    let decoded = State::decode(&snapshot).expect("the snapshot decodes");
    let decode_seconds = started.elapsed().as_secs_f64();
    let decode_cpu_seconds = thread_cpu_seconds() - started_cpu;
    let decoded_bytes = live_bytes() - before_decode;
    assert_eq!(decoded.last_seq, state.last_seq, "the snapshot's sequence");
    let per_posting = (after - before) as f64 / postings.max(1) as f64;
    println!("sub-accounts        {accounts_count}");
    println!("postings            {postings}");
    println!("heap before         {:.1} MiB", before as f64 / 1_048_576.0);
    println!("heap after          {:.1} MiB", after as f64 / 1_048_576.0);
    println!("heap per posting    {per_posting:.0} bytes");
    println!("Transaction         {} bytes", std::mem::size_of::<Transaction>());
    let per_posting_us = |seconds: f64| seconds * 1e6 / postings.max(1) as f64;
    println!(
        "fold per posting    {:.2} us wall, {:.2} us CPU",
        per_posting_us(fold_seconds),
        per_posting_us(fold_cpu_seconds)
    );
    println!("snapshot            {:.1} MiB", snapshot.len() as f64 / 1_048_576.0);
    println!("snapshot decode     {decode_seconds:.2} s wall, {decode_cpu_seconds:.2} s CPU");
    println!("decoded state       {:.1} MiB", decoded_bytes as f64 / 1_048_576.0);

    // Writes after the start from the snapshot, on random sub-accounts.
    drop(state);
    drop(snapshot);
    let mut state = decoded;
    let start = live_bytes();
    let mut peak = start;
    let mut published = state.clone();
    // xorshift64: the same draws on every run.
    let mut draw: u64 = 0x9E37_79B9_7F4A_7C15;
    for index in 0..writes {
        draw ^= draw << 13;
        draw ^= draw >> 7;
        draw ^= draw << 17;
        let slot = (draw % accounts.len() as u64) as usize;
        balances[slot] += Decimal::new(100, 2);
        let event = topup(accounts[slot], developer, postings + index, balances[slot]);
        fold(&mut state, actor, event);
        if (index + 1).is_multiple_of(PUBLISH_EVERY) {
            // As the writer does between batches.
            state.rebuild_a_changed_run();
            published = state.clone();
        }
        peak = peak.max(live_bytes());
    }
    drop(published);
    let written = live_bytes();
    let snapshot = state.encode();
    let before_decode = live_bytes();
    let fresh = State::decode(&snapshot).expect("the snapshot decodes");
    let fresh_bytes = live_bytes() - before_decode;
    assert_eq!(fresh.last_seq, state.last_seq, "the snapshot's sequence");
    let mib = |bytes: usize| bytes as f64 / 1_048_576.0;
    println!("writes              {writes}, a copy published every {PUBLISH_EVERY}");
    println!(
        "state after writes  {:.1} MiB, peak {:.1} MiB",
        mib(written - start + decoded_bytes),
        mib(peak - start + decoded_bytes)
    );
    println!("fresh start of it   {:.1} MiB", mib(fresh_bytes));
}
