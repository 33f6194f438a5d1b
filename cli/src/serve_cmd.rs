//! `http-wasm serve`: arguments to a pipeline, then the server.

use crate::embedded::EXAMPLES;
use crate::module_source;
use crate::serve::forwarded::Forwarded;
use crate::serve::pipeline::{self, FilterSpec, Filters, Options};
use crate::serve::proxy::{self, Next, Upstream};
use crate::serve::settings::{self, Settings, positive};
use crate::serve::tls::ServerCert;
use crate::serve::workers::{self, Workers};
use crate::serve::{self, dapr};
use bytes::Bytes;
use clap::ArgMatches;
use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http_wasm::{Engine, FailurePolicy, Features, Isolation, LogLevel};

/// `--watch-interval`: a duration, or `off`.
#[derive(Clone, Copy, Debug)]
struct Watch(Option<Duration>);

fn watch(text: &str) -> Result<Watch, String> {
    if text == "off" { Ok(Watch(None)) } else { positive(text).map(|d| Watch(Some(d))) }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How many threads serve connections, each a single-threaded runtime
    /// with its own listener on --listen (`SO_REUSEPORT`; the kernel
    /// spreads new connections over them), its own upstream connections,
    /// its own instances of each filter (--pool-size is per worker), and
    /// its connections' requests and guest calls never handed to another
    /// thread. The filters' modules and reloads, `/metrics` and
    /// --max-connections are shared. Default: the number of cores
    /// available to the process.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// Serve HTTPS: the certificate chain (PEM, the server's certificate
    /// first) offered to clients, with ALPN `h2` and `http/1.1`; needs
    /// --tls-key. Both files are read again on SIGHUP (a pair that fails
    /// to load is logged and the old one keeps serving). Default: none,
    /// plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert's
    /// certificate; needs --tls-cert. Default: none.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The upstream, `http://host:port` or `https://host:port`. Default:
    /// none, a built-in echo backend (the conformance suite's, see
    /// `http-wasm conformance backend`). Over https the upstream's host is
    /// sent as SNI and checked against its certificate (see
    /// --upstream-ca), and ALPN offers `h2` and `http/1.1`: HTTP/2 when
    /// the upstream selects it.
    #[arg(long)]
    upstream: Option<String>,
    /// Speak HTTP/2 to the upstream instead of HTTP/1.1: with prior
    /// knowledge over http, and over https by ALPN `h2` alone (an upstream
    /// that does not select it gets no request: 502). Default: off (http:
    /// HTTP/1.1; https: the upstream's choice).
    #[arg(long, requires = "upstream")]
    upstream_http2: bool,
    /// Trust only the certificates in this PEM file (a private CA) for an
    /// `https://` upstream. Default: the system's roots (`SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`, or the distribution's bundle).
    #[arg(long, value_name = "FILE", requires = "upstream")]
    upstream_ca: Option<PathBuf>,
    /// How long the upstream may take, from the start of a request
    /// (connecting included) to its response head, before the client gets
    /// 504: `500ms`, `30s`, `2m`. The response body then streams without a
    /// limit. An upstream that cannot be reached, refuses or resets gives 502.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive, requires = "upstream")]
    upstream_timeout: Duration,
    /// Send the upstream's own authority as `host`. Default: `host` goes as
    /// the client sent it (or as a filter set it); over HTTP/2 to the
    /// upstream it is sent as `:authority`.
    #[arg(long, requires = "upstream")]
    rewrite_host: bool,
    /// The most idle connections kept open to the upstream over HTTP/1.1
    /// (more may be open while requests are in flight; they close when
    /// done), split among the --workers (each keeps its share).
    /// Connections go to the upstream's address alone, whatever `host`
    /// clients send; over HTTP/2 (`--upstream-http2`) every request shares
    /// one connection. Default: 32.
    #[arg(long, value_name = "N", default_value_t = proxy::DEFAULT_MAX_IDLE, requires = "upstream")]
    upstream_max_idle: usize,
    /// How long an HTTP/1.1 client may take to send a request head before
    /// the connection is closed: `500ms`, `30s`. Default: 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive)]
    header_timeout: Duration,
    /// How long a client connection may stay open with no request in
    /// progress (HTTP/1.1 between keep-alive requests, HTTP/2 without a
    /// stream) before it is closed (HTTP/2: GOAWAY), so that idle clients
    /// do not hold `--max-connections` slots. HTTP/2 clients are also
    /// pinged every 20s when silent, and dropped when a ping goes 20s
    /// unanswered. Default: 60s.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive)]
    idle_timeout: Duration,
    /// The most client connections open at once; further ones wait to be
    /// accepted until one closes. Default: 10000.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// What the upstream is told about the client in `x-forwarded-for` and
    /// `forwarded` (RFC 7239). Applied when a request arrives, so the
    /// filters see the result.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = Forwarded::Append)]
    forwarded: Forwarded,
    /// A filter module; repeat for a pipeline (the first is outermost): a
    /// file, or `http(s)://URL` or `oci://REGISTRY/REPO:TAG` (or
    /// `@sha256:HEX`), fetched at start and on SIGHUP; any but a plain path
    /// may end in `#sha256=HEX`, a pin (docs/gateway.md, "Module
    /// sources"). Its name in logs and metrics is the file's stem, or the
    /// URL's or repository's last path segment (`-2`, `-3`... for
    /// repeats). Default: none.
    #[arg(long = "filter", value_name = "FILE|URL")]
    filters: Vec<PathBuf>,
    /// The configuration of the `--filter` before it: the argument's bytes
    /// as given (on Unix, not necessarily UTF-8). Default: empty.
    #[arg(long = "config", value_name = "STRING")]
    configs: Vec<OsString>,
    /// The configuration of the `--filter` before it: the file's raw bytes.
    /// Default: empty.
    #[arg(long = "config-file", value_name = "FILE")]
    config_files: Vec<PathBuf>,
    /// Dapr resource files (or directories of them): `middleware.http.wasm`
    /// components ordered by a Configuration's `spec.httpPipeline.handlers`.
    /// Default: none.
    #[arg(long, value_name = "DIR_OR_FILE", conflicts_with_all = ["filters", "configs", "config_files"])]
    dapr: Vec<PathBuf>,
    /// The engine running the filters: `wasmtime` or `wasmer`.
    #[arg(long, default_value = "wasmtime", value_parser = crate::engine)]
    engine: Engine,
    /// How requests share a filter's instances: `reuse` (an instance
    /// serves request after request, so guest globals and memory persist
    /// between them, as in the Go host), `per-request` (a fresh instance
    /// for every request), or `recycle-after:N` (an instance is replaced
    /// after N requests). Whatever the policy, an instance that failed is
    /// discarded. A Dapr component's `isolation` metadata overrides it.
    #[arg(long, value_name = "POLICY", default_value = "reuse", value_parser = settings::isolation)]
    isolation: Isolation,
    /// What the client gets when a guest fails (trap, deadline, invalid
    /// host call): `closed` answers 500; `open` skips the filter, sending
    /// the request on as the client sent it (logged at warn, counted in
    /// `failed_open`; a failure after part of a body was consumed stays
    /// closed, and a body over the limit is always 413). A Dapr
    /// component's `failurePolicy` metadata overrides it.
    #[arg(long, value_name = "POLICY", default_value = "closed", value_parser = settings::failure_policy)]
    failure_policy: FailurePolicy,
    /// The most instances of each filter alive at once on each worker
    /// (--workers times this in all), hence the most requests a filter
    /// handles concurrently on a worker; further requests on that worker
    /// wait for a free instance there (see --pool-wait). A Dapr
    /// component's `poolSize` metadata overrides it. Default: 16.
    #[arg(long, value_name = "N", default_value = "16", value_parser = settings::count)]
    pool_size: usize,
    /// How long a request waits for a free filter instance when all are
    /// busy before it gets 503 with `retry-after`, whatever the failure
    /// policy (a busy pool is not a guest failure); `0s` does not wait.
    /// Dapr metadata: `poolWait`. Default: 10s.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = settings::span)]
    pool_wait: Duration,
    /// How long a client may send no request body data (between two
    /// frames, or before the first) while a filter or the upstream waits
    /// for it: then the client gets 408 (HTTP/1.1: and the connection
    /// closes), the upstream exchange is aborted and any filter instance it
    /// held is released. Dapr metadata: `bodyTimeout` (the shortest in the
    /// pipeline applies on the way to the upstream). Default: 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = settings::positive)]
    body_timeout: Duration,
    /// The longest one guest call (start, `handle_request`,
    /// `handle_response`) may run; past it the call is stopped and the
    /// request gets the failure response. Time spent waiting for a body
    /// does not count. Dapr metadata: `deadline`.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = settings::positive)]
    deadline: Duration,
    /// The most linear memory one instance may grow to: `64MiB`, `1GiB`,
    /// or bytes. A module whose initial memory is larger fails to load.
    /// Dapr metadata: `memoryLimit`.
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = settings::bytes)]
    memory_limit: usize,
    /// The most elements one table of an instance may grow to. Dapr
    /// metadata: `tableLimit`.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = settings::elements)]
    table_limit: u64,
    /// The most bytes of one body buffered for a guest (`buffer_request`,
    /// `buffer_response`, bodies a guest writes): a request body past it
    /// gets 413. Dapr metadata: `bodyLimit`.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = settings::bytes)]
    body_limit: usize,
    /// The most bytes (names plus values) one header map may hold after a
    /// guest wrote to it. Dapr metadata: `headerLimit`.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = settings::bytes)]
    header_limit: usize,
    /// The lowest guest log level logged (`debug`, `info`, `warn`,
    /// `error`, or `none`); guests asking `log_enabled` get the answer by
    /// it. Dapr metadata: `logLevel`.
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = settings::log_level)]
    guest_log_level: LogLevel,
    /// The features a guest may enable: `all`, `none`, or names joined by
    /// `|` (`buffer_request|buffer_response|trailers`). Dapr metadata:
    /// `features`.
    #[arg(long, value_name = "FEATURES", default_value = "all", value_parser = settings::features)]
    features: Features,
    /// Time one guest call in N, picked at random, for
    /// `http_wasm_guest_duration_seconds` (1 times every call: two clock
    /// reads per call, a few percent of a no-op filter's cost). The request
    /// counters count every call. Dapr metadata: `guestTimeSampling`.
    #[arg(long, value_name = "N", default_value = "16", value_parser = settings::one_in)]
    guest_time_sampling: u32,
    /// On SIGTERM (or Ctrl-C) the gateway stops accepting, `/readyz`
    /// answers 503, and requests in flight get this long to finish before
    /// the process exits (status 0).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = settings::span)]
    drain_timeout: Duration,
    /// Keep compiled modules in this directory (created if missing; not
    /// used if other users may write to it), so that a start or reload
    /// with a module seen before skips compiling. Default: none, every
    /// start and reload compiles.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// How often each filter's module file is checked (modification time,
    /// length, identity) and reloaded when it changed: `500ms`, `1s`...,
    /// or `off`. SIGHUP reloads every filter's module whatever this is.
    /// Only modules are re-read, not configurations or Dapr metadata; a
    /// module that fails to load is logged and the old one keeps serving.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = watch)]
    watch_interval: Watch,
    /// Serve `GET /metrics` (OpenMetrics text format, for Prometheus),
    /// `GET /healthz` (200 while the process runs) and `GET
    /// /readyz` (200 once every filter is loaded and the listener accepts,
    /// 503 while draining) on this address, e.g. `127.0.0.1:9090`.
    /// Default: off.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    #[command(flatten)]
    module_sources: module_source::Fetch,
}

enum Item {
    Filter(PathBuf),
    Config(Bytes, String),
}

/// Pairs each `--config`/`--config-file` with the `--filter` before it.
fn filters_in_order(
    args: &ServeArgs,
    matches: &ArgMatches,
    fetch: &module_source::Fetch,
) -> Result<Vec<FilterSpec>, String> {
    let idx = |id: &str| matches.indices_of(id).map(|i| i.collect::<Vec<_>>()).unwrap_or_default();
    let mut items: Vec<(usize, Item)> = Vec::new();
    items.extend(idx("filters").into_iter().zip(&args.filters).map(|(i, f)| (i, Item::Filter(f.clone()))));
    items.extend(
        idx("configs")
            .into_iter()
            .zip(&args.configs)
            .map(|(i, c)| (i, Item::Config(Bytes::from(c.clone().into_encoded_bytes()), "--config".into()))),
    );
    for (i, path) in idx("config_files").into_iter().zip(&args.config_files) {
        let bytes = std::fs::read(path).map_err(|e| format!("--config-file {}: {e}", path.display()))?;
        items.push((i, Item::Config(Bytes::from(bytes), format!("--config-file {}", path.display()))));
    }
    items.sort_by_key(|(i, _)| *i);
    let mut specs: Vec<(FilterSpec, bool)> = Vec::new();
    for (_, item) in items {
        match item {
            Item::Filter(path) => {
                let wasm =
                    module_source::load(&path, fetch).map_err(|e| format!("--filter {}: {e}", path.display()))?;
                let name = module_source::name(&path);
                let source = path.display().to_string();
                let spec = FilterSpec {
                    name,
                    source,
                    path: Some(path),
                    wasm,
                    config: Bytes::new(),
                    settings: Settings::default(),
                };
                specs.push((spec, false));
            }
            Item::Config(bytes, what) => match specs.last_mut() {
                None => return Err(format!("{what} comes before any --filter")),
                Some((_, true)) => return Err(format!("{what}: the --filter before it already has a configuration")),
                Some((spec, has)) => {
                    spec.config = bytes;
                    *has = true;
                }
            },
        }
    }
    Ok(specs.into_iter().map(|(s, _)| s).collect())
}

fn dapr_filters(paths: &[PathBuf], fetch: &module_source::Fetch) -> Result<Vec<FilterSpec>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    let mut specs = Vec::new();
    for f in dapr::load(paths, &cwd)? {
        let wasm = module_source::load(&f.path, fetch).map_err(|e| {
            format!("{}: Component {:?}: spec.metadata url: {}: {e}", f.file.display(), f.name, f.path.display())
        })?;
        specs.push(FilterSpec {
            name: f.name,
            source: f.path.display().to_string(),
            path: Some(f.path),
            wasm,
            config: f.guest_config.into(),
            settings: f.settings,
        });
    }
    Ok(specs)
}

fn demo_filters() -> Vec<FilterSpec> {
    EXAMPLES
        .iter()
        .map(|e| FilterSpec {
            name: e.file.trim_end_matches(".wasm").to_string(),
            source: "built in".to_string(),
            path: None,
            wasm: e.wasm.to_vec(),
            config: Bytes::from_static(e.demo_config.as_bytes()),
            settings: Settings::default(),
        })
        .collect()
}

pub async fn run(args: ServeArgs, matches: &ArgMatches) -> Result<ExitCode, String> {
    let engine = args.engine;
    let demo = args.filters.is_empty() && args.dapr.is_empty() && args.upstream.is_none();
    if (!args.configs.is_empty() || !args.config_files.is_empty()) && args.filters.is_empty() {
        return Err("--config and --config-file need a --filter before them".into());
    }
    let fetch = args.module_sources.clone().cache_dir(args.cache_dir.clone());
    let mut filters = if demo {
        demo_filters()
    } else if !args.dapr.is_empty() {
        dapr_filters(&args.dapr, &fetch)?
    } else {
        filters_in_order(&args, matches, &fetch)?
    };
    let workers = args.workers.map_or_else(workers::default_count, |n| n as usize);
    // Each worker its own HTTP/1.1 upstream pool (its connections are its
    // own runtime's tasks), the idle bound split among them so that the
    // process keeps at most --upstream-max-idle; one HTTP/2 connection for all.
    let mut upstreams: Vec<Next> = Vec::with_capacity(workers);
    for i in 0..workers {
        let Some(url) = &args.upstream else {
            upstreams.push(Next::Echo);
            continue;
        };
        let max_idle = args.upstream_max_idle / workers + usize::from(i < args.upstream_max_idle % workers);
        let upstream = Upstream::new(url, args.upstream_http2, max_idle, args.upstream_ca.as_deref())?
            .timeout(args.upstream_timeout)
            .rewrite_host(args.rewrite_host);
        let upstream = match upstreams.first() {
            Some(Next::Upstream(first)) => upstream.sharing_http2_with(first),
            _ => upstream,
        };
        upstreams.push(Next::Upstream(Box::new(upstream)));
    }
    pipeline::unique_names(&mut filters);
    let described: Vec<String> = filters.iter().map(|f| f.name.clone()).collect();
    let settings = Settings {
        isolation: Some(args.isolation),
        failure_policy: Some(args.failure_policy),
        pool_size: Some(args.pool_size),
        pool_wait: Some(args.pool_wait),
        deadline: Some(args.deadline),
        memory_limit: Some(args.memory_limit),
        table_limit: Some(args.table_limit),
        body_limit: Some(args.body_limit),
        header_limit: Some(args.header_limit),
        body_timeout: Some(args.body_timeout),
        log_level: Some(args.guest_log_level),
        features: Some(args.features),
        guest_time_sampling: Some(args.guest_time_sampling),
    };
    let options = Options { engine, settings, cache_dir: args.cache_dir.clone() };
    let cert = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerCert::load(cert.clone(), key.clone())?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
    };
    let tls = cert.as_ref().map(ServerCert::acceptor).transpose()?;
    let filters = Filters::load(filters, &options)?;
    let loaded = &filters.loaded;
    let listeners = workers::bind(args.listen, workers)?;
    let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let admin = match args.admin {
        Some(at) => {
            let listener = TcpListener::bind(at).await.map_err(|e| format!("--admin: cannot listen on {at}: {e}"))?;
            Some((listener.local_addr().map_err(|e| e.to_string())?, listener))
        }
        None => None,
    };
    let upstream = match &upstreams[0] {
        Next::Upstream(u) => u.url(),
        Next::Echo => "the built-in echo backend".to_string(),
    };
    // SIGHUP and SIGTERM are handled from here on: before "listening" is printed.
    serve::reload::spawn(loaded, args.watch_interval.0, fetch, cert);
    let stop = serve::stop_signal()?;
    let health = serve::admin::Health::default();
    let admin = admin.map(|(at, listener)| {
        serve::admin::spawn(listener, loaded.clone(), health.clone());
        at
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let limits = serve::Limits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
        drain_timeout: args.drain_timeout,
    };
    let workers =
        Workers::start(listeners.into_iter().zip(upstreams).collect(), &filters, args.forwarded, tls.clone(), limits)
            .await?;
    // Every filter is loaded and every worker accepts: ready from before
    // "listening" is printed until a stop signal, then not ready while the
    // open requests drain.
    health.set_ready(true);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "http-wasm serve: listening on {scheme}://{addr}");
    let chain = if described.is_empty() { "no filter".to_string() } else { described.join(" -> ") };
    let _ = writeln!(out, "pipeline: {chain} -> {upstream}");
    if let Some(at) = admin {
        let _ = writeln!(out, "admin: metrics on http://{at}/metrics");
    }
    if demo {
        let _ = writeln!(
            out,
            "\ndemo: harden (security headers) -> router (/api -> /v1, /public) -> header-validation (x-api-key)\ntry:\n  \
             curl -i http://{addr}/api/users -H 'x-api-key: demo12345'   # 200: routed to /v1/users, echoed\n  \
             curl -i http://{addr}/api/users                              # 401: no x-api-key\n  \
             curl -i http://{addr}/api/users -H 'x-api-key: bad!'         # 400: malformed key\n  \
             curl -i http://{addr}/elsewhere                              # 404: no route\n\nCtrl-C to stop."
        );
    }
    let _ = out.flush();
    drop(out);
    stop.await;
    health.set_ready(false);
    workers.stop().await;
    Ok(ExitCode::SUCCESS)
}
