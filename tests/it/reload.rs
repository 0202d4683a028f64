//! Hot reload: the listener certificate rotated four ways while sessions stay open, broken
//! pairs refused, and the registry file followed on change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A certificate pair in PEM, and its leaf DER.
struct Pair {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn pair() -> Pair {
    let (cert, key) = wsrelay::tls::self_signed_pem(&["localhost"]).unwrap();
    let der = wsrelay::tls::certified_key_from_pem(&cert, &key)
        .unwrap()
        .cert[0]
        .to_vec();
    Pair { cert, key, der }
}

/// A client config trusting every given certificate.
fn trusting(pairs: &[&Pair]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for p in pairs {
        roots
            .add(rustls_pki_types::CertificateDer::from(p.der.clone()))
            .unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(wsrelay::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The leaf certificate the agent serves to a new handshake.
async fn served(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn wait_served(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>, want: &[u8]) {
    for _ in 0..1000 {
        if served(addr, cfg.clone()).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the new certificate was not served within 10 s");
}

struct Running {
    agent: wsrelay::Agent,
    _token: CancellationToken,
}

/// Starts an agent from TOML text.
async fn start_toml(toml: &str) -> Running {
    let token = CancellationToken::new();
    let agent = wsrelay::start(
        wsrelay::config::Config::from_toml(toml, None).unwrap(),
        token.clone(),
    )
    .await
    .unwrap();
    Running {
        agent,
        _token: token,
    }
}

async fn start(cert: &Path, key: &Path, registry: &Path) -> Running {
    start_toml(&format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n[registry]\nfile = {:?}\nrefresh_interval = \"1h\"\n",
        cert.display().to_string(),
        key.display().to_string(),
        registry.display().to_string()
    ))
    .await
}

async fn open_session(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{}/ws/v1/discoverableclient/x", addr.port()),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(cfg)),
    )
    .await
    .unwrap()
    .0
}

async fn echo(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    text: &str,
) {
    ws.send(Message::text(text)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text(text));
}

fn write_pair(dir: &Path, p: &Pair) {
    std::fs::write(dir.join("tls.crt"), &p.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &p.key).unwrap();
}

#[tokio::test]
async fn certificate_rotates_four_ways_while_sessions_keep_running() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(
        &reg,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
    )
    .unwrap();
    let pairs: Vec<Pair> = (0..5).map(|_| pair()).collect();
    let all: Vec<&Pair> = pairs.iter().collect();
    let trust = trusting(&all);

    // The Kubernetes Secret layout: tls.crt -> ..data/tls.crt, ..data -> ..2026_a.
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    let version = |name: &str, p: &Pair| -> PathBuf {
        let d = secret.join(name);
        std::fs::create_dir(&d).unwrap();
        write_pair(&d, p);
        d
    };
    version("..2026_a", &pairs[0]);
    std::os::unix::fs::symlink("..2026_a", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", secret.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", secret.join("tls.key")).unwrap();
    let (cert, key) = (secret.join("tls.crt"), secret.join("tls.key"));

    let run = start(&cert, &key, &reg).await;
    let addr = run.agent.local_addr;
    assert_eq!(served(addr, trust.clone()).await, pairs[0].der);
    let mut session = open_session(addr, trust.clone()).await;
    echo(&mut session, "before").await;

    // 1. Kubernetes swap: a new timestamped directory, ..data re-pointed atomically.
    version("..2026_b", &pairs[1]);
    std::os::unix::fs::symlink("..2026_b", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    std::fs::remove_dir_all(secret.join("..2026_a")).unwrap();
    wait_served(addr, trust.clone(), &pairs[1].der).await;
    echo(&mut session, "after k8s swap").await;

    // 2. In-place write (through the symlinks, into ..2026_b): key first, then cert.
    std::fs::write(&key, &pairs[2].key).unwrap();
    std::fs::write(&cert, &pairs[2].cert).unwrap();
    wait_served(addr, trust.clone(), &pairs[2].der).await;
    echo(&mut session, "after in-place write").await;

    // 3. Write to temp + rename in the links' target directory.
    let target = secret.join("..2026_b");
    std::fs::write(target.join(".tls.key.tmp"), &pairs[3].key).unwrap();
    std::fs::write(target.join(".tls.crt.tmp"), &pairs[3].cert).unwrap();
    std::fs::rename(target.join(".tls.key.tmp"), target.join("tls.key")).unwrap();
    std::fs::rename(target.join(".tls.crt.tmp"), target.join("tls.crt")).unwrap();
    wait_served(addr, trust.clone(), &pairs[3].der).await;
    echo(&mut session, "after rename").await;

    // 4. Delete + recreate (plain files in a plain directory this time).
    drop(run);
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    write_pair(&plain, &pairs[0]);
    let run = start(&plain.join("tls.crt"), &plain.join("tls.key"), &reg).await;
    let addr = run.agent.local_addr;
    let mut session2 = open_session(addr, trust.clone()).await;
    std::fs::remove_file(plain.join("tls.crt")).unwrap();
    std::fs::remove_file(plain.join("tls.key")).unwrap();
    write_pair(&plain, &pairs[4]);
    wait_served(addr, trust.clone(), &pairs[4].der).await;
    echo(&mut session2, "after delete + recreate").await;
    // Write-to-temp + rename in the watched directory.
    std::fs::write(plain.join(".k"), &pairs[1].key).unwrap();
    std::fs::write(plain.join(".c"), &pairs[1].cert).unwrap();
    std::fs::rename(plain.join(".k"), plain.join("tls.key")).unwrap();
    std::fs::rename(plain.join(".c"), plain.join("tls.crt")).unwrap();
    wait_served(addr, trust.clone(), &pairs[1].der).await;
    echo(&mut session2, "after rename").await;
    assert_eq!(run.agent.shared.metrics.tls.reload_failures.get(), 0);
}

#[tokio::test]
async fn broken_or_mismatched_pairs_are_refused_and_the_old_certificate_keeps_serving() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(
        &reg,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
    )
    .unwrap();
    let (good, other) = (pair(), pair());
    write_pair(dir.path(), &good);
    let run = start(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
        &reg,
    )
    .await;
    let addr = run.agent.local_addr;
    let trust = trusting(&[&good, &other]);
    let failures = || run.agent.shared.metrics.tls.reload_failures.get();

    // A mismatched pair (new certificate, old key: also what a half-written rotation looks like).
    std::fs::write(dir.path().join("tls.crt"), &other.cert).unwrap();
    for _ in 0..1000 {
        if failures() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failures(), 1);
    assert_eq!(served(addr, trust.clone()).await, good.der);
    // The key arrives: the pair is complete and gets installed.
    std::fs::write(dir.path().join("tls.key"), &other.key).unwrap();
    wait_served(addr, trust.clone(), &other.der).await;

    // Garbage: refused, the last good certificate stays.
    std::fs::write(
        dir.path().join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for _ in 0..1000 {
        if failures() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failures(), 2);
    assert_eq!(served(addr, trust.clone()).await, other.der);
    let mut ws = open_session(addr, trust).await;
    echo(&mut ws, "still serving").await;
}

#[tokio::test]
async fn registry_file_changes_are_followed_and_malformed_versions_ignored() {
    let a = TestService::start(ServiceOptions::default()).await;
    let b = TestService::start(ServiceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(
        &reg,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "a", a.port())]),
    )
    .unwrap();
    let cert = TestCert::new();
    let run = start(&cert.cert_path(), &cert.key_path(), &reg).await;
    let addr = run.agent.local_addr;
    let cfg = cert.client_config();

    // A new instance B replaces A (written via temp + rename).
    let tmp = dir.path().join(".registry.tmp");
    std::fs::write(
        &tmp,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "b", b.port())]),
    )
    .unwrap();
    std::fs::rename(&tmp, &reg).unwrap();
    let mut landed_on_b = false;
    for _ in 0..1000 {
        let mut ws = open_session(addr, cfg.clone()).await;
        echo(&mut ws, "which").await;
        ws.close(None).await.unwrap();
        if b.requests.lock().unwrap().len() == 1 {
            landed_on_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        landed_on_b,
        "routing never followed the rewritten registry file"
    );
    let a_before = a.requests.lock().unwrap().len();

    // A malformed version: ignored, B keeps serving.
    std::fs::write(
        &reg,
        "<applications><application><name>DISCOVERABLECLIENT</name><inst",
    )
    .unwrap();
    for _ in 0..100 {
        if run.agent.shared.registry.snapshot().last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        run.agent.shared.registry.snapshot().last_error.is_some(),
        "the malformed file was not read"
    );
    let before_b = b.requests.lock().unwrap().len();
    let mut ws = open_session(addr, cfg).await;
    echo(&mut ws, "still b").await;
    assert_eq!(b.requests.lock().unwrap().len(), before_b + 1);
    assert_eq!(
        a.requests.lock().unwrap().len(),
        a_before,
        "A is gone from the registry"
    );
}

/// A CA (PEM) and a client certificate + key it signed.
fn ca_and_client() -> (String, String, String) {
    crate::certs::ca_and_client_cert(
        rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap(),
    )
}

/// Opens a session presenting `client` (cert, key) if given; Err when the agent refuses.
async fn try_session(
    addr: std::net::SocketAddr,
    server: &TestCert,
    client: Option<(&str, &str)>,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in wsrelay::tls::load_certs(&server.cert_path()).unwrap() {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(wsrelay::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let r = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{}/ws/v1/discoverableclient/x", addr.port()),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(cfg))),
    )
    .await;
    match r {
        Ok((mut ws, _)) => {
            ws.send(Message::text("hi"))
                .await
                .map_err(|e| e.to_string())?;
            match ws.next().await {
                Some(Ok(m)) if m == Message::text("hi") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn client_certificates_are_verified_and_the_ca_bundle_reloads() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(
        &reg,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
    )
    .unwrap();
    let server = TestCert::new();
    let (ca1, c1, k1) = ca_and_client();
    let (ca2, c2, k2) = ca_and_client();
    let ca_path = dir.path().join("client-ca.pem");
    std::fs::write(&ca_path, &ca1).unwrap();
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[registry]\nfile = {:?}\n",
        server.cert_path().display().to_string(),
        server.key_path().display().to_string(),
        ca_path.display().to_string(),
        reg.display().to_string()
    );
    let run = start_toml(&toml).await;
    let agent = &run.agent;
    let addr = agent.local_addr;
    try_session(addr, &server, Some((&c1, &k1))).await.unwrap();
    assert!(
        try_session(addr, &server, None).await.is_err(),
        "no client certificate must be refused"
    );
    assert!(
        try_session(addr, &server, Some((&c2, &k2))).await.is_err(),
        "a certificate from another CA must be refused"
    );

    // Rotate the CA bundle: the second client is accepted, the first refused.
    std::fs::write(&ca_path, &ca2).unwrap();
    let mut switched = false;
    for _ in 0..1000 {
        if try_session(addr, &server, Some((&c2, &k2))).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(switched, "the new client CA bundle was not loaded");
    assert!(try_session(addr, &server, Some((&c1, &k1))).await.is_err());

    // A broken bundle is refused; the last good one stays.
    std::fs::write(&ca_path, "garbage").unwrap();
    for _ in 0..1000 {
        if agent.shared.metrics.tls.reload_failures.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(agent.shared.metrics.tls.reload_failures.get(), 1);
    try_session(addr, &server, Some((&c2, &k2))).await.unwrap();
    drop(run);
}

#[tokio::test]
async fn config_reload_applies_a_valid_file_and_rejects_an_invalid_one() {
    let a = TestService::start(ServiceOptions::default()).await;
    let b = TestService::start(ServiceOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let (reg_a, reg_b) = (dir.path().join("a.xml"), dir.path().join("b.xml"));
    std::fs::write(
        &reg_a,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "a", a.port())]),
    )
    .unwrap();
    std::fs::write(
        &reg_b,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "b", b.port())]),
    )
    .unwrap();
    let cfg_path = dir.path().join("wsrelay.toml");
    let write_cfg = |listen: &str, reg: &Path, max: &str| {
        std::fs::write(
            &cfg_path,
            format!(
                "[listen]\naddress = \"{listen}\"\n[tls]\ncert = {:?}\nkey = {:?}\n[registry]\nfile = {:?}\n[limits]\nmax_message_size = \"{max}\"\n",
                cert.cert_path().display().to_string(),
                cert.key_path().display().to_string(),
                reg.display().to_string()
            ),
        )
        .unwrap();
    };
    write_cfg("127.0.0.1:0", &reg_a, "64KiB");
    let token = CancellationToken::new();
    let agent = wsrelay::start(
        wsrelay::config::Config::load(&cfg_path).unwrap(),
        token.clone(),
    )
    .await
    .unwrap();
    let addr = agent.local_addr;
    let big = vec![1u8; 100 * 1024];

    let mut ws = open_session(addr, cert.client_config()).await;
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(read_close(&mut ws).await.map(|c| c.0), Some(1009));

    // A valid new config: bigger messages, another registry file. Listen address changes are
    // reported, not applied.
    write_cfg("127.0.0.1:1", &reg_b, "1MiB");
    let levels = std::sync::Mutex::new(Vec::new());
    let set_level = |l: &str| {
        levels.lock().unwrap().push(l.to_string());
        Ok(())
    };
    assert!(wsrelay::reload_from_file(&agent, Some(&cfg_path), &set_level).await);
    assert_eq!(levels.lock().unwrap().as_slice(), ["info"]);
    let mut ws = open_session(addr, cert.client_config()).await;
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), big.len());
    assert_eq!(
        b.requests.lock().unwrap().len(),
        1,
        "the new registry source is in use"
    );
    ws.close(None).await.unwrap();

    // An invalid file is rejected as a whole: the 1 MiB limit and registry B stay.
    std::fs::write(
        &cfg_path,
        "[listen]\naddress = \"127.0.0.1:0\"\nbogus = 1\n",
    )
    .unwrap();
    assert!(!wsrelay::reload_from_file(&agent, Some(&cfg_path), &set_level).await);
    let mut ws = open_session(addr, cert.client_config()).await;
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), big.len());
    assert_eq!(b.requests.lock().unwrap().len(), 2);
    assert_eq!(a.requests.lock().unwrap().len(), 1);

    // What needs a restart is reported.
    write_cfg("127.0.0.1:2", &reg_b, "1MiB");
    let restart = agent
        .reload(wsrelay::config::Config::load(&cfg_path).unwrap())
        .await
        .unwrap();
    assert_eq!(restart, vec!["listen.address"]);
    token.cancel();
}

#[tokio::test]
async fn upstream_client_certificate_is_presented_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    // The service (wss) requires a client certificate issued by CA 2.
    let svc_cert = TestCert::new();
    let (_ca1, c1, k1) = ca_and_client();
    let (ca2, c2, k2) = ca_and_client();
    std::fs::write(dir.path().join("ca2.pem"), &ca2).unwrap();
    let store = Arc::new(wsrelay::tls::CertStore::new(
        wsrelay::tls::load_certified_key(&svc_cert.cert_path(), &svc_cert.key_path()).unwrap(),
    ));
    let svc_tls = wsrelay::tls::server_config_with_client_auth(
        store,
        &wsrelay::config::ClientAuth::Required(dir.path().join("ca2.pem")),
    )
    .unwrap();
    let svc = TestService::start(ServiceOptions {
        tls: Some(Arc::new(svc_tls)),
        ..Default::default()
    })
    .await;
    let mut inst = Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port());
    inst.secure = true;
    let reg = dir.path().join("registry.xml");
    std::fs::write(&reg, registry_xml(&[inst])).unwrap();
    // wsrelay starts with the certificate of CA 1: the service refuses it.
    let (client_cert, client_key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&client_cert, &c1).unwrap();
    std::fs::write(&client_key, &k1).unwrap();
    let listener = TestCert::new();
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n[registry]\nfile = {:?}\n[upstream]\nca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        listener.cert_path().display().to_string(),
        listener.key_path().display().to_string(),
        reg.display().to_string(),
        svc_cert.cert_path().display().to_string(),
        client_cert.display().to_string(),
        client_key.display().to_string(),
    );
    let token = CancellationToken::new();
    let agent = wsrelay::start(
        wsrelay::config::Config::from_toml(&toml, None).unwrap(),
        token.clone(),
    )
    .await
    .unwrap();
    let url = format!(
        "wss://localhost:{}/ws/v1/discoverableclient/x",
        agent.local_addr.port()
    );
    let connect = || {
        tokio_tungstenite::connect_async_tls_with_config(
            url.clone(),
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(
                listener.client_config(),
            )),
        )
    };
    let (status, _) = refused(connect().await.unwrap_err());
    assert_eq!(status, 502);
    // Rotate the client certificate to the one of CA 2 (key first, then certificate).
    std::fs::write(&client_key, &k2).unwrap();
    std::fs::write(&client_cert, &c2).unwrap();
    let mut ok = None;
    for _ in 0..1000 {
        if let Ok((ws, _)) = connect().await {
            ok = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ws = ok.expect("the rotated upstream client certificate was never used");
    echo(&mut ws, "mutual TLS to the service").await;
    token.cancel();
}
