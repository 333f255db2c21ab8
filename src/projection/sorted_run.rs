//! A persistent sorted map for the indexes that a snapshot start builds in
//! bulk: a sorted run of entries, built once from sorted data and shared
//! behind an `Arc`, and an `im::OrdMap` of the entries inserted after it.
//!
//! Inserting the 1,000,000 sorted sids of `loadgen scale` into an
//! `im::OrdMap` one by one took about 0.3 s on a 2-core VM, and left its
//! nodes half full. Building the run is one check over data that is sorted
//! already. Inserts after that go to the `OrdMap`, so cloning the map stays
//! cheap, and a state folded from the log without a snapshot keeps every
//! entry there. Equality, iteration and `len` see one map whatever the
//! layer of each entry.

use std::cmp::Ordering;
use std::fmt;
use std::iter::Peekable;
use std::ops::Index;
use std::sync::Arc;

use im::ordmap::Iter as OrdMapIter;
use im::OrdMap;

/// A sorted map in two layers: a run built in bulk and later inserts.
#[derive(Clone)]
pub struct SortedRunMap<K, V> {
    /// Entries in strictly increasing key order.
    run: Arc<Vec<(K, V)>>,
    /// Entries inserted after the run was built. An entry here replaces the
    /// run's entry with the same key.
    later: OrdMap<K, V>,
    /// How many keys of the run `later` replaces.
    replaced: usize,
}

impl<K: Ord + Clone, V: Clone> SortedRunMap<K, V> {
    /// Builds a map whose run is `entries`. Returns the first key that is
    /// not greater than the one before it instead: a repeated key, when the
    /// caller sorted the entries.
    pub fn from_sorted(entries: Vec<(K, V)>) -> Result<SortedRunMap<K, V>, K> {
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(pair[1].0.clone());
        }
        Ok(SortedRunMap { run: Arc::new(entries), later: OrdMap::new(), replaced: 0 })
    }

    pub fn len(&self) -> usize {
        self.run.len() + self.later.len() - self.replaced
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.later.get(key).or_else(|| self.run_get(key))
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces an entry and returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let in_run = self.run_get(&key).cloned();
        match self.later.insert(key, value) {
            Some(previous) => Some(previous),
            None => {
                if in_run.is_some() {
                    self.replaced += 1;
                }
                in_run
            }
        }
    }

    /// Returns the entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.range_from_index(0, self.later.range(..))
    }

    /// Returns the entries with keys at or above `start`, in key order.
    pub fn range_from(&self, start: &K) -> Iter<'_, K, V> {
        let first = self.run.partition_point(|(key, _)| key < start);
        self.range_from_index(first, self.later.range(start..))
    }

    fn range_from_index<'a>(&'a self, first: usize, later: OrdMapIter<'a, K, V>) -> Iter<'a, K, V> {
        Iter { run: self.run[first..].iter().peekable(), later: later.peekable() }
    }

    fn run_get(&self, key: &K) -> Option<&V> {
        let index = self.run.binary_search_by(|(candidate, _)| candidate.cmp(key)).ok()?;
        Some(&self.run[index].1)
    }
}

impl<K, V> Default for SortedRunMap<K, V> {
    fn default() -> SortedRunMap<K, V> {
        SortedRunMap { run: Arc::default(), later: OrdMap::default(), replaced: 0 }
    }
}

/// Maps are equal when they contain the same entries, whatever their layers.
impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for SortedRunMap<K, V> {
    fn eq(&self, other: &SortedRunMap<K, V>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for SortedRunMap<K, V> {}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for SortedRunMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Panics when the key is absent, as `im::OrdMap` does.
impl<K: Ord + Clone, V: Clone> Index<&K> for SortedRunMap<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("SortedRunMap::index: key not found")
    }
}

/// Entries of both layers merged in key order. Where both contain a key,
/// the later insert is yielded and the run's entry skipped.
pub struct Iter<'a, K: Ord, V> {
    run: Peekable<std::slice::Iter<'a, (K, V)>>,
    later: Peekable<OrdMapIter<'a, K, V>>,
}

impl<'a, K: Ord, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        let order = match (self.run.peek(), self.later.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((run_key, _)), Some((later_key, _))) => run_key.cmp(later_key),
        };
        if order == Ordering::Equal {
            self.run.next();
        }
        if order == Ordering::Less {
            return self.run.next().map(|(key, value)| (key, value));
        }
        self.later.next()
    }
}

/// A sorted set in the two layers of `SortedRunMap`.
#[derive(Clone)]
pub struct SortedRunSet<K>(SortedRunMap<K, ()>);

impl<K: Ord + Clone> SortedRunSet<K> {
    /// Builds a set from keys in strictly increasing order, as
    /// `SortedRunMap::from_sorted` builds a map.
    pub fn from_sorted(keys: Vec<K>) -> Result<SortedRunSet<K>, K> {
        let entries = keys.into_iter().map(|key| (key, ())).collect();
        SortedRunMap::from_sorted(entries).map(SortedRunSet)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.0.contains_key(key)
    }

    /// Adds a key and returns whether it was new.
    pub fn insert(&mut self, key: K) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// Returns the keys in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(key, _)| key)
    }

    /// Returns the keys at or above `start`, in increasing order.
    pub fn range_from(&self, start: &K) -> impl Iterator<Item = &K> {
        self.0.range_from(start).map(|(key, _)| key)
    }
}

impl<K: Ord + Clone> PartialEq for SortedRunSet<K> {
    fn eq(&self, other: &SortedRunSet<K>) -> bool {
        self.0 == other.0
    }
}

impl<K: Ord + Clone> Eq for SortedRunSet<K> {}

impl<K> Default for SortedRunSet<K> {
    fn default() -> SortedRunSet<K> {
        SortedRunSet(SortedRunMap::default())
    }
}

impl<K: Ord + Clone + fmt::Debug> fmt::Debug for SortedRunSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(keys: &[u32]) -> SortedRunMap<u32, String> {
        let entries = keys.iter().map(|key| (*key, format!("run {key}"))).collect();
        SortedRunMap::from_sorted(entries).expect("sorted keys")
    }

    #[test]
    fn rejects_unsorted_run() {
        let repeated = vec![(1, ()), (2, ()), (2, ())];
        assert_eq!(SortedRunMap::from_sorted(repeated).err(), Some(2), "repeated key");
        let descending = vec![(3, ()), (1, ())];
        assert_eq!(SortedRunMap::from_sorted(descending).err(), Some(1), "descending keys");
        let empty: Vec<(u32, ())> = Vec::new();
        assert!(SortedRunMap::from_sorted(empty).is_ok(), "an empty run");
    }

    #[test]
    fn finds_both_layers() {
        let mut map = run_of(&[10, 20, 30]);
        assert_eq!(map.insert(25, "later 25".to_string()), None, "a new key");
        assert_eq!(map.get(&20).map(String::as_str), Some("run 20"), "a run key");
        assert_eq!(map.get(&25).map(String::as_str), Some("later 25"), "a later key");
        assert_eq!(map.get(&15), None, "an absent key");
        assert!(map.contains_key(&30), "contains a run key");
        assert_eq!(map[&10], "run 10", "index of a run key");
        assert_eq!(map.len(), 4, "three run keys and one later key");
    }

    #[test]
    fn insert_replaces_run_entry() {
        let mut map = run_of(&[10, 20]);
        let replaced = map.insert(20, "later 20".to_string());
        assert_eq!(replaced.as_deref(), Some("run 20"), "the run's value is returned");
        assert_eq!(map.get(&20).map(String::as_str), Some("later 20"), "the new value");
        assert_eq!(map.len(), 2, "the length counts the key once");
        let again = map.insert(20, "later 20 again".to_string());
        assert_eq!(again.as_deref(), Some("later 20"), "the later value is returned");
        assert_eq!(map.len(), 2, "the length after a second replacement");
        let listed: Vec<(u32, &str)> =
            map.iter().map(|(key, value)| (*key, value.as_str())).collect();
        assert_eq!(listed, vec![(10, "run 10"), (20, "later 20 again")], "entries");
    }

    #[test]
    fn iterates_in_key_order() {
        let mut map = run_of(&[2, 4, 6, 8]);
        for key in [1, 5, 6, 9] {
            map.insert(key, format!("later {key}"));
        }
        let keys: Vec<u32> = map.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, vec![1, 2, 4, 5, 6, 8, 9], "merged keys");
        let from_five: Vec<u32> = map.range_from(&5).map(|(key, _)| *key).collect();
        assert_eq!(from_five, vec![5, 6, 8, 9], "keys from 5");
        let from_three: Vec<u32> = map.range_from(&3).map(|(key, _)| *key).collect();
        assert_eq!(from_three, vec![4, 5, 6, 8, 9], "keys from 3, which is absent");
        assert_eq!(map.range_from(&10).count(), 0, "nothing above the largest key");
    }

    #[test]
    fn layers_compare_equal() {
        let bulk = run_of(&[1, 2, 3]);
        let mut inserted = SortedRunMap::default();
        for key in [3, 1, 2] {
            inserted.insert(key, format!("run {key}"));
        }
        assert_eq!(bulk, inserted, "the same entries in different layers");
        inserted.insert(2, "changed".to_string());
        assert_ne!(bulk, inserted, "a changed value");
        assert_eq!(format!("{bulk:?}"), r#"{1: "run 1", 2: "run 2", 3: "run 3"}"#, "debug form");
    }

    #[test]
    fn clone_is_unchanged() {
        let mut map = run_of(&[1, 2]);
        let copy = map.clone();
        map.insert(3, "later 3".to_string());
        map.insert(1, "later 1".to_string());
        assert_eq!(copy.len(), 2, "the copy keeps its length");
        assert_eq!(copy.get(&1).map(String::as_str), Some("run 1"), "the copy keeps its value");
        assert_eq!(copy.get(&3), None, "the copy lacks the new key");
    }

    #[test]
    fn set_inserts_and_ranges() {
        let mut set = SortedRunSet::from_sorted(vec![10, 20, 30]).expect("sorted keys");
        assert!(set.insert(15), "15 is new");
        assert!(!set.insert(20), "20 is in the run");
        assert!(!set.insert(15), "15 is a later key");
        assert!(set.contains(&30), "contains a run key");
        assert_eq!(set.len(), 4, "four keys");
        let from_twenty: Vec<u32> = set.range_from(&20).copied().collect();
        assert_eq!(from_twenty, vec![20, 30], "keys from 20");
        let repeated = SortedRunSet::from_sorted(vec![4, 7, 7]);
        assert_eq!(repeated.err(), Some(7), "a repeated key");
    }
}
