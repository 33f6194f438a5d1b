//! `http-wasm inspect`.

use crate::process::{run, tempdir};

#[test]
fn wrong_handle_request_signature_fails_with_expected_and_found() {
    let dir = tempdir("inspect");
    let wasm = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "handle_request") (param i32) (result i32) (i32.const 0))
            (func (export "handle_response") (param i32 i32)))"#,
    )
    .unwrap();
    std::fs::write(dir.join("bad.wasm"), wasm).unwrap();
    let out = run(&dir, &["inspect", "bad.wasm"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("export handle_request: expected () -> i64, found (i32) -> i32"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("does not match the http-wasm ABI"), "{stderr}");
    assert!(stdout.contains("handle_request (i32) -> i32"), "the inspection is printed too:\n{stdout}");
}

#[test]
fn a_good_module_is_described() {
    let dir = tempdir("inspect-ok");
    let out = run(&dir, &["conformance", "guest", "--out", "guest.wasm"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&dir, &["inspect", "guest.wasm", "--engine", "wasmtime"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in ["kind: reactor", "features enabled at start: trailers", "ABI: ok", "handle_request () -> i64"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let out = run(&dir, &["inspect", "missing.wasm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wasm"));
    let out = run(&dir, &["inspect", "guest.wasm", "--engine", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown engine \"nope\""));
}
