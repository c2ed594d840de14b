//! A value on cache lines of its own: for the store shards' locks, which
//! every worker thread takes. Packed side by side, a shard's lock word
//! shares a line with its neighbour's and its own table header may start
//! on the next line, so one lookup can move two lines between cores and
//! a lock taken on one shard slows a lookup in the next.

use std::ops::Deref;

/// `T` at the start of 128 bytes of its own (adjacent-line prefetching
/// pairs lines on x86), as long as `T` fits in one line: a shard's lock
/// and the table header it guards then come in one transfer.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct OwnLines<T>(pub T);

impl<T> Deref for OwnLines<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn each_value_starts_its_own_lines() {
        let shards: Box<[OwnLines<Mutex<[u64; 6]>>]> =
            (0..4).map(|_| OwnLines::default()).collect();
        for shard in shards.iter() {
            let at = std::ptr::from_ref(shard) as usize;
            assert_eq!(at % 128, 0);
        }
        assert_eq!(std::mem::size_of::<OwnLines<Mutex<[u64; 6]>>>(), 128);
        assert_eq!(*shards[1].lock().unwrap(), [0; 6]);
    }
}
