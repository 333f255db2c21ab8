//! A persistent sorted set for keys that arrive in random order, such as
//! the reference index's keys, which begin with a keyed hash. It keeps
//! three layers: a large sorted run, a middle run, and an `im::OrdSet` of
//! at most `RECENT_KEYS_MAX` recent keys. The runs are shared behind an
//! `Arc` and never change, and each key is in exactly one layer.
//!
//! Each batch of the writer publishes its state, so the first insert into
//! a node of an `im` B-tree after that copies the node and every node above
//! it. Kept in one B-tree, the keys inserted since the last start made it
//! three or four levels deep. Its branch nodes have up to 65 children, and
//! copying one adds a reference to each child, which freeing the copy later
//! removes. In a profile of the writer under spread TOPUPs, copying the
//! reference index's nodes took 43% of the time that the writer spent
//! copying nodes, and freeing them a fifth of the committer's time. With
//! at most `RECENT_KEYS_MAX` keys, the B-tree here is a root over its
//! leaves. So an insert copies one leaf, whose keys contain no references,
//! and the root once per batch.
//!
//! When the recent keys pass `RECENT_KEYS_MAX`, they are merged into a new
//! middle run. That copies the middle run, on average about 60 keys per
//! insert at a million keys. When the middle run passes `1 / MIDDLE_SHARE`
//! of the large one, it is merged into a new large run, which copies the
//! whole set (16 MiB for a million reference keys) while the writer waits.

use std::fmt;
use std::iter::Peekable;
use std::sync::Arc;

use im::OrdSet;

/// The maximum number of keys in the recent layer before it is merged into
/// the middle run. A full node of an `im` B-tree splits into two of 32 keys
/// (`MEDIAN` in im 15.1.0's `nodes/btree.rs`), so 1,024 keys need at most
/// 32 leaves, which fit under one root of up to 65 children.
const RECENT_KEYS_MAX: usize = 1024;

/// The middle run is merged into the large run once it has more than
/// `1 / MIDDLE_SHARE` as many keys as the large run.
const MIDDLE_SHARE: usize = 8;

/// A sorted set in the three layers that the module documentation describes.
#[derive(Clone)]
pub struct LayeredSet<K> {
    /// Keys in strictly increasing order.
    run: Arc<Vec<K>>,
    /// Keys merged from `recent`, in strictly increasing order.
    middle: Arc<Vec<K>>,
    /// Keys inserted since the last merge into `middle`.
    recent: OrdSet<K>,
}

impl<K: Ord + Clone> LayeredSet<K> {
    /// Builds a set whose run is `keys`. Returns the first key that is not
    /// greater than the one before it instead: a repeated key, when the
    /// caller sorted the keys.
    pub fn from_sorted(keys: Vec<K>) -> Result<LayeredSet<K>, K> {
        if let Some(pair) = keys.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(pair[1].clone());
        }
        Ok(LayeredSet { run: Arc::new(keys), middle: Arc::default(), recent: OrdSet::new() })
    }

    pub fn len(&self) -> usize {
        self.run.len() + self.middle.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &K) -> bool {
        self.run.binary_search(key).is_ok()
            || self.middle.binary_search(key).is_ok()
            || self.recent.contains(key)
    }

    /// Adds a key and returns whether it was new.
    pub fn insert(&mut self, key: K) -> bool {
        if self.contains(&key) {
            return false;
        }
        self.recent.insert(key);
        if self.recent.len() > RECENT_KEYS_MAX {
            let recent: Vec<K> = self.recent.iter().cloned().collect();
            self.recent = OrdSet::new();
            self.middle = Arc::new(merge_disjoint(&self.middle, &recent));
            if self.middle.len() * MIDDLE_SHARE > self.run.len() {
                // This copies the whole set while the writer waits, 14 to
                // 19 ms at a million keys (see `merge_disjoint`).
                let middle = std::mem::take(&mut self.middle);
                self.run = Arc::new(merge_disjoint(&self.run, &middle));
            }
        }
        true
    }

    /// Returns the keys in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        Merged::new(self.run.iter(), self.middle.iter(), self.recent.iter())
    }

    /// Returns the keys at or above `start`, in increasing order.
    pub fn range_from<'a>(&'a self, start: &K) -> impl Iterator<Item = &'a K> {
        let run = &self.run[self.run.partition_point(|key| key < start)..];
        let middle = &self.middle[self.middle.partition_point(|key| key < start)..];
        Merged::new(run.iter(), middle.iter(), self.recent.range(start..))
    }
}

/// Merges two sorted runs that share no key into one. Each key of `right`
/// finds its place in the rest of `left` by galloping: bounds of 1, 2, 4, …
/// keys until one passes the key, then a binary search below it. The keys
/// of `left` in between are copied as one slice. Timed insert by insert
/// into a set of 1,000,000 reference keys, merging 125,000 keys into the
/// large run took 14 to 19 ms, against 36 to 41 ms with a binary search
/// over the whole rest, and merging the recent keys took about 0.4 ms
/// instead of about 1.1 ms.
fn merge_disjoint<K: Ord + Clone>(left: &[K], right: &[K]) -> Vec<K> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let mut rest = left;
    for key in right {
        let mut bound = 1;
        while bound < rest.len() && rest[bound - 1] < *key {
            bound *= 2;
        }
        let bound = bound.min(rest.len());
        let below = rest[..bound].partition_point(|candidate| candidate < key);
        merged.extend_from_slice(&rest[..below]);
        merged.push(key.clone());
        rest = &rest[below..];
    }
    merged.extend_from_slice(rest);
    merged
}

/// The keys of three sorted iterators that share no key, in increasing
/// order.
struct Merged<'a, K: 'a, R, M, N>
where
    R: Iterator<Item = &'a K>,
    M: Iterator<Item = &'a K>,
    N: Iterator<Item = &'a K>,
{
    run: Peekable<R>,
    middle: Peekable<M>,
    recent: Peekable<N>,
}

impl<'a, K: 'a, R, M, N> Merged<'a, K, R, M, N>
where
    R: Iterator<Item = &'a K>,
    M: Iterator<Item = &'a K>,
    N: Iterator<Item = &'a K>,
{
    fn new(run: R, middle: M, recent: N) -> Self {
        Merged { run: run.peekable(), middle: middle.peekable(), recent: recent.peekable() }
    }
}

impl<'a, K: Ord + 'a, R, M, N> Iterator for Merged<'a, K, R, M, N>
where
    R: Iterator<Item = &'a K>,
    M: Iterator<Item = &'a K>,
    N: Iterator<Item = &'a K>,
{
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        let heads =
            [self.run.peek().copied(), self.middle.peek().copied(), self.recent.peek().copied()];
        let (layer, _) = heads
            .iter()
            .enumerate()
            .filter_map(|(layer, head)| head.map(|key| (layer, key)))
            .min_by(|(_, a), (_, b)| a.cmp(b))?;
        match layer {
            0 => self.run.next(),
            1 => self.middle.next(),
            _ => self.recent.next(),
        }
    }
}

impl<K: Ord + Clone> PartialEq for LayeredSet<K> {
    fn eq(&self, other: &LayeredSet<K>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone> Eq for LayeredSet<K> {}

impl<K: Ord + Clone> Default for LayeredSet<K> {
    fn default() -> LayeredSet<K> {
        LayeredSet { run: Arc::default(), middle: Arc::default(), recent: OrdSet::new() }
    }
}

impl<K: Ord + Clone + fmt::Debug> fmt::Debug for LayeredSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn set_inserts_and_ranges() {
        let mut set = LayeredSet::from_sorted(vec![10, 20, 30]).expect("sorted keys");
        assert!(set.insert(15), "15 is new");
        assert!(!set.insert(20), "20 is in the run");
        assert!(!set.insert(15), "15 is a recent key");
        assert!(set.contains(&30), "contains a run key");
        assert_eq!(set.len(), 4, "four keys");
        let from_twenty: Vec<u32> = set.range_from(&20).copied().collect();
        assert_eq!(from_twenty, vec![20, 30], "keys from 20");
        let repeated = LayeredSet::from_sorted(vec![4, 7, 7]);
        assert_eq!(repeated.err(), Some(7), "a repeated key");
    }

    #[test]
    fn merges_keep_every_key() {
        // Enough keys, in an order far from sorted, to merge the recent
        // keys into the middle run many times and the middle run into the
        // large run several times.
        let mut set = LayeredSet::default();
        let mut expected = BTreeSet::new();
        let mut copies = Vec::new();
        for index in 0..40_000u64 {
            let key = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_003;
            assert_eq!(set.insert(key), expected.insert(key), "insert of {key}");
            if index % 9_973 == 0 {
                copies.push((set.clone(), expected.clone()));
            }
        }
        assert!(!set.middle.is_empty() || !set.run.is_empty(), "the recent keys were merged");
        assert!(set.run.len() > RECENT_KEYS_MAX * MIDDLE_SHARE, "the middle run was merged");
        assert_eq!(set.len(), expected.len(), "length");
        assert!(set.iter().eq(expected.iter()), "every key, in order");
        for start in [0, 1, 500_000, 999_999, 1_000_003] {
            let from: Vec<&u64> = set.range_from(&start).collect();
            let expected_from: Vec<&u64> = expected.range(start..).collect();
            assert_eq!(from, expected_from, "keys from {start}");
        }
        // Copies taken along the way keep the keys they had.
        for (copy, keys) in copies {
            assert_eq!(copy.len(), keys.len(), "a copy's length");
            assert!(copy.iter().eq(keys.iter()), "a copy's keys");
        }
    }

    #[test]
    fn shared_digest_spans_layers() {
        // Reference keys are a digest and a position. Of 32,000 keys, the
        // first 29,725 end up in the large run, the next 2,050 in the
        // middle run and the last 225 in the recent layer. Keys that share
        // a digest sit in all three, and a lookup from the digest's first
        // key must find all of them.
        let mut set = LayeredSet::default();
        let shared = 0x5eed_u64;
        let positions = [7, 15_000, 30_500, 31_900];
        for position in 0..32_000u32 {
            let digest = if positions.contains(&position) {
                shared
            } else {
                u64::from(position).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            };
            assert!(set.insert((digest, position)), "key {position} is new");
        }
        assert_eq!(set.run.len(), 29_725, "keys in the large run");
        assert_eq!(set.middle.len(), 2_050, "keys in the middle run");
        assert_eq!(set.recent.len(), 225, "recent keys");
        let found: Vec<u32> = set
            .range_from(&(shared, 0))
            .take_while(|(digest, _)| *digest == shared)
            .map(|(_, position)| *position)
            .collect();
        assert_eq!(found, positions, "every key of the shared digest, in order");
    }

    proptest! {
        /// The set agrees with a `BTreeSet` after any inserts into any run.
        #[test]
        fn agrees_with_btree_set(
            run in proptest::collection::btree_set(0u16..5_000, 0..300),
            inserts in proptest::collection::vec(0u16..5_000, 0..6_000),
            start in 0u16..5_000,
        ) {
            let mut set = LayeredSet::from_sorted(run.iter().copied().collect()).expect("sorted keys");
            let mut expected = run;
            for key in inserts {
                prop_assert_eq!(set.insert(key), expected.insert(key));
                prop_assert!(set.contains(&key));
            }
            prop_assert_eq!(set.len(), expected.len());
            prop_assert!(set.iter().eq(expected.iter()));
            prop_assert!(set.range_from(&start).eq(expected.range(start..)));
            let rebuilt = LayeredSet::from_sorted(expected.iter().copied().collect()).expect("sorted keys");
            prop_assert_eq!(&set, &rebuilt);
        }
    }
}
