//! An object's bytes: its own vector, or its piece of memory shared with
//! the other objects read with it ([`crate::input::ObjectFile::read_all`]:
//! a thousand objects read into one mapping take a handful of page faults
//! instead of one per page). Either way they read as a `[u8]`, and a clone
//! is cheap for shared bytes. Shared bytes may have been read without
//! their debug sections ([`crate::debug_sections`]), which then read as
//! zeros: [`ObjectBytes::debug_left_out`] says so.

use std::ops::{Deref, Range};
#[cfg(feature = "host")]
use std::sync::Arc;

/// The bytes of one object file (or archive).
#[derive(Clone)]
pub struct ObjectBytes(Repr);

#[derive(Clone)]
enum Repr {
    Own(Vec<u8>),
    #[cfg(feature = "host")]
    Shared {
        memory: Arc<solder_executor::sys::memory::FreshMemory>,
        range: Range<usize>,
        /// The bytes of debug sections left out (zeros).
        debug_left_out: usize,
    },
}

impl ObjectBytes {
    /// `range` of memory shared by several objects, read without
    /// `debug_left_out` bytes of its debug sections. `None` when the range
    /// is not inside the memory.
    #[cfg(feature = "host")]
    pub(crate) fn shared(
        memory: &Arc<solder_executor::sys::memory::FreshMemory>,
        range: Range<usize>,
        debug_left_out: usize,
    ) -> Option<ObjectBytes> {
        memory.as_slice().get(range.clone())?;
        Some(ObjectBytes(Repr::Shared {
            memory: memory.clone(),
            range,
            debug_left_out,
        }))
    }

    /// Whether the object was read without its debug sections: their
    /// bytes read as zeros, and nothing may read its debug information.
    pub fn debug_left_out(&self) -> bool {
        self.left_out_len() > 0
    }

    /// The bytes that were read: the object's length less its debug
    /// sections' when they were left out. What work on the object weighs.
    pub fn read_len(&self) -> usize {
        self.len().saturating_sub(self.left_out_len())
    }

    /// How many bytes of debug sections were left out.
    fn left_out_len(&self) -> usize {
        match &self.0 {
            Repr::Own(_) => 0,
            #[cfg(feature = "host")]
            Repr::Shared { debug_left_out, .. } => *debug_left_out,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Own(bytes) => bytes,
            // Checked in `shared`; an empty slice rather than a panic if
            // that ever changed.
            #[cfg(feature = "host")]
            Repr::Shared { memory, range, .. } => {
                memory.as_slice().get(range.clone()).unwrap_or(&[])
            }
        }
    }

    /// `range` of these bytes as bytes of their own (an archive's member):
    /// shared memory stays shared, other bytes are copied. Bytes read with
    /// holes are copied too, so that the part never claims to be whole;
    /// a range past the end gives no bytes.
    pub fn part(&self, range: Range<usize>) -> ObjectBytes {
        #[cfg(feature = "host")]
        if let Repr::Shared {
            memory,
            range: whole,
            debug_left_out: 0,
        } = &self.0
            && range.start <= range.end
            && range.end <= whole.len()
            && let Some(part) = ObjectBytes::shared(
                memory,
                whole.start + range.start..whole.start + range.end,
                0,
            )
        {
            return part;
        }
        self.as_slice()
            .get(range)
            .unwrap_or_default()
            .to_vec()
            .into()
    }

    /// The bytes as a vector of their own (a copy when shared).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Own(bytes) => bytes,
            #[cfg(feature = "host")]
            Repr::Shared { .. } => self.as_slice().to_vec(),
        }
    }
}

impl Deref for ObjectBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for ObjectBytes {
    fn from(bytes: Vec<u8>) -> Self {
        ObjectBytes(Repr::Own(bytes))
    }
}

impl PartialEq for ObjectBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ObjectBytes {}

impl std::fmt::Debug for ObjectBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectBytes({} bytes)", self.len())
    }
}

#[cfg(all(test, feature = "host"))]
mod tests {
    use super::*;
    use solder_executor::sys::memory::FreshMemory;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib object_bytes::tests";

    #[test]
    fn shared_bytes_are_their_range_and_nothing_outside_it() {
        let mut memory = FreshMemory::new(64).expect("map 64 bytes");
        memory.as_mut_slice()[..8].copy_from_slice(b"abcdefgh");
        let memory = Arc::new(memory);
        let bytes = ObjectBytes::shared(&memory, 2..5, 0).expect("in range");
        assert_eq!(bytes.as_slice(), b"cde", "{RERUN}");
        assert_eq!(
            (bytes.read_len(), bytes.debug_left_out()),
            (3, false),
            "{RERUN}"
        );
        assert_eq!(bytes.clone().into_vec(), b"cde".to_vec(), "{RERUN}");
        assert_eq!(bytes, ObjectBytes::from(b"cde".to_vec()), "{RERUN}");
        let len = memory.as_slice().len();
        assert!(
            ObjectBytes::shared(&memory, len - 1..len + 1, 0).is_none(),
            "a range past the memory is refused. {RERUN}"
        );
        let without_debug = ObjectBytes::shared(&memory, 0..40, 30).expect("in range");
        assert_eq!(without_debug.len(), 40, "{RERUN}");
        assert_eq!(without_debug.read_len(), 10, "{RERUN}");
        assert!(without_debug.debug_left_out(), "{RERUN}");
        assert_eq!(ObjectBytes::from(vec![1; 9]).read_len(), 9, "{RERUN}");
    }

    /// A part of shared bytes shares their memory; a part of a vector or
    /// of bytes read with holes is a copy; a range past the end is empty.
    #[test]
    fn a_part_of_shared_bytes_shares_their_memory() {
        let mut memory = FreshMemory::new(64).expect("map 64 bytes");
        memory.as_mut_slice()[..8].copy_from_slice(b"abcdefgh");
        let memory = Arc::new(memory);
        let whole = ObjectBytes::shared(&memory, 2..8, 0).expect("in range");
        let part = whole.part(1..4);
        assert_eq!(part.as_slice(), b"def", "{RERUN}");
        assert_eq!(part.as_ptr(), memory.as_slice()[3..].as_ptr(), "{RERUN}");
        assert!(matches!(part.0, Repr::Shared { .. }), "{RERUN}");
        let holed = ObjectBytes::shared(&memory, 0..8, 2).expect("in range");
        let copied = holed.part(2..4);
        assert_eq!(copied.as_slice(), b"cd", "{RERUN}");
        assert!(matches!(copied.0, Repr::Own(_)), "{RERUN}");
        let own = ObjectBytes::from(b"xyz".to_vec());
        assert_eq!(own.part(1..3).as_slice(), b"yz", "{RERUN}");
        assert!(whole.part(4..9).is_empty(), "{RERUN}");
        assert!(own.part(2..9).is_empty(), "{RERUN}");
    }
}
