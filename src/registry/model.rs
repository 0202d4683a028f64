//! The Eureka registry model: applications → instances → metadata.
//!
//! This is the decoded form of a Eureka `/apps` (full), `/apps/delta`, `/apps/{APP}` or
//! `/apps/{APP}/{id}` payload, independent of the wire format (XML or JSON, XStream, Jackson or
//! legacy layouts). It follows the field names of Netflix Eureka's `InstanceInfo` and
//! `Applications` classes (`com.netflix.appinfo`, `com.netflix.discovery.shared`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// An instance's status, as Eureka's `InstanceInfo.InstanceStatus`.
///
/// Any string Eureka does not define decodes to [`Status::Unknown`], as Eureka's own
/// `InstanceStatus.toEnum` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Status {
    /// `UP`: ready to receive traffic.
    Up,
    /// `DOWN`: health check failed.
    Down,
    /// `STARTING`: initialising, not ready.
    Starting,
    /// `OUT_OF_SERVICE`: taken out of traffic on purpose.
    OutOfService,
    /// `UNKNOWN`: anything else, and the "no override" value of `overriddenStatus`.
    #[default]
    Unknown,
}

impl Status {
    /// Parses Eureka's wire spelling (`UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`).
    /// Leading/trailing whitespace is ignored and matching is case-insensitive; anything else is
    /// [`Status::Unknown`] (Eureka's `InstanceStatus.toEnum`).
    pub fn parse(s: &str) -> Status {
        let s = s.trim();
        if s.eq_ignore_ascii_case("UP") {
            Status::Up
        } else if s.eq_ignore_ascii_case("DOWN") {
            Status::Down
        } else if s.eq_ignore_ascii_case("STARTING") {
            Status::Starting
        } else if s.eq_ignore_ascii_case("OUT_OF_SERVICE") {
            Status::OutOfService
        } else {
            Status::Unknown
        }
    }

    /// The wire spelling, e.g. `"OUT_OF_SERVICE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::Starting => "STARTING",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delta entry's `actionType` (Eureka's `InstanceInfo.ActionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionType {
    /// `ADDED`: a new instance (upsert).
    Added,
    /// `MODIFIED`: a changed instance (upsert).
    Modified,
    /// `DELETED`: the instance left the registry.
    Deleted,
}

impl ActionType {
    /// Parses `ADDED`, `MODIFIED` or `DELETED` (case-insensitive); `None` for anything else.
    pub fn parse(s: &str) -> Option<ActionType> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ADDED") {
            Some(ActionType::Added)
        } else if s.eq_ignore_ascii_case("MODIFIED") {
            Some(ActionType::Modified)
        } else if s.eq_ignore_ascii_case("DELETED") {
            Some(ActionType::Deleted)
        } else {
            None
        }
    }
}

/// A port and its `enabled` flag: Eureka's `port` / `securePort` elements
/// (`<port enabled="true">8080</port>`, `{"$":8080,"@enabled":"true"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortInfo {
    /// TCP port number (0 when absent).
    pub port: u16,
    /// Whether the port is enabled. When the flag is absent, Eureka treats `port` as enabled
    /// and `securePort` as disabled; decoders apply that default.
    pub enabled: bool,
}

/// One registered instance (Eureka's `InstanceInfo`).
///
/// Only the fields wsrelay uses or shows are kept; unknown fields are ignored by the decoders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    /// `instanceId`; when a payload has none (pre-1.1 servers), decoders fall back to
    /// `hostName`, as Eureka's `InstanceInfo.getId()` does.
    pub instance_id: String,
    /// `app`: the application name (Eureka upper-cases it).
    pub app: String,
    /// `hostName`: the name clients connect to; may carry a `:port` suffix in old payloads.
    pub host_name: String,
    /// `ipAddr`.
    pub ip_addr: String,
    /// `status` as the server resolved it (the instance's own status run through the server's
    /// override rules). This alone decides routing and the reconcile hash, as in Netflix's
    /// clients (`Application._shuffleAndStoreInstances`, `Applications.populateInstanceCountMap`).
    pub status: Status,
    /// `overriddenStatus` (also spelled `overriddenstatus`); `Unknown` means no override.
    /// Informational: a server keeps `status` DOWN or STARTING while this says UP.
    pub overridden_status: Status,
    /// `port` (plain HTTP/WS).
    pub port: PortInfo,
    /// `securePort` (HTTPS/WSS).
    pub secure_port: PortInfo,
    /// `vipAddress` (may be empty).
    pub vip_address: String,
    /// `secureVipAddress` (may be empty).
    pub secure_vip_address: String,
    /// `homePageUrl`, if present. URLs are kept verbatim, never validated.
    pub home_page_url: Option<String>,
    /// `statusPageUrl`, if present.
    pub status_page_url: Option<String>,
    /// `healthCheckUrl`, if present.
    pub health_check_url: Option<String>,
    /// `metadata` (string → string); the Jackson `@class` marker entry is dropped. In XML,
    /// XStream's name escapes are undone (`__` → `_`, `_-` → `$`). Keys and values are shared
    /// strings: the decoders allocate each distinct text once per payload and share it between
    /// the instances that carry it (the instances of a service usually have the same metadata).
    pub metadata: BTreeMap<Arc<str>, Arc<str>>,
    /// `lastUpdatedTimestamp`, milliseconds since the Unix epoch (0 when absent).
    pub last_updated_timestamp_ms: i64,
    /// `lastDirtyTimestamp`, milliseconds since the Unix epoch (0 when absent).
    pub last_dirty_timestamp_ms: i64,
    /// `actionType`, meaningful in delta payloads.
    pub action_type: Option<ActionType>,
}

impl Instance {
    /// `hostName` without a trailing `:port` suffix (old servers send `"10.0.0.1:7101"`).
    /// IPv6 literals (more than one `:`) are returned unchanged.
    pub fn host(&self) -> &str {
        let h = self.host_name.trim();
        match h.rsplit_once(':') {
            Some((host, port))
                if !host.contains(':')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => h,
        }
    }
}

/// One application: a name and its instances (Eureka's `Application`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Application {
    /// `name`, as sent (Eureka upper-cases it).
    pub name: String,
    /// The application's instances, in payload order.
    pub instances: Vec<Instance>,
}

/// A decoded registry payload (Eureka's `Applications`): a full registry, a delta, or a
/// fragment (one application or one instance, wrapped into this shape).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// `versions__delta`, if the payload has it (string or number on the wire).
    pub versions_delta: Option<i64>,
    /// `apps__hashcode`, if the payload has it, e.g. `"UP_3_"`.
    pub apps_hashcode: Option<String>,
    /// Applications, in payload order.
    pub applications: Vec<Application>,
}

impl Snapshot {
    /// The snapshot of a single-instance payload (`/apps/{APP}/{id}`): one application, named
    /// after the instance's `app`, holding it; no version or hash code.
    pub fn of_instance(instance: Instance) -> Snapshot {
        Snapshot {
            versions_delta: None,
            apps_hashcode: None,
            applications: vec![Application {
                name: instance.app.clone(),
                instances: vec![instance],
            }],
        }
    }

    /// Total number of instances over all applications.
    pub fn instance_count(&self) -> usize {
        self.applications.iter().map(|a| a.instances.len()).sum()
    }

    /// The application named `name` (case-insensitive, as Eureka's registry is), if any.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// Shares equal strings within one decoded payload: [`Interner::get`] returns the same
/// allocation for equal texts. Used by the decoders for metadata keys and values.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    set: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared string equal to `s`, allocated on first use.
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        self.set.insert(Arc::clone(&shared));
        shared
    }
}
