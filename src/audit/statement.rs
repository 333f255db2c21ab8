//! Reading a payment provider's statement for `subledger reconcile`: a CSV
//! file whose header names at least `refer_trans_id` and `amount`, compared
//! after trimming and ignoring case. Every other column is kept as text for
//! the report; a `currency` column, when present, is also compared with the
//! ledger. A row that cannot be used is kept as an invalid row with its
//! line number, and reading goes on.

use std::path::Path;

use anyhow::Context;
use rust_decimal::Decimal;

use crate::domain::money::parse_amount;
use crate::domain::text::validate_refer_trans_id;

/// One usable statement row.
#[derive(Debug, Clone)]
pub struct StatementRow {
    /// Line of the file where the row starts, from 1 (the header is line 1).
    pub line: u64,
    /// The reference, NFC-normalized as the API stores it.
    pub reference: String,
    pub amount: Decimal,
    /// The `currency` column, upper-cased, when the statement has one.
    pub currency: Option<String>,
    /// Every other column, by header name, in file order.
    pub columns: Vec<(String, String)>,
}

/// A row that cannot be used, and why.
#[derive(Debug, Clone)]
pub struct InvalidRow {
    pub line: u64,
    pub reason: String,
}

/// A parsed statement.
#[derive(Debug, Default)]
pub struct Statement {
    pub rows: Vec<StatementRow>,
    pub invalid: Vec<InvalidRow>,
}

/// Positions of the columns the reconciliation reads.
struct Columns {
    names: Vec<String>,
    reference: usize,
    amount: usize,
    currency: Option<usize>,
}

/// Reads the statement at `path`. A file that cannot be read or has no
/// usable header is an error; bad rows are collected in `invalid`.
pub fn read_statement(path: &Path) -> anyhow::Result<Statement> {
    // The file is read whole, because `LineCounter` counts each row's line
    // from its byte offset.
    let bytes = std::fs::read(path)
        .with_context(|| format!("failed to read the statement {}", path.display()))?;
    let mut lines = LineCounter::new(&bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let header = reader
        .byte_headers()
        .with_context(|| format!("failed to read the header of {}", path.display()))?
        .clone();
    let columns = find_columns(&header)
        .with_context(|| format!("the statement {} has no usable header", path.display()))?;

    let mut statement = Statement::default();
    for record in reader.byte_records() {
        let record = match record {
            Ok(record) => record,
            Err(error) if !error.is_io_error() => {
                let line = error.position().map_or(0, |position| lines.line_at(position.byte()));
                statement.invalid.push(InvalidRow { line, reason: error.to_string() });
                continue;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        let line = record.position().map_or(0, |position| lines.line_at(position.byte()));
        match parse_row(&columns, &record, line) {
            Ok(row) => statement.rows.push(row),
            Err(reason) => statement.invalid.push(InvalidRow { line, reason }),
        }
    }
    Ok(statement)
}

/// Line numbers of statement rows, counted from each row's byte offset.
///
/// csv 1.4 gives a record the line of the bytes it skipped before it. Those
/// are a blank line, or the line feed of a CRLF line end, which it reads as
/// an empty line, so with CRLF line ends each row lands one line early. The
/// byte offset points at those skipped bytes too, so the counter steps
/// over them.
///
/// NOTE: only line feeds count, so a file that ends its lines with a
/// carriage return alone shows every row on line 1.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Offset up to which line feeds are counted.
    counted_to: usize,
    /// Line of the byte at `counted_to`, from 1.
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> LineCounter<'a> {
        LineCounter { bytes, counted_to: 0, line: 1 }
    }

    /// Returns the line of the record that the csv reader placed at
    /// `offset`: the first byte from there that is no line end. No record
    /// starts with a line end, because an unquoted field cannot contain one.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.bytes.len());
        while self.bytes.get(start).is_some_and(|byte| matches!(byte, b'\r' | b'\n')) {
            start += 1;
        }
        // Records come in file order, so the count goes on from the last
        // one. An earlier offset, should one come, restarts it from the top.
        if start < self.counted_to {
            self.counted_to = 0;
            self.line = 1;
        }
        let line_feeds = self.bytes[self.counted_to..start].iter().filter(|byte| **byte == b'\n');
        self.line += line_feeds.count() as u64;
        self.counted_to = start;
        self.line
    }
}

fn find_columns(header: &csv::ByteRecord) -> anyhow::Result<Columns> {
    let mut names = Vec::with_capacity(header.len());
    for (index, field) in header.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| anyhow::anyhow!("header column {} is not UTF-8", index + 1))?;
        // A byte order mark before the first name is not part of it.
        names.push(name.trim_start_matches('\u{feff}').trim().to_string());
    }
    let (Some(reference), Some(amount)) =
        (position(&names, "refer_trans_id")?, position(&names, "amount")?)
    else {
        anyhow::bail!(
            "the header must name the columns refer_trans_id and amount; it names: {}",
            names.join(", ")
        );
    };
    let currency = position(&names, "currency")?;
    Ok(Columns { names, reference, amount, currency })
}

/// Finds the column named `column`, ignoring case. A name given twice is an
/// error, because reading either column alone would reconcile against values
/// that the other contradicts.
fn position(names: &[String], column: &str) -> anyhow::Result<Option<usize>> {
    let mut found = names
        .iter()
        .enumerate()
        .filter(|(_, name)| name.eq_ignore_ascii_case(column))
        .map(|(index, _)| index);
    let first = found.next();
    if let (Some(first), Some(second)) = (first, found.next()) {
        anyhow::bail!(
            "the header names the column {column} more than once (columns {} and {}). \
             Keep only one of them",
            first + 1,
            second + 1
        );
    }
    Ok(first)
}

fn parse_row(
    columns: &Columns,
    record: &csv::ByteRecord,
    line: u64,
) -> Result<StatementRow, String> {
    if record.len() != columns.names.len() {
        return Err(format!(
            "the row has {} fields, the header has {}",
            record.len(),
            columns.names.len()
        ));
    }
    let mut fields = Vec::with_capacity(record.len());
    for (index, field) in record.iter().enumerate() {
        let text = std::str::from_utf8(field)
            .map_err(|_| format!("column {} is not UTF-8", columns.names[index]))?;
        fields.push(text.to_string());
    }

    let reference = validate_refer_trans_id(&fields[columns.reference]).map_err(|error| {
        format!("refer_trans_id {:?}: {}", fields[columns.reference], error.reason)
    })?;
    let amount = parse_amount(&fields[columns.amount])
        .map_err(|error| format!("amount {:?}: {error}", fields[columns.amount]))?;
    let currency = columns.currency.map(|index| fields[index].trim().to_ascii_uppercase());
    let used = [Some(columns.reference), Some(columns.amount), columns.currency];
    let other = columns
        .names
        .iter()
        .zip(fields)
        .enumerate()
        .filter(|(index, _)| !used.contains(&Some(*index)))
        .map(|(_, (name, value))| (name.clone(), value))
        .collect();
    Ok(StatementRow { line, reference, amount, currency, columns: other })
}
