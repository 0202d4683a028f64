//! TLS hygiene of the listener: TLS 1.2 and 1.3 only, rustls' default (AEAD, forward-secret)
//! cipher suites; TLS 1.0/1.1, weak suites and plain HTTP on the TLS port are refused. Shown
//! with rustls clients restricted to one version, hand-made ClientHello bytes, and
//! `openssl s_client` when it is installed.

use std::sync::Arc;

use crate::hostile::*;
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (TestService, TestAgent) {
    let svc = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "",
    )
    .await;
    (svc, agent)
}

fn client_config(
    agent: &TestAgent,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in wsrelay::tls::load_certs(&agent.cert.cert_path()).unwrap() {
        roots.add(c).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(wsrelay::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn tls_1_2_and_1_3_carry_a_session() {
    let (_svc, agent) = setup().await;
    for (versions, want) in [
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let tcp = TcpStream::connect(agent.agent.local_addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(&agent, versions))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        let (mut ws, _) =
            tokio_tungstenite::client_async(agent.url("/ws/v1/discoverableclient/x"), tls)
                .await
                .unwrap();
        ws.send(Message::text("over TLS")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over TLS"));
        ws.close(None).await.unwrap();
    }
    agent.wait_sessions(0).await;
}

/// A ClientHello with `version` as both record and client version, the given cipher suites,
/// and no `supported_versions` extension (what a TLS 1.0/1.1-only client sends).
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
                                     // Extensions: server_name "localhost", supported_groups (x25519, secp256r1),
                                     // ec_point_formats (uncompressed), signature_algorithms (ecdsa_secp256r1_sha256,
                                     // rsa_pkcs1_sha256).
    let mut ext = Vec::new();
    let name = b"localhost";
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1u8]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16];
    record.extend_from_slice(&version.to_be_bytes());
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends `bytes` on a fresh TCP connection to the TLS port and returns everything the server
/// sends back before it closes (or, with `first_record`, as soon as one record header came).
async fn answer_to(agent: &TestAgent, bytes: &[u8], first_record: bool) -> Vec<u8> {
    let mut tcp = TcpStream::connect(agent.agent.local_addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(READ_LIMIT, tcp.read(&mut chunk))
            .await
            .expect("the server neither answered nor closed")
        {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if first_record && out.len() >= 6 {
                    return out;
                }
            }
        }
    }
}

/// No ServerHello: the answer is empty or a single fatal alert record.
fn assert_refused(answer: &[u8], what: &str) {
    if answer.is_empty() {
        return;
    }
    assert_eq!(
        answer[0], 0x15,
        "{what}: expected an alert, got {answer:02x?}"
    );
    assert_eq!(
        answer.get(5),
        Some(&2),
        "{what}: not a fatal alert: {answer:02x?}"
    );
    assert_eq!(
        answer.len(),
        7,
        "{what}: more than one alert record: {answer:02x?}"
    );
}

#[tokio::test]
async fn tls_1_0_1_1_weak_suites_and_plain_http_are_refused() {
    let (svc, agent) = setup().await;
    let modern = [0xc02b, 0xc02f, 0xcca8, 0xcca9]; // ECDHE + AES-GCM / ChaCha20
    let legacy = [0x002f, 0x0035, 0xc013, 0xc014, 0x000a]; // RSA/ECDHE + CBC, 3DES

    // Positive control: the same hand-made hello as TLS 1.2 with modern suites gets a
    // ServerHello, so the refusals below are about the version and suites, not the bytes.
    let ok = answer_to(&agent, &client_hello(0x0303, &modern), true).await;
    assert_eq!(ok.first(), Some(&0x16), "{ok:02x?}");
    assert_eq!(ok.get(5), Some(&2), "ServerHello expected: {ok:02x?}");

    for (version, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        let mut suites = modern.to_vec();
        suites.extend(legacy);
        let answer = answer_to(&agent, &client_hello(version, &suites), false).await;
        assert_refused(&answer, name);
        // protocol_version (70) or handshake_failure (40).
        if let Some(desc) = answer.get(6) {
            assert!(matches!(desc, 70 | 40), "{name}: alert {desc}");
        }
    }
    let answer = answer_to(&agent, &client_hello(0x0303, &legacy), false).await;
    assert_refused(&answer, "TLS 1.2 with CBC/RSA-kx suites only");

    let answer = answer_to(
        &agent,
        upgrade_request("/ws/v1/discoverableclient/x", "").as_bytes(),
        false,
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
    assert_eq!(agent.agent.live_sessions(), 0);
}

#[tokio::test]
async fn openssl_s_client_agrees_when_installed() {
    let (_svc, agent) = setup().await;
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        println!("SKIPPED: openssl is not installed; the hand-made ClientHello test covers this");
        return;
    };
    assert!(out.status.success());
    let port = agent.agent.local_addr.port();
    let run = move |args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
                .args(["-servername", "localhost"])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
    };
    let (ok, text) = run(&["-tls1_2"]).await.unwrap();
    assert!(ok && text.contains("TLSv1.2"), "{text}");
    let (ok, text) = run(&["-tls1_3"]).await.unwrap();
    assert!(ok && text.contains("TLSv1.3"), "{text}");
    for v in ["-tls1", "-tls1_1"] {
        // SECLEVEL=0 lets OpenSSL 3 offer the old versions at all: the refusal is the server's.
        let args: &'static [&'static str] = if v == "-tls1" {
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]
        } else {
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
        };
        let (ok, text) = run(args).await.unwrap();
        assert!(!ok, "{v} was accepted:\n{text}");
        assert!(
            text.contains("alert protocol version") || text.contains("handshake failure"),
            "{v}: {text}"
        );
    }
}
