//! The list of a sub-account's postings, in posting order. Most
//! sub-accounts have few postings, and an `im::Vector` would give each of them
//! a chunk of 64 ids (1.5 KiB) from the third posting on. A short list is
//! therefore a shared slice of exactly its length, copied when it grows
//! (at most `SHORT_MAX` ids), and only a longer one becomes a `Vector`.

use std::ops::Index;
use std::sync::Arc;

use im::Vector;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::ids::Sid;

/// Maximum ids in a short list before it becomes a `Vector`: one `Vector`
/// chunk, so that growing a short list copies no more than copying the
/// chunk of a shared `Vector` would.
const SHORT_MAX: usize = 64;

#[derive(Debug, Clone)]
pub enum PostingList {
    Short(Arc<[Sid]>),
    /// Behind an `Arc`, so that the enum, and each map entry, stays a few
    /// words instead of the size of a whole `Vector`.
    Long(Arc<Vector<Sid>>),
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

    pub fn get(&self, index: usize) -> Option<&Sid> {
        match self {
            PostingList::Short(ids) => ids.get(index),
            PostingList::Long(ids) => ids.get(index),
        }
    }

    pub fn last(&self) -> Option<&Sid> {
        self.len().checked_sub(1).and_then(|index| self.get(index))
    }

    pub fn push_back(&mut self, sid: Sid) {
        match self {
            PostingList::Short(ids) if ids.len() < SHORT_MAX => {
                let grown: Arc<[Sid]> = ids.iter().copied().chain([sid]).collect();
                *ids = grown;
            }
            PostingList::Short(ids) => {
                let mut long: Vector<Sid> = ids.iter().copied().collect();
                long.push_back(sid);
                *self = PostingList::Long(Arc::new(long));
            }
            PostingList::Long(ids) => Arc::make_mut(ids).push_back(sid),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            PostingList::Short(ids) => Iter::Short(ids.iter()),
            PostingList::Long(ids) => Iter::Long(ids.iter()),
        }
    }
}

impl Index<usize> for PostingList {
    type Output = Sid;

    fn index(&self, index: usize) -> &Sid {
        match self {
            PostingList::Short(ids) => &ids[index],
            PostingList::Long(ids) => &ids[index],
        }
    }
}

/// Borrowing iterator over a `PostingList`.
pub enum Iter<'a> {
    Short(std::slice::Iter<'a, Sid>),
    Long(im::vector::Iter<'a, Sid>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Sid;

    fn next(&mut self) -> Option<&'a Sid> {
        match self {
            Iter::Short(ids) => ids.next(),
            Iter::Long(ids) => ids.next(),
        }
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
    type Item = &'a Sid;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl From<Vec<Sid>> for PostingList {
    fn from(ids: Vec<Sid>) -> PostingList {
        if ids.len() <= SHORT_MAX {
            PostingList::Short(ids.into())
        } else {
            PostingList::Long(Arc::new(ids.into_iter().collect()))
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
        Vec::<Sid>::deserialize(deserializer).map(PostingList::from)
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
            assert_eq!(list.last(), Some(sid), "last after {index}");
        }
        assert!(matches!(list, PostingList::Long(_)), "a long list is a Vector");
        let listed: Vec<Sid> = list.iter().copied().collect();
        assert_eq!(listed, expected, "posting order");
        assert_eq!(list[SHORT_MAX], expected[SHORT_MAX], "index past the short part");
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
            assert_eq!(copy.iter().copied().collect::<Vec<_>>(), ids(count), "copy of {count}");
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
}
