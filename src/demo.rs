//! `wsrelay demo`: the agent on an embedded default, for a first look.
//!
//! Starts a small WebSocket echo service on `127.0.0.1` (an ephemeral port), writes the
//! bundled `examples/registry.xml` (with that port) and a self-signed certificate for
//! `localhost`/`127.0.0.1` (rcgen) into a private temporary folder, and runs the real agent
//! on them with TLS. Nothing here is special-cased in the agent.

use std::net::SocketAddr;

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
/// The certificate, key and registry go to a new private folder (mode 0700, the key 0600),
/// removed when the demo ends; the drain on exit is short (2 s). The banner goes to stdout;
/// a closed stdout is not an error.
///
/// # Errors
/// If the echo service, the temporary files or the agent cannot be set up.
pub async fn run(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let echo = start_echo(shutdown.clone()).await?;
    // Private (0700) and removed when dropped, on every way out of this function.
    let mut builder = tempfile::Builder::new();
    builder.prefix("wsrelay-demo-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = builder
        .tempdir()
        .context("cannot create the demo's temporary folder")?;
    let path = |name: &str| dir.path().join(name);
    let (cert, key) = crate::tls::self_signed_pem(&["localhost", "127.0.0.1"])?;
    std::fs::write(path("tls.crt"), cert)?;
    write_private(&path("tls.key"), key.as_bytes())?;
    // The bundled registry with the echo service's port (its instance id and URLs too).
    let port = echo.port().to_string();
    let registry = EXAMPLE_REGISTRY
        .replace(">10012<", &format!(">{port}<"))
        .replace(":10012", &format!(":{port}"));
    std::fs::write(path("registry.xml"), registry)?;
    let toml = format!(
        "[listen]\naddress = \"{listen}\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n[registry]\nfile = {reg:?}\nrefresh_interval = \"5s\"\n[shutdown]\ngrace = \"2s\"\n",
        cert = path("tls.crt").display().to_string(),
        key = path("tls.key").display().to_string(),
        reg = path("registry.xml").display().to_string(),
    );
    let config = Config::from_toml(&toml, None)?;
    let agent = crate::start(config, shutdown.clone()).await?;
    let port = agent.local_addr.port();
    let banner = [
        String::new(),
        "wsrelay demo is running (Ctrl-C to stop).".to_owned(),
        format!(
            "  echo service:   ws://127.0.0.1:{}/discoverableclient/ws (registered as DISCOVERABLECLIENT)",
            echo.port()
        ),
        format!("  registry file:  {}", path("registry.xml").display()),
        format!(
            "  certificate:    {} (self-signed for localhost; removed on exit)",
            path("tls.crt").display()
        ),
        String::new(),
        "Try (the certificate is self-signed, so skip verification):".to_owned(),
        format!("  wss://localhost:{port}/discoverableclient/ws/v1/echo"),
        format!("  wss://localhost:{port}/ws/v1/discoverableclient/echo     (v1 URL form)"),
        format!("  e.g. websocat -k wss://localhost:{port}/ws/v1/discoverableclient/echo"),
        format!("Diagnostics: curl -k https://localhost:{port}/application/websockets  (also health, routes, info)"),
        String::new(),
        String::new(),
    ]
    .join("\n");
    // A closed stdout (`wsrelay demo | head -1`) must not stop the demo.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    shutdown.cancelled().await;
    agent
        .drained(agent.shared.settings.load().shutdown_grace)
        .await;
    drop(agent);
    dir.close()
        .context("cannot remove the demo's temporary folder")?;
    Ok(())
}

/// Writes `bytes` to a new file readable by its owner only (0600 on Unix).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
