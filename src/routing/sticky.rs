//! Sticky sessions: a client key (a cookie or a header the operator names) keeps reaching the
//! instance its first session reached while that instance is UP (`routing.sticky`).
//!
//! Like the Zowe v3 gateway's deterministic routing (`DeterministicLoadBalancer` with its
//! `LoadBalancerCache`: user → instance per service, with an expiry), the table remembers the
//! instance a key was last connected to. Keys are kept as 64-bit keyed hashes (SipHash with a
//! per-process random key), never as the cookie or header value itself: a token used as the
//! key is not held in memory. The table is bounded (`routing.sticky_max_entries`, least
//! recently used entries go first) and an entry not used for `routing.sticky_ttl` is forgotten.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Instant;

use http::header::HeaderMap;

pub use crate::config::{StickyConfig, StickyKey};

/// The value of `key` in `headers`, if the request carries a non-empty one.
pub fn key_value<'h>(key: &StickyKey, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    match key {
        StickyKey::Header(name) => headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        StickyKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
                (k == name.as_bytes() && !v.is_empty()).then_some(v)
            }),
    }
}

struct Entry {
    instance_id: Box<str>,
    used: Instant,
}

/// Key hash → the instance it is stuck to, per service (the service id is part of the hash).
pub struct StickyTable {
    config: StickyConfig,
    hasher: RandomState,
    entries: Mutex<lru::LruCache<u64, Entry>>,
}

impl StickyTable {
    /// An empty table for `config`.
    pub fn new(config: StickyConfig) -> StickyTable {
        let cap = NonZeroUsize::new(config.max_entries).unwrap_or(NonZeroUsize::MIN);
        StickyTable {
            config,
            hasher: RandomState::new(),
            // Sparse: memory grows with the entries in use, not with the bound.
            entries: Mutex::new(lru::LruCache::sparse(cap)),
        }
    }

    /// The config this table was made for (a reload with another one makes a new table).
    pub fn config(&self) -> &StickyConfig {
        &self.config
    }

    /// The slot of this request for `service_id` (lower-cased by the caller), or `None` when
    /// the request has no key.
    pub fn slot(&self, service_id: &str, headers: &HeaderMap) -> Option<u64> {
        let value = key_value(&self.config.key, headers)?;
        let mut h = self.hasher.build_hasher();
        std::hash::Hash::hash(service_id.as_bytes(), &mut h);
        std::hash::Hash::hash(value, &mut h);
        Some(std::hash::Hasher::finish(&h))
    }

    /// The instance `slot` is stuck to, if it was used within the TTL.
    pub fn get(&self, slot: u64) -> Option<Box<str>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = entries
            .get(&slot)
            .map(|e| (e.used.elapsed() < self.config.ttl).then(|| e.instance_id.clone()));
        match fresh {
            Some(Some(id)) => Some(id),
            Some(None) => {
                entries.pop(&slot);
                None
            }
            None => None,
        }
    }

    /// Sticks `slot` to `instance_id` (after a session connected there).
    pub fn set(&self, slot: u64, instance_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get_mut(&slot) {
            Some(e) if &*e.instance_id == instance_id => e.used = Instant::now(),
            _ => {
                entries.put(
                    slot,
                    Entry {
                        instance_id: instance_id.into(),
                        used: Instant::now(),
                    },
                );
            }
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is stuck.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use std::time::Duration;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookie_and_header_keys_are_read() {
        let c = StickyKey::Cookie("apimlAuthenticationToken".into());
        let h = headers(&[
            ("cookie", "a=1; apimlAuthenticationToken=tok; b=2"),
            ("x-user", "alice"),
        ]);
        assert_eq!(key_value(&c, &h), Some(&b"tok"[..]));
        assert_eq!(
            key_value(
                &c,
                &headers(&[("cookie", "a=1"), ("cookie", "apimlAuthenticationToken=t2")])
            ),
            Some(&b"t2"[..])
        );
        assert_eq!(
            key_value(&c, &headers(&[("cookie", "apimlAuthenticationToken=")])),
            None
        );
        assert_eq!(
            key_value(&c, &headers(&[("cookie", "xapimlAuthenticationToken=1")])),
            None
        );
        let x = StickyKey::Header(HeaderName::from_static("x-user"));
        assert_eq!(key_value(&x, &h), Some(&b"alice"[..]));
        assert_eq!(key_value(&x, &HeaderMap::new()), None);
    }

    #[test]
    fn entries_expire_and_the_table_is_bounded() {
        let t = StickyTable::new(StickyConfig {
            key: StickyKey::Header(HeaderName::from_static("x-user")),
            ttl: Duration::from_millis(50),
            max_entries: 2,
        });
        let slot = |user: &str, svc: &str| t.slot(svc, &headers(&[("x-user", user)])).unwrap();
        assert_ne!(slot("alice", "svc"), slot("alice", "other"), "per service");
        assert_ne!(slot("alice", "svc"), slot("bob", "svc"));
        t.set(slot("alice", "svc"), "i-1");
        assert_eq!(t.get(slot("alice", "svc")).as_deref(), Some("i-1"));
        t.set(slot("bob", "svc"), "i-2");
        t.set(slot("carol", "svc"), "i-1");
        assert_eq!(t.len(), 2, "bounded");
        assert_eq!(
            t.get(slot("alice", "svc")),
            None,
            "least recently used went first"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.get(slot("bob", "svc")), None, "expired");
        assert_eq!(t.len(), 1);
    }
}
