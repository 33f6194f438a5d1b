//! Module sources: `serve` loads filters from `http://` URLs served by a
//! real hyper server and from `oci://` references pushed to a real OCI
//! registry (Debian's `docker-registry`, the reference implementation),
//! pinned or not, from `--filter` and from Dapr components; fetches again
//! on SIGHUP; refuses a pin mismatch, an oversized module and an artifact
//! without a wasm layer with clear errors; and serves a digest reference
//! from `--cache-dir` once the registry is gone.

use crate::guests;
use crate::net::{client, full, send, upstream};
use crate::process::{Server, run, tempdir};
use http::{Response, StatusCode};
use sha2::{Digest as _, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the current bytes of `module` at every path but `/missing`
/// (404), on 127.0.0.1, until the test's runtime ends.
async fn module_server(module: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    upstream(move |req| {
        let module = module.clone();
        async move {
            if req.uri().path() == "/missing" {
                let mut res = Response::new(full("no such module"));
                *res.status_mut() = StatusCode::NOT_FOUND;
                return res;
            }
            let bytes = module.lock().unwrap().clone();
            Response::new(full(bytes))
        }
    })
    .await
}

/// An upstream answering 200 `upstream` to everything.
async fn plain_upstream() -> SocketAddr {
    upstream(|_req| async { Response::new(full("upstream")) }).await
}

/// The `x-version` a fresh request through `gw` gets (asserting 200).
async fn version(gw: &Server) -> String {
    let got = send(&client(false), http::Request::get(format!("http://{}/", gw.addr)).body(full("")).unwrap()).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, "upstream");
    got.values("x-version").join(",")
}

/// `serve` with `args` (after the listener, upstream and engine) in a new
/// directory, run to its exit: it must fail; returns its stderr.
fn serve_fails(tag: &str, engine: tower_http_wasm::Engine, up: SocketAddr, args: &[&str]) -> String {
    let dir = tempdir(tag);
    let upstream = format!("http://{up}");
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream, "--engine", engine.name()];
    all.extend_from_slice(args);
    let out = run(&dir, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve {args:?} started:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http_module_is_fetched_at_start_and_again_on_sighup(engine) {
        let module = Arc::new(Mutex::new(guests::versioned("one")));
        let at = module_server(module.clone()).await;
        let up = plain_upstream().await;
        let url = format!("http://{at}/filters/versioned.wasm");
        let dir = tempdir(&format!("http-source-{engine}"));
        let gw = Server::gateway_with_log(&dir, up, &["--engine", engine.name(), "--filter", &url], "http_wasm=info");
        // The name in logs and metrics is the URL's last segment.
        gw.wait_for_log(|l| l.contains("filter loaded") && l.contains("filter=versioned"));
        assert_eq!(version(&gw).await, "one");

        *module.lock().unwrap() = guests::versioned("two");
        gw.signal("HUP");
        gw.wait_for_log(|l| l.contains("filter reloaded") && l.contains("SIGHUP"));
        assert_eq!(version(&gw).await, "two");

        // A fetch that fails on reload keeps the old module serving.
        *module.lock().unwrap() = b"\0asm not really".to_vec();
        gw.signal("HUP");
        gw.wait_for_log(|l| l.contains("reload failed"));
        assert_eq!(version(&gw).await, "two");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http_module_pinned_by_sha256_loads_only_when_the_digest_matches(engine) {
        let wasm = guests::versioned("pinned");
        let expected = sha256_hex(&wasm);
        let at = module_server(Arc::new(Mutex::new(wasm))).await;
        let up = plain_upstream().await;
        let good = format!("http://{at}/m.wasm#sha256={expected}");
        let dir = tempdir(&format!("http-pin-{engine}"));
        let gw = Server::gateway(&dir, up, &["--engine", engine.name(), "--filter", &good]);
        assert_eq!(version(&gw).await, "pinned");

        let wrong = "0".repeat(64);
        let stderr =
            serve_fails(&format!("http-pin-bad-{engine}"), engine, up, &["--filter", &format!("http://{at}/m.wasm#sha256={wrong}")]);
        assert!(
            stderr.contains(&format!("the module's sha256 is {expected}, but the pin expects {wrong}")),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("--filter http://{at}/m.wasm")), "{stderr}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dapr_component_loads_its_module_from_an_http_url_with_its_sha256(engine) {
        let wasm = guests::versioned("dapr");
        let at = module_server(Arc::new(Mutex::new(wasm.clone()))).await;
        let up = plain_upstream().await;
        let dir = tempdir(&format!("http-dapr-{engine}"));
        let component = |hex: &str| {
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: remote\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: http://{at}/remote.wasm\n  - name: sha256\n    value: \"{hex}\"\n"
            )
        };
        std::fs::write(dir.join("good.yaml"), component(&sha256_hex(&wasm))).unwrap();
        let gw = Server::gateway(&dir, up, &["--engine", engine.name(), "--dapr", "good.yaml"]);
        assert_eq!(version(&gw).await, "dapr");

        let bad = tempdir(&format!("http-dapr-bad-{engine}"));
        std::fs::write(bad.join("bad.yaml"), component(&"1".repeat(64))).unwrap();
        let stderr = serve_fails(&format!("http-dapr-bad-run-{engine}"), engine, up, &["--dapr", bad.join("bad.yaml").to_str().unwrap()]);
        assert!(stderr.contains("Component \"remote\": spec.metadata url"), "{stderr}");
        assert!(stderr.contains(&format!("but the pin expects {}", "1".repeat(64))), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_failures_are_load_errors_naming_the_cause() {
    let module = Arc::new(Mutex::new(guests::versioned("big")));
    let size = module.lock().unwrap().len();
    let at = module_server(module).await;
    let up = plain_upstream().await;
    let engine = tower_http_wasm::Engine::Wasmtime;
    let e = serve_fails("http-missing", engine, up, &["--filter", &format!("http://{at}/missing")]);
    assert!(e.contains("the server answered 404 Not Found"), "{e}");
    let e =
        serve_fails("http-cap", engine, up, &["--module-max-size", "100", "--filter", &format!("http://{at}/m.wasm")]);
    assert!(e.contains(&format!("the module is {size} bytes, over the 100-byte cap (--module-max-size)")), "{e}");
    // A port nothing listens on (bound, then released).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = serve_fails("http-refused", engine, up, &["--filter", &format!("http://{closed}/m.wasm")]);
    assert!(e.contains(&format!("--filter http://{closed}/m.wasm: ")) && e.to_lowercase().contains("connect"), "{e}");
}

/// The reference OCI registry (`registry` or Debian's `docker-registry`)
/// on a free port of 127.0.0.1 with storage in a temporary directory,
/// killed on drop.
struct Registry {
    child: Child,
    addr: SocketAddr,
}

impl Registry {
    fn binary() -> PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in ["registry", "docker-registry"] {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
        panic!(
            "no OCI registry binary (`registry` or `docker-registry`) on PATH: install Debian's reference registry with \
             `apt-get install -y docker-registry` (.ci/run does so when it is missing)"
        );
    }

    async fn start(tag: &str) -> Registry {
        let bin = Registry::binary();
        let dir = tempdir(&format!("registry-{tag}"));
        // A free port: bound, then released for the registry.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("storage").display()
        );
        let config_file = dir.join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let registry = Registry { child, addr };
        // Ready when `GET /v2/` answers 200 (bounded: 20 s).
        let c = client(false);
        for _ in 0..1000 {
            let req = http::Request::get(format!("http://{addr}/v2/")).body(full("")).unwrap();
            if let Ok(res) = c.request(req).await
                && res.status() == 200
            {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the registry at {addr} never answered GET /v2/");
    }

    /// Pushes `wasm` as the one layer (of media type `layer_type`) of an
    /// OCI artifact to `REGISTRY/repo:tag`; returns the manifest's digest
    /// (`sha256:HEX`).
    async fn push(&self, repo_tag: &str, wasm: &[u8], layer_type: &str) -> String {
        use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let reference: oci_client::Reference = format!("{}/{repo_tag}", self.addr).parse().unwrap();
        let client =
            oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..ClientConfig::default() });
        let auth = oci_client::secrets::RegistryAuth::Anonymous;
        let layers = [ImageLayer::new(wasm.to_vec(), layer_type.to_string(), None)];
        let config = Config::new(b"{}".to_vec(), "application/vnd.wasm.config.v0+json".to_string(), None);
        client.push(&reference, &layers, config, &auth, None).await.unwrap_or_else(|e| panic!("push {reference}: {e}"));
        client.fetch_manifest_digest(&reference, &auth).await.unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(dir: &Path, up: SocketAddr, engine: tower_http_wasm::Engine, rest: &[&str]) -> Server {
    let mut args = vec!["--engine", engine.name()];
    args.extend_from_slice(rest);
    Server::gateway_with_log(dir, up, &args, "http_wasm=info")
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oci_artifact_is_pulled_from_a_real_registry_and_cached_by_digest(engine) {
        let mut registry = Registry::start(&format!("pull-{engine}")).await;
        let at = registry.addr;
        let cncf = guests::versioned("oci");
        let digest = registry.push("filters/versioned:v1", &cncf, "application/wasm").await;
        let istio = guests::versioned("istio");
        registry.push("filters/istio:v1", &istio, "application/vnd.module.wasm.content.layer.v1+wasm").await;
        let up = plain_upstream().await;
        let dir = tempdir(&format!("oci-{engine}"));
        let cache = dir.join("cache");
        let cache_arg = cache.to_str().unwrap();

        // By tag, the CNCF layout, into the cache.
        let by_tag = format!("oci://{at}/filters/versioned:v1");
        let gw = start_gateway(&dir, up, engine, &["--cache-dir", cache_arg, "--filter", &by_tag]);
        assert_eq!(version(&gw).await, "oci");
        gw.wait_for_log(|l| l.contains("filter loaded") && l.contains("filter=versioned"));
        drop(gw);
        let layer = cache.join("oci").join(format!("sha256-{}", sha256_hex(&cncf)));
        assert_eq!(std::fs::read(&layer).unwrap(), cncf, "the layer is cached under its digest");

        // Istio's layer media type, pinned by the module's sha256.
        let pinned = format!("oci://{at}/filters/istio:v1#sha256={}", sha256_hex(&istio));
        let gw = start_gateway(&dir, up, engine, &["--filter", &pinned]);
        assert_eq!(version(&gw).await, "istio");
        drop(gw);

        // By digest, once: pulled and its manifest cached. Then, with the
        // registry gone, from the cache alone.
        let by_digest = format!("oci://{at}/filters/versioned@{digest}");
        let gw = start_gateway(&dir, up, engine, &["--cache-dir", cache_arg, "--filter", &by_digest]);
        assert_eq!(version(&gw).await, "oci");
        drop(gw);
        let _ = registry.child.kill();
        let _ = registry.child.wait();
        let gw = start_gateway(&dir, up, engine, &["--cache-dir", cache_arg, "--filter", &by_digest]);
        assert_eq!(version(&gw).await, "oci");
        drop(gw);
        // A tag needs the registry: a clear load error, not a panic.
        let e = serve_fails(&format!("oci-gone-{engine}"), engine, up, &["--cache-dir", cache_arg, "--filter", &by_tag]);
        assert!(e.contains(&format!("--filter {by_tag}: {at}/filters/versioned:v1: ")), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_artifacts_that_are_not_a_wasm_module_are_refused() {
    let registry = Registry::start("refused").await;
    let at = registry.addr;
    let up = plain_upstream().await;
    let engine = tower_http_wasm::Engine::Wasmtime;
    registry.push("filters/text:v1", b"hello", "text/plain").await;
    let e = serve_fails("oci-text", engine, up, &["--filter", &format!("oci://{at}/filters/text:v1")]);
    assert!(e.contains("no wasm layer") && e.contains("text/plain"), "{e}");
    let wasm = guests::versioned("big");
    registry.push("filters/big:v1", &wasm, "application/wasm").await;
    let e = serve_fails(
        "oci-cap",
        engine,
        up,
        &["--module-max-size", "100", "--filter", &format!("oci://{at}/filters/big:v1")],
    );
    assert!(e.contains(&format!("the wasm layer is {} bytes, over the 100-byte cap", wasm.len())), "{e}");
    let e = serve_fails("oci-unknown", engine, up, &["--filter", &format!("oci://{at}/filters/none:v1")]);
    assert!(e.contains(&format!("--filter oci://{at}/filters/none:v1: ")), "{e}");
    // A digest that is not the manifest's: the registry has no such manifest.
    let zero = format!("oci://{at}/filters/big@sha256:{}", "0".repeat(64));
    let e = serve_fails("oci-digest", engine, up, &["--filter", &zero]);
    assert!(e.contains(&format!("--filter {zero}: ")), "{e}");
}
