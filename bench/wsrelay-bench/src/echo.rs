//! The echo backend: an RFC 6455 server that sends every text and binary message back.
//!
//! Messages are fed as they arrive and flushed when no further message is ready, so a
//! pipelined client gets batched writes and a closed-loop client gets one write per message.
//! Pings are answered by tungstenite. Any path is accepted. Accept errors (EMFILE under a
//! hold) are logged and retried after 10 ms; the accept loop never ends on its own.
//!
//! With a certificate and key (`--cert`, `--key`) it serves `wss`: TLS 1.2/1.3 through
//! tokio-rustls (another TLS implementation than the agent's, so the bench checks interop),
//! handshakes run in the connection's task, a failed one drops the connection.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Listen backlog of the echo backend (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// The echo's TLS material: a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

/// Binds `listen`, prints `echo listening on ADDR` on stdout, and serves until killed: `ws`,
/// or `wss` with `tls`.
///
/// # Errors
/// The address cannot be bound, or the TLS files cannot be loaded (the error names the file).
pub async fn run(listen: SocketAddr, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    let acceptor = match tls {
        None => None,
        Some(files) => {
            let key = wsrelay::tls::load_certified_key(&files.cert, &files.key)?;
            let store = Arc::new(wsrelay::tls::CertStore::new(key));
            let config = wsrelay::tls::server_config(store).context("TLS configuration")?;
            Some(TlsAcceptor::from(Arc::new(config)))
        }
    };
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("socket")?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    socket
        .bind(listen)
        .with_context(|| format!("cannot bind {listen}"))?;
    let listener = socket.listen(BACKLOG).context("listen")?;
    let bound = listener.local_addr().context("local address")?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "echo listening on {bound}");
        let _ = out.flush();
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                match &acceptor {
                    None => {
                        tokio::spawn(serve(tcp, config));
                    }
                    Some(acceptor) => {
                        let accept = acceptor.accept(tcp);
                        tokio::spawn(async move {
                            if let Ok(tls) = accept.await {
                                serve(tls, config).await;
                            }
                        });
                    }
                }
            }
            Err(e) => {
                eprintln!("echo: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes one connection (after TLS, for `wss`) until it closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S, config: WebSocketConfig) {
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(io, Some(config)).await else {
        return;
    };
    let mut unflushed = false;
    loop {
        let next = match ws.next().now_or_never() {
            Some(item) => item,
            None => {
                if unflushed && ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        unflushed = match next {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.feed(m).await.is_err() {
                    return;
                }
                true
            }
            Some(Ok(Message::Close(_))) => {
                // tungstenite queued the close answer; flushing sends it.
                let _ = ws.flush().await;
                return;
            }
            Some(Ok(_)) => true, // a ping's pong is queued
            Some(Err(_)) | None => return,
        };
    }
}
