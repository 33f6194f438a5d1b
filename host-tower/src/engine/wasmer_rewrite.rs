//! The module as the wasmer backend compiles it: memory and table caps in
//! the module's own maxima, and its start section deferred. One rewrite,
//! from the sections the module's analysis located (`module::Layout`):
//! the bytes are not parsed again.
//!
//! **Caps.** wasmer enforces limits on linear memory and tables through
//! `Tunables`, whose constructors are `unsafe`. Instead every memory and
//! table the module defines gets a maximum no larger than the cap (its own
//! maximum if that is lower; the tables share the table cap, which is the
//! instance's; a module has at most one memory, see `module::proposals`).
//! A `memory.grow` or `table.grow` past it then fails as the wasm
//! specification says: it returns -1, and the guest's allocator traps or
//! reports the failure. A module whose initial memory is already over the
//! cap is a load error (as on wasmtime, naming the cap); one whose tables
//! are fails to instantiate. (A table with an initialiser expression, from
//! the function-references proposal, is left as it is.)
//!
//! **Start section.** A start section runs while the module is
//! instantiated, and a start function may call the host: `enable_features`,
//! `get_config`, `log`, WASI's `fd_write`, clocks, `random_get`, the
//! environment... Most of those touch guest memory. The wasmer backend's
//! host functions reach it through a handle kept in the store data, which
//! can only be set once `Instance::new` has returned: too late for a start
//! section. (wasmtime's host functions look the `memory` export up through
//! their `Caller` while the handle is not set yet, which works during
//! instantiation.) So the start section is removed and its function
//! exported under a name of its own; the backend calls that export once the
//! memory handle is set, and before `_initialize` or `_start`, the order
//! instantiation would have given. Data and element segments are still
//! applied by instantiation, before it, as the wasm specification orders
//! them. A trap or `proc_exit` in that function fails the start, as it
//! fails instantiation on wasmtime.

use crate::error::{Error, Kind};
use crate::module::Analysis;
use std::borrow::Cow;
use wasm_encoder::Encode;

const PAGE: u64 = 65536;

/// The export name the start function gets, made unique if the module
/// already exports something by this name.
const START_EXPORT: &str = "http-wasm-host:start-section";

/// Section ids, as encoded.
const TABLE_SECTION: u8 = 4;
const MEMORY_SECTION: u8 = 5;
const EXPORT_SECTION: u8 = 7;
const START_SECTION: u8 = 8;

/// `ExportKind::Func` as encoded.
const FUNC: u8 = 0x00;

/// `wasm`, which `analysis` read, with each defined memory's maximum at
/// most `limit` bytes and the tables' at most `elements` in all, and without
/// its start section, the start function exported instead; with that
/// export's name. `wasm` as it is when nothing changes.
pub(crate) fn for_wasmer<'a>(
    wasm: &'a [u8],
    analysis: &Analysis,
    limit: usize,
    elements: u64,
) -> Result<(Cow<'a, [u8]>, Option<String>), Error> {
    let layout = &analysis.layout;
    let pages = limit as u64 / PAGE;
    let mut changed = false;
    let mut memories = wasm_encoder::MemorySection::new();
    for m in &layout.memories {
        if m.initial > pages {
            // As wasmtime says it at instantiation.
            return Err(Error::new(Kind::Start, "instantiation failed").with_source(format!(
                "linear memory of {} bytes is over the instance's {limit}-byte cap",
                m.initial.saturating_mul(PAGE)
            )));
        }
        let maximum = m.maximum.map_or(pages, |max| max.min(pages));
        changed |= m.maximum != Some(maximum);
        memories.memory(wasm_encoder::MemoryType {
            minimum: m.initial,
            maximum: Some(maximum),
            memory64: m.memory64,
            shared: m.shared,
            page_size_log2: m.page_size_log2,
        });
    }
    let tables = capped_tables(&layout.tables, elements);
    if let Some((_, lowered)) = &tables {
        changed |= lowered;
    }
    let start = layout.start.map(|func| {
        let mut name = START_EXPORT.to_string();
        while analysis.shape.exports.iter().any(|(n, _)| *n == name) {
            name.push('\'');
        }
        (func, name)
    });
    if !changed && start.is_none() {
        return Ok((Cow::Borrowed(wasm), None));
    }
    let export = |sink: &mut Vec<u8>, (func, name): &(u32, String)| {
        name.as_str().encode(sink);
        sink.push(FUNC);
        func.encode(sink);
    };
    let mut module = wasm_encoder::Module::new();
    let mut exported = false;
    for (id, range) in &layout.sections {
        let data = &wasm[range.clone()];
        match (*id, &start, &tables) {
            (MEMORY_SECTION, ..) => {
                module.section(&memories);
            }
            (TABLE_SECTION, _, Some((section, _))) => {
                module.section(section);
            }
            (EXPORT_SECTION, Some(start), _) => {
                // The entries as they are, one more counted and appended.
                let mut count = wasmparser::BinaryReader::new(data, range.start as u64);
                let n = count.read_var_u32().map_err(invalid)?;
                let entries = &data[count.current_position()..];
                let mut section = Vec::with_capacity(data.len() + start.1.len() + 8);
                (n + 1).encode(&mut section);
                section.extend_from_slice(entries);
                export(&mut section, start);
                module.section(&wasm_encoder::RawSection { id: EXPORT_SECTION, data: &section });
                exported = true;
            }
            (START_SECTION, Some(start), _) => {
                // No export section came before: one goes where the start
                // section was, which is where the binary format orders it.
                if !exported {
                    let mut section = Vec::new();
                    1u32.encode(&mut section);
                    export(&mut section, start);
                    module.section(&wasm_encoder::RawSection { id: EXPORT_SECTION, data: &section });
                }
            }
            (id, ..) => {
                module.section(&wasm_encoder::RawSection { id, data });
            }
        }
    }
    Ok((Cow::Owned(module.finish()), start.map(|(_, name)| name)))
}

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string())
}

/// The table section with maxima that add up to at most `elements` (the
/// cap is the instance's, so each of `n` tables gets `elements / n`), and
/// whether any was lowered; `None` when a table cannot be re-encoded
/// simply.
fn capped_tables(
    tables: &[Option<wasmparser::TableType>],
    elements: u64,
) -> Option<(wasm_encoder::TableSection, bool)> {
    let elements = elements / (tables.len().max(1) as u64);
    let mut section = wasm_encoder::TableSection::new();
    let mut lowered = false;
    for ty in tables {
        let ty = (*ty)?;
        let element_type = if ty.element_type == wasmparser::RefType::FUNCREF {
            wasm_encoder::RefType::FUNCREF
        } else {
            wasm_encoder::RefType::EXTERNREF
        };
        let maximum = ty.maximum.map_or(elements, |max| max.min(elements));
        lowered |= ty.maximum != Some(maximum);
        section.table(wasm_encoder::TableType {
            element_type,
            table64: ty.table64,
            minimum: ty.initial,
            maximum: Some(maximum),
            shared: ty.shared,
        });
    }
    Some((section, lowered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Parser, Payload};

    fn rewrite(wasm: &[u8], limit: usize, elements: u64) -> (Vec<u8>, Option<String>) {
        let (out, name) = for_wasmer(wasm, &Analysis::read(wasm).unwrap(), limit, elements).unwrap();
        wasmparser::Validator::new().validate_all(&out).unwrap();
        (out.into_owned(), name)
    }

    fn memory_max(wasm: &[u8]) -> Option<u64> {
        Parser::new(0).parse_all(wasm).find_map(|p| match p.unwrap() {
            Payload::MemorySection(r) => r.into_iter().next().map(|m| m.unwrap().maximum),
            _ => None,
        })?
    }

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
    fn maximum_is_the_lower_of_the_module_and_the_cap() {
        let cap = 4 << 20; // 64 pages
        for (text, want) in [
            ("(module (memory 1))", Some(64)),
            ("(module (memory 1 10))", Some(10)),
            ("(module (memory 1 1000) (func (export \"f\")) (data (i32.const 0) \"x\"))", Some(64)),
        ] {
            let wasm = wat::parse_str(text).unwrap();
            assert_eq!(memory_max(&rewrite(&wasm, cap, 100).0), want, "{text}");
        }
    }

    #[test]
    fn table_maximum_is_the_lower_of_the_module_and_the_cap() {
        for (text, want) in [("(module (table 1 funcref))", Some(100)), ("(module (table 1 10 funcref))", Some(10))] {
            let wasm = wat::parse_str(text).unwrap();
            let capped = rewrite(&wasm, 1 << 20, 100).0;
            let max = Parser::new(0).parse_all(&capped).find_map(|p| match p.unwrap() {
                Payload::TableSection(r) => r.into_iter().next().map(|t| t.unwrap().ty.maximum),
                _ => None,
            });
            assert_eq!(max.flatten(), want, "{text}");
        }
    }

    #[test]
    fn an_initial_memory_over_the_cap_is_refused() {
        let wasm = wat::parse_str("(module (memory 100))").unwrap();
        let e = for_wasmer(&wasm, &Analysis::read(&wasm).unwrap(), 1 << 20, 100).unwrap_err();
        assert!(e.to_string().contains("over the instance's 1048576-byte cap"), "{e}");
    }

    #[test]
    fn start_function_becomes_an_export() {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func $a) (func $s) (start $s)
                (func (export "f")) (data (i32.const 0) "x"))"#,
        )
        .unwrap();
        let (out, name) = rewrite(&wasm, 1 << 20, 100);
        let name = name.unwrap();
        assert!(!has_start(&out));
        let got = exports(&out);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2], (name, wasmparser::ExternalKind::Func, 1));
        assert_eq!(got[0].0, "memory");
        assert_eq!(memory_max(&out), Some(16), "capped in the same rewrite");
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section() {
        let wasm = wat::parse_str("(module (func $s) (start $s))").unwrap();
        let (out, name) = rewrite(&wasm, 1 << 20, 100);
        assert_eq!(exports(&out), vec![(name.unwrap(), wasmparser::ExternalKind::Func, 0)]);
    }

    #[test]
    fn the_name_does_not_collide() {
        let text = format!(r#"(module (func $s) (start $s) (func (export "{START_EXPORT}")))"#);
        let wasm = wat::parse_str(text).unwrap();
        let (out, name) = rewrite(&wasm, 1 << 20, 100);
        let name = name.unwrap();
        assert_ne!(name, START_EXPORT);
        assert!(exports(&out).contains(&(name, wasmparser::ExternalKind::Func, 0)));
    }

    #[test]
    fn a_module_within_its_caps_without_a_start_section_is_unchanged() {
        let wasm = wat::parse_str(r#"(module (memory 1 2) (table 1 5 funcref) (func (export "f")))"#).unwrap();
        let (out, name) = for_wasmer(&wasm, &Analysis::read(&wasm).unwrap(), 1 << 20, 100).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(name, None);
    }
}
