//! The listener's TLS stream on rustls' unbuffered API: it holds no buffer while the
//! connection is idle (issue 7).
//!
//! `tokio_rustls` drives rustls' buffered `ServerConnection`, whose record read buffer is
//! resized to 4 KiB (and zero-filled) before every read and never given back, so every idle
//! `wss` session kept 4 KiB for it. [`ServerTls`] uses `UnbufferedServerConnection` instead
//! and owns its buffers: received ciphertext is kept only until it is processed, decrypted
//! plaintext only until it is read, and encrypted output only until it is written. The TLS
//! protocol itself (handshake, certificate resolver and hot reload, client authentication,
//! key updates, alerts, `close_notify`) stays entirely in rustls.
//!
//! [`accept`] runs the handshake; [`ServerTls`] then implements tokio's `AsyncRead` and
//! `AsyncWrite` for hyper and the relay. A write is taken once it is encrypted into the
//! output (written out at once if the socket allows, else on the next write or flush); a
//! flush writes everything out. A clean `close_notify` reads as end of stream; the transport
//! ending inside a record is an `UnexpectedEof` error.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of the socket per read (a TLS record is at most about 16 KiB).
const READ_CHUNK: usize = 16 * 1024;
/// Encrypted output above which a write waits until some of it is sent (bytes).
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Plaintext taken per `poll_write` call (bytes): a large message is encrypted a slice at a
/// time, so the encrypted output never holds a second copy of it (issue 14 item 4); the
/// caller's write loop hands over the rest.
pub const MAX_PLAINTEXT_PER_WRITE: usize = 64 * 1024;

/// What the state machine waits for when [`ServerTls::advance`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The handshake needs more bytes from the client.
    Handshake,
    /// Nothing to do: application data may flow.
    Traffic,
    /// Both sides sent `close_notify`.
    Closed,
}

/// A server-side TLS connection over `IO` (see the module doc).
pub struct ServerTls<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Received ciphertext not yet processed; no allocation while empty.
    incoming: BytesMut,
    /// Encrypted output not yet written, from `out_pos`; no allocation once written.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// Decrypted plaintext not yet read; no allocation once read.
    plain: BytesMut,
    /// The client sent `close_notify` (clean end of its data).
    peer_closed: bool,
    /// The transport ended.
    eof: bool,
    /// Our `close_notify` is queued or sent.
    close_sent: bool,
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

impl<IO> ServerTls<IO> {
    /// Plaintext read and not yet consumed, or output not yet written, in bytes (0 for an
    /// idle connection; the buffers' capacity is released with their contents).
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    /// The DER of the client's certificate (the leaf), when the client authenticated with
    /// one (the listener's client verifier checked it during the handshake).
    pub fn peer_leaf(&self) -> Option<Arc<[u8]>> {
        self.conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::from(leaf.as_ref()))
    }

    /// Whether the client chose HTTP/2 (ALPN `h2`, RFC 7301) in the handshake.
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
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    self.discard(discard);
                    self.encode_alert();
                    return Err(tls_error(e));
                }
            };
            let wait = match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(tls_error)?;
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
    /// `protocol_version`), to be sent before the connection is dropped.
    fn encode_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let _ = append_with(&mut self.outgoing, 64, |buf| {
                        e.encode(buf).map_err(room_for_encode)
                    });
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => return,
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ServerTls<IO> {
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
    let mut tls = ServerTls {
        io,
        conn,
        incoming: BytesMut::new(),
        outgoing: Vec::new(),
        out_pos: 0,
        plain: BytesMut::new(),
        peer_closed: false,
        eof: false,
        close_sent: false,
    };
    // A client that closes before sending a byte (a TCP probe) is told apart from one that
    // leaves during the handshake.
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
                    if !received {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            "the client closed before the TLS handshake began",
                        )));
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client left during the TLS handshake",
                    )));
                }
                received = true;
            }
        }
    })
    .await?;
    Ok(tls)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTls<IO> {
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

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTls<IO> {
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
    use tokio_rustls::client::TlsStream;

    /// A handshaken pair over an in-memory pipe: (wsrelay's server side, a tokio-rustls
    /// client that trusts the server's self-signed certificate).
    async fn pair() -> (ServerTls<DuplexStream>, TlsStream<DuplexStream>) {
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
}
