//! Checks a module's imports and exports against the ABI, whatever the engine.

use crate::host::wasi;
use http_wasm_abi::{GuestExport, HostFunction, Signature, ValType};
use std::fmt;

/// A wasm value type as a module declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WasmType {
    I32,
    I64,
    F32,
    F64,
    V128,
    Ref,
}

impl fmt::Display for WasmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F32 => "f32",
            WasmType::F64 => "f64",
            WasmType::V128 => "v128",
            WasmType::Ref => "ref",
        })
    }
}

/// What an import or export is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Extern {
    Func { params: Vec<WasmType>, results: Vec<WasmType> },
    Memory,
    Table,
    Global,
    Other,
}

impl fmt::Display for Extern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extern::Func { params, results } => {
                let list = |v: &[WasmType]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
                match results.as_slice() {
                    [] => write!(f, "({}) -> ()", list(params)),
                    [one] => write!(f, "({}) -> {one}", list(params)),
                    many => write!(f, "({}) -> ({})", list(params), list(many)),
                }
            }
            Extern::Memory => f.write_str("memory"),
            Extern::Table => f.write_str("table"),
            Extern::Global => f.write_str("global"),
            Extern::Other => f.write_str("other"),
        }
    }
}

fn matches(sig_params: &[ValType], sig_results: &[ValType], ext: &Extern) -> bool {
    let conv = |v: &ValType| match v {
        ValType::I32 => WasmType::I32,
        ValType::I64 => WasmType::I64,
    };
    match ext {
        Extern::Func { params, results } => {
            params.len() == sig_params.len()
                && results.len() == sig_results.len()
                && params.iter().zip(sig_params).all(|(a, b)| *a == conv(b))
                && results.iter().zip(sig_results).all(|(a, b)| *a == conv(b))
        }
        _ => false,
    }
}

fn sig_string(params: &'static [ValType], results: &'static [ValType]) -> String {
    Signature { params, results }.to_string()
}

/// The shape of a module: its imports and exports with their types.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    pub(crate) imports: Vec<(String, String, Extern)>,
    pub(crate) exports: Vec<(String, Extern)>,
}

/// Reads a module's [`Shape`] from its payloads as the parser yields them,
/// with what the reach walk needs besides (see `module::reach`).
#[derive(Default)]
pub(crate) struct ShapeReader {
    /// Every type, as the extern a function of it is (`Other` for GC types).
    types: Vec<Extern>,
    /// The type index of every function, imported ones first.
    funcs: Vec<u32>,
    /// Per imported function, the index of its import in `shape.imports`.
    pub(crate) func_imports: Vec<usize>,
    /// The function `handle_response` exports, if it is exported as one.
    pub(crate) handle_response: Option<u32>,
    pub(crate) shape: Shape,
}

impl ShapeReader {
    /// Reads the imports and exports of one payload. Validation is the
    /// validator's: this only reads.
    pub(crate) fn payload(&mut self, payload: &wasmparser::Payload<'_>) -> Result<(), wasmparser::BinaryReaderError> {
        use wasmparser::{CompositeInnerType, ExternalKind, Payload, TypeRef};
        let value = |t: &wasmparser::ValType| match t {
            wasmparser::ValType::I32 => WasmType::I32,
            wasmparser::ValType::I64 => WasmType::I64,
            wasmparser::ValType::F32 => WasmType::F32,
            wasmparser::ValType::F64 => WasmType::F64,
            wasmparser::ValType::V128 => WasmType::V128,
            wasmparser::ValType::Ref(_) => WasmType::Ref,
        };
        let func = |types: &[Extern], index: u32| types.get(index as usize).cloned().unwrap_or(Extern::Other);
        match payload {
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    for sub in group?.into_types() {
                        self.types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Extern::Func {
                                params: f.params().iter().map(value).collect(),
                                results: f.results().iter().map(value).collect(),
                            },
                            _ => Extern::Other,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import?;
                    let ext = match import.ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                            self.funcs.push(t);
                            self.func_imports.push(self.shape.imports.len());
                            func(&self.types, t)
                        }
                        TypeRef::Memory(_) => Extern::Memory,
                        TypeRef::Table(_) => Extern::Table,
                        TypeRef::Global(_) => Extern::Global,
                        TypeRef::Tag(_) => Extern::Other,
                    };
                    self.shape.imports.push((import.module.to_string(), import.name.to_string(), ext));
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader.clone() {
                    self.funcs.push(t?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export?;
                    let ext = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => {
                            if export.name == http_wasm_abi::HANDLE_RESPONSE {
                                self.handle_response = Some(export.index);
                            }
                            match self.funcs.get(export.index as usize) {
                                Some(&t) => func(&self.types, t),
                                None => Extern::Other,
                            }
                        }
                        ExternalKind::Memory => Extern::Memory,
                        ExternalKind::Table => Extern::Table,
                        ExternalKind::Global => Extern::Global,
                        ExternalKind::Tag => Extern::Other,
                    };
                    self.shape.exports.push((export.name.to_string(), ext));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the check learned about a module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) host_imports: Vec<HostFunction>,
    pub(crate) wasi_imports: Vec<&'static str>,
    /// Exports `_start` (a command module).
    pub(crate) command: bool,
    /// Exports `_initialize` (a reactor module).
    pub(crate) reactor: bool,
}

impl Checked {
    /// The export to run once after instantiation: `_initialize` for a
    /// reactor (preferred), else `_start` for a command.
    pub(crate) fn start_export(&self) -> Option<&'static str> {
        if self.reactor {
            Some("_initialize")
        } else if self.command {
            Some("_start")
        } else {
            None
        }
    }

    /// `reactor`, `command` or `none`, by the same rule.
    pub(crate) fn kind(&self) -> &'static str {
        match self.start_export() {
            Some("_initialize") => "reactor",
            Some(_) => "command",
            None => "none",
        }
    }
}

/// Checks `shape`; on failure returns every problem found, one line each.
pub(crate) fn check(shape: &Shape) -> Result<Checked, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Checked::default();
    for (module, name, ext) in &shape.imports {
        if module == http_wasm_abi::MODULE {
            match HostFunction::from_name(name) {
                None => problems.push(format!("import {module}.{name}: not an http-wasm host function")),
                Some(f) => {
                    let sig = f.signature();
                    if matches(sig.params, sig.results, ext) {
                        out.host_imports.push(f);
                    } else {
                        problems.push(format!("import {module}.{name}: expected {sig}, found {ext}"));
                    }
                }
            }
        } else if module == wasi::MODULE {
            match wasi::lookup(name) {
                None => problems.push(format!("import {module}.{name}: this WASI function is not provided")),
                Some(w) => {
                    if matches(w.params, w.results, ext) {
                        out.wasi_imports.push(w.name);
                    } else {
                        problems.push(format!(
                            "import {module}.{name}: expected {}, found {ext}",
                            sig_string(w.params, w.results)
                        ));
                    }
                }
            }
        } else {
            problems.push(format!("import {module}.{name} ({ext}): no such module is provided"));
        }
    }
    let export = |name: &str| shape.exports.iter().find(|(n, _)| n == name).map(|(_, e)| e);
    match export(http_wasm_abi::MEMORY) {
        Some(Extern::Memory) => {}
        Some(other) => problems.push(format!("export memory: expected memory, found {other}")),
        None => problems.push("export memory: missing".to_string()),
    }
    for e in GuestExport::ALL {
        let sig = e.signature();
        match export(e.name()) {
            None => problems.push(format!("export {}: missing, expected {sig}", e.name())),
            Some(ext) if !matches(sig.params, sig.results, ext) => {
                problems.push(format!("export {}: expected {sig}, found {ext}", e.name()))
            }
            Some(_) => {}
        }
    }
    for (name, flag) in [("_start", &mut out.command), ("_initialize", &mut out.reactor)] {
        match export(name) {
            None => {}
            Some(ext) if matches(&[], &[], ext) => *flag = true,
            Some(ext) => problems.push(format!("export {name}: expected () -> (), found {ext}")),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}
