//! Memory and table caps without engine support: the module's own maxima.
//!
//! wasmer enforces limits on linear memory and tables through `Tunables`,
//! whose constructors are `unsafe`. Instead, before compiling for wasmer,
//! every memory and table the module defines gets a maximum no larger than
//! the cap (its own maximum if that is lower; the tables share the table
//! cap, which is the instance's; a module has at most one memory, see
//! `host::proposals`). A `memory.grow` or
//! `table.grow` past it then fails as the wasm specification says: it
//! returns -1, and the guest's allocator traps or reports the failure. A
//! module whose initial memory is already over the cap is a load error
//! (as on wasmtime, naming the cap); one whose tables are fails to
//! instantiate. (A table with an initialiser expression, from the
//! function-references proposal, is left as it is.)

use crate::error::{Error, Kind};
use std::borrow::Cow;
use wasmparser::{Parser, Payload};

const PAGE: u64 = 65536;

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string())
}

/// `wasm` with each defined memory's maximum at most `limit` bytes and
/// each table's at most `elements`.
pub(crate) fn cap_memories_and_tables(wasm: &[u8], limit: usize, elements: u64) -> Result<Cow<'_, [u8]>, Error> {
    let pages = limit as u64 / PAGE;
    let mut module = wasm_encoder::Module::new();
    let mut changed = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } => return Ok(Cow::Borrowed(wasm)),
            Payload::MemorySection(reader) => {
                let mut section = wasm_encoder::MemorySection::new();
                for memory in reader {
                    let m = memory.map_err(invalid)?;
                    if m.initial > pages {
                        // As wasmtime says it at instantiation.
                        return Err(Error::new(Kind::Start, "instantiation failed").with_source(format!(
                            "linear memory of {} bytes is over the instance's {limit}-byte cap",
                            m.initial.saturating_mul(PAGE)
                        )));
                    }
                    let maximum = m.maximum.map_or(pages, |max| max.min(pages));
                    changed |= m.maximum != Some(maximum);
                    section.memory(wasm_encoder::MemoryType {
                        minimum: m.initial,
                        maximum: Some(maximum),
                        memory64: m.memory64,
                        shared: m.shared,
                        page_size_log2: m.page_size_log2,
                    });
                }
                module.section(&section);
            }
            Payload::TableSection(reader) => match capped_tables(reader.clone(), elements)? {
                Some((section, lowered)) => {
                    changed |= lowered;
                    module.section(&section);
                }
                None => {
                    let range = reader.range();
                    module.section(&wasm_encoder::RawSection {
                        id: 4,
                        data: &wasm[range.start as usize..range.end as usize],
                    });
                }
            },
            other => {
                if let Some((id, range)) = other.as_section() {
                    let data = &wasm[range.start as usize..range.end as usize];
                    module.section(&wasm_encoder::RawSection { id, data });
                }
            }
        }
    }
    Ok(if changed { Cow::Owned(module.finish()) } else { Cow::Borrowed(wasm) })
}

/// The table section with maxima that add up to at most `elements` (the
/// cap is the instance's, so each of `n` tables gets `elements / n`), and
/// whether any was lowered; `None` when a table cannot be re-encoded
/// simply.
fn capped_tables(
    reader: wasmparser::TableSectionReader<'_>,
    elements: u64,
) -> Result<Option<(wasm_encoder::TableSection, bool)>, Error> {
    let elements = elements / u64::from(reader.count().max(1));
    let mut section = wasm_encoder::TableSection::new();
    let mut lowered = false;
    for table in reader {
        let table = table.map_err(invalid)?;
        let ty = table.ty;
        let element_type = match ty.element_type {
            t if t == wasmparser::RefType::FUNCREF => wasm_encoder::RefType::FUNCREF,
            t if t == wasmparser::RefType::EXTERNREF => wasm_encoder::RefType::EXTERNREF,
            _ => return Ok(None),
        };
        if !matches!(table.init, wasmparser::TableInit::RefNull) {
            return Ok(None);
        }
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
    Ok(Some((section, lowered)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_max(wasm: &[u8]) -> Option<u64> {
        Parser::new(0).parse_all(wasm).find_map(|p| match p.unwrap() {
            Payload::MemorySection(r) => r.into_iter().next().map(|m| m.unwrap().maximum),
            _ => None,
        })?
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
            let capped = cap_memories_and_tables(&wasm, cap, 100).unwrap();
            assert_eq!(memory_max(&capped), want, "{text}");
            wasmparser::Validator::new().validate_all(&capped).unwrap();
        }
    }

    #[test]
    fn table_maximum_is_the_lower_of_the_module_and_the_cap() {
        for (text, want) in [("(module (table 1 funcref))", Some(100)), ("(module (table 1 10 funcref))", Some(10))] {
            let wasm = wat::parse_str(text).unwrap();
            let capped = cap_memories_and_tables(&wasm, 1 << 20, 100).unwrap();
            let max = Parser::new(0).parse_all(&capped).find_map(|p| match p.unwrap() {
                Payload::TableSection(r) => r.into_iter().next().map(|t| t.unwrap().ty.maximum),
                _ => None,
            });
            assert_eq!(max.flatten(), want, "{text}");
            wasmparser::Validator::new().validate_all(&capped).unwrap();
        }
    }

    #[test]
    fn garbage_is_a_compile_error() {
        assert!(cap_memories_and_tables(b"\0asm\x01\0\0\0\x05\xff", 1 << 20, 100).unwrap_err().is_compile());
    }
}
