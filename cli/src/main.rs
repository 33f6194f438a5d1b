//! `http-wasm`: run http-wasm filters as a reverse proxy, inspect modules,
//! and run the conformance suite.
//!
//! ```text
//! http-wasm serve [--listen ADDR] [--upstream URL [--upstream-http2] [--upstream-timeout DURATION] [--rewrite-host]]
//!                 [--forwarded append|replace|off]
//!                 [--filter FILE|URL [--config STRING | --config-file FILE]]... | [--dapr DIR_OR_FILE]...
//!                 [--engine wasmtime|wasmer] [--isolation reuse|per-request|recycle-after:N]
//!                 [--failure-policy closed|open] [--cache-dir DIR] [--watch-interval DURATION|off]
//!                 [--pool-size N] [--pool-wait DURATION] [--deadline DURATION] [--memory-limit SIZE]
//!                 [--table-limit N] [--body-limit SIZE] [--header-limit SIZE] [--body-timeout DURATION]
//!                 [--guest-log-level LEVEL] [--features FEATURES] [--drain-timeout DURATION] [--admin ADDR]
//!                 [--module-max-size SIZE] [--module-timeout DURATION] [--insecure-registry HOST]...
//!                 [--workers N]
//! http-wasm inspect FILE [--engine wasmtime|wasmer]
//! http-wasm build-examples --out DIR
//! http-wasm conformance backend [--listen ADDR]
//! http-wasm conformance run --url URL [--format table|json] [--filter SUBSTR] [--http2]
//! http-wasm conformance guest --out FILE [--config-out FILE]
//! ```

mod conformance;
mod embedded;
mod examples;
mod inspect;
mod module_source;
mod new;
mod serve;
mod serve_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;
use tower_http_wasm::Engine;

#[derive(Debug, Parser)]
#[command(name = "http-wasm", version, about = "Run, inspect and test http-wasm filters")]
struct Cli {
    /// Log filter (tracing's `RUST_LOG` syntax; `RUST_LOG` wins when set).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run filters as a reverse proxy in front of an upstream (or a built-in
    /// echo backend). Without filters, upstream or Dapr files: a demo.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Show a module's imports, exports and ABI problems.
    Inspect(inspect::InspectArgs),
    /// Write the example filters' modules (router, header-validation, harden) to a directory.
    BuildExamples(examples::BuildExamplesArgs),
    /// Write a new filter crate (SDK dependency, size-tuned release profile, a `TestHost` test).
    New(new::NewArgs),
    /// The conformance suite: its backend, its runner and its guest.
    Conformance {
        #[command(subcommand)]
        command: conformance::ConformanceCommand,
    },
}

/// The engine named `name` (parsed by the library's `FromStr`).
pub fn engine(name: &str) -> Result<Engine, String> {
    name.parse().map_err(|e: tower_http_wasm::units::ParseError| e.to_string())
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `serve` runs its connections on worker threads of their own (see
    // `serve::workers`): this thread's runtime only loads, reloads, answers
    // the admin port and waits for signals.
    let builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match builder {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let sub = matches.subcommand_matches("serve").expect("the serve subcommand matched");
                serve_cmd::run(*args, sub).await
            }
            Command::Inspect(args) => inspect::run(args),
            Command::BuildExamples(args) => examples::run(args),
            Command::New(args) => new::run(args),
            Command::Conformance { command } => conformance::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
