//! A fixed-length set of chunk indices, stored as a bitfield.

use std::fmt;

/// Which of a file's `len` chunks are present. Bit `i` of byte `i / 8` (most significant
/// first) is chunk `i`, which is also its wire encoding.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ChunkSet {
    len: u32,
    count: u32,
    bytes: Vec<u8>,
}

impl ChunkSet {
    /// An empty set over `len` chunks.
    pub fn new(len: u32) -> ChunkSet {
        ChunkSet {
            len,
            count: 0,
            bytes: vec![0; Self::byte_len(len)],
        }
    }

    /// A set holding every one of `len` chunks.
    pub fn full(len: u32) -> ChunkSet {
        let mut set = ChunkSet::new(len);
        for i in 0..len {
            set.insert(i);
        }
        set
    }

    /// Bytes needed for the bitfield of `len` chunks.
    pub(crate) fn byte_len(len: u32) -> usize {
        (len as usize).div_ceil(8)
    }

    /// Rebuilds a set from its wire bitfield. `None` when the length is wrong or a padding
    /// bit past `len` is set: a peer that sends either is lying about the file.
    pub fn from_bitfield(len: u32, bitfield: &[u8]) -> Option<ChunkSet> {
        if bitfield.len() != Self::byte_len(len) {
            return None;
        }
        let used_bits_in_last = len % 8;
        if used_bits_in_last != 0 {
            let padding_mask = 0xffu8 >> used_bits_in_last;
            if bitfield[bitfield.len() - 1] & padding_mask != 0 {
                return None;
            }
        }
        let count = bitfield.iter().map(|b| b.count_ones()).sum();
        Some(ChunkSet {
            len,
            count,
            bytes: bitfield.to_vec(),
        })
    }

    pub fn as_bitfield(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of chunks the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Number of chunks present.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.len && self.bytes[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
    }

    /// Adds `index`; returns whether it was new. Out-of-range indices are ignored.
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.len || self.contains(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] |= 0x80 >> (index % 8);
        self.count += 1;
        true
    }

    /// Removes `index`; returns whether it was present.
    pub fn remove(&mut self, index: u32) -> bool {
        if !self.contains(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] &= !(0x80 >> (index % 8));
        self.count -= 1;
        true
    }

    /// Present indices, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    /// Missing indices, in increasing order.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| !self.contains(i))
    }

    /// Adds every chunk of `other` (same length) to `self`.
    /// Whether every chunk of `other` is in this set (sets of another length never are).
    pub fn contains_all(&self, other: &ChunkSet) -> bool {
        self.len == other.len && other.iter().all(|c| self.contains(c))
    }

    pub fn union_with(&mut self, other: &ChunkSet) {
        for i in other.iter() {
            self.insert(i);
        }
    }
}

impl fmt::Debug for ChunkSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkSet({}/{})", self.count, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_count() {
        let mut set = ChunkSet::new(10);
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(!set.insert(10));
        assert!(set.insert(9));
        assert_eq!(set.count(), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![3, 9]);
        assert!(set.remove(3));
        assert_eq!(set.count(), 1);
        assert!(!set.is_full());
        assert!(ChunkSet::full(10).is_full());
    }

    #[test]
    fn bitfield_rejects_padding_and_wrong_length() {
        let set = ChunkSet::full(10);
        assert_eq!(set.as_bitfield(), &[0xff, 0xc0]);
        assert_eq!(ChunkSet::from_bitfield(10, &[0xff, 0xc0]), Some(set));
        assert_eq!(ChunkSet::from_bitfield(10, &[0xff, 0xe0]), None);
        assert_eq!(ChunkSet::from_bitfield(10, &[0xff]), None);
        assert_eq!(ChunkSet::from_bitfield(0, &[]).map(|s| s.len()), Some(0));
    }
}
