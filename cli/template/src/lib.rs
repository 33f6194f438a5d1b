//! An http-wasm filter: answers 403 to requests without `x-token`, and
//! tags the others with `x-gate` (the configuration, or `gate` when empty).
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown`, then
//! run the module in front of a service, e.g.
//! `http-wasm serve --filter target/wasm32-unknown-unknown/release/CRATE.wasm --config my-tag`.

use http_wasm_sdk::{Config, Error, Filter, Next, Request, Response};

/// Answers 403 to requests without `x-token`, tags the others.
pub struct Gate {
    tag: String,
}

impl Filter for Gate {
    fn new(config: &Config) -> Result<Self, Error> {
        let tag = config.as_str().ok_or("config must be UTF-8")?.trim();
        Ok(Gate { tag: if tag.is_empty() { "gate".into() } else { tag.into() } })
    }

    fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next {
        if !req.headers().contains("x-token") {
            res.set_status(403);
            res.body().write("forbidden\n");
            return Next::Stop;
        }
        req.headers().set("x-gate", &self.tag);
        Next::Continue(0)
    }
}

http_wasm_sdk::export_filter!(Gate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sets_the_tag() {
        let tag = |config: &[u8]| Gate::new(&Config::from_bytes(config)).map(|g| g.tag);
        assert_eq!(tag(b"").unwrap(), "gate");
        assert_eq!(tag(b" blue \n").unwrap(), "blue");
        assert!(tag(&[0xff]).is_err());
    }
}
