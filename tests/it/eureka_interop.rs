//! Interop: real third-party Eureka clients against the test Eureka server
//! (`crate::support::eureka::FakeEureka`), then wsrelay routing to the instance they registered.
//!
//! * `py-eureka-client` (PyPI) registers, heartbeats, fetches the registry in full and as
//!   deltas (XML), checks the delta's `apps__hashcode` against its own registry, and cancels.
//! * `eureka-js-client` 4.5.0 (npm; the client Zowe's Node.js enabler uses) does the same in
//!   JSON with gzip.
//!
//! Both are installed by `.ci/run` (pip, and npm into `target/interop-js`). When one is missing
//! the test fails with a message saying so; it is skipped (with the reason printed) only when
//! `WSRELAY_SKIP_INTEROP=1` is set.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::support::eureka::{FakeEureka, TestInstance};
use crate::support::{ServiceOptions, TestAgent, TestService};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SETUP_HINT: &str = "run `bash .ci/run` once (it installs py-eureka-client with pip and eureka-js-client@4.5.0 with npm into target/interop-js), or set WSRELAY_SKIP_INTEROP=1 to skip the interop tests";

/// `Ok` when the tool is there; otherwise fails the test, or returns `Err` (skip) when
/// `WSRELAY_SKIP_INTEROP=1`.
fn require(check: Result<(), String>) -> Result<(), ()> {
    match check {
        Ok(()) => Ok(()),
        Err(reason) if std::env::var("WSRELAY_SKIP_INTEROP").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (WSRELAY_SKIP_INTEROP=1): {reason}");
            Err(())
        }
        Err(reason) => panic!("{reason}: {SETUP_HINT}"),
    }
}

fn python_check() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import py_eureka_client"])
        .output()
        .map_err(|e| format!("python3 cannot be run ({e})"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the Python package py-eureka-client is not installed ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where `.ci/run` installs eureka-js-client (override with `WSRELAY_INTEROP_JS_DIR`).
fn js_dir() -> PathBuf {
    std::env::var_os("WSRELAY_INTEROP_JS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-js"))
}

fn js_check() -> Result<(), String> {
    let pkg = js_dir().join("node_modules/eureka-js-client/package.json");
    let text = std::fs::read_to_string(&pkg)
        .map_err(|e| format!("eureka-js-client is not installed ({}: {e})", pkg.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if v["version"] != "4.5.0" {
        return Err(format!(
            "{} is eureka-js-client {} (4.5.0 expected)",
            pkg.display(),
            v["version"]
        ));
    }
    Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node cannot be run ({e})"))?;
    Ok(())
}

/// A client process speaking a line protocol on stdin/stdout: it prints JSON lines and
/// `READY`/`STOPPED`, and acts on `check`/`stop` lines. Killed when dropped.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(program: &str, script_name: &str, script: &str, args: &[String], cwd: &Path) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let script_path = dir.path().join(script_name);
        std::fs::write(&script_path, script).unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(program)
            .arg(&script_path)
            .args(args)
            .current_dir(cwd)
            .env("NODE_PATH", js_dir().join("node_modules"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            _dir: dir,
        }
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or("").to_owned()
    }

    /// The JSON lines printed before the line `marker`.
    async fn until(&mut self, marker: &str) -> Vec<serde_json::Value> {
        let mut json = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.lines.recv()).await;
            match next {
                Ok(Some(line)) if line.trim() == marker => return json,
                Ok(Some(line)) => {
                    if let Ok(v) = serde_json::from_str(line.trim()) {
                        json.push(v);
                    }
                }
                Ok(None) => panic!(
                    "the client exited before {marker:?}; stderr:\n{}",
                    self.stderr_tail()
                ),
                Err(_) => panic!(
                    "no {marker:?} from the client within 30 s; stderr:\n{}",
                    self.stderr_tail()
                ),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    async fn exited(&mut self) -> bool {
        // Up to 30 s: interpreters start and stop slowly on a loaded 2-core machine.
        for _ in 0..3000 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

const PY_CLIENT: &str = r#"
import asyncio, json, os, sys
import py_eureka_client.eureka_client as ec
import py_eureka_client.eureka_basic as eb

url, port = sys.argv[1], int(sys.argv[2])

def summary(apps):
    return {
        "hash": apps.apps__hashcode,
        "apps": sorted(a.name for a in apps.applications),
        "ids": sorted(i.instanceId for a in apps.applications for i in a.instances),
        "actions": sorted(i.actionType for a in apps.applications for i in a.instances),
    }

async def main():
    loop = asyncio.get_event_loop()
    client = await ec.init_async(
        eureka_server=url, app_name="pyservice", instance_id=f"127.0.0.1:pyservice:{port}",
        instance_host="127.0.0.1", instance_ip="127.0.0.1", instance_port=port,
        renewal_interval_in_secs=1, duration_in_secs=10,
        metadata={"apiml.routes.ws_v1.gatewayUrl": "ws/v1", "apiml.routes.ws_v1.serviceUrl": "/pyservice/ws"})
    full = await eb.get_applications(url)
    delta = await eb.get_delta(url)
    print(json.dumps({"full": summary(full), "delta": summary(delta)}), flush=True)
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    # Two heartbeat/delta cycles of the client's own thread.
    await asyncio.sleep(2.5)
    other = client.applications.get_application("OTHER")
    print(json.dumps({"other": sorted(i.instanceId for i in other.instances)}), flush=True)
    print("CHECKED", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await ec.stop_async()
    print("STOPPED", flush=True)
    sys.stdout.flush()
    os._exit(0)

asyncio.run(main())
"#;

const JS_CLIENT: &str = r#"
const { Eureka } = require('eureka-js-client');
const readline = require('readline');
const [url, port] = process.argv.slice(2);
const u = new URL(url);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const client = new Eureka({
  logger: quiet,
  shouldUseDelta: true,
  instance: {
    app: 'jsservice',
    instanceId: `127.0.0.1:jsservice:${port}`,
    hostName: '127.0.0.1',
    ipAddr: '127.0.0.1',
    statusPageUrl: `http://127.0.0.1:${port}/info`,
    port: { '$': Number(port), '@enabled': true },
    vipAddress: 'jsservice',
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
    metadata: { 'apiml.routes.ws_v1.gatewayUrl': 'ws/v1', 'apiml.routes.ws_v1.serviceUrl': '/jsservice/ws' },
  },
  eureka: {
    host: u.hostname, port: Number(u.port), servicePath: '/eureka/apps/',
    heartbeatInterval: 300, registryFetchInterval: 300, maxRetries: 0,
  },
});
let heartbeats = 0;
client.on('heartbeat', () => { heartbeats += 1; });
const lines = readline.createInterface({ input: process.stdin });
let step = 0;
client.start((err) => {
  if (err) { console.error('start failed', err); process.exit(2); }
  const wait = setInterval(() => {
    if (heartbeats < 2) return;
    clearInterval(wait);
    const ids = (app) => client.getInstancesByAppId(app).map((i) => i.instanceId).sort();
    console.log(JSON.stringify({ self: ids('JSSERVICE'), other: ids('OTHER') }));
    console.log('READY');
  }, 50);
});
lines.on('line', () => {
  step += 1;
  if (step === 1) {
    // Two more fetch intervals: the new instance arrives by delta.
    setTimeout(() => {
      const other = client.getInstancesByAppId('OTHER').map((i) => i.instanceId).sort();
      console.log(JSON.stringify({ other }));
      console.log('CHECKED');
    }, 1000);
  } else {
    client.stop(() => { console.log('STOPPED'); process.exit(0); });
  }
});
"#;

fn requests(e: &FakeEureka) -> Vec<String> {
    e.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

async fn echo_through(agent: &TestAgent, path: &str) {
    let (mut ws, _) = agent.connect(path, &[]).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("hello"));
    ws.close(None).await.unwrap();
}

async fn wsrelay_for(eureka: &FakeEureka) -> TestAgent {
    TestAgent::start_with(
        &format!(
            "[registry]\neureka_urls = [{:?}]\nrefresh_interval = \"100ms\"\n",
            eureka.service_url()
        ),
        "",
        tempfile::tempdir().unwrap(),
    )
    .await
}

async fn wait_routes_gone(agent: &TestAgent, service: &str) {
    for _ in 0..3000 {
        let gone = !agent
            .agent
            .shared
            .routes
            .load()
            .services()
            .iter()
            .any(|s| s.service_id == service);
        if gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{service} is still routed after it left the registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_eureka_client_registers_heartbeats_fetches_and_wsrelay_routes_to_it() {
    if require(python_check()).is_err() {
        return;
    }
    let svc = TestService::start(ServiceOptions::default()).await;
    let eureka = FakeEureka::start().await;
    eureka.add(TestInstance::new("other", "127.0.0.1", 1).id("other-1"));
    let id = format!("127.0.0.1:pyservice:{}", svc.port());
    let mut py = Peer::start(
        "python3",
        "client.py",
        PY_CLIENT,
        &[eureka.service_url(), svc.port().to_string()],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );

    // Registered, and its own full and delta fetches (XML) decode to what the server holds.
    let fetched = py.until("READY").await;
    let fetched = &fetched[0];
    assert_eq!(
        fetched["full"]["apps"],
        serde_json::json!(["OTHER", "PYSERVICE"])
    );
    assert_eq!(fetched["full"]["hash"], eureka.apps_hashcode());
    assert_eq!(fetched["full"]["hash"], "UP_2_");
    assert_eq!(fetched["delta"]["hash"], "UP_2_");
    assert_eq!(
        fetched["delta"]["ids"],
        serde_json::json!([id.clone(), "other-1"])
    );
    assert_eq!(
        fetched["delta"]["actions"],
        serde_json::json!(["ADDED", "ADDED"])
    );
    let inst = eureka.instance("PYSERVICE", &id).expect("registered");
    assert_eq!(inst.port, svc.port());
    assert_eq!(inst.data_center, "MyOwn");

    // Its heartbeat thread: heartbeats and deltas. A new instance reaches its registry by delta,
    // and the hash matches (no reconcile fetch of the full registry).
    eureka.add(TestInstance::new("other", "127.0.0.1", 2).id("other-2"));
    py.send("check");
    let checked = py.until("CHECKED").await;
    assert_eq!(
        checked[0]["other"],
        serde_json::json!(["other-1", "other-2"])
    );
    let log = requests(&eureka);
    // py-eureka-client percent-encodes the `:` of the id (`urllib.parse.quote`).
    let quoted = id.replace(':', "%3A");
    let heartbeat = format!("PUT /eureka/apps/PYSERVICE/{quoted}?status=UP&lastDirtyTimestamp=");
    assert!(log.iter().any(|r| r.starts_with(&heartbeat)), "{log:?}");
    assert!(
        log.iter().any(|r| r == "POST /eureka/apps/PYSERVICE"),
        "{log:?}"
    );
    let deltas = log
        .iter()
        .filter(|r| *r == "GET /eureka/apps/delta")
        .count();
    let fulls = log.iter().filter(|r| *r == "GET /eureka/apps/").count();
    assert!(deltas >= 3, "{log:?}");
    assert_eq!(
        fulls, 2,
        "init + the script's own fetch; no reconcile: {log:?}"
    );

    // wsrelay routes to the instance the Python client registered.
    let agent = wsrelay_for(&eureka).await;
    echo_through(&agent, "/ws/v1/pyservice/chat").await;
    assert_eq!(svc.last_request().path_and_query, "/pyservice/ws/chat");

    // The client cancels on stop; wsrelay's next delta removes the route.
    py.send("stop");
    py.until("STOPPED").await;
    assert!(py.exited().await, "stderr:\n{}", py.stderr_tail());
    assert!(eureka.instance("PYSERVICE", &id).is_none());
    assert!(
        requests(&eureka).contains(&format!("DELETE /eureka/apps/PYSERVICE/{quoted}")),
        "{:?}",
        requests(&eureka)
    );
    wait_routes_gone(&agent, "PYSERVICE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eureka_js_client_registers_heartbeats_fetches_and_wsrelay_routes_to_it() {
    if require(js_check()).is_err() {
        return;
    }
    let svc = TestService::start(ServiceOptions::default()).await;
    let eureka = FakeEureka::start().await;
    eureka.add(TestInstance::new("other", "127.0.0.1", 1).id("other-1"));
    let id = format!("127.0.0.1:jsservice:{}", svc.port());
    let mut js = Peer::start(
        "node",
        "client.js",
        JS_CLIENT,
        &[eureka.service_url(), svc.port().to_string()],
        &js_dir(),
    );

    let ready = js.until("READY").await;
    assert_eq!(ready[0]["self"], serde_json::json!([id.clone()]));
    assert_eq!(ready[0]["other"], serde_json::json!(["other-1"]));
    let inst = eureka.instance("JSSERVICE", &id).expect("registered");
    assert_eq!(inst.port, svc.port());

    eureka.add(TestInstance::new("other", "127.0.0.1", 2).id("other-2"));
    js.send("check");
    let checked = js.until("CHECKED").await;
    assert_eq!(
        checked[0]["other"],
        serde_json::json!(["other-1", "other-2"])
    );
    let all = eureka.requests();
    let log = requests(&eureka);
    assert!(
        log.iter().any(|r| r == "POST /eureka/apps/jsservice"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|r| *r == format!("PUT /eureka/apps/jsservice/{id}")),
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|r| *r == "GET /eureka/apps/").count(),
        1,
        "{log:?}"
    );
    assert!(log.iter().any(|r| r == "GET /eureka/apps/delta"), "{log:?}");
    // JSON with gzip, as the client asks.
    let fetch = all.iter().find(|r| r.path == "/eureka/apps/delta").unwrap();
    assert!(fetch.accept.as_deref().unwrap_or("").contains("json"));
    assert!(fetch
        .accept_encoding
        .as_deref()
        .unwrap_or("")
        .contains("gzip"));

    let agent = wsrelay_for(&eureka).await;
    echo_through(&agent, "/jsservice/ws/v1/chat").await;
    assert_eq!(svc.last_request().path_and_query, "/jsservice/ws/chat");

    js.send("stop");
    js.until("STOPPED").await;
    assert!(js.exited().await, "stderr:\n{}", js.stderr_tail());
    assert!(eureka.instance("JSSERVICE", &id).is_none());
    wait_routes_gone(&agent, "JSSERVICE").await;
}
