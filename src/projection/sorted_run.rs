//! A persistent sorted map for the indexes and views that a snapshot start
//! builds in bulk. It has three layers: a sorted run of entries, built once
//! from sorted data and shared behind an `Arc`, an `im::OrdMap` of the
//! entries inserted after it, and an `im::OrdSet` of the run's keys
//! removed after it.
//!
//! Inserting the 1,000,000 sorted sids of `loadgen scale` into an
//! `im::OrdMap` one by one took about 0.3 s on a 2-core VM, and left its
//! nodes half full. Building the run is one check over data that is sorted
//! already. Inserts after that go to the `OrdMap`, so cloning the map stays
//! cheap, and a state folded one event at a time keeps every entry there.
//! Equality, iteration and `len` see one map whatever the layer of each
//! entry.
//!
//! A run also takes less memory: an `im::OrdMap` node contains 64 entries
//! and 65 child pointers, leaves included, and nodes filled in random order
//! are about half full. With 100,000 sub-accounts, each with a SIP account
//! and an alias, keeping the logins and the SIP views as runs cut the RSS
//! after a snapshot start by 56 MiB.
//!
//! The sub-accounts, their posting lists, the ledger balances and the
//! stream versions change with every posting, and are runs too. A change
//! puts the new value in the later layer, and once a quarter of the run's
//! keys are replaced or removed the run is rebuilt. So each change costs
//! about five copies of an entry on average, each a key and a pointer or
//! a small value. A rebuild stops the writer: on the AMD host of
//! `docs/benchmarks.md` a run of 100,000 entries took about 12 ms to
//! rebuild, and one of 300,000 about 13 ms. With 100,000 sub-accounts,
//! the runs of sub-accounts, posting lists and balances are rebuilt once
//! postings have touched a quarter of the sub-accounts since the last
//! rebuild. As runs, these four maps lowered the peak RSS of a start from
//! a snapshot of 1,000,000 postings from 573 to 540 MiB.
//!
//! A full replay stages a map's changes (`stage`): they go to a hash map
//! on top of the layers until the next `compact` sorts them into a new
//! run, and the map cannot be read in key order in between.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::iter::{Chain, Flatten, Peekable};
use std::ops::Index;
use std::sync::Arc;

use im::ordmap::Iter as OrdMapIter;
use im::vector::Iter as VectorIter;
use im::{OrdMap, OrdSet, Vector};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The run is rebuilt once more than `1 / STALE_SHARE` of its entries are
/// replaced or removed. Until then each replaced entry is in memory twice,
/// its old value in the run and its new one in the later layer, which
/// takes about twice the memory of the run's entry. With 100,000
/// sub-accounts and 300,000 postings on sub-accounts drawn at random after
/// a start from a snapshot of 700,000 (`projection_memory`), a quarter
/// instead of a half lowered the peak of the live heap from 247.4 to
/// 233.2 MiB. An eighth gave 233.6 MiB, with twice the rebuilds, each of
/// which stops the writer (docs/benchmarks.md).
const STALE_SHARE: usize = 4;

/// A sorted map in two layers: a run built in bulk and later inserts.
#[derive(Clone)]
pub struct SortedRunMap<K, V> {
    /// Entries in strictly increasing key order.
    run: Arc<Vec<(K, V)>>,
    /// Entries inserted after the run was built whose keys were greater
    /// than every key of the run and of `appended` before them, in key
    /// order: the run's continuation. Transaction ids begin with their
    /// creation time, so nearly every new posting's id lands here, in an
    /// `im::Vector` whose chunks are full instead of in half-full
    /// `OrdMap` nodes. "The run" below means `run` followed by `appended`.
    appended: Vector<(K, V)>,
    /// Entries inserted after the run was built. An entry here replaces the
    /// run's entry with the same key. No key here is above the run's last.
    later: OrdMap<K, V>,
    /// Keys of the run removed since, and not inserted again. None of them
    /// is in `later`.
    removed: OrdSet<K>,
    /// How many keys of the run `later` replaces.
    replaced: usize,
    /// The changes of a full replay, while it stages them (`stage`).
    staged: Option<Box<Staged<K, V>>>,
}

/// Changes kept in a hash map on top of the layers above, until `compact`
/// merges them into the run. A full replay stages the views that the
/// events creating sub-accounts and SIP resources change. Their sids are
/// random, so each new one went into the later layer's B-tree. With
/// 100,000 sub-accounts, each with a SIP account and an alias, such
/// inserts and lookups took about 60% of the folding thread's time before
/// the first posting. A staged map cannot be read in key order until it
/// is compacted.
#[derive(Clone)]
struct Staged<K, V> {
    /// Each changed key's newest value, or `None` where it was removed.
    /// Hashed with foldhash, seeded at random per process: SipHash, the
    /// standard hasher, took about 13% of a cold start's samples before
    /// the first posting.
    changes: HashMap<K, Option<V>, foldhash::fast::RandomState>,
    /// Entries of the map, changes included.
    len: usize,
    /// Keys of the layers below whose entries a change replaces or
    /// removes. They count toward the rebuild at `STALE_SHARE` as the later
    /// layer's do, so that a fold whose changes replace entries, such as
    /// the write-backs of postings, keeps at most about a quarter of the
    /// run's values twice.
    replaced: usize,
}

impl<K: Ord + Hash + Clone, V: Clone> SortedRunMap<K, V> {
    /// Builds a map whose run is `entries`. Returns the first key that is
    /// not greater than the one before it instead: a repeated key, when the
    /// caller sorted the entries.
    pub fn from_sorted(entries: Vec<(K, V)>) -> Result<SortedRunMap<K, V>, K> {
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(pair[1].0.clone());
        }
        Ok(SortedRunMap::from_run(entries))
    }

    /// Builds a map whose run is `entries`, which are in strictly
    /// increasing key order.
    fn from_run(entries: Vec<(K, V)>) -> SortedRunMap<K, V> {
        SortedRunMap {
            run: Arc::new(entries),
            appended: Vector::new(),
            later: OrdMap::new(),
            removed: OrdSet::new(),
            replaced: 0,
            staged: None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.staged {
            Some(staged) => staged.len,
            None => self.len_below_staged(),
        }
    }

    /// Entries of the layers below the staged changes.
    fn len_below_staged(&self) -> usize {
        self.run_len() - self.replaced - self.removed.len() + self.later.len()
    }

    /// Entries of the run, replaced and removed ones included.
    fn run_len(&self) -> usize {
        self.run.len() + self.appended.len()
    }

    /// Returns whether `key` is greater than every key of the run.
    fn above_run<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        match self.appended.last().or_else(|| self.run.last()) {
            Some((last, _)) => key > last.borrow(),
            None => true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get<Q: Ord + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        if let Some(staged) = &self.staged {
            if let Some(change) = staged.changes.get(key) {
                return change.as_ref();
            }
        }
        self.get_below_staged(key).map(|(_, value)| value)
    }

    /// Finds the entry for `key` in the layers below the staged changes.
    fn get_below_staged<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        // No layer contains a key above the run's last (see `insert`). New
        // transaction ids come after every earlier one, and the check that
        // such an id is new took a binary search of the whole run.
        if self.above_run(key) {
            return None;
        }
        if let Some(entry) = self.later.get_key_value(key) {
            return Some(entry);
        }
        let (run_key, value) = self.run_entry(key)?;
        if !self.removed.is_empty() && self.removed.contains(key) {
            return None;
        }
        Some((run_key, value))
    }

    pub fn contains_key<Q: Ord + Hash + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Keeps every later change in a hash map until `compact` merges it
    /// into the run (see `Staged`). `unstage` ends this.
    pub fn stage(&mut self) {
        if self.staged.is_none() {
            let len = self.len();
            let changes = HashMap::default();
            self.staged = Some(Box::new(Staged { changes, len, replaced: 0 }));
        }
    }

    /// Merges the staged changes into the run and stages no more.
    pub fn unstage(&mut self) {
        self.compact();
        self.staged = None;
    }

    /// Inserts or replaces an entry and returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(mut staged) = self.staged.take() {
            let previous = match staged.changes.entry(key) {
                Entry::Occupied(mut change) => change.insert(Some(value)),
                Entry::Vacant(change) => {
                    let previous = self.get_below_staged(change.key()).map(|(_, v)| v.clone());
                    change.insert(Some(value));
                    if previous.is_some() {
                        staged.replaced += 1;
                    }
                    previous
                }
            };
            if previous.is_none() {
                staged.len += 1;
            }
            self.staged = Some(staged);
            self.compact_if_stale();
            return previous;
        }
        // A key above the run's last is in no layer: `removed` contains
        // only keys of the run, and `later` only keys that were not above
        // the run's last when they were inserted.
        if self.above_run(&key) {
            self.appended.push_back((key, value));
            return None;
        }
        let in_run = self.run_entry(&key).map(|(_, value)| value.clone());
        let was_removed = !self.removed.is_empty() && self.removed.remove(&key).is_some();
        let previous = match self.later.insert(key, value) {
            Some(previous) => Some(previous),
            None => {
                if in_run.is_some() {
                    self.replaced += 1;
                }
                in_run.filter(|_| !was_removed)
            }
        };
        self.compact_if_stale();
        previous
    }

    /// Returns the value for `key` to change in place. A value of the run
    /// is first copied into the later inserts, as `insert` would put it.
    pub fn get_mut<Q: Ord + Hash + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        // Rebuilds first, so that a rebuild cannot move the entry that this
        // call returns.
        self.compact_if_stale();
        if let Some(mut staged) = self.staged.take() {
            if !staged.changes.contains_key(key) {
                if let Some((below_key, value)) = self.get_below_staged(key) {
                    staged.changes.insert(below_key.clone(), Some(value.clone()));
                    staged.replaced += 1;
                }
            }
            let staged = self.staged.insert(staged);
            return staged.changes.get_mut(key).and_then(Option::as_mut);
        }
        if !self.later.contains_key(key) {
            let (run_key, value) = self.run_entry(key)?;
            if !self.removed.is_empty() && self.removed.contains(key) {
                return None;
            }
            let (run_key, value) = (run_key.clone(), value.clone());
            self.later.insert(run_key, value);
            self.replaced += 1;
        }
        self.later.get_mut(key)
    }

    /// Removes an entry and returns its value.
    pub fn remove<Q: Ord + Hash + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        if let Some(mut staged) = self.staged.take() {
            let previous = match staged.changes.get_mut(key) {
                Some(change) => change.take(),
                None => self.get_below_staged(key).map(|(below_key, value)| {
                    staged.changes.insert(below_key.clone(), None);
                    staged.replaced += 1;
                    value.clone()
                }),
            };
            if previous.is_some() {
                staged.len -= 1;
            }
            self.staged = Some(staged);
            self.compact_if_stale();
            return previous;
        }
        let in_run = self.run_entry(key).cloned();
        if let Some(value) = self.later.remove(key) {
            if let Some((run_key, _)) = in_run {
                self.replaced -= 1;
                self.removed.insert(run_key);
                self.compact_if_stale();
            }
            return Some(value);
        }
        let (run_key, value) = in_run?;
        if self.removed.contains(key) {
            return None;
        }
        self.removed.insert(run_key);
        self.compact_if_stale();
        Some(value)
    }

    /// Rebuilds the run once more than a quarter of its entries are
    /// replaced or removed (`STALE_SHARE`). Until then the run keeps their
    /// keys and old values, and rebuilding after a share of the run has
    /// changed keeps the cost per change constant on average.
    fn compact_if_stale(&mut self) {
        if self.changed_more_than(STALE_SHARE) {
            self.compact();
        }
    }

    /// Returns whether more than `1 / share` of the run's entries are
    /// replaced or removed.
    pub fn changed_more_than(&self, share: usize) -> bool {
        let staged = self.staged.as_ref().map_or(0, |staged| staged.replaced);
        (self.replaced + self.removed.len() + staged) * share > self.run_len()
    }

    /// Rebuilds the run from every entry, so that the later layers and
    /// the staged changes are empty. A staged map stays staged.
    pub fn compact(&mut self) {
        let mut staged = self.staged.take();
        let changes = match &mut staged {
            Some(staged) => {
                staged.replaced = 0;
                std::mem::take(&mut staged.changes)
            }
            None => HashMap::default(),
        };
        let unchanged =
            self.later.is_empty() && self.removed.is_empty() && self.appended.is_empty();
        if !(unchanged && changes.is_empty()) {
            let mut changes: Vec<(K, Option<V>)> = changes.into_iter().collect();
            changes.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
            let capacity = self.len_below_staged() + changes.len();
            let entries = merge_changes(self.iter(), changes, capacity);
            *self = SortedRunMap::from_run(entries);
        }
        self.staged = staged;
    }

    /// Compacts the map, then calls `update` with each entry to change its
    /// value in place. A run that another map shares is copied first.
    pub fn update_values(&mut self, mut update: impl FnMut(&K, &mut V)) {
        self.compact();
        for (key, value) in Arc::make_mut(&mut self.run).iter_mut() {
            update(key, value);
        }
    }

    /// Returns the entries in key order.
    ///
    /// # Panics
    ///
    /// If the map has staged changes that `compact` has not merged.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.range_from_index(0, 0, self.later.range(..))
    }

    /// Returns the values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// Returns the entries with keys at or above `start`, in key order.
    pub fn range_from(&self, start: &K) -> Iter<'_, K, V> {
        let first = self.run.partition_point(|(key, _)| key < start);
        let first_appended = match self.appended.binary_search_by(|(key, _)| key.cmp(start)) {
            Ok(index) | Err(index) => index,
        };
        self.range_from_index(first, first_appended, self.later.range(start..))
    }

    /// Iterates from the run's entry at `first` and the appended one at
    /// `first_appended`, merged with `later`.
    fn range_from_index<'a>(
        &'a self,
        first: usize,
        first_appended: usize,
        later: OrdMapIter<'a, K, V>,
    ) -> Iter<'a, K, V> {
        let unmerged = self.staged.as_ref().is_some_and(|staged| !staged.changes.is_empty());
        assert!(!unmerged, "a map with staged changes is read in key order");
        // `narrow` takes no empty range.
        let appended = (first_appended < self.appended.len())
            .then(|| self.appended.focus().narrow(first_appended..).into_iter());
        Iter {
            run: self.run[first..].iter().chain(appended.into_iter().flatten()).peekable(),
            later: later.peekable(),
            removed: &self.removed,
        }
    }

    /// Finds the run's entry for `key`, removed or not.
    fn run_entry<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&(K, V)>
    where
        K: Borrow<Q>,
    {
        let compare = |(candidate, _): &(K, V)| candidate.borrow().cmp(key);
        match self.run.binary_search_by(compare) {
            Ok(index) => Some(&self.run[index]),
            // Only a key above the run's last can be among the appended.
            Err(index) if index == self.run.len() && !self.appended.is_empty() => {
                let index = self.appended.binary_search_by(compare).ok()?;
                self.appended.get(index)
            }
            Err(_) => None,
        }
    }
}

/// Merges changes sorted by key into entries in key order: a change
/// replaces the entry with its key, or removes it when it is `None`.
fn merge_changes<'a, K: Ord + Clone + 'a, V: Clone + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    changes: Vec<(K, Option<V>)>,
    capacity: usize,
) -> Vec<(K, V)> {
    let mut merged = Vec::with_capacity(capacity);
    let mut entries = entries.peekable();
    for (key, change) in changes {
        while let Some((entry_key, value)) = entries.next_if(|(entry_key, _)| **entry_key < key) {
            merged.push((entry_key.clone(), value.clone()));
        }
        entries.next_if(|(entry_key, _)| **entry_key == key);
        if let Some(value) = change {
            merged.push((key, value));
        }
    }
    merged.extend(entries.map(|(key, value)| (key.clone(), value.clone())));
    // `capacity` counts a replaced entry twice.
    merged.shrink_to_fit();
    merged
}

/// A `SortedRunMap` of any key and value types, so that maps of several
/// types can be staged and compacted from one list.
pub trait StagedView {
    /// Keeps the map's changes in a hash map until it is compacted
    /// (`SortedRunMap::stage`).
    fn stage(&mut self);
    /// Merges the staged changes into the run (`SortedRunMap::compact`).
    fn compact(&mut self);
    /// Compacts the map and stages its changes no more
    /// (`SortedRunMap::unstage`).
    fn unstage(&mut self);
}

impl<K: Ord + Hash + Clone, V: Clone> StagedView for SortedRunMap<K, V> {
    fn stage(&mut self) {
        SortedRunMap::stage(self);
    }

    fn compact(&mut self) {
        SortedRunMap::compact(self);
    }

    fn unstage(&mut self) {
        SortedRunMap::unstage(self);
    }
}

impl<K: Clone, V: Clone> Default for SortedRunMap<K, V> {
    fn default() -> SortedRunMap<K, V> {
        SortedRunMap {
            run: Arc::default(),
            appended: Vector::default(),
            later: OrdMap::default(),
            removed: OrdSet::default(),
            replaced: 0,
            staged: None,
        }
    }
}

/// Maps are equal when they contain the same entries, whatever their layers.
impl<K: Ord + Hash + Clone, V: Clone + PartialEq> PartialEq for SortedRunMap<K, V> {
    fn eq(&self, other: &SortedRunMap<K, V>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Hash + Clone, V: Clone + Eq> Eq for SortedRunMap<K, V> {}

impl<K: Ord + Hash + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for SortedRunMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Panics when the key is absent, as `im::OrdMap` does.
impl<K: Ord + Hash + Clone, V: Clone> Index<&K> for SortedRunMap<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("SortedRunMap::index: key not found")
    }
}

/// The run's entries from the first one an iteration yields: those of
/// `run`, then those of `appended`.
type RunIter<'a, K, V> =
    Chain<std::slice::Iter<'a, (K, V)>, Flatten<std::option::IntoIter<VectorIter<'a, (K, V)>>>>;

/// Entries of both layers merged in key order. Where both contain a key,
/// the later insert is yielded and the run's entry skipped.
pub struct Iter<'a, K: Ord + Clone, V: Clone> {
    run: Peekable<RunIter<'a, K, V>>,
    later: Peekable<OrdMapIter<'a, K, V>>,
    removed: &'a OrdSet<K>,
}

impl<'a, K: Ord + Clone, V: Clone> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        while let Some((key, _)) = self.run.peek() {
            if self.removed.is_empty() || !self.removed.contains(key) {
                break;
            }
            self.run.next();
        }
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

/// A map encodes as an `im::OrdMap` does: its entries in key order.
impl<K: Ord + Hash + Clone + Serialize, V: Clone + Serialize> Serialize for SortedRunMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Entries in strictly increasing key order decode into a run; any other
/// order is an error.
impl<'de, K, V> Deserialize<'de> for SortedRunMap<K, V>
where
    K: Deserialize<'de> + Ord + Hash + Clone,
    V: Deserialize<'de> + Clone,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RunVisitor(std::marker::PhantomData))
    }
}

/// Entries reserved before decoding a map: its stated count, up to this
/// many. A damaged count must not make the decoder reserve memory that the
/// input cannot fill.
const RESERVED_ENTRIES_MAX: usize = 1 << 16;

struct RunVisitor<K, V>(std::marker::PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for RunVisitor<K, V>
where
    K: Deserialize<'de> + Ord + Hash + Clone,
    V: Deserialize<'de> + Clone,
{
    type Value = SortedRunMap<K, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map in key order")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let reserved = map.size_hint().unwrap_or(0).min(RESERVED_ENTRIES_MAX);
        let mut entries = Vec::with_capacity(reserved);
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        // A map of more than `RESERVED_ENTRIES_MAX` entries grew by
        // doubling, which can leave almost half of the run unused.
        entries.shrink_to_fit();
        SortedRunMap::from_sorted(entries)
            .map_err(|_| serde::de::Error::custom("map keys are not in increasing order"))
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
    fn remove_hides_run_entry() {
        let mut map = run_of(&[10, 20, 30]);
        assert_eq!(map.remove(&20).as_deref(), Some("run 20"), "a run key");
        assert_eq!(map.get(&20), None, "the removed key");
        assert_eq!(map.len(), 2, "length after removing a run key");
        assert_eq!(map.remove(&20), None, "removed twice");
        assert_eq!(map.len(), 2, "length after removing twice");
        let keys: Vec<u32> = map.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, vec![10, 30], "iteration skips the removed key");
        let from: Vec<u32> = map.range_from(&15).map(|(key, _)| *key).collect();
        assert_eq!(from, vec![30], "a range skips the removed key");

        assert_eq!(map.insert(20, "later 20".to_string()), None, "inserted after removal");
        assert_eq!(map.get(&20).map(String::as_str), Some("later 20"), "the new value");
        assert_eq!(map.len(), 3, "length after inserting again");
        assert_eq!(map.remove(&20).as_deref(), Some("later 20"), "the later value");
        assert_eq!(map.get(&20), None, "removed again");
        assert_eq!(map.len(), 2, "length after removing the later value");

        assert_eq!(map.insert(25, "later 25".to_string()), None, "a later key");
        assert_eq!(map.remove(&25).as_deref(), Some("later 25"), "a later key removed");
        assert_eq!(map.remove(&15), None, "an absent key");
        assert_eq!(map.len(), 2, "length at the end");
        assert_eq!(map, run_of(&[10, 30]), "equal to a run of what is left");
    }

    #[test]
    fn compact_keeps_entries() {
        let mut map = run_of(&[10, 20, 30]);
        map.remove(&10);
        map.insert(20, "later 20".to_string());
        map.insert(40, "later 40".to_string());
        let before = map.clone();
        map.compact();
        assert_eq!(map, before, "the same entries");
        assert_eq!(map.len(), 3, "the same length");
        assert!(map.later.is_empty(), "no later entries");
        assert!(map.removed.is_empty(), "no removed keys");
        assert_eq!(map.get(&20).map(String::as_str), Some("later 20"), "the newer value");
    }

    #[test]
    fn finds_by_borrowed_key() {
        let entries = vec![(Arc::<str>::from("a"), 1), (Arc::from("b"), 2)];
        let mut map = SortedRunMap::from_sorted(entries).expect("sorted keys");
        assert_eq!(map.get("b"), Some(&2), "a run key");
        assert!(map.contains_key("a"), "contains a run key");
        assert_eq!(map.remove("a"), Some(1), "removed by a borrowed key");
        assert!(!map.contains_key("a"), "the removed key");
    }

    #[test]
    fn encodes_as_ordmap() {
        let mut map = run_of(&[10, 20, 30]);
        map.remove(&20);
        map.insert(25, "later 25".to_string());
        let ordmap: OrdMap<u32, String> =
            map.iter().map(|(key, value)| (*key, value.clone())).collect();
        let bytes = postcard::to_stdvec(&map).expect("encodes");
        assert_eq!(bytes, postcard::to_stdvec(&ordmap).expect("encodes"), "the same bytes");
        let decoded: SortedRunMap<u32, String> = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(decoded, map, "the same entries");
        assert!(decoded.later.is_empty(), "decoded into a run");
    }

    #[test]
    fn decode_rejects_unordered_keys() {
        // Two entries, keys 2 then 1, each with a one-byte string.
        let unordered = [2, 2, 1, b'b', 1, 1, b'a'];
        let result = postcard::from_bytes::<SortedRunMap<u32, String>>(&unordered);
        assert!(result.is_err(), "keys out of order");
        // A stated count of 2^32 - 1 entries with one entry behind it.
        let overstated = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1, b'a'];
        let result = postcard::from_bytes::<SortedRunMap<u32, String>>(&overstated);
        assert!(result.is_err(), "a count beyond the input");
    }

    /// One change to a map: insert, insert a key above the model's last
    /// by 1 to 4 (which appends to the run), add to a value in place,
    /// remove, or rebuild the run.
    #[derive(Debug, Clone)]
    enum Change {
        Insert(u8, u16),
        InsertAbove(u8, u16),
        Add(u8, u16),
        Remove(u8),
        Compact,
    }

    fn change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(key, value)| Change::Insert(key, value)),
            (1u8..=4, any::<u16>()).prop_map(|(step, value)| Change::InsertAbove(step, value)),
            (any::<u8>(), any::<u16>()).prop_map(|(key, value)| Change::Add(key, value)),
            any::<u8>().prop_map(Change::Remove),
            Just(Change::Compact),
        ]
    }

    /// Makes `change` to `map` and to `model`, and checks that both return
    /// the same value.
    fn apply_change(
        map: &mut SortedRunMap<u8, u16>,
        model: &mut std::collections::BTreeMap<u8, u16>,
        change: Change,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        match change {
            Change::Insert(key, value) => {
                proptest::prop_assert_eq!(
                    map.insert(key, value),
                    model.insert(key, value),
                    "insert {}",
                    key
                );
            }
            Change::InsertAbove(step, value) => {
                let last = model.keys().next_back().copied().unwrap_or(0);
                let key = last.saturating_add(step);
                proptest::prop_assert_eq!(
                    map.insert(key, value),
                    model.insert(key, value),
                    "insert {} above the last",
                    key
                );
            }
            Change::Add(key, value) => {
                let changed = map.get_mut(&key).map(|entry| {
                    *entry = entry.wrapping_add(value);
                    *entry
                });
                let expected = model.get_mut(&key).map(|entry| {
                    *entry = entry.wrapping_add(value);
                    *entry
                });
                proptest::prop_assert_eq!(changed, expected, "add to {}", key);
            }
            Change::Remove(key) => {
                proptest::prop_assert_eq!(map.remove(&key), model.remove(&key), "remove {}", key);
            }
            Change::Compact => map.compact(),
        }
        Ok(())
    }

    proptest::proptest! {
        /// Any run and any changes after it give the entries, lengths and
        /// returned values of a `BTreeMap` that makes the same changes.
        #[test]
        fn matches_a_btree_map(
            run in proptest::collection::btree_map(proptest::prelude::any::<u8>(), proptest::prelude::any::<u16>(), 0..40),
            changes in proptest::collection::vec(change(), 0..80),
        ) {
            let mut model = run.clone();
            let mut map = SortedRunMap::from_sorted(run.into_iter().collect()).expect("sorted keys");
            for change in changes {
                apply_change(&mut map, &mut model, change)?;
                proptest::prop_assert_eq!(map.len(), model.len(), "length");
                let entries: Vec<(u8, u16)> = map.iter().map(|(key, value)| (*key, *value)).collect();
                let expected: Vec<(u8, u16)> = model.iter().map(|(key, value)| (*key, *value)).collect();
                proptest::prop_assert_eq!(entries, expected, "entries");
            }
            for key in 0..=u8::MAX {
                proptest::prop_assert_eq!(map.get(&key), model.get(&key), "get {}", key);
                let from: Vec<u8> = map.range_from(&key).map(|(key, _)| *key).collect();
                let expected: Vec<u8> = model.range(key..).map(|(key, _)| *key).collect();
                proptest::prop_assert_eq!(from, expected, "range from {}", key);
            }
        }
    }

    /// Checks every key's value and the length of `map` against `model`,
    /// without reading `map` in key order.
    fn check_lookups(
        map: &SortedRunMap<u8, u16>,
        model: &std::collections::BTreeMap<u8, u16>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert_eq!(map.len(), model.len(), "length");
        for key in 0..=u8::MAX {
            proptest::prop_assert_eq!(map.get(&key), model.get(&key), "get {}", key);
        }
        Ok(())
    }

    proptest::proptest! {
        /// Changes made before, while and after a map stages them give the
        /// values and lengths of a `BTreeMap` that makes the same changes,
        /// and its entries once compacted.
        #[test]
        fn staged_changes_match_a_btree_map(
            run in proptest::collection::btree_map(proptest::prelude::any::<u8>(), proptest::prelude::any::<u16>(), 0..40),
            before in proptest::collection::vec(change(), 0..30),
            staged in proptest::collection::vec(change(), 0..80),
            after in proptest::collection::vec(change(), 0..30),
        ) {
            let mut model = run.clone();
            let mut map = SortedRunMap::from_sorted(run.into_iter().collect()).expect("sorted keys");
            for change in before {
                apply_change(&mut map, &mut model, change)?;
            }
            map.stage();
            for change in staged {
                let compacted = matches!(change, Change::Compact);
                apply_change(&mut map, &mut model, change)?;
                check_lookups(&map, &model)?;
                if compacted {
                    let entries: Vec<(u8, u16)> = map.iter().map(|(key, value)| (*key, *value)).collect();
                    let expected: Vec<(u8, u16)> = model.iter().map(|(key, value)| (*key, *value)).collect();
                    proptest::prop_assert_eq!(entries, expected, "entries after a compaction");
                }
            }
            map.unstage();
            proptest::prop_assert!(map.staged.is_none(), "staged after unstage");
            for change in after {
                apply_change(&mut map, &mut model, change)?;
            }
            check_lookups(&map, &model)?;
            let entries: Vec<(u8, u16)> = map.iter().map(|(key, value)| (*key, *value)).collect();
            let expected: Vec<(u8, u16)> = model.iter().map(|(key, value)| (*key, *value)).collect();
            proptest::prop_assert_eq!(entries, expected, "entries");
        }
    }

    #[test]
    fn staged_replacements_rebuild_the_run_at_a_quarter() {
        let keys: Vec<u32> = (0..100).collect();
        let mut map = run_of(&keys);
        map.stage();
        for key in 100..1_000 {
            map.insert(key, format!("new {key}"));
        }
        let changes =
            |map: &SortedRunMap<u32, String>| map.staged.as_ref().map(|s| s.changes.len());
        assert_eq!(changes(&map), Some(900), "new keys replace nothing");
        map.compact();
        for key in 0..250 {
            map.insert(key, format!("replaced {key}"));
        }
        assert_eq!(changes(&map), Some(250), "a quarter of the run replaced");
        map.insert(250, "replaced 250".to_string());
        assert_eq!(changes(&map), Some(0), "rebuilt past a quarter");
        assert_eq!(map.get(&250).map(String::as_str), Some("replaced 250"), "the last change kept");
        assert_eq!(map.len(), 1_000, "no entry lost");
    }

    #[test]
    fn update_values_changes_every_layer_in_place() {
        let mut map = run_of(&[10, 20, 30]);
        map.insert(25, "later 25".to_string());
        map.insert(40, "appended 40".to_string());
        map.remove(&10);
        let shared = map.clone();
        map.update_values(|key, value| value.push_str(&format!(" updated {key}")));
        let values: Vec<&str> = map.values().map(String::as_str).collect();
        assert_eq!(
            values,
            [
                "run 20 updated 20",
                "later 25 updated 25",
                "run 30 updated 30",
                "appended 40 updated 40"
            ],
            "every entry updated once"
        );
        let shared_values: Vec<&str> = shared.values().map(String::as_str).collect();
        assert_eq!(
            shared_values,
            ["run 20", "later 25", "run 30", "appended 40"],
            "the copy unchanged"
        );
    }

    #[test]
    #[should_panic(expected = "staged changes")]
    fn staged_map_is_not_read_in_order_before_compaction() {
        let mut map = run_of(&[10, 20]);
        map.stage();
        map.insert(15, "staged 15".to_string());
        let _ = map.iter().count();
    }

    #[test]
    fn compaction_keeps_a_map_staged() {
        let mut map = run_of(&[10, 20]);
        map.stage();
        map.insert(15, "staged 15".to_string());
        assert_eq!(map.remove(&10).as_deref(), Some("run 10"), "a run key removed");
        map.compact();
        let keys: Vec<u32> = map.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, [15, 20], "the staged changes merged into the run");
        map.insert(5, "staged 5".to_string());
        let staged = map.staged.as_ref().expect("still staged");
        assert_eq!(staged.changes.len(), 1, "the insert after the compaction is staged");
        assert!(map.later.is_empty(), "the later layer unused");
        assert!(map.appended.is_empty(), "the appended layer unused");
        assert_eq!(map.len(), 3, "length with the staged insert");
    }

    #[test]
    fn staged_removal_of_every_entry() {
        let mut map = run_of(&[10, 20, 30]);
        map.stage();
        for key in [10, 20, 30] {
            assert!(map.remove(&key).is_some(), "run key {key} removed");
        }
        assert_eq!(map.remove(&20), None, "removed twice");
        assert_eq!(map.get_mut(&20), None, "get_mut of a removed key");
        assert_eq!(map.len(), 0, "length after removing every entry");
        map.compact();
        assert!(map.is_empty(), "empty after the compaction");
        assert_eq!(map.iter().count(), 0, "no entries to read in order");

        assert_eq!(map.insert(20, "staged 20".to_string()), None, "inserted after removal");
        assert_eq!(map.len(), 1, "length after inserting again");
        map.get_mut(&20).expect("the staged key").push_str(" changed");
        assert_eq!(
            map.insert(20, "staged 20 again".to_string()).as_deref(),
            Some("staged 20 changed")
        );
        assert_eq!(map.len(), 1, "a replaced key counts once");
        map.unstage();
        let listed: Vec<(u32, &str)> =
            map.iter().map(|(key, value)| (*key, value.as_str())).collect();
        assert_eq!(listed, [(20, "staged 20 again")], "entries after unstaging");
        assert_eq!(map.len(), 1, "length after unstaging");
    }

    /// Keys of the `logins` and `sip_names` views are shared pointers that
    /// the fold looks up by the text or tuple they point to. A staged map
    /// hashes both the same, so the staged changes are found by either.
    #[test]
    fn staged_map_finds_by_borrowed_key() {
        let entries = vec![(Arc::<str>::from("a"), 1), (Arc::from("c"), 3)];
        let mut map = SortedRunMap::from_sorted(entries).expect("sorted keys");
        map.stage();
        assert_eq!(map.insert(Arc::from("b"), 2), None, "a new key");
        assert_eq!(map.get("b"), Some(&2), "a staged key");
        assert_eq!(map.get("a"), Some(&1), "a run key");
        *map.get_mut("a").expect("a run key") += 10;
        assert_eq!(map.get("a"), Some(&11), "a run key changed in place");
        assert_eq!(map.remove("c"), Some(3), "a run key removed");
        assert_eq!(map.remove("b"), Some(2), "a staged key removed");
        assert!(!map.contains_key("b"), "the removed staged key");
        assert!(!map.contains_key("c"), "the removed run key");
        assert_eq!(map.insert(Arc::from("c"), 30), None, "a removed key inserted again");
        assert_eq!(map.len(), 2, "length with the staged changes");
        map.compact();
        let listed: Vec<(&str, i32)> = map.iter().map(|(key, value)| (&**key, *value)).collect();
        assert_eq!(listed, [("a", 11), ("c", 30)], "entries after the compaction");
    }

    /// A step of `staged_copies_match_btree_maps`: a `Change` to map
    /// `index`, a copy of map `index` added to the maps, or `stage` or
    /// `unstage` on map `index`.
    #[derive(Debug, Clone)]
    enum StagedChange {
        On(usize, Change),
        Copy(usize),
        Stage(usize),
        Unstage(usize),
    }

    fn staged_change() -> impl proptest::strategy::Strategy<Value = StagedChange> {
        use proptest::prelude::*;
        prop_oneof![
            8 => (any::<usize>(), change()).prop_map(|(index, change)| StagedChange::On(index, change)),
            1 => any::<usize>().prop_map(StagedChange::Copy),
            1 => any::<usize>().prop_map(StagedChange::Stage),
            1 => any::<usize>().prop_map(StagedChange::Unstage),
        ]
    }

    proptest::proptest! {
        /// Maps staged and unstaged any number of times, and copied while
        /// staged, keep the values and lengths of `BTreeMap`s changed the
        /// same way. Whenever a map has no unmerged staged changes, its
        /// entries and ranges in key order match too.
        #[test]
        fn staged_copies_match_btree_maps(
            run in proptest::collection::btree_map(proptest::prelude::any::<u8>(), proptest::prelude::any::<u16>(), 0..40),
            changes in proptest::collection::vec(staged_change(), 0..120),
        ) {
            let first = SortedRunMap::from_sorted(run.clone().into_iter().collect()).expect("sorted keys");
            let mut maps = vec![(first, run)];
            for change in changes {
                let count = maps.len();
                match change {
                    StagedChange::On(index, change) => {
                        let (map, model) = &mut maps[index % count];
                        apply_change(map, model, change)?;
                    }
                    StagedChange::Copy(index) => {
                        let copy = maps[index % count].clone();
                        maps.push(copy);
                    }
                    StagedChange::Stage(index) => maps[index % count].0.stage(),
                    StagedChange::Unstage(index) => {
                        let map = &mut maps[index % count].0;
                        map.unstage();
                        proptest::prop_assert!(map.staged.is_none(), "staged after unstage");
                    }
                }
                for (number, (map, model)) in maps.iter().enumerate() {
                    check_lookups(map, model)?;
                    let unmerged = map.staged.as_ref().is_some_and(|staged| !staged.changes.is_empty());
                    if unmerged {
                        continue;
                    }
                    let entries: Vec<(u8, u16)> = map.iter().map(|(key, value)| (*key, *value)).collect();
                    let expected: Vec<(u8, u16)> = model.iter().map(|(key, value)| (*key, *value)).collect();
                    proptest::prop_assert_eq!(entries, expected, "entries of map {}", number);
                    for start in [0u8, 64, 128, 200] {
                        let from: Vec<u8> = map.range_from(&start).map(|(key, _)| *key).collect();
                        let expected: Vec<u8> = model.range(start..).map(|(key, _)| *key).collect();
                        proptest::prop_assert_eq!(from, expected, "range of map {} from {}", number, start);
                    }
                }
            }
        }
    }

    /// A step of `copies_match_btree_maps`: a `Change` to map `index`, or a
    /// copy of map `index` added to the maps.
    #[derive(Debug, Clone)]
    enum SharedChange {
        On(usize, Change),
        Copy(usize),
    }

    fn shared_change() -> impl proptest::strategy::Strategy<Value = SharedChange> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<usize>(), change()).prop_map(|(index, change)| SharedChange::On(index, change)),
            1 => any::<usize>().prop_map(SharedChange::Copy),
        ]
    }

    proptest::proptest! {
        /// Copies made at any point, each changed on its own afterwards,
        /// as the writer changes its copy of a published state, keep
        /// the entries of a `BTreeMap` copied and changed the same way.
        #[test]
        fn copies_match_btree_maps(
            run in proptest::collection::btree_map(proptest::prelude::any::<u8>(), proptest::prelude::any::<u16>(), 0..40),
            changes in proptest::collection::vec(shared_change(), 0..120),
        ) {
            let first = SortedRunMap::from_sorted(run.clone().into_iter().collect()).expect("sorted keys");
            let mut maps = vec![(first, run)];
            for change in changes {
                match change {
                    SharedChange::Copy(index) => {
                        let copy = maps[index % maps.len()].clone();
                        maps.push(copy);
                    }
                    SharedChange::On(index, change) => {
                        let count = maps.len();
                        let (map, model) = &mut maps[index % count];
                        apply_change(map, model, change)?;
                    }
                }
                for (number, (map, model)) in maps.iter().enumerate() {
                    proptest::prop_assert_eq!(map.len(), model.len(), "length of map {}", number);
                    let entries: Vec<(u8, u16)> = map.iter().map(|(key, value)| (*key, *value)).collect();
                    let expected: Vec<(u8, u16)> = model.iter().map(|(key, value)| (*key, *value)).collect();
                    proptest::prop_assert_eq!(entries, expected, "entries of map {}", number);
                }
            }
            for (number, (map, model)) in maps.iter().enumerate() {
                for key in 0..=u8::MAX {
                    proptest::prop_assert_eq!(map.get(&key), model.get(&key), "get {} in map {}", key, number);
                }
            }
        }
    }

    /// A change of `long_continuations_match_btree_maps` to one of its
    /// maps. A key or entry is picked by its index modulo the number of
    /// candidates, so most changes hit present keys.
    #[derive(Debug, Clone)]
    enum LongChange {
        /// Inserts `count` keys, each above the model's last by 1 to
        /// `step`, which appends to the run's continuation unless a
        /// removed key of the run is greater.
        Ascending {
            count: u16,
            step: u8,
        },
        /// Inserts a key between 0 and one past the model's last.
        Insert(u32, u32),
        /// Adds to the value of a present key in place.
        Add(usize, u32),
        /// Removes a present key.
        Remove(usize),
        /// Removes the model's last key.
        RemoveLast,
        Compact,
    }

    fn long_change() -> impl proptest::strategy::Strategy<Value = LongChange> {
        use proptest::prelude::*;
        prop_oneof![
            2 => (1u16..1500, 1u8..=3).prop_map(|(count, step)| LongChange::Ascending { count, step }),
            2 => (any::<u32>(), any::<u32>()).prop_map(|(key, value)| LongChange::Insert(key, value)),
            2 => (any::<usize>(), any::<u32>()).prop_map(|(pick, value)| LongChange::Add(pick, value)),
            2 => any::<usize>().prop_map(LongChange::Remove),
            1 => Just(LongChange::RemoveLast),
            1 => Just(LongChange::Compact),
        ]
    }

    /// Makes `change` to `map` and to `model`, and checks that both return
    /// the same values.
    fn apply_long_change(
        map: &mut SortedRunMap<u32, u32>,
        model: &mut std::collections::BTreeMap<u32, u32>,
        change: LongChange,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let last = model.keys().next_back().copied();
        let present = |pick: usize| model.keys().nth(pick % model.len().max(1)).copied();
        match change {
            LongChange::Ascending { count, step } => {
                let mut key = last.unwrap_or(0);
                for index in 0..u32::from(count) {
                    key += 1 + index % u32::from(step);
                    let inserted = map.insert(key, index);
                    proptest::prop_assert_eq!(inserted, model.insert(key, index), "insert {}", key);
                }
            }
            LongChange::Insert(key, value) => {
                let key = key % (last.unwrap_or(0) + 2);
                let inserted = map.insert(key, value);
                proptest::prop_assert_eq!(inserted, model.insert(key, value), "insert {}", key);
            }
            LongChange::Add(pick, value) => {
                if let Some(key) = present(pick) {
                    let changed = map.get_mut(&key).map(|entry| {
                        *entry = entry.wrapping_add(value);
                        *entry
                    });
                    let expected = model.get_mut(&key).map(|entry| {
                        *entry = entry.wrapping_add(value);
                        *entry
                    });
                    proptest::prop_assert_eq!(changed, expected, "add to {}", key);
                }
            }
            LongChange::Remove(pick) => {
                if let Some(key) = present(pick) {
                    proptest::prop_assert_eq!(
                        map.remove(&key),
                        model.remove(&key),
                        "remove {}",
                        key
                    );
                    proptest::prop_assert_eq!(map.remove(&key), None, "remove {} twice", key);
                }
            }
            LongChange::RemoveLast => {
                if let Some(key) = last {
                    proptest::prop_assert_eq!(
                        map.remove(&key),
                        model.remove(&key),
                        "remove {}",
                        key
                    );
                }
            }
            LongChange::Compact => map.compact(),
        }
        Ok(())
    }

    /// Checks `get`, `get_mut` of absent keys, `range_from` and `len` of
    /// `map` against `model` at every key of the model, next to each, and
    /// past the last.
    fn check_long_map(
        map: &mut SortedRunMap<u32, u32>,
        model: &std::collections::BTreeMap<u32, u32>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let last = model.keys().next_back().copied().unwrap_or(0);
        let mut starts: Vec<u32> = model.keys().step_by(97).copied().collect();
        starts.extend([0, last, last + 1, last + 2]);
        for key in model.keys().step_by(13) {
            proptest::prop_assert_eq!(map.get(key), model.get(key), "get {}", key);
        }
        for start in starts {
            for key in [start, start + 1] {
                proptest::prop_assert_eq!(map.get(&key), model.get(&key), "get {}", key);
                if !model.contains_key(&key) {
                    proptest::prop_assert_eq!(map.get_mut(&key), None, "get_mut {}", key);
                }
            }
            let from: Vec<(u32, u32)> =
                map.range_from(&start).take(300).map(|(key, value)| (*key, *value)).collect();
            let expected: Vec<(u32, u32)> =
                model.range(start..).take(300).map(|(key, value)| (*key, *value)).collect();
            proptest::prop_assert_eq!(from, expected, "range from {}", start);
        }
        proptest::prop_assert_eq!(map.len(), model.len(), "length");
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Maps whose continuation grows to thousands of entries, so that
        /// its `im::Vector` is a tree, copied at any point and changed on
        /// their own afterwards, keep the entries of `BTreeMap`s copied
        /// and changed the same way.
        #[test]
        fn long_continuations_match_btree_maps(
            run in proptest::collection::btree_map(0u32..5000, proptest::prelude::any::<u32>(), 0..300),
            changes in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), long_change(), proptest::prelude::any::<bool>()),
                0..40,
            ),
        ) {
            let first = SortedRunMap::from_sorted(run.clone().into_iter().collect()).expect("sorted keys");
            let mut maps = vec![(first, run)];
            for (index, change, copy_first) in changes {
                let count = maps.len();
                if copy_first {
                    let copy = maps[index % count].clone();
                    maps.push(copy);
                }
                let (map, model) = &mut maps[index % count];
                apply_long_change(map, model, change)?;
                for (number, (map, model)) in maps.iter().enumerate() {
                    proptest::prop_assert_eq!(map.len(), model.len(), "length of map {}", number);
                    let entries = map.iter().map(|(key, value)| (*key, *value));
                    let expected = model.iter().map(|(key, value)| (*key, *value));
                    proptest::prop_assert!(entries.eq(expected), "entries of map {}", number);
                }
            }
            for (map, model) in &mut maps {
                check_long_map(map, model)?;
            }
        }
    }

    #[test]
    fn get_mut_on_removed_key_finds_nothing() {
        let mut map = run_of(&[10, 20, 30, 40, 50]);
        map.remove(&20);
        assert_eq!(map.get_mut(&20), None, "a removed run key");
        assert_eq!(map.len(), 4, "the length after get_mut of a removed key");
        assert_eq!(map.get_mut(&25), None, "a key in neither layer");
        assert_eq!(map.len(), 4, "the length after get_mut of an absent key");
        let copy = map.clone();
        map.get_mut(&30).expect("a run key").push_str(" changed");
        assert_eq!(copy.get(&30).map(String::as_str), Some("run 30"), "the copy's value");
        // 20 removed and 30 replaced: more than a quarter of 5, so the next
        // change rebuilds the run before it returns the entry.
        map.get_mut(&40).expect("a run key").push_str(" changed");
        let value = map.get_mut(&50).expect("a run key after the rebuild");
        value.push_str(" changed");
        let listed: Vec<&str> = map.values().map(String::as_str).collect();
        let expected = ["run 10", "run 30 changed", "run 40 changed", "run 50 changed"];
        assert_eq!(listed, expected, "the values after the rebuild");
        assert_eq!(copy.len(), 4, "the copy's length");
        assert_eq!(copy.get(&40).map(String::as_str), Some("run 40"), "the copy's value");
    }

    #[test]
    fn replaced_values_are_freed() {
        let old: Vec<Arc<u32>> = (0..1000).map(Arc::new).collect();
        let entries = old.iter().enumerate().map(|(key, value)| (key, Arc::clone(value))).collect();
        let mut map = SortedRunMap::from_sorted(entries).expect("sorted keys");
        for key in 0..1000 {
            map.insert(key, Arc::new(0));
        }
        let retained = old.iter().filter(|value| Arc::strong_count(value) > 1).count();
        assert!(retained <= 500, "the run still contains {retained} of 1,000 replaced values");
        for key in 0..1000 {
            map.remove(&key);
        }
        assert!(map.is_empty(), "every key removed");
        assert!(map.run.len() <= 500, "the run keeps {} removed entries", map.run.len());
    }

    #[test]
    fn values_changed_in_place_are_freed() {
        let old: Vec<Arc<u32>> = (0..1000).map(Arc::new).collect();
        let entries = old.iter().enumerate().map(|(key, value)| (key, Arc::clone(value))).collect();
        let mut map = SortedRunMap::from_sorted(entries).expect("sorted keys");
        for key in 0..1000 {
            let value = map.get_mut(&key).expect("every key is in the run");
            *Arc::make_mut(value) += 1;
        }
        let retained = old.iter().filter(|value| Arc::strong_count(value) > 1).count();
        assert!(retained <= 500, "the run still contains {retained} of 1,000 changed values");
        assert!(map.values().zip(1..).all(|(value, expected)| **value == expected));
        assert_eq!(map.get_mut(&1000), None);
    }
}
