//! `http-wasm build-examples --out DIR`: the example filters' modules,
//! embedded in the binary, written as files (for `serve --filter` and the
//! Dapr resource files in `examples/dapr`).

use crate::embedded::EXAMPLES;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BuildExamplesArgs {
    /// The directory to write `router.wasm`, `header-validation.wasm` and `harden.wasm` to (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: BuildExamplesArgs) -> Result<ExitCode, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    for example in EXAMPLES {
        let path = args.out.join(example.file);
        std::fs::write(&path, example.wasm).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), example.wasm.len());
    }
    Ok(ExitCode::SUCCESS)
}
