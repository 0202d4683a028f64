//! TLS material: PEM loading (through `rustls-pki-types`' `PemObject`), the listener's
//! certificate store, and the client configuration for `wss` upstreams; the TLS stream both
//! legs run on is [`stream`].
//!
//! The listener resolves its certificate through [`CertStore`], an `ArcSwap<CertifiedKey>`
//! behind rustls' `ResolvesServerCert`: `resolve` does no I/O, it only loads an `Arc`, so a
//! background task can swap in a new pair while handshakes run. Only TLS 1.2 and 1.3 are
//! offered, with rustls' default (ring) cipher suites.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod stream;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded. Names the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (I/O error, no certificate, no key, bad PEM).
        message: String,
    },
    /// The key does not fit the certificate, or rustls refused the material.
    #[error("{cert} / {key}: {source}")]
    Rustls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The rustls error (e.g. `InconsistentKeys(KeyMismatch)`).
        source: rustls::Error,
    },
    /// A generated (demo) certificate could not be made.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads every `CERTIFICATE` block of a PEM file, in order (leaf first for a chain).
///
/// # Errors
/// [`TlsError::Pem`] if the file cannot be read, a block is malformed, or there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|e| pem_err(path, e.to_string()))?;
    load_certs_pem(&data).map_err(|m| pem_err(path, m))
}

fn load_certs_pem(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
///
/// # Errors
/// [`TlsError::Pem`] if the file cannot be read or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|e| pem_err(path, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| pem_err(path, format!("no usable private key: {e}")))
}

/// Loads a certificate chain and its key, and checks that the key matches the leaf
/// certificate's public key.
///
/// # Errors
/// [`TlsError::Pem`] for unreadable/empty files, [`TlsError::Rustls`] for an unsupported key
/// or a key that does not match the certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|source| TlsError::Rustls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })
}

/// The listener's current certificate: an `ArcSwap<CertifiedKey>` read by every handshake.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// A store serving `key`.
    pub fn new(key: CertifiedKey) -> CertStore {
        CertStore {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Replaces the served certificate; handshakes that start afterwards use it, established
    /// sessions keep theirs.
    pub fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The certificate currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The ALPN protocol ids the listener offers: `h2` first when `http2` (`tls.http2`, RFC 7301;
/// RFC 8441 WebSockets ride it), then `http/1.1`.
pub fn listener_alpn(http2: bool) -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(2);
    if http2 {
        v.push(b"h2".to_vec());
    }
    v.push(b"http/1.1".to_vec());
    v
}

/// Builds the listener's rustls configuration: TLS 1.2 + 1.3, no client auth, ALPN
/// `http/1.1`, certificate from `store`.
///
/// # Errors
/// Only if rustls rejects the protocol versions for the provider (not expected with ring).
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Builds the listener's rustls configuration with client certificate verification per
/// `client_auth` (mutual TLS): the CA bundle is read now; `Optional` also accepts clients
/// without a certificate.
///
/// # Errors
/// [`TlsError::Pem`] for an unreadable or empty CA file, [`TlsError::Rustls`] when no usable
/// root is in it.
pub fn server_config_with_client_auth(
    store: Arc<CertStore>,
    client_auth: &crate::config::ClientAuth,
) -> Result<rustls::ServerConfig, TlsError> {
    use crate::config::ClientAuth;
    let rustls_err = |path: &Path, source| TlsError::Rustls {
        cert: path.to_path_buf(),
        key: PathBuf::new(),
        source,
    };
    let (ca, optional) = match client_auth {
        ClientAuth::None => {
            return server_config(store).map_err(|e| rustls_err(Path::new("<listener>"), e));
        }
        ClientAuth::Optional(ca) => (ca, true),
        ClientAuth::Required(ca) => (ca, false),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| rustls_err(ca, e))?;
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let verifier = builder.build().map_err(|e| TlsError::Pem {
        path: ca.clone(),
        message: format!("unusable client CA bundle: {e}"),
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| rustls_err(ca, e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Watches the client CA bundle (mutual TLS) and swaps in a new listener configuration when it
/// changes and loads; a bad bundle keeps the previous configuration, is logged with the cause,
/// and counts in `wsrelay_tls_reload_failures_total`.
pub fn spawn_client_ca_reloader(
    client_auth: crate::config::ClientAuth,
    store: Arc<CertStore>,
    current: Arc<ArcSwap<rustls::ServerConfig>>,
    metrics: crate::metrics::TlsMetrics,
    recheck: std::time::Duration,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let ca = match &client_auth {
        crate::config::ClientAuth::None => return,
        crate::config::ClientAuth::Optional(ca) | crate::config::ClientAuth::Required(ca) => {
            ca.clone()
        }
    };
    let last = Arc::new(std::sync::Mutex::new(crate::watch::fingerprint(&[&ca])));
    crate::watch::spawn(
        "client CA bundle",
        vec![ca.clone()],
        recheck,
        tracker,
        shutdown,
        move || {
            let (client_auth, store, current, metrics, last, ca) = (
                client_auth.clone(),
                Arc::clone(&store),
                Arc::clone(&current),
                metrics.clone(),
                Arc::clone(&last),
                ca.clone(),
            );
            async move {
                let fp = crate::watch::fingerprint(&[&ca]);
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                if *l == fp {
                    return;
                }
                *l = fp;
                match server_config_with_client_auth(store, &client_auth) {
                    Ok(mut cfg) => {
                        // The listener's ALPN list (`tls.http2`) stays as it was.
                        cfg.alpn_protocols = current.load().alpn_protocols.clone();
                        current.store(Arc::new(cfg));
                        tracing::info!(client_ca = %ca.display(), "client CA bundle reloaded");
                    }
                    Err(e) => {
                        metrics.reload_failures.inc();
                        tracing::warn!(error = %e, "client CA reload refused; the previous bundle stays in force");
                    }
                }
            }
        },
    );
}

/// Builds the client configuration for `wss` upstreams: the system roots (as found by
/// `rustls-native-certs`) plus the certificates of `ca_file`, if given. Server certificates
/// are verified against these roots and the instance's `hostName`.
///
/// System roots that fail to load are skipped (logged at debug); an unreadable or empty
/// `ca_file` is an error.
///
/// # Errors
/// [`TlsError::Pem`] for a bad `ca_file`, [`TlsError::Rustls`] if no root could be added at all.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping a system CA certificate source");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca_file {
        for cert in load_certs(ca)? {
            roots.add(cert).map_err(|source| TlsError::Rustls {
                cert: ca.to_path_buf(),
                key: PathBuf::new(),
                source,
            })?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Builds the client configuration for `wss` services (`upstream.*` keys).
///
/// With `insecure_skip_verify = false` (the default) this is [`client_config`]: the service's
/// certificate chain is verified against the system roots plus `ca_file`, and its name against
/// the instance's `hostName` (RFC 6125 via webpki). With `insecure_skip_verify = true` (labs
/// only) any certificate and name are accepted; the handshake signatures are still checked, so
/// the session is encrypted, but not authenticated. `ca_file` is still loaded (a bad file is
/// still an error) and then unused.
///
/// # Errors
/// As [`client_config`].
pub fn upstream_client_config(
    ca_file: Option<&Path>,
    insecure_skip_verify: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = client_config(ca_file)?;
    if insecure_skip_verify {
        cfg.dangerous()
            .set_certificate_verifier(Arc::new(SkipServerVerification(provider())));
    }
    Ok(cfg)
}

/// Presents one client certificate for mutual TLS (to `wss` services or to Eureka).
#[derive(Debug)]
pub struct StaticClientCert(pub Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for StaticClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Adds the client certificate `cert` + `key` (PEM, key matching the certificate) to a client
/// configuration.
///
/// # Errors
/// As [`load_certified_key`].
pub fn with_client_cert(
    mut cfg: rustls::ClientConfig,
    cert: &Path,
    key: &Path,
) -> Result<rustls::ClientConfig, TlsError> {
    let ck = load_certified_key(cert, key)?;
    cfg.client_auth_cert_resolver = Arc::new(StaticClientCert(Arc::new(ck)));
    Ok(cfg)
}

/// `upstream.insecure_skip_verify`: accepts any server certificate and name, but still checks
/// the handshake signatures with the provider's algorithms (as rustls' own examples do).
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A self-signed certificate and key (PEM) for `names` (DNS names or IP addresses), for the
/// demo and tests.
///
/// # Errors
/// [`TlsError::Generate`] if rcgen fails.
pub fn self_signed_pem(names: &[&str]) -> Result<(String, String), TlsError> {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// Builds a [`CertifiedKey`] from PEM text (certificate chain, key), as [`load_certified_key`]
/// does for files.
///
/// # Errors
/// [`TlsError::Pem`] / [`TlsError::Rustls`] as for files, with `<memory>` as the path.
pub fn certified_key_from_pem(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let mem = Path::new("<memory>");
    let chain = load_certs_pem(cert_pem.as_bytes()).map_err(|m| pem_err(mem, m))?;
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| pem_err(mem, e.to_string()))?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|source| TlsError::Rustls {
        cert: mem.to_path_buf(),
        key: mem.to_path_buf(),
        source,
    })
}

/// The `notAfter` of a certificate, in Unix seconds (RFC 5280 §4.1.2.5), or `None` if the DER
/// cannot be parsed.
pub fn not_after_unix(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// Certificates closer than this to `notAfter` are logged as a warning at load time.
pub const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Records the serving certificate's `notAfter` in the expiry gauge and warns when it is
/// less than 14 days away (or past).
pub fn note_expiry(key: &CertifiedKey, metrics: &crate::metrics::TlsMetrics, cert: &Path) {
    let Some(not_after) = key.end_entity_cert().ok().and_then(not_after_unix) else {
        return;
    };
    metrics.cert_expiry.set(not_after);
    let left = not_after - unix_now();
    if left < EXPIRY_WARNING_SECS {
        tracing::warn!(
            cert = %cert.display(),
            days_left = left / 86_400,
            "the serving certificate expires in less than 14 days"
        );
    }
}

/// Watches the listener's certificate and key files and installs a new pair when both parse
/// and the key matches the certificate; otherwise the old pair keeps serving, the failure is
/// logged once per distinct file content with the file and reason, and
/// `wsrelay_tls_reload_failures_total` goes up. A half-written pair (new certificate, old key)
/// is refused the same way and retried on the next file event. Established sessions keep
/// their TLS state; new handshakes use the new pair.
pub fn spawn_reloader(
    files: crate::config::TlsFiles,
    store: Arc<CertStore>,
    metrics: crate::metrics::TlsMetrics,
    recheck: std::time::Duration,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let initial = crate::watch::fingerprint(&[&files.cert, &files.key]);
    let state = Arc::new(std::sync::Mutex::new((
        initial,
        None::<Vec<Option<(usize, u64)>>>,
    )));
    let watched = vec![files.cert.clone(), files.key.clone()];
    crate::watch::spawn(
        "listener certificate",
        watched,
        recheck,
        tracker,
        shutdown,
        move || {
            let (files, store, metrics, state) = (
                files.clone(),
                Arc::clone(&store),
                metrics.clone(),
                Arc::clone(&state),
            );
            async move {
                let fp = crate::watch::fingerprint(&[&files.cert, &files.key]);
                {
                    let s = state.lock().unwrap_or_else(|p| p.into_inner());
                    if s.0 == fp || s.1.as_ref() == Some(&fp) {
                        return; // unchanged, or the same broken content as last time
                    }
                }
                let result = load_certified_key(&files.cert, &files.key);
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(key) => {
                        note_expiry(&key, &metrics, &files.cert);
                        let not_after = key.end_entity_cert().ok().and_then(not_after_unix);
                        store.store(key);
                        s.0 = fp;
                        s.1 = None;
                        tracing::info!(cert = %files.cert.display(), not_after, "listener certificate reloaded");
                    }
                    Err(e) => {
                        s.1 = Some(fp);
                        metrics.reload_failures.inc();
                        tracing::warn!(error = %e, "certificate reload refused; the previous certificate keeps serving");
                    }
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_generated_pair_and_refuses_a_mismatched_key() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = self_signed_pem(&["localhost"]).unwrap();
        let (_c2, k2) = self_signed_pem(&["localhost"]).unwrap();
        let (cp, kp, k2p) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("k2.pem"),
        );
        std::fs::write(&cp, &c1).unwrap();
        std::fs::write(&kp, &k1).unwrap();
        std::fs::write(&k2p, &k2).unwrap();
        let ck = load_certified_key(&cp, &kp).unwrap();
        assert_eq!(ck.cert.len(), 1);
        // rcgen's default validity ends in 4096.
        assert!(not_after_unix(&ck.cert[0]).unwrap() > 4_000_000_000);
        let e = load_certified_key(&cp, &k2p).unwrap_err();
        assert!(matches!(e, TlsError::Rustls { .. }), "{e}");
        assert!(e.to_string().contains("k2.pem"), "{e}");
    }

    #[test]
    fn empty_and_missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certs(&empty).unwrap_err();
        assert!(
            e.to_string().contains("empty.pem") && e.to_string().contains("no CERTIFICATE"),
            "{e}"
        );
        let e = load_key(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = load_key(&empty).unwrap_err();
        assert!(e.to_string().contains("no usable private key"), "{e}");
    }

    #[test]
    fn client_config_takes_an_extra_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = self_signed_pem(&["localhost"]).unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, c).unwrap();
        client_config(Some(&p)).unwrap();
        assert!(client_config(Some(&dir.path().join("nope.pem"))).is_err());
    }

    /// A TLS server on 127.0.0.1 with a self-signed certificate for `localhost`; each accepted
    /// connection completes the handshake and is dropped.
    async fn tls_server(cert: &str, key: &str) -> std::net::SocketAddr {
        let ck = certified_key_from_pem(cert, key).unwrap();
        let cfg = server_config(Arc::new(CertStore::new(ck))).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    let _ = a.accept(tcp).await;
                });
            }
        });
        addr
    }

    async fn handshake(
        cfg: rustls::ClientConfig,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> Result<(), std::io::Error> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map(drop)
    }

    #[tokio::test]
    async fn upstream_verification_is_on_by_default_and_skip_verify_accepts_anything() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        let addr = tls_server(&cert, &key).await;

        // Default: an unknown issuer is refused, the configured CA and the right name pass,
        // a wrong name is refused.
        let e = handshake(
            upstream_client_config(None, false).unwrap(),
            addr,
            "localhost",
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        handshake(
            upstream_client_config(Some(&ca), false).unwrap(),
            addr,
            "localhost",
        )
        .await
        .unwrap();
        let e = handshake(
            upstream_client_config(Some(&ca), false).unwrap(),
            addr,
            "other.example",
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not valid for name"), "{e}");

        // insecure_skip_verify: neither issuer nor name are checked.
        handshake(
            upstream_client_config(None, true).unwrap(),
            addr,
            "localhost",
        )
        .await
        .unwrap();
        handshake(
            upstream_client_config(None, true).unwrap(),
            addr,
            "other.example",
        )
        .await
        .unwrap();
        // A bad CA file is still an error.
        assert!(upstream_client_config(Some(&dir.path().join("nope.pem")), true).is_err());
    }
}
