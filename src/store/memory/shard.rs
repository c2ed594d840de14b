//! One shard of the memory store: its sessions, found by key (or by the
//! prefix the user index keeps), and the choice of a session to evict
//! when it is full.

use super::entry::{Entry, Nanos};
use super::key::{Key, Prefix};
use crate::store::slab::{Hashed, Slab};

/// How many entries eviction looks at to choose a victim.
const EVICTION_SAMPLE: usize = 16;

impl Hashed for Entry {
    fn hash(&self) -> u64 {
        self.key().hash()
    }
}

#[derive(Default)]
pub(super) struct Shard {
    entries: Slab<Entry>,
}

impl Shard {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[Entry] {
        self.entries.entries()
    }

    fn find(&self, key: &Key) -> Option<usize> {
        self.entries.find(key.hash(), |entry| entry.key() == key)
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.find(key).and_then(|at| self.entries.get(at))
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        let at = self.find(key)?;
        self.entries.get_mut(at)
    }

    /// The session whose key starts with `prefix`.
    pub fn by_prefix(&self, prefix: &Prefix) -> Option<&Entry> {
        let at = self
            .entries
            .find(prefix.hash(), |entry| entry.key().starts_with(prefix))?;
        self.entries.get(at)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.find(key).is_some()
    }

    /// Adds `entry`, in place of the entry with its key if there is one.
    pub fn insert(&mut self, entry: Entry) {
        match self
            .find(entry.key())
            .and_then(|at| self.entries.get_mut(at))
        {
            Some(slot) => *slot = entry,
            // The store bounds a shard far below the slab's limit.
            None => {
                self.entries.insert(entry);
            }
        }
    }

    pub fn remove(&mut self, key: &Key) -> bool {
        match self.find(key) {
            Some(at) => {
                self.entries.remove_at(at);
                true
            }
            None => false,
        }
    }

    /// Removes the expired sessions; returns how many.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        self.entries.retain(|entry| entry.is_live(now))
    }

    /// Evicts one session to make room: among a sample, an expired one,
    /// else an anonymous one (empty first), else the one expiring soonest.
    /// When the sample holds only live signed-in sessions, the whole shard
    /// is searched for an anonymous or expired one first: an anonymous
    /// flood never evicts a signed-in session while an anonymous one
    /// remains. `seed` (any hash) says where the sample starts. `false`
    /// when the shard is empty.
    pub fn evict(&mut self, now: Nanos, seed: u64) -> bool {
        let entries = self.entries.entries();
        if entries.is_empty() {
            return false;
        }
        let rank = |entry: &Entry| {
            (
                entry.is_live(now),
                entry.is_logged_in(),
                !entry.is_empty(),
                entry.expires(),
            )
        };
        let start = (seed % entries.len() as u64) as usize;
        let sample = (start..start + EVICTION_SAMPLE.min(entries.len()))
            .map(|at| at % entries.len())
            .min_by_key(|&at| rank(&entries[at]));
        let Some(mut victim) = sample else {
            return false;
        };
        let chosen = &entries[victim];
        if chosen.is_live(now) && chosen.is_logged_in() {
            let anonymous = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.is_live(now) || !e.is_logged_in())
                .min_by_key(|(_, e)| rank(e));
            if let Some((at, _)) = anonymous {
                victim = at;
            }
        }
        self.entries.remove_at(victim);
        true
    }
}
