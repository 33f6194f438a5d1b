//! The module's size: on `wasm32-unknown-unknown` the filter must stay no
//! larger than TinyGo's comparable filter (about 8 KB), so that it cannot
//! creep back up unnoticed.

use http_wasm_guest_build::Target;

/// TinyGo's comparable filter is about 8 KB: ours must not be larger.
const LIMIT: usize = 8192;

#[test]
fn module_is_no_larger_than_tinygos() {
    let sizes: Vec<(Target, usize)> = http_wasm_guest_build::build_all("http-wasm-example-header-validation")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(target, wasm)| (target, wasm.len()))
        .collect();
    for (target, size) in &sizes {
        println!("header-validation on {}: {size} bytes", target.triple());
    }
    let Some(&(_, unknown)) = sizes.iter().find(|(target, _)| *target == Target::Unknown) else {
        panic!("no wasm32-unknown-unknown build in {sizes:?}")
    };
    assert!(unknown <= LIMIT, "header-validation is {unknown} bytes on wasm32-unknown-unknown, over {LIMIT}");
}
