//! What a module imports and exports, and whether that matches the ABI.

use crate::module::{Analysis, abi_check};
use crate::{Engine, Error, Features, PluginBuilder};
use std::fmt;
use std::time::{Duration, Instant};

/// A module's relation to the http-wasm ABI, as [`inspect`] found it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// The engine that compiled the module.
    pub engine: Engine,
    /// Every import: `(module, name, type)`, the type printed like `(i32, i32) -> i32`.
    pub imports: Vec<(String, String, String)>,
    /// Every export: `(name, type)`.
    pub exports: Vec<(String, String)>,
    /// Every mismatch with the ABI, one line each; empty when the module fits.
    pub problems: Vec<String>,
    /// `command` (exports `_start`), `reactor` (exports `_initialize`) or `none`.
    pub kind: &'static str,
    /// The WASI preview 1 functions the module imports.
    pub wasi_imports: Vec<String>,
    /// The features the guest enabled while starting, when it fits the ABI and started.
    pub start_features: Option<Features>,
    /// Why starting failed, when it did.
    pub start_error: Option<String>,
    /// How long compiling took.
    pub compile_time: Duration,
}

impl Inspection {
    /// True when the module fits the ABI and started.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.start_error.is_none()
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "engine: {} (compiled in {:.2} ms)", self.engine, self.compile_time.as_secs_f64() * 1e3)?;
        writeln!(f, "kind: {}", self.kind)?;
        writeln!(f, "imports:")?;
        for (m, n, t) in &self.imports {
            writeln!(f, "  {m}.{n} {t}")?;
        }
        writeln!(f, "exports:")?;
        for (n, t) in &self.exports {
            writeln!(f, "  {n} {t}")?;
        }
        if !self.wasi_imports.is_empty() {
            writeln!(f, "wasi: {}", self.wasi_imports.join(", "))?;
        }
        if let Some(features) = self.start_features {
            writeln!(f, "features enabled at start: {features}")?;
        }
        if let Some(e) = &self.start_error {
            writeln!(f, "start failed: {e}")?;
        }
        if self.problems.is_empty() {
            writeln!(f, "ABI: ok")
        } else {
            writeln!(f, "ABI: {} problem(s)", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            Ok(())
        }
    }
}

/// Compiles `wasm` with `engine` and reports its imports, exports, ABI
/// problems and start features. Fails only when the bytes do not compile.
pub fn inspect(wasm: &[u8], engine: Engine) -> Result<Inspection, Error> {
    let started = Instant::now();
    let analysis = Analysis::read(wasm)?;
    crate::engine::validate(engine, wasm)?;
    let compile_time = started.elapsed();
    let shape = &analysis.shape;
    let mut out = Inspection {
        engine,
        imports: shape.imports.iter().map(|(m, n, t)| (m.clone(), n.clone(), t.to_string())).collect(),
        exports: shape.exports.iter().map(|(n, t)| (n.clone(), t.to_string())).collect(),
        problems: Vec::new(),
        kind: "none",
        wasi_imports: Vec::new(),
        start_features: None,
        start_error: None,
        compile_time,
    };
    match abi_check::check(shape) {
        Ok(checked) => {
            out.kind = checked.kind();
            out.wasi_imports = checked.wasi_imports.iter().map(|s| s.to_string()).collect();
            match PluginBuilder::default().engine(engine).pool_size(1).build(wasm) {
                Ok(p) => out.start_features = Some(p.module_features()),
                Err(e) => out.start_error = Some(e.to_string()),
            }
        }
        Err(problems) => out.problems = problems,
    }
    Ok(out)
}
