//! The list of a sub-account's postings, in posting order. Most
//! sub-accounts have few postings, and an `im::Vector` would give each of them
//! a chunk of 64 ids (1 KiB) from the third posting on. A short list is
//! therefore a shared slice of exactly its length, copied when it grows
//! (at most `SHORT_MAX` ids), and only a longer one becomes a `Vector`.
//!
//! Every id in a list is a transaction's, so a list keeps 16 bytes of each
//! (`SidBits`) instead of the 24 of a `Sid`, and gives out `Sid`s.

use std::sync::Arc;

use im::Vector;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::ids::{Sid, SidBits, SidKind};

/// Maximum ids in a short list before it becomes a `Vector`: one `Vector`
/// chunk, so that growing a short list copies no more than copying the
/// chunk of a shared `Vector` would.
const SHORT_MAX: usize = 64;

#[derive(Debug, Clone)]
pub enum PostingList {
    Short(Arc<[SidBits]>),
    /// Behind an `Arc`, so that the enum, and each map entry, stays a few
    /// words instead of the size of a whole `Vector`.
    Long(Arc<Vector<SidBits>>),
}

/// Lists are equal when they hold the same ids, whatever their form.
impl PartialEq for PostingList {
    fn eq(&self, other: &PostingList) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PostingList {}

impl Default for PostingList {
    fn default() -> PostingList {
        PostingList::Short(Arc::from([]))
    }
}

impl PostingList {
    pub fn len(&self) -> usize {
        match self {
            PostingList::Short(ids) => ids.len(),
            PostingList::Long(ids) => ids.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<Sid> {
        let bits = match self {
            PostingList::Short(ids) => ids.get(index),
            PostingList::Long(ids) => ids.get(index),
        };
        bits.map(|bits| transaction_sid(*bits))
    }

    pub fn last(&self) -> Option<Sid> {
        self.len().checked_sub(1).and_then(|index| self.get(index))
    }

    /// Appends a transaction's id.
    ///
    /// # Panics
    ///
    /// When `sid` is not a transaction's.
    pub fn push_back(&mut self, sid: Sid) {
        let bits = transaction_bits(sid);
        match self {
            PostingList::Short(ids) if ids.len() < SHORT_MAX => {
                let grown: Arc<[SidBits]> = ids.iter().copied().chain([bits]).collect();
                *ids = grown;
            }
            PostingList::Short(ids) => {
                let mut long: Vector<SidBits> = ids.iter().copied().collect();
                long.push_back(bits);
                *self = PostingList::Long(Arc::new(long));
            }
            PostingList::Long(ids) => Arc::make_mut(ids).push_back(bits),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            PostingList::Short(ids) => Iter::Short(ids.iter()),
            PostingList::Long(ids) => Iter::Long(ids.iter()),
        }
    }
}

fn transaction_sid(bits: SidBits) -> Sid {
    bits.with_kind(SidKind::Transaction)
}

fn transaction_bits(sid: Sid) -> SidBits {
    assert_eq!(sid.kind(), SidKind::Transaction, "a posting list holds transaction ids");
    sid.bits()
}

/// Iterator over the ids of a `PostingList`.
pub enum Iter<'a> {
    Short(std::slice::Iter<'a, SidBits>),
    Long(im::vector::Iter<'a, SidBits>),
}

impl Iterator for Iter<'_> {
    type Item = Sid;

    fn next(&mut self) -> Option<Sid> {
        let bits = match self {
            Iter::Short(ids) => ids.next(),
            Iter::Long(ids) => ids.next(),
        };
        bits.map(|bits| transaction_sid(*bits))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Short(ids) => ids.size_hint(),
            Iter::Long(ids) => ids.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a PostingList {
    type Item = Sid;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PostingList {
    /// Builds a list of the transaction ids whose bits `ids` contains.
    pub(crate) fn from_transaction_bits(ids: &[SidBits]) -> PostingList {
        if ids.len() <= SHORT_MAX {
            PostingList::Short(Arc::from(ids))
        } else {
            PostingList::Long(Arc::new(ids.iter().copied().collect()))
        }
    }
}

/// A list of transaction ids.
///
/// # Panics
///
/// When one of `ids` is not a transaction's.
impl From<Vec<Sid>> for PostingList {
    fn from(ids: Vec<Sid>) -> PostingList {
        let bits = ids.into_iter().map(transaction_bits);
        if bits.len() <= SHORT_MAX {
            PostingList::Short(bits.collect())
        } else {
            PostingList::Long(Arc::new(bits.collect()))
        }
    }
}

/// A list encodes as the plain sequence of its ids.
impl Serialize for PostingList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PostingList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PostingList, D::Error> {
        let ids = Vec::<Sid>::deserialize(deserializer)?;
        if let Some(other) = ids.iter().find(|sid| sid.kind() != SidKind::Transaction) {
            let reason = format!("posting list names {other}, which is not a transaction");
            return Err(serde::de::Error::custom(reason));
        }
        Ok(PostingList::from(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::SidKind;

    fn ids(count: usize) -> Vec<Sid> {
        (0..count).map(|value| Sid::new(SidKind::Transaction, value as u128)).collect()
    }

    #[test]
    fn grows_past_short() {
        let expected = ids(SHORT_MAX * 3);
        let mut list = PostingList::default();
        for (index, sid) in expected.iter().enumerate() {
            list.push_back(*sid);
            assert_eq!(list.len(), index + 1, "length after {index}");
            assert_eq!(list.last(), Some(*sid), "last after {index}");
        }
        assert!(matches!(list, PostingList::Long(_)), "a long list is a Vector");
        let listed: Vec<Sid> = list.iter().collect();
        assert_eq!(listed, expected, "posting order");
        assert_eq!(list.get(SHORT_MAX), Some(expected[SHORT_MAX]), "index past the short part");
        assert_eq!(list.get(SHORT_MAX * 3), None, "index past the end");
    }

    #[test]
    fn list_is_small() {
        let word = std::mem::size_of::<usize>();
        let size = std::mem::size_of::<PostingList>();
        assert!(size <= 3 * word, "a list takes {size} bytes");
    }

    #[test]
    fn copy_is_unchanged() {
        for count in [3, SHORT_MAX + 10] {
            let mut list = PostingList::default();
            for sid in ids(count) {
                list.push_back(sid);
            }
            let copy = list.clone();
            list.push_back(Sid::new(SidKind::Transaction, u128::MAX));
            assert_eq!(copy.len(), count, "the copy of {count} keeps its length");
            assert_eq!(list.len(), count + 1, "the original of {count} grew");
            assert_eq!(copy.iter().collect::<Vec<_>>(), ids(count), "copy of {count}");
        }
    }

    #[test]
    fn encodes_as_sequence() {
        for count in [0, 2, SHORT_MAX, SHORT_MAX + 1] {
            let mut list = PostingList::default();
            for sid in ids(count) {
                list.push_back(sid);
            }
            let bytes = postcard::to_stdvec(&list).expect("encodes");
            let plain = postcard::to_stdvec(&ids(count)).expect("encodes");
            assert_eq!(bytes, plain, "{count} ids encode as a sequence");
            let back: PostingList = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(back.iter().count(), count, "{count} ids decode");
            assert_eq!(back.len(), list.len(), "{count} ids keep their length");
        }
    }

    #[test]
    fn holds_only_transaction_ids() {
        let account = Sid::new(SidKind::Account, 7);
        let bytes = postcard::to_stdvec(&vec![ids(1)[0], account]).expect("encodes");
        let error = postcard::from_bytes::<PostingList>(&bytes).unwrap_err();
        assert!(matches!(error, postcard::Error::SerdeDeCustom), "decoded account id");
        let pushed = std::panic::catch_unwind(|| PostingList::default().push_back(account));
        assert!(pushed.is_err(), "pushed account id");
    }
}
