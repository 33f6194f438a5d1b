//! A memory cap without engine support: the module's own memory maximum.
//!
//! wasmer enforces limits on linear memory through `Tunables`, whose memory
//! constructors are `unsafe`. Instead, before compiling for wasmer, every
//! memory the module defines gets a maximum no larger than the cap (its own
//! maximum if that is lower). A `memory.grow` past it then fails as the
//! wasm specification says: it returns -1, and the guest's allocator
//! traps or reports the failure. A module whose initial memory is already
//! over the cap fails to instantiate: a load error.

use crate::error::{Error, Kind};
use std::borrow::Cow;
use wasmparser::{Parser, Payload};

const PAGE: u64 = 65536;

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string())
}

/// `wasm` with each defined memory's maximum at most `limit` bytes.
pub(crate) fn cap_memories(wasm: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, Error> {
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
            let capped = cap_memories(&wasm, cap).unwrap();
            assert_eq!(memory_max(&capped), want, "{text}");
            wasmparser::Validator::new().validate_all(&capped).unwrap();
        }
    }

    #[test]
    fn garbage_is_a_compile_error() {
        assert!(cap_memories(b"\0asm\x01\0\0\0\x05\xff", 1 << 20).unwrap_err().is_compile());
    }
}
