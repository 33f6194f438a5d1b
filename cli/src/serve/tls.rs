//! TLS, both sides, by rustls with its `ring` provider.
//!
//! - The listener (`--tls-cert`, `--tls-key`): a certificate chain and its
//!   private key read from PEM files, offered with ALPN `h2` and
//!   `http/1.1`. [`ServerCert::reload`] (on SIGHUP) reads both files again
//!   and swaps them in only if they load and match; handshakes that start
//!   afterwards get the new certificate, connections already open keep
//!   theirs.
//! - `https://` upstreams: the server's certificate is checked against the
//!   system's roots, or only against `--upstream-ca`'s certificates (PEM);
//!   the name checked (and sent as SNI) is the upstream's host.

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The one crypto provider: ring (never aws-lc).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file `path` (`what` names the flag in
/// errors); none is an error.
pub fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = || format!("{what} {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {}", at(), pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {}", at(), pem_error(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it (a PEM `CERTIFICATE` block)", at()));
    }
    Ok(certs)
}

/// A PEM error in words (an I/O error as the OS says it).
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it (a key: `PRIVATE KEY`)".into(),
        Error::MissingSectionEnd { end_marker } => format!("not valid PEM: no {:?} line", text(&end_marker)),
        Error::IllegalSectionStart { line } => format!("not valid PEM: bad section start {:?}", text(&line)),
        other => format!("not valid PEM: {other}"),
    }
}

/// The listener's certificate chain and key files.
#[derive(Clone, Debug)]
struct KeyPair {
    cert: PathBuf,
    key: PathBuf,
}

impl KeyPair {
    /// Reads and checks both files: the chain (end-entity first), a private
    /// key (PKCS#8, PKCS#1 or SEC1) that ring can sign with and that
    /// matches the end-entity certificate.
    fn load(&self) -> Result<Arc<CertifiedKey>, String> {
        let chain = read_certificates(&self.cert, "--tls-cert")?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("--tls-key {}: {}", self.key.display(), pem_error(e)))?;
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the key does not match the certificate (key mismatch)".to_string()
                }
                other => other.to_string(),
            };
            format!("--tls-cert {} with --tls-key {}: {why}", self.cert.display(), self.key.display())
        })?;
        Ok(Arc::new(certified))
    }
}

/// The listener's certificate, swapped in place by [`ServerCert::reload`].
#[derive(Debug)]
pub struct ServerCert {
    files: KeyPair,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Loads `cert` (PEM: the chain, end-entity first) and `key` (PEM).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<ServerCert>, String> {
        let files = KeyPair { cert, key };
        let current = RwLock::new(files.load()?);
        Ok(Arc::new(ServerCert { files, current }))
    }

    /// Reads both files again; on success the new pair serves every later
    /// handshake, on failure the old one stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = self.files.load()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate file, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }

    /// An acceptor offering this certificate (as it is at each handshake),
    /// TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
    pub fn acceptor(self: &Arc<ServerCert>) -> Result<TlsAcceptor, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The TLS handshake of a client connection, bounded by `timeout`
/// (`--header-timeout`). A failure is logged at debug (clients that
/// vanish or distrust the certificate are not the gateway's errors) and
/// gives `None`.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(target: "http_wasm::serve", %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(target: "http_wasm::serve", %peer, ?timeout, "TLS handshake timed out");
            None
        }
    }
}

/// The roots an `https://` upstream's certificate is checked against:
/// `ca`'s certificates alone (PEM), or the system's (as
/// `rustls-native-certs` finds them: `SSL_CERT_FILE`, `SSL_CERT_DIR`, the
/// distribution's bundle). No root at all is an error.
pub fn upstream_roots(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in read_certificates(path, "--upstream-ca")? {
                roots.add(cert).map_err(|e| format!("--upstream-ca {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!(
                    "an https upstream needs trusted roots: none found on this system{why}; \
                     install the CA certificates or name one with --upstream-ca"
                ));
            }
        }
    }
    Ok(roots)
}

/// Which protocols a connection to the upstream offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only.
    Http1,
    /// `h2` only (`--upstream-http2`).
    Http2,
    /// `h2` and `http/1.1`: the upstream chooses.
    Both,
}

/// How the gateway dials its upstream: TCP, then TLS for `https` URIs with
/// `roots` and `alpn` (plain TCP for `http` ones).
pub type Connector = HttpsConnector<HttpConnector>;

/// A [`Connector`] over `http` (whose `enforce_http` is turned off here).
/// `roots`: `None` for a plain-http upstream (an `https` URI then fails
/// every certificate).
pub fn connector(mut http: HttpConnector, roots: Option<Arc<RootCertStore>>, alpn: Alpn) -> Connector {
    http.enforce_http(false);
    let roots = roots.unwrap_or_else(|| Arc::new(RootCertStore::empty()));
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
    match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::Http2 => builder.enable_http2().wrap_connector(http),
        Alpn::Both => builder.enable_all_versions().wrap_connector(http),
    }
}

/// A hint for the log when `e` (or an error within it) is a TLS failure
/// with the upstream.
pub fn hint(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    match find_rustls(e)? {
        rustls::Error::InvalidCertificate(_) => {
            Some("the upstream's TLS certificate is not trusted (its CA: --upstream-ca)")
        }
        _ => Some("TLS with the upstream failed"),
    }
}

/// The rustls error in `e`: itself, wrapped in an I/O error (as
/// tokio-rustls and hyper-rustls wrap it, perhaps twice), or a source.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && let Some(tls) = find_rustls(inner)
    {
        return Some(tls);
    }
    e.source().and_then(find_rustls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("http-wasm-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let e = read_certificates(&garbage, "--tls-cert").unwrap_err();
        assert!(e.contains("--tls-cert") && e.contains("garbage.pem") && e.contains("no certificate"), "{e}");
        let e = read_certificates(&dir.join("missing.pem"), "--upstream-ca").unwrap_err();
        assert!(e.contains("--upstream-ca") && e.contains("missing.pem") && e.contains("No such file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
