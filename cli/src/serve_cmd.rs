//! `http-wasm serve`: arguments to a pipeline, then the server.

use crate::embedded::EXAMPLES;
use crate::serve::pipeline::{FilterSpec, Pipeline};
use crate::serve::proxy::{Next, Upstream};
use crate::serve::{self, dapr};
use bytes::Bytes;
use clap::ArgMatches;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The upstream, `http://host:port`. Without it: a built-in echo backend
    /// (the conformance suite's, see `http-wasm conformance backend`).
    #[arg(long)]
    upstream: Option<String>,
    /// Speak HTTP/2 (prior knowledge) to the upstream instead of HTTP/1.1.
    #[arg(long, requires = "upstream")]
    upstream_http2: bool,
    /// A filter module; repeat for a pipeline (the first is outermost).
    #[arg(long = "filter", value_name = "FILE")]
    filters: Vec<PathBuf>,
    /// The configuration of the `--filter` before it, as a string.
    #[arg(long = "config", value_name = "STRING")]
    configs: Vec<String>,
    /// The configuration of the `--filter` before it, read as raw bytes.
    #[arg(long = "config-file", value_name = "FILE")]
    config_files: Vec<PathBuf>,
    /// Dapr resource files (or directories of them): `middleware.http.wasm`
    /// components ordered by a Configuration's `spec.httpPipeline.handlers`.
    #[arg(long, value_name = "DIR_OR_FILE", conflicts_with_all = ["filters", "configs", "config_files"])]
    dapr: Vec<PathBuf>,
    /// The engine running the filters.
    #[arg(long, default_value = "wasmtime")]
    engine: String,
}

enum Item {
    Filter(PathBuf),
    Config(Bytes, String),
}

/// Pairs each `--config`/`--config-file` with the `--filter` before it.
fn filters_in_order(args: &ServeArgs, matches: &ArgMatches) -> Result<Vec<FilterSpec>, String> {
    let idx = |id: &str| matches.indices_of(id).map(|i| i.collect::<Vec<_>>()).unwrap_or_default();
    let mut items: Vec<(usize, Item)> = Vec::new();
    items.extend(idx("filters").into_iter().zip(&args.filters).map(|(i, f)| (i, Item::Filter(f.clone()))));
    items.extend(
        idx("configs")
            .into_iter()
            .zip(&args.configs)
            .map(|(i, c)| (i, Item::Config(Bytes::from(c.clone()), "--config".into()))),
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
                let wasm = std::fs::read(&path).map_err(|e| format!("--filter {}: {e}", path.display()))?;
                let name = path.file_stem().map_or_else(|| "filter".into(), |s| s.to_string_lossy().into_owned());
                let source = path.display().to_string();
                specs.push((FilterSpec { name, source, wasm, config: Bytes::new() }, false));
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

fn dapr_filters(paths: &[PathBuf]) -> Result<Vec<FilterSpec>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    let mut specs = Vec::new();
    for f in dapr::load(paths, &cwd)? {
        let wasm = std::fs::read(&f.path).map_err(|e| {
            format!("{}: Component {:?}: spec.metadata url: {}: {e}", f.file.display(), f.name, f.path.display())
        })?;
        specs.push(FilterSpec {
            name: f.name,
            source: f.path.display().to_string(),
            wasm,
            config: f.guest_config.into(),
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
            wasm: e.wasm.to_vec(),
            config: Bytes::from_static(e.demo_config.as_bytes()),
        })
        .collect()
}

pub async fn run(args: ServeArgs, matches: &ArgMatches) -> Result<ExitCode, String> {
    let engine = crate::engine(&args.engine)?;
    let demo = args.filters.is_empty() && args.dapr.is_empty() && args.upstream.is_none();
    if (!args.configs.is_empty() || !args.config_files.is_empty()) && args.filters.is_empty() {
        return Err("--config and --config-file need a --filter before them".into());
    }
    let filters = if demo {
        demo_filters()
    } else if !args.dapr.is_empty() {
        dapr_filters(&args.dapr)?
    } else {
        filters_in_order(&args, matches)?
    };
    let next = match &args.upstream {
        Some(url) => Next::Upstream(Box::new(Upstream::new(url, args.upstream_http2)?)),
        None => Next::Echo,
    };
    let described: Vec<String> = filters.iter().map(|f| f.name.clone()).collect();
    let pipeline = Pipeline::build(filters, next.clone(), engine)?;
    let listener = serve::bind(args.listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let upstream = match &next {
        Next::Upstream(u) => u.url(),
        Next::Echo => "the built-in echo backend".to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "http-wasm serve: listening on http://{addr}");
    let chain = if described.is_empty() { "no filter".to_string() } else { described.join(" -> ") };
    let _ = writeln!(out, "pipeline: {chain} -> {upstream}");
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
    serve::serve(listener, pipeline, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(ExitCode::SUCCESS)
}
