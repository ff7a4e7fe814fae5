//! LtHash: the homomorphic lattice hash behind the state root (SPEC §11).
//!
//! The accumulator is 1024 lanes of `u16` (2048 bytes). Each key-value pair maps to 2048 bytes
//! of blake3 output (XOF over `len(key) as u32 LE || key || value`), read as lanes; inserting a
//! pair adds its lanes (wrapping), deleting subtracts them. The state root is blake3 of the
//! accumulator. Updating costs time proportional to the changes, never to the state, and the
//! result does not depend on the order of changes.

use vexidus_runtime_api::Hash;

/// Number of `u16` lanes.
pub const LANES: usize = 1024;
/// Encoded size in bytes.
pub const BYTES: usize = LANES * 2;

/// The accumulator.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl Default for LtHash {
    fn default() -> Self {
        Self(Box::new([0; LANES]))
    }
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", hex::encode(self.root()))
    }
}

fn element(key: &[u8], value: &[u8]) -> [u16; LANES] {
    let mut h = blake3::Hasher::new();
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(value);
    let mut bytes = [0u8; BYTES];
    h.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, chunk) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([chunk[0], chunk[1]]);
    }
    lanes
}

impl LtHash {
    /// Adds a key-value pair.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        for (a, e) in self.0.iter_mut().zip(element(key, value)) {
            *a = a.wrapping_add(e);
        }
    }

    /// Removes a key-value pair previously added.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        for (a, e) in self.0.iter_mut().zip(element(key, value)) {
            *a = a.wrapping_sub(e);
        }
    }

    /// Adds another accumulator's pairs (lane-wise sum: the result is the same whatever way the
    /// pairs were split between the two).
    pub fn merge(&mut self, other: &LtHash) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Takes another accumulator's pairs out again (lane-wise difference).
    pub fn unmerge(&mut self, other: &LtHash) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// The state root: blake3 of the accumulator.
    pub fn root(&self) -> Hash {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }

    /// Little-endian encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    /// Decodes [`Self::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != BYTES {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, chunk) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([chunk[0], chunk[1]]);
        }
        Some(Self(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_invertible() {
        let mut a = LtHash::default();
        a.insert(b"k1", b"v1");
        a.insert(b"k2", b"v2");
        let mut b = LtHash::default();
        b.insert(b"k2", b"v2");
        b.insert(b"k1", b"v1");
        assert_eq!(a.root(), b.root());
        b.remove(b"k2", b"v2");
        let mut c = LtHash::default();
        c.insert(b"k1", b"v1");
        assert_eq!(b.root(), c.root());
        assert_ne!(a.root(), c.root());
        // Key/value boundary matters: ("ab","c") differs from ("a","bc").
        let mut d = LtHash::default();
        d.insert(b"ab", b"c");
        let mut e = LtHash::default();
        e.insert(b"a", b"bc");
        assert_ne!(d.root(), e.root());
        assert_eq!(LtHash::from_bytes(&a.to_bytes()), Some(a));
    }

    #[test]
    fn split_sums_merge_to_the_whole() {
        let mut whole = LtHash::default();
        whole.insert(b"old", b"1");
        let (mut left, mut right, mut gone) =
            (LtHash::default(), LtHash::default(), LtHash::default());
        left.insert(b"k1", b"v1");
        right.insert(b"k2", b"v2");
        gone.insert(b"old", b"1");
        right.unmerge(&gone);
        let mut merged = whole.clone();
        merged.merge(&left);
        merged.merge(&right);
        let mut direct = LtHash::default();
        direct.insert(b"k2", b"v2");
        direct.insert(b"k1", b"v1");
        assert_eq!(merged.root(), direct.root());
    }
}
