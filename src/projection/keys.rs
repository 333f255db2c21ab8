//! Compact keys of the maps a posting updates. A ledger account is a `Copy`
//! enum rather than its name, and a payment reference is found through a
//! 64-bit digest whose every match is compared in full with the stored
//! transaction. Copying a map node to change it then copies plain values
//! and allocates nothing per key.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::domain::ids::{Sid, SidKind};
use crate::domain::posting::{pay_method_name, ADJUSTMENTS_ACCOUNT, PAY_METHODS};

/// Name prefix of a sub-account's ledger account.
const SUBACCOUNT_PREFIX: &str = "subaccount:";
/// Name prefix of a pay method's funding account.
const FUNDING_PREFIX: &str = "funding:";

/// A ledger account of the double-entry book. Its name, as postings' legs
/// spell it, is the `Display` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LedgerAccount {
    /// `subaccount:AC…`: the prepaid balance of a sub-account.
    SubAccount(Sid),
    /// `funding:<method>`: money received through a pay method, by its code.
    Funding(u16),
    /// `adjustments`: the contra account of ADJUSTMENT postings.
    Adjustments,
}

impl LedgerAccount {
    /// Reads an account name, or returns `None` for a name that is no
    /// ledger account.
    pub fn parse(name: &str) -> Option<LedgerAccount> {
        if name == ADJUSTMENTS_ACCOUNT {
            return Some(LedgerAccount::Adjustments);
        }
        if let Some(sid) = name.strip_prefix(SUBACCOUNT_PREFIX) {
            return Sid::parse_kind(sid, SidKind::Account).map(LedgerAccount::SubAccount);
        }
        let method = name.strip_prefix(FUNDING_PREFIX)?;
        PAY_METHODS
            .iter()
            .find(|(_, known, _)| *known == method)
            .map(|(code, _, _)| LedgerAccount::Funding(*code))
    }
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::SubAccount(sid) => write!(f, "{SUBACCOUNT_PREFIX}{sid}"),
            LedgerAccount::Funding(code) => {
                let method = pay_method_name(*code).unwrap_or("unknown");
                write!(f, "{FUNDING_PREFIX}{method}")
            }
            LedgerAccount::Adjustments => f.write_str(ADJUSTMENTS_ACCOUNT),
        }
    }
}

/// A leg's account name equals a ledger account when it reads as it.
impl PartialEq<LedgerAccount> for String {
    fn eq(&self, account: &LedgerAccount) -> bool {
        LedgerAccount::parse(self) == Some(*account)
    }
}

/// A key of the payment-reference index: the reference's digest and the
/// position in `State::transaction_order` of the posting that contains it
/// (16 bytes, where the posting's id would take 24). Two references may
/// share a digest, so each match is compared in full with its posting.
pub type ReferenceKey = (u64, u32);

/// Builds the key of a reference's digest in the posting at `position`.
pub fn reference_key(digest: u64, position: u32) -> ReferenceKey {
    (digest, position)
}

/// Returns the position of the posting of a reference key.
pub fn reference_position(key: &ReferenceKey) -> u32 {
    key.1
}

/// A 64-bit keyed hash of developer, pay method and reference: std's
/// `RandomState` (SipHash-1-3 as of Rust 1.95) with keys drawn once per
/// process. The keys are secret, so references chosen to collide cannot be
/// prepared. Digests are never stored, so they need not match across
/// processes, because a snapshot start computes them again. At a snapshot
/// start of 1,000,000 postings, SHA-256 here took about 75 ms of CPU on a
/// 2-core VM.
pub fn reference_digest(developer: Sid, pay_method: u16, reference: &str) -> u64 {
    let keys = REFERENCE_HASH_KEYS.get_or_init(RandomState::new);
    keys.hash_one((developer, pay_method, reference))
}

/// The hash keys of `reference_digest`, drawn from the operating system's
/// random source once per process.
static REFERENCE_HASH_KEYS: OnceLock<RandomState> = OnceLock::new();

/// Returns the smallest key with this digest.
pub fn reference_range_start(digest: u64) -> ReferenceKey {
    reference_key(digest, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let sid = Sid::generate(SidKind::Account);
        for account in [
            LedgerAccount::SubAccount(sid),
            LedgerAccount::Funding(4),
            LedgerAccount::Funding(242),
            LedgerAccount::Adjustments,
        ] {
            let name = account.to_string();
            assert_eq!(LedgerAccount::parse(&name), Some(account), "{name} reads back");
            assert!(name == account, "{name} equals its account");
        }
    }

    #[test]
    fn names_match_contra() {
        use crate::domain::posting::contra_account;
        use crate::projection::PostingType;
        let funding = contra_account(PostingType::TopUp, 4);
        assert_eq!(LedgerAccount::parse(&funding), Some(LedgerAccount::Funding(4)), "{funding}");
        let adjustments = contra_account(PostingType::Adjustment, 4);
        let parsed = LedgerAccount::parse(&adjustments);
        assert_eq!(parsed, Some(LedgerAccount::Adjustments), "{adjustments}");
    }

    #[test]
    fn rejects_names() {
        let developer = Sid::generate(SidKind::Developer);
        for name in [
            "",
            "adjustment",
            "funding:",
            "funding:unknown",
            "funding:PayPal",
            "subaccount:",
            "subaccount:AC5D130A2FE4D483A29D1939F0003AE8E9",
            &format!("subaccount:{developer}"),
        ] {
            assert_eq!(LedgerAccount::parse(name), None, "{name:?} is no ledger account");
        }
    }

    #[test]
    fn digest_separates_fields() {
        let developer = Sid::generate(SidKind::Developer);
        let other = Sid::generate(SidKind::Developer);
        let digest = reference_digest(developer, 4, "PAY-1");
        assert_eq!(digest, reference_digest(developer, 4, "PAY-1"), "same input");
        assert_ne!(digest, reference_digest(other, 4, "PAY-1"), "other developer");
        assert_ne!(digest, reference_digest(developer, 5, "PAY-1"), "other pay method");
        assert_ne!(digest, reference_digest(developer, 4, "PAY-2"), "other reference");
    }
}
