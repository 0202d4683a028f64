//! Optional self-registration with Eureka (`[eureka.instance]`), as Netflix's
//! `DiscoveryClient` and Spring Cloud's `EurekaServiceRegistry` do it:
//!
//! * `POST apps/{APP}` with the instance in legacy JSON (`{"instance":{…}}`: `instanceId`,
//!   `hostName`, `ipAddr`, `port`/`securePort` with `@enabled`, `dataCenterInfo` of class
//!   `com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo` named `MyOwn`, `leaseInfo`,
//!   `vipAddress`, page URLs, `metadata`, timestamps); the server answers 204.
//! * A heartbeat every `renewal_interval`:
//!   `PUT apps/{APP}/{id}?status=UP&lastDirtyTimestamp=N`. A 404 means the server forgot the
//!   lease (eviction, restart, or a newer `lastDirtyTimestamp`): the agent registers again with
//!   a new dirty timestamp (`DiscoveryClient.renew`).
//! * The agent registers as `STARTING` until its first registry load, then `UP`.
//! * On shutdown (drain): registers again with its own status `DOWN` (Spring Cloud's
//!   `EurekaServiceRegistry.deregister` sets the local status DOWN, which the client replicates),
//!   so gateways stop sending new clients, then `DELETE apps/{APP}/{id}` (Netflix's
//!   `DiscoveryClient.shutdown` → `unregister`). The agent never sets a server-side override
//!   (`PUT apps/{APP}/{id}/status`): the server keeps an override in its
//!   `overriddenInstanceStatusMap` after the cancel fails, and `OverrideExistsRule` would then
//!   hold a restarted agent with the same instance id OUT_OF_SERVICE while it heartbeats.
//!
//! Requests use the registry's servers with the same failover rules as fetches
//! ([`super::eureka`]), through a transport of their own. Failures are logged once per outage.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::eureka::{path_segment, AllFailed, Call, FetchError, Transport};
use super::{RegistryStatus, Status};
use crate::config::{EurekaInstanceConfig, RegistryConfig, RegistrySource};

/// `dataCenterInfo.@class` of a `MyOwn` data center.
pub const DATA_CENTER_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

/// The instance as registered: the config with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `app` (upper case).
    pub app: String,
    /// `instanceId`.
    pub instance_id: String,
    /// `hostName`.
    pub host_name: String,
    /// `ipAddr`.
    pub ip_addr: String,
    /// The advertised port: `securePort` when `secure`, else `port`.
    pub port: u16,
    /// Whether the agent serves TLS (`securePort` enabled, `port` disabled).
    pub secure: bool,
    /// `vipAddress`.
    pub vip_address: String,
    /// `secureVipAddress`.
    pub secure_vip_address: String,
    /// Heartbeat interval.
    pub renewal_interval: Duration,
    /// Lease duration.
    pub lease_duration: Duration,
    /// `homePageUrl`.
    pub home_page_url: String,
    /// `statusPageUrl`.
    pub status_page_url: String,
    /// `healthCheckUrl` (also `secureHealthCheckUrl` when `secure`).
    pub health_check_url: String,
    /// `metadata`.
    pub metadata: BTreeMap<String, String>,
}

/// Whole seconds for a lease field, rounded up, at least 1.
fn secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl InstanceInfo {
    /// Resolves `cfg` for an agent listening on `listen` (the bound address), with TLS or not;
    /// `host_name` and `ip` are the defaults used when the config has none.
    pub fn resolve(
        cfg: &EurekaInstanceConfig,
        listen: SocketAddr,
        secure: bool,
        host_name: &str,
        ip: IpAddr,
    ) -> InstanceInfo {
        let host = cfg
            .host_name
            .clone()
            .unwrap_or_else(|| host_name.to_owned());
        let port = cfg.port.unwrap_or_else(|| listen.port());
        let lower = cfg.app.to_ascii_lowercase();
        let scheme = if secure { "https" } else { "http" };
        let url_host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let base = format!("{scheme}://{url_host}:{port}");
        InstanceInfo {
            app: cfg.app.clone(),
            instance_id: cfg
                .instance_id
                .clone()
                .unwrap_or_else(|| format!("{host}:{lower}:{port}")),
            ip_addr: cfg.ip_addr.unwrap_or(ip).to_string(),
            host_name: host,
            port,
            secure,
            vip_address: cfg.vip_address.clone().unwrap_or_else(|| lower.clone()),
            secure_vip_address: cfg.secure_vip_address.clone().unwrap_or(lower),
            renewal_interval: cfg.renewal_interval,
            lease_duration: cfg.lease_duration,
            home_page_url: cfg
                .home_page_url
                .clone()
                .unwrap_or_else(|| format!("{base}/")),
            status_page_url: cfg
                .status_page_url
                .clone()
                .unwrap_or_else(|| format!("{base}/application/info")),
            health_check_url: cfg
                .health_check_url
                .clone()
                .unwrap_or_else(|| format!("{base}/application/health")),
            metadata: cfg.metadata.clone(),
        }
    }

    /// The registration body in legacy JSON (`{"instance":{…}}`), as Netflix's
    /// `EurekaJacksonCodec` and py-eureka-client write it, with `status` and the dirty
    /// timestamp `dirty_ms` (also `lastUpdatedTimestamp`).
    pub fn body(&self, status: Status, dirty_ms: i64) -> Vec<u8> {
        let port = |enabled: bool| json!({"$": self.port, "@enabled": enabled.to_string()});
        let mut meta: Map<String, Value> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if meta.is_empty() {
            meta.insert(
                "@class".into(),
                Value::String("java.util.Collections$EmptyMap".into()),
            );
        }
        let mut inst = json!({
            "instanceId": self.instance_id,
            "hostName": self.host_name,
            "app": self.app,
            "ipAddr": self.ip_addr,
            "status": status.as_str(),
            "overriddenStatus": "UNKNOWN",
            "port": port(!self.secure),
            "securePort": port(self.secure),
            "countryId": 1,
            "dataCenterInfo": {"@class": DATA_CENTER_CLASS, "name": "MyOwn"},
            "leaseInfo": {
                "renewalIntervalInSecs": secs(self.renewal_interval),
                "durationInSecs": secs(self.lease_duration),
            },
            "metadata": Value::Object(meta),
            "homePageUrl": self.home_page_url,
            "statusPageUrl": self.status_page_url,
            "healthCheckUrl": self.health_check_url,
            "vipAddress": self.vip_address,
            "secureVipAddress": self.secure_vip_address,
            "isCoordinatingDiscoveryServer": "false",
            "lastUpdatedTimestamp": dirty_ms.to_string(),
            "lastDirtyTimestamp": dirty_ms.to_string(),
        });
        if self.secure {
            if let Some(o) = inst.as_object_mut() {
                o.insert(
                    "secureHealthCheckUrl".into(),
                    Value::String(self.health_check_url.clone()),
                );
            }
        }
        serde_json::to_vec(&json!({ "instance": inst })).unwrap_or_default()
    }
}

/// The machine's host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`), `None` if neither
/// gives one.
pub fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The local address the system would use to reach `url`'s host (a UDP socket is connected,
/// nothing is sent), as py-eureka-client and Eureka's `InetUtils` pick `ipAddr`. Blocking
/// (name resolution).
pub fn outbound_ip(url: &str) -> Option<IpAddr> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()?
        .next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// 200: the lease was renewed.
    Renewed,
    /// 404: the server does not know this lease (register again).
    Unknown,
}

/// Registers one instance and keeps its lease.
pub struct Registrar {
    transport: Transport,
    info: InstanceInfo,
    dirty_ms: i64,
    /// The status last registered successfully, if any.
    registered: Option<Status>,
    /// Bound for each shutdown step.
    shutdown_timeout: Duration,
}

fn accept_2xx(server: &str, status: u16) -> Result<(), FetchError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(FetchError::Status {
            server: server.to_owned(),
            status,
        })
    }
}

impl Registrar {
    /// A registrar for `info` over the Eureka servers of `registry`.
    ///
    /// # Errors
    /// When the registry source is not Eureka servers, or the transport cannot be built (TLS
    /// files).
    pub fn new(
        info: InstanceInfo,
        registry: &RegistryConfig,
        base_tls: rustls::ClientConfig,
    ) -> anyhow::Result<Registrar> {
        let RegistrySource::Eureka(urls) = &registry.source else {
            anyhow::bail!("self-registration needs Eureka servers (registry.eureka_urls)");
        };
        Ok(Registrar {
            transport: Transport::new(urls, registry, base_tls)?,
            info,
            dirty_ms: now_ms(),
            registered: None,
            shutdown_timeout: registry.connect_timeout + registry.read_timeout,
        })
    }

    /// The instance this registrar registers.
    pub fn info(&self) -> &InstanceInfo {
        &self.info
    }

    fn instance_path(&self) -> String {
        format!(
            "apps/{}/{}",
            path_segment(&self.info.app),
            path_segment(&self.info.instance_id)
        )
    }

    fn call(&self, method: Method, path: String, json: Option<Vec<u8>>) -> Call {
        Call {
            method,
            path,
            accept: "application/json",
            json,
        }
    }

    /// `POST apps/{APP}` with `status` and a new dirty timestamp.
    ///
    /// # Errors
    /// [`AllFailed`] when no server accepted the registration.
    pub async fn register(&mut self, status: Status) -> Result<(), AllFailed> {
        self.dirty_ms = now_ms().max(self.dirty_ms + 1);
        let call = self.call(
            Method::POST,
            format!("apps/{}", path_segment(&self.info.app)),
            Some(self.info.body(status, self.dirty_ms)),
        );
        self.transport
            .execute(&call, |server, answer| accept_2xx(server, answer.status))
            .await?;
        self.registered = Some(status);
        Ok(())
    }

    /// `PUT apps/{APP}/{id}?status=S&lastDirtyTimestamp=N`.
    ///
    /// # Errors
    /// [`AllFailed`] when no server answered 200 or 404.
    pub async fn heartbeat(&mut self) -> Result<Heartbeat, AllFailed> {
        let status = self.registered.unwrap_or(Status::Up);
        let path = format!(
            "{}?status={}&lastDirtyTimestamp={}",
            self.instance_path(),
            status.as_str(),
            self.dirty_ms
        );
        let call = self.call(Method::PUT, path, None);
        let served = self
            .transport
            .execute(&call, |server, answer| match answer.status {
                404 => Ok(Heartbeat::Unknown),
                s => accept_2xx(server, s).map(|()| Heartbeat::Renewed),
            })
            .await?;
        Ok(served.value)
    }

    /// `DELETE apps/{APP}/{id}`. Any HTTP answer counts (Eureka's rule for cancels).
    ///
    /// # Errors
    /// [`AllFailed`] when no server answered at all.
    pub async fn cancel(&mut self) -> Result<(), AllFailed> {
        let call = self.call(Method::DELETE, self.instance_path(), None);
        self.transport.execute(&call, |_, _| Ok(())).await?;
        self.registered = None;
        Ok(())
    }

    /// Registers, heartbeats every `renewal_interval` (registering again when the server
    /// forgot the lease or the wanted status changed), and on `shutdown` registers the instance
    /// `DOWN` (its own status, no server-side override) and cancels it. Registers `STARTING` until `registry` has loaded once.
    pub async fn run(mut self, registry: Arc<RegistryStatus>, shutdown: CancellationToken) {
        let wanted = || {
            if registry.loaded() {
                Status::Up
            } else {
                Status::Starting
            }
        };
        let mut attempted = false;
        let mut failing = false;
        let mut report = |what: &str, result: Result<(), AllFailed>| match result {
            Ok(()) => {
                if failing {
                    tracing::info!(what, "Eureka self-registration works again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(what, error = %e, "Eureka self-registration failed; retrying every renewal interval (logged once until it works)");
                }
                failing = true;
            }
        };
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(self.info.renewal_interval) => {}
                }
            }
            first = false;
            let want = wanted();
            if self.registered != Some(want) {
                attempted = true;
                let result = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = self.register(want) => r,
                };
                if result.is_ok() {
                    tracing::info!(app = %self.info.app, instance_id = %self.info.instance_id, status = %want, "registered with Eureka");
                }
                report("register", result);
                continue;
            }
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.heartbeat() => r,
            };
            match result {
                Ok(Heartbeat::Renewed) => report("heartbeat", Ok(())),
                Ok(Heartbeat::Unknown) => {
                    tracing::info!(app = %self.info.app, instance_id = %self.info.instance_id, "Eureka does not know this instance's lease any more; registering again");
                    let result = tokio::select! {
                        () = shutdown.cancelled() => break,
                        r = self.register(want) => r,
                    };
                    report("register", result);
                }
                Err(e) => report("heartbeat", Err(e)),
            }
        }
        if !attempted {
            return;
        }
        let limit = self.shutdown_timeout;
        match tokio::time::timeout(limit, self.register(Status::Down)).await {
            Ok(Ok(())) => {
                tracing::info!(instance_id = %self.info.instance_id, "registered DOWN in Eureka for the drain")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot register this instance DOWN in Eureka")
            }
            Err(_) => tracing::warn!("registering this instance DOWN in Eureka timed out"),
        }
        match tokio::time::timeout(limit, self.cancel()).await {
            Ok(Ok(())) => {
                tracing::info!(instance_id = %self.info.instance_id, "deregistered from Eureka")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot deregister from Eureka; the lease expires by itself")
            }
            Err(_) => {
                tracing::warn!("deregistering from Eureka timed out; the lease expires by itself")
            }
        }
    }
}

/// Starts self-registration on `tracker` for an agent bound to `listen` (TLS or not): resolves
/// the host name and IP defaults, then runs [`Registrar::run`] until `shutdown`.
///
/// # Errors
/// When the registry source is not Eureka servers or the TLS files cannot be loaded.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    cfg: &EurekaInstanceConfig,
    registry: &RegistryConfig,
    base_tls: rustls::ClientConfig,
    listen: SocketAddr,
    secure: bool,
    status: Arc<RegistryStatus>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let first_server = match &registry.source {
        RegistrySource::Eureka(urls) => urls.first().cloned().unwrap_or_default(),
        RegistrySource::File(_) => String::new(),
    };
    let placeholder = InstanceInfo::resolve(cfg, listen, secure, "localhost", listen.ip());
    let mut registrar = Registrar::new(placeholder, registry, base_tls)?;
    let cfg = cfg.clone();
    tracker.spawn(async move {
        let (host, ip) = tokio::task::spawn_blocking(move || {
            let host = system_host_name();
            let ip = if listen.ip().is_unspecified() {
                outbound_ip(&first_server).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                listen.ip()
            };
            (host, ip)
        })
        .await
        .unwrap_or((None, IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let host = host.unwrap_or_else(|| ip.to_string());
        registrar.info = InstanceInfo::resolve(&cfg, listen, secure, &host, ip);
        registrar.run(status, shutdown).await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EurekaInstanceConfig {
        EurekaInstanceConfig {
            app: "WSRELAY".into(),
            instance_id: None,
            host_name: None,
            ip_addr: None,
            port: None,
            vip_address: None,
            secure_vip_address: None,
            renewal_interval: Duration::from_millis(1500),
            lease_duration: Duration::from_secs(90),
            home_page_url: None,
            status_page_url: None,
            health_check_url: None,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn defaults_follow_spring_cloud_and_the_listener() {
        let listen: SocketAddr = "0.0.0.0:10010".parse().unwrap();
        let i = InstanceInfo::resolve(&cfg(), listen, true, "gw1", "10.1.2.3".parse().unwrap());
        assert_eq!(i.instance_id, "gw1:wsrelay:10010");
        assert_eq!(i.ip_addr, "10.1.2.3");
        assert_eq!(i.vip_address, "wsrelay");
        assert_eq!(i.health_check_url, "https://gw1:10010/application/health");
        let body: Value = serde_json::from_slice(&i.body(Status::Up, 42)).unwrap();
        let inst = &body["instance"];
        assert_eq!(inst["app"], "WSRELAY");
        assert_eq!(inst["securePort"], json!({"$": 10010, "@enabled": "true"}));
        assert_eq!(inst["port"]["@enabled"], "false");
        assert_eq!(inst["dataCenterInfo"]["@class"], DATA_CENTER_CLASS);
        assert_eq!(inst["dataCenterInfo"]["name"], "MyOwn");
        assert_eq!(inst["leaseInfo"]["renewalIntervalInSecs"], 2);
        assert_eq!(inst["lastDirtyTimestamp"], "42");
        assert_eq!(inst["metadata"]["@class"], "java.util.Collections$EmptyMap");
        // The body is a registry payload our own decoder reads.
        let s = crate::registry::decode(&i.body(Status::Starting, 1)).unwrap();
        let back = &s.applications[0].instances[0];
        assert_eq!(back.instance_id, "gw1:wsrelay:10010");
        assert_eq!(back.status, Status::Starting);
        assert!(back.secure_port.enabled && !back.port.enabled);
    }

    #[test]
    fn outbound_ip_of_a_loopback_server_is_loopback() {
        assert_eq!(
            outbound_ip("http://127.0.0.1:8761/eureka/"),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(outbound_ip("not a url"), None);
    }
}
