//! `harden`: adds security headers to every response.
//!
//! After the next handler, the filter sets:
//!
//! | header | value |
//! |---|---|
//! | `x-content-type-options` | `nosniff` |
//! | `x-frame-options` | `DENY` |
//! | `referrer-policy` | `no-referrer` |
//! | `strict-transport-security` | `max-age=63072000` |
//!
//! Each replaces any value the next handler set. Changing response headers
//! after the next handler needs the `buffer_response` feature, which the
//! filter enables. Responses of a failed next handler (`is_error`) are left
//! alone.
//!
//! Configuration (JSON, optional): an object of extra headers, set after the
//! defaults. A string value sets the header (overriding a default of the
//! same name); `null` removes a default:
//!
//! ```json
//! {"content-security-policy": "default-src 'self'", "x-frame-options": "SAMEORIGIN",
//!  "strict-transport-security": null}
//! ```
//!
//! Names must be valid header names and values may not contain CR, LF or
//! NUL; anything else fails the start of the module with a message in the
//! host's log.

use http_wasm_sdk::{Config, Error, Features, Filter, Next, Request, Response};
use std::collections::BTreeMap;

/// The headers set by default.
pub const DEFAULTS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=63072000"),
];

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The headers to set, in order, from the configuration: the defaults with
/// the configured ones applied.
pub fn headers(config: &Config) -> Result<Vec<(String, String)>, Error> {
    let extra: BTreeMap<String, Option<String>> =
        if config.as_bytes().iter().all(u8::is_ascii_whitespace) { BTreeMap::new() } else { config.json()? };
    let mut headers: Vec<(String, String)> =
        DEFAULTS.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    for (name, value) in extra {
        if !is_token(&name) {
            return Err(Error::new(format!("invalid header name {name:?}")));
        }
        let name = name.to_ascii_lowercase();
        headers.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(Error::new(format!("invalid value for header {name}")));
            }
            headers.push((name, value));
        }
    }
    Ok(headers)
}

/// The filter: the headers it sets.
#[derive(Debug)]
pub struct Harden {
    headers: Vec<(String, String)>,
}

impl Filter for Harden {
    fn features() -> Features {
        Features::BUFFER_RESPONSE
    }

    fn new(config: &Config) -> Result<Self, Error> {
        Ok(Harden { headers: headers(config)? })
    }

    fn handle_request(&mut self, _req: &mut Request, _res: &mut Response) -> Next {
        Next::Continue(0)
    }

    fn handle_response(&mut self, _req_ctx: u32, _req: &mut Request, res: &mut Response, is_error: bool) {
        if is_error {
            return;
        }
        let response_headers = res.headers();
        for (name, value) in &self.headers {
            response_headers.set(name, value);
        }
    }
}

http_wasm_sdk::export_filter!(Harden);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<(String, String)>, Error> {
        headers(&Config::from_bytes(json))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_without_config() {
        assert_eq!(parse("").unwrap(), pairs(&DEFAULTS));
        assert_eq!(parse(" \n").unwrap(), pairs(&DEFAULTS));
        assert_eq!(parse("{}").unwrap(), pairs(&DEFAULTS));
    }

    #[test]
    fn extra_headers_override_and_remove() {
        let got = parse(
            r#"{"Content-Security-Policy":"default-src 'self'","x-frame-options":"SAMEORIGIN",
                "strict-transport-security":null}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("x-content-type-options", "nosniff"),
                ("referrer-policy", "no-referrer"),
                ("content-security-policy", "default-src 'self'"),
                ("x-frame-options", "SAMEORIGIN"),
            ])
        );
    }

    #[test]
    fn bad_configs() {
        assert!(parse("[]").is_err());
        assert!(parse(r#"{"bad name":"x"}"#).is_err());
        assert!(parse(r#"{"x-a":"1\r\nx-b: 2"}"#).is_err());
        assert!(parse(r#"{"x-a":1}"#).is_err());
        assert!(parse("{").is_err());
    }
}
