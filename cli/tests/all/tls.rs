//! TLS on both sides of `serve`, with certificates made here by rcgen: a
//! client over TLS (HTTP/1.1 and HTTP/2 by ALPN) through the gateway and
//! its filter to a TLS upstream (HTTP/1.1, HTTP/2 by ALPN, or HTTP/2
//! required); an upstream signed by another CA is a 502 with a clear log
//! line; missing, garbage or mismatched files stop the start; SIGHUP
//! swaps in a changed certificate (and keeps the old one when the new one
//! is broken); an `https://` module from a server of a private CA, with
//! `--module-ca`.

use crate::guests;
use crate::net::{TestBody, full};
use crate::process::{Server, replace, run, tempdir};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower_http_wasm::Engine;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate for `127.0.0.1` and `localhost`, and its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `127.0.0.1` and `localhost` named `name`.
    fn leaf(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone(), key }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        Arc::new(roots)
    }

    /// Writes the CA's certificate to `dir/NAME`, returning its path.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }
}

impl Leaf {
    /// Writes `STEM.crt` and `STEM.key` to `dir`.
    fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// A server configuration offering this certificate and `alpn`.
    fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key.serialize_der()).unwrap();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Serves over TLS with `config` on 127.0.0.1 until the test's runtime
/// ends: `/module.wasm` answers `module`; anything else answers
/// `upstream`, with the protocol it arrived on in `x-upstream-version`,
/// the TLS server name the client sent in `x-sni` and the `host` (or
/// `:authority`) in `x-seen-host`.
async fn tls_server(config: Arc<ServerConfig>, module: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let module = bytes::Bytes::from(module);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (acceptor, module) = (acceptor.clone(), module.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (sni, module) = (sni.clone(), module.clone());
                    async move {
                        if req.uri().path() == "/module.wasm" {
                            return Ok::<_, Infallible>(Response::new(full(module)));
                        }
                        let host = match req.headers().get("host") {
                            Some(h) => h.to_str().unwrap_or("").to_string(),
                            None => req.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
                        };
                        let res = Response::builder()
                            .header("x-upstream-version", format!("{:?}", req.version()))
                            .header("x-sni", sni)
                            .header("x-seen-host", host)
                            .body(full("upstream"))
                            .unwrap();
                        Ok(res)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// A client config trusting `ca` alone.
fn client_config(ca: &Ca) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth()
}

/// An HTTPS client trusting `ca`, offering only `h2` by ALPN when `http2`,
/// else only `http/1.1`.
fn tls_client(ca: &Ca, http2: bool) -> Client<HttpsConnector<HttpConnector>, TestBody> {
    let builder = HttpsConnectorBuilder::new().with_tls_config(client_config(ca)).https_only();
    let connector = if http2 { builder.enable_http2().build() } else { builder.enable_http1().build() };
    Client::builder(TokioExecutor::new()).http2_only(http2).build(connector)
}

/// What a test reads of a response: status, version, headers, body.
struct Got {
    status: u16,
    version: http::Version,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl Got {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

async fn get(client: &Client<HttpsConnector<HttpConnector>, TestBody>, url: &str) -> Got {
    let res =
        client.request(Request::get(url).body(full("")).unwrap()).await.unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got { status: parts.status.as_u16(), version: parts.version, headers: parts.headers, body }
}

/// The certificate `addr` presents to a new TLS connection (trusting `ca`).
async fn presented(addr: SocketAddr, ca: &Ca) -> CertificateDer<'static> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// The protocol `addr` selects by ALPN when a client offers `offer`.
async fn negotiated(addr: SocketAddr, ca: &Ca, offer: &[&[u8]]) -> Option<Vec<u8>> {
    let mut config = client_config(ca);
    config.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// `serve --tls-cert --tls-key` (a certificate of `ca`) in front of
/// `upstream` with `extra` flags and the `versioned("tls")` filter on
/// `engine`, logging `http_wasm=info`.
fn tls_gateway(tag: &str, ca: &Ca, engine: Engine, upstream: &str, extra: &[&str]) -> Server {
    let dir = tempdir(&format!("tls-{tag}-{engine}"));
    let (cert, key) = ca.leaf("gateway").write(&dir, "gateway");
    std::fs::write(dir.join("guest.wasm"), guests::versioned("tls")).unwrap();
    let (cert, key) = (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string());
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key];
    args.extend(["--upstream", upstream, "--engine", engine.name(), "--filter", "guest.wasm"]);
    args.extend_from_slice(extra);
    Server::start_with_log(&dir, &args, "http_wasm=info")
}

/// Both client protocols through `gw` reach the upstream over
/// `upstream_version`, and the filter ran.
async fn both_client_protocols(gw: &Server, ca: &Ca, upstream_version: http::Version) {
    let url = format!("https://localhost:{}/path", gw.addr.port());
    for (http2, version) in [(false, http::Version::HTTP_11), (true, http::Version::HTTP_2)] {
        let got = get(&tls_client(ca, http2), &url).await;
        assert_eq!(got.status, 200, "client http2={http2}: {:?}", got.headers);
        assert_eq!(got.version, version, "the client's protocol");
        assert_eq!(got.body, "upstream");
        assert_eq!(got.header("x-version"), "tls", "the filter ran");
        assert_eq!(got.header("x-upstream-version"), format!("{upstream_version:?}"), "client http2={http2}");
        // The client's host reaches the upstream (as `host` or `:authority`).
        assert_eq!(got.header("x-seen-host"), format!("localhost:{}", gw.addr.port()));
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_both_sides_on_both_protocols_through_a_filter(engine) {
        let ca = Ca::new("test CA");
        let leaf = ca.leaf("upstream");
        let dir = tempdir(&format!("tls-ca-{engine}"));
        let ca_file = ca.write(&dir, "ca.pem");
        let ca_file = ca_file.to_str().unwrap();

        // An upstream offering only HTTP/1.1: the gateway speaks HTTP/1.1,
        // and SNI names the upstream's host.
        let h1 = tls_server(leaf.server_config(&[b"http/1.1"]), Vec::new()).await;
        let url = format!("https://localhost:{}", h1.port());
        let gw = tls_gateway("h1", &ca, engine, &url, &["--upstream-ca", ca_file]);
        both_client_protocols(&gw, &ca, http::Version::HTTP_11).await;
        let got = get(&tls_client(&ca, false), &format!("https://127.0.0.1:{}/", gw.addr.port())).await;
        assert_eq!(got.header("x-sni"), "localhost", "SNI is the upstream's host");
        drop(gw);

        // An upstream offering h2 as well: the gateway speaks HTTP/2.
        let both = tls_server(leaf.server_config(&[b"h2", b"http/1.1"]), Vec::new()).await;
        let url = format!("https://127.0.0.1:{}", both.port());
        let gw = tls_gateway("alpn-h2", &ca, engine, &url, &["--upstream-ca", ca_file]);
        both_client_protocols(&gw, &ca, http::Version::HTTP_2).await;
        drop(gw);

        // --upstream-http2 over TLS: h2 by ALPN, required.
        let gw = tls_gateway("h2", &ca, engine, &url, &["--upstream-ca", ca_file, "--upstream-http2"]);
        both_client_protocols(&gw, &ca, http::Version::HTTP_2).await;
        drop(gw);
        let url = format!("https://127.0.0.1:{}", h1.port());
        let gw = tls_gateway("h2-refused", &ca, engine, &url, &["--upstream-ca", ca_file, "--upstream-http2"]);
        let got = get(&tls_client(&ca, false), &format!("https://127.0.0.1:{}/", gw.addr.port())).await;
        assert_eq!(got.status, 502);
        // rustls refuses a client whose ALPN it cannot meet (a server
        // without ALPN would leave the choice to us: "did not select h2").
        let line = gw.wait_for_log(|l| l.contains("upstream request failed"));
        assert!(line.contains("TLS with the upstream failed") && line.contains("NoApplicationProtocol"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_signed_by_another_ca_is_a_502_with_a_clear_log_line() {
    let (ours, theirs) = (Ca::new("our CA"), Ca::new("another CA"));
    let up = tls_server(theirs.leaf("upstream").server_config(&[b"h2", b"http/1.1"]), Vec::new()).await;
    let dir = tempdir("tls-wrong-ca");
    let ca_file = ours.write(&dir, "ca.pem");
    let upstream = format!("https://127.0.0.1:{}", up.port());
    let args =
        ["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream, "--upstream-ca", ca_file.to_str().unwrap()];
    let gw = Server::start_with_log(&dir, &args, "http_wasm=info");
    let got = crate::process::get(gw.addr, "/", &[]).await;
    assert_eq!(got.0, 502, "{got:?}");
    assert_eq!(got.2, "Bad Gateway\n", "the detail stays in the log");
    let line = gw.wait_for_log(|l| l.contains("upstream request failed"));
    assert!(line.contains(&upstream), "{line}");
    assert!(line.contains("the upstream's TLS certificate is not trusted (its CA: --upstream-ca)"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
}

/// `serve args...` in `dir` must exit non-zero without panicking; its stderr.
fn start_fails(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = run(dir, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve {args:?} started:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("listening"), "{args:?}");
    stderr
}

#[test]
fn missing_garbage_or_mismatched_files_stop_the_start() {
    let dir = tempdir("tls-bad-files");
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf("one").write(&dir, "one");
    let (_, other_key) = ca.leaf("two").write(&dir, "two");
    std::fs::write(dir.join("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n").unwrap();
    std::fs::write(dir.join("empty.pem"), "no PEM here\n").unwrap();
    let (cert, key, other_key) = (cert.to_str().unwrap(), key.to_str().unwrap(), other_key.to_str().unwrap());

    let e = start_fails(&dir, &["--tls-cert", "missing.pem", "--tls-key", key]);
    assert!(e.contains("--tls-cert missing.pem: No such file"), "{e}");
    let e = start_fails(&dir, &["--tls-cert", cert, "--tls-key", "missing.key"]);
    assert!(e.contains("--tls-key missing.key: No such file"), "{e}");
    let e = start_fails(&dir, &["--tls-cert", "garbage.pem", "--tls-key", key]);
    assert!(e.contains("--tls-cert garbage.pem: not valid PEM"), "{e}");
    let e = start_fails(&dir, &["--tls-cert", "empty.pem", "--tls-key", key]);
    assert!(e.contains("--tls-cert empty.pem: no certificate in it"), "{e}");
    let e = start_fails(&dir, &["--tls-cert", cert, "--tls-key", "empty.pem"]);
    assert!(e.contains("--tls-key empty.pem: no PEM item"), "{e}");
    let e = start_fails(&dir, &["--tls-cert", cert, "--tls-key", other_key]);
    assert!(e.contains("--tls-cert") && e.contains("with --tls-key") && e.to_lowercase().contains("mismatch"), "{e}");
    // Both or neither.
    let e = start_fails(&dir, &["--tls-cert", cert]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = start_fails(&dir, &["--tls-key", key]);
    assert!(e.contains("--tls-cert"), "{e}");
    // The upstream's CA file too.
    let e = start_fails(&dir, &["--upstream", "https://127.0.0.1:9", "--upstream-ca", "empty.pem"]);
    assert!(e.contains("--upstream-ca empty.pem: no certificate in it"), "{e}");
    let e = start_fails(&dir, &["--upstream", "http://127.0.0.1:9", "--upstream-ca", "empty.pem"]);
    assert!(e.contains("--upstream-ca is for an https:// upstream"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_changed_certificate_and_keeps_it_when_the_new_one_is_broken() {
    let dir = tempdir("tls-reload");
    let ca = Ca::new("test CA");
    let (one, two) = (ca.leaf("one"), ca.leaf("two"));
    let (cert, key) = one.write(&dir, "gateway");
    let (cert, key) = (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string());
    let up = crate::net::upstream(|_req| async { Response::new(full("upstream")) }).await;
    let gw = Server::gateway_with_log(&dir, up, &["--tls-cert", &cert, "--tls-key", &key], "http_wasm=info");
    assert_eq!(presented(gw.addr, &ca).await, one.der);
    // ALPN: h2 when offered, else http/1.1.
    assert_eq!(negotiated(gw.addr, &ca, &[b"h2", b"http/1.1"]).await.as_deref(), Some(&b"h2"[..]));
    assert_eq!(negotiated(gw.addr, &ca, &[b"http/1.1"]).await.as_deref(), Some(&b"http/1.1"[..]));
    // A connection opened before the swap keeps working on the old one.
    let client = tls_client(&ca, true);
    let url = format!("https://localhost:{}/", gw.addr.port());
    assert_eq!(get(&client, &url).await.status, 200);

    replace(Path::new(&key), two.key_pem.as_bytes());
    replace(Path::new(&cert), two.cert_pem.as_bytes());
    gw.signal("HUP");
    let line = gw.wait_for_log(|l| l.contains("TLS certificate reloaded"));
    assert!(line.contains("gateway.crt"), "{line}");
    assert_eq!(presented(gw.addr, &ca).await, two.der, "a new connection gets the new certificate");
    assert_eq!(get(&client, &url).await.status, 200);

    // A broken pair (the key of another certificate) is refused.
    replace(Path::new(&key), one.key_pem.as_bytes());
    gw.signal("HUP");
    let line = gw.wait_for_log(|l| l.contains("TLS certificate reload failed"));
    assert!(line.contains("the old certificate keeps serving") && line.contains("--tls-key"), "{line}");
    assert_eq!(presented(gw.addr, &ca).await, two.der, "the old certificate still serves");
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_https_module_from_a_private_ca_is_fetched_with_module_ca(engine) {
        let ca = Ca::new("module CA");
        let server = tls_server(ca.leaf("modules").server_config(&[b"http/1.1"]), guests::versioned("https")).await;
        let up = crate::net::upstream(|_req| async { Response::new(full("upstream")) }).await;
        let dir = tempdir(&format!("tls-module-{engine}"));
        let ca_file = ca.write(&dir, "ca.pem");
        let module = format!("https://127.0.0.1:{}/module.wasm", server.port());

        // Without the CA the certificate is not trusted: a start error.
        let upstream = format!("http://{up}");
        let e = start_fails(&dir, &["--upstream", &upstream, "--engine", engine.name(), "--filter", &module]);
        assert!(e.contains(&format!("--filter {module}")) && e.to_lowercase().contains("certificate"), "{e}");

        let ca_arg = ca_file.to_str().unwrap();
        let args = ["--engine", engine.name(), "--filter", &module, "--module-ca", ca_arg];
        let gw = Server::gateway_with_log(&dir, up, &args, "http_wasm=info");
        gw.wait_for_log(|l| l.contains("filter loaded") && l.contains("filter=module"));
        let got = crate::process::get(gw.addr, "/", &[]).await;
        assert_eq!((got.0, got.2.as_str()), (200, "upstream"));
        assert_eq!(got.1.get("x-version").unwrap(), "https", "the module fetched over https runs");
    }
}
