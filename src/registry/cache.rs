//! The last-known-good registry cache (`registry.cache`).
//!
//! After each successful Eureka fetch the local registry is written as a Eureka `/apps`
//! payload in legacy JSON (the `EurekaJacksonCodec` layout, so any Eureka tool and
//! [`super::decode`] read it back), atomically: to a temporary file in the same directory,
//! flushed to disk, then renamed over the cache. An unchanged registry is not written again.
//! When no Eureka server answers at start, the agent loads this file so it can route while
//! discovery is down.

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::{Instance, PortInfo, Snapshot};

/// Why the cache could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file cannot be read (missing, permissions).
    #[error("cannot read the registry cache {path}: {source}")]
    Read {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than `registry.max_payload_size`.
    #[error("registry cache {path} is over the limit of {max} bytes")]
    TooLarge {
        /// The cache file.
        path: PathBuf,
        /// The limit in bytes.
        max: usize,
    },
    /// The file is not a Eureka payload.
    #[error("registry cache {path}: {source}")]
    Decode {
        /// The cache file.
        path: PathBuf,
        /// The decoder's error.
        source: super::DecodeError,
    },
}

/// The Jackson type marker Eureka writes for an empty metadata map.
const EMPTY_MAP_CLASS: &str = "java.util.Collections$EmptyMap";
/// `dataCenterInfo.@class` of a `MyOwn` data center.
const DEFAULT_DC_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

fn port(p: PortInfo) -> Value {
    json!({"$": p.port, "@enabled": if p.enabled { "true" } else { "false" }})
}

fn instance(i: &Instance) -> Value {
    let mut o = Map::new();
    let mut s = |k: &str, v: &str| {
        o.insert(k.to_owned(), Value::String(v.to_owned()));
    };
    s("instanceId", &i.instance_id);
    s("hostName", &i.host_name);
    s("app", &i.app);
    s("ipAddr", &i.ip_addr);
    s("status", i.status.as_str());
    s("overriddenStatus", i.overridden_status.as_str());
    if !i.vip_address.is_empty() {
        s("vipAddress", &i.vip_address);
    }
    if !i.secure_vip_address.is_empty() {
        s("secureVipAddress", &i.secure_vip_address);
    }
    for (key, url) in [
        ("homePageUrl", &i.home_page_url),
        ("statusPageUrl", &i.status_page_url),
        ("healthCheckUrl", &i.health_check_url),
    ] {
        if let Some(url) = url {
            s(key, url);
        }
    }
    s(
        "lastUpdatedTimestamp",
        &i.last_updated_timestamp_ms.to_string(),
    );
    s("lastDirtyTimestamp", &i.last_dirty_timestamp_ms.to_string());
    if let Some(a) = i.action_type {
        s(
            "actionType",
            match a {
                super::ActionType::Added => "ADDED",
                super::ActionType::Modified => "MODIFIED",
                super::ActionType::Deleted => "DELETED",
            },
        );
    }
    o.insert("port".into(), port(i.port));
    o.insert("securePort".into(), port(i.secure_port));
    o.insert(
        "dataCenterInfo".into(),
        json!({"@class": DEFAULT_DC_CLASS, "name": "MyOwn"}),
    );
    let mut meta: Map<String, Value> = i
        .metadata
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    if meta.is_empty() {
        meta.insert("@class".into(), Value::String(EMPTY_MAP_CLASS.into()));
    }
    o.insert("metadata".into(), Value::Object(meta));
    Value::Object(o)
}

/// Encodes `snapshot` as a Eureka `/apps` payload in legacy JSON
/// (`{"applications":{"versions__delta":…,"apps__hashcode":…,"application":[…]}}`).
/// [`super::decode`] gives `snapshot` back.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let apps: Vec<Value> = snapshot
        .applications
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "instance": a.instances.iter().map(instance).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut head = Map::new();
    if let Some(v) = snapshot.versions_delta {
        head.insert("versions__delta".into(), Value::String(v.to_string()));
    }
    if let Some(h) = &snapshot.apps_hashcode {
        head.insert("apps__hashcode".into(), Value::String(h.clone()));
    }
    head.insert("application".into(), Value::Array(apps));
    let doc = json!({ "applications": Value::Object(head) });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, renamed over `path`. The temporary file is removed when a step fails.
///
/// # Errors
/// The I/O error of the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "registry".to_owned());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Loads a cache file: the registry and when it was written (the file's modification time).
///
/// # Errors
/// [`CacheError`] naming the file; never panics on any content.
pub async fn load(path: &Path, max: usize) -> Result<(Snapshot, SystemTime), CacheError> {
    let read = |source| CacheError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(read)?;
    if usize::try_from(meta.len()).map_or(true, |n| n > max) {
        return Err(CacheError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    let saved_at = meta.modified().unwrap_or_else(|_| SystemTime::now());
    let bytes = tokio::fs::read(path).await.map_err(read)?;
    let snapshot = super::decode(&bytes).map_err(|source| CacheError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((snapshot, saved_at))
}

/// The cache writer of one Eureka client.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    state: Mutex<WriterState>,
}

#[derive(Debug, Default)]
struct WriterState {
    /// Hash of the last payload written (skip identical writes).
    last: Option<u64>,
    /// Whether the last write failed (log once per failure streak).
    failing: bool,
}

impl Cache {
    /// A writer for the cache file `path`.
    pub fn new(path: PathBuf) -> Cache {
        Cache {
            path,
            state: Mutex::new(WriterState::default()),
        }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `snapshot` if it differs from the last write. A failure is logged once until a
    /// write succeeds again; it never affects routing.
    pub async fn save(&self, snapshot: &Snapshot) {
        let bytes = encode(snapshot);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let digest = h.finish();
        if self.state().last == Some(digest) {
            return;
        }
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let mut st = self.state();
        match result {
            Ok(()) => {
                st.last = Some(digest);
                if st.failing {
                    tracing::info!(path = %self.path.display(), "registry cache written again");
                }
                st.failing = false;
            }
            Err(e) => {
                st.last = None;
                if !st.failing {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write the registry cache (logged once until it works)");
                }
                st.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ActionType, Application, Status};

    fn sample() -> Snapshot {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("apiml.routes.ws_v1.gatewayUrl".into(), "ws/v1".into());
        meta.insert("weird \"key\"".into(), "välue\n".into());
        Snapshot {
            versions_delta: Some(7),
            apps_hashcode: Some("UP_2_".into()),
            applications: vec![
                Application {
                    name: "A".into(),
                    instances: vec![Instance {
                        instance_id: "h:a:1".into(),
                        app: "A".into(),
                        host_name: "h".into(),
                        ip_addr: "10.0.0.1".into(),
                        status: Status::Up,
                        overridden_status: Status::OutOfService,
                        port: PortInfo {
                            port: 1,
                            enabled: true,
                        },
                        secure_port: PortInfo {
                            port: 443,
                            enabled: false,
                        },
                        vip_address: "a".into(),
                        secure_vip_address: "a".into(),
                        home_page_url: Some("http://h:1/".into()),
                        status_page_url: None,
                        health_check_url: Some("http://h:1/health".into()),
                        metadata: meta,
                        last_updated_timestamp_ms: 1_700_000_000_000,
                        last_dirty_timestamp_ms: 1_700_000_000_001,
                        action_type: Some(ActionType::Modified),
                    }],
                },
                Application {
                    name: "B".into(),
                    instances: vec![Instance {
                        instance_id: "b1".into(),
                        app: "B".into(),
                        host_name: "b".into(),
                        status: Status::Down,
                        ..Instance::default()
                    }],
                },
            ],
        }
    }

    #[test]
    fn encoding_round_trips_through_the_decoder() {
        let s = sample();
        assert_eq!(crate::registry::decode(&encode(&s)).unwrap(), s);
        let empty = Snapshot::default();
        assert_eq!(crate::registry::decode(&encode(&empty)).unwrap(), empty);
    }

    #[tokio::test]
    async fn atomic_write_then_load_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let cache = Cache::new(path.clone());
        cache.save(&sample()).await;
        let (loaded, _) = load(&path, 1 << 20).await.unwrap();
        assert_eq!(loaded, sample());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["registry.json"], "no temporary file is left");
        assert!(matches!(
            load(&path, 10).await,
            Err(CacheError::TooLarge { .. })
        ));
        std::fs::write(&path, b"{\"applications\":").unwrap();
        let e = load(&path, 1 << 20).await.unwrap_err();
        assert!(e.to_string().contains("registry.json"), "{e}");
        let e = load(&dir.path().join("missing.json"), 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(e, CacheError::Read { .. }), "{e}");
        // A write into a missing directory fails without panicking and leaves nothing behind.
        Cache::new(dir.path().join("no/such/dir/r.json"))
            .save(&sample())
            .await;
    }
}
