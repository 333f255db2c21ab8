//! `subledger reconcile`: compares the ledger's postings of one pay method
//! with a payment provider's statement, by `refer_trans_id`.
//!
//! A reference is unique per developer and pay method. With `--developer`
//! only that developer's postings take part; without it a statement row
//! whose reference two developers used is ambiguous and matches neither.
//! Each statement reference ends in exactly one category:
//!
//! - matched: one posting, same amount (and currency, if the statement
//!   has a `currency` column);
//! - amount mismatch: one posting, another amount or currency;
//! - missing in the ledger: no posting;
//! - duplicate reference: the statement lists it more than once; its
//!   postings count as accounted for;
//! - ambiguous reference: postings of more than one developer.
//!
//! Postings that no statement row accounts for are missing in the
//! statement. Because a statement covers a period, `--from` and `--to`
//! limit those to a time window. Rows that cannot be read are invalid rows.
//! The command exits 0 only when every row matched and no category else
//! has an entry.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::audit::chain::{ChainReader, ScanError};
use crate::audit::progress::Progress;
use crate::audit::reconcile_report::write_report;
use crate::audit::statement::{read_statement, StatementRow};
use crate::audit::{open_data_dir, parse_time_arg, Output, ReportFormat, Verdict};
use crate::domain::events::Event;
use crate::domain::ids::{Sid, SidKind};
use crate::domain::posting::{pay_method_name, PAY_METHODS};
use crate::projection::PostingType;
use crate::store::EventStore;

/// Arguments of `subledger reconcile`.
pub struct ReconcileArgs<'a> {
    pub data_dir: &'a Path,
    pub statement: &'a Path,
    pub pay_method: u16,
    pub developer: Option<&'a str>,
    pub format: ReportFormat,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

/// A ledger posting of the reconciled pay method.
#[derive(Debug, Clone)]
pub struct Posting {
    pub sid: Sid,
    pub account: Sid,
    pub developer: Sid,
    pub kind: PostingType,
    pub amount: Decimal,
    pub currency: &'static str,
    pub reference: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub seq: u64,
}

/// Every category of the reconciliation, each in statement or log order.
#[derive(Debug, Default)]
pub struct Reconciliation {
    pub matched: Vec<(StatementRow, Posting)>,
    pub amount_mismatches: Vec<(StatementRow, Posting)>,
    pub missing_in_ledger: Vec<StatementRow>,
    pub missing_in_statement: Vec<Posting>,
    /// A reference listed more than once: its rows and its postings.
    pub duplicates: Vec<(String, Vec<StatementRow>, Vec<Posting>)>,
    /// A row whose reference postings of several developers carry.
    pub ambiguous: Vec<(StatementRow, Vec<Posting>)>,
    pub invalid: Vec<crate::audit::statement::InvalidRow>,
}

impl Reconciliation {
    /// Returns whether the statement and the ledger agree completely.
    pub fn all_matched(&self) -> bool {
        self.amount_mismatches.is_empty()
            && self.missing_in_ledger.is_empty()
            && self.missing_in_statement.is_empty()
            && self.duplicates.is_empty()
            && self.ambiguous.is_empty()
            && self.invalid.is_empty()
    }
}

/// The report's heading: what was reconciled.
pub struct Scope<'a> {
    pub statement: &'a Path,
    pub pay_method: u16,
    pub developer: Option<Sid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Runs the reconciliation and prints the report to stdout.
pub fn run(args: ReconcileArgs<'_>) -> anyhow::Result<Verdict> {
    if pay_method_name(args.pay_method).is_none() {
        let known: Vec<String> = PAY_METHODS.iter().map(|(code, _, _)| code.to_string()).collect();
        anyhow::bail!("--pay-method must be one of {}", known.join(", "));
    }
    let developer = args
        .developer
        .map(|text| {
            Sid::parse_kind(text, SidKind::Developer).ok_or_else(|| {
                anyhow::anyhow!(
                    "--developer must be a developer sid: DV and 32 lower-case hex digits, not {text:?}"
                )
            })
        })
        .transpose()?;
    let from = args.from.map(|text| parse_time_arg("--from", text)).transpose()?;
    let to = args.to.map(|text| parse_time_arg("--to", text)).transpose()?;
    let statement = read_statement(args.statement)?;
    let store = open_data_dir(args.data_dir)?;

    let postings = match read_postings(store.as_ref(), args.pay_method, developer) {
        Ok(postings) => postings,
        Err(ScanError::Break(found)) => {
            tracing::error!("reconcile stopped at event {}: {}", found.seq, found.reason);
            return Ok(Verdict::Failed);
        }
        Err(ScanError::Store(error)) => return Err(error.into()),
    };
    let Some(postings) = postings else {
        let developer = developer.expect("postings are only absent for an unknown developer");
        anyhow::bail!("developer {developer} is not in the log of {}", args.data_dir.display());
    };

    let window = |posting: &Posting| {
        from.is_none_or(|from| posting.recorded_at >= from)
            && to.is_none_or(|to| posting.recorded_at < to)
    };
    let mut result = classify(statement.rows, &postings, window);
    result.invalid = statement.invalid;

    let scope =
        Scope { statement: args.statement, pay_method: args.pay_method, developer, from, to };
    let mut out = Output::open(None)?;
    write_report(&mut out, &scope, &result, args.format)?;
    out.finish()?;
    Ok(if result.all_matched() { Verdict::Passed } else { Verdict::Failed })
}

/// Reads every posting of `pay_method` (of `developer` when given) from the
/// chain-checked log, in log order. `None` when `developer` is not in the
/// log.
fn read_postings(
    store: &dyn EventStore,
    pay_method: u16,
    developer: Option<Sid>,
) -> Result<Option<Vec<Posting>>, ScanError> {
    let head = store.head();
    let mut progress = Progress::start("reading postings", head.seq);
    let mut reader = ChainReader::from_start(store.read_raw_from(1));
    let mut postings = Vec::new();
    let mut developer_seen = developer.is_none();
    for raw in reader.by_ref() {
        let raw = raw?;
        progress.advance();
        let recorded = raw.decode()?;
        let (kind, posting) = match recorded.event {
            Event::DeveloperCreated(created) => {
                developer_seen |= Some(created.sid) == developer;
                continue;
            }
            Event::BalanceToppedUp(posting) => (PostingType::TopUp, posting),
            Event::BalanceAdjusted(posting) => (PostingType::Adjustment, posting),
            _ => continue,
        };
        if posting.pay_method != pay_method
            || developer.is_some_and(|sid| sid != posting.developer_sid)
        {
            continue;
        }
        postings.push(Posting {
            sid: posting.sid,
            account: posting.account_sid,
            developer: posting.developer_sid,
            kind,
            amount: posting.amount,
            currency: posting.currency.code(),
            reference: posting.refer_trans_id,
            recorded_at: recorded.meta.recorded_at,
            seq: raw.seq,
        });
    }
    progress.finish();
    reader.check_end(head)?;
    Ok(developer_seen.then_some(postings))
}

/// Sorts every statement row and posting into its category.
/// `in_window` selects the postings the statement should account for.
fn classify(
    rows: Vec<StatementRow>,
    postings: &[Posting],
    in_window: impl Fn(&Posting) -> bool,
) -> Reconciliation {
    let mut by_reference: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, posting) in postings.iter().enumerate() {
        if let Some(reference) = &posting.reference {
            by_reference.entry(reference.as_str()).or_default().push(index);
        }
    }

    // Group the rows by reference, keeping the order of first appearance.
    let mut groups: BTreeMap<usize, Vec<StatementRow>> = BTreeMap::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for (position, row) in rows.into_iter().enumerate() {
        let group = *group_of.entry(row.reference.clone()).or_insert(position);
        groups.entry(group).or_default().push(row);
    }

    let mut result = Reconciliation::default();
    let mut accounted = vec![false; postings.len()];
    for (_, mut group) in groups {
        let reference = group[0].reference.clone();
        let found: &[usize] = by_reference.get(reference.as_str()).map_or(&[], Vec::as_slice);
        for index in found {
            accounted[*index] = true;
        }
        let found: Vec<Posting> = found.iter().map(|index| postings[*index].clone()).collect();
        if group.len() > 1 {
            result.duplicates.push((reference, group, found));
            continue;
        }
        let row = group.remove(0);
        match <[Posting; 1]>::try_from(found) {
            Ok([posting]) if agrees(&row, &posting) => result.matched.push((row, posting)),
            Ok([posting]) => result.amount_mismatches.push((row, posting)),
            Err(found) if found.is_empty() => result.missing_in_ledger.push(row),
            Err(found) => result.ambiguous.push((row, found)),
        }
    }

    result.missing_in_statement = postings
        .iter()
        .zip(accounted)
        .filter(|(posting, accounted)| !accounted && in_window(posting))
        .map(|(posting, _)| posting.clone())
        .collect();
    result
}

/// Returns whether a row and its posting agree on the amount, and on the
/// currency when the statement names one.
fn agrees(row: &StatementRow, posting: &Posting) -> bool {
    row.amount == posting.amount
        && row.currency.as_deref().is_none_or(|currency| currency == posting.currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(kind: SidKind, value: u128) -> Sid {
        Sid::new(kind, value)
    }

    fn posting(developer: u128, reference: Option<&str>, amount: Decimal, seq: u64) -> Posting {
        Posting {
            sid: sid(SidKind::Transaction, u128::from(seq)),
            account: sid(SidKind::Account, developer),
            developer: sid(SidKind::Developer, developer),
            kind: PostingType::TopUp,
            amount,
            currency: "SGD",
            reference: reference.map(str::to_string),
            recorded_at: DateTime::UNIX_EPOCH,
            seq,
        }
    }

    fn row(line: u64, reference: &str, amount: Decimal) -> StatementRow {
        StatementRow {
            line,
            reference: reference.to_string(),
            amount,
            currency: None,
            columns: Vec::new(),
        }
    }

    #[test]
    fn classify_one_of_each() {
        let postings = vec![
            posting(1, Some("match"), Decimal::new(1000, 2), 1),
            posting(1, Some("differs"), Decimal::new(2000, 2), 2),
            posting(1, Some("unlisted"), Decimal::new(725, 2), 3),
            posting(1, Some("twice"), Decimal::new(300, 2), 4),
            posting(1, Some("shared"), Decimal::new(100, 2), 5),
            posting(2, Some("shared"), Decimal::new(100, 2), 6),
            posting(1, None, Decimal::new(50, 2), 7),
        ];
        let rows = vec![
            row(2, "match", Decimal::new(10, 0)),
            row(3, "differs", Decimal::new(21, 0)),
            row(4, "absent", Decimal::new(5, 0)),
            row(5, "twice", Decimal::new(3, 0)),
            row(6, "twice", Decimal::new(3, 0)),
            row(7, "shared", Decimal::new(1, 0)),
        ];
        let result = classify(rows, &postings, |_| true);
        assert_eq!(result.matched.len(), 1, "10 equals 10.00");
        assert_eq!(result.amount_mismatches[0].0.line, 3, "mismatch row");
        assert_eq!(result.missing_in_ledger[0].reference, "absent", "absent reference");
        let unlisted: Vec<u64> = result.missing_in_statement.iter().map(|p| p.seq).collect();
        assert_eq!(unlisted, [3, 7], "unlisted and unreferenced postings");
        assert_eq!(result.duplicates[0].1.len(), 2, "both duplicate rows");
        assert_eq!(result.duplicates[0].2.len(), 1, "the duplicate's posting");
        assert_eq!(result.ambiguous[0].1.len(), 2, "one posting per developer");
        assert!(!result.all_matched(), "discrepancies remain");
    }

    #[test]
    fn classify_window_limits_unlisted() {
        let postings = vec![posting(1, Some("early"), Decimal::ONE, 1)];
        let result = classify(Vec::new(), &postings, |posting| posting.seq > 1);
        assert!(result.missing_in_statement.is_empty(), "outside the window");
        assert!(result.all_matched(), "an empty statement for an empty window");
    }
}
