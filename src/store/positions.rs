//! The table of a [`Slab`](super::slab::Slab): where each entry sits,
//! found by its hash, in one array of 8-byte slots.
//!
//! Why not `hashbrown`'s `HashTable<u32>`: its control bytes and its
//! buckets are two arrays, so a lookup among a million sessions, whose
//! table is nowhere near the CPU's cache, waits for a control byte, then
//! for a bucket, then for the entry: three misses in a row, each one the
//! cost of a memory read (`bench/profile.sh` at 1M sessions showed them
//! about equal, most of the lookup's time). Here a slot holds the entry's
//! position and the low 32 bits of its hash: one miss, then the entry's.
//!
//! Linear probing from the slot the hash's low bits name, the table at
//! most 3/4 full, and removal by shifting the slots after the hole back
//! into it (no tombstones), so a search stops at the first empty slot and
//! a table that has seen many removals probes as one that has not. The
//! slot keeps the hash bits that chose its place, so growing never asks an
//! entry for its hash again.

/// An empty slot (a full one holds a position + 1, never 0).
const EMPTY: u64 = 0;

/// The smallest table, once there is one.
const MIN_SLOTS: usize = 16;

/// The part of a hash a slot keeps: what places it, and what a search
/// compares before it looks at an entry.
fn tag(hash: u64) -> u32 {
    // The low half, by design.
    hash as u32
}

/// A full slot: `tag` and position `at` (below `u32::MAX`).
fn slot(tag: u32, at: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(at) + 1)
}

fn tag_of(slot: u64) -> u32 {
    (slot >> 32) as u32
}

fn position_of(slot: u64) -> u32 {
    // A full slot's low half is a position + 1.
    (slot as u32).wrapping_sub(1)
}

#[derive(Default)]
pub(crate) struct Positions {
    /// A power of two of them, or none.
    slots: Box<[u64]>,
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

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask()
    }

    /// Slot indexes from `tag`'s home to the first empty slot; the
    /// table is never full, so there is one.
    fn probe(&self, tag: u32) -> impl Iterator<Item = usize> + '_ {
        let mask = self.mask();
        let start = self.home(tag);
        (0..self.slots.len())
            .map(move |step| (start + step) & mask)
            .take_while(|&index| self.slots[index] != EMPTY)
    }

    /// The position of the entry with `hash` for which `eq` holds.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag(hash);
        self.probe(tag)
            .map(|index| self.slots[index])
            .filter(|&slot| tag_of(slot) == tag)
            .map(position_of)
            .find(|&at| eq(at))
    }

    /// The slot index holding position `at` of an entry with `hash`.
    fn slot_of(&self, hash: u64, at: u32) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let wanted = slot(tag(hash), at);
        self.probe(tag(hash))
            .find(|&index| self.slots[index] == wanted)
    }

    /// Records that the entry with `hash` is at `at` (below `u32::MAX`),
    /// which no slot holds yet.
    pub fn insert(&mut self, hash: u64, at: u32) {
        if slots_for(self.len + 1) > self.slots.len() {
            self.resize(slots_for(self.len + 1));
        }
        self.place(slot(tag(hash), at));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mask = self.mask();
        let mut index = self.home(tag_of(slot));
        while self.slots[index] != EMPTY {
            index = (index + 1) & mask;
        }
        self.slots[index] = slot;
    }

    /// Forgets position `at` of the entry with `hash`; `false` when no
    /// slot held it.
    pub fn remove(&mut self, hash: u64, at: u32) -> bool {
        let Some(mut hole) = self.slot_of(hash, at) else {
            return false;
        };
        // Every slot after the hole, up to the first empty one, probed
        // past the hole on its way from its home: it moves into the hole,
        // and leaves one behind.
        let mask = self.mask();
        let mut index = hole;
        loop {
            index = (index + 1) & mask;
            let slot = self.slots[index];
            if slot == EMPTY {
                break;
            }
            let home = self.home(tag_of(slot));
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
        match self.slot_of(hash, from) {
            Some(index) => {
                self.slots[index] = slot(tag(hash), to);
                true
            }
            None => false,
        }
    }

    /// Takes the room `entries` need, no more (from a larger table).
    pub fn shrink_to(&mut self, entries: usize) {
        let wanted = slots_for(entries.max(self.len));
        if wanted < self.slots.len() {
            self.resize(wanted);
        }
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; slots].into_boxed_slice());
        for slot in old.iter().copied().filter(|&slot| slot != EMPTY) {
            self.place(slot);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes that crowd: many share a home, and the low bits wrap around
    /// the end of the table.
    fn hash(n: u32) -> u64 {
        let low = match n % 4 {
            0 => 3,
            1 => u32::MAX,
            2 => n.wrapping_mul(0x9e37_79b9),
            _ => 15 - n % 3,
        };
        (u64::from(n) << 32) | u64::from(low)
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
            table.insert(hash(n), n);
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
                assert!(table.relocate(hash(n), position, 1000 + n));
                present[at].1 = 1000 + n;
            } else {
                assert!(table.remove(hash(n), position));
                assert!(!table.remove(hash(n), position), "{n} removed twice");
                present.remove(at);
                assert_eq!(table.find(hash(n), |found| found == position), None);
            }
            check(&table, &present);
        }
        let before = table.slots.len();
        table.shrink_to(0);
        assert!(table.slots.len() < before);
        check(&table, &present);
    }

    #[test]
    fn a_search_compares_only_entries_whose_hash_bits_match() {
        let mut table = Positions::with_capacity(100);
        for n in 0..64 {
            table.insert(hash(n), n);
        }
        let mut asked = Vec::new();
        let found = table.find(hash(4), |at| {
            asked.push(at);
            at == 4
        });
        assert_eq!(found, Some(4));
        // Those sharing hash(4)'s low bits: 0, 4, 8, ... up to it.
        assert!(asked.iter().all(|at| at % 4 == 0), "{asked:?}");
    }
}
