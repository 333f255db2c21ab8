//! The report of `subledger reconcile`, as aligned text or one JSON
//! document: per category a count and totals per currency, then the
//! entries. The text report lists every category's entries except the
//! matched ones, which only the JSON report lists.
//!
//! A statement amount counts in the currency of its `currency` column,
//! else in the currency of the posting it was compared with, else under
//! `unknown`.

use std::collections::BTreeMap;
use std::io::Write;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::audit::reconcile::{Posting, Reconciliation, Scope};
use crate::audit::statement::StatementRow;
use crate::audit::{rfc3339, Output, ReportFormat};
use crate::domain::money::format_amount;
use crate::domain::posting::PAY_METHODS;

/// The currency key of statement amounts whose currency nothing names.
const UNKNOWN_CURRENCY: &str = "unknown";

/// Sums per currency, in currency order.
#[derive(Debug, Default)]
struct Totals(BTreeMap<String, Decimal>);

impl Totals {
    fn add(&mut self, currency: &str, amount: Decimal) {
        let sum = self.0.entry(currency.to_string()).or_default();
        *sum = sum.saturating_add(amount);
    }

    fn to_json(&self) -> Value {
        let sums: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(currency, sum)| (currency.clone(), Value::String(format_amount(*sum))))
            .collect();
        Value::Object(sums)
    }

    fn to_text(&self) -> String {
        if self.0.is_empty() {
            return "-".to_string();
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(currency, sum)| format!("{} {currency}", format_amount(*sum)))
            .collect();
        parts.join(", ")
    }
}

/// One category's count and its statement-side and ledger-side totals.
#[derive(Debug, Default)]
struct Category {
    count: usize,
    statement: Totals,
    ledger: Totals,
}

impl Category {
    fn add_row(&mut self, row: &StatementRow, posting: Option<&Posting>) {
        let currency = row
            .currency
            .as_deref()
            .or(posting.map(|posting| posting.currency))
            .unwrap_or(UNKNOWN_CURRENCY);
        self.statement.add(currency, row.amount);
    }

    fn add_posting(&mut self, posting: &Posting) {
        self.ledger.add(posting.currency, posting.amount);
    }

    fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "statement_totals": self.statement.to_json(),
            "ledger_totals": self.ledger.to_json(),
        })
    }
}

/// The category names in report order, as the JSON keys spell them.
const CATEGORY_KEYS: [&str; 7] = [
    "matched",
    "amount_mismatches",
    "missing_in_ledger",
    "missing_in_statement",
    "duplicate_references",
    "ambiguous_references",
    "invalid_rows",
];

fn summarize(result: &Reconciliation) -> [Category; 7] {
    let mut categories: [Category; 7] = Default::default();
    let [matched, mismatches, missing_ledger, missing_statement, duplicates, ambiguous, invalid] =
        &mut categories;
    for (row, posting) in &result.matched {
        matched.add_row(row, Some(posting));
        matched.add_posting(posting);
    }
    matched.count = result.matched.len();

    for (row, posting) in &result.amount_mismatches {
        mismatches.add_row(row, Some(posting));
        mismatches.add_posting(posting);
    }
    mismatches.count = result.amount_mismatches.len();

    for row in &result.missing_in_ledger {
        missing_ledger.add_row(row, None);
    }
    missing_ledger.count = result.missing_in_ledger.len();

    for posting in &result.missing_in_statement {
        missing_statement.add_posting(posting);
    }
    missing_statement.count = result.missing_in_statement.len();

    for (_, rows, postings) in &result.duplicates {
        for row in rows {
            duplicates.add_row(row, postings.first());
        }
        postings.iter().for_each(|posting| duplicates.add_posting(posting));
    }
    duplicates.count = result.duplicates.len();

    for (row, postings) in &result.ambiguous {
        ambiguous.add_row(row, postings.first());
        postings.iter().for_each(|posting| ambiguous.add_posting(posting));
    }
    ambiguous.count = result.ambiguous.len();

    invalid.count = result.invalid.len();
    categories
}

/// Writes the report in the chosen format.
pub fn write_report(
    out: &mut Output,
    scope: &Scope<'_>,
    result: &Reconciliation,
    format: ReportFormat,
) -> anyhow::Result<()> {
    let categories = summarize(result);
    match format {
        ReportFormat::Text => write_text(out, scope, result, &categories)?,
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &report_json(scope, result, &categories))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn pay_method_label(code: u16) -> String {
    let label = PAY_METHODS.iter().find(|(known, _, _)| *known == code).map(|entry| entry.2);
    format!("{code} ({})", label.unwrap_or("unknown"))
}

fn row_json(row: &StatementRow) -> Value {
    let columns: serde_json::Map<String, Value> = row
        .columns
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "line": row.line,
        "refer_trans_id": row.reference,
        "amount": format_amount(row.amount),
        "currency": row.currency,
        "columns": columns,
    })
}

fn posting_json(posting: &Posting) -> Value {
    json!({
        "sid": posting.sid.to_string(),
        "account_sid": posting.account.to_string(),
        "developer_sid": posting.developer.to_string(),
        "type": posting.kind.as_str(),
        "amount": format_amount(posting.amount),
        "currency": posting.currency,
        "refer_trans_id": posting.reference,
        "date_created": rfc3339(posting.recorded_at),
        "seq": posting.seq,
    })
}

fn report_json(scope: &Scope<'_>, result: &Reconciliation, categories: &[Category; 7]) -> Value {
    let summary: serde_json::Map<String, Value> = CATEGORY_KEYS
        .iter()
        .zip(categories)
        .map(|(key, category)| (key.to_string(), category.to_json()))
        .collect();
    let pair = |(row, posting): &(StatementRow, Posting)| json!({"statement": row_json(row), "ledger": posting_json(posting)});
    json!({
        "statement": scope.statement.display().to_string(),
        "pay_method": scope.pay_method,
        "developer_sid": scope.developer.map(|sid| sid.to_string()),
        "from": scope.from.map(rfc3339),
        "to": scope.to.map(rfc3339),
        "result": if result.all_matched() { "all matched" } else { "discrepancies" },
        "summary": summary,
        "matched": result.matched.iter().map(pair).collect::<Vec<_>>(),
        "amount_mismatches": result.amount_mismatches.iter().map(pair).collect::<Vec<_>>(),
        "missing_in_ledger": result.missing_in_ledger.iter().map(row_json).collect::<Vec<_>>(),
        "missing_in_statement":
            result.missing_in_statement.iter().map(posting_json).collect::<Vec<_>>(),
        "duplicate_references": result.duplicates.iter().map(|(reference, rows, postings)| json!({
            "refer_trans_id": reference,
            "statement": rows.iter().map(row_json).collect::<Vec<_>>(),
            "ledger": postings.iter().map(posting_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ambiguous_references": result.ambiguous.iter().map(|(row, postings)| json!({
            "statement": row_json(row),
            "ledger": postings.iter().map(posting_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "invalid_rows": result.invalid.iter().map(|invalid| json!({
            "line": invalid.line,
            "reason": invalid.reason,
        })).collect::<Vec<_>>(),
    })
}

/// Category titles of the text report, in the order of [`CATEGORY_KEYS`].
const CATEGORY_TITLES: [&str; 7] = [
    "matched",
    "amount mismatches",
    "missing in ledger",
    "missing in statement",
    "duplicate references",
    "ambiguous references",
    "invalid rows",
];

fn write_text(
    out: &mut Output,
    scope: &Scope<'_>,
    result: &Reconciliation,
    categories: &[Category; 7],
) -> std::io::Result<()> {
    writeln!(out, "statement             {}", scope.statement.display())?;
    writeln!(out, "pay_method            {}", pay_method_label(scope.pay_method))?;
    let developer = scope.developer.map_or_else(|| "all".to_string(), |sid| sid.to_string());
    writeln!(out, "developer             {developer}")?;
    if scope.from.is_some() || scope.to.is_some() {
        let from = scope.from.map_or_else(|| "the first posting".to_string(), rfc3339);
        let to = scope.to.map_or_else(|| "the last posting".to_string(), rfc3339);
        writeln!(out, "ledger window         {from} to {to} (end exclusive)")?;
    }
    writeln!(out)?;
    writeln!(out, "{:<22}{:>6}  {:<28}  ledger total", "category", "count", "statement total")?;
    for (title, category) in CATEGORY_TITLES.iter().zip(categories) {
        writeln!(
            out,
            "{title:<22}{:>6}  {:<28}  {}",
            category.count,
            category.statement.to_text(),
            category.ledger.to_text()
        )?;
    }

    write_entries(out, result)?;
    writeln!(out)?;
    let discrepancies = categories[1..].iter().map(|category| category.count).sum::<usize>();
    match discrepancies {
        0 => writeln!(out, "result                all matched"),
        count => writeln!(out, "result                {count} discrepancies"),
    }
}

fn row_text(row: &StatementRow) -> String {
    let mut text = format!("line {}  {}  {}", row.line, row.reference, format_amount(row.amount));
    if let Some(currency) = &row.currency {
        text.push(' ');
        text.push_str(currency);
    }
    for (name, value) in &row.columns {
        text.push_str(&format!("  {name}={value}"));
    }
    text
}

fn posting_text(posting: &Posting) -> String {
    format!(
        "{} {}  {}  account {}  developer {}  event {}",
        format_amount(posting.amount),
        posting.currency,
        posting.sid,
        posting.account,
        posting.developer,
        posting.seq
    )
}

fn write_entries(out: &mut Output, result: &Reconciliation) -> std::io::Result<()> {
    if !result.amount_mismatches.is_empty() {
        writeln!(out, "\namount mismatches (statement, then ledger)")?;
        for (row, posting) in &result.amount_mismatches {
            writeln!(out, "  {}\n    ledger {}", row_text(row), posting_text(posting))?;
        }
    }
    if !result.missing_in_ledger.is_empty() {
        writeln!(out, "\nmissing in ledger")?;
        for row in &result.missing_in_ledger {
            writeln!(out, "  {}", row_text(row))?;
        }
    }
    if !result.missing_in_statement.is_empty() {
        writeln!(out, "\nmissing in statement")?;
        for posting in &result.missing_in_statement {
            let reference = posting.reference.as_deref().unwrap_or("(no refer_trans_id)");
            writeln!(out, "  {reference}  {}", posting_text(posting))?;
        }
    }
    if !result.duplicates.is_empty() {
        writeln!(out, "\nduplicate references")?;
        for (reference, rows, postings) in &result.duplicates {
            writeln!(
                out,
                "  {reference}: statement rows {}, ledger postings {}",
                rows.len(),
                postings.len()
            )?;
            for row in rows {
                writeln!(out, "    {}", row_text(row))?;
            }
            for posting in postings {
                writeln!(out, "    ledger {}", posting_text(posting))?;
            }
        }
    }
    if !result.ambiguous.is_empty() {
        writeln!(out, "\nambiguous references (postings of several developers)")?;
        for (row, postings) in &result.ambiguous {
            writeln!(out, "  {}", row_text(row))?;
            for posting in postings {
                writeln!(out, "    ledger {}", posting_text(posting))?;
            }
        }
    }
    if !result.invalid.is_empty() {
        writeln!(out, "\ninvalid rows")?;
        for invalid in &result.invalid {
            writeln!(out, "  line {}  {}", invalid.line, invalid.reason)?;
        }
    }
    Ok(())
}
