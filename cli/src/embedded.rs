//! The wasm modules built into the binary by `build.rs`.

/// The conformance guest (`http-wasm-conformance-guest`).
pub const CONFORMANCE_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/conformance-guest.wasm"));

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

/// The `router` example.
pub const ROUTER: Example = Example {
    file: "router.wasm",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm")),
    demo_config: r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"},{"prefix":"/public","header":"public"}]}"#,
};

/// The `header-validation` example.
pub const HEADER_VALIDATION: Example = Example {
    file: "header-validation.wasm",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/header-validation.wasm")),
    demo_config: r#"{"header":"x-api-key","kind":"api_key","min_len":8}"#,
};

/// The `harden` example.
pub const HARDEN: Example = Example {
    file: "harden.wasm",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/harden.wasm")),
    demo_config: r#"{"content-security-policy":"default-src 'self'"}"#,
};

/// Every example, in the demo's order (first outermost).
pub const EXAMPLES: [Example; 3] = [HARDEN, ROUTER, HEADER_VALIDATION];
