//! Where a filter's module comes from: a file, an `http(s)://` URL or an
//! OCI registry (`oci://`).
//!
//! A source is written as `--filter` takes it, or as a Dapr component's
//! `url` (with its `sha256` metadata appended as a pin):
//!
//! | source | read |
//! |---|---|
//! | `PATH`, `file://PATH` | from the file (a relative path from the working directory) |
//! | `http://...`, `https://...` | with a GET; a status other than 2xx is an error |
//! | `oci://REGISTRY/REPO:TAG`, `oci://REGISTRY/REPO@sha256:HEX` | the wasm layer of an OCI artifact |
//!
//! Any source but a plain path may end in `#sha256=HEX`, a pin: the
//! module's SHA-256 must be HEX, or loading fails naming both digests.
//!
//! Fetching (http(s) and OCI) is bounded: at most [`Fetch::max_size`]
//! bytes (default [`DEFAULT_MAX_SIZE`]; a larger `content-length` or OCI
//! layer size is refused before its body is read) and at most
//! [`Fetch::timeout`] for the whole fetch (default [`DEFAULT_TIMEOUT`]).
//! A redirect from `https` to `http` is refused.
//!
//! Over HTTPS (an `https://` source, an OCI registry) the server's
//! certificate is checked against the system's roots and, with
//! [`Fetch::ca`], the certificates of that PEM file too (a private CA).
//!
//! ## OCI
//!
//! The artifact is an OCI image manifest (or a Docker v2 one) with exactly
//! one layer of a wasm media type ([`WASM_LAYER_MEDIA_TYPES`]: the CNCF
//! TAG-Runtime layout's `application/wasm`, Istio's and solo.io's
//! `application/vnd.module.wasm.content.layer.v1+wasm`, and the older
//! `application/vnd.wasm.content.layer.v1+wasm`); its config is not read.
//! `oras push REGISTRY/REPO:TAG filter.wasm:application/wasm` makes one. An
//! image index is refused. The manifest's digest is checked against a
//! `@sha256:` reference, the layer's against its descriptor, and both are
//! SHA-256 only. Pulls are anonymous.
//!
//! A registry on a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`)
//! is reached over plain HTTP, as docker does; any other over HTTPS unless
//! [`Fetch::insecure_registries`] names it (`HOST` or `HOST:PORT`).
//!
//! With [`Fetch::cache_dir`], layers are kept in its `oci/` folder named by
//! their digest, and so are manifests pulled by digest: a start whose
//! reference is a digest already seen needs no registry at all. A cached
//! file is used only if it is a regular file (not a symlink) within the size
//! cap whose SHA-256 is its name; anything else is fetched again and
//! replaced (written to a temporary file, then renamed).

use sha2::{Digest as _, Sha256};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default of [`Fetch::max_size`]: 64 MiB.
pub const DEFAULT_MAX_SIZE: usize = 64 << 20;

/// The default of [`Fetch::timeout`]: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The OCI layer media types taken as a wasm module.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// The manifest media types asked of a registry.
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// The most bytes of a manifest read from the cache.
const MAX_MANIFEST: usize = 4 << 20;

/// How remote modules are fetched: the `serve` flags of this module.
#[derive(Clone, Debug, clap::Args)]
pub struct Fetch {
    /// The most bytes a module fetched from an `http(s)://` or `oci://`
    /// source may have: `64MiB`, `512KiB`, or bytes. Default: 64MiB.
    #[arg(long = "module-max-size", value_name = "SIZE", default_value = "64MiB", value_parser = crate::serve::settings::bytes)]
    pub max_size: usize,
    /// How long fetching one module from an `http(s)://` or `oci://`
    /// source may take, from connecting to its last byte. Default: 30s.
    #[arg(long = "module-timeout", value_name = "DURATION", default_value = "30s", value_parser = crate::serve::settings::positive)]
    pub timeout: Duration,
    /// An OCI registry (`HOST` or `HOST:PORT`) reached over plain HTTP;
    /// repeat for several. Registries on a loopback address always are.
    /// Default: none (every other registry over HTTPS).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Also trust the certificates in this PEM file (a private CA) when
    /// fetching a module over HTTPS, from an `https://` URL or an OCI
    /// registry; read at each fetch. Default: none, the system's roots
    /// alone.
    #[arg(long = "module-ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Where pulled OCI layers are kept (`serve`'s `--cache-dir`). Default:
    /// none.
    #[arg(skip)]
    pub cache_dir: Option<PathBuf>,
}

impl Default for Fetch {
    fn default() -> Self {
        Fetch {
            max_size: DEFAULT_MAX_SIZE,
            timeout: DEFAULT_TIMEOUT,
            insecure_registries: Vec::new(),
            ca: None,
            cache_dir: None,
        }
    }
}

impl Fetch {
    /// With pulled OCI layers kept in `dir` (none: not kept).
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn parse_hex(text: &str) -> Result<Sha256Digest, String> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(format!("{text:?} is not a SHA-256 digest (64 hexadecimal digits)"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(format!("{text:?} is not a SHA-256 digest (64 hexadecimal digits)")),
            }
        }
        Ok(Sha256Digest(out))
    }

    /// Parses `sha256:HEX`, as OCI writes digests.
    fn parse_oci(text: &str) -> Result<Sha256Digest, String> {
        match text.split_once(':') {
            Some(("sha256", hex)) => Sha256Digest::parse_hex(hex),
            _ => Err(format!("digest {text:?}: only sha256 digests are supported")),
        }
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A parsed module source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File {
        /// Its path.
        path: PathBuf,
        /// The module's expected digest.
        pin: Option<Sha256Digest>,
    },
    /// An `http://` or `https://` URL.
    Http {
        /// The URL, without the pin.
        url: String,
        /// The module's expected digest.
        pin: Option<Sha256Digest>,
    },
    /// An OCI artifact.
    Oci {
        /// The reference, without `oci://` and the pin.
        reference: String,
        /// The module's (the layer's) expected digest.
        pin: Option<Sha256Digest>,
    },
}

/// Splits `text#sha256=HEX` into `text` and the pin.
fn split_pin(text: &str) -> Result<(&str, Option<Sha256Digest>), String> {
    match text.split_once('#') {
        None => Ok((text, None)),
        Some((rest, fragment)) => match fragment.strip_prefix("sha256=") {
            Some(hex) => Ok((rest, Some(Sha256Digest::parse_hex(hex)?))),
            None => Err(format!("#{fragment}: the only fragment taken is a pin, #sha256=HEX")),
        },
    }
}

impl Source {
    /// Parses a `--filter` value or a Dapr `url`. A value that is not UTF-8
    /// or has no known scheme is a plain path, read as it is.
    pub fn parse(spec: &Path) -> Result<Source, String> {
        let Some(text) = spec.to_str() else { return Ok(Source::File { path: spec.to_path_buf(), pin: None }) };
        if text.starts_with("http://") || text.starts_with("https://") {
            let (url, pin) = split_pin(text)?;
            reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
            Ok(Source::Http { url: url.to_string(), pin })
        } else if let Some(rest) = text.strip_prefix("oci://") {
            let (reference, pin) = split_pin(rest)?;
            let parsed: oci_client::Reference = reference
                .parse()
                .map_err(|e| format!("not an OCI reference (REGISTRY/REPO:TAG or @sha256:HEX): {e}"))?;
            if let Some(digest) = parsed.digest() {
                Sha256Digest::parse_oci(digest)?;
            }
            Ok(Source::Oci { reference: reference.to_string(), pin })
        } else if let Some(rest) = text.strip_prefix("file://") {
            let (path, pin) = split_pin(rest)?;
            if path.is_empty() {
                return Err("file:// without a path".into());
            }
            Ok(Source::File { path: PathBuf::from(path), pin })
        } else {
            Ok(Source::File { path: spec.to_path_buf(), pin: None })
        }
    }

    /// A short name for logs and metrics: the file's stem, the URL's last
    /// path segment without `.wasm`, or the OCI repository's last segment.
    pub fn name(&self) -> String {
        let stem = |last: &str| {
            let stem = last.strip_suffix(".wasm").unwrap_or(last);
            if stem.is_empty() { "filter".to_string() } else { stem.to_string() }
        };
        match self {
            Source::File { path, .. } => {
                path.file_stem().map_or_else(|| "filter".into(), |s| s.to_string_lossy().into_owned())
            }
            Source::Http { url, .. } => {
                let path = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
                stem(path.rsplit('/').next().unwrap_or_default())
            }
            Source::Oci { reference, .. } => match reference.parse::<oci_client::Reference>() {
                Ok(r) => stem(r.repository().rsplit('/').next().unwrap_or_default()),
                Err(_) => "filter".into(),
            },
        }
    }
}

/// The name [`Source::name`] gives `spec` (the file's stem for a value
/// that does not parse).
pub fn name(spec: &Path) -> String {
    match Source::parse(spec) {
        Ok(source) => source.name(),
        Err(_) => Source::File { path: spec.to_path_buf(), pin: None }.name(),
    }
}

/// Reads the module of `spec` (a `--filter` value or a Dapr `url`, see the
/// [module docs](self)): from its file, or fetched as `fetch` says. Blocks
/// the calling thread; callable from anywhere, async code included (a
/// fetch runs on a runtime of its own, on a thread of its own).
pub fn load(spec: &Path, fetch: &Fetch) -> Result<Vec<u8>, String> {
    let source = Source::parse(spec)?;
    let (wasm, pin) = match &source {
        Source::File { path, pin } => (std::fs::read(path).map_err(|e| e.to_string())?, *pin),
        Source::Http { pin, .. } | Source::Oci { pin, .. } => (on_own_runtime(&source, fetch)?, *pin),
    };
    if let Some(expected) = pin {
        let actual = Sha256Digest::of(&wasm);
        if actual != expected {
            return Err(format!("the module's sha256 is {actual}, but the pin expects {expected}"));
        }
    }
    Ok(wasm)
}

/// Fetches `source` on a current-thread runtime started on a new thread,
/// so that the caller may be a runtime's worker or a blocking thread.
fn on_own_runtime(source: &Source, fetch: &Fetch) -> Result<Vec<u8>, String> {
    std::thread::scope(|scope| {
        let task = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to fetch the module: {e}"))?;
            runtime.block_on(async {
                match tokio::time::timeout(fetch.timeout, fetch_remote(source, fetch)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no module within {:?} (--module-timeout)", fetch.timeout)),
                }
            })
        });
        task.join().unwrap_or_else(|_| Err("the fetch failed unexpectedly".into()))
    })
}

async fn fetch_remote(source: &Source, fetch: &Fetch) -> Result<Vec<u8>, String> {
    install_crypto_provider();
    match source {
        Source::Http { url, .. } => http_get(url, fetch).await,
        Source::Oci { reference, .. } => oci_pull(reference, fetch).await,
        Source::File { .. } => Err("not a remote source".into()),
    }
}

/// rustls's ring provider, for every TLS client of the process (reqwest
/// and the OCI client are built without one).
fn install_crypto_provider() {
    // Err: a provider is already installed (by an earlier call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `error` and its sources, joined by `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = e.source();
    }
    text
}

/// Refuses a redirect from `https` to `http`; follows up to 10 others.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http" && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("a redirect from https to http")
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The certificates (DER) of [`Fetch::ca`], none without it.
fn extra_roots(fetch: &Fetch) -> Result<Vec<Vec<u8>>, String> {
    let Some(path) = &fetch.ca else { return Ok(Vec::new()) };
    let certs = crate::serve::tls::read_certificates(path, "--module-ca")?;
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

async fn http_get(url: &str, fetch: &Fetch) -> Result<Vec<u8>, String> {
    let certs = extra_roots(fetch)?
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--module-ca: {}", chain(&e)))?;
    let client = reqwest::Client::builder()
        .tls_certs_merge(certs)
        .connect_timeout(fetch.timeout)
        .timeout(fetch.timeout)
        .redirect(redirect_policy())
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {}", chain(&e)))?;
    let mut response = client.get(url).send().await.map_err(|e| chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    let max = fetch.max_size;
    if let Some(len) = response.content_length()
        && len > max as u64
    {
        return Err(format!("the module is {len} bytes, over the {max}-byte cap (--module-max-size)"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e))? {
        if chunk.len() > max - body.len() {
            return Err(format!("the module is over the {max}-byte cap (--module-max-size)"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `registry` (`HOST`, `HOST:PORT`, `[V6]:PORT`) is on a loopback
/// address.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` is reached over plain HTTP.
fn plain_http(registry: &str, fetch: &Fetch) -> bool {
    is_loopback(registry)
        || fetch
            .insecure_registries
            .iter()
            .any(|named| named == registry || registry.rsplit_once(':').is_some_and(|(host, _)| host == named))
}

/// The OCI client for `reference`'s registry.
fn oci_client(reference: &oci_client::Reference, fetch: &Fetch) -> Result<oci_client::Client, String> {
    let extra_root_certificates = extra_roots(fetch)?
        .into_iter()
        .map(|data| oci_client::client::Certificate { encoding: oci_client::client::CertificateEncoding::Der, data })
        .collect();
    let protocol = if plain_http(reference.registry(), fetch) {
        oci_client::client::ClientProtocol::Http
    } else {
        oci_client::client::ClientProtocol::Https
    };
    let config = oci_client::client::ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(fetch.timeout),
        read_timeout: Some(fetch.timeout),
        extra_root_certificates,
        ..Default::default()
    };
    oci_client::Client::try_from(config).map_err(|e| format!("cannot make an OCI client: {}", chain(&e)))
}

/// The content-addressed store under `--cache-dir`.
struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    fn open(fetch: &Fetch) -> Option<BlobCache> {
        let dir = fetch.cache_dir.as_ref()?.join("oci");
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => Some(BlobCache { dir }),
            Err(e) => {
                tracing::warn!(target: "http_wasm::serve", dir = %dir.display(), error = %e, "cannot create the OCI cache; pulling without it");
                None
            }
        }
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("sha256-{digest}"))
    }

    /// The blob of `digest`, if cached intact and at most `max` bytes.
    fn get(&self, digest: &Sha256Digest, max: usize) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let path = self.path(digest);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > max as u64 {
            tracing::warn!(target: "http_wasm::serve", file = %path.display(), "cached blob is not a regular file within the cap; pulling again");
            return None;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path).ok()?.take(max as u64 + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() > max || Sha256Digest::of(&bytes) != *digest {
            tracing::warn!(target: "http_wasm::serve", file = %path.display(), "cached blob does not match its digest; pulling again");
            return None;
        }
        Some(bytes)
    }

    /// Stores `bytes` (whose digest is `digest`); failures are logged.
    fn put(&self, digest: &Sha256Digest, bytes: &[u8]) {
        let path = self.path(digest);
        let tmp = self.dir.join(format!(".sha256-{digest}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(target: "http_wasm::serve", file = %path.display(), error = %e, "cannot write the OCI cache");
        }
    }
}

/// An `AsyncWrite` into memory that fails past `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if buf.len() > self.max - self.bytes.len() {
            let max = self.max;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the layer is over the {max}-byte cap (--module-max-size)"
            ))));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The one wasm layer of a manifest.
fn wasm_layer(manifest: &[u8]) -> Result<oci_client::manifest::OciDescriptor, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        schema_version: u8,
        media_type: Option<String>,
        #[serde(default)]
        layers: Option<Vec<oci_client::manifest::OciDescriptor>>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let m: Manifest = serde_json::from_slice(manifest).map_err(|e| format!("the manifest does not parse: {e}"))?;
    let index =
        [oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE, oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE];
    if m.manifests.is_some() || m.media_type.as_deref().is_some_and(|t| index.contains(&t)) {
        return Err("the reference names an image index, not a wasm artifact (push the module alone: oras push REGISTRY/REPO:TAG filter.wasm:application/wasm)".into());
    }
    if m.schema_version != 2 {
        return Err(format!("manifest schemaVersion {} (expected 2)", m.schema_version));
    }
    let layers = m.layers.unwrap_or_default();
    let wasm: Vec<&oci_client::manifest::OciDescriptor> =
        layers.iter().filter(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str())).collect();
    match wasm.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let found: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            Err(format!(
                "no wasm layer (media type {}) in the artifact; its layers: {found:?}",
                WASM_LAYER_MEDIA_TYPES.join(" or ")
            ))
        }
        more => Err(format!("{} wasm layers in the artifact; expected one", more.len())),
    }
}

async fn oci_pull(text: &str, fetch: &Fetch) -> Result<Vec<u8>, String> {
    let reference: oci_client::Reference = text.parse().map_err(|e| format!("not an OCI reference: {e}"))?;
    let by_digest = reference.digest().map(Sha256Digest::parse_oci).transpose()?;
    let cache = BlobCache::open(fetch);
    let client = oci_client(&reference, fetch)?;
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let cached_manifest = match (&cache, &by_digest) {
        (Some(cache), Some(digest)) => cache.get(digest, MAX_MANIFEST),
        _ => None,
    };
    let manifest = match cached_manifest {
        Some(m) => m,
        None => {
            let (raw, digest) = client
                .pull_manifest_raw(&reference, &auth, &MANIFEST_MEDIA_TYPES)
                .await
                .map_err(|e| format!("{}: {}", reference.whole(), chain(&e)))?;
            let actual = Sha256Digest::of(&raw);
            if let Some(expected) = by_digest
                && actual != expected
            {
                return Err(format!("the manifest's sha256 is {actual}, but the reference names {expected}"));
            }
            tracing::debug!(target: "http_wasm::serve", reference = %reference.whole(), %digest, "manifest pulled");
            if let (Some(cache), Some(digest)) = (&cache, &by_digest) {
                cache.put(digest, &raw);
            }
            raw.to_vec()
        }
    };
    let layer = wasm_layer(&manifest)?;
    let digest = Sha256Digest::parse_oci(&layer.digest)?;
    let max = fetch.max_size;
    if layer.size < 0 || layer.size as u64 > max as u64 {
        return Err(format!("the wasm layer is {} bytes, over the {max}-byte cap (--module-max-size)", layer.size));
    }
    if let Some(bytes) = cache.as_ref().and_then(|c| c.get(&digest, max)) {
        tracing::debug!(target: "http_wasm::serve", reference = %reference.whole(), layer = %digest, "layer from the cache");
        return Ok(bytes);
    }
    let mut out = Capped { bytes: Vec::with_capacity(layer.size as usize), max };
    client.pull_blob(&reference, &layer, &mut out).await.map_err(|e| format!("the wasm layer: {}", chain(&e)))?;
    let actual = Sha256Digest::of(&out.bytes);
    if actual != digest {
        return Err(format!("the wasm layer's sha256 is {actual}, but the manifest names {digest}"));
    }
    if let Some(cache) = &cache {
        cache.put(&digest, &out.bytes);
    }
    Ok(out.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn sources_parse() {
        let pin = Sha256Digest::parse_hex(HEX).unwrap();
        assert_eq!(Source::parse(Path::new("a/b.wasm")), Ok(Source::File { path: "a/b.wasm".into(), pin: None }));
        // A plain path keeps its `#`.
        assert_eq!(
            Source::parse(Path::new("a#sha256=1.wasm")),
            Ok(Source::File { path: "a#sha256=1.wasm".into(), pin: None })
        );
        assert_eq!(
            Source::parse(Path::new(&format!("file:///x/y.wasm#sha256={HEX}"))),
            Ok(Source::File { path: "/x/y.wasm".into(), pin: Some(pin) })
        );
        assert_eq!(
            Source::parse(Path::new(&format!("https://h.example/m/r.wasm#sha256={}", HEX.to_uppercase()))),
            Ok(Source::Http { url: "https://h.example/m/r.wasm".into(), pin: Some(pin) })
        );
        assert_eq!(
            Source::parse(Path::new("oci://127.0.0.1:5000/filters/router:v1")),
            Ok(Source::Oci { reference: "127.0.0.1:5000/filters/router:v1".into(), pin: None })
        );
        for (bad, why) in [
            ("http://h/x.wasm#sha256=abc", "not a SHA-256 digest"),
            ("http://h/x.wasm#md5=abc", "the only fragment taken is a pin"),
            ("http://", "not a URL: empty host"),
            ("oci://Registry/UPPER:v1", "not an OCI reference"),
            (&format!("oci://r.example/x@sha512:{}", "0".repeat(128)), "only sha256"),
            ("file://", "without a path"),
        ] {
            let err = Source::parse(Path::new(bad)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name(Path::new("dir/router.wasm")), "router");
        assert_eq!(name(Path::new(&format!("https://h.example/a/harden.wasm?x=1#sha256={HEX}"))), "harden");
        assert_eq!(name(Path::new("oci://127.0.0.1:5000/team/auth:v2")), "auth");
        assert_eq!(name(Path::new(&format!("oci://r.example/team/auth@sha256:{HEX}"))), "auth");
        assert_eq!(name(Path::new("http://h.example/")), "filter");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        let fetch = Fetch { insecure_registries: vec!["reg.internal".into(), "other:5000".into()], ..Fetch::default() };
        for (registry, plain) in [
            ("127.0.0.1:5000", true),
            ("127.3.2.1", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("10.0.0.1:5000", false),
            ("ghcr.io", false),
            ("reg.internal:443", true),
            ("reg.internal", true),
            ("other:5000", true),
            ("other:5001", false),
        ] {
            assert_eq!(plain_http(registry, &fetch), plain, "{registry}");
        }
    }

    #[test]
    fn manifests_name_one_wasm_layer() {
        let layer = |t: &str| format!(r#"{{"mediaType":"{t}","digest":"sha256:{HEX}","size":5}}"#);
        let manifest = |layers: &[String]| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
                layer("application/vnd.oci.empty.v1+json"),
                layers.join(",")
            )
        };
        for t in WASM_LAYER_MEDIA_TYPES {
            let found = wasm_layer(manifest(&[layer("text/plain"), layer(t)]).as_bytes()).unwrap();
            assert_eq!(found.media_type, t);
        }
        let none = wasm_layer(manifest(&[layer("text/plain")]).as_bytes()).unwrap_err();
        assert!(none.contains("no wasm layer") && none.contains("text/plain"), "{none}");
        let two = wasm_layer(manifest(&[layer("application/wasm"), layer("application/wasm")]).as_bytes()).unwrap_err();
        assert!(two.contains("2 wasm layers"), "{two}");
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(wasm_layer(index.as_bytes()).unwrap_err().contains("image index"));
        assert!(wasm_layer(b"[1,2]").unwrap_err().contains("does not parse"));
    }

    #[test]
    fn files_are_checked_against_their_pin() {
        let dir = std::env::temp_dir().join(format!("http-wasm-module-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.wasm");
        std::fs::write(&file, b"test").unwrap();
        let spec = |hex: &str| PathBuf::from(format!("file://{}#sha256={hex}", file.display()));
        // sha256("test")
        assert_eq!(load(&spec(HEX), &Fetch::default()), Ok(b"test".to_vec()));
        let other = "00".repeat(32);
        let err = load(&spec(&other), &Fetch::default()).unwrap_err();
        assert_eq!(err, format!("the module's sha256 is {HEX}, but the pin expects {other}"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_serves_only_intact_blobs() {
        let dir = std::env::temp_dir().join(format!("http-wasm-module-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = BlobCache::open(&Fetch::default().cache_dir(Some(dir.clone()))).unwrap();
        let digest = Sha256Digest::of(b"test");
        assert_eq!(cache.get(&digest, 100), None);
        cache.put(&digest, b"test");
        assert_eq!(cache.get(&digest, 100), Some(b"test".to_vec()));
        assert_eq!(cache.get(&digest, 3), None, "over the cap");
        std::fs::write(cache.path(&digest), b"tesT").unwrap();
        assert_eq!(cache.get(&digest, 100), None, "altered");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
