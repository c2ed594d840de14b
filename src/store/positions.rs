//! The table of a [`Slab`](super::slab::Slab): where each entry sits,
//! found by its hash, in one array of 8-byte slots.
//!
//! Why not `hashbrown`'s `HashTable<u32>`: its control bytes and its
//! buckets are two arrays, so a lookup among a million sessions, whose
//! table is nowhere near the CPU's cache, waits for a control byte, then
//! for a bucket, then for the entry: three misses in a row, each one the
//! cost of a memory read (`bench/profile.sh` at 1M sessions showed them
//! about equal, most of the lookup's time). Here a slot is 4 bytes that
//! hold both: the entry's position in the low bits, as many as the table
//! needs (a position is below the number of slots), and the top bits of
//! its hash in the rest, which a search compares before it looks at an
//! entry. One miss, then the entry's, in less memory than the two arrays.
//!
//! Linear probing from the slot the hash's low bits name, the table at
//! most 3/4 full, and removal by shifting the slots after the hole back
//! into it (no tombstones), so a search stops at the first empty slot and
//! a table that has seen many removals probes as one that has not.

/// An empty slot (a full one holds a position + 1, never 0).
const EMPTY: u32 = 0;

/// The smallest table, once there is one.
const MIN_SLOTS: usize = 16;

/// The largest table: slots index with 32 bits.
const MAX_SLOTS: usize = 1 << 31;

/// The most entries a table takes (3/4 of [`MAX_SLOTS`]).
pub(crate) const MAX_ENTRIES: usize = MAX_SLOTS / 4 * 3;

#[derive(Default)]
pub(crate) struct Positions {
    /// A power of two of them, or none.
    slots: Box<[u32]>,
    len: usize,
}

impl Positions {
    /// A table that takes `entries` without growing.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            slots: vec![EMPTY; slots_for(entries)].into_boxed_slice(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The low bits: a slot's index, and a slot's position + 1.
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, hash: u64) -> usize {
        // The low half of the hash, by design.
        hash as u32 as usize & self.mask()
    }

    /// The bits of `hash` a slot keeps beside its position: the top ones.
    fn tag(&self, hash: u64) -> u32 {
        ((hash >> 32) as u32) & !(self.mask() as u32)
    }

    /// A full slot: `hash`'s tag and position `at` (below the slots).
    fn slot(&self, hash: u64, at: u32) -> u32 {
        self.tag(hash) | (at + 1)
    }

    fn position_of(&self, slot: u32) -> u32 {
        (slot & self.mask() as u32).wrapping_sub(1)
    }

    /// Slot indexes from `hash`'s home to the first empty slot; the
    /// table is never full, so there is one.
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let mask = self.mask();
        let start = self.home(hash);
        (0..self.slots.len())
            .map(move |step| (start + step) & mask)
            .take_while(|&index| self.slots[index] != EMPTY)
    }

    /// The position of the entry with `hash` for which `eq` holds.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let (tag, tags) = (self.tag(hash), !(self.mask() as u32));
        self.probe(hash)
            .map(|index| self.slots[index])
            .filter(|&slot| slot & tags == tag)
            .map(|slot| self.position_of(slot))
            .find(|&at| eq(at))
    }

    /// The slot index holding position `at` of an entry with `hash`.
    fn slot_of(&self, hash: u64, at: u32) -> Option<usize> {
        if self.slots.is_empty() || at as usize >= self.mask() {
            return None;
        }
        let wanted = self.slot(hash, at);
        self.probe(hash).find(|&index| self.slots[index] == wanted)
    }

    /// Records that the entry with `hash` is at `at` (below
    /// [`MAX_ENTRIES`]), which no slot holds yet; `hash_at` gives the hash
    /// of the entry at a position, for a table that grows.
    pub fn insert(&mut self, hash: u64, at: u32, hash_at: impl Fn(u32) -> u64) {
        let wanted = slots_for(self.len.max(at as usize) + 1);
        if wanted > self.slots.len() {
            self.resize(wanted, hash_at);
        }
        self.place(self.slot(hash, at), self.home(hash));
        self.len += 1;
    }

    fn place(&mut self, slot: u32, home: usize) {
        let mask = self.mask();
        let mut index = home;
        while self.slots[index] != EMPTY {
            index = (index + 1) & mask;
        }
        self.slots[index] = slot;
    }

    /// Forgets position `at` of the entry with `hash`; `false` when no
    /// slot held it. `hash_at` gives the hash of the entry at a position.
    pub fn remove(&mut self, hash: u64, at: u32, hash_at: impl Fn(u32) -> u64) -> bool {
        let Some(mut hole) = self.slot_of(hash, at) else {
            return false;
        };
        // Every slot after the hole, up to the first empty one, that
        // probed past the hole on its way from its home moves into it,
        // and leaves a hole behind.
        let mask = self.mask();
        let mut index = hole;
        loop {
            index = (index + 1) & mask;
            let slot = self.slots[index];
            if slot == EMPTY {
                break;
            }
            let home = self.home(hash_at(self.position_of(slot)));
            if index.wrapping_sub(home) & mask >= index.wrapping_sub(hole) & mask {
                self.slots[hole] = slot;
                hole = index;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// The entry with `hash` moved from position `from` to `to`.
    pub fn relocate(&mut self, hash: u64, from: u32, to: u32) -> bool {
        if to as usize >= self.mask() {
            return false;
        }
        match self.slot_of(hash, from) {
            Some(index) => {
                self.slots[index] = self.slot(hash, to);
                true
            }
            None => false,
        }
    }

    /// Takes the room `entries` need, no more (from a larger table).
    pub fn shrink_to(&mut self, entries: usize, hash_at: impl Fn(u32) -> u64) {
        let wanted = slots_for(entries.max(self.len));
        if wanted < self.slots.len() {
            self.resize(wanted, hash_at);
        }
    }

    fn resize(&mut self, slots: usize, hash_at: impl Fn(u32) -> u64) {
        let old_mask = self.slots.len().saturating_sub(1) as u32;
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; slots].into_boxed_slice());
        for slot in old.iter().copied().filter(|&slot| slot != EMPTY) {
            let at = (slot & old_mask).wrapping_sub(1);
            let hash = hash_at(at);
            self.place(self.slot(hash, at), self.home(hash));
        }
    }
}

/// The slots a table of `entries` takes: a power of two, at most 3/4 full.
fn slots_for(entries: usize) -> usize {
    entries
        .saturating_mul(4)
        .div_ceil(3)
        .max(MIN_SLOTS)
        .next_power_of_two()
        .min(MAX_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes that crowd: many share a home, and the low bits wrap around
    /// the end of the table; the top bits differ.
    fn hash(n: u32) -> u64 {
        let low = match n % 4 {
            0 => 3,
            1 => u32::MAX,
            2 => n.wrapping_mul(0x9e37_79b9),
            _ => 15 - n % 3,
        };
        (u64::from(n.wrapping_mul(0x85eb_ca6b)) << 32) | u64::from(low)
    }

    /// Entry `n` sits at position `n`; entry `3k` moves to `300 + k`
    /// (then to `k`, where `hash(3 * at)` is its hash).
    fn hash_at(at: u32) -> u64 {
        hash(if at >= 300 { (at - 300) * 3 } else { at })
    }

    fn check(table: &Positions, present: &[(u32, u32)]) {
        assert_eq!(table.len(), present.len());
        assert!(table.len() * 4 <= table.slots.len() * 3);
        for &(n, at) in present {
            assert_eq!(table.find(hash(n), |found| found == at), Some(at), "{n}");
        }
    }

    #[test]
    fn every_position_is_found_as_entries_come_move_and_go() {
        let mut table = Positions::default();
        assert_eq!(table.find(hash(1), |_| true), None);
        let mut present: Vec<(u32, u32)> = Vec::new();
        for n in 0..300 {
            table.insert(hash(n), n, hash_at);
            present.push((n, n));
        }
        check(&table, &present);
        // Move every third one and remove the others, in a scattered
        // order; check after each.
        for step in 0..300u32 {
            let n = (step * 7) % 300;
            let at = present.iter().position(|&(m, _)| m == n).unwrap();
            let (_, position) = present[at];
            if n % 3 == 0 {
                assert!(table.relocate(hash(n), position, 300 + n / 3));
                present[at].1 = 300 + n / 3;
            } else {
                assert!(table.remove(hash(n), position, hash_at));
                assert!(
                    !table.remove(hash(n), position, hash_at),
                    "{n} removed twice"
                );
                present.remove(at);
                assert_eq!(table.find(hash(n), |found| found == position), None);
            }
            check(&table, &present);
        }
        // As a slab keeps them: below the number of entries.
        for (n, at) in &mut present {
            assert!(table.relocate(hash(*n), *at, *n / 3));
            *at = *n / 3;
        }
        let before = table.slots.len();
        table.shrink_to(0, |at| hash(at * 3));
        assert!(table.slots.len() < before);
        check(&table, &present);
    }

    #[test]
    fn a_search_looks_only_at_entries_whose_hash_bits_match() {
        let mut table = Positions::with_capacity(100);
        for n in 0..64 {
            table.insert(hash(n), n, hash_at);
        }
        for n in [4, 5, 6, 7] {
            let mut asked = Vec::new();
            let found = table.find(hash(n), |at| {
                asked.push(at);
                at == n
            });
            assert_eq!(found, Some(n));
            assert_eq!(asked, [n], "entries of other hashes compared");
        }
    }
}
