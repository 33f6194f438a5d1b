//! The wasm modules built into the binary: the conformance guest and the
//! example filters of the serve demo.
//!
//! They are committed in `modules/` (so the published crate builds without
//! the workspace's guest crates or a wasm target), each the exact output of
//! `http-wasm-guest-build` for its crate. `tests/all/embedded_modules.rs`
//! rebuilds every one from source and fails when a committed file is stale;
//! `HTTP_WASM_BLESS=1 cargo test -p http-wasm-cli --test all embedded_modules`
//! rewrites them.

/// The conformance guest (`http-wasm-conformance-guest`).
pub const CONFORMANCE_GUEST: &[u8] = include_bytes!("../modules/conformance-guest.wasm");

/// An example filter: its file name, its module and the configuration the
/// demo runs it with.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    /// The file name `build-examples` writes.
    pub file: &'static str,
    /// The module.
    pub wasm: &'static [u8],
    /// The demo configuration.
    pub demo_config: &'static str,
}

/// The `router` example (`http-wasm-example-router`).
pub const ROUTER: Example = Example {
    file: "router.wasm",
    wasm: include_bytes!("../modules/router.wasm"),
    demo_config: r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"},{"prefix":"/public","header":"public"}]}"#,
};

/// The `header-validation` example (`http-wasm-example-header-validation`).
pub const HEADER_VALIDATION: Example = Example {
    file: "header-validation.wasm",
    wasm: include_bytes!("../modules/header-validation.wasm"),
    demo_config: r#"{"header":"x-api-key","kind":"api_key","min_len":8}"#,
};

/// The `harden` example (`http-wasm-example-harden`).
pub const HARDEN: Example = Example {
    file: "harden.wasm",
    wasm: include_bytes!("../modules/harden.wasm"),
    demo_config: r#"{"content-security-policy":"default-src 'self'"}"#,
};

/// Every example, in the demo's order (first outermost).
pub const EXAMPLES: [Example; 3] = [HARDEN, ROUTER, HEADER_VALIDATION];
