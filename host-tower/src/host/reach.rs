//! Which host functions `handle_response` can reach, read off the module's
//! code: the host keeps a copy of the request's URI and headers past `next`
//! only for a guest that may read them there.
//!
//! A walk of the direct-call graph from the `handle_response` export,
//! reading the code of the functions it reaches and no other. A
//! function that calls indirectly (`call_indirect`, `call_ref`) could call
//! anything, so reaching one answers "unknown", as does anything the walk
//! cannot read: the host then keeps everything.

use http_wasm_abi::{HostFunction, MODULE};
use std::collections::HashSet;
use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

/// What `handle_response` may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Exactly these host functions (possibly none).
    Only(Vec<HostFunction>),
    /// Anything: an indirect call is reachable, or the module could not be read.
    Unknown,
}

impl Reach {
    /// True when `f` may be called.
    pub(crate) fn may_call(&self, f: HostFunction) -> bool {
        match self {
            Reach::Only(fs) => fs.contains(&f),
            Reach::Unknown => true,
        }
    }
}

/// Per defined function: the functions it calls directly, and whether it
/// calls indirectly.
struct Calls {
    direct: Vec<u32>,
    indirect: bool,
}

impl Calls {
    /// Reads the calls of one function body.
    fn of(body: &wasmparser::FunctionBody<'_>) -> Option<Calls> {
        let mut calls = Calls { direct: Vec::new(), indirect: false };
        for op in body.get_operators_reader().ok()? {
            match op.ok()? {
                Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                    calls.direct.push(function_index)
                }
                Operator::CallIndirect { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::CallRef { .. }
                | Operator::ReturnCallRef { .. } => calls.indirect = true,
                _ => {}
            }
        }
        Some(calls)
    }
}

/// What `handle_response` of `wasm` may call.
pub(crate) fn from_handle_response(wasm: &[u8]) -> Reach {
    read(wasm).unwrap_or(Reach::Unknown)
}

fn read(wasm: &[u8]) -> Option<Reach> {
    let mut imported: Vec<Option<HostFunction>> = Vec::new();
    let mut start = None;
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.ok()?;
                    if let TypeRef::Func(_) = import.ty {
                        let host = (import.module == MODULE).then(|| HostFunction::from_name(import.name)).flatten();
                        imported.push(host);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.ok()?;
                    if export.name == http_wasm_abi::HANDLE_RESPONSE && export.kind == ExternalKind::Func {
                        start = Some(export.index);
                    }
                }
            }
            // Only located here; a body's code is read when the walk reaches it.
            Payload::CodeSectionEntry(body) => bodies.push(body),
            _ => {}
        }
    }
    let imports = imported.len() as u32;
    let mut seen = HashSet::new();
    let mut todo = vec![start?];
    let mut reached = Vec::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f) {
            continue;
        }
        if f < imports {
            // A WASI or other import cannot call back into the guest's
            // request functions; an http_handler import is what we look for.
            if let Some(host) = imported[f as usize]
                && !reached.contains(&host)
            {
                reached.push(host);
            }
            continue;
        }
        let calls = Calls::of(bodies.get((f - imports) as usize)?)?;
        if calls.indirect {
            return Some(Reach::Unknown);
        }
        todo.extend(&calls.direct);
    }
    Some(Reach::Only(reached))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(body: &str) -> Reach {
        let wasm = wat::parse_str(format!(
            r#"(module
  (import "http_handler" "get_header_values" (func $values (param i32 i32 i32 i32 i32) (result i64)))
  (import "http_handler" "get_uri" (func $uri (param i32 i32) (result i32)))
  (import "http_handler" "set_header_value" (func $set (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (func (export "handle_request") (result i64) (drop (call $uri (i32.const 0) (i32.const 0))) (i64.const 1))
  {body})"#
        ))
        .unwrap();
        from_handle_response(&wasm)
    }

    #[test]
    fn an_empty_handle_response_reaches_nothing() {
        assert_eq!(reach(r#"(func (export "handle_response") (param i32 i32))"#), Reach::Only(vec![]));
    }

    #[test]
    fn calls_are_followed_through_guest_functions() {
        let r = reach(
            r#"(func $helper (call $set (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
    (drop (call $values (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0))))
  (func $middle (call $helper))
  (func (export "handle_response") (param i32 i32) (call $middle))"#,
        );
        assert!(r.may_call(HostFunction::GetHeaderValues) && r.may_call(HostFunction::SetHeaderValue));
        assert!(!r.may_call(HostFunction::GetUri), "only handle_request calls get_uri");
    }

    #[test]
    fn an_indirect_call_makes_it_unknown() {
        let r = reach(
            r#"(type $t (func))
  (func (export "handle_response") (param i32 i32) (call_indirect (type $t) (i32.const 0)))"#,
        );
        assert_eq!(r, Reach::Unknown);
    }

    #[test]
    fn recursion_ends() {
        let r = reach(
            r#"(func $a (param i32) (if (local.get 0) (then (call $a (i32.const 0)))))
  (func (export "handle_response") (param i32 i32) (call $a (i32.const 1)))"#,
        );
        assert_eq!(r, Reach::Only(vec![]));
    }

    #[test]
    fn unreadable_bytes_are_unknown() {
        assert_eq!(from_handle_response(b"not wasm"), Reach::Unknown);
    }
}
