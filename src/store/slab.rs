//! A set kept as a dense vector plus a hash table of positions into it:
//! what a memory-store shard keeps its sessions in, the user index a
//! user's members, and a shard of the Redis store's cache its records.
//!
//! Why not a `HashMap`: its buckets hold the entries themselves, and its
//! table grows by doubling and is never more than 7/8 full, so up to half
//! of the memory it holds for entries is empty buckets. Here the entries
//! sit packed in a `Vec` (whose unused capacity is never touched, so it
//! costs address space, not memory) and the table ([`Positions`]) holds
//! 4-byte slots: a position and the hash bits a search compares first.
//! Removing swaps the last entry into the hole and fixes its position.
//!
//! Up to [`LINEAR`] entries, no table at all: a search reads them in turn,
//! which for a handful is as fast and spares a user with one or two
//! sessions an allocation.

use super::positions::{Positions, MAX_ENTRIES};

/// Entries up to which there is no table.
const LINEAR: usize = 8;

/// An entry: how it hashes.
pub(crate) trait Hashed {
    fn hash(&self) -> u64;
}

pub(crate) struct Slab<T> {
    entries: Vec<T>,
    /// Positions in `entries`, when there are more than [`LINEAR`].
    table: Positions,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            table: Positions::default(),
        }
    }
}

/// A position, as the table stores it. The stores bound their entries far
/// below [`MAX_ENTRIES`] (see [`Slab::insert`]).
fn position(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// The hash of the entry at `at`, for the table as it grows or shifts.
fn hash_at<T: Hashed>(entries: &[T], at: u32) -> u64 {
    entries.get(at as usize).map_or(0, Hashed::hash)
}

impl<T: Hashed> Slab<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[T] {
        &self.entries
    }

    fn indexed(&self) -> bool {
        self.entries.len() > LINEAR
    }

    /// The position of the entry with `hash` for which `eq` holds.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<usize> {
        if !self.indexed() {
            return self.entries.iter().position(eq);
        }
        let entries = &self.entries;
        self.table
            .find(hash, |at| entries.get(at as usize).is_some_and(&mut eq))
            .map(|at| at as usize)
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.entries.get(index)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.entries.get_mut(index)
    }

    /// Adds `entry`, which no entry equals (callers find first); `false`
    /// when the slab is full ([`MAX_ENTRIES`], about 1.6 billion), and
    /// `entry` is dropped.
    pub fn insert(&mut self, entry: T) -> bool {
        let at = self.entries.len();
        if at >= MAX_ENTRIES {
            return false;
        }
        let hash = entry.hash();
        self.entries.push(entry);
        if at == LINEAR {
            self.build_table();
        } else if self.indexed() {
            let entries = &self.entries;
            self.table
                .insert(hash, position(at), |i| hash_at(entries, i));
        }
        true
    }

    fn build_table(&mut self) {
        let entries = &self.entries;
        let mut table = Positions::with_capacity(entries.len());
        for (at, entry) in entries.iter().enumerate() {
            table.insert(entry.hash(), position(at), |i| hash_at(entries, i));
        }
        self.table = table;
    }

    /// Removes and returns the entry at `index`; the last entry takes its
    /// place.
    pub fn remove_at(&mut self, index: usize) -> T {
        let last = self.entries.len() - 1;
        if self.indexed() {
            let (entries, hash) = (&self.entries, self.entries[index].hash());
            self.table
                .remove(hash, position(index), |i| hash_at(entries, i));
            if index != last {
                let moved = self.entries[last].hash();
                self.table.relocate(moved, position(last), position(index));
            }
        }
        let removed = self.entries.swap_remove(index);
        if self.entries.len() == LINEAR {
            self.table = Positions::default();
        }
        removed
    }

    /// Keeps the entries for which `keep` holds; returns how many went.
    /// Gives memory back when most of it is unused.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.entries.len();
        let mut index = 0;
        while index < self.entries.len() {
            if keep(&self.entries[index]) {
                index += 1;
            } else {
                // The last entry moves here: look at this index again.
                self.remove_at(index);
            }
        }
        self.shrink();
        before - self.entries.len()
    }

    /// Halves what is held when under a quarter of it is used, so a shard
    /// that emptied does not keep its peak.
    fn shrink(&mut self) {
        let (len, capacity) = (self.entries.len(), self.entries.capacity());
        if capacity > 64 && len < capacity / 4 {
            self.entries.shrink_to(len * 2);
            let entries = &self.entries;
            self.table.shrink_to(len, |i| hash_at(entries, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few hash values, so entries share them and probes meet.
    #[derive(Debug, PartialEq)]
    struct Entry(u32);

    impl Hashed for Entry {
        fn hash(&self) -> u64 {
            u64::from(self.0 % 5)
        }
    }

    fn find(slab: &Slab<Entry>, n: u32) -> Option<usize> {
        slab.find(u64::from(n % 5), |e| e.0 == n)
    }

    fn check(slab: &Slab<Entry>, present: &[u32]) {
        assert_eq!(slab.len(), present.len());
        assert_eq!(
            slab.table.len(),
            if slab.indexed() { slab.len() } else { 0 }
        );
        for &n in present {
            let at = find(slab, n).unwrap_or_else(|| panic!("{n} not found"));
            assert_eq!(slab.get(at), Some(&Entry(n)));
        }
    }

    #[test]
    fn removals_keep_every_position_right_across_the_linear_limit() {
        let mut slab = Slab::default();
        let mut present: Vec<u32> = Vec::new();
        for n in 0..40 {
            assert!(slab.insert(Entry(n)));
            present.push(n);
            check(&slab, &present);
        }
        // Remove from the front, the middle and the back, down to none.
        let mut turn = 0;
        while !present.is_empty() {
            let n = present[[0, present.len() / 2, present.len() - 1][turn % 3]];
            let at = find(&slab, n).unwrap();
            assert_eq!(slab.remove_at(at), Entry(n));
            present.retain(|&p| p != n);
            assert_eq!(find(&slab, n), None, "{n} still found");
            check(&slab, &present);
            turn += 1;
        }
        assert!(slab.is_empty());
    }

    #[test]
    fn retain_keeps_what_it_should_and_gives_memory_back() {
        let mut slab = Slab::default();
        for n in 0..1000 {
            slab.insert(Entry(n));
        }
        let peak = slab.entries.capacity();
        assert_eq!(slab.retain(|e| e.0 % 100 == 7), 990);
        let kept: Vec<u32> = (0..1000).filter(|n| n % 100 == 7).collect();
        check(&slab, &kept);
        assert!(slab.entries.capacity() < peak / 4, "memory kept");
        assert_eq!(find(&slab, 8), None);
    }

    /// An entry with a well-mixed hash, as the stores' are.
    #[derive(Debug, PartialEq)]
    struct Mixed(u64);

    impl Hashed for Mixed {
        fn hash(&self) -> u64 {
            let mixed = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            mixed ^ (mixed >> 29)
        }
    }

    #[test]
    fn it_holds_what_a_set_holds_through_growth_removals_and_shrinking() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut slab = Slab::default();
        let mut model = std::collections::HashSet::new();
        let find = |slab: &Slab<Mixed>, key: u64| {
            let probe = Mixed(key);
            slab.find(probe.hash(), |entry| *entry == probe)
        };
        for round in 0..40_000u32 {
            // Grows to a few thousand entries, then drains, twice.
            let growing = (round / 10_000) % 2 == 0;
            let key = rng.random_range(0..20_000u64);
            if rng.random_bool(if growing { 0.7 } else { 0.3 }) {
                if model.insert(key) {
                    assert!(slab.insert(Mixed(key)));
                }
            } else if let Some(at) = find(&slab, key) {
                assert!(model.remove(&key), "{key} found, never inserted");
                assert_eq!(slab.remove_at(at), Mixed(key));
            } else {
                assert!(!model.contains(&key), "{key} lost");
            }
            if round % 5_000 == 4_999 {
                slab.retain(|entry| entry.0 % 7 != 0);
                model.retain(|key| key % 7 != 0);
                assert_eq!(slab.len(), model.len());
                for &key in &model {
                    let at = find(&slab, key).unwrap_or_else(|| panic!("{key} lost"));
                    assert_eq!(slab.get(at), Some(&Mixed(key)));
                }
            }
        }
        assert_eq!(slab.len(), model.len());
    }
}
