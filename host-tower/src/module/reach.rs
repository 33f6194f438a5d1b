//! Which host functions `handle_response` can reach, read off the module's
//! code: the host keeps a copy of the request's URI and headers past `next`
//! only for a guest that may read them there.
//!
//! Each function's calls are read while the module's single pass validates
//! its body ([`Calls::validate`]); then a walk of the direct-call graph from
//! the `handle_response` export. A function that calls indirectly
//! (`call_indirect`, `call_ref`) could call anything, so reaching one
//! answers "unknown", as does a module without that export or a call the
//! walk cannot follow: the host then keeps everything.

use http_wasm_abi::HostFunction;
use std::collections::HashSet;
use wasmparser::{FuncValidator, FunctionBody, Operator, OperatorsReader, ValidatorResources};

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
#[derive(Debug, Default)]
pub(crate) struct Calls {
    direct: Vec<u32>,
    indirect: bool,
}

impl Calls {
    /// Validates one function body with `validator` and reads its calls on
    /// the way: each operator is decoded once, for both.
    pub(crate) fn validate(
        validator: &mut FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
    ) -> Result<Calls, wasmparser::BinaryReaderError> {
        let mut reader = body.get_binary_reader();
        validator.read_locals(&mut reader)?;
        reader.set_features(*validator.features());
        let mut ops = OperatorsReader::new(reader);
        let mut calls = Calls::default();
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset()?;
            match op {
                Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                    calls.direct.push(function_index)
                }
                Operator::CallIndirect { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::CallRef { .. }
                | Operator::ReturnCallRef { .. } => calls.indirect = true,
                _ => {}
            }
            validator.op(offset, &op)?;
        }
        ops.finish()?;
        Ok(calls)
    }
}

/// What the function `start` (`handle_response`, if exported) may call,
/// given the host function each imported function is (`None` for other
/// imports) and the calls of each defined function, in index order.
pub(crate) fn from(start: Option<u32>, imported: &[Option<HostFunction>], defined: &[Calls]) -> Reach {
    walk(start, imported, defined).unwrap_or(Reach::Unknown)
}

fn walk(start: Option<u32>, imported: &[Option<HostFunction>], defined: &[Calls]) -> Option<Reach> {
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
        let calls = defined.get((f - imports) as usize)?;
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
        crate::module::Analysis::read(&wasm).unwrap().reach
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
    fn without_handle_response_it_is_unknown() {
        assert_eq!(reach(""), Reach::Unknown);
    }
}
