//! The real peers of `interop/` as child processes on loopback ports chosen at run time: the
//! Spring Cloud Netflix Eureka server (`interop/eureka-server`) and the Spring Boot WebSocket
//! service registered by the real Eureka client (`interop/ws-service`, Zowe's discoverable
//! client reduced to an echo). `bash scripts/test.sh` builds their jars with Maven; without
//! them every test here fails and says so.
//!
//! Each process's output goes to a log file in a temp dir; a failed wait prints its tail.
//! Processes are killed when their handle is dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// JVM options for quick start-up of short-lived test processes (C1 only, serial GC, a small
/// heap): a Spring Boot start takes about 5 s instead of 10 s on 2 cores.
const JVM_OPTS: &[&str] = &[
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xmx192m",
    "-Xss512k",
    "-XX:-UsePerfData",
];

/// How long a JVM may take to start and register (2 cores, other tests running).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Serialises the tests that start JVMs: on 2 cores, parallel Spring start-ups slow each
/// other down past the timing bounds the tests assert.
pub static JVM_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The path of an interop jar (`interop/{module}/target/{module}.jar`); panics with the command
/// that builds it when it is missing.
pub fn jar(module: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(module)
        .join("target")
        .join(format!("{module}.jar"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/test.sh` (it builds interop/ with Maven) or \
         `mvn -B -q -f interop/pom.xml package`",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if PathBuf::from(&home).join("bin/java").is_file() => {
            PathBuf::from(home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}

/// One JVM child process; killed (SIGKILL) on drop.
pub struct Jvm {
    child: Option<Child>,
    /// What it is, for messages (`eureka`, `dc-a`).
    pub name: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Jvm {
    /// Starts `java {JVM_OPTS} -jar {jar} {args}` with its output in a log file.
    pub fn spawn(module: &str, name: &str, args: &[String]) -> Jvm {
        let jar = jar(module);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(java())
            .args(JVM_OPTS)
            .arg("-jar")
            .arg(&jar)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start java for {name}: {e}"));
        Jvm {
            child: Some(child),
            name: name.to_string(),
            log,
            _dir: dir,
        }
    }

    /// The last 40 lines of the process's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics unless the process is still running, with its log.
    pub fn assert_running(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (Spring's graceful shutdown: the Eureka client cancels its lease, WebSocket
    /// sessions are closed) and waits up to 30 s before a SIGKILL.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real Eureka server (Spring Cloud Netflix), standalone, with short eviction (1 s) and
/// response-cache (1 s) intervals (`interop/eureka-server/src/main/resources/application.yml`).
pub struct RealEureka {
    pub jvm: Jvm,
    pub port: u16,
    http: reqwest::Client,
}

/// The read-only response cache's refresh interval the test server runs with
/// (`eureka.server.response-cache-update-interval-ms`).
pub const CACHE_INTERVAL: Duration = Duration::from_secs(1);

/// A parsed answer: status code and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl RealEureka {
    /// Starts the server and waits until `GET /eureka/apps` answers 200.
    pub async fn start() -> RealEureka {
        Self::start_with(&[], &[200]).await
    }

    /// Starts the server with extra command-line properties and waits until `GET
    /// /eureka/apps` answers one of `ready` (e.g. 403 during its start-up window).
    pub async fn start_with(extra: &[&str], ready: &[u16]) -> RealEureka {
        let port = free_port();
        let mut args = vec![format!("--server.port={port}")];
        args.extend(extra.iter().map(|a| a.to_string()));
        let jvm = Jvm::spawn("eureka-server", "eureka", &args);
        let mut eureka = RealEureka {
            jvm,
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            eureka.jvm.assert_running();
            if let Ok(a) = eureka.request("GET", "apps", None).await {
                if ready.contains(&a.status) {
                    return eureka;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Eureka server did not start:\n{}",
                eureka.jvm.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The service URL clients use: `http://127.0.0.1:{port}/eureka/`.
    pub fn service_url(&self) -> String {
        format!("http://127.0.0.1:{}/eureka/", self.port)
    }

    /// `METHOD /eureka/{path}` with JSON accepted.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let url = format!("{}{path}", self.service_url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(method, url)
            .header("Accept", accept.unwrap_or("application/json"))
            .send()
            .await?;
        let status = r.status().as_u16();
        let body = r.text().await?;
        Ok(Answer { status, body })
    }

    /// `GET apps/{app}/{id}` (read from the registry itself, not the response cache), as JSON;
    /// `None` on 404 (or 403 during the server's start-up window).
    pub async fn instance(&self, app: &str, id: &str) -> Option<Value> {
        let a = self
            .request("GET", &format!("apps/{app}/{id}"), None)
            .await
            .unwrap();
        match a.status {
            200 => {
                let v: Value = serde_json::from_str(&a.body).unwrap();
                Some(v["instance"].clone())
            }
            // 403: the server does not serve reads yet (its start-up window).
            404 | 403 => None,
            s => panic!("GET apps/{app}/{id}: {s} {}", a.body),
        }
    }

    /// `(status, overriddenStatus)` of an instance, `None` when the server does not know it.
    pub async fn status_of(&self, app: &str, id: &str) -> Option<(String, String)> {
        let i = self.instance(app, id).await?;
        let over = i
            .get("overriddenStatus")
            .or_else(|| i.get("overriddenstatus"))
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string();
        Some((i["status"].as_str().unwrap_or("").to_string(), over))
    }

    /// Waits until `(status, overriddenStatus)` of the instance is `want` (`None`: unknown to
    /// the server), up to `limit`.
    pub async fn wait_status(
        &self,
        app: &str,
        id: &str,
        want: Option<(&str, &str)>,
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.status_of(app, id).await;
            let matches = match (&got, want) {
                (None, None) => true,
                (Some((s, o)), Some((ws, wo))) => s == ws && o == wo,
                _ => false,
            };
            if matches {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{app}/{id}: wanted {want:?}, the server has {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `PUT apps/{app}/{id}/status?value={status}`: a server-side status override (what Zowe's
    /// and Spring's admin tools send). Returns the HTTP status.
    pub async fn put_override(&self, app: &str, id: &str, status: &str) -> u16 {
        self.request(
            "PUT",
            &format!("apps/{app}/{id}/status?value={status}"),
            None,
        )
        .await
        .unwrap()
        .status
    }

    /// `DELETE apps/{app}/{id}/status`: removes the override (Netflix's
    /// `cancelOverrideStatus`, Spring's `CANCEL_OVERRIDE`). Returns the HTTP status.
    pub async fn delete_override(&self, app: &str, id: &str) -> u16 {
        self.request("DELETE", &format!("apps/{app}/{id}/status"), None)
            .await
            .unwrap()
            .status
    }
}

/// The Spring Boot WebSocket service, registered as `DISCOVERABLECLIENT` by the real Eureka
/// client with the seed's `apiml.routes.ws_v1` metadata, 1 s heartbeats and a 2 s lease.
pub struct SpringService {
    pub jvm: Jvm,
    pub port: u16,
    pub instance_id: String,
    http: reqwest::Client,
}

/// The application name the service registers under.
pub const APP: &str = "DISCOVERABLECLIENT";

impl SpringService {
    /// Starts the process (does not wait; see [`SpringService::wait_up`]).
    pub fn spawn(eureka: &RealEureka, instance_id: &str) -> SpringService {
        Self::spawn_with(eureka, instance_id, &[])
    }

    /// As [`SpringService::spawn`], with more Spring arguments (e.g.
    /// `--eureka.instance.metadata-map.apiml.authentication.scheme=x509`).
    pub fn spawn_with(eureka: &RealEureka, instance_id: &str, extra: &[&str]) -> SpringService {
        let port = free_port();
        let mut args = vec![
            format!("--server.port={port}"),
            format!("--instance-id={instance_id}"),
            format!(
                "--eureka.client.service-url.defaultZone={}",
                eureka.service_url()
            ),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let jvm = Jvm::spawn("ws-service", instance_id, &args);
        SpringService {
            jvm,
            port,
            instance_id: instance_id.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Waits until the server lists this instance UP.
    pub async fn wait_up(&mut self, eureka: &RealEureka) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.jvm.assert_running();
            if let Some((s, _)) = eureka.status_of(APP, &self.instance_id).await {
                if s == "UP" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not register UP:\n{}",
                self.instance_id,
                self.jvm.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts several instances at once and waits until all are UP in the server (and warmed
    /// up).
    pub async fn start_all(eureka: &RealEureka, ids: &[&str]) -> Vec<SpringService> {
        let mut all: Vec<SpringService> = ids.iter().map(|id| Self::spawn(eureka, id)).collect();
        for s in &mut all {
            s.wait_up(eureka).await;
            s.warm_up().await;
        }
        all
    }

    /// One echo session straight to the instance, so its first (slow, cold-JVM) WebSocket
    /// handshake is not one a test times.
    pub async fn warm_up(&self) {
        use futures_util::{SinkExt, StreamExt};
        let url = format!("ws://127.0.0.1:{}/discoverableclient/ws/warm", self.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.instance_id, self.jvm.log_tail()));
        ws.send(tokio_tungstenite::tungstenite::Message::text("warm"))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
        let _ = ws.close(None).await;
    }

    /// Sets the instance's own status (`ApplicationInfoManager.setInstanceStatus`, as a health
    /// check would); the Eureka client registers again with it. No server-side override.
    pub async fn set_own_status(&self, status: &str) {
        let r = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/discoverableclient/status?value={status}",
                self.port
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}
