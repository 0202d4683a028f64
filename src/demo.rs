//! `wsrelay demo`: the agent on an embedded default, for a first look.
//!
//! Starts a small WebSocket echo service on `127.0.0.1` (an ephemeral port), writes the
//! bundled `examples/registry.xml` (with that port) and a self-signed certificate for
//! `localhost`/`127.0.0.1` (rcgen) into a private temporary folder, and runs the real agent
//! on them with TLS. Nothing here is special-cased in the agent.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The bundled example registry (XStream XML, one `DISCOVERABLECLIENT` instance on port 10012).
pub const EXAMPLE_REGISTRY: &str = include_str!("../examples/registry.xml");

/// Starts the echo service: every text or binary message is sent back; pings are answered.
/// Returns its address.
///
/// # Errors
/// If no loopback port can be bound.
pub async fn start_echo(shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo echo service")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => break,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Runs the demo until `shutdown` is cancelled, listening on `listen`.
///
/// # Errors
/// If the echo service, the temporary files or the agent cannot be set up.
pub async fn run(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let echo = start_echo(shutdown.clone()).await?;
    let dir: PathBuf = std::env::temp_dir().join(format!("wsrelay-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = async {
        let (cert, key) = crate::tls::self_signed_pem(&["localhost", "127.0.0.1"])?;
        std::fs::write(dir.join("tls.crt"), cert)?;
        std::fs::write(dir.join("tls.key"), key)?;
        let registry = EXAMPLE_REGISTRY.replace(">10012<", &format!(">{}<", echo.port()));
        std::fs::write(dir.join("registry.xml"), registry)?;
        let toml = format!(
            "[listen]\naddress = \"{listen}\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n[registry]\nfile = {reg:?}\nrefresh_interval = \"5s\"\n",
            cert = dir.join("tls.crt").display().to_string(),
            key = dir.join("tls.key").display().to_string(),
            reg = dir.join("registry.xml").display().to_string(),
        );
        let config = Config::from_toml(&toml, None)?;
        let agent = crate::start(config, shutdown.clone()).await?;
        let port = agent.local_addr.port();
        println!();
        println!("wsrelay demo is running (Ctrl-C to stop).");
        println!("  echo service:   ws://127.0.0.1:{}/discoverableclient/ws (registered as DISCOVERABLECLIENT)", echo.port());
        println!("  registry file:  {}", dir.join("registry.xml").display());
        println!("  certificate:    {} (self-signed for localhost)", dir.join("tls.crt").display());
        println!();
        println!("Try (the certificate is self-signed, so skip verification):");
        println!("  wss://localhost:{port}/discoverableclient/ws/v1/echo");
        println!("  wss://localhost:{port}/ws/v1/discoverableclient/echo     (v1 URL form)");
        println!("  e.g. websocat -k wss://localhost:{port}/ws/v1/discoverableclient/echo");
        println!("Diagnostics: curl -k https://localhost:{port}/application/websockets  (also health, routes, info)");
        println!();
        shutdown.cancelled().await;
        agent.drained(agent.shared.settings.load().shutdown_grace).await;
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
