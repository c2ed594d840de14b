//! The user agents the user index keeps, each once: a member holds a
//! 4-byte [`Agent`] instead of its own copy of a `User-Agent` (up to 256
//! bytes, and most of a site's sessions share a few dozen of them).
//!
//! Counted: an agent's text is freed when its last member goes. The empty
//! user agent is [`Agent::NONE`] and holds nothing. Agents are hashed with
//! a keyed hash: their text is the client's.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;

/// A user agent held in [`Agents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Agent(u32);

impl Agent {
    /// The empty user agent.
    pub const NONE: Self = Self(u32::MAX);
}

struct Held {
    text: Box<str>,
    /// Members holding it; 0: the place is free.
    holders: u32,
}

#[derive(Default)]
pub(super) struct Agents {
    held: Vec<Held>,
    /// Places in `held` whose text was freed.
    free: Vec<u32>,
    /// Positions in `held` of the texts held, by their hash.
    table: HashTable<u32>,
    hasher: RandomState,
}

impl Agents {
    /// `text`, held once more.
    pub fn hold(&mut self, text: &str) -> Agent {
        if text.is_empty() {
            return Agent::NONE;
        }
        let hash = self.hasher.hash_one(text);
        let held = &mut self.held;
        if let Some(&at) = self
            .table
            .find(hash, |&at| &*held[at as usize].text == text)
        {
            let entry = &mut held[at as usize];
            entry.holders = entry.holders.saturating_add(1);
            return Agent(at);
        }
        let entry = Held {
            text: text.into(),
            holders: 1,
        };
        let at = match self.free.pop() {
            Some(at) => {
                held[at as usize] = entry;
                at
            }
            None => {
                // Fewer than u32::MAX agents: each is held by a member,
                // and the store holds fewer sessions than that.
                let at = u32::try_from(held.len()).unwrap_or(Agent::NONE.0 - 1);
                held.push(entry);
                at
            }
        };
        let (hasher, held) = (&self.hasher, &self.held);
        self.table
            .insert_unique(hash, at, |&i| hasher.hash_one(&*held[i as usize].text));
        Agent(at)
    }

    /// One holder of `agent` fewer.
    pub fn release(&mut self, agent: Agent) {
        let Some(entry) = self.held.get_mut(agent.0 as usize) else {
            return;
        };
        entry.holders = entry.holders.saturating_sub(1);
        if entry.holders > 0 {
            return;
        }
        let text = std::mem::take(&mut entry.text);
        let hash = self.hasher.hash_one(&*text);
        if let Ok(found) = self.table.find_entry(hash, |&at| at == agent.0) {
            found.remove();
        }
        self.free.push(agent.0);
    }

    pub fn text(&self, agent: Agent) -> &str {
        self.held
            .get(agent.0 as usize)
            .map_or("", |held| &held.text)
    }

    /// Texts held, for tests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_is_held_once_and_freed_with_its_last_holder() {
        let mut agents = Agents::default();
        assert_eq!(agents.hold(""), Agent::NONE);
        assert_eq!(agents.text(Agent::NONE), "");
        let curl = agents.hold("curl/8");
        let firefox = agents.hold("Firefox");
        assert_eq!(agents.hold("curl/8"), curl);
        assert_ne!(curl, firefox);
        assert_eq!(
            (agents.text(curl), agents.text(firefox)),
            ("curl/8", "Firefox")
        );
        assert_eq!(agents.len(), 2);
        agents.release(curl);
        assert_eq!(agents.text(curl), "curl/8", "one holder left");
        agents.release(curl);
        assert_eq!(agents.len(), 1);
        agents.release(Agent::NONE);
        // The freed place is reused, and the text found again.
        let wget = agents.hold("Wget");
        assert_eq!(wget, curl);
        assert_eq!(agents.text(wget), "Wget");
        assert_eq!(agents.hold("Firefox"), firefox);
        assert_eq!(agents.hold("Wget"), wget);
        assert_eq!(agents.len(), 2);
    }
}
