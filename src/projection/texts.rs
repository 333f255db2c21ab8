//! The `refer_trans_id` and `desc` of a posting, in one allocation behind
//! a pointer of 8 bytes.
//!
//! A `Box<str>` of both texts, with the length of the reference and a flag
//! for the description beside it, took 20 bytes of a `Transaction`, and
//! the posting 104 bytes. `PostingTexts` keeps the pointer and the two
//! lengths in 12 bytes, so a posting takes 96 bytes. In the `Arc` of its
//! own that each posting then had, it fit jemalloc's size class of 112
//! bytes instead of 128, about 15 MiB less for a million postings. Now 32
//! postings fill a 3,072-byte chunk of `PostingOrder` exactly. The
//! allocation of the texts keeps its size, as the lengths stay outside it.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The length of a text that is absent.
const ABSENT: u16 = u16::MAX;

/// A posting's `refer_trans_id` and `desc`, each optional.
#[repr(C, packed(4))]
pub struct PostingTexts {
    /// The reference's bytes followed by the description's, in one
    /// allocation of `self.len()` bytes, or dangling when that is 0.
    bytes: NonNull<u8>,
    /// Lengths in bytes, or `ABSENT`.
    reference_len: u16,
    desc_len: u16,
}

// SAFETY: `PostingTexts` owns its bytes and never changes them, as a
// `Box<str>` does, so it can move to and be shared between threads.
unsafe impl Send for PostingTexts {}
// SAFETY: as for `Send`; `&PostingTexts` gives only `&str`s.
unsafe impl Sync for PostingTexts {}

impl PostingTexts {
    /// Copies both texts into one allocation. Returns the one that is
    /// 65,535 bytes or longer instead.
    pub fn new(reference: Option<&str>, desc: Option<&str>) -> Result<PostingTexts, String> {
        let reference_len = text_len("refer_trans_id", reference)?;
        let desc_len = text_len("desc", desc)?;
        let reference = reference.unwrap_or_default();
        let desc = desc.unwrap_or_default();
        let len = reference.len() + desc.len();
        let bytes = if len == 0 {
            NonNull::dangling()
        } else {
            let layout = layout(len);
            // SAFETY: the layout's size is `len`, which is not zero.
            let allocation = unsafe { alloc::alloc(layout) };
            let Some(bytes) = NonNull::new(allocation) else {
                alloc::handle_alloc_error(layout);
            };
            // SAFETY: the allocation is `len` bytes, the sum of the two texts'
            // lengths, and the texts do not overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(reference.as_ptr(), allocation, reference.len());
                std::ptr::copy_nonoverlapping(
                    desc.as_ptr(),
                    allocation.add(reference.len()),
                    desc.len(),
                );
            }
            bytes
        };
        Ok(PostingTexts { bytes, reference_len, desc_len })
    }

    pub fn reference(&self) -> Option<&str> {
        let len = self.reference_len;
        (len != ABSENT).then(|| &self.all()[..usize::from(len)])
    }

    pub fn desc(&self) -> Option<&str> {
        let start = usize::from(present_len(self.reference_len));
        (self.desc_len != ABSENT).then(|| &self.all()[start..])
    }

    /// Bytes of both texts.
    fn len(&self) -> usize {
        usize::from(present_len(self.reference_len)) + usize::from(present_len(self.desc_len))
    }

    /// Both texts, one after the other.
    fn all(&self) -> &str {
        let bytes = self.bytes;
        // SAFETY: `bytes` points to `self.len()` bytes that `new` copied
        // from two `&str`s, so valid UTF-8 (the reference ends on a
        // character boundary), which live as long as `self`. A dangling
        // pointer is valid for a slice of 0 bytes.
        unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(bytes.as_ptr(), self.len()))
        }
    }
}

/// Returns the length of a text as stored, or names the text that is too
/// long.
fn text_len(field: &str, text: Option<&str>) -> Result<u16, String> {
    match text {
        None => Ok(ABSENT),
        Some(text) => u16::try_from(text.len())
            .ok()
            .filter(|&len| len != ABSENT)
            .ok_or_else(|| format!("{field} of {} bytes", text.len())),
    }
}

/// Returns the bytes a text takes: 0 when it is absent.
fn present_len(len: u16) -> u16 {
    if len == ABSENT {
        0
    } else {
        len
    }
}

/// Returns the layout of an allocation of `len` bytes, at most 2 × 65,534.
fn layout(len: usize) -> Layout {
    Layout::array::<u8>(len).expect("at most 131,068 bytes")
}

impl Drop for PostingTexts {
    fn drop(&mut self) {
        let len = self.len();
        if len != 0 {
            // SAFETY: texts of `len` bytes, which is not 0, own an
            // allocation of that layout, and free it only here; the lengths
            // never change.
            unsafe { alloc::dealloc(self.bytes.as_ptr(), layout(len)) };
        }
    }
}

impl Clone for PostingTexts {
    fn clone(&self) -> PostingTexts {
        PostingTexts::new(self.reference(), self.desc()).expect("the lengths were checked")
    }
}

impl PartialEq for PostingTexts {
    fn eq(&self, other: &PostingTexts) -> bool {
        self.reference() == other.reference() && self.desc() == other.desc()
    }
}

impl Eq for PostingTexts {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn fits_in_twelve_bytes() {
        assert_eq!(std::mem::size_of::<PostingTexts>(), 12);
    }

    #[test]
    fn keeps_each_text() {
        let texts = ["", "ref-1", "Grüße, 東京 🚀", "a somewhat longer description"];
        let options = std::iter::once(None).chain(texts.iter().map(|text| Some(*text)));
        for reference in options.clone() {
            for desc in options.clone() {
                let texts = PostingTexts::new(reference, desc).expect("short");
                assert_eq!(texts.reference(), reference, "reference {reference:?}, desc {desc:?}");
                assert_eq!(texts.desc(), desc, "reference {reference:?}, desc {desc:?}");
                let copy = texts.clone();
                drop(texts);
                assert_eq!((copy.reference(), copy.desc()), (reference, desc));
            }
        }
    }

    #[test]
    fn equal_only_with_the_same_texts() {
        let texts = |reference, desc| PostingTexts::new(reference, desc).expect("short");
        assert!(texts(Some("ab"), Some("c")) == texts(Some("ab"), Some("c")));
        assert!(texts(Some("ab"), Some("c")) != texts(Some("a"), Some("bc")));
        assert!(texts(Some("ab"), None) != texts(Some("ab"), Some("")));
        assert!(texts(None, Some("ab")) != texts(Some(""), Some("ab")));
        assert!(texts(None, None) == texts(None, None));
    }

    #[test]
    fn longest_texts() {
        let longest = "x".repeat(65_534);
        let texts = PostingTexts::new(Some(&longest), Some(&longest)).expect("short enough");
        assert_eq!(texts.reference().map(str::len), Some(65_534));
        assert_eq!(texts.desc().map(str::len), Some(65_534));

        let too_long = "x".repeat(65_535);
        let error = PostingTexts::new(Some(&too_long), None).err();
        assert_eq!(error.as_deref(), Some("refer_trans_id of 65535 bytes"));
        let error = PostingTexts::new(None, Some(&too_long)).err();
        assert_eq!(error.as_deref(), Some("desc of 65535 bytes"));
    }

    #[test]
    fn moves_between_threads() {
        let shared = std::sync::Arc::new(PostingTexts::new(Some("shared"), None).expect("short"));
        let other = std::sync::Arc::clone(&shared);
        let seen = std::thread::spawn(move || other.reference().map(str::to_owned));
        assert_eq!(seen.join().expect("joined").as_deref(), Some("shared"));
    }

    #[test]
    fn clones_and_drops_across_threads() {
        let originals: Vec<(Option<String>, Option<String>)> = (0..64)
            .map(|index| {
                let reference = (index % 3 != 0).then(|| format!("ref-{index}-é"));
                let desc = (index % 4 != 1).then(|| "描述".repeat(index % 5));
                (reference, desc)
            })
            .collect();
        let shared: Vec<std::sync::Arc<PostingTexts>> = originals
            .iter()
            .map(|(reference, desc)| {
                let texts =
                    PostingTexts::new(reference.as_deref(), desc.as_deref()).expect("short");
                std::sync::Arc::new(texts)
            })
            .collect();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let shared = shared.clone();
                let originals = originals.clone();
                std::thread::spawn(move || {
                    for round in 0..50 {
                        let index = (thread * 17 + round * 5) % shared.len();
                        let copy = PostingTexts::clone(&shared[index]);
                        let (reference, desc) = &originals[index];
                        assert_eq!(copy.reference(), reference.as_deref(), "reference {index}");
                        assert_eq!(copy.desc(), desc.as_deref(), "desc {index}");
                        assert!(copy == *shared[index], "copy {index} equals its original");
                    }
                    // The last owner of some of the texts drops them here.
                    drop(shared);
                })
            })
            .collect();
        drop(shared);
        for thread in threads {
            thread.join().expect("no thread panics");
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::super::PostingTexts;

        /// Generates an optional text of up to three `a` or `é` characters, so
        /// that two pairs of texts often split the same bytes differently.
        fn short_text() -> impl Strategy<Value = Option<String>> {
            proptest::option::of("[aé]{0,3}")
        }

        /// A reference and a description, as given to `PostingTexts::new`.
        type Pair = (Option<String>, Option<String>);

        /// A step of `clones_and_drops_keep_texts` on a pool of texts.
        #[derive(Debug, Clone)]
        enum Step {
            New(Option<String>, Option<String>),
            Clone(usize),
            Drop(usize),
            /// Replaces the texts at the first index with a clone of those
            /// at the second, dropping the replaced ones.
            Assign(usize, usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            let text = proptest::option::of(any::<String>());
            prop_oneof![
                2 => (text.clone(), text).prop_map(|(reference, desc)| Step::New(reference, desc)),
                2 => any::<usize>().prop_map(Step::Clone),
                1 => any::<usize>().prop_map(Step::Drop),
                1 => (any::<usize>(), any::<usize>()).prop_map(|(to, from)| Step::Assign(to, from)),
            ]
        }

        proptest! {
            /// Any reference and description, present or not, come back as
            /// they went in, from the texts and from a clone of them.
            #[test]
            fn keeps_any_texts(
                reference in proptest::option::of(any::<String>()),
                desc in proptest::option::of(any::<String>()),
            ) {
                let texts = PostingTexts::new(reference.as_deref(), desc.as_deref()).expect("short");
                prop_assert_eq!(texts.reference(), reference.as_deref());
                prop_assert_eq!(texts.desc(), desc.as_deref());
                let copy = texts.clone();
                drop(texts);
                prop_assert_eq!(copy.reference(), reference.as_deref());
                prop_assert_eq!(copy.desc(), desc.as_deref());
            }

            /// Texts are equal exactly when both references and both
            /// descriptions are, whatever the bytes they share.
            #[test]
            fn equal_exactly_with_equal_texts(
                first in (short_text(), short_text()),
                second in (short_text(), short_text()),
            ) {
                let left = PostingTexts::new(first.0.as_deref(), first.1.as_deref()).expect("short");
                let right = PostingTexts::new(second.0.as_deref(), second.1.as_deref()).expect("short");
                prop_assert_eq!(left == right, first == second);
                prop_assert_eq!(right == left, first == second);
                prop_assert!(left == left.clone());
            }

            /// Any order of creating, cloning, replacing and dropping texts
            /// leaves every live one with its own texts.
            #[test]
            fn clones_and_drops_keep_texts(steps in proptest::collection::vec(step(), 0..60)) {
                let mut pool: Vec<(PostingTexts, Pair)> = Vec::new();
                for step in steps {
                    match step {
                        Step::New(reference, desc) => {
                            let texts = PostingTexts::new(reference.as_deref(), desc.as_deref())
                                .expect("short");
                            pool.push((texts, (reference, desc)));
                        }
                        Step::Clone(index) if !pool.is_empty() => {
                            let copy = pool[index % pool.len()].clone();
                            pool.push(copy);
                        }
                        Step::Drop(index) if !pool.is_empty() => {
                            let count = pool.len();
                            drop(pool.swap_remove(index % count));
                        }
                        Step::Assign(to, from) if !pool.is_empty() => {
                            let count = pool.len();
                            let copy = pool[from % count].clone();
                            pool[to % count] = copy;
                        }
                        _ => {}
                    }
                    for (number, (texts, (reference, desc))) in pool.iter().enumerate() {
                        prop_assert_eq!(texts.reference(), reference.as_deref(), "reference {}", number);
                        prop_assert_eq!(texts.desc(), desc.as_deref(), "desc {}", number);
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// A text of any characters is kept up to 65,534 bytes and
            /// rejected from 65,535, whichever of the two it is.
            #[test]
            fn rejects_from_65535_bytes(
                prefix in "\\PC{0,16}",
                bytes in 65_530usize..65_540,
                as_desc in any::<bool>(),
                other in proptest::option::of(any::<String>()),
            ) {
                let text = format!("{prefix}{}", "x".repeat(bytes - prefix.len()));
                let (reference, desc) = if as_desc {
                    (other.as_deref(), Some(text.as_str()))
                } else {
                    (Some(text.as_str()), other.as_deref())
                };
                match PostingTexts::new(reference, desc) {
                    Ok(texts) => {
                        prop_assert!(bytes < 65_535, "kept a text of {} bytes", bytes);
                        prop_assert_eq!(texts.reference(), reference);
                        prop_assert_eq!(texts.desc(), desc);
                    }
                    Err(error) => {
                        prop_assert!(bytes >= 65_535, "rejected a text of {} bytes: {}", bytes, error);
                        let field = if as_desc { "desc" } else { "refer_trans_id" };
                        prop_assert_eq!(error, format!("{field} of {bytes} bytes"));
                    }
                }
            }
        }
    }
}
