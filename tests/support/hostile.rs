//! Raw peers for the hostile-input tests: byte-level HTTP and WebSocket frames over real
//! sockets, so a test can send what no well-behaved library would.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::support::TestAgent;

/// Time any single read in these tests may take before the test fails.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// A TLS connection to the agent (trusting its test certificate).
pub async fn tls_connect(agent: &TestAgent) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(agent.agent.local_addr).await.unwrap();
    tokio_rustls::TlsConnector::from(agent.cert.client_config())
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// A valid client upgrade request for `path`, with `extra` header lines (each ending `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head (through `\r\n\r\n`); returns it and the bytes read after it.
/// An empty head means the peer closed the connection without answering.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let n = tokio::time::timeout(READ_LIMIT, s.read(&mut chunk))
            .await
            .expect("no answer within the read limit")
            .unwrap_or_default();
        if n == 0 {
            return (String::from_utf8_lossy(&buf).into_owned(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` on a new TLS connection and returns the answer's head and what followed it
/// (up to the end of a `Content-Length` body if there is one).
pub async fn exchange(agent: &TestAgent, request: &[u8]) -> (String, String) {
    let mut s = tls_connect(agent).await;
    s.write_all(request).await.unwrap();
    let (head, mut rest) = read_head(&mut s).await;
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while rest.len() < len {
        match tokio::time::timeout(READ_LIMIT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    (head, String::from_utf8_lossy(&rest).into_owned())
}

/// The status code of a response head (0 when there is none).
pub fn status(head: &str) -> u16 {
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// One WebSocket frame: the first byte (FIN, RSV, opcode) and the payload, masked with `mask`
/// when given (RFC 6455 §5.2, §5.3).
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame as a client sends it.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A close payload: code and reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// A frame as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN, RSV and opcode byte.
    pub first: u8,
    /// Whether it was masked.
    pub masked: bool,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The opcode (low 4 bits).
    pub fn opcode(&self) -> u8 {
        self.first & 0x0f
    }

    /// For a close frame: its code, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Buffered frame reader over a byte stream (keeps bytes read past a frame).
pub struct FrameReader<S> {
    /// The stream.
    pub s: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameReader<S> {
    /// Starts with `leftover` bytes already read from `s`.
    pub fn new(s: S, leftover: Vec<u8>) -> Self {
        FrameReader { s, buf: leftover }
    }

    async fn fill(&mut self, n: usize) -> bool {
        let mut chunk = [0u8; 8192];
        while self.buf.len() < n {
            match tokio::time::timeout(READ_LIMIT, self.s.read(&mut chunk))
                .await
                .expect("no frame within the read limit")
            {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// The next frame, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Frame> {
        if !self.fill(2).await {
            return None;
        }
        let first = self.buf[0];
        let masked = self.buf[1] & 0x80 != 0;
        let (len, mut at) = match self.buf[1] & 0x7f {
            126 => {
                if !self.fill(4).await {
                    return None;
                }
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                if !self.fill(10).await {
                    return None;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let key = if masked {
            if !self.fill(at + 4).await {
                return None;
            }
            let mut k = [0u8; 4];
            k.copy_from_slice(&self.buf[at..at + 4]);
            at += 4;
            Some(k)
        } else {
            None
        };
        if !self.fill(at + len).await {
            return None;
        }
        let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        self.buf.drain(..at + len);
        Some(Frame {
            first,
            masked,
            payload,
        })
    }

    /// Reads frames until a close frame (returned) or the end of the stream (`None`); data
    /// frames seen on the way are returned too.
    pub async fn until_close(&mut self) -> (Vec<Frame>, Option<Frame>) {
        let mut seen = Vec::new();
        while let Some(f) = self.next().await {
            if f.opcode() == 8 {
                return (seen, Some(f));
            }
            seen.push(f);
        }
        (seen, None)
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
        let _ = self.s.flush().await;
    }
}

/// Opens a WebSocket session by hand: upgrade request on TLS, checks the 101, returns a frame
/// reader positioned after the head.
pub async fn raw_session(agent: &TestAgent, path: &str) -> FrameReader<TlsStream<TcpStream>> {
    let mut s = tls_connect(agent).await;
    s.write_all(upgrade_request(path, "").as_bytes())
        .await
        .unwrap();
    let (head, rest) = read_head(&mut s).await;
    assert_eq!(status(&head), 101, "{head}");
    FrameReader::new(s, rest)
}

/// How a [`RawService`] answers an upgrade request.
#[derive(Clone)]
pub enum Answer {
    /// A correct 101 (accept key derived from the request), plus these header lines.
    Upgrade(String),
    /// Exactly these bytes (a wrong 101, garbage, ...).
    Bytes(Vec<u8>),
    /// Nothing: read the request and keep the connection open.
    Silent,
}

/// A hand-made WebSocket service: answers each upgrade as told and hands the connection to
/// the test (through `conns`), with the request head it received.
pub struct RawService {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Accepted connections after the answer: (request head, frame reader).
    pub conns: tokio::sync::mpsc::UnboundedReceiver<(String, FrameReader<TcpStream>)>,
    /// Request heads received (also for refused ones).
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl RawService {
    /// Starts a service answering every upgrade with `answer`.
    pub async fn start(answer: Answer) -> RawService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, conns) = tokio::sync::mpsc::unbounded_channel();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h2 = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (head, rest) = read_head(&mut tcp).await;
                h2.lock().unwrap().push(head.clone());
                match &answer {
                    Answer::Upgrade(extra) => {
                        let key = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case("sec-websocket-key")
                                    .then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default();
                        let resp = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
                            derive_accept_key(key.as_bytes())
                        );
                        let _ = tcp.write_all(resp.as_bytes()).await;
                    }
                    Answer::Bytes(b) => {
                        let _ = tcp.write_all(b).await;
                    }
                    Answer::Silent => {}
                }
                if tx.send((head, FrameReader::new(tcp, rest))).is_err() {
                    break;
                }
            }
        });
        RawService { port, conns, heads }
    }

    /// The next accepted connection (within the read limit).
    pub async fn accept(&mut self) -> (String, FrameReader<TcpStream>) {
        tokio::time::timeout(READ_LIMIT, self.conns.recv())
            .await
            .expect("no connection reached the service")
            .unwrap()
    }
}

/// A log buffer for a test binary: installs (once) a global tracing subscriber at `TRACE`
/// (also taking `log` records from rustls and others) that writes into memory.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// The process-wide buffer; the first call installs the subscriber.
    pub fn global() -> LogBuffer {
        static BUF: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
        BUF.get_or_init(|| {
            let buf = LogBuffer::default();
            let w = buf.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || w.clone())
                .try_init()
                .expect("a subscriber was already installed");
            buf
        })
        .clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
