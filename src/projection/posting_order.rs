//! Every posting in posting order, stored by value in shared chunks.
//!
//! A posting is 96 bytes. Each posting once had an `Arc` of its own: a
//! 112-byte allocation for the posting and two counts, and an 8-byte
//! pointer in the order. At 1,000,000 postings those 24 bytes more per
//! posting came to 22.3 MiB of heap. Here the postings are stored
//! `CHUNK` to a chunk, and a chunk is shared between states behind an
//! `Arc`: a state that appends to a chunk that another state shares copies
//! it first, as `im::Vector` copies its own chunks.
//!
//! Every chunk but the last is full, so the chunk of a position is the
//! position divided by `CHUNK`.

use std::fmt;
use std::ops::Index;
use std::sync::Arc;

use im::Vector;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Transaction;

/// Postings per chunk. 32 postings of 96 bytes fill 3,072 bytes, one of
/// jemalloc's size classes, so a full chunk wastes no byte of its
/// allocation. At most one chunk copy of 31 postings follows each batch
/// the writer publishes.
pub const CHUNK: usize = 32;

/// The postings of a state in posting order.
#[derive(Clone, Default)]
pub struct PostingOrder {
    /// Full chunks, then the last one, which may have room left. No chunk
    /// is empty.
    chunks: Vector<Arc<Vec<Transaction>>>,
    len: usize,
}

impl PostingOrder {
    pub fn new() -> PostingOrder {
        PostingOrder::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the posting at `position`.
    pub fn get(&self, position: usize) -> Option<&Transaction> {
        self.chunks.get(position / CHUNK).and_then(|chunk| chunk.get(position % CHUNK))
    }

    /// Appends a posting. The last chunk is copied first when another
    /// state shares it.
    pub fn push_back(&mut self, transaction: Transaction) {
        self.len += 1;
        if let Some(last) = self.chunks.back_mut() {
            if last.len() < CHUNK {
                let chunk = match Arc::get_mut(last) {
                    Some(chunk) => chunk,
                    None => {
                        *last = Arc::new(copy_of(last));
                        Arc::get_mut(last).expect("a new chunk has one owner")
                    }
                };
                chunk.push(transaction);
                return;
            }
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        chunk.push(transaction);
        self.chunks.push_back(Arc::new(chunk));
    }

    /// Returns the postings in posting order.
    pub fn iter(&self) -> impl Iterator<Item = &Transaction> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Appends every posting of `parts`, in order. A part whose length is
    /// a multiple of `CHUNK`, as every snapshot section and every run of
    /// a full replay but the last is, only moves its chunks. Any other part
    /// but the last has its postings moved one at a time, so that every
    /// chunk but the last stays full.
    pub fn concat(parts: Vec<PostingOrder>) -> PostingOrder {
        let mut order = PostingOrder::new();
        for part in parts {
            if order.len.is_multiple_of(CHUNK) {
                // The chunks are pushed one at a time, about 31,000 for a
                // million postings. After im 15.1's `Vector::append` joined
                // a part of fewer than 64 chunks, later `push_back`s put
                // chunks out of place once there were more than 524,288.
                order.len += part.len;
                for chunk in part.chunks {
                    order.chunks.push_back(chunk);
                }
            } else {
                for chunk in part.chunks {
                    let postings = Arc::try_unwrap(chunk).unwrap_or_else(|shared| copy_of(&shared));
                    for transaction in postings {
                        order.push_back(transaction);
                    }
                }
            }
        }
        order
    }
}

/// Copies a chunk into one of `CHUNK` postings' capacity.
fn copy_of(chunk: &[Transaction]) -> Vec<Transaction> {
    let mut copy = Vec::with_capacity(CHUNK);
    copy.extend_from_slice(chunk);
    copy
}

/// The posting at a position, which must be below `len`.
impl Index<usize> for PostingOrder {
    type Output = Transaction;

    fn index(&self, position: usize) -> &Transaction {
        self.get(position).unwrap_or_else(|| {
            panic!("position {position} is past the last of {} postings", self.len)
        })
    }
}

impl PartialEq for PostingOrder {
    fn eq(&self, other: &PostingOrder) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for PostingOrder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

/// A sequence of postings, as the `Vector` of `Arc`s that this type
/// replaced was encoded, so that state hashes stay the same.
impl Serialize for PostingOrder {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sequence = serializer.serialize_seq(Some(self.len))?;
        for transaction in self.iter() {
            sequence.serialize_element(transaction)?;
        }
        sequence.end()
    }
}

impl<'de> Deserialize<'de> for PostingOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PostingOrder, D::Error> {
        deserializer.deserialize_seq(OrderVisitor)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = PostingOrder;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a sequence of transactions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<PostingOrder, A::Error> {
        let mut order = PostingOrder::new();
        while let Some(transaction) = sequence.next_element::<Transaction>()? {
            order.push_back(transaction);
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::ids::{Sid, SidKind};
    use crate::domain::money::Currency;
    use crate::projection::{PostingType, TransactionFields};

    fn posting(seq: u64) -> Transaction {
        let reference = format!("ref-{seq}");
        Transaction::new(TransactionFields {
            sid: Sid::generate(SidKind::Transaction),
            account: Sid::generate(SidKind::Account),
            kind: PostingType::TopUp,
            amount: Decimal::new(seq as i64, 2),
            currency: Currency::DEFAULT,
            pay_method: 4,
            refer_trans_id: Some(&reference),
            desc: None,
            balance_after: Decimal::new(seq as i64, 2),
            created: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            seq,
        })
        .expect("a short reference fits")
    }

    fn seqs(order: &PostingOrder) -> Vec<u64> {
        order.iter().map(|transaction| transaction.seq).collect()
    }

    fn built(first: u64, count: u64) -> PostingOrder {
        let mut order = PostingOrder::new();
        for seq in first..first + count {
            order.push_back(posting(seq));
        }
        order
    }

    #[test]
    fn push_back_copies_a_shared_chunk_first() {
        let mut order = built(1, 40);
        let published = order.clone();
        order.push_back(posting(41));
        assert_eq!(seqs(&published), (1..=40).collect::<Vec<_>>());
        assert_eq!(seqs(&order), (1..=41).collect::<Vec<_>>());
        assert_eq!(published.len(), 40);
        assert_eq!(order.get(40).map(|transaction| transaction.seq), Some(41));
        assert!(published.get(40).is_none());
        // The full first chunk stays shared; the last one was copied.
        assert!(Arc::ptr_eq(&order.chunks[0], &published.chunks[0]));
        assert!(!Arc::ptr_eq(&order.chunks[1], &published.chunks[1]));
        assert_eq!(order.chunks[1].capacity(), CHUNK);
    }

    #[test]
    fn concat_keeps_every_chunk_full_but_the_last() {
        let order = PostingOrder::concat(vec![built(1, 5), built(6, 64), built(70, 3)]);
        assert_eq!(seqs(&order), (1..=72).collect::<Vec<_>>());
        let lengths: Vec<usize> = order.chunks.iter().map(|chunk| chunk.len()).collect();
        assert_eq!(lengths, vec![32, 32, 8]);
    }

    #[test]
    fn serialize_writes_a_plain_sequence_of_postings() {
        let order = built(1, 70);
        let plain: Vec<Arc<Transaction>> = order.iter().cloned().map(Arc::new).collect();
        let encoded = postcard::to_allocvec(&order).expect("encodes");
        assert_eq!(encoded, postcard::to_allocvec(&plain).expect("encodes"));
        let decoded: PostingOrder = postcard::from_bytes(&encoded).expect("decodes");
        assert_eq!(decoded, order);
    }

    #[test]
    fn chunks_appended_after_concat_keep_their_places() {
        // A part of 2,048 chunks, as a snapshot section of 65,536 postings
        // fills, then a last part of one chunk, then the writer's appends
        // up to 600,000 chunks. Each chunk here is empty and known by its
        // address, so the 19,200,000 postings that the chunks represent
        // take no memory, and each append does what `push_back` does when
        // the last chunk is full. im 15.1's `Vector::append` joined the two parts
        // into a tree that later appends corrupted past 524,288 chunks.
        let chunks: Vec<Arc<Vec<Transaction>>> =
            (0..600_000).map(|_| Arc::new(Vec::new())).collect();
        let part = |range: std::ops::Range<usize>| PostingOrder {
            len: range.len() * CHUNK,
            chunks: chunks[range].iter().cloned().collect(),
        };
        let mut order = PostingOrder::concat(vec![part(0..2048), part(2048..2049)]);
        for chunk in &chunks[2049..] {
            order.len += CHUNK;
            order.chunks.push_back(Arc::clone(chunk));
        }
        assert_eq!(order.chunks.len(), chunks.len(), "chunk count");
        let misplaced = order
            .chunks
            .iter()
            .zip(&chunks)
            .position(|(found, expected)| !Arc::ptr_eq(found, expected));
        assert_eq!(misplaced, None, "the first chunk out of place");
    }

    /// Builds postings `first..first + count` as copies of one posting
    /// that differ only in `seq`, which is cheaper than `built` for long
    /// orders.
    fn copied(first: u64, count: u64) -> PostingOrder {
        let template = posting(0);
        let mut order = PostingOrder::new();
        for seq in first..first + count {
            let mut transaction = template.clone();
            transaction.seq = seq;
            order.push_back(transaction);
        }
        order
    }

    /// Checks `order` against `expected` by `len`, `iter`, `get` at every
    /// position and one past the last, and the fullness of its chunks.
    fn check_order(order: &PostingOrder, expected: &[u64]) -> Result<(), TestCaseError> {
        prop_assert_eq!(order.len(), expected.len(), "len");
        prop_assert_eq!(order.is_empty(), expected.is_empty(), "is_empty");
        prop_assert_eq!(seqs(order), expected.to_vec(), "iter");
        for (position, seq) in expected.iter().enumerate() {
            let found = order.get(position).map(|transaction| transaction.seq);
            prop_assert_eq!(found, Some(*seq), "get {}", position);
        }
        prop_assert!(order.get(expected.len()).is_none(), "get past the last");
        let chunks = order.chunks.len();
        for (index, chunk) in order.chunks.iter().enumerate() {
            prop_assert!(!chunk.is_empty(), "chunk {} is empty", index);
            let full = index + 1 == chunks || chunk.len() == CHUNK;
            prop_assert!(full, "chunk {} of {} holds {}", index, chunks, chunk.len());
        }
        Ok(())
    }

    /// A step of `copies_appended_apart_keep_their_postings`: append
    /// postings to order `index`, or add a copy of order `index`.
    #[derive(Debug, Clone)]
    enum Step {
        Append(usize, u64),
        Copy(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (any::<usize>(), 1u64..40).prop_map(|(index, count)| Step::Append(index, count)),
            1 => any::<usize>().prop_map(Step::Copy),
        ]
    }

    proptest! {
        /// Copies taken at any length and appended to on their own, as the
        /// writer appends to its copy of a published state, each keep
        /// exactly their own postings, even while they share a last chunk.
        #[test]
        fn copies_appended_apart_keep_their_postings(
            start in 0u64..100,
            steps in prop::collection::vec(step(), 0..40),
        ) {
            let mut next = start + 1;
            let mut orders = vec![(copied(1, start), (1..=start).collect::<Vec<u64>>())];
            for step in steps {
                match step {
                    Step::Copy(index) => {
                        let copy = orders[index % orders.len()].clone();
                        orders.push(copy);
                    }
                    Step::Append(index, count) => {
                        let slot = index % orders.len();
                        let (order, expected) = &mut orders[slot];
                        for seq in next..next + count {
                            order.push_back(posting(seq));
                            expected.push(seq);
                        }
                        next += count;
                    }
                }
                for (order, expected) in &orders {
                    check_order(order, expected)?;
                }
            }
        }
    }

    proptest! {
        // Each case copies up to 76,800 postings.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// `concat` of parts of up to 400 chunks, long enough that the
        /// `im::Vector` of chunks keeps most of them in its tree, of
        /// lengths that are multiples of `CHUNK` or not, some still
        /// shared, gives every posting once in order.
        #[test]
        fn concat_of_long_parts_agrees_with_a_vec(
            lengths in prop::collection::vec(
                prop_oneof![
                    (0u64..400).prop_map(|chunks| chunks * CHUNK as u64),
                    0u64..12_000,
                ],
                0..6,
            ),
            shared in prop::collection::vec(any::<bool>(), 6),
        ) {
            let mut parts = Vec::new();
            let mut shared_parts = Vec::new();
            let mut first = 1;
            for (length, share) in lengths.iter().zip(&shared) {
                let part = copied(first, *length);
                if *share {
                    shared_parts.push((part.clone(), (first..first + length).collect::<Vec<u64>>()));
                }
                parts.push(part);
                first += length;
            }
            let mut order = PostingOrder::concat(parts);
            let mut expected: Vec<u64> = (1..first).collect();
            check_order(&order, &expected)?;
            // The writer's copy of the joined order appends on its own.
            let published = order.clone();
            for seq in first..first + 40 {
                order.push_back(posting(seq));
                expected.push(seq);
            }
            check_order(&order, &expected)?;
            check_order(&published, &expected[..expected.len() - 40])?;
            for (part, part_expected) in &shared_parts {
                check_order(part, part_expected)?;
            }
        }
    }

    proptest! {
        #[test]
        fn concat_and_get_agree_with_a_vec(lengths in prop::collection::vec(0u64..100, 0..6)) {
            let mut parts = Vec::new();
            let mut first = 1;
            for length in &lengths {
                parts.push(built(first, *length));
                first += length;
            }
            let shared: Vec<PostingOrder> = parts.clone();
            let order = PostingOrder::concat(parts);
            let expected: Vec<u64> = (1..first).collect();
            prop_assert_eq!(seqs(&order), expected.clone());
            prop_assert_eq!(order.len(), expected.len());
            for (position, seq) in expected.iter().enumerate() {
                prop_assert_eq!(order.get(position).map(|transaction| transaction.seq), Some(*seq));
            }
            prop_assert!(order.get(expected.len()).is_none());
            let chunks = order.chunks.len();
            for (index, chunk) in order.chunks.iter().enumerate() {
                prop_assert!(!chunk.is_empty());
                prop_assert!(index + 1 == chunks || chunk.len() == CHUNK);
            }
            // The parts, still shared, are unchanged.
            let mut first = 1;
            for (part, length) in shared.iter().zip(&lengths) {
                prop_assert_eq!(seqs(part), (first..first + length).collect::<Vec<_>>());
                first += length;
            }
        }
    }
}
