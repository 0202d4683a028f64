//! Connecting to a target: URL parsing, address resolution (once per run), TCP with
//! `TCP_NODELAY`, TLS 1.3 for `wss://` (rustls, ring; no session resumption), and the RFC 6455
//! client handshake (tokio-tungstenite).
//!
//! With `--http2-streams N` (`wss://` only), sessions are WebSockets over HTTP/2 (RFC 8441)
//! instead: extended CONNECT streams (`:protocol websocket`) with hyper's HTTP/2 client, N per
//! TCP + TLS connection (ALPN `h2`); a new connection is opened when the current one has carried
//! N streams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

use crate::TargetArgs;

/// A client transport: plain TCP (`ws://`), TLS over TCP (`wss://`), or an extended CONNECT
/// stream on an HTTP/2 connection (`--http2-streams`).
pub type Transport =
    Either<Either<TcpStream, TlsStream<TcpStream>>, TokioIo<hyper::upgrade::Upgraded>>;

/// A connected client WebSocket.
pub type Ws = WebSocketStream<Transport>;

/// Everything needed to open one more connection to a target, resolved once.
#[derive(Clone)]
pub struct Connector {
    /// The URL as given.
    pub url: String,
    /// Every address the host resolved to; connections go to `addrs[preferred]` first.
    addrs: Vec<SocketAddr>,
    preferred: Arc<AtomicUsize>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_config: WebSocketConfig,
    timeout: std::time::Duration,
    /// Set with `--http2-streams`: sessions are extended CONNECT streams.
    h2: Option<Arc<H2Pool>>,
}

/// The HTTP/2 connection that new sessions open their streams on.
struct H2Pool {
    /// Streams per connection (`--http2-streams`).
    streams: usize,
    /// The `https://` form of the URL, the `:scheme`, `:authority` and `:path` of each CONNECT.
    uri: http::Uri,
    /// TLS client offering ALPN `h2` only.
    tls: TlsConnector,
    /// The current connection and how many streams it has carried. Held while a new
    /// connection is opened, so concurrent sessions fill one connection before the next.
    current: tokio::sync::Mutex<Option<(SendRequest<Empty<Bytes>>, usize)>>,
}

impl Connector {
    /// Parses `target.url`, resolves its host once and prepares the TLS client for `wss://`.
    ///
    /// `read_buffer` is tungstenite's per-connection read buffer size in bytes.
    ///
    /// # Errors
    /// A URL that is not `ws://` or `wss://` with a host, a host that does not resolve, or an
    /// unreadable `--ca-file`.
    pub async fn new(target: &TargetArgs, read_buffer: usize) -> anyhow::Result<Connector> {
        let uri: http::Uri = target
            .url
            .parse()
            .with_context(|| format!("invalid URL {:?}", target.url))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            other => bail!("URL scheme must be ws or wss, not {other:?}"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("URL {:?} has no host", target.url))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        if addrs.is_empty() {
            bail!("{host} resolves to no address");
        }
        let tls = if secure {
            let config = client_config(target)?;
            let name = ServerName::try_from(host.clone())
                .with_context(|| format!("{host} is not a valid TLS server name"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let h2 = match target.http2_streams {
            None => None,
            Some(0) => bail!("--http2-streams must be at least 1"),
            Some(streams) => {
                if tls.is_none() {
                    bail!("--http2-streams needs a wss:// URL (HTTP/2 is offered over TLS only)");
                }
                let mut config = client_config(target)?;
                config.alpn_protocols = vec![b"h2".to_vec()];
                let mut parts = uri.clone().into_parts();
                parts.scheme = Some(http::uri::Scheme::HTTPS);
                if parts.path_and_query.is_none() {
                    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
                }
                let uri = http::Uri::from_parts(parts).context("the https:// form of the URL")?;
                Some(Arc::new(H2Pool {
                    streams,
                    uri,
                    tls: TlsConnector::from(Arc::new(config)),
                    current: tokio::sync::Mutex::new(None),
                }))
            }
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        Ok(Connector {
            url: target.url.clone(),
            addrs,
            preferred: Arc::new(AtomicUsize::new(0)),
            tls,
            ws_config,
            timeout: target.connect_timeout,
            h2,
        })
    }

    /// Opens one WebSocket connection (TCP, TLS when `wss://`, then the upgrade) within
    /// `--connect-timeout`.
    ///
    /// # Errors
    /// Connect, TLS or handshake failures, with the step that failed, or the time limit.
    pub async fn connect(&self) -> anyhow::Result<Ws> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => bail!(
                "connection not open within {}",
                humantime::format_duration(self.timeout)
            ),
        }
    }

    async fn open(&self) -> anyhow::Result<Ws> {
        if let Some(pool) = &self.h2 {
            return self.open_h2(pool).await;
        }
        let tcp = self.tcp().await?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let io = match &self.tls {
            None => Either::Left(Either::Left(tcp)),
            Some((connector, name)) => Either::Left(Either::Right(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            )),
        };
        let request = self
            .url
            .as_str()
            .into_client_request()
            .context("building the upgrade request")?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, io, Some(self.ws_config))
                .await
                .context("WebSocket handshake")?;
        Ok(ws)
    }
}

impl Connector {
    /// Opens a session as an extended CONNECT stream (RFC 8441) on the current HTTP/2
    /// connection, first opening a new connection when there is none, it is closed, or it has
    /// carried `--http2-streams` streams.
    async fn open_h2(&self, pool: &H2Pool) -> anyhow::Result<Ws> {
        let mut send = {
            let mut current = pool.current.lock().await;
            match current.as_mut() {
                Some((send, used)) if *used < pool.streams && !send.is_closed() => {
                    *used += 1;
                    send.clone()
                }
                _ => {
                    *current = None;
                    let send = self.h2_connection(pool).await?;
                    *current = Some((send.clone(), 1));
                    send
                }
            }
        };
        send.ready().await.context("HTTP/2 connection")?;
        let request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(pool.uri.clone())
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .context("building the extended CONNECT")?;
        let response = send
            .send_request(request)
            .await
            .context("extended CONNECT")?;
        if response.status() != http::StatusCode::OK {
            bail!("extended CONNECT answered {}", response.status());
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .context("extended CONNECT stream")?;
        Ok(WebSocketStream::from_raw_socket(
            Either::Right(TokioIo::new(upgraded)),
            Role::Client,
            Some(self.ws_config),
        )
        .await)
    }

    /// TCP, TLS with ALPN `h2`, the HTTP/2 handshake (the connection is driven by a task of
    /// its own), then one ordinary request: its answer comes after the server's SETTINGS,
    /// which must allow extended CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`) before a client
    /// may send one (RFC 8441 §3). Its status does not matter.
    async fn h2_connection(&self, pool: &H2Pool) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
        let Some((_, name)) = &self.tls else {
            bail!("HTTP/2 needs TLS");
        };
        let tcp = self.tcp().await?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let tls = pool
            .tls
            .connect(name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
            bail!("the server did not select HTTP/2 (ALPN h2)");
        }
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(conn);
        send.ready().await.context("HTTP/2 connection")?;
        let probe = http::Request::builder()
            .method(http::Method::GET)
            .uri(pool.uri.clone())
            .body(Empty::new())
            .context("building the first HTTP/2 request")?;
        let answer = send
            .send_request(probe)
            .await
            .context("first HTTP/2 request (waiting for the server's SETTINGS)")?;
        // Read to the end, so the stream ends cleanly rather than by a reset.
        let _ = answer.into_body().collect().await;
        Ok(send)
    }

    /// TCP to the address that worked last, then to the others in resolver order (a host
    /// such as `localhost` may resolve to `::1` first while the server listens on IPv4 only).
    async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in (0..self.addrs.len()).map(|k| (first + k) % self.addrs.len()) {
            let Some(addr) = self.addrs.get(i) else {
                continue;
            };
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(tcp);
                }
                Err(e) => {
                    last_err = Some(anyhow::Error::new(e).context(format!("TCP connect to {addr}")))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no address to connect to")))
    }
}

/// rustls client config: TLS 1.3 only, no resumption, trusting `--ca-file` (or nothing is
/// checked with `--insecure`).
fn client_config(target: &TargetArgs) -> anyhow::Result<rustls::ClientConfig> {
    let provider = wsrelay::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?;
    let mut config = if target.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoChainCheck(provider)))
            .with_no_client_auth()
    } else {
        let Some(ca) = &target.ca_file else {
            bail!("a wss:// target needs --ca-file or --insecure");
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in wsrelay::tls::load_certs(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("CA certificate in {}", ca.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts any certificate chain and name, but still checks the handshake signatures, so the
/// server pays the same signing cost as with verification on.
#[derive(Debug)]
struct NoChainCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoChainCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads the next text or binary message, skipping pings and pongs.
///
/// # Errors
/// The peer closed (a close frame or EOF), or a transport/protocol error.
pub async fn next_data(ws: &mut Ws) -> anyhow::Result<Message> {
    loop {
        match ws.next().await {
            Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => return Ok(m),
            Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Closes with a close frame and waits (bounded) for the server's answer; errors are ignored.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
        let _ = ws.flush().await;
    })
    .await;
}
