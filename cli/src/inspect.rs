//! `http-wasm inspect FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The wasm module.
    file: PathBuf,
    /// The engine that compiles it.
    #[arg(long, default_value = "wasmtime")]
    engine: String,
}

/// Prints the inspection; fails (exit 1) when the module does not fit the
/// ABI or does not start, naming each problem.
pub fn run(args: InspectArgs) -> Result<ExitCode, String> {
    let engine = crate::engine(&args.engine)?;
    let shown = args.file.display();
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{shown}: {e}"))?;
    let inspection = tower_http_wasm::inspect(&bytes, engine).map_err(|e| format!("{shown}: {e}"))?;
    print!("{inspection}");
    if inspection.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    if !inspection.problems.is_empty() {
        eprintln!("error: {shown} does not match the http-wasm ABI:");
        for p in &inspection.problems {
            eprintln!("  {p}");
        }
    }
    if let Some(e) = &inspection.start_error {
        eprintln!("error: {shown} fits the ABI but does not start: {e}");
    }
    Ok(ExitCode::FAILURE)
}
