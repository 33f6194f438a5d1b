//! Which WebAssembly proposals a guest may use.
//!
//! A guest may use WebAssembly 2.0: mutable globals, sign extension,
//! non-trapping float-to-int conversions, multi-value, bulk memory,
//! reference types and 128-bit SIMD: what Rust, TinyGo, Go and
//! AssemblyScript emit for their wasm targets. Every later proposal is
//! refused at load, on both engines (and each engine's configuration turns
//! them off as well):
//!
//! - `multi-memory`: the memory cap is per instance, and a second memory
//!   would escape it;
//! - `memory64`, `threads` (shared memory and atomics), `exceptions`,
//!   `gc`, `function-references`, `tail-call`, `relaxed-simd`,
//!   `extended-const`, `wide-arithmetic`, `custom-page-sizes`,
//!   `stack-switching`, `shared-everything-threads`, the component model:
//!   engine machinery a filter does not need, whose limits and failure modes
//!   we would otherwise have to vouch for on two engines.
//!
//! The module's single pass (`module::Analysis::read`) validates with
//! [`ALLOWED`]; only when that fails are the refused proposals it needs
//! worked out ([`refusal`], which validates again once per proposal), so
//! that the load error names them.

use wasmparser::{BinaryReaderError, Validator, WasmFeatures};

/// What a guest may use: WebAssembly 2.0.
pub(crate) const ALLOWED: WasmFeatures = WasmFeatures::WASM2;

/// The proposals refused, by the names their specifications use.
const REFUSED: &[(&str, WasmFeatures)] = &[
    ("multi-memory", WasmFeatures::MULTI_MEMORY),
    ("memory64", WasmFeatures::MEMORY64),
    ("threads", WasmFeatures::THREADS),
    ("shared-everything-threads", WasmFeatures::SHARED_EVERYTHING_THREADS),
    ("exceptions", WasmFeatures::EXCEPTIONS),
    ("legacy-exceptions", WasmFeatures::LEGACY_EXCEPTIONS),
    ("gc", WasmFeatures::GC),
    ("function-references", WasmFeatures::FUNCTION_REFERENCES),
    ("tail-call", WasmFeatures::TAIL_CALL),
    ("relaxed-simd", WasmFeatures::RELAXED_SIMD),
    ("extended-const", WasmFeatures::EXTENDED_CONST),
    ("wide-arithmetic", WasmFeatures::WIDE_ARITHMETIC),
    ("custom-page-sizes", WasmFeatures::CUSTOM_PAGE_SIZES),
    ("stack-switching", WasmFeatures::STACK_SWITCHING),
    ("component-model", WasmFeatures::COMPONENT_MODEL),
];

/// Why `wasm`, which failed validation with [`ALLOWED`] as `e`, is refused:
/// the proposals it needs, or the validator's message when it is not valid
/// wasm at all.
pub(crate) fn refusal(wasm: &[u8], e: &BinaryReaderError) -> String {
    let needed = needed(wasm);
    if needed.is_empty() {
        return e.to_string();
    }
    format!(
        "the module uses the WebAssembly {} proposal{}, which this host does not allow (guests may use WebAssembly 2.0): {e}",
        needed.join(", "),
        if needed.len() == 1 { "" } else { "s" },
    )
}

/// The refused proposals `wasm` needs: those without which it does not
/// validate when every other proposal is on. Empty when it validates with
/// [`ALLOWED`] or is not valid at all.
fn needed(wasm: &[u8]) -> Vec<&'static str> {
    let all = REFUSED.iter().fold(ALLOWED, |f, (_, p)| f | *p);
    if Validator::new_with_features(all).validate_all(wasm).is_err() {
        return Vec::new();
    }
    REFUSED
        .iter()
        .filter(|(_, p)| Validator::new_with_features(all.difference(*p)).validate_all(wasm).is_err())
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Analysis;

    #[test]
    fn wasm2_passes_and_later_proposals_are_named() {
        let ok = wat::parse_str("(module (memory 1) (func (result i32) (i32.extend8_s (i32.const 1))))").unwrap();
        assert!(Analysis::read(&ok).is_ok());
        for (text, name) in [
            ("(module (memory 1) (memory 1))", "multi-memory"),
            ("(module (memory i64 1))", "memory64"),
            ("(module (memory 1 1 shared))", "threads"),
            ("(module (func (return_call 0)))", "tail-call"),
        ] {
            let wasm = wat::parse_str(text).unwrap();
            assert_eq!(needed(&wasm), [name], "{text}");
            let e = Analysis::read(&wasm).unwrap_err().to_string();
            assert!(e.contains(&format!("WebAssembly {name} proposal")), "{text}: {e}");
        }
    }

    #[test]
    fn garbage_gives_the_validator_message() {
        assert!(needed(b"\0asm\x01\0\0\0\x05\xff").is_empty());
        assert!(Analysis::read(b"\0asm\x01\0\0\0\x05\xff").unwrap_err().is_compile());
    }
}
