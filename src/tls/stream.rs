//! TLS streams on rustls' unbuffered API, for both legs: they hold no buffer while the
//! connection is idle (issues 7 and 18).
//!
//! `tokio_rustls` drives rustls' buffered `ServerConnection` / `ClientConnection`, whose record
//! read buffer is resized to 4 KiB (and zero-filled) before every read and never given back, so
//! every idle session kept 4 KiB per TLS leg for it. [`TlsStream`] drives the unbuffered
//! connections instead (`UnbufferedServerConnection` for the listener, [`ServerTls`];
//! `UnbufferedClientConnection` for `wss` services, [`ClientTls`]) and owns its buffers:
//! received ciphertext is kept only until it is processed, decrypted plaintext only until it
//! is read, and encrypted output only until it is written. The TLS protocol itself
//! (handshake, certificate resolver and hot reload, certificate verification, client
//! authentication, key updates, session tickets, alerts, `close_notify`) stays entirely in
//! rustls; one state machine serves both sides ([`Side`]).
//!
//! [`accept`] and [`connect`] run the handshake; [`TlsStream`] then implements tokio's
//! `AsyncRead` and `AsyncWrite` for hyper and the relay. A write is taken once it is encrypted
//! into the output (written out at once if the socket allows, else on the next write or
//! flush); a flush writes everything out. A clean `close_notify` reads as end of stream; the
//! transport ending inside a record is an `UnexpectedEof` error.

use std::io;
use std::ops::DerefMut;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedConnectionCommon,
    UnbufferedStatus,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of the socket per read (a TLS record is at most about 16 KiB).
const READ_CHUNK: usize = 16 * 1024;
/// Encrypted output above which a write waits until some of it is sent (bytes).
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Plaintext taken per `poll_write` call (bytes): a large message is encrypted a slice at a
/// time, so the encrypted output never holds a second copy of it (issue 14 item 4); the
/// caller's write loop hands over the rest.
pub const MAX_PLAINTEXT_PER_WRITE: usize = 64 * 1024;

/// One side of a TLS connection on rustls' unbuffered API: the server
/// (`UnbufferedServerConnection`, the listener) or the client (`UnbufferedClientConnection`,
/// `wss` services). rustls defines `process_tls_records` once per side; this trait names it
/// once, so [`TlsStream`] has one state machine for both.
pub trait Side: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> + Unpin {
    /// rustls' per-side connection data (`ServerConnectionData` or `ClientConnectionData`).
    type Data;
    /// Who is at the other end, for error messages: `"client"` or `"server"`.
    const PEER: &'static str;
    /// Whether wsrelay is the server: the peer speaks first, so a peer that closes before
    /// sending a byte is a TCP probe, not a failed handshake.
    const SERVER: bool;
    /// rustls' `process_tls_records` for this side: processes the records in `incoming` until
    /// the connection reaches a new state.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    const PEER: &'static str = "client";
    const SERVER: bool = true;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    const PEER: &'static str = "server";
    const SERVER: bool = false;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
}

/// The listener's TLS stream: wsrelay is the server (see [`accept`]).
pub type ServerTls<IO> = TlsStream<IO, UnbufferedServerConnection>;

/// A `wss` service leg's TLS stream: wsrelay is the client (see [`connect`]).
pub type ClientTls<IO> = TlsStream<IO, UnbufferedClientConnection>;

/// What the state machine waits for when [`TlsStream::advance`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The handshake needs more bytes from the peer.
    Handshake,
    /// Nothing to do: application data may flow.
    Traffic,
    /// Both sides sent `close_notify`.
    Closed,
}

/// A TLS connection over `IO`, wsrelay being side `C` ([`ServerTls`] or [`ClientTls`]; see
/// the module doc).
pub struct TlsStream<IO, C> {
    io: IO,
    conn: C,
    /// Received ciphertext not yet processed; no allocation while empty.
    incoming: BytesMut,
    /// Encrypted output not yet written, from `out_pos`; no allocation once written.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// Decrypted plaintext not yet read; no allocation once read.
    plain: BytesMut,
    /// The peer sent `close_notify` (clean end of its data).
    peer_closed: bool,
    /// The transport ended.
    eof: bool,
    /// Our `close_notify` is queued or sent.
    close_sent: bool,
    /// rustls reported an error: the connection is unusable and rustls is not asked again.
    failed: bool,
}

/// The room an encoder asked for, if that was its complaint.
fn room_for_encode(err: EncodeError) -> Option<usize> {
    match err {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// The room an encryption asked for, if that was its complaint.
fn room_for_encrypt(err: EncryptError) -> Option<usize> {
    match err {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs `f` on spare room at the end of `out` (growing it as `f` asks) and keeps the bytes
/// `f` wrote.
fn append_with(
    out: &mut Vec<u8>,
    first_guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = first_guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return Err(io::Error::other("TLS output could not be encoded"));
            }
        }
    }
}

impl<IO, C: Side> TlsStream<IO, C> {
    /// Plaintext read and not yet consumed, or output not yet written, in bytes (0 for an
    /// idle connection; the buffers' capacity is released with their contents).
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    /// The DER of the peer's certificate (the leaf): on the listener, the client's when it
    /// authenticated with one (the listener's client verifier checked it during the handshake).
    pub fn peer_leaf(&self) -> Option<Arc<[u8]>> {
        self.conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::from(leaf.as_ref()))
    }

    /// Whether the handshake agreed on HTTP/2 (ALPN `h2`, RFC 7301).
    pub fn alpn_h2(&self) -> bool {
        self.conn.alpn_protocol() == Some(b"h2".as_slice())
    }

    /// Runs rustls' state machine until it needs the network or has nothing more to do.
    /// Decrypted data goes to `read` while it has room, then to `self.plain`; `app` is
    /// encrypted (whole) once application data may be sent, and `close` queues
    /// `close_notify`. Returns what the machine waits for and whether `app` was taken.
    fn advance(
        &mut self,
        mut read: Option<&mut ReadBuf<'_>>,
        app: &[u8],
        close: bool,
    ) -> io::Result<(Wait, bool)> {
        let mut taken = app.is_empty();
        if self.failed {
            return Err(tls_error(rustls::Error::General(
                "the TLS connection failed earlier".into(),
            )));
        }
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process(&mut self.incoming);
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    self.discard(discard);
                    self.failed = true;
                    self.encode_alert();
                    return Err(tls_error(e));
                }
            };
            let wait = match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = match rec {
                            Ok(rec) => rec,
                            Err(e) => {
                                self.failed = true;
                                return Err(tls_error(e));
                            }
                        };
                        discard += rec.discard;
                        let mut payload = rec.payload;
                        if self.plain.is_empty() {
                            if let Some(buf) = read.as_deref_mut() {
                                let n = payload.len().min(buf.remaining());
                                buf.put_slice(&payload[..n]);
                                payload = &payload[n..];
                            }
                        }
                        self.plain.extend_from_slice(payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    append_with(&mut self.outgoing, 1024, |buf| {
                        e.encode(buf).map_err(room_for_encode)
                    })?;
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    // The encoded records wait in `outgoing`, ahead of anything written
                    // later, so they count as transmitted for rustls now.
                    t.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Wait::Handshake),
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Wait::Closed),
                ConnectionState::WriteTraffic(mut w) => {
                    if !taken {
                        let guess = app.len() + 64 + app.len() / 16;
                        append_with(&mut self.outgoing, guess, |buf| {
                            w.encrypt(app, buf).map_err(room_for_encrypt)
                        })?;
                        taken = true;
                        None
                    } else if close && !self.close_sent {
                        append_with(&mut self.outgoing, 64, |buf| {
                            w.queue_close_notify(buf).map_err(room_for_encrypt)
                        })?;
                        self.close_sent = true;
                        None
                    } else {
                        Some(Wait::Traffic)
                    }
                }
                _ => {
                    return Err(tls_error(rustls::Error::General(
                        "unexpected TLS state (early data is not enabled)".into(),
                    )))
                }
            };
            self.discard(discard);
            if let Some(w) = wait {
                return Ok((w, taken));
            }
        }
    }

    /// Drops `n` bytes of processed ciphertext from the front of `incoming`.
    fn discard(&mut self, n: usize) {
        let n = n.min(self.incoming.len());
        self.incoming.advance(n);
    }

    /// After an error, encodes the alert rustls queued for the peer (it says why, e.g.
    /// `protocol_version` or `bad_certificate`), to be sent before the connection is dropped.
    ///
    /// rustls is handed the received ciphertext as it stands, never an empty slice: handshake
    /// messages that arrived after the failing one (a server's `Finished` after a
    /// `Certificate` that failed verification) are still referenced by offset into it, and
    /// rustls panics on an offset outside the slice it is given.
    ///
    /// One call only: the alert is the one message rustls has queued, and it hands it out
    /// before it looks at the input again (which would process the rest of a bad input and
    /// fail a second time).
    fn encode_alert(&mut self) {
        let UnbufferedStatus { discard, state } = self.conn.process(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
            let _ = append_with(&mut self.outgoing, 64, |buf| {
                e.encode(buf).map_err(room_for_encode)
            });
        }
        self.discard(discard);
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> TlsStream<IO, C> {
    /// Writes encrypted output until none is left; frees the buffer then.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        crate::ws::leg::poll_write_all(&mut self.io, cx, &mut self.outgoing, &mut self.out_pos)
    }

    /// Reads more ciphertext; `Ok(false)` at the end of the transport.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        match crate::ws::leg::poll_read_lazily(&mut self.io, cx, &mut self.incoming, READ_CHUNK) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                if self.incoming.is_empty() {
                    self.incoming = BytesMut::new();
                }
                Poll::Ready(Ok(false))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

/// Runs the TLS handshake of a client connection on `io` with `config` (certificate resolver,
/// protocol versions, ALPN, client authentication).
///
/// # Errors
/// The rustls error for a failed handshake (`InvalidData`), `UnexpectedEof` when the client
/// leaves during it, `NotConnected` when it closes before sending a byte (a TCP probe), or the
/// transport's error.
pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<ServerTls<IO>> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    handshake(io, conn).await
}

/// Runs the TLS handshake with the server `name` on `io` with `config` (trusted roots or a
/// verifier, protocol versions, ALPN, resumption): the service leg of a `wss` service.
///
/// # Errors
/// The rustls error for a failed handshake (`InvalidData`; e.g. `invalid peer certificate:
/// UnknownIssuer`), `UnexpectedEof` when the server closes during it, or the transport's
/// error. The caller bounds the time it may take.
pub async fn connect<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<ClientTls<IO>> {
    let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    handshake(io, conn).await
}

/// Drives `conn`'s handshake on `io` until application data may flow.
async fn handshake<IO: AsyncRead + AsyncWrite + Unpin, C: Side>(
    io: IO,
    conn: C,
) -> io::Result<TlsStream<IO, C>> {
    let mut tls = TlsStream {
        io,
        conn,
        incoming: BytesMut::new(),
        outgoing: Vec::new(),
        out_pos: 0,
        plain: BytesMut::new(),
        peer_closed: false,
        eof: false,
        close_sent: false,
        failed: false,
    };
    // A client that closes before sending a byte (a TCP probe) is told apart from one that
    // leaves during the handshake (a server speaks only after the client did).
    let mut received = false;
    std::future::poll_fn(|cx| loop {
        let wait = match tls.advance(None, &[], false) {
            Ok((wait, _)) => wait,
            Err(e) => {
                // Best effort: the alert that says why goes out before the error.
                let _ = tls.poll_send(cx);
                return Poll::Ready(Err(e));
            }
        };
        ready!(tls.poll_send(cx))?;
        match wait {
            Wait::Traffic => return Poll::Ready(Ok(())),
            Wait::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            Wait::Handshake => {
                if tls.peer_closed || !ready!(tls.poll_receive(cx))? {
                    if !received && C::SERVER {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            "the client closed before the TLS handshake began",
                        )));
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the {} left during the TLS handshake", C::PEER),
                    )));
                }
                received = true;
            }
        }
    })
    .await?;
    Ok(tls)
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> AsyncRead for TlsStream<IO, C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                if this.plain.is_empty() {
                    this.plain = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let wait = match this.advance(Some(buf), &[], false) {
                Ok((wait, _)) => wait,
                Err(e) => {
                    let _ = this.poll_send(cx);
                    return Poll::Ready(Err(e));
                }
            };
            // Send what the state machine produced (a key update answer, alerts) if the
            // socket takes it now; a write error shows on the write side.
            if this.out_pos < this.outgoing.len() {
                let _ = this.poll_send(cx);
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            if !this.plain.is_empty() {
                continue;
            }
            if this.peer_closed || wait == Wait::Closed {
                if this.incoming.is_empty() {
                    this.incoming = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(if this.incoming.is_empty() {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a TLS record",
                    ))
                });
            }
            if !ready!(this.poll_receive(cx))? {
                continue;
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> AsyncWrite for TlsStream<IO, C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.outgoing.len() - this.out_pos >= WRITE_HIGH_WATER {
            ready!(this.poll_send(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_PLAINTEXT_PER_WRITE)];
        let (_, taken) = this.advance(None, data, false)?;
        if !taken {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS connection is closed",
            )));
        }
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.close_sent {
            // Errors here only mean the connection is already unusable.
            let _ = this.advance(None, &[], true);
            this.close_sent = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{certified_key_from_pem, self_signed_pem, server_config, CertStore};
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::client::TlsStream as RustlsClient;

    /// A handshaken pair over an in-memory pipe: (wsrelay's server side, a tokio-rustls
    /// client that trusts the server's self-signed certificate).
    async fn pair() -> (ServerTls<DuplexStream>, RustlsClient<DuplexStream>) {
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ck = certified_key_from_pem(&cert, &key).unwrap();
        let server = Arc::new(server_config(Arc::new(CertStore::new(ck))).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        let client = crate::tls::client_config(Some(&ca)).unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let (s, c) = tokio::join!(
            accept(a, server),
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, b)
        );
        (s.unwrap(), c.unwrap())
    }

    /// Issue 14 item 4: a large write is taken a slice at a time, so a peer that does not
    /// read leaves at most about two slices of ciphertext queued, not the whole message.
    #[tokio::test]
    async fn a_large_write_is_encrypted_a_slice_at_a_time() {
        let (mut server, _client) = pair().await;
        let big = vec![3u8; 4 << 20];
        let mut written = 0;
        // The client never reads: write until the stream stops taking data.
        loop {
            match futures_util::FutureExt::now_or_never(server.write(&big[written..])) {
                Some(Ok(n)) => {
                    assert!(n <= MAX_PLAINTEXT_PER_WRITE, "took {n} bytes in one call");
                    written += n;
                }
                Some(Err(e)) => panic!("{e}"),
                None => break,
            }
            if written == big.len() {
                break;
            }
        }
        assert!(
            written < big.len(),
            "a peer that does not read took everything"
        );
        let held = server.buffered_capacity();
        assert!(
            held <= 3 * MAX_PLAINTEXT_PER_WRITE,
            "{held} bytes held for a 4 MiB write to a stalled peer"
        );
    }

    #[tokio::test]
    async fn data_of_every_size_crosses_both_ways_and_an_idle_stream_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        for size in [1usize, 100, 16_384, 16_385, 200_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let mut got = vec![0u8; size];
            let (w, r) = tokio::join!(
                async {
                    client.write_all(&data).await?;
                    client.flush().await
                },
                server.read_exact(&mut got)
            );
            w.unwrap();
            r.unwrap();
            assert_eq!(got, data, "client → server, {size} bytes");
            let (w, r) = tokio::join!(
                async {
                    server.write_all(&data).await?;
                    server.flush().await
                },
                client.read_exact(&mut got)
            );
            w.unwrap();
            r.unwrap();
            assert_eq!(got, data, "server → client, {size} bytes");
        }
        // Nothing more to read: the stream waits holding no buffer.
        let mut b = [0u8; 16];
        assert!(server.read(&mut b).now_or_never().is_none());
        assert_eq!(server.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn close_notify_reads_as_the_end_both_ways() {
        let (mut server, mut client) = pair().await;
        client.shutdown().await.unwrap();
        let mut b = [0u8; 16];
        assert_eq!(server.read(&mut b).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_broken_or_abandoned_handshake_is_an_error() {
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ck = certified_key_from_pem(&cert, &key).unwrap();
        let config = Arc::new(server_config(Arc::new(CertStore::new(ck))).unwrap());
        // Not TLS at all.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let e = accept(a, Arc::clone(&config)).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // The client closes without sending a byte (a TCP probe).
        let (a, b) = tokio::io::duplex(1 << 16);
        drop(b);
        let e = accept(a, Arc::clone(&config)).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        // The client leaves during the handshake: the start of a ClientHello record, then the end.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        b.write_all(&[22, 3, 1, 0, 200, 1, 0]).await.unwrap();
        drop(b);
        let e = accept(a, config).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[tokio::test]
    async fn the_end_of_the_transport_inside_a_record_is_an_error() {
        let (mut server, client) = pair().await;
        let (mut raw, _) = client.into_inner();
        // A TLS application-data record header announcing 100 bytes, then the end.
        raw.write_all(&[23, 3, 3, 0, 100, 1, 2, 3]).await.unwrap();
        drop(raw);
        let mut b = [0u8; 16];
        let e = server.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    /// A tokio-rustls server on 127.0.0.1:0 with a self-signed certificate for `localhost`
    /// that echoes what it reads and answers `close_notify` with its own; returns its address
    /// and the certificate (PEM) to trust.
    async fn rustls_echo_server() -> (std::net::SocketAddr, String) {
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ck = certified_key_from_pem(&cert, &key).unwrap();
        let config = server_config(Arc::new(CertStore::new(ck))).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        (addr, cert)
    }

    /// A client configuration that trusts `cert` (PEM) only.
    fn trusting(cert: &str) -> Arc<rustls::ClientConfig> {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert).unwrap();
        Arc::new(crate::tls::upstream_client_config(Some(&ca), false).unwrap())
    }

    fn localhost() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    /// Issue 18: the client side against a real rustls server over TCP: a 1 MiB message
    /// echoed in full, an idle stream holding no buffer, `close_notify` read as the end.
    #[tokio::test]
    async fn the_client_side_echoes_a_large_message_and_reads_close_notify_as_the_end() {
        let (addr, cert) = rustls_echo_server().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let client = connect(tcp, trusting(&cert), localhost()).await.unwrap();
        let data: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
        let mut got = vec![0u8; data.len()];
        let (mut r, mut w) = tokio::io::split(client);
        let (sent, read) = tokio::join!(
            async {
                w.write_all(&data).await?;
                w.flush().await
            },
            r.read_exact(&mut got)
        );
        sent.unwrap();
        read.unwrap();
        assert!(got == data, "the echo differs from the 1 MiB sent");
        let mut client = r.unsplit(w);
        // Nothing more to read: the stream waits holding no buffer (the session tickets a
        // TLS 1.3 server sends after the handshake were processed and dropped).
        let mut b = [0u8; 16];
        assert!(client.read(&mut b).now_or_never().is_none());
        assert_eq!(client.buffered_capacity(), 0);
        client.shutdown().await.unwrap();
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_client_side_refuses_an_untrusted_or_misnamed_certificate() {
        let (addr, cert) = rustls_echo_server().await;
        // A CA that did not sign the server's certificate.
        let (other, _) = self_signed_pem(&["localhost"]).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let e = connect(tcp, trusting(&other), localhost())
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("invalid peer certificate"), "{e}");
        // The right CA, the wrong name.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("other.example").unwrap();
        let e = connect(tcp, trusting(&cert), name).await.err().unwrap();
        assert!(e.to_string().contains("not valid for name"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_leaves_during_the_handshake_is_an_unexpected_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Reads the ClientHello, then closes.
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = tcp.read(&mut b).await;
        });
        let (cert, _) = self_signed_pem(&["localhost"]).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let e = connect(tcp, trusting(&cert), localhost())
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(e.to_string().contains("server left"), "{e}");
    }

    /// Both sides on this module over TCP: data both ways, then the close both ways.
    #[tokio::test]
    async fn both_sides_of_this_module_talk_to_each_other() {
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ck = certified_key_from_pem(&cert, &key).unwrap();
        let config = Arc::new(server_config(Arc::new(CertStore::new(ck))).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (server, client) = tokio::join!(
            async {
                let (tcp, _) = listener.accept().await?;
                accept(tcp, config).await
            },
            async {
                let tcp = TcpStream::connect(addr).await?;
                connect(tcp, trusting(&cert), localhost()).await
            }
        );
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        let data = vec![7u8; 100_000];
        let mut got = vec![0u8; data.len()];
        let (w, r) = tokio::join!(client.write_all(&data), server.read_exact(&mut got));
        w.unwrap();
        r.unwrap();
        client.flush().await.unwrap();
        assert!(got == data);
        let (w, r) = tokio::join!(
            async {
                server.write_all(b"pong").await?;
                server.flush().await
            },
            client.read_exact(&mut got[..4])
        );
        w.unwrap();
        r.unwrap();
        assert_eq!(&got[..4], b"pong");
        client.shutdown().await.unwrap();
        let mut b = [0u8; 4];
        assert_eq!(server.read(&mut b).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
        assert_eq!(client.buffered_capacity(), 0);
    }

    /// A client certificate the listener refuses fails the handshake with an error (and the
    /// alert), not a panic: the client's `CertificateVerify` and `Finished` arrive with the
    /// refused `Certificate` and are still pending in rustls when the alert is encoded.
    #[tokio::test]
    async fn a_refused_client_certificate_is_an_error_not_a_panic() {
        use rustls_pki_types::pem::PemObject;
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ck = certified_key_from_pem(&cert, &key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        // Client certificates must verify against `cert`; the client sends another one.
        let auth = crate::config::ClientAuth::Required(ca.clone());
        let server =
            crate::tls::server_config_with_client_auth(Arc::new(CertStore::new(ck)), &auth)
                .unwrap();
        let (other_cert, other_key) = self_signed_pem(&["client"]).unwrap();
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(other_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(other_key.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(
            rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap),
        );
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (server, _client) = tokio::join!(
            async {
                let (tcp, _) = listener.accept().await?;
                accept(tcp, Arc::new(server)).await
            },
            async {
                let tcp = TcpStream::connect(addr).await?;
                let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                    .connect(localhost(), tcp)
                    .await?;
                // TLS 1.3: the client learns of the refusal on its first read.
                let mut b = [0u8; 1];
                tls.read(&mut b).await
            }
        );
        let e = server.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}
