//! `http-wasm conformance backend|run|guest`.

use crate::embedded::CONFORMANCE_GUEST;
use http_wasm_conformance::{GUEST_CONFIG, RunOptions, backend};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum ConformanceCommand {
    /// Serve the echo backend the guest calls as its next handler (HTTP/1.1 and HTTP/2).
    Backend {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
    /// Send every case to a host running the conformance guest in front of the backend.
    Run {
        /// The host's URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// `table` (default) or `json`.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Only the cases whose id contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
        #[arg(long)]
        http2: bool,
        /// Seconds one request may take.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Write the conformance guest module (and, optionally, the configuration a host must load it with).
    Guest {
        /// Where to write the module.
        #[arg(long)]
        out: PathBuf,
        /// Where to write GUEST_CONFIG (raw bytes, for `serve --config-file`).
        #[arg(long)]
        config_out: Option<PathBuf>,
    },
}

pub async fn run(command: ConformanceCommand) -> Result<ExitCode, String> {
    match command {
        ConformanceCommand::Backend { listen } => {
            let addr = backend::spawn(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!("conformance backend listening on http://{addr}");
            tokio::signal::ctrl_c().await.map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        ConformanceCommand::Run { url, format, filter, http2, timeout } => {
            let options = RunOptions { http2, filter, timeout: Duration::from_secs(timeout), ..RunOptions::new(url) };
            let report = http_wasm_conformance::run(&options).await.map_err(|e| e.to_string())?;
            if report.results.is_empty() {
                return Err(format!("no case matches --filter {:?}", options.filter.unwrap_or_default()));
            }
            if format == "json" {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ConformanceCommand::Guest { out, config_out } => {
            std::fs::write(&out, CONFORMANCE_GUEST).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), CONFORMANCE_GUEST.len());
            if let Some(path) = config_out {
                std::fs::write(&path, GUEST_CONFIG).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {} ({} bytes: load the guest with exactly these)", path.display(), GUEST_CONFIG.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
