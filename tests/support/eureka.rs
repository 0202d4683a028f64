//! A fake Netflix Eureka server for integration tests.
//!
//! [`FakeEureka`] is a real HTTP/1.1 server on a loopback port that follows the wire rules of a
//! Spring Cloud Eureka server (eureka-core 2.x): XStream XML by default, legacy
//! `EurekaJacksonCodec` JSON when the `Accept` header contains `json`, `apps__hashcode`
//! reconcile hashes, a delta window that repeats recent changes on every poll, empty-bodied
//! 404s, gzip for `apps/` and `apps/delta`, and the server's lease and status-override rules.
//! Switches ([`Mode`]) make it fail, stall, answer garbage or refuse connections.
//!
//! It is for faults a real server will not produce on demand and for step-by-step client tests;
//! what "correct" means is judged by the real Spring Cloud Netflix server in
//! `tests/real_eureka.rs`. Known differences from it: no response cache (the real
//! `ResponseCacheImpl` serves full and delta answers from a read-only cache refreshed every
//! `response-cache-update-interval-ms`, so they can be stale), no start-up 403 window
//! (`shouldAllowAccess`), and no lease expiry or eviction unless a test removes the instance;
//! the real-server tests cover all three.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// `actionType` of an instance that was registered (also re-registered).
pub const ADDED: &str = "ADDED";
/// `actionType` of an instance whose status override was set or removed.
pub const MODIFIED: &str = "MODIFIED";
/// `actionType` of a cancelled (removed) instance.
pub const DELETED: &str = "DELETED";

const DEFAULT_DC_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";
const AMAZON_DC_CLASS: &str = "com.netflix.appinfo.AmazonInfo";
const EMPTY_MAP_CLASS: &str = "java.util.Collections$EmptyMap";
const STATUSES: [&str; 5] = ["UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"];

/// One registered instance, as the fake stores and serves it (Eureka's `InstanceInfo` plus its
/// lease). Build one with [`TestInstance::new`] and the chained helpers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestInstance {
    /// `app`; upper-cased by the server on registration.
    pub app: String,
    /// `instanceId`; when empty, the server uses `hostName` (Eureka's `InstanceInfo.getId()`).
    pub instance_id: String,
    /// `hostName`.
    pub host_name: String,
    /// `ipAddr`.
    pub ip_addr: String,
    /// `status` (`UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`).
    pub status: String,
    /// `overriddenStatus` (`UNKNOWN` = no override).
    pub overridden_status: String,
    /// `port` number.
    pub port: u16,
    /// `port`'s `enabled` flag.
    pub port_enabled: bool,
    /// `securePort` number.
    pub secure_port: u16,
    /// `securePort`'s `enabled` flag.
    pub secure_port_enabled: bool,
    /// `countryId`.
    pub country_id: i32,
    /// `dataCenterInfo.name` (`MyOwn`, `Amazon` or `Netflix`).
    pub data_center: String,
    /// `leaseInfo.renewalIntervalInSecs`.
    pub renewal_interval_secs: u32,
    /// `leaseInfo.durationInSecs`.
    pub duration_secs: u32,
    /// `leaseInfo.registrationTimestamp` (ms); set by the server on registration.
    pub registration_timestamp: i64,
    /// `leaseInfo.lastRenewalTimestamp` (ms); a heartbeat sets it to now + duration, as
    /// Eureka's `Lease.renew()` does.
    pub last_renewal_timestamp: i64,
    /// `leaseInfo.evictionTimestamp` (ms).
    pub eviction_timestamp: i64,
    /// `leaseInfo.serviceUpTimestamp` (ms).
    pub service_up_timestamp: i64,
    /// `metadata`, in output order (keys are unique).
    pub metadata: Vec<(String, String)>,
    /// `homePageUrl`.
    pub home_page_url: Option<String>,
    /// `statusPageUrl`.
    pub status_page_url: Option<String>,
    /// `healthCheckUrl`.
    pub health_check_url: Option<String>,
    /// `vipAddress` (empty = not sent).
    pub vip_address: String,
    /// `secureVipAddress` (empty = not sent).
    pub secure_vip_address: String,
    /// `lastUpdatedTimestamp` (ms); set by the server on every change.
    pub last_updated_timestamp: i64,
    /// `lastDirtyTimestamp` (ms); 0 = "now" at registration.
    pub last_dirty_timestamp: i64,
    /// `actionType` of the last change; managed by the server.
    pub action_type: String,
}

impl TestInstance {
    /// An `UP` instance of `app` on `host:port` (plain port enabled, secure port 443 disabled),
    /// with Spring Cloud's default id `host:app:port`, IP `127.0.0.1`, VIP = lower-cased app,
    /// actuator URLs and no metadata.
    pub fn new(app: &str, host: &str, port: u16) -> TestInstance {
        let lower = app.to_ascii_lowercase();
        TestInstance {
            app: app.to_ascii_uppercase(),
            instance_id: format!("{host}:{lower}:{port}"),
            host_name: host.to_string(),
            ip_addr: "127.0.0.1".to_string(),
            home_page_url: Some(format!("http://{host}:{port}/")),
            status_page_url: Some(format!("http://{host}:{port}/actuator/info")),
            health_check_url: Some(format!("http://{host}:{port}/actuator/health")),
            vip_address: lower.clone(),
            secure_vip_address: lower,
            port,
            secure_port: 443,
            ..TestInstance::blank()
        }
    }

    /// An instance with every field at the value Eureka's `InstanceInfo` defaults to
    /// (port 7001 enabled, secure port 7002 disabled, `UP`, no names, no data center).
    pub fn blank() -> TestInstance {
        TestInstance {
            app: String::new(),
            instance_id: String::new(),
            host_name: String::new(),
            ip_addr: String::new(),
            status: "UP".to_string(),
            overridden_status: "UNKNOWN".to_string(),
            port: 7001,
            port_enabled: true,
            secure_port: 7002,
            secure_port_enabled: false,
            country_id: 1,
            data_center: "MyOwn".to_string(),
            renewal_interval_secs: 30,
            duration_secs: 90,
            registration_timestamp: 0,
            last_renewal_timestamp: 0,
            eviction_timestamp: 0,
            service_up_timestamp: 0,
            metadata: Vec::new(),
            home_page_url: None,
            status_page_url: None,
            health_check_url: None,
            vip_address: String::new(),
            secure_vip_address: String::new(),
            last_updated_timestamp: 0,
            last_dirty_timestamp: 0,
            action_type: ADDED.to_string(),
        }
    }

    /// Sets `instanceId`.
    pub fn id(mut self, id: &str) -> Self {
        self.instance_id = id.to_string();
        self
    }

    /// Sets `ipAddr`.
    pub fn ip(mut self, ip: &str) -> Self {
        self.ip_addr = ip.to_string();
        self
    }

    /// Sets `status`.
    pub fn status(mut self, status: &str) -> Self {
        self.status = status.to_string();
        self
    }

    /// Sets `overriddenStatus` (and, as the server would, `status` to the same value).
    pub fn overridden(mut self, status: &str) -> Self {
        self.overridden_status = status.to_string();
        self.status = status.to_string();
        self
    }

    /// Enables the secure port at `port`.
    pub fn secure(mut self, port: u16) -> Self {
        self.secure_port = port;
        self.secure_port_enabled = true;
        self
    }

    /// Sets the plain port's `enabled` flag.
    pub fn port_enabled(mut self, enabled: bool) -> Self {
        self.port_enabled = enabled;
        self
    }

    /// Sets `vipAddress` (empty = absent).
    pub fn vip(mut self, vip: &str) -> Self {
        self.vip_address = vip.to_string();
        self
    }

    /// Sets `secureVipAddress` (empty = absent).
    pub fn secure_vip(mut self, vip: &str) -> Self {
        self.secure_vip_address = vip.to_string();
        self
    }

    /// Adds (or replaces) the metadata entry `key`.
    pub fn meta(mut self, key: &str, value: &str) -> Self {
        set_meta(&mut self.metadata, key, value);
        self
    }

    /// Sets `lastDirtyTimestamp` (ms).
    pub fn dirty(mut self, ts: i64) -> Self {
        self.last_dirty_timestamp = ts;
        self
    }

    /// Sets `dataCenterInfo.name`.
    pub fn data_center(mut self, name: &str) -> Self {
        self.data_center = name.to_string();
        self
    }

    /// The metadata value for `key`, if any.
    pub fn meta_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// This instance as a legacy-JSON registration body: `{"instance":{...}}`.
    pub fn to_json(&self) -> String {
        format!("{{\"instance\":{}}}", json_instance(self))
    }

    /// This instance as an XStream XML registration body: `<instance>...</instance>`.
    pub fn to_xml(&self) -> String {
        let mut x = Xml::default();
        xml_instance(&mut x, self);
        x.finish()
    }
}

/// What the server does with each request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// Serve the Eureka API.
    #[default]
    Normal,
    /// Answer every request with this status code and an empty body.
    Fail(u16),
    /// Accept connections and read requests, but never answer.
    Stall,
    /// Answer `200` with the negotiated Content-Type and bytes that are neither XML nor JSON.
    Garbage,
    /// Stop listening (connections are refused) and close open connections.
    Refuse,
    /// Answer every request with this status, Content-Type and body (e.g. a fixture file).
    Canned {
        /// Status code.
        status: u16,
        /// `Content-Type` header value (empty = none).
        content_type: String,
        /// Body bytes.
        body: Vec<u8>,
    },
}

/// The body [`Mode::Garbage`] serves.
pub const GARBAGE: &[u8] = b"\xff\xfe\x00 this is not a Eureka payload \x01\x02 {[<";

/// One request the server received (in any mode but [`Mode::Refuse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/eureka/apps/delta`.
    pub path: String,
    /// `Accept` header, if sent.
    pub accept: Option<String>,
    /// `Accept-Encoding` header, if sent.
    pub accept_encoding: Option<String>,
    /// All headers (lower-case names; values lossily decoded).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running fake Eureka server on `127.0.0.1:<random port>`. Dropping it stops the server.
pub struct FakeEureka {
    shared: Arc<Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    slot: Mutex<ListenerSlot>,
    kill: watch::Sender<u64>,
    addr: SocketAddr,
    rt: tokio::runtime::Handle,
}

#[derive(Default)]
struct ListenerSlot {
    listener: Option<TcpListener>,
    waker: Option<Waker>,
    closed: bool,
}

struct AppEntry {
    name: String,
    instances: Vec<TestInstance>,
}

struct Change {
    at: Instant,
    inst: TestInstance,
}

struct State {
    apps: Vec<AppEntry>,
    /// Eureka's `overriddenInstanceStatusMap`: instance id → override.
    overrides: HashMap<String, String>,
    changes: VecDeque<Change>,
    delta_version: u64,
    delta_window: Duration,
    delta_disabled: bool,
    delta_hash_override: Option<String>,
    mode: Mode,
    requests: Vec<RecordedRequest>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn set_meta(meta: &mut Vec<(String, String)>, key: &str, value: &str) {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => meta.push((key.to_string(), value.to_string())),
    }
}

impl FakeEureka {
    /// Starts a server on `127.0.0.1:0` with an empty registry. Must be called inside a Tokio
    /// runtime.
    pub async fn start() -> FakeEureka {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake eureka: bind 127.0.0.1:0");
        std_listener
            .set_nonblocking(true)
            .expect("fake eureka: set_nonblocking");
        let addr = std_listener.local_addr().expect("fake eureka: local_addr");
        let listener = TcpListener::from_std(std_listener).expect("fake eureka: from_std");
        let (kill, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                apps: Vec::new(),
                overrides: HashMap::new(),
                changes: VecDeque::new(),
                delta_version: 0,
                delta_window: Duration::from_secs(180),
                delta_disabled: false,
                delta_hash_override: None,
                mode: Mode::Normal,
                requests: Vec::new(),
            }),
            slot: Mutex::new(ListenerSlot {
                listener: Some(listener),
                ..ListenerSlot::default()
            }),
            kill,
            addr,
            rt: tokio::runtime::Handle::current(),
        });
        let task = tokio::spawn(accept_loop(shared.clone()));
        FakeEureka {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT/eureka/`, the form of a Eureka `defaultZone` URL.
    pub fn service_url(&self) -> String {
        format!("http://{}/eureka/", self.shared.addr)
    }

    /// `http://127.0.0.1:PORT/eureka/` + `path` (no leading slash), for direct requests.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.service_url(), path.trim_start_matches('/'))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Registers `inst` as given (app upper-cased, an empty id becomes `hostName`, lease
    /// timestamps filled in) and records an `ADDED` change. A non-`UNKNOWN`
    /// `overridden_status` is remembered as an override. Replaces an instance with the same id.
    pub fn add(&self, inst: TestInstance) {
        self.state().add_direct(inst);
    }

    /// Cancels an instance (like `DELETE apps/{APP}/{id}`): removes it and its override and
    /// records a `DELETED` change. `false` if unknown.
    pub fn remove(&self, app: &str, id: &str) -> bool {
        self.state().cancel(app, id)
    }

    /// Test shortcut: sets the instance's `status` directly and records a `MODIFIED` change
    /// (an active override stays in force for the hash). `false` if unknown.
    pub fn set_status(&self, app: &str, id: &str, status: &str) -> bool {
        let status = status.to_string();
        self.update(app, id, move |i| i.status = status)
    }

    /// Like `PUT apps/{APP}/{id}/status?value=STATUS`: sets `status` and `overriddenStatus`,
    /// remembers the override and records `MODIFIED`. `false` if unknown.
    pub fn override_status(&self, app: &str, id: &str, status: &str) -> bool {
        self.state().override_status(app, id, status, None) == StatusCode::OK
    }

    /// Test shortcut: applies `f` to the stored instance (`f` must not change `app` or
    /// `instance_id`) and records a `MODIFIED` change
    /// (the real server records `MODIFIED` only for status overrides; a client's own change
    /// arrives as a re-registration, i.e. `ADDED`). `false` if unknown.
    pub fn update(&self, app: &str, id: &str, f: impl FnOnce(&mut TestInstance)) -> bool {
        let mut st = self.state();
        let Some((a, i)) = st.find(app, id) else {
            return false;
        };
        let inst = &mut st.apps[a].instances[i];
        f(inst);
        inst.last_updated_timestamp = now_ms();
        inst.action_type = MODIFIED.to_string();
        let snapshot = inst.clone();
        st.record(&snapshot);
        true
    }

    /// The stored instance (app case-insensitive, id exact), if any.
    pub fn instance(&self, app: &str, id: &str) -> Option<TestInstance> {
        let st = self.state();
        st.find(app, id)
            .map(|(a, i)| st.apps[a].instances[i].clone())
    }

    /// Number of registered instances.
    pub fn instance_count(&self) -> usize {
        self.state().apps.iter().map(|a| a.instances.len()).sum()
    }

    /// The full registry's `apps__hashcode`, e.g. `DOWN_1_UP_2_`.
    pub fn apps_hashcode(&self) -> String {
        self.state().hashcode()
    }

    /// The current `versions__delta` of `apps/delta` (bumped by every recorded change).
    pub fn delta_version(&self) -> u64 {
        self.state().delta_version
    }

    /// Sets how long a change stays in `apps/delta` (default 3 minutes, Eureka's
    /// `retentionTimeInMSInDeltaQueue`).
    pub fn set_delta_window(&self, window: Duration) {
        self.state().delta_window = window;
    }

    /// Forgets all recorded changes (the next `apps/delta` is empty).
    pub fn clear_delta(&self) {
        self.state().changes.clear();
    }

    /// `true`: `apps/delta` answers 403, as a server with `disableDelta=true`.
    pub fn set_delta_disabled(&self, disabled: bool) {
        self.state().delta_disabled = disabled;
    }

    /// `Some(hash)`: `apps/delta` carries this `apps__hashcode` instead of the real one.
    pub fn set_delta_hash_override(&self, hash: Option<&str>) {
        self.state().delta_hash_override = hash.map(str::to_string);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state().mode.clone()
    }

    /// Switches the mode. Entering [`Mode::Refuse`] closes the listening socket and open
    /// connections before returning; leaving it re-binds the same port before returning.
    pub fn set_mode(&self, mode: Mode) {
        let refuse = mode == Mode::Refuse;
        let was_refuse = {
            let mut st = self.state();
            std::mem::replace(&mut st.mode, mode) == Mode::Refuse
        };
        if refuse && !was_refuse {
            let mut slot = lock(&self.shared.slot);
            slot.listener = None;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
            drop(slot);
            self.shared.kill.send_modify(|g| *g += 1);
        } else if !refuse && was_refuse {
            let listener = self.rebind();
            let mut slot = lock(&self.shared.slot);
            if !slot.closed {
                slot.listener = Some(listener);
            }
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    fn rebind(&self) -> TcpListener {
        let mut last_err = None;
        for _ in 0..100 {
            match std::net::TcpListener::bind(self.shared.addr) {
                Ok(l) => {
                    let _guard = self.shared.rt.enter();
                    let converted = l
                        .set_nonblocking(true)
                        .and_then(|_| TcpListener::from_std(l));
                    match converted {
                        Ok(l) => return l,
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(e) => last_err = Some(e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "fake eureka: cannot re-bind {}: {:?}",
            self.shared.addr, last_err
        );
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Waits (polling every 5 ms) until `pred` holds for the request log; `false` on timeout.
    pub async fn wait_for_requests(
        &self,
        timeout: Duration,
        pred: impl Fn(&[RecordedRequest]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.state().requests) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the server: closes the listener and all connections. Idempotent.
    pub fn shutdown(&self) {
        {
            let mut slot = lock(&self.shared.slot);
            slot.closed = true;
            slot.listener = None;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        self.shared.kill.send_modify(|g| *g += 1);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for FakeEureka {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// Registry state and Eureka's rules
// ---------------------------------------------------------------------------------------------

/// Eureka's status-override rule chain (`FirstMatchWinsCompositeRule` of `DownOrStartingRule`,
/// `OverrideExistsRule`, `LeaseExistsRule`, `AlwaysMatchInstanceStatusRule`).
fn resolve_status(status: &str, overridden: Option<&String>, existing: Option<&str>) -> String {
    if status != "UP" && status != "OUT_OF_SERVICE" {
        return status.to_string();
    }
    if let Some(o) = overridden {
        return o.clone();
    }
    if let Some(e) = existing {
        if e == "UP" || e == "OUT_OF_SERVICE" {
            return e.to_string();
        }
    }
    status.to_string()
}

impl State {
    fn find(&self, app: &str, id: &str) -> Option<(usize, usize)> {
        let a = self
            .apps
            .iter()
            .position(|e| e.name.eq_ignore_ascii_case(app))?;
        let i = self.apps[a]
            .instances
            .iter()
            .position(|x| x.instance_id == id)?;
        Some((a, i))
    }

    fn app(&self, app: &str) -> Option<&AppEntry> {
        self.apps
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(app) && !e.instances.is_empty())
    }

    fn record(&mut self, inst: &TestInstance) {
        self.delta_version += 1;
        self.changes.push_back(Change {
            at: Instant::now(),
            inst: inst.clone(),
        });
    }

    fn put(&mut self, inst: TestInstance) {
        if let Some((a, i)) = self.find(&inst.app, &inst.instance_id) {
            self.apps[a].instances[i] = inst;
            return;
        }
        match self.apps.iter_mut().find(|e| e.name == inst.app) {
            Some(entry) => entry.instances.push(inst),
            None => self.apps.push(AppEntry {
                name: inst.app.clone(),
                instances: vec![inst],
            }),
        }
    }

    fn normalise(inst: &mut TestInstance) {
        inst.app = inst.app.to_ascii_uppercase();
        if inst.instance_id.is_empty() {
            inst.instance_id = inst.host_name.clone();
        }
        if inst.overridden_status.is_empty() {
            inst.overridden_status = "UNKNOWN".to_string();
        }
    }

    fn add_direct(&mut self, mut inst: TestInstance) {
        Self::normalise(&mut inst);
        let now = now_ms();
        if inst.registration_timestamp == 0 {
            inst.registration_timestamp = now;
        }
        if inst.last_renewal_timestamp == 0 {
            inst.last_renewal_timestamp = inst.registration_timestamp;
        }
        if inst.service_up_timestamp == 0 && inst.status == "UP" {
            inst.service_up_timestamp = now;
        }
        if inst.last_dirty_timestamp == 0 {
            inst.last_dirty_timestamp = now;
        }
        inst.last_updated_timestamp = now;
        inst.action_type = ADDED.to_string();
        if inst.overridden_status != "UNKNOWN" {
            self.overrides
                .insert(inst.instance_id.clone(), inst.overridden_status.clone());
        }
        self.record(&inst);
        self.put(inst);
    }

    /// `AbstractInstanceRegistry.register` for a non-replicated registration.
    fn register(&mut self, mut inst: TestInstance) {
        Self::normalise(&mut inst);
        let now = now_ms();
        if inst.last_dirty_timestamp == 0 {
            inst.last_dirty_timestamp = now;
        }
        let existing = self
            .find(&inst.app, &inst.instance_id)
            .map(|(a, i)| self.apps[a].instances[i].clone());
        if let Some(ex) = &existing {
            // The registry keeps the instance with the newer lastDirtyTimestamp.
            if ex.last_dirty_timestamp > inst.last_dirty_timestamp {
                inst = ex.clone();
            }
        }
        match self.overrides.get(&inst.instance_id) {
            Some(o) => inst.overridden_status = o.clone(),
            None if inst.overridden_status != "UNKNOWN" => {
                self.overrides
                    .insert(inst.instance_id.clone(), inst.overridden_status.clone());
            }
            None => {}
        }
        inst.status = resolve_status(
            &inst.status,
            self.overrides.get(&inst.instance_id),
            existing.as_ref().map(|e| e.status.as_str()),
        );
        if inst.duration_secs == 0 {
            inst.duration_secs = 90;
        }
        inst.registration_timestamp = now;
        inst.last_renewal_timestamp = now;
        inst.eviction_timestamp = 0;
        inst.service_up_timestamp = match &existing {
            Some(ex) if ex.service_up_timestamp != 0 => ex.service_up_timestamp,
            _ if inst.status == "UP" => now,
            _ => 0,
        };
        inst.last_updated_timestamp = now;
        inst.action_type = ADDED.to_string();
        self.record(&inst);
        self.put(inst);
    }

    /// `InstanceResource.renewLease` + `validateDirtyTimestamp` (non-replicated).
    fn renew(&mut self, app: &str, id: &str, last_dirty: Option<&str>) -> StatusCode {
        let Some((a, i)) = self.find(app, id) else {
            return StatusCode::NOT_FOUND;
        };
        let ov = self.overrides.get(id).cloned();
        let inst = &mut self.apps[a].instances[i];
        let status = resolve_status(&inst.status, ov.as_ref(), Some(&inst.status));
        if status == "UNKNOWN" {
            // "Instance status UNKNOWN possibly due to deleted override": re-register needed.
            return StatusCode::NOT_FOUND;
        }
        inst.status = status;
        inst.last_renewal_timestamp = now_ms() + i64::from(inst.duration_secs) * 1000;
        match last_dirty {
            None => StatusCode::OK,
            Some(raw) => match raw.trim().parse::<i64>() {
                // Long.valueOf throws: the real server answers 500.
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                Ok(ts) if ts > inst.last_dirty_timestamp => StatusCode::NOT_FOUND,
                Ok(_) => StatusCode::OK,
            },
        }
    }

    /// `InstanceResource.statusUpdate` → `statusUpdate`.
    fn override_status(
        &mut self,
        app: &str,
        id: &str,
        value: &str,
        last_dirty: Option<&str>,
    ) -> StatusCode {
        let Some((a, i)) = self.find(app, id) else {
            return StatusCode::NOT_FOUND;
        };
        if !STATUSES.contains(&value) {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let dirty = match last_dirty.map(|s| s.trim().parse::<i64>()) {
            None => None,
            Some(Ok(ts)) => Some(ts),
            Some(Err(_)) => return StatusCode::INTERNAL_SERVER_ERROR,
        };
        // `AbstractInstanceRegistry.statusUpdate` changes nothing (no override either) when the
        // instance already has that status, and still answers 200.
        if self.apps[a].instances[i].status == value {
            return StatusCode::OK;
        }
        self.overrides.insert(id.to_string(), value.to_string());
        let inst = &mut self.apps[a].instances[i];
        inst.overridden_status = value.to_string();
        inst.status = value.to_string();
        if let Some(ts) = dirty {
            if ts > inst.last_dirty_timestamp {
                inst.last_dirty_timestamp = ts;
            }
        }
        inst.action_type = MODIFIED.to_string();
        inst.last_updated_timestamp = now_ms();
        let snapshot = inst.clone();
        self.record(&snapshot);
        StatusCode::OK
    }

    /// `InstanceResource.deleteStatusUpdate` → `deleteStatusOverride`.
    fn delete_override(
        &mut self,
        app: &str,
        id: &str,
        value: Option<&str>,
        last_dirty: Option<&str>,
    ) -> StatusCode {
        let Some((a, i)) = self.find(app, id) else {
            return StatusCode::NOT_FOUND;
        };
        let new_status = value.unwrap_or("UNKNOWN");
        if !STATUSES.contains(&new_status) {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let dirty = match last_dirty.map(|s| s.trim().parse::<i64>()) {
            None => None,
            Some(Ok(ts)) => Some(ts),
            Some(Err(_)) => return StatusCode::INTERNAL_SERVER_ERROR,
        };
        if self.overrides.remove(id).is_some() {
            let inst = &mut self.apps[a].instances[i];
            inst.overridden_status = "UNKNOWN".to_string();
            inst.status = new_status.to_string();
            if let Some(ts) = dirty {
                if ts > inst.last_dirty_timestamp {
                    inst.last_dirty_timestamp = ts;
                }
            }
            inst.action_type = MODIFIED.to_string();
            inst.last_updated_timestamp = now_ms();
            let snapshot = inst.clone();
            self.record(&snapshot);
        }
        StatusCode::OK
    }

    /// `AbstractInstanceRegistry.internalCancel`.
    fn cancel(&mut self, app: &str, id: &str) -> bool {
        let Some((a, i)) = self.find(app, id) else {
            return false;
        };
        let mut inst = self.apps[a].instances.remove(i);
        if self.apps[a].instances.is_empty() {
            self.apps.remove(a);
        }
        self.overrides.remove(id);
        inst.action_type = DELETED.to_string();
        inst.last_updated_timestamp = now_ms();
        self.record(&inst);
        true
    }

    /// `InstanceResource.updateMetadata`: changes the metadata and registers the instance again
    /// (`registry.register(instanceInfo, false)`), so the delta says ADDED and
    /// `lastUpdatedTimestamp` moves; `lastDirtyTimestamp` is the client's and stays.
    fn update_metadata(&mut self, app: &str, id: &str, pairs: &[(String, String)]) -> StatusCode {
        let Some((a, i)) = self.find(app, id) else {
            return StatusCode::NOT_FOUND;
        };
        let inst = &mut self.apps[a].instances[i];
        for (k, v) in pairs {
            set_meta(&mut inst.metadata, k, v);
        }
        inst.action_type = ADDED.to_string();
        inst.last_updated_timestamp = now_ms();
        let snapshot = inst.clone();
        self.record(&snapshot);
        StatusCode::OK
    }

    fn hashcode(&self) -> String {
        hashcode_of(self.apps.iter().flat_map(|a| a.instances.iter()))
    }

    fn prune(&mut self) {
        let window = self.delta_window;
        while let Some(front) = self.changes.front() {
            if front.at.elapsed() > window {
                self.changes.pop_front();
            } else {
                break;
            }
        }
    }

    /// `getApplicationDeltas`: one entry per instance, the latest change wins and takes the
    /// position of its latest occurrence, rendered as the instance is now.
    fn delta_apps(&self) -> Vec<AppEntry> {
        let mut apps: Vec<AppEntry> = Vec::new();
        for change in &self.changes {
            let inst = &change.inst;
            let pos = match apps.iter().position(|a| a.name == inst.app) {
                Some(p) => p,
                None => {
                    apps.push(AppEntry {
                        name: inst.app.clone(),
                        instances: Vec::new(),
                    });
                    apps.len() - 1
                }
            };
            // The real queue holds leases and renders each one's current holder
            // (`decorateInstanceInfo(lease)`): a status changed since is shown as it is now. A
            // DELETED entry's holder left the registry, so it is shown as it was.
            let current = (inst.action_type != DELETED)
                .then(|| self.find(&inst.app, &inst.instance_id))
                .flatten()
                .map(|(a, i)| &self.apps[a].instances[i]);
            let list = &mut apps[pos].instances;
            list.retain(|x| x.instance_id != inst.instance_id);
            list.push(current.unwrap_or(inst).clone());
        }
        apps
    }
}

/// Eureka's `Applications.getReconcileHashCode()`: `STATUS_count_` per status, statuses in
/// name order, counting `status` alone (`Applications.populateInstanceCountMap`), never
/// `overriddenStatus`.
fn hashcode_of<'a>(instances: impl Iterator<Item = &'a TestInstance>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for inst in instances {
        *counts.entry(inst.status.clone()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}_{n}_"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Serialisation: legacy JSON (EurekaJacksonCodec) and XStream XML
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml",
            Format::Json => "application/json",
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

struct JsonObj(String);

impl JsonObj {
    fn new() -> JsonObj {
        JsonObj(String::from("{"))
    }
    fn raw(&mut self, key: &str, value: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_str(key));
        self.0.push(':');
        self.0.push_str(value);
    }
    fn str(&mut self, key: &str, value: &str) {
        self.raw(key, &json_str(value));
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn dc_class(name: &str) -> &'static str {
    if name == "Amazon" {
        AMAZON_DC_CLASS
    } else {
        DEFAULT_DC_CLASS
    }
}

fn json_instance(i: &TestInstance) -> String {
    let mut o = JsonObj::new();
    if !i.instance_id.is_empty() {
        o.str("instanceId", &i.instance_id);
    }
    o.str("hostName", &i.host_name);
    o.str("app", &i.app);
    o.str("ipAddr", &i.ip_addr);
    o.str("status", &i.status);
    o.str("overriddenStatus", &i.overridden_status);
    let port = |p: u16, e: bool| format!("{{\"$\":{p},\"@enabled\":\"{e}\"}}");
    o.raw("port", &port(i.port, i.port_enabled));
    o.raw("securePort", &port(i.secure_port, i.secure_port_enabled));
    o.raw("countryId", &i.country_id.to_string());
    let mut dc = JsonObj::new();
    dc.str("@class", dc_class(&i.data_center));
    dc.str("name", &i.data_center);
    if i.data_center == "Amazon" {
        dc.raw("metadata", "{}");
    }
    o.raw("dataCenterInfo", &dc.finish());
    let mut lease = JsonObj::new();
    lease.raw(
        "renewalIntervalInSecs",
        &i.renewal_interval_secs.to_string(),
    );
    lease.raw("durationInSecs", &i.duration_secs.to_string());
    lease.raw(
        "registrationTimestamp",
        &i.registration_timestamp.to_string(),
    );
    lease.raw(
        "lastRenewalTimestamp",
        &i.last_renewal_timestamp.to_string(),
    );
    lease.raw("evictionTimestamp", &i.eviction_timestamp.to_string());
    lease.raw("serviceUpTimestamp", &i.service_up_timestamp.to_string());
    o.raw("leaseInfo", &lease.finish());
    let mut meta = JsonObj::new();
    if i.metadata.is_empty() {
        meta.str("@class", EMPTY_MAP_CLASS);
    }
    for (k, v) in &i.metadata {
        meta.str(k, v);
    }
    o.raw("metadata", &meta.finish());
    for (key, url) in [
        ("homePageUrl", &i.home_page_url),
        ("statusPageUrl", &i.status_page_url),
        ("healthCheckUrl", &i.health_check_url),
    ] {
        if let Some(url) = url {
            o.str(key, url);
        }
    }
    if !i.vip_address.is_empty() {
        o.str("vipAddress", &i.vip_address);
    }
    if !i.secure_vip_address.is_empty() {
        o.str("secureVipAddress", &i.secure_vip_address);
    }
    o.str("isCoordinatingDiscoveryServer", "false");
    o.str(
        "lastUpdatedTimestamp",
        &i.last_updated_timestamp.to_string(),
    );
    o.str("lastDirtyTimestamp", &i.last_dirty_timestamp.to_string());
    o.str("actionType", &i.action_type);
    o.finish()
}

fn json_application(app: &AppEntry) -> String {
    let instances: Vec<String> = app.instances.iter().map(json_instance).collect();
    format!(
        "{{\"name\":{},\"instance\":[{}]}}",
        json_str(&app.name),
        instances.join(",")
    )
}

fn json_applications(version: &str, hash: &str, apps: &[&AppEntry]) -> String {
    let list: Vec<String> = apps.iter().map(|a| json_application(a)).collect();
    format!(
        "{{\"applications\":{{\"versions__delta\":{},\"apps__hashcode\":{},\"application\":[{}]}}}}",
        json_str(version),
        json_str(hash),
        list.join(",")
    )
}

/// XStream's `XmlFriendlyNameCoder`: `$` → `_-`, `_` → `__`, other characters that cannot be
/// in an XML name → `_.XXXX` (4 lower-case hex digits).
pub fn xstream_encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (idx, c) in name.chars().enumerate() {
        let start_ok = c.is_ascii_alphabetic() || c == ':' || (!c.is_ascii() && c.is_alphabetic());
        let ok =
            start_ok || (idx > 0 && (c.is_ascii_digit() || c == '.' || c == '-' || c == '\u{b7}'));
        match c {
            '$' => out.push_str("_-"),
            '_' => out.push_str("__"),
            _ if ok => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("_.{:04x}", unit));
                }
            }
        }
    }
    out
}

/// The inverse of [`xstream_encode_name`].
pub fn xstream_decode_name(name: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(name.len());
    let b = name.as_bytes();
    let mut idx = 0;
    while idx < b.len() {
        if b[idx] == b'_' && idx + 1 < b.len() {
            match b[idx + 1] {
                b'_' => {
                    units.push(u16::from(b'_'));
                    idx += 2;
                    continue;
                }
                b'-' => {
                    units.push(u16::from(b'$'));
                    idx += 2;
                    continue;
                }
                b'.' if idx + 6 <= b.len() => {
                    if let Some(v) = name
                        .get(idx + 2..idx + 6)
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                    {
                        units.push(v);
                        idx += 6;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = name[idx..].chars().next().unwrap_or('\u{fffd}');
        units.extend(ch.encode_utf16(&mut [0u16; 2]).iter().copied());
        idx += ch.len_utf8().max(1);
    }
    String::from_utf16_lossy(&units)
}

/// Escapes text and attribute values as XStream's `PrettyPrintWriter` does.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xd;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#x{:x};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// An indenting XML writer (2 spaces, no prolog), like XStream's `PrettyPrintWriter`.
#[derive(Default)]
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn indent(&mut self) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }
    fn tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push_str(&format!(" {k}=\"{}\"", xml_escape(v)));
        }
    }
    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.tag(name, attrs);
        self.out.push('>');
        self.depth += 1;
    }
    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str(&format!("</{name}>"));
    }
    fn leaf_attrs(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.indent();
        self.tag(name, attrs);
        self.out
            .push_str(&format!(">{}</{name}>", xml_escape(text)));
    }
    fn leaf(&mut self, name: &str, text: &str) {
        self.leaf_attrs(name, &[], text);
    }
    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.tag(name, attrs);
        self.out.push_str("/>");
    }
    fn finish(self) -> String {
        self.out
    }
}

fn xml_instance(x: &mut Xml, i: &TestInstance) {
    x.open("instance", &[]);
    if !i.instance_id.is_empty() {
        x.leaf("instanceId", &i.instance_id);
    }
    x.leaf("hostName", &i.host_name);
    x.leaf("app", &i.app);
    x.leaf("ipAddr", &i.ip_addr);
    x.leaf("status", &i.status);
    x.leaf("overriddenstatus", &i.overridden_status);
    let enabled = |e: bool| if e { "true" } else { "false" };
    x.leaf_attrs(
        "port",
        &[("enabled", enabled(i.port_enabled))],
        &i.port.to_string(),
    );
    x.leaf_attrs(
        "securePort",
        &[("enabled", enabled(i.secure_port_enabled))],
        &i.secure_port.to_string(),
    );
    x.leaf("countryId", &i.country_id.to_string());
    x.open("dataCenterInfo", &[("class", dc_class(&i.data_center))]);
    x.leaf("name", &i.data_center);
    if i.data_center == "Amazon" {
        x.empty("metadata", &[]);
    }
    x.close("dataCenterInfo");
    x.open("leaseInfo", &[]);
    x.leaf(
        "renewalIntervalInSecs",
        &i.renewal_interval_secs.to_string(),
    );
    x.leaf("durationInSecs", &i.duration_secs.to_string());
    x.leaf(
        "registrationTimestamp",
        &i.registration_timestamp.to_string(),
    );
    x.leaf(
        "lastRenewalTimestamp",
        &i.last_renewal_timestamp.to_string(),
    );
    x.leaf("evictionTimestamp", &i.eviction_timestamp.to_string());
    x.leaf("serviceUpTimestamp", &i.service_up_timestamp.to_string());
    x.close("leaseInfo");
    if i.metadata.is_empty() {
        x.empty("metadata", &[("class", EMPTY_MAP_CLASS)]);
    } else {
        x.open("metadata", &[]);
        for (k, v) in &i.metadata {
            x.leaf(&xstream_encode_name(k), v);
        }
        x.close("metadata");
    }
    for (key, url) in [
        ("homePageUrl", &i.home_page_url),
        ("statusPageUrl", &i.status_page_url),
        ("healthCheckUrl", &i.health_check_url),
    ] {
        if let Some(url) = url {
            x.leaf(key, url);
        }
    }
    if !i.vip_address.is_empty() {
        x.leaf("vipAddress", &i.vip_address);
    }
    if !i.secure_vip_address.is_empty() {
        x.leaf("secureVipAddress", &i.secure_vip_address);
    }
    x.leaf("isCoordinatingDiscoveryServer", "false");
    x.leaf(
        "lastUpdatedTimestamp",
        &i.last_updated_timestamp.to_string(),
    );
    x.leaf("lastDirtyTimestamp", &i.last_dirty_timestamp.to_string());
    x.leaf("actionType", &i.action_type);
    x.close("instance");
}

fn xml_application(x: &mut Xml, app: &AppEntry) {
    x.open("application", &[]);
    x.leaf("name", &app.name);
    for i in &app.instances {
        xml_instance(x, i);
    }
    x.close("application");
}

fn xml_applications(version: &str, hash: &str, apps: &[&AppEntry]) -> String {
    let mut x = Xml::default();
    x.open("applications", &[]);
    x.leaf("versions__delta", version);
    x.leaf("apps__hashcode", hash);
    for app in apps {
        xml_application(&mut x, app);
    }
    x.close("applications");
    x.finish()
}

fn render_applications(fmt: Format, version: &str, hash: &str, apps: &[&AppEntry]) -> String {
    match fmt {
        Format::Xml => xml_applications(version, hash, apps),
        Format::Json => json_applications(version, hash, apps),
    }
}

// ---------------------------------------------------------------------------------------------
// Registration body parsing (legacy JSON and XStream XML)
// ---------------------------------------------------------------------------------------------

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    let t = text.trim();
    t.parse::<u16>().map_err(|_| format!("bad port {t:?}"))
}

fn parse_i64(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("bad number {text:?}"))
}

/// `(port, enabled)` from `{"$":8080,"@enabled":"true"}` (or a bare number).
fn json_port(v: &serde_json::Value, default_enabled: bool) -> Result<(u16, bool), String> {
    match v {
        serde_json::Value::Object(o) => {
            let port = match o.get("$").and_then(json_text) {
                Some(t) => parse_port(&t)?,
                None => 0,
            };
            let enabled = match o.get("@enabled").and_then(json_text) {
                Some(t) => t.trim().eq_ignore_ascii_case("true"),
                None => default_enabled,
            };
            Ok((port, enabled))
        }
        other => {
            let t = json_text(other).ok_or("bad port")?;
            Ok((parse_port(&t)?, default_enabled))
        }
    }
}

fn parse_instance_json(body: &[u8]) -> Result<TestInstance, String> {
    let root: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let obj = root
        .get("instance")
        .and_then(|v| v.as_object())
        .ok_or("no \"instance\" object")?;
    let mut inst = TestInstance::blank();
    inst.data_center.clear();
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        let text = || json_text(v).unwrap_or_default();
        match key.as_str() {
            "instanceId" => inst.instance_id = text(),
            "hostName" => inst.host_name = text(),
            "app" => inst.app = text(),
            "ipAddr" => inst.ip_addr = text(),
            "status" => inst.status = status_to_enum(&text()),
            "overriddenStatus" | "overriddenstatus" => {
                inst.overridden_status = status_to_enum(&text())
            }
            "port" => (inst.port, inst.port_enabled) = json_port(v, true)?,
            "securePort" => (inst.secure_port, inst.secure_port_enabled) = json_port(v, false)?,
            "countryId" => inst.country_id = parse_i64(&text())? as i32,
            "dataCenterInfo" => {
                inst.data_center = v.get("name").and_then(json_text).unwrap_or_default()
            }
            "leaseInfo" => {
                if let Some(t) = v.get("renewalIntervalInSecs").and_then(json_text) {
                    inst.renewal_interval_secs = parse_i64(&t)? as u32;
                }
                if let Some(t) = v.get("durationInSecs").and_then(json_text) {
                    inst.duration_secs = parse_i64(&t)? as u32;
                }
            }
            "metadata" => {
                let m = v.as_object().ok_or("metadata is not an object")?;
                for (k, mv) in m {
                    if k != "@class" {
                        inst.metadata
                            .push((k.clone(), json_text(mv).unwrap_or_default()));
                    }
                }
            }
            "homePageUrl" => inst.home_page_url = Some(text()),
            "statusPageUrl" => inst.status_page_url = Some(text()),
            "healthCheckUrl" => inst.health_check_url = Some(text()),
            "vipAddress" => inst.vip_address = text(),
            "secureVipAddress" => inst.secure_vip_address = text(),
            "lastDirtyTimestamp" => inst.last_dirty_timestamp = parse_i64(&text())?,
            _ => {}
        }
    }
    Ok(inst)
}

/// Eureka's `InstanceStatus.toEnum`: unknown spellings become `UNKNOWN`.
fn status_to_enum(s: &str) -> String {
    let up = s.trim().to_ascii_uppercase();
    if STATUSES.contains(&up.as_str()) {
        up
    } else {
        "UNKNOWN".to_string()
    }
}

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn xml_node(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let mut node = Node {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        ..Node::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr.unescape_value().map_err(|e| e.to_string())?;
        node.attrs.push((
            String::from_utf8_lossy(attr.key.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(node)
}

/// Parses an XML document into a small element tree (text of mixed content is concatenated).
fn parse_xml_tree(body: &[u8]) -> Result<Node, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) => {
                if stack.len() > 64 {
                    return Err("XML nested too deeply".into());
                }
                stack.push(xml_node(&e)?);
            }
            Event::Empty(e) => {
                let node = xml_node(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "empty XML document".to_string())
}

fn parse_instance_xml(body: &[u8]) -> Result<TestInstance, String> {
    let root = parse_xml_tree(body)?;
    if root.name != "instance" {
        return Err(format!("root element is <{}>, not <instance>", root.name));
    }
    let mut inst = TestInstance::blank();
    inst.data_center.clear();
    for c in &root.children {
        let text = c.text.trim().to_string();
        match c.name.as_str() {
            "instanceId" => inst.instance_id = text,
            "hostName" => inst.host_name = text,
            "app" => inst.app = text,
            "ipAddr" => inst.ip_addr = text,
            "status" => inst.status = status_to_enum(&text),
            "overriddenstatus" | "overriddenStatus" => {
                inst.overridden_status = status_to_enum(&text)
            }
            "port" => {
                inst.port = parse_port(&text)?;
                inst.port_enabled = c.attr("enabled") != Some("false");
            }
            "securePort" => {
                inst.secure_port = parse_port(&text)?;
                inst.secure_port_enabled = c.attr("enabled") == Some("true");
            }
            "countryId" => inst.country_id = parse_i64(&text)? as i32,
            "dataCenterInfo" => {
                inst.data_center = c
                    .child("name")
                    .map(|n| n.text.trim().to_string())
                    .unwrap_or_default()
            }
            "leaseInfo" => {
                if let Some(n) = c.child("renewalIntervalInSecs") {
                    inst.renewal_interval_secs = parse_i64(&n.text)? as u32;
                }
                if let Some(n) = c.child("durationInSecs") {
                    inst.duration_secs = parse_i64(&n.text)? as u32;
                }
            }
            "metadata" => {
                for m in &c.children {
                    inst.metadata
                        .push((xstream_decode_name(&m.name), m.text.clone()));
                }
            }
            "homePageUrl" => inst.home_page_url = Some(text),
            "statusPageUrl" => inst.status_page_url = Some(text),
            "healthCheckUrl" => inst.health_check_url = Some(text),
            "vipAddress" => inst.vip_address = text,
            "secureVipAddress" => inst.secure_vip_address = text,
            "lastDirtyTimestamp" => inst.last_dirty_timestamp = parse_i64(&text)?,
            _ => {}
        }
    }
    Ok(inst)
}

/// `ApplicationResource.addInstance` validation. `Err` is the 400 message.
fn validate_registration(path_app: &str, inst: &TestInstance) -> Result<(), String> {
    let id = if inst.instance_id.trim().is_empty() {
        &inst.host_name
    } else {
        &inst.instance_id
    };
    if id.trim().is_empty() {
        return Err("Missing instanceId".into());
    }
    if inst.host_name.trim().is_empty() {
        return Err("Missing hostname".into());
    }
    if inst.ip_addr.trim().is_empty() {
        return Err("Missing ip address".into());
    }
    if inst.app.trim().is_empty() {
        return Err("Missing appName".into());
    }
    let app = inst.app.to_ascii_uppercase();
    if app != path_app {
        return Err(format!(
            "Mismatched appName, expecting {path_app} but was {app}"
        ));
    }
    if inst.data_center.trim().is_empty() {
        return Err("Missing dataCenterInfo Name".into());
    }
    if !["MyOwn", "Amazon", "Netflix"].contains(&inst.data_center.as_str()) {
        return Err(format!("Unknown dataCenterInfo name {}", inst.data_center));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP server
// ---------------------------------------------------------------------------------------------

type Body = Full<Bytes>;

async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let accepted = std::future::poll_fn(|cx| {
            let mut slot = lock(&shared.slot);
            if slot.closed {
                return Poll::Ready(None);
            }
            slot.waker = Some(cx.waker().clone());
            match &slot.listener {
                Some(listener) => listener.poll_accept(cx).map(Some),
                None => Poll::Pending,
            }
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, _))) => {
                tokio::spawn(serve_connection(shared.clone(), stream));
            }
            Some(Err(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut kill = shared.kill.subscribe();
    let refusing = lock(&shared.state).mode == Mode::Refuse;
    if refusing || lock(&shared.slot).closed {
        drop(stream);
        return;
    }
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| handle(svc_shared.clone(), req));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.changed() => {}
    }
}

enum Outcome {
    Respond(Response<Body>),
    Stall,
    Close,
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let outcome = process(&shared, &parts, &body);
    match outcome {
        Outcome::Respond(r) => Ok(r),
        Outcome::Close => Err(std::io::Error::other("fake eureka: refusing")),
        Outcome::Stall => {
            std::future::pending::<()>().await;
            Err(std::io::Error::other("unreachable"))
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    if gzip {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

fn empty(status: StatusCode) -> Response<Body> {
    respond(status, None, Vec::new(), false)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn process(shared: &Shared, parts: &http::request::Parts, body: &Bytes) -> Outcome {
    let headers = &parts.headers;
    let accept = header_str(headers, header::ACCEPT);
    let accept_encoding = header_str(headers, header::ACCEPT_ENCODING);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let fmt = if accept.as_deref().is_some_and(|a| a.contains("json")) {
        Format::Json
    } else {
        Format::Xml
    };
    let wants_gzip = accept_encoding
        .as_deref()
        .is_some_and(|a| a.contains("gzip"));

    let mut st = lock(&shared.state);
    st.requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path,
        accept,
        accept_encoding,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    match st.mode.clone() {
        Mode::Refuse => return Outcome::Close,
        Mode::Stall => return Outcome::Stall,
        Mode::Fail(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Outcome::Respond(empty(status));
        }
        Mode::Garbage => {
            return Outcome::Respond(respond(
                StatusCode::OK,
                Some(fmt.content_type()),
                GARBAGE.to_vec(),
                false,
            ))
        }
        Mode::Canned {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ct = (!content_type.is_empty()).then_some(content_type.as_str());
            return Outcome::Respond(respond(status, ct, body, false));
        }
        Mode::Normal => {}
    }
    let query = parse_query(parts.uri.query());
    let ctx = Ctx {
        method: &parts.method,
        fmt,
        wants_gzip,
        query: &query,
        content_type: header_str(headers, header::CONTENT_TYPE),
        body,
    };
    Outcome::Respond(route(&mut st, parts.uri.path(), &ctx))
}

struct Ctx<'a> {
    method: &'a Method,
    fmt: Format,
    wants_gzip: bool,
    query: &'a [(String, String)],
    content_type: Option<String>,
    body: &'a Bytes,
}

fn ok_payload(ctx: &Ctx<'_>, body: String, may_gzip: bool) -> Response<Body> {
    let ct = Some(ctx.fmt.content_type());
    if may_gzip && ctx.wants_gzip {
        match gzip(body.as_bytes()) {
            Ok(z) => respond(StatusCode::OK, ct, z, true),
            Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
        }
    } else {
        respond(StatusCode::OK, ct, body.into_bytes(), false)
    }
}

fn route(st: &mut State, path: &str, ctx: &Ctx<'_>) -> Response<Body> {
    let Some(rest) = path.strip_prefix("/eureka/") else {
        return empty(StatusCode::NOT_FOUND);
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<String> = rest.split('/').map(|s| percent_decode(s, false)).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = ctx.method;
    match segs.as_slice() {
        ["apps"] => {
            if method != Method::GET {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let apps: Vec<&AppEntry> = st.apps.iter().filter(|a| !a.instances.is_empty()).collect();
            let body = render_applications(ctx.fmt, "1", &st.hashcode(), &apps);
            ok_payload(ctx, body, true)
        }
        ["apps", "delta"] => {
            if method != Method::GET {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            if st.delta_disabled {
                return empty(StatusCode::FORBIDDEN);
            }
            st.prune();
            let delta = st.delta_apps();
            let refs: Vec<&AppEntry> = delta.iter().collect();
            let hash = st
                .delta_hash_override
                .clone()
                .unwrap_or_else(|| st.hashcode());
            let body = render_applications(ctx.fmt, &st.delta_version.to_string(), &hash, &refs);
            ok_payload(ctx, body, true)
        }
        ["apps", app] => {
            let app = app.to_ascii_uppercase();
            if method == Method::GET {
                return match st.app(&app) {
                    None => empty(StatusCode::NOT_FOUND),
                    Some(entry) => {
                        let body = match ctx.fmt {
                            Format::Json => {
                                format!("{{\"application\":{}}}", json_application(entry))
                            }
                            Format::Xml => {
                                let mut x = Xml::default();
                                xml_application(&mut x, entry);
                                x.finish()
                            }
                        };
                        ok_payload(ctx, body, false)
                    }
                };
            }
            if method != Method::POST {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let is_json = match ctx.content_type.as_deref() {
                Some(ct) if ct.contains("json") => true,
                Some(ct) if ct.contains("xml") => false,
                _ => ctx
                    .body
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'{'),
            };
            let parsed = if is_json {
                parse_instance_json(ctx.body)
            } else {
                parse_instance_xml(ctx.body)
            };
            let inst = match parsed {
                Ok(i) => i,
                Err(msg) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        Some("text/plain"),
                        msg.into_bytes(),
                        false,
                    )
                }
            };
            if let Err(msg) = validate_registration(&app, &inst) {
                return respond(
                    StatusCode::BAD_REQUEST,
                    Some("text/plain"),
                    msg.into_bytes(),
                    false,
                );
            }
            st.register(inst);
            empty(StatusCode::NO_CONTENT)
        }
        ["apps", app, id] => {
            let last_dirty = query_get(ctx.query, "lastDirtyTimestamp");
            match *method {
                Method::GET => match st.find(app, id) {
                    None => empty(StatusCode::NOT_FOUND),
                    Some((a, i)) => {
                        let inst = &st.apps[a].instances[i];
                        ok_payload(ctx, render_instance(ctx.fmt, inst), false)
                    }
                },
                Method::PUT => empty(st.renew(app, id, last_dirty)),
                Method::DELETE => {
                    if st.cancel(app, id) {
                        empty(StatusCode::OK)
                    } else {
                        empty(StatusCode::NOT_FOUND)
                    }
                }
                _ => empty(StatusCode::METHOD_NOT_ALLOWED),
            }
        }
        ["apps", app, id, "status"] => {
            let value = query_get(ctx.query, "value");
            let last_dirty = query_get(ctx.query, "lastDirtyTimestamp");
            match *method {
                Method::PUT => empty(st.override_status(app, id, value.unwrap_or(""), last_dirty)),
                Method::DELETE => empty(st.delete_override(app, id, value, last_dirty)),
                _ => empty(StatusCode::METHOD_NOT_ALLOWED),
            }
        }
        ["apps", app, id, "metadata"] => {
            if method != Method::PUT {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            empty(st.update_metadata(app, id, ctx.query))
        }
        [kind @ ("vips" | "svips"), vip] => {
            if method != Method::GET {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let secure = *kind == "svips";
            let mut matched: Vec<AppEntry> = Vec::new();
            for app in &st.apps {
                let instances: Vec<TestInstance> = app
                    .instances
                    .iter()
                    .filter(|i| {
                        let v = if secure {
                            &i.secure_vip_address
                        } else {
                            &i.vip_address
                        };
                        v.split(',').any(|x| x == *vip)
                    })
                    .cloned()
                    .collect();
                if !instances.is_empty() {
                    matched.push(AppEntry {
                        name: app.name.clone(),
                        instances,
                    });
                }
            }
            let hash = hashcode_of(matched.iter().flat_map(|a| a.instances.iter()));
            let refs: Vec<&AppEntry> = matched.iter().collect();
            ok_payload(ctx, render_applications(ctx.fmt, "-1", &hash, &refs), false)
        }
        ["instances", id] => {
            if method != Method::GET {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            let found = st
                .apps
                .iter()
                .flat_map(|a| a.instances.iter())
                .find(|i| i.instance_id == *id);
            match found {
                Some(inst) => ok_payload(ctx, render_instance(ctx.fmt, inst), false),
                None => empty(StatusCode::NOT_FOUND),
            }
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

fn render_instance(fmt: Format, inst: &TestInstance) -> String {
    match fmt {
        Format::Json => inst.to_json(),
        Format::Xml => inst.to_xml(),
    }
}
