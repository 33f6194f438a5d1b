//! What the host learns about a guest module before running it, read in
//! one pass over its bytes for both engines and for [`crate::inspect`].
//!
//! [`Analysis::read`] walks the module's payloads once. Each payload goes to
//! a `wasmparser` validator limited to the proposals guests may use (see
//! [`proposals`]), to the [`ShapeReader`] (imports and exports, for the ABI
//! check in [`abi_check`]) and to the [`Layout`] (sections, memories,
//! tables, start: what the wasmer backend rewrites); each function body is
//! validated with its operators decoded once, and the calls among them
//! noted on the way, from which [`reach`] works out what `handle_response`
//! can call. Only a module the validator refuses is read again, to name the
//! proposals it needs.
//!
//! What is not here: the features a guest enables while starting are only
//! known by running it (the first instance, in `pool`), and each engine
//! compiles the bytes itself.

pub(crate) mod abi_check;
mod proposals;
pub(crate) mod reach;

pub(crate) use abi_check::{Checked, Shape};
pub(crate) use reach::Reach;

use crate::error::{Error, Kind};
use abi_check::ShapeReader;
use http_wasm_abi::HostFunction;
use reach::Calls;
use wasmparser::{
    BinaryReaderError, FuncValidatorAllocations, Parser, Payload, RefType, TableInit, ValidPayload, Validator,
};

/// Everything load needs to know about a module, from one pass over it.
#[derive(Debug)]
pub(crate) struct Analysis {
    /// Its imports and exports, with their types.
    pub(crate) shape: Shape,
    /// What `handle_response` may call.
    pub(crate) reach: Reach,
    /// Where its sections are, for the wasmer backend's rewrite.
    #[cfg_attr(not(feature = "wasmer"), allow(dead_code))]
    pub(crate) layout: Layout,
}

/// Where a module's sections are, and what its table, memory and start
/// sections say: what the wasmer backend needs to rewrite the module
/// (`engine::wasmer_rewrite`) without parsing it again.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "wasmer"), allow(dead_code))]
pub(crate) struct Layout {
    /// Every section in order, custom ones included: its id and the range of
    /// its contents in the module's bytes.
    pub(crate) sections: Vec<(u8, std::ops::Range<usize>)>,
    /// Each defined memory.
    pub(crate) memories: Vec<wasmparser::MemoryType>,
    /// Each defined table; `None` for one that cannot be re-encoded simply
    /// (an element type other than `funcref` or `externref`, or an
    /// initialiser expression).
    pub(crate) tables: Vec<Option<wasmparser::TableType>>,
    /// The start function, if the module has a start section.
    pub(crate) start: Option<u32>,
}

impl Layout {
    fn payload(&mut self, payload: &Payload<'_>) -> Result<(), BinaryReaderError> {
        if let Some((id, range)) = payload.as_section() {
            self.sections.push((id, range.start as usize..range.end as usize));
        }
        match payload {
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    self.memories.push(memory?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    let table = table?;
                    let simple = [RefType::FUNCREF, RefType::EXTERNREF].contains(&table.ty.element_type)
                        && matches!(table.init, TableInit::RefNull);
                    self.tables.push(simple.then_some(table.ty));
                }
            }
            Payload::StartSection { func, .. } => self.start = Some(*func),
            _ => {}
        }
        Ok(())
    }
}

impl Analysis {
    /// Validates `wasm` (WebAssembly 2.0 and nothing later) and reads it.
    /// A module the validator refuses is a compile error that names the
    /// proposals it needs, if that is why.
    pub(crate) fn read(wasm: &[u8]) -> Result<Analysis, Error> {
        // Text and garbage: both engines take binary modules only.
        if !wasm.starts_with(b"\0asm") {
            return Err(Error::new(Kind::Compile, "not a valid wasm module").with_source("missing the \\0asm magic"));
        }
        Self::walk(wasm)
            .map_err(|e| Error::new(Kind::Compile, "module refused").with_source(proposals::refusal(wasm, &e)))
    }

    fn walk(wasm: &[u8]) -> Result<Analysis, BinaryReaderError> {
        let mut validator = Validator::new_with_features(proposals::ALLOWED);
        let mut parser = Parser::new(0);
        parser.set_features(proposals::ALLOWED);
        let mut shape = ShapeReader::default();
        let mut layout = Layout::default();
        // Bodies are validated once every section has been, as
        // `Validator::validate_all` orders it (the same first error).
        let mut bodies = Vec::new();
        for payload in parser.parse_all(wasm) {
            let payload = payload?;
            if let ValidPayload::Func(func, body) = validator.payload(&payload)? {
                bodies.push((func, body));
            }
            shape.payload(&payload)?;
            layout.payload(&payload)?;
        }
        let mut defined = Vec::with_capacity(bodies.len());
        let mut allocations = FuncValidatorAllocations::default();
        for (func, body) in bodies {
            let mut func = func.into_validator(allocations);
            defined.push(Calls::validate(&mut func, &body)?);
            allocations = func.into_allocations();
        }
        let imported: Vec<Option<HostFunction>> = shape
            .func_imports
            .iter()
            .map(|&i| match shape.shape.imports.get(i) {
                Some((module, name, _)) if module == http_wasm_abi::MODULE => HostFunction::from_name(name),
                _ => None,
            })
            .collect();
        let reach = reach::from(shape.handle_response, &imported, &defined);
        Ok(Analysis { shape: shape.shape, reach, layout })
    }

    /// Checks the module's imports and exports against the ABI, as a load
    /// error listing every problem.
    pub(crate) fn check(&self) -> Result<Checked, Error> {
        abi_check::check(&self.shape).map_err(|problems| {
            Error::new(Kind::Abi, format!("module does not match the http-wasm ABI:\n  {}", problems.join("\n  ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_module_gets_the_validators_own_first_error() {
        // A bad body and a bad data segment: `validate_all` reports the
        // segment (bodies come last), and so must the single pass.
        for text in [
            r#"(module (memory 1) (func (result i32) (i64.const 1)))"#,
            r#"(module (memory 1) (func (result i32) (i64.const 1)) (data (i64.const 0) "x"))"#,
            r#"(module (func (local i32) (drop (local.get 1))))"#,
        ] {
            let wasm = wat::parse_str(text).unwrap();
            let want = Validator::new_with_features(proposals::ALLOWED).validate_all(&wasm).err().unwrap();
            let got = Analysis::read(&wasm).unwrap_err();
            assert!(got.is_compile(), "{text}: {got}");
            assert_eq!(got.to_string(), format!("module refused: {want}"), "{text}");
        }
    }

    #[test]
    fn text_is_not_a_module() {
        let e = Analysis::read(b"(module)").unwrap_err();
        assert!(e.is_compile() && e.to_string().contains("\\0asm magic"), "{e}");
    }
}
