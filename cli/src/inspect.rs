//! `http-wasm inspect FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The wasm module.
    file: PathBuf,
    /// The engine that compiles it (`wasmtime`, `wasmer`). Default: every
    /// engine of this build, the first in full, the others' compile time
    /// and verdict.
    #[arg(long)]
    engine: Option<String>,
}

/// Prints the inspection; fails (exit 1) when the module does not fit the
/// ABI or does not start, naming each problem.
pub fn run(args: InspectArgs) -> Result<ExitCode, String> {
    let engines = match &args.engine {
        Some(name) => vec![crate::engine(name)?],
        None => tower_http_wasm::Engine::ALL.to_vec(),
    };
    let shown = args.file.display();
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{shown}: {e}"))?;
    let inspection = tower_http_wasm::inspect(&bytes, engines[0]).map_err(|e| format!("{shown}: {e}"))?;
    print!("{inspection}");
    for &engine in &engines[1..] {
        let other = tower_http_wasm::inspect(&bytes, engine).map_err(|e| format!("{shown}: {e}"))?;
        let verdict = if other.is_ok() { "ok" } else { "fails (as above)" };
        println!("engine: {engine} (compiled in {:.2} ms): {verdict}", other.compile_time.as_secs_f64() * 1e3);
    }
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
