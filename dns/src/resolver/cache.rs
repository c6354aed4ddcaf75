//! The resolver's cache: answers kept for their TTL, in a bounded number of
//! entries.
//!
//! Keys are a name (lowercase uncompressed wire form) and a type. A
//! negative answer is kept as RFC 2308 says: NODATA under the name and the
//! type asked for, NXDOMAIN under the name alone (it holds for every type),
//! each for the negative TTL the response's SOA gave. An answer with a TTL
//! of 0 is used once and not kept. When the cache is full, expired entries
//! go first, then the one closest to expiring.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use lamina_core::runtime::{Duration, Instant};

use crate::types::Rtype;

/// The type under which an NXDOMAIN is kept: type 0 is reserved (RFC 6895)
/// and never asked for, so it stands for "the name, whatever the type".
const ANY_TYPE: u16 = 0;

/// What the cache holds for a name and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// The records' data (uncompressed wire form), in the order received.
    Records(Vec<Vec<u8>>),
    /// The name exists, without records of this type (NODATA).
    NoData,
    /// The name does not exist (NXDOMAIN); kept for every type.
    NxDomain,
}

#[derive(Debug)]
struct Entry {
    value: Cached,
    expires: Instant,
}

/// A bounded map from (name, type) to what was learned, until it expires.
#[derive(Debug)]
pub struct Cache {
    entries: BTreeMap<(Vec<u8>, u16), Entry>,
    capacity: usize,
}

impl Cache {
    /// An empty cache of at most `capacity` entries (0 turns caching off).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: BTreeMap::new(),
            capacity,
        }
    }

    /// The number of entries, expired ones included until they are evicted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// What is known of `name_lower` and `rtype` at `now`, with the seconds
    /// it has left: an NXDOMAIN for the name first, then the type's entry.
    pub fn get(&mut self, name_lower: &[u8], rtype: Rtype, now: Instant) -> Option<(Cached, u32)> {
        for key_type in [ANY_TYPE, rtype.0] {
            let key = (name_lower.to_vec(), key_type);
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if entry.expires <= now {
                self.entries.remove(&key);
                continue;
            }
            let left = (entry.expires - now).as_secs();
            return Some((entry.value.clone(), u32::try_from(left).unwrap_or(u32::MAX)));
        }
        None
    }

    /// Keeps `value` for `name_lower` and `rtype` for `ttl` seconds from
    /// `now` (an NXDOMAIN for the name, whatever `rtype`). A TTL of 0 keeps
    /// nothing.
    pub fn insert(
        &mut self,
        name_lower: &[u8],
        rtype: Rtype,
        value: Cached,
        ttl: u32,
        now: Instant,
    ) {
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        let key_type = match value {
            Cached::NxDomain => ANY_TYPE,
            _ => rtype.0,
        };
        let key = (name_lower.to_vec(), key_type);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| entry.expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires)
                    .map(|(key, _)| key.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        let expires = now + Duration::from_secs(u64::from(ttl));
        self.entries.insert(key, Entry { value, expires });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const NAME: &[u8] = b"\x03www\x07example\x00";
    const OTHER: &[u8] = b"\x04mail\x07example\x00";

    fn at(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn an_answer_lives_for_its_ttl_and_counts_down() {
        let mut cache = Cache::new(8);
        let a = Cached::Records(vec![vec![192, 0, 2, 1]]);
        cache.insert(NAME, Rtype::A, a.clone(), 30, at(100));
        assert_eq!(cache.get(NAME, Rtype::A, at(100)), Some((a.clone(), 30)));
        assert_eq!(cache.get(NAME, Rtype::A, at(120)), Some((a, 10)));
        assert_eq!(cache.get(NAME, Rtype::AAAA, at(120)), None);
        assert_eq!(cache.get(NAME, Rtype::A, at(130)), None);
        assert_eq!(cache.len(), 0, "the expired entry is gone");
    }

    #[test]
    fn nxdomain_holds_for_every_type_nodata_for_its_own() {
        let mut cache = Cache::new(8);
        cache.insert(NAME, Rtype::A, Cached::NxDomain, 60, at(0));
        assert_eq!(
            cache.get(NAME, Rtype::MX, at(1)),
            Some((Cached::NxDomain, 59))
        );
        cache.insert(OTHER, Rtype::AAAA, Cached::NoData, 60, at(0));
        assert_eq!(
            cache.get(OTHER, Rtype::AAAA, at(1)),
            Some((Cached::NoData, 59))
        );
        assert_eq!(cache.get(OTHER, Rtype::A, at(1)), None);
    }

    #[test]
    fn a_ttl_of_zero_is_not_kept() {
        let mut cache = Cache::new(8);
        cache.insert(NAME, Rtype::A, Cached::NoData, 0, at(0));
        assert_eq!(cache.len(), 0);
        let mut off = Cache::new(0);
        off.insert(NAME, Rtype::A, Cached::NoData, 60, at(0));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_to_expire() {
        let mut cache = Cache::new(2);
        cache.insert(NAME, Rtype::A, Cached::NoData, 10, at(0));
        cache.insert(NAME, Rtype::AAAA, Cached::NoData, 100, at(0));
        cache.insert(OTHER, Rtype::A, Cached::NoData, 50, at(0));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(NAME, Rtype::A, at(1)), None, "soonest evicted");
        assert!(cache.get(NAME, Rtype::AAAA, at(1)).is_some());
        cache.insert(OTHER, Rtype::MX, Cached::NoData, 500, at(60));
        assert_eq!(cache.get(OTHER, Rtype::A, at(60)), None, "expired evicted");
        assert!(cache.get(NAME, Rtype::AAAA, at(60)).is_some());
        assert!(cache.get(OTHER, Rtype::MX, at(60)).is_some());
        // Replacing an entry needs no room.
        cache.insert(OTHER, Rtype::MX, Cached::Records(vec![]), 5, at(60));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(NAME, Rtype::AAAA, at(60)).is_some());
    }
}
