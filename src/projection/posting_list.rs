//! The list of a sub-account's postings, in posting order. Most
//! sub-accounts have few postings, and an `im::Vector` would give each of them
//! a chunk of 64 entries from the third posting on. A short list is
//! therefore a shared slice of exactly its length, copied when it grows
//! (at most `SHORT_MAX` entries), and only a longer one becomes a `Vector`.
//!
//! A list contains each posting's position in `State::transaction_order`,
//! 4 bytes, instead of its 16-byte id, and `State::posting` finds the
//! posting at a position. A `u32` limits the state to 4,294,967,295
//! postings, which would take over 1 TiB of memory at 250 bytes each.

use std::sync::Arc;

use im::Vector;

/// Maximum entries in a short list before it becomes a `Vector`: one
/// `Vector` chunk, so that growing a short list copies no more than copying
/// the chunk of a shared `Vector` would.
const SHORT_MAX: usize = 64;

#[derive(Debug, Clone)]
pub enum PostingList {
    Short(Arc<[u32]>),
    /// Behind an `Arc`, so that the enum, and each map entry, stays a few
    /// words instead of the size of a whole `Vector`.
    Long(Arc<Vector<u32>>),
}

/// Lists are equal when they hold the same positions, whatever their form.
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
    /// Builds a list of these positions, in this order.
    pub fn from_positions(positions: &[u32]) -> PostingList {
        if positions.len() <= SHORT_MAX {
            PostingList::Short(Arc::from(positions))
        } else {
            PostingList::Long(Arc::new(positions.iter().copied().collect()))
        }
    }

    pub fn len(&self) -> usize {
        match self {
            PostingList::Short(positions) => positions.len(),
            PostingList::Long(positions) => positions.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the position of the list's posting number `index`.
    pub fn get(&self, index: usize) -> Option<u32> {
        match self {
            PostingList::Short(positions) => positions.get(index).copied(),
            PostingList::Long(positions) => positions.get(index).copied(),
        }
    }

    pub fn last(&self) -> Option<u32> {
        self.len().checked_sub(1).and_then(|index| self.get(index))
    }

    /// Appends a posting's position.
    pub fn push_back(&mut self, position: u32) {
        match self {
            PostingList::Short(positions) if positions.len() < SHORT_MAX => {
                let grown: Arc<[u32]> = positions.iter().copied().chain([position]).collect();
                *positions = grown;
            }
            PostingList::Short(positions) => {
                let mut long: Vector<u32> = positions.iter().copied().collect();
                long.push_back(position);
                *self = PostingList::Long(Arc::new(long));
            }
            PostingList::Long(positions) => Arc::make_mut(positions).push_back(position),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            PostingList::Short(positions) => Iter::Short(positions.iter()),
            PostingList::Long(positions) => Iter::Long(positions.iter()),
        }
    }
}

/// Iterator over the positions of a `PostingList`.
pub enum Iter<'a> {
    Short(std::slice::Iter<'a, u32>),
    Long(im::vector::Iter<'a, u32>),
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Iter::Short(positions) => positions.next().copied(),
            Iter::Long(positions) => positions.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Short(positions) => positions.size_hint(),
            Iter::Long(positions) => positions.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a PostingList {
    type Item = u32;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(count: usize) -> Vec<u32> {
        (0..count).map(|value| value as u32 * 3).collect()
    }

    #[test]
    fn grows_past_short() {
        let expected = positions(SHORT_MAX * 3);
        let mut list = PostingList::default();
        for (index, position) in expected.iter().enumerate() {
            list.push_back(*position);
            assert_eq!(list.len(), index + 1, "length after {index}");
            assert_eq!(list.last(), Some(*position), "last after {index}");
        }
        assert!(matches!(list, PostingList::Long(_)), "a long list is a Vector");
        let listed: Vec<u32> = list.iter().collect();
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
            for position in positions(count) {
                list.push_back(position);
            }
            let copy = list.clone();
            list.push_back(u32::MAX);
            assert_eq!(copy.len(), count, "the copy of {count} keeps its length");
            assert_eq!(list.len(), count + 1, "the original of {count} grew");
            assert_eq!(copy.iter().collect::<Vec<_>>(), positions(count), "copy of {count}");
        }
    }

    #[test]
    fn built_equals_pushed() {
        for count in [0, 2, SHORT_MAX, SHORT_MAX + 1] {
            let mut pushed = PostingList::default();
            for position in positions(count) {
                pushed.push_back(position);
            }
            let built = PostingList::from_positions(&positions(count));
            assert_eq!(built, pushed, "{count} positions");
            assert_eq!(
                matches!(built, PostingList::Long(_)),
                count > SHORT_MAX,
                "form of {count} positions"
            );
        }
    }
}
