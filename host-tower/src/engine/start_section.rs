//! A module's start section, run by the wasmer backend after instantiation.
//!
//! A start section runs while the module is instantiated, and a start
//! function may call the host: `enable_features`, `get_config`, `log`,
//! WASI's `fd_write`, clocks, `random_get`, the environment... Most of
//! those touch guest memory. The wasmer backend's host functions reach it
//! through a handle kept in the store data, which can only be set once
//! `Instance::new` has returned: too late for a start section. (wasmtime's
//! host functions look the `memory` export up through their `Caller` while
//! the handle is not set yet, which works during instantiation.)
//!
//! So before compiling for wasmer the start section is removed and its
//! function exported under a name of its own ([`defer_start`]); the
//! backend calls that export once the memory handle is set, and before
//! `_initialize` or `_start`, the order instantiation would have given. Data
//! and element segments are still applied by instantiation, before it, as
//! the wasm specification orders them. A trap or `proc_exit` in that
//! function fails the start, as it fails instantiation on wasmtime.

use crate::error::{Error, Kind};
use std::borrow::Cow;
use wasm_encoder::Encode;
use wasmparser::{Parser, Payload};

/// The export name the start function gets, made unique if the module
/// already exports something by this name.
const START_EXPORT: &str = "http-wasm-host:start-section";

/// Section id of exports.
const EXPORT_SECTION: u8 = 7;

/// `ExportKind::Func` as encoded.
const FUNC: u8 = 0x00;

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string())
}

/// `wasm` without its start section, its start function exported instead,
/// and that export's name; `wasm` as it is (and `None`) when it has no
/// start section.
pub(crate) fn defer_start(wasm: &[u8]) -> Result<(Cow<'_, [u8]>, Option<String>), Error> {
    let mut start = None;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                return Ok((Cow::Borrowed(wasm), None));
            }
            Payload::StartSection { func, .. } => start = Some(func),
            Payload::ExportSection(reader) => {
                for export in reader {
                    names.push(export.map_err(invalid)?.name.to_string());
                }
            }
            _ => {}
        }
    }
    let Some(func) = start else { return Ok((Cow::Borrowed(wasm), None)) };
    let mut name = START_EXPORT.to_string();
    while names.contains(&name) {
        name.push('\'');
    }
    let export = |sink: &mut Vec<u8>| {
        name.as_str().encode(sink);
        sink.push(FUNC);
        func.encode(sink);
    };

    let mut module = wasm_encoder::Module::new();
    let mut exported = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ExportSection(reader) => {
                // The entries as they are, one more counted and appended.
                let range = reader.range();
                let data = &wasm[range.start as usize..range.end as usize];
                let mut count = wasmparser::BinaryReader::new(data, range.start);
                let n = count.read_var_u32().map_err(invalid)?;
                let entries = &data[count.current_position()..];
                let mut section = Vec::with_capacity(data.len() + name.len() + 8);
                (n + 1).encode(&mut section);
                section.extend_from_slice(entries);
                export(&mut section);
                module.section(&wasm_encoder::RawSection { id: EXPORT_SECTION, data: &section });
                exported = true;
            }
            Payload::StartSection { .. } => {
                // No export section came before: one goes where the start
                // section was, which is where the binary format orders it.
                if !exported {
                    let mut section = Vec::new();
                    1u32.encode(&mut section);
                    export(&mut section);
                    module.section(&wasm_encoder::RawSection { id: EXPORT_SECTION, data: &section });
                }
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&wasm_encoder::RawSection {
                        id,
                        data: &wasm[range.start as usize..range.end as usize],
                    });
                }
            }
        }
    }
    Ok((Cow::Owned(module.finish()), Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(wasm: &[u8]) -> Vec<(String, wasmparser::ExternalKind, u32)> {
        let mut out = Vec::new();
        for p in Parser::new(0).parse_all(wasm) {
            if let Payload::ExportSection(r) = p.unwrap() {
                for e in r {
                    let e = e.unwrap();
                    out.push((e.name.to_string(), e.kind, e.index));
                }
            }
        }
        out
    }

    fn has_start(wasm: &[u8]) -> bool {
        Parser::new(0).parse_all(wasm).any(|p| matches!(p.unwrap(), Payload::StartSection { .. }))
    }

    #[test]
    fn start_function_becomes_an_export() {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func $a) (func $s) (start $s)
                (func (export "f")) (data (i32.const 0) "x"))"#,
        )
        .unwrap();
        let (out, name) = defer_start(&wasm).unwrap();
        let name = name.unwrap();
        assert!(!has_start(&out));
        wasmparser::Validator::new().validate_all(&out).unwrap();
        let got = exports(&out);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2], (name, wasmparser::ExternalKind::Func, 1));
        assert_eq!(got[0].0, "memory");
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section() {
        let wasm = wat::parse_str("(module (func $s) (start $s))").unwrap();
        let (out, name) = defer_start(&wasm).unwrap();
        wasmparser::Validator::new().validate_all(&out).unwrap();
        assert_eq!(exports(&out), vec![(name.unwrap(), wasmparser::ExternalKind::Func, 0)]);
    }

    #[test]
    fn the_name_does_not_collide() {
        let text = format!(r#"(module (func $s) (start $s) (func (export "{START_EXPORT}")))"#);
        let wasm = wat::parse_str(text).unwrap();
        let (out, name) = defer_start(&wasm).unwrap();
        let name = name.unwrap();
        assert_ne!(name, START_EXPORT);
        wasmparser::Validator::new().validate_all(&out).unwrap();
        assert!(exports(&out).contains(&(name, wasmparser::ExternalKind::Func, 0)));
    }

    #[test]
    fn without_a_start_section_the_module_is_unchanged() {
        let wasm = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
        let (out, name) = defer_start(&wasm).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(name, None);
    }

    #[test]
    fn garbage_is_a_compile_error() {
        assert!(defer_start(b"\0asm\x01\0\0\0\x08\xff").unwrap_err().is_compile());
    }
}
