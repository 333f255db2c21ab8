//! Request and response encoding on the hot paths: exact amount parsing,
//! and rendering a sub-account as JSON (serde_json) and as XML.

use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use subledger::api::format::to_xml;
use subledger::api::views::{account_json, transaction_json, TransactionView};
use subledger::domain::events::AccountStatus;
use subledger::domain::ids::{Sid, SidKind};
use subledger::domain::money::{parse_amount, Currency};
use subledger::projection::{Account, PostingType, Transaction, TransactionFields};

/// Amounts as clients send them, valid and invalid.
const AMOUNTS: [&str; 8] =
    ["12.50", "1", "-0.01", "999999999.9999", "0007.5", "1e5", "12.34567", "1000000000"];

fn parse_amounts(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_amount");
    group.throughput(Throughput::Elements(AMOUNTS.len() as u64));
    group.bench_function("mixed", |b| {
        b.iter(|| {
            for text in AMOUNTS {
                let _ = black_box(parse_amount(black_box(text)));
            }
        });
    });
    group.finish();
}

fn sample_account() -> Account {
    let now = Utc::now();
    Account {
        sid: Sid::generate(SidKind::Account),
        developer: Sid::generate(SidKind::Developer),
        login_id: "alice01".into(),
        status: AccountStatus::Active,
        first_name: Some("Alice".into()),
        last_name: Some("Tan".into()),
        email: Some("alice@example.com".into()),
        mobile_phone: Some("+6591234567".into()),
        domain: "sip.example.com".into(),
        currency: Currency::Sgd,
        balance: Decimal::new(1_234_567, 2),
        balance_updated: now,
        created: now,
        updated: now,
    }
}

fn sample_transaction(account: &Account) -> Transaction {
    Transaction::new(TransactionFields {
        sid: Sid::generate(SidKind::Transaction),
        account: account.sid,
        kind: PostingType::TopUp,
        amount: Decimal::new(1250, 2),
        currency: account.currency,
        pay_method: 4,
        refer_trans_id: Some("PAY-0001"),
        desc: None,
        balance_after: account.balance,
        created: account.updated,
        seq: 42,
    })
    .expect("the sample posting is valid")
}

fn encode_responses(c: &mut Criterion) {
    let account = sample_account();
    let transaction = sample_transaction(&account);
    let mut group = c.benchmark_group("encode");
    group.bench_function("account_json", |b| {
        b.iter(|| serde_json::to_string(&account_json(black_box(&account))).expect("JSON"));
    });
    group.bench_function("transaction_json", |b| {
        b.iter(|| serde_json::to_string(&transaction_json(black_box(&transaction))).expect("JSON"));
    });
    // A posting's JSON reply. Listings go through a `Value`, as
    // `transaction_json` above does.
    group.bench_function("transaction_view", |b| {
        b.iter(|| {
            serde_json::to_vec(&TransactionView::new(black_box(&transaction))).expect("JSON")
        });
    });
    group.bench_function("account_xml", |b| {
        b.iter(|| to_xml("Account", &account_json(black_box(&account))));
    });
    group.finish();
}

criterion_group!(benches, parse_amounts, encode_responses);
criterion_main!(benches);
