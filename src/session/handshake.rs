//! The client's upgrade request: validation (RFC 6455 §4.2.1), route resolution, upstream
//! connect and handshake (before answering the client), and the 101 answer.
//!
//! Forwarded to the service: every end-to-end request header (including `Authorization` and
//! `Cookie`), `Sec-WebSocket-Protocol` as the client offered it, and `X-Forwarded-For`
//! (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port`. Not copied:
//! hop-by-hop headers (RFC 9110 §7.6.1, plus those named in `Connection`), `Host`,
//! `Sec-WebSocket-Key/Accept/Version/Extensions`: extensions are negotiated on each leg on its
//! own (permessage-deflate, RFC 7692, [`crate::ws::deflate`]), never passed through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::close::HandshakeError;
use crate::routing::{Endpoint, Scheme};

/// A WebSocket over an upgraded HTTP/1.1 connection (plain or TLS underneath).
pub type Ws = crate::ws::leg::Leg<TokioIo<Upgraded>>;

/// What was checked and extracted from a valid client upgrade request.
#[derive(Debug)]
pub struct ClientUpgrade {
    /// The client's `Sec-WebSocket-Key` (echoed through `Sec-WebSocket-Accept`); `None` for an
    /// extended CONNECT over HTTP/2 (RFC 8441 §5, which has no key).
    pub key: Option<HeaderValue>,
    /// Subprotocols the client offered, in order (from all `Sec-WebSocket-Protocol` headers).
    pub protocols: Vec<String>,
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Validates a client's upgrade request (RFC 6455 §4.2.1).
///
/// # Errors
/// [`HandshakeError::UpgradeRequired`] (426) when it is not an upgrade to `websocket` or the
/// version is not 13; [`HandshakeError::BadRequest`] (400) for a wrong method or HTTP version,
/// a missing `Connection: upgrade`, a bad `Sec-WebSocket-Key`, no or two `Host` headers, or a
/// request body (`Content-Length` other than 0, or `Transfer-Encoding`).
///
/// Over HTTP/2 the upgrade is an extended CONNECT (RFC 8441 §4, §5): method `CONNECT`,
/// `:protocol` `websocket`, `Sec-WebSocket-Version: 13`, no key; anything else there is a 400
/// (426 and its `Upgrade` header do not exist in HTTP/2).
pub fn validate_upgrade<B>(req: &Request<B>) -> Result<ClientUpgrade, HandshakeError> {
    let h = req.headers();
    if req.version() == Version::HTTP_2 {
        let websocket = req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if req.method() != Method::CONNECT || !websocket {
            return Err(HandshakeError::BadRequest(
                "this path is a WebSocket route: over HTTP/2 send an extended CONNECT with :protocol websocket (RFC 8441)".into(),
            ));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(HandshakeError::BadRequest(
                "unsupported or missing Sec-WebSocket-Version (13 is supported)".into(),
            ));
        }
        return Ok(ClientUpgrade {
            key: None,
            protocols: offered_protocols(h),
        });
    }
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(HandshakeError::UpgradeRequired(
            "this path is a WebSocket route: send an upgrade request (Upgrade: websocket)".into(),
        ));
    }
    if req.method() != Method::GET {
        return Err(HandshakeError::BadRequest(
            "a WebSocket upgrade must use GET".into(),
        ));
    }
    if req.version() != Version::HTTP_11 {
        return Err(HandshakeError::BadRequest(
            "a WebSocket upgrade needs HTTP/1.1".into(),
        ));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadRequest(
            "missing `Connection: Upgrade`".into(),
        ));
    }
    match h.get_all(header::HOST).iter().count() {
        1 => {}
        0 => {
            // RFC 9112 §3.2: a request without Host is answered with 400.
            return Err(HandshakeError::BadRequest("missing Host header".into()));
        }
        _ => {
            return Err(HandshakeError::BadRequest(
                "more than one Host header".into(),
            ))
        }
    }
    // The opening handshake is a GET without a body (RFC 6455 §4.1): body bytes would be
    // read as WebSocket frames after the upgrade.
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(HandshakeError::BadRequest(
            "a WebSocket upgrade request must not have a body".into(),
        ));
    }
    match h
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
    {
        Some(b"13") => {}
        _ => {
            return Err(HandshakeError::UpgradeRequired(
                "unsupported or missing Sec-WebSocket-Version (13 is supported)".into(),
            ))
        }
    }
    let mut keys = h.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) if is_valid_key(k.as_bytes()) => k.clone(),
        _ => {
            return Err(HandshakeError::BadRequest(
                "missing or invalid Sec-WebSocket-Key (base64 of 16 bytes)".into(),
            ))
        }
    };
    Ok(ClientUpgrade {
        key: Some(key),
        protocols: offered_protocols(h),
    })
}

/// The subprotocols offered, in order (from all `Sec-WebSocket-Protocol` headers).
fn offered_protocols(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A `Sec-WebSocket-Key` is base64 of 16 bytes: 22 base64 characters and `==`.
fn is_valid_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k.get(..22).is_some_and(|s| {
            s.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        })
}

/// The answer that opens the client's WebSocket: 101 with `Sec-WebSocket-Accept` for its key
/// (HTTP/1.1), or 200 to an extended CONNECT (`key` `None`, HTTP/2, RFC 8441 §5); with the
/// subprotocol the service chose (if any) and the client leg's `Sec-WebSocket-Extensions`
/// answer (if any).
pub fn switching_protocols<B: Default>(
    key: Option<&HeaderValue>,
    protocol: Option<&HeaderValue>,
    extensions: Option<&HeaderValue>,
) -> Response<B> {
    let mut resp = Response::new(B::default());
    let h = resp.headers_mut();
    if let Some(key) = key {
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
    }
    *resp.status_mut() = match key {
        Some(_) => StatusCode::SWITCHING_PROTOCOLS,
        None => StatusCode::OK,
    };
    let h = resp.headers_mut();
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    if let Some(e) = extensions {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, e.clone());
    }
    resp
}

/// Request headers never copied to the service: hop-by-hop ones, those wsrelay sets itself,
/// and the client-certificate identity headers that services using Zowe's `x509`
/// authentication scheme trust (`X-Certificate-Public`, `X-Certificate-DistinguishedName`,
/// `X-Certificate-CommonName`, as `X509Scheme.ALL_HEADERS`, and `Client-Cert`, RFC 9440): only
/// a gateway may set them from a verified certificate, so a client's copies are dropped, as the
/// Zowe v3 gateway's `HeaderSanitizerFilter` does (issue 16 item 1); and
/// `X-Zowe-Auth-Failure`, which only the gateway says (see [`super::x509`]). Names compare in lower
/// case (`HeaderName` is lower case).
fn is_not_forwarded(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "sec-websocket-key"
            | "sec-websocket-accept"
            | "sec-websocket-version"
            | "sec-websocket-extensions"
            | "sec-websocket-protocol"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-certificate-public"
            | "x-certificate-distinguishedname"
            | "x-certificate-commonname"
            | "client-cert"
            | "client-cert-chain"
            | "x-zowe-auth-failure"
    )
}

/// Who the client is, for the `X-Forwarded-*` headers and Zowe's `x509` scheme.
#[derive(Debug, Clone)]
pub struct ClientSide {
    /// The client's socket address.
    pub peer: SocketAddr,
    /// Whether the client connected with TLS.
    pub tls: bool,
    /// The listener's port.
    pub local_port: u16,
    /// The DER of the client certificate the listener verified (mutual TLS), if one was sent.
    pub cert: Option<std::sync::Arc<[u8]>>,
    /// The connection speaks HTTP/2 (ALPN `h2`): upgrades are extended CONNECTs (RFC 8441).
    pub http2: bool,
}

/// What a service is told about the client's certificate (Zowe's `x509` scheme, see
/// [`super::x509`]).
#[derive(Debug, Clone)]
pub enum Identity {
    /// The service does not use the `x509` scheme: nothing.
    NotAsked,
    /// The headers made from the verified client certificate.
    Certificate(Vec<(HeaderName, HeaderValue)>),
    /// The service uses the scheme but the client sent no certificate:
    /// `X-Zowe-Auth-Failure: ZWEAG167E ...`, as Zowe does.
    NoCertificate,
}

impl Identity {
    /// What `service` is told about `client`.
    ///
    /// # Errors
    /// [`HandshakeError::BadRequest`] when the verified certificate cannot be read.
    pub fn of(
        service: &crate::routing::Service,
        client: &ClientSide,
    ) -> Result<Identity, HandshakeError> {
        let Some(which) = service.x509 else {
            return Ok(Identity::NotAsked);
        };
        match &client.cert {
            None => Ok(Identity::NoCertificate),
            Some(der) => super::x509::headers(der, which)
                .map(Identity::Certificate)
                .map_err(HandshakeError::BadRequest),
        }
    }
}

/// What goes to the service besides the instance: the request as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// `{serviceUrl}/{path}` with the query.
    pub path: &'a str,
    /// The client's request headers (filtered by [`is_not_forwarded`]).
    pub headers: &'a HeaderMap,
    /// The subprotocols to offer.
    pub offered: &'a [String],
    /// Who the client is.
    pub client: &'a ClientSide,
    /// The client-certificate headers, for `x509` services.
    pub identity: &'a Identity,
    /// permessage-deflate to offer the service (`None`: offer no extension).
    pub deflate: Option<&'a crate::config::DeflateConfig>,
}

/// Builds the upstream upgrade request for `fwd` on `ep`.
fn upstream_request(
    ep: &Endpoint,
    fwd: &Forward<'_>,
    key: &str,
) -> Result<Request<http_body_util::Empty<bytes::Bytes>>, HandshakeError> {
    let Forward {
        path,
        headers: client_headers,
        offered,
        client,
        identity,
        deflate,
    } = *fwd;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(http_body_util::Empty::new())
        .map_err(|e| {
            HandshakeError::BadRequest(format!("cannot build the upstream request: {e}"))
        })?;
    let h = req.headers_mut();
    // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    let named: Vec<String> = client_headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in client_headers {
        if is_not_forwarded(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        h.append(name.clone(), value.clone());
    }
    let host = if ep.host.contains(':') {
        format!("[{}]:{}", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.host, ep.port)
    };
    let bad = |what: &str| {
        HandshakeError::BadGateway(format!("cannot build the {what} header for the service"))
    };
    h.insert(
        header::HOST,
        HeaderValue::from_str(&host).map_err(|_| bad("Host"))?,
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    h.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(key).map_err(|_| bad("Sec-WebSocket-Key"))?,
    );
    if !offered.is_empty() {
        let joined = offered.join(", ");
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&joined)
                .map_err(|_| HandshakeError::BadRequest("bad Sec-WebSocket-Protocol".into()))?,
        );
    }
    if let Some(cfg) = deflate {
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            crate::ws::deflate::offer(cfg),
        );
    }
    // X-Forwarded-For: append the client to any list it brought.
    let ip = client.peer.ip().to_string();
    let xff = match client_headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    h.remove("x-forwarded-for");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    if let Some(v) = client_headers.get(header::HOST) {
        h.insert("x-forwarded-host", v.clone());
    }
    h.insert("x-forwarded-port", HeaderValue::from(client.local_port));
    match identity {
        Identity::NotAsked => {}
        Identity::Certificate(set) => {
            for (name, value) in set {
                h.insert(name.clone(), value.clone());
            }
        }
        Identity::NoCertificate => {
            h.insert(
                super::x509::AUTH_FAILURE,
                HeaderValue::from_static(super::x509::NO_CERTIFICATE),
            );
        }
    }
    Ok(req)
}

/// Settings for connecting to a service.
#[derive(Clone)]
pub struct UpstreamSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time for the service's answer to the upgrade.
    pub handshake_timeout: Duration,
    /// TLS client configuration for `wss` services (roots or verifier, resumption store);
    /// the service leg runs on [`crate::tls::stream::connect`].
    pub tls: Arc<rustls::ClientConfig>,
    /// Frame and message limits of the service leg.
    pub limits: crate::ws::leg::Limits,
}

/// A connected, upgraded service leg.
pub struct Connected {
    /// The WebSocket to the service.
    pub ws: Ws,
    /// The subprotocol the service chose (already checked to be one the client offered).
    pub protocol: Option<HeaderValue>,
    /// Time from the start of the TCP connect to the 101 answer.
    pub elapsed: Duration,
    /// The connection's local address (the client address the service sees).
    pub local_addr: Option<SocketAddr>,
}

/// Whether a failed attempt may be retried on another instance (connect-level failures only;
/// an HTTP answer from the service is final).
pub fn is_retryable(e: &HandshakeError) -> bool {
    matches!(
        e,
        HandshakeError::BadGateway(_) | HandshakeError::GatewayTimeout(_)
    )
}

/// The URI a client asked for, as Tomcat's `WsHandshakeRequest.buildRequestUri` writes it
/// (Zowe v2's `gatewayPath`): `ws` or `wss`, the `Host` header (the listener's port when it has
/// none), the path and the query as sent, e.g. `wss://gw:10010/ws/v1/svc/echo?x=1`. Kept for
/// the session's life, so cut to [`MAX_SHOWN_URI`] bytes (ending in `…`).
pub fn request_uri<B>(req: &Request<B>, client: &ClientSide) -> String {
    let scheme = if client.tls { "wss" } else { "ws" };
    let uri = req.uri();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty());
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = match host {
        Some(h) => format!("{scheme}://{h}{pq}"),
        None => format!("{scheme}://localhost:{}{pq}", client.local_port),
    };
    if out.len() > MAX_SHOWN_URI {
        let mut end = MAX_SHOWN_URI - '…'.len_utf8();
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// The longest `gatewayPath` kept per session, in bytes.
pub const MAX_SHOWN_URI: usize = 1024;

/// The URL of the service leg, e.g. `wss://host:10012/discoverableclient/ws/echo?x=1`.
pub fn upstream_url(ep: &Endpoint, path: &str) -> String {
    if ep.host.contains(':') {
        format!("{}://[{}]:{}{}", ep.scheme.as_str(), ep.host, ep.port, path)
    } else {
        format!("{}://{}:{}{}", ep.scheme.as_str(), ep.host, ep.port, path)
    }
}

/// Connects to `ep` (TCP, TLS for `wss`), sends the upgrade request for `path`, checks the
/// answer (RFC 6455 §4.2.2 / §4.1 client rules) and returns the upgraded service leg.
///
/// # Errors
/// [`HandshakeError::GatewayTimeout`] when connect or handshake time out,
/// [`HandshakeError::BadGateway`] when the connection is refused, TLS fails, or the answer is
/// not a valid 101 (wrong `Sec-WebSocket-Accept`, subprotocol not offered),
/// [`HandshakeError::UpstreamStatus`] for a non-101 HTTP status.
pub async fn connect(
    ep: &Endpoint,
    service_id: &str,
    fwd: &Forward<'_>,
    s: &UpstreamSettings,
) -> Result<Connected, HandshakeError> {
    let offered = fwd.offered;
    let started = Instant::now();
    let url = || upstream_url(ep, "");
    let tcp = match tokio::time::timeout(
        s.connect_timeout,
        TcpStream::connect((ep.host.as_str(), ep.port)),
    )
    .await
    {
        Err(_) => {
            return Err(HandshakeError::GatewayTimeout(format!(
                "connecting to {} timed out after {:?}",
                url(),
                s.connect_timeout
            )))
        }
        Ok(Err(e)) => {
            return Err(HandshakeError::BadGateway(format!(
                "cannot connect to {}: {e}",
                url()
            )))
        }
        Ok(Ok(t)) => t,
    };
    let _ = tcp.set_nodelay(true);
    let local_addr = tcp.local_addr().ok();
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let req = upstream_request(ep, fwd, &key)?;

    let remaining = s.connect_timeout.saturating_sub(started.elapsed());
    let answer = match ep.scheme {
        Scheme::Ws => handshake(TokioIo::new(tcp), req, s.handshake_timeout, &url()).await?,
        Scheme::Wss => {
            let name = rustls_pki_types::ServerName::try_from(ep.host.clone()).map_err(|_| {
                HandshakeError::BadGateway(format!("{:?} is not a valid TLS server name", ep.host))
            })?;
            let tls = crate::tls::stream::connect(tcp, Arc::clone(&s.tls), name);
            let tls = match tokio::time::timeout(remaining, tls).await {
                Err(_) => {
                    return Err(HandshakeError::GatewayTimeout(format!(
                        "TLS handshake with {} timed out",
                        url()
                    )))
                }
                Ok(Err(e)) => {
                    return Err(HandshakeError::BadGateway(format!(
                        "TLS handshake with {} failed: {e}",
                        url()
                    )))
                }
                Ok(Ok(t)) => t,
            };
            handshake(TokioIo::new(tls), req, s.handshake_timeout, &url()).await?
        }
    };
    let (resp, upgraded) = match answer {
        Answer::Upgraded(r, u) => (r, u),
        Answer::Status(status) => {
            return Err(HandshakeError::UpstreamStatus {
                service: service_id.to_owned(),
                url: url(),
                status,
            })
        }
    };

    // RFC 6455 §4.1: the answer must carry the right Sec-WebSocket-Accept and upgrade headers.
    let h = resp.headers();
    let expected = derive_accept_key(key.as_bytes());
    if h.get(header::SEC_WEBSOCKET_ACCEPT)
        .map(HeaderValue::as_bytes)
        != Some(expected.as_bytes())
    {
        return Err(HandshakeError::BadGateway(format!(
            "{} answered with a wrong Sec-WebSocket-Accept",
            url()
        )));
    }
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadGateway(format!(
            "{} answered 101 without Upgrade: websocket",
            url()
        )));
    }
    // RFC 6455 §4.1 (client rule 6): an answer may select only what was offered, at most
    // permessage-deflate (RFC 7692 §7.1), once.
    let mut exts = h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter();
    let deflate = match (exts.next(), exts.next(), fwd.deflate) {
        (None, _, _) => None,
        (Some(ext), None, Some(cfg)) => Some(
            crate::ws::deflate::accept_response(ext, cfg)
                .map(|a| crate::ws::deflate::Codec::new(a, cfg))
                .map_err(|e| {
                    HandshakeError::BadGateway(format!(
                        "{} answered the permessage-deflate offer wrongly: {e}",
                        url()
                    ))
                })?,
        ),
        (Some(ext), _, _) => {
            return Err(HandshakeError::BadGateway(format!(
                "{} selected extension {:?}, which was not offered",
                url(),
                String::from_utf8_lossy(ext.as_bytes())
            )))
        }
    };
    // RFC 6455 §4.2.2 / §11.3.4: at most one Sec-WebSocket-Protocol, holding one value.
    if h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().count() > 1 {
        return Err(HandshakeError::BadGateway(format!(
            "{} answered with more than one Sec-WebSocket-Protocol header",
            url()
        )));
    }
    let protocol = h.get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
    if let Some(p) = &protocol {
        let chosen = p.to_str().unwrap_or("");
        if !offered.iter().any(|o| o == chosen) {
            return Err(HandshakeError::BadGateway(format!(
                "{} chose subprotocol {chosen:?}, which the client did not offer",
                url()
            )));
        }
    }
    let ws = crate::ws::leg::Leg::new(TokioIo::new(upgraded), Role::Client, s.limits)
        .with_deflate(deflate);
    Ok(Connected {
        ws,
        protocol,
        elapsed: started.elapsed(),
        local_addr,
    })
}

/// Either a 101 response with the upgraded connection, or the service's non-101 status.
enum Answer {
    Upgraded(Response<hyper::body::Incoming>, Upgraded),
    Status(u16),
}

/// HTTP/1.1 client handshake on `io`, driving the connection in this task until upgraded.
/// `url` names the service in error messages.
async fn handshake<I>(
    io: I,
    req: Request<http_body_util::Empty<bytes::Bytes>>,
    limit: Duration,
    url: &str,
) -> Result<Answer, HandshakeError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let work = async move {
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
            .await
            .map_err(|e| {
                HandshakeError::BadGateway(format!("HTTP handshake with {url} failed: {e}"))
            })?;
        let mut conn = conn.with_upgrades();
        // The connection future may finish first (it ends once it hands the upgraded socket
        // over), so keep waiting for the response after a clean end.
        let send = sender.send_request(req);
        tokio::pin!(send);
        let mut conn_done = false;
        let resp = loop {
            tokio::select! {
                r = &mut send => break r.map_err(|e| HandshakeError::BadGateway(format!("{url} did not answer the upgrade: {e}")))?,
                c = &mut conn, if !conn_done => {
                    if let Err(e) = c {
                        return Err(HandshakeError::BadGateway(format!("the connection to {url} failed: {e}")));
                    }
                    conn_done = true;
                }
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Answer::Status(resp.status().as_u16()));
        }
        let (parts, body) = resp.into_parts();
        let mut resp = Response::from_parts(parts, ());
        let on = hyper::upgrade::on(&mut resp);
        let up = if conn_done {
            on.await
        } else {
            let (up, c) = tokio::join!(on, conn);
            if let Err(e) = c {
                return Err(HandshakeError::BadGateway(format!(
                    "the connection to {url} failed during the upgrade: {e}"
                )));
            }
            up
        };
        let upgraded =
            up.map_err(|e| HandshakeError::BadGateway(format!("upgrade with {url} failed: {e}")))?;
        let (parts, ()) = resp.into_parts();
        Ok(Answer::Upgraded(
            Response::from_parts(parts, body),
            upgraded,
        ))
    };
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(HandshakeError::GatewayTimeout(format!(
            "{url} did not answer the upgrade within {limit:?}"
        ))),
        Ok(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const OK: [(&str, &str); 5] = [
        ("host", "gw:10010"),
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn valid_upgrade_and_protocol_list() {
        let mut h = OK.to_vec();
        h.push(("sec-websocket-protocol", "a, b"));
        h.push(("sec-websocket-protocol", "c"));
        let u = validate_upgrade(&req(&h)).unwrap();
        assert_eq!(u.protocols, vec!["a", "b", "c"]);
        let r: Response<()> = switching_protocols(u.key.as_ref(), None, None);
        assert_eq!(
            r.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn malformed_upgrades_are_4xx() {
        let without = |name: &str| {
            OK.iter()
                .copied()
                .filter(|(k, _)| *k != name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            validate_upgrade(&req(&without("upgrade")))
                .unwrap_err()
                .status(),
            426
        );
        assert_eq!(
            validate_upgrade(&req(&without("connection")))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            validate_upgrade(&req(&without("sec-websocket-version")))
                .unwrap_err()
                .status(),
            426
        );
        assert_eq!(
            validate_upgrade(&req(&without("sec-websocket-key")))
                .unwrap_err()
                .status(),
            400
        );
        let mut bad_key = without("sec-websocket-key");
        bad_key.push(("sec-websocket-key", "short"));
        assert_eq!(validate_upgrade(&req(&bad_key)).unwrap_err().status(), 400);
        let mut v8 = without("sec-websocket-version");
        v8.push(("sec-websocket-version", "8"));
        assert_eq!(validate_upgrade(&req(&v8)).unwrap_err().status(), 426);
        let mut two_hosts = OK.to_vec();
        two_hosts.push(("host", "a"));
        two_hosts.push(("host", "b"));
        assert_eq!(
            validate_upgrade(&req(&two_hosts)).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn no_host_or_a_body_is_400() {
        let e = validate_upgrade(&req(&OK[1..])).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (StatusCode::BAD_REQUEST, "missing Host header".into())
        );
        for extra in [("content-length", "5"), ("transfer-encoding", "chunked")] {
            let mut h = OK.to_vec();
            h.push(extra);
            let e = validate_upgrade(&req(&h)).unwrap_err();
            assert_eq!(e.status(), 400, "{extra:?}");
            assert!(e.to_string().contains("body"), "{e}");
        }
        let mut h = OK.to_vec();
        h.push(("content-length", "0"));
        assert!(validate_upgrade(&req(&h)).is_ok());
    }

    #[test]
    fn forwarded_headers() {
        let ep = Endpoint {
            instance_id: "i".into(),
            host: "svc".into(),
            port: 8080,
            scheme: Scheme::Ws,
            status: crate::registry::Status::Up,
        };
        let mut h = HeaderMap::new();
        for (k, v) in OK {
            h.insert(k, HeaderValue::from_static(v));
        }
        h.insert("authorization", HeaderValue::from_static("Basic dTpw"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        h.insert("host", HeaderValue::from_static("gw:10010"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-drop-me", HeaderValue::from_static("1"));
        h.insert(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate"),
        );
        h.insert("connection", HeaderValue::from_static("Upgrade, X-Drop-Me"));
        let client = ClientSide {
            peer: "127.0.0.2:5555".parse().unwrap(),
            tls: true,
            local_port: 10010,
            cert: None,
            http2: false,
        };
        let fwd = Forward {
            path: "/p?q=1",
            headers: &h,
            offered: &["chat".into()],
            client: &client,
            identity: &Identity::NotAsked,
            deflate: None,
        };
        let r = upstream_request(&ep, &fwd, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap();
        let rh = r.headers();
        assert_eq!(r.uri(), "/p?q=1");
        assert_eq!(rh["authorization"], "Basic dTpw");
        assert_eq!(rh["cookie"], "a=b");
        assert_eq!(rh["host"], "svc:8080");
        assert_eq!(rh["x-forwarded-for"], "10.1.1.1, 127.0.0.2");
        assert_eq!(rh["x-forwarded-proto"], "https");
        assert_eq!(rh["x-forwarded-host"], "gw:10010");
        assert_eq!(rh["x-forwarded-port"], "10010");
        assert_eq!(rh["sec-websocket-protocol"], "chat");
        assert_eq!(rh["sec-websocket-key"], "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(rh.get("keep-alive").is_none());
        assert!(rh.get("x-drop-me").is_none());
        // The client's offer is not passed through: each leg negotiates its own.
        assert!(rh.get("sec-websocket-extensions").is_none());
        let cfg = crate::config::DeflateConfig::default();
        let fwd = Forward {
            deflate: Some(&cfg),
            ..fwd
        };
        let r = upstream_request(&ep, &fwd, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap();
        assert_eq!(
            r.headers()["sec-websocket-extensions"],
            crate::ws::deflate::offer(&cfg)
        );
    }
}
