//! The `refer_trans_id` and `desc` of a posting, in one allocation behind
//! a pointer of 8 bytes.
//!
//! A `Box<str>` of both texts, with the length of the reference and a flag
//! for the description beside it, took 20 bytes of a `Transaction`, and
//! the posting 104 bytes. `PostingTexts` keeps the pointer and the two
//! lengths in 12 bytes, so a posting takes 96 bytes and, with its `Arc`,
//! fits jemalloc's size class of 112 bytes instead of 128: about 15 MiB
//! less for a million postings. The allocation of the texts keeps its
//! size, as the lengths stay outside it.

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
            // SAFETY: the allocation holds `len` bytes, the sum of the two
            // texts' lengths, and the texts do not overlap it.
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

/// The length of a text, as stored.
fn text_len(field: &str, text: Option<&str>) -> Result<u16, String> {
    match text {
        None => Ok(ABSENT),
        Some(text) => u16::try_from(text.len())
            .ok()
            .filter(|&len| len != ABSENT)
            .ok_or_else(|| format!("{field} of {} bytes", text.len())),
    }
}

/// The bytes a text takes: 0 when it is absent.
fn present_len(len: u16) -> u16 {
    if len == ABSENT {
        0
    } else {
        len
    }
}

/// The layout of an allocation of `len` bytes, at most 2 × 65,534.
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
    fn fits_in_twelve_bytes() {
        assert_eq!(std::mem::size_of::<PostingTexts>(), 12);
    }

    #[test]
    fn keeps_each_text() {
        let texts = ["", "ref-1", "Grüße, 東京 🚀", "a somewhat longer description"];
        let options = std::iter::once(None).chain(texts.iter().map(|text| Some(*text)));
        for reference in options.clone() {
            for desc in options.clone() {
                let kept = PostingTexts::new(reference, desc).expect("short");
                assert_eq!(kept.reference(), reference, "reference {reference:?}, desc {desc:?}");
                assert_eq!(kept.desc(), desc, "reference {reference:?}, desc {desc:?}");
                let copy = kept.clone();
                drop(kept);
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
        let kept = PostingTexts::new(Some(&longest), Some(&longest)).expect("short enough");
        assert_eq!(kept.reference().map(str::len), Some(65_534));
        assert_eq!(kept.desc().map(str::len), Some(65_534));

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
}
