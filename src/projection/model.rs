//! The read models that projections keep: one struct per resource, holding
//! exactly what the API shows and the rules need. Secrets (password hashes,
//! SIP digests) stay in the log and are not kept here. Times serialize as
//! microseconds since the epoch, which keeps snapshots compact and fast.
//!
//! Text that changes rarely is held as `Arc<str>`, so that copying a model
//! to change its balance or status copies pointers, not strings.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::Visitor;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::events::AccountStatus;
use crate::domain::ids::{Sid, SidBits, SidKind};
use crate::domain::money::Currency;
use crate::projection::texts::PostingTexts;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Developer {
    pub sid: Sid,
    pub name: String,
    pub api_key_sha256: [u8; 32],
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub sid: Sid,
    pub developer: Sid,
    pub login_id: Arc<str>,
    pub status: AccountStatus,
    pub first_name: Option<Arc<str>>,
    pub last_name: Option<Arc<str>>,
    pub email: Option<Arc<str>>,
    pub mobile_phone: Option<Arc<str>>,
    pub domain: Arc<str>,
    pub currency: Currency,
    pub balance: Decimal,
    /// When the balance last changed (the creation time before any posting).
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub balance_updated: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccount {
    pub sid: Sid,
    pub account: Sid,
    pub sip_id: String,
    pub domain: String,
    /// Alias sids in creation order.
    pub aliases: im::Vector<Sid>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAlias {
    pub sid: Sid,
    pub account: Sid,
    pub sip: Sid,
    pub alias: String,
    pub domain: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PostingType {
    #[serde(rename = "TOPUP")]
    TopUp,
    #[serde(rename = "ADJUSTMENT")]
    Adjustment,
}

impl PostingType {
    pub fn as_str(self) -> &'static str {
        match self {
            PostingType::TopUp => "TOPUP",
            PostingType::Adjustment => "ADJUSTMENT",
        }
    }

    pub fn parse(text: &str) -> Option<PostingType> {
        match text {
            "TOPUP" => Some(PostingType::TopUp),
            "ADJUSTMENT" => Some(PostingType::Adjustment),
            _ => None,
        }
    }
}

/// A posting. Its developer is the sub-account's, which never changes.
///
/// A million postings make up most of the state, so a posting takes 96
/// bytes instead of the 144 of plain fields. `PostingOrder` stores the
/// postings by value, 32 to a chunk of 3,072 bytes, instead of each in an
/// `Arc` of 112 bytes. The two ids drop their kinds, which are fixed.
/// The two texts share one allocation behind a thin pointer
/// (`PostingTexts`), and the time is stored in microseconds. It
/// serializes as the plain fields, in their order.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    sid: SidBits,
    account: SidBits,
    pub amount: Decimal,
    pub balance_after: Decimal,
    texts: PostingTexts,
    /// `created` in microseconds since the epoch.
    created_micros: i64,
    /// Sequence number of the event that recorded the posting.
    pub seq: u64,
    pub pay_method: u16,
    pub kind: PostingType,
    pub currency: Currency,
}

/// The fields of a new `Transaction`.
#[derive(Debug, Clone)]
pub struct TransactionFields<'a> {
    pub sid: Sid,
    pub account: Sid,
    pub kind: PostingType,
    pub amount: Decimal,
    pub currency: Currency,
    pub pay_method: u16,
    pub refer_trans_id: Option<&'a str>,
    pub desc: Option<&'a str>,
    pub balance_after: Decimal,
    pub created: DateTime<Utc>,
    pub seq: u64,
}

impl Transaction {
    /// Builds a posting, or returns the field it cannot hold: an id of
    /// another kind, or a reference or description of 65,535 bytes or more.
    /// `created` is kept to the microsecond.
    pub fn new(fields: TransactionFields<'_>) -> Result<Transaction, String> {
        if fields.sid.kind() != SidKind::Transaction {
            return Err(format!("transaction id {} is not a transaction's", fields.sid));
        }
        if fields.account.kind() != SidKind::Account {
            return Err(format!("account id {} is not a sub-account's", fields.account));
        }
        let texts = PostingTexts::new(fields.refer_trans_id, fields.desc)?;
        Ok(Transaction {
            sid: fields.sid.bits(),
            account: fields.account.bits(),
            amount: fields.amount,
            balance_after: fields.balance_after,
            texts,
            created_micros: fields.created.timestamp_micros(),
            seq: fields.seq,
            pay_method: fields.pay_method,
            kind: fields.kind,
            currency: fields.currency,
        })
    }

    /// Returns the posting's fields, for a copy with some of them changed.
    pub fn fields(&self) -> TransactionFields<'_> {
        TransactionFields {
            sid: self.sid(),
            account: self.account(),
            kind: self.kind,
            amount: self.amount,
            currency: self.currency,
            pay_method: self.pay_method,
            refer_trans_id: self.refer_trans_id(),
            desc: self.desc(),
            balance_after: self.balance_after,
            created: self.created(),
            seq: self.seq,
        }
    }

    pub fn sid(&self) -> Sid {
        self.sid.with_kind(SidKind::Transaction)
    }

    /// Returns the sub-account posted to.
    pub fn account(&self) -> Sid {
        self.account.with_kind(SidKind::Account)
    }

    pub fn refer_trans_id(&self) -> Option<&str> {
        self.texts.reference()
    }

    pub fn desc(&self) -> Option<&str> {
        self.texts.desc()
    }

    pub fn created(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.created_micros)
            .expect("created_micros was taken from a valid time")
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("sid", &self.sid())
            .field("account", &self.account())
            .field("kind", &self.kind)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("pay_method", &self.pay_method)
            .field("refer_trans_id", &self.refer_trans_id())
            .field("desc", &self.desc())
            .field("balance_after", &self.balance_after)
            .field("created", &self.created())
            .field("seq", &self.seq)
            .finish()
    }
}

impl Serialize for Transaction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("Transaction", 11)?;
        fields.serialize_field("sid", &self.sid())?;
        fields.serialize_field("account", &self.account())?;
        fields.serialize_field("kind", &self.kind)?;
        fields.serialize_field("amount", &self.amount)?;
        fields.serialize_field("currency", &self.currency)?;
        fields.serialize_field("pay_method", &self.pay_method)?;
        fields.serialize_field("refer_trans_id", &self.refer_trans_id())?;
        fields.serialize_field("desc", &self.desc())?;
        fields.serialize_field("balance_after", &self.balance_after)?;
        fields.serialize_field("created", &self.created_micros)?;
        fields.serialize_field("seq", &self.seq)?;
        fields.end()
    }
}

/// The serialized form of `Transaction`, with its texts borrowed from the
/// input where the format allows.
#[derive(Deserialize)]
#[serde(rename = "Transaction")]
struct TransactionRecord<'a> {
    sid: Sid,
    account: Sid,
    kind: PostingType,
    amount: Decimal,
    currency: Currency,
    pay_method: u16,
    #[serde(borrow)]
    refer_trans_id: Option<Text<'a>>,
    #[serde(borrow)]
    desc: Option<Text<'a>>,
    balance_after: Decimal,
    #[serde(with = "chrono::serde::ts_microseconds")]
    created: DateTime<Utc>,
    seq: u64,
}

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Transaction, D::Error> {
        let record = TransactionRecord::deserialize(deserializer)?;
        Transaction::new(TransactionFields {
            sid: record.sid,
            account: record.account,
            kind: record.kind,
            amount: record.amount,
            currency: record.currency,
            pay_method: record.pay_method,
            refer_trans_id: record.refer_trans_id.as_ref().map(Text::as_str),
            desc: record.desc.as_ref().map(Text::as_str),
            balance_after: record.balance_after,
            created: record.created,
            seq: record.seq,
        })
        .map_err(serde::de::Error::custom)
    }
}

/// A string borrowed from the input where the format allows, and copied
/// otherwise.
struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'a>, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// What an `Idempotency-Key` was first used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRequest {
    pub fingerprint: String,
    pub resource: Sid,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// `Transaction` as plain fields: the layout it serializes as.
    #[derive(Serialize)]
    struct PlainTransaction {
        sid: Sid,
        account: Sid,
        kind: PostingType,
        amount: Decimal,
        currency: Currency,
        pay_method: u16,
        refer_trans_id: Option<String>,
        desc: Option<String>,
        balance_after: Decimal,
        #[serde(with = "chrono::serde::ts_microseconds")]
        created: DateTime<Utc>,
        seq: u64,
    }

    fn fields<'a>(refer_trans_id: Option<&'a str>, desc: Option<&'a str>) -> TransactionFields<'a> {
        TransactionFields {
            sid: Sid::generate_in_time_order(SidKind::Transaction),
            account: Sid::generate(SidKind::Account),
            kind: PostingType::Adjustment,
            amount: Decimal::new(-1_250, 2),
            currency: Currency::Usd,
            pay_method: 4,
            refer_trans_id,
            desc,
            balance_after: Decimal::new(98_750, 3),
            created: Utc.timestamp_micros(1_764_892_800_123_456).unwrap(),
            seq: 42,
        }
    }

    fn plain(fields: &TransactionFields<'_>) -> PlainTransaction {
        PlainTransaction {
            sid: fields.sid,
            account: fields.account,
            kind: fields.kind,
            amount: fields.amount,
            currency: fields.currency,
            pay_method: fields.pay_method,
            refer_trans_id: fields.refer_trans_id.map(str::to_string),
            desc: fields.desc.map(str::to_string),
            balance_after: fields.balance_after,
            created: fields.created,
            seq: fields.seq,
        }
    }

    #[test]
    fn transaction_keeps_its_fields() {
        let texts = [
            (None, None),
            (Some("PAY-1"), None),
            (None, Some("refund")),
            (Some("PAY-1"), Some("refund")),
            (Some(""), Some("")),
            (Some("ré-1"), Some("çà")),
        ];
        for (reference, desc) in texts {
            let case = format!("reference {reference:?}, desc {desc:?}");
            let fields = fields(reference, desc);
            let transaction = Transaction::new(fields.clone()).expect(&case);
            assert_eq!(transaction.sid(), fields.sid, "{case}: sid");
            assert_eq!(transaction.account(), fields.account, "{case}: account");
            assert_eq!(transaction.refer_trans_id(), reference, "{case}: reference");
            assert_eq!(transaction.desc(), desc, "{case}: desc");
            assert_eq!(transaction.created(), fields.created, "{case}: created");
            let copy = Transaction::new(transaction.fields()).expect(&case);
            assert_eq!(copy, transaction, "{case}: copy from fields");
        }
    }

    #[test]
    fn transaction_serializes_as_plain_fields() {
        for (reference, desc) in [(Some("PAY-7"), None), (None, Some("note")), (None, None)] {
            let case = format!("reference {reference:?}, desc {desc:?}");
            let fields = fields(reference, desc);
            let transaction = Transaction::new(fields.clone()).expect(&case);
            let bytes = postcard::to_stdvec(&transaction).expect(&case);
            assert_eq!(
                bytes,
                postcard::to_stdvec(&plain(&fields)).expect(&case),
                "{case}: postcard"
            );
            let decoded: Transaction = postcard::from_bytes(&bytes).expect(&case);
            assert_eq!(decoded, transaction, "{case}: postcard round trip");
            let json = serde_json::to_string(&transaction).expect(&case);
            assert_eq!(json, serde_json::to_string(&plain(&fields)).expect(&case), "{case}: JSON");
            let decoded: Transaction = serde_json::from_str(&json).expect(&case);
            assert_eq!(decoded, transaction, "{case}: JSON round trip");
        }
        // An escaped string cannot be borrowed from JSON input.
        let fields = fields(Some("PAY-\"8\""), Some("line\none"));
        let json = serde_json::to_string(&plain(&fields)).unwrap();
        let decoded: Transaction = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded.refer_trans_id(), Some("PAY-\"8\""), "escaped reference");
        assert_eq!(decoded.desc(), Some("line\none"), "escaped desc");
    }

    #[test]
    fn transaction_rejects_what_it_cannot_hold() {
        let mut wrong_sid = fields(None, None);
        wrong_sid.sid = Sid::generate(SidKind::Account);
        let error = Transaction::new(wrong_sid).unwrap_err();
        assert!(error.contains("not a transaction's"), "sid of another kind: {error}");

        let mut wrong_account = fields(None, None);
        wrong_account.account = Sid::generate(SidKind::Developer);
        let error = Transaction::new(wrong_account).unwrap_err();
        assert!(error.contains("not a sub-account's"), "account of another kind: {error}");

        let long = "r".repeat(usize::from(u16::MAX));
        let error = Transaction::new(fields(Some(&long), None)).unwrap_err();
        assert!(error.contains("65535 bytes"), "long reference: {error}");
        let longest = "r".repeat(usize::from(u16::MAX) - 1);
        let transaction =
            Transaction::new(fields(Some(&longest), Some("d"))).expect("longest reference");
        assert_eq!(
            transaction.refer_trans_id().map(str::len),
            Some(longest.len()),
            "longest reference"
        );
        assert_eq!(transaction.desc(), Some("d"), "desc after the longest reference");

        let mut plain = plain(&fields(None, None));
        plain.sid = Sid::generate(SidKind::SipAlias);
        let bytes = postcard::to_stdvec(&plain).unwrap();
        let error = postcard::from_bytes::<Transaction>(&bytes).unwrap_err();
        assert!(matches!(error, postcard::Error::SerdeDeCustom), "decoded sid of another kind");
    }

    proptest::proptest! {
        /// Any texts survive a postcard and a JSON round trip, and a
        /// postcard encoding equals that of the plain fields.
        #[test]
        fn transaction_round_trips_any_texts(
            reference in proptest::option::of(proptest::prelude::any::<String>()),
            desc in proptest::option::of(proptest::prelude::any::<String>()),
        ) {
            let fields = fields(reference.as_deref(), desc.as_deref());
            let transaction = Transaction::new(fields.clone()).expect("short texts");
            proptest::prop_assert_eq!(transaction.refer_trans_id(), reference.as_deref());
            proptest::prop_assert_eq!(transaction.desc(), desc.as_deref());

            let bytes = postcard::to_stdvec(&transaction).expect("postcard encodes");
            let plain_bytes = postcard::to_stdvec(&plain(&fields)).expect("postcard encodes");
            proptest::prop_assert_eq!(&bytes, &plain_bytes, "postcard bytes");
            let decoded: Transaction = postcard::from_bytes(&bytes).expect("postcard decodes");
            proptest::prop_assert_eq!(&decoded, &transaction, "postcard round trip");

            let json = serde_json::to_string(&transaction).expect("JSON encodes");
            let decoded: Transaction = serde_json::from_str(&json).expect("JSON decodes");
            proptest::prop_assert_eq!(&decoded, &transaction, "JSON round trip");
            proptest::prop_assert_eq!(&decoded.clone(), &transaction, "clone of the decoded");
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn transaction_fits_in_96_bytes() {
        assert_eq!(std::mem::size_of::<Transaction>(), 96);
    }
}
