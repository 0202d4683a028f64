//! Test support: certificates, test WebSocket services, an in-process agent, and clients.
#![allow(dead_code)]

pub mod eureka;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use wsrelay::config::Config;

/// A self-signed certificate for localhost/127.0.0.1, written to a temp dir.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCert {
    pub fn new() -> TestCert {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) =
            wsrelay::tls::self_signed_pem(&["localhost", "127.0.0.1"]).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &key_pem).unwrap();
        TestCert {
            dir,
            cert_pem,
            key_pem,
        }
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
    /// A rustls client config trusting only this certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in wsrelay::tls::load_certs(&self.cert_path()).unwrap() {
            roots.add(c).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(wsrelay::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
    /// A rustls client config trusting only this certificate and presenting `cert_pem` /
    /// `key_pem` (mutual TLS).
    pub fn client_config_with(&self, cert_pem: &str, key_pem: &str) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in wsrelay::tls::load_certs(&self.cert_path()).unwrap() {
            roots.add(c).unwrap();
        }
        let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(wsrelay::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .unwrap(),
        )
    }
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = wsrelay::tls::load_certified_key(&self.cert_path(), &self.key_path()).unwrap();
        let store = Arc::new(wsrelay::tls::CertStore::new(key));
        Arc::new(wsrelay::tls::server_config(store).unwrap())
    }
}

/// What a test service saw of one upgrade request.
#[derive(Debug, Clone, Default)]
pub struct SeenRequest {
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Close frames a test service received (code, reason), in order.
pub type Closes = Arc<Mutex<Vec<Option<(u16, String)>>>>;

/// How a test service behaves.
#[derive(Clone, Default)]
pub struct ServiceOptions {
    /// Choose this subprotocol if the client offered it.
    pub choose_protocol: Option<String>,
    /// Refuse the upgrade with this HTTP status.
    pub refuse_status: Option<u16>,
    /// Serve wss with this certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept TCP but never answer.
    pub silent: bool,
    /// Told each time a TCP connection is accepted (before the WebSocket handshake).
    pub accepted: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    /// Each handshake waits for a permit of this semaphore (taken and not returned).
    pub hold: Option<Arc<tokio::sync::Semaphore>>,
}

/// A test WebSocket service: echoes text/binary; the text `close:CODE:REASON` makes it close
/// with that code. Records requests and the close frames it received.
pub struct TestService {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    pub closes: Closes,
    /// Every text message received, in order, over all connections.
    pub received: Arc<Mutex<Vec<String>>>,
    token: CancellationToken,
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl TestService {
    pub async fn start(opts: ServiceOptions) -> TestService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closes = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let token = CancellationToken::new();
        let (rq, cl, tk) = (requests.clone(), closes.clone(), token.clone());
        let rx = received.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = tk.cancelled() => break,
                    a = listener.accept() => a.unwrap(),
                };
                let (opts, rq, cl, tk) = (opts.clone(), rq.clone(), cl.clone(), tk.clone());
                let rx = rx.clone();
                tokio::spawn(async move {
                    if let Some(a) = &opts.accepted {
                        let _ = a.send(());
                    }
                    if let Some(h) = &opts.hold {
                        tokio::select! {
                            () = tk.cancelled() => return,
                            p = h.acquire() => p.unwrap().forget(),
                        }
                    }
                    if opts.silent {
                        tk.cancelled().await;
                        drop(tcp);
                        return;
                    }
                    match opts.tls.clone() {
                        Some(cfg) => {
                            let tls = tokio_rustls::TlsAcceptor::from(cfg)
                                .accept(tcp)
                                .await
                                .unwrap();
                            serve_ws(tls, opts, rq, cl, rx, tk).await
                        }
                        None => serve_ws(tcp, opts, rq, cl, rx, tk).await,
                    }
                });
            }
        });
        TestService {
            addr,
            requests,
            closes,
            received,
            token,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn last_request(&self) -> SeenRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request seen")
    }

    /// Stops accepting and drops every open connection (abrupt end, no close frame).
    pub fn kill(&self) {
        self.token.cancel();
    }
}

#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
async fn serve_ws<S>(
    io: S,
    opts: ServiceOptions,
    rq: Arc<Mutex<Vec<SeenRequest>>>,
    cl: Closes,
    rx: Arc<Mutex<Vec<String>>>,
    tk: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        rq.lock().unwrap().push(SeenRequest {
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        });
        if let Some(status) = opts.refuse_status {
            let mut r = ErrorResponse::new(Some("refused by test service".into()));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            return Err(r);
        }
        if let Some(p) = &opts.choose_protocol {
            let offered = req
                .headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .flat_map(|v| {
                    v.to_str()
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .any(|o| &o == p);
            if offered {
                resp.headers_mut()
                    .insert("sec-websocket-protocol", p.parse().unwrap());
            }
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(io, callback).await else {
        return;
    };
    loop {
        let msg = tokio::select! {
            () = tk.cancelled() => return, // abrupt: drop the socket
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) if t.starts_with("close:") => {
                let mut parts = t.splitn(3, ':');
                parts.next();
                let code: u16 = parts.next().unwrap().parse().unwrap();
                let reason = parts.next().unwrap_or("").to_string();
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    })))
                    .await;
                // Drain until the close answer.
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
                return;
            }
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if let Message::Text(t) = &m {
                    rx.lock().unwrap().push(t.to_string());
                }
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            Some(Ok(Message::Close(f))) => {
                cl.lock()
                    .unwrap()
                    .push(f.map(|f| (u16::from(f.code), f.reason.to_string())));
                let _ = ws.close(None).await;
                return;
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
}

/// One instance line for a registry written in XStream XML.
pub struct Inst {
    pub app: &'static str,
    pub id: String,
    pub port: u16,
    pub secure: bool,
    pub status: &'static str,
    pub routes: Vec<(&'static str, &'static str, &'static str)>,
    /// Further metadata entries (key, value), e.g. `apiml.routes.ws__v1.failover`.
    pub metadata: Vec<(String, String)>,
}

impl Inst {
    pub fn new(app: &'static str, id: &str, port: u16) -> Inst {
        Inst {
            app,
            id: id.to_string(),
            port,
            secure: false,
            status: "UP",
            routes: vec![("ws__v1", "ws/v1", "/discoverableclient/ws")],
            metadata: Vec::new(),
        }
    }
}

/// An XStream-layout registry XML for `instances` (hostName 127.0.0.1 or localhost for wss).
pub fn registry_xml(instances: &[Inst]) -> String {
    let mut apps: Vec<&'static str> = instances.iter().map(|i| i.app).collect();
    apps.dedup();
    let mut out = String::from(
        "<applications><versions__delta>1</versions__delta><apps__hashcode></apps__hashcode>",
    );
    for app in apps {
        out.push_str(&format!("<application><name>{app}</name>"));
        for i in instances.iter().filter(|i| i.app == app) {
            let host = if i.secure { "localhost" } else { "127.0.0.1" };
            out.push_str(&format!(
                "<instance><instanceId>{id}</instanceId><hostName>{host}</hostName><app>{app}</app><ipAddr>127.0.0.1</ipAddr><status>{st}</status><overriddenstatus>UNKNOWN</overriddenstatus><port enabled=\"{pe}\">{port}</port><securePort enabled=\"{se}\">{port}</securePort><metadata>",
                id = i.id,
                st = i.status,
                pe = !i.secure,
                se = i.secure,
                port = i.port
            ));
            for (name, g, s) in &i.routes {
                out.push_str(&format!(
                    "<apiml.routes.{name}.gatewayUrl>{g}</apiml.routes.{name}.gatewayUrl><apiml.routes.{name}.serviceUrl>{s}</apiml.routes.{name}.serviceUrl>"
                ));
            }
            for (k, v) in &i.metadata {
                out.push_str(&format!("<{k}>{v}</{k}>"));
            }
            out.push_str("</metadata></instance>");
        }
        out.push_str("</application>");
    }
    out.push_str("</applications>");
    out
}

/// An agent running in-process on 127.0.0.1:0 with TLS from `cert`.
pub struct TestAgent {
    pub agent: wsrelay::Agent,
    pub token: CancellationToken,
    pub cert: Arc<TestCert>,
    pub dir: tempfile::TempDir,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl TestAgent {
    /// Starts an agent with a registry file holding `registry` and extra TOML appended to
    /// each section via `extra` (full TOML tables).
    pub async fn with_registry_file(registry: &str, extra: &str) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry.xml");
        std::fs::write(&reg, registry).unwrap();
        Self::start_with(
            &format!(
                "[registry]\nfile = {:?}\nrefresh_interval = \"1h\"\n",
                reg.display().to_string()
            ),
            extra,
            dir,
        )
        .await
    }

    pub async fn start_with(
        registry_section: &str,
        extra: &str,
        dir: tempfile::TempDir,
    ) -> TestAgent {
        Self::start_with_tls("", registry_section, extra, dir).await
    }

    /// As [`TestAgent::start_with`], with more `[tls]` keys (e.g. `client_ca`).
    pub async fn start_with_tls(
        tls_extra: &str,
        registry_section: &str,
        extra: &str,
        dir: tempfile::TempDir,
    ) -> TestAgent {
        let cert = Arc::new(TestCert::new());
        let ca = cert.cert_path();
        let toml = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n{tls_extra}\n{registry_section}\n[upstream]\nca_file = {:?}\nconnect_timeout = \"2s\"\nhandshake_timeout = \"2s\"\n{extra}",
            cert.cert_path().display().to_string(),
            cert.key_path().display().to_string(),
            ca.display().to_string(),
        );
        let config = Config::from_toml(&toml, None).unwrap();
        let token = CancellationToken::new();
        let agent = wsrelay::start(config, token.clone()).await.unwrap();
        TestAgent {
            agent,
            token,
            cert,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{}", self.agent.local_addr.port(), path)
    }

    /// Connects a WebSocket client over TLS (trusting the agent's certificate).
    pub async fn connect(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<
        (
            WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    > {
        self.connect_with(path, headers, self.cert.client_config())
            .await
    }

    /// As [`TestAgent::connect`] with the TLS client `tls` (e.g. one presenting a client
    /// certificate).
    pub async fn connect_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<
        (
            WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = self.url(path).into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            false,
            Some(Connector::Rustls(tls)),
        )
        .await
    }

    /// An echo [`TestService`] registered as `DISCOVERABLECLIENT` (instance `dc-1`, route
    /// `ws/v1` → `/discoverableclient/ws`) and an agent routing to it, with `extra` TOML.
    pub async fn with_echo_service(extra: &str) -> (TestService, TestAgent) {
        let svc = TestService::start(ServiceOptions::default()).await;
        let agent = TestAgent::with_registry_file(
            &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
            extra,
        )
        .await;
        (svc, agent)
    }

    /// A TLS connection to the agent (trusting its certificate).
    pub async fn tls_stream(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.agent.local_addr)
            .await
            .unwrap();
        tokio_rustls::TlsConnector::from(self.cert.client_config())
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap()
    }

    /// Sends `request` as written over TLS and returns the answer: its head and then
    /// `Content-Length` bytes of body (or what came before the connection closed).
    pub async fn raw_request(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = self.tls_stream().await;
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len || n == 0 {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    }

    /// `GET path` with `extra_headers` (each ending in CRLF): (status, head, body).
    pub async fn get(&self, path: &str, extra_headers: &str) -> (u16, String, String) {
        let text = self
            .raw_request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}\r\n"))
            .await;
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_string(), body.to_string())
    }

    /// `GET path` parsed as JSON: (status, body or Null).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = self.get(path, "").await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits (up to 15 s) until the live session count is `n`.
    pub async fn wait_sessions(&self, n: usize) {
        for _ in 0..1500 {
            if self.agent.live_sessions() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "live sessions: {} (expected {n})",
            self.agent.live_sessions()
        );
    }
}

/// Reads messages until a close frame; returns (code, reason).
pub async fn read_close<S>(ws: &mut WebSocketStream<S>) -> Option<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no close within 5 s")
        {
            Some(Ok(Message::Close(f))) => {
                // Flush our close answer, as a live peer does.
                let _ = ws.flush().await;
                return f.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The HTTP status and JSON body of a refused upgrade.
pub fn refused(e: tokio_tungstenite::tungstenite::Error) -> (u16, serde_json::Value) {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let status = resp.status().as_u16();
            let body = resp.body().clone().unwrap_or_default();
            (
                status,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            )
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// Reads an HTTP request head from `tcp` (up to and including the blank line, or until the
/// connection ends) and returns it; for test servers that answer any request the same way.
pub async fn read_request_head(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}
