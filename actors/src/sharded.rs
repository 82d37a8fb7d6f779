//! [`ShardedMap`]: a map from UUIDs to values split over a fixed number of hash maps.
//!
//! Why: a std `HashMap` grows by rehashing *every* entry at once. An actor holding a million
//! sessions in one map stalls for ~100 ms at each doubling (copying the table and faulting in
//! the new one), and every request queued behind it waits. Split over [`SHARDS`] maps, each
//! doubling moves 1/64 of the entries, so the pause shrinks by the same factor. UUID v4 ids
//! are random, so their low bits spread keys evenly.

use std::collections::{HashMap, hash_map};

use uuid::Uuid;

/// Number of shards; a power of two so the shard is a mask of the id's low bits.
const SHARDS: usize = 64;

pub(crate) struct ShardedMap<V> {
    shards: Vec<HashMap<Uuid, V>>,
    len: usize,
}

impl<V> ShardedMap<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }

    fn shard(key: &Uuid) -> usize {
        (key.as_u128() as usize) & (SHARDS - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get_mut(&mut self, key: &Uuid) -> Option<&mut V> {
        self.shards[Self::shard(key)].get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: Uuid, value: V) -> Option<V> {
        let previous = self.shards[Self::shard(&key)].insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    pub(crate) fn remove(&mut self, key: &Uuid) -> Option<V> {
        let removed = self.shards[Self::shard(key)].remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The entry for `key`, created by `default` when absent.
    pub(crate) fn get_or_insert_with(&mut self, key: Uuid, default: impl FnOnce() -> V) -> &mut V {
        match self.shards[Self::shard(&key)].entry(key) {
            hash_map::Entry::Occupied(entry) => entry.into_mut(),
            hash_map::Entry::Vacant(entry) => {
                self.len += 1;
                entry.insert(default())
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Uuid, &V)> {
        self.shards.iter().flat_map(HashMap::iter)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Uuid, &mut V)> {
        self.shards.iter_mut().flat_map(HashMap::iter_mut)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(HashMap::values)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Uuid, &mut V) -> bool) {
        for shard in &mut self.shards {
            shard.retain(&mut keep);
        }
        self.len = self.shards.iter().map(HashMap::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_one_map() {
        let mut map = ShardedMap::new();
        let ids: Vec<Uuid> = (0..1000).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(map.insert(*id, i).is_none());
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.insert(ids[0], 7), Some(0));
        assert_eq!(map.len(), 1000);
        *map.get_mut(&ids[1]).unwrap() += 1;
        assert_eq!(map.remove(&ids[1]), Some(2));
        assert_eq!(map.remove(&ids[1]), None);
        *map.get_or_insert_with(ids[1], || 40) += 2;
        assert_eq!(map.get_mut(&ids[1]), Some(&mut 42));
        map.retain(|_, v| *v % 2 == 0);
        assert_eq!(map.len(), map.iter().count());
        assert_eq!(map.values().count(), map.len());
        assert!(
            map.shards.iter().all(|s| !s.is_empty()),
            "keys spread over every shard"
        );
    }
}
