//! The live session table behind `/application/websockets`.
//!
//! A session is inserted once its upstream handshake succeeded and removed on every way it
//! can end: [`SessionGuard`] removes it when dropped, so no exit path (close, error, panic,
//! shutdown) can leave a stale entry. Counters are atomics updated by the relay without locks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

pub use crate::relay::Counters;

/// One live session, as listed by `/application/websockets`.
#[derive(Debug)]
pub struct SessionInfo {
    /// Session id, unique within this process.
    pub id: SessionId,
    /// The client's socket address.
    pub client: SocketAddr,
    /// The URI the client asked for, as Zowe v2's `WebSocketActuatorEndpoint` shows it (the
    /// request URI Tomcat's `WsHandshakeRequest` builds): scheme, `Host`, path and query, e.g.
    /// `wss://gw:10010/ws/v1/discoverableclient/echo?x=1`.
    pub gateway_path: Box<str>,
    /// The instance the session is connected to now; it changes when the session fails over
    /// (see [`SessionInfo::switch_upstream`]).
    pub upstream: Mutex<Upstream>,
    /// How many times the session moved to another instance (issue 6).
    pub failovers: AtomicU32,
    /// Eureka service id.
    pub service_id: String,
    /// Route name (`<name>` of `apiml.routes.<name>.*`).
    pub route: Box<str>,
    /// The subprotocol the service chose, if any.
    pub subprotocol: Option<String>,
    /// When the session was established.
    pub started_at: SystemTime,
    /// Traffic counters.
    pub counters: Counters,
}

/// A session id: a number unique within the process, shown as 16 lowercase hex digits
/// (`0000000000000001`). Kept as the number (8 bytes per session, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The service side of a session: which instance, at which URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Eureka instance id.
    pub instance_id: String,
    /// The upstream URL, e.g. `ws://host:10012/discoverableclient/ws/echo`.
    pub service_url: String,
    /// The service leg's local socket address: the client address the service sees for this
    /// session (`serviceSessionId`).
    pub local_addr: Option<SocketAddr>,
}

/// A socket address as Java's `InetSocketAddress.toString()` writes an address without a host
/// name: `/127.0.0.1:5555`, `/[0:0:0:0:0:0:0:1]:5555` (IPv6 in Java's uncompressed
/// `Inet6Address.getHostAddress` form; an IPv4-mapped address as the IPv4 address, as Java's
/// `InetAddress` does).
pub fn java_socket_address(addr: SocketAddr) -> String {
    use std::fmt::Write;
    let ip = match addr.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr.ip(), std::net::IpAddr::V4),
        v4 => v4,
    };
    let mut out = String::with_capacity(48);
    match ip {
        std::net::IpAddr::V4(v4) => {
            let _ = write!(out, "/{v4}:{}", addr.port());
        }
        std::net::IpAddr::V6(v6) => {
            out.push_str("/[");
            for (i, seg) in v6.segments().iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                let _ = write!(out, "{seg:x}");
            }
            let _ = write!(out, "]:{}", addr.port());
        }
    }
    out
}

/// The JSON shape of one session: the reference gateway's keys (`sessionId`, `clientAddress`,
/// `gatewayPath`, `serviceUrl`, `serviceSessionId`) plus wsrelay's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// The client's address as Java's `InetSocketAddress.toString()` writes it
    /// (`/127.0.0.1:5555`), as in Zowe v2.
    pub client_address: String,
    /// The URI the client used: scheme, host, path and query
    /// (`wss://gw:10010/ws/v1/discoverableclient/echo?x=1`), as in Zowe v2.
    pub gateway_path: String,
    /// Upstream URL.
    pub service_url: String,
    /// The service side of the session: the service leg's local address in the same form as
    /// `clientAddress`, which is the client address the service's own logs and session show
    /// (Zowe v2 gives the service-side session's id); it changes on failover.
    pub service_session_id: Option<String>,
    /// Eureka service id.
    pub service_id: String,
    /// Eureka instance id.
    pub instance_id: String,
    /// Route name.
    pub route: String,
    /// Negotiated subprotocol, or null.
    pub subprotocol: Option<String>,
    /// Times the session moved to another instance (0 without failover).
    pub failovers: u32,
    /// RFC 3339 start time (UTC).
    pub started_at: String,
    /// Messages client → service.
    pub messages_in: u64,
    /// Messages service → client.
    pub messages_out: u64,
    /// Bytes client → service.
    pub bytes_in: u64,
    /// Bytes service → client.
    pub bytes_out: u64,
}

impl SessionInfo {
    /// The instance the session is connected to now.
    pub fn upstream(&self) -> Upstream {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a failover to `to`; returns the instance the session left.
    pub fn switch_upstream(&self, to: Upstream) -> Upstream {
        self.failovers.fetch_add(1, Ordering::Relaxed);
        let mut g = self.upstream.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *g, to)
    }

    /// A snapshot for display.
    pub fn view(&self) -> SessionView {
        let c = &self.counters;
        let up = self.upstream();
        SessionView {
            session_id: self.id.to_string(),
            client_address: java_socket_address(self.client),
            gateway_path: self.gateway_path.to_string(),
            service_url: up.service_url,
            service_session_id: up.local_addr.map(java_socket_address),
            service_id: self.service_id.clone(),
            instance_id: up.instance_id,
            route: self.route.to_string(),
            subprotocol: self.subprotocol.clone(),
            failovers: self.failovers.load(Ordering::Relaxed),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// The table of live sessions.
#[derive(Debug, Default)]
pub struct SessionTable {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<SessionInfo>>>,
    /// Reserved slots (sessions and upgrades in progress): total and per client IP.
    slots: Mutex<(usize, HashMap<std::net::IpAddr, usize>)>,
}

/// A reserved session slot (see [`SessionTable::reserve`]); released when dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<SessionTable>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.table.slots.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let std::collections::hash_map::Entry::Occupied(mut e) = g.1.entry(self.ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// `limits.max_sessions` reached.
    Total(usize),
    /// `limits.max_sessions_per_ip` reached for this IP.
    PerIp(usize),
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> SessionTable {
        SessionTable::default()
    }

    /// Reserves a session slot for a client at `ip`, unless `max_total` or `max_per_ip` would
    /// be exceeded. The slot is held from before the upstream connect until the session ends.
    ///
    /// # Errors
    /// [`SlotRefused`] naming the limit that was hit.
    pub fn reserve(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        max_total: Option<usize>,
        max_per_ip: Option<usize>,
    ) -> Result<Slot, SlotRefused> {
        let mut g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(max) = max_total {
            if g.0 >= max {
                return Err(SlotRefused::Total(max));
            }
        }
        let per_ip = g.1.get(&ip).copied().unwrap_or(0);
        if let Some(max) = max_per_ip {
            if per_ip >= max {
                return Err(SlotRefused::PerIp(max));
            }
        }
        g.0 += 1;
        g.1.insert(ip, per_ip + 1);
        Ok(Slot {
            table: Arc::clone(self),
            ip,
        })
    }

    /// A fresh session id (16 hex digits) and its numeric key.
    pub fn next_id(&self) -> (u64, SessionId) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        (n, SessionId(n))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<SessionInfo>>> {
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is still consistent (single insert/remove operations).
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts a session; it is removed when the returned guard drops.
    pub fn insert(self: &Arc<Self>, key: u64, info: SessionInfo) -> SessionGuard {
        let info = Arc::new(info);
        self.lock().insert(key, Arc::clone(&info));
        SessionGuard {
            table: Arc::clone(self),
            key,
            info,
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the global traffic counters up to date with every live session.
    pub fn sync_metrics(&self, m: &crate::metrics::ProxyMetrics) {
        let live: Vec<Arc<SessionInfo>> = self.lock().values().cloned().collect();
        for s in live {
            s.counters.sync(m);
        }
    }

    /// All live sessions, oldest first.
    pub fn views(&self) -> Vec<SessionView> {
        let mut v: Vec<(u64, SessionView)> =
            self.lock().iter().map(|(k, s)| (*k, s.view())).collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, s)| s).collect()
    }
}

/// Keeps a session in the table; removes it on drop.
#[derive(Debug)]
pub struct SessionGuard {
    table: Arc<SessionTable>,
    key: u64,
    info: Arc<SessionInfo>,
}

impl SessionGuard {
    /// The session's info (counters are updated through it).
    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut live = self.table.lock();
        live.remove(&self.key);
        // Give back the table a burst of sessions grew (17 bytes per slot; 280 KB after
        // 10,000 sessions), so memory returns to its level once they close (issue 7). Halving
        // only below a quarter keeps this amortized O(1).
        if live.capacity() > 64 && live.len() * 4 < live.capacity() {
            let target = (live.len() * 2).max(64);
            live.shrink_to(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_java_writes_them() {
        let a = |s: &str| java_socket_address(s.parse().unwrap());
        assert_eq!(a("127.0.0.1:5555"), "/127.0.0.1:5555");
        assert_eq!(a("[::1]:80"), "/[0:0:0:0:0:0:0:1]:80");
        assert_eq!(a("[2001:db8::a:0:1]:443"), "/[2001:db8:0:0:0:a:0:1]:443");
        assert_eq!(a("[::ffff:10.0.0.7]:9"), "/10.0.0.7:9");
    }

    fn info(id: SessionId) -> SessionInfo {
        SessionInfo {
            id,
            client: "127.0.0.1:1".parse().unwrap(),
            gateway_path: "/p".into(),
            upstream: Mutex::new(Upstream {
                instance_id: "i".into(),
                service_url: "ws://h:1/p".into(),
                local_addr: None,
            }),
            failovers: AtomicU32::new(0),
            service_id: "S".into(),
            route: "r".into(),
            subprotocol: None,
            started_at: SystemTime::UNIX_EPOCH,
            counters: Counters::default(),
        }
    }

    #[test]
    fn guard_removes_on_drop_and_views_are_ordered() {
        let t = Arc::new(SessionTable::new());
        let (k1, id1) = t.next_id();
        let (k2, id2) = t.next_id();
        let g1 = t.insert(k1, info(id1));
        let g2 = t.insert(k2, info(id2));
        g1.info().counters.bytes_in.fetch_add(5, Ordering::Relaxed);
        let v = t.views();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].session_id, id1.to_string());
        assert_eq!(v[0].session_id, "0000000000000001");
        assert_eq!(v[0].bytes_in, 5);
        assert_eq!(v[0].started_at, "1970-01-01T00:00:00.000Z");
        drop(g1);
        assert_eq!(t.len(), 1);
        drop(g2);
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_gives_back_what_a_burst_grew_once_the_sessions_close() {
        let t = Arc::new(SessionTable::new());
        let guards: Vec<SessionGuard> = (0..10_000)
            .map(|_| {
                let (k, id) = t.next_id();
                t.insert(k, info(id))
            })
            .collect();
        let grown = t.lock().capacity();
        assert!(grown >= 10_000);
        drop(guards);
        assert!(t.is_empty());
        let left = t.lock().capacity();
        assert!(
            left <= 128,
            "capacity {left} after every session closed (was {grown})"
        );
    }

    #[test]
    fn slots_are_limited_in_total_and_per_ip_and_released_on_drop() {
        let t = Arc::new(SessionTable::new());
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let s1 = t.reserve(a, Some(3), Some(2)).unwrap();
        let _s2 = t.reserve(a, Some(3), Some(2)).unwrap();
        assert_eq!(
            t.reserve(a, Some(3), Some(2)).unwrap_err(),
            SlotRefused::PerIp(2)
        );
        let _s3 = t.reserve(b, Some(3), Some(2)).unwrap();
        assert_eq!(
            t.reserve(b, Some(3), Some(2)).unwrap_err(),
            SlotRefused::Total(3)
        );
        drop(s1);
        assert!(t.reserve(a, Some(3), Some(2)).is_ok());
        assert!(t.reserve(a, None, None).is_ok());
    }

    #[test]
    fn sync_adds_each_increment_once() {
        let m = crate::metrics::Metrics::new();
        let c = Counters::default();
        c.bytes_in.fetch_add(10, Ordering::Relaxed);
        c.sync(&m.proxy);
        c.sync(&m.proxy);
        assert_eq!(m.proxy.bytes_in.get(), 10);
        c.bytes_in.fetch_add(5, Ordering::Relaxed);
        c.messages_out.fetch_add(2, Ordering::Relaxed);
        c.sync(&m.proxy);
        assert_eq!(m.proxy.bytes_in.get(), 15);
        assert_eq!(m.proxy.messages_out.get(), 2);
    }
}

#[cfg(test)]
mod size_tests {
    /// A session's table entry lives as long as the session: its size is per-session memory
    /// (measured 296 bytes with the service leg's address of `serviceSessionId`, issue 16, as
    /// before it: the id is kept as its number; with the `Arc` counts 312 bytes, jemalloc's
    /// 320-byte class).
    #[test]
    fn a_session_entry_stays_small() {
        let n = std::mem::size_of::<super::SessionInfo>();
        assert!(n <= 296, "SessionInfo: {n} bytes");
    }
}
