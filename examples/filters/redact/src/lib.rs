//! `redact`: masks card numbers and e-mail addresses in request and
//! response bodies.
//!
//! Configuration (JSON, optional):
//!
//! ```json
//! {"patterns": ["card", "email"]}
//! ```
//!
//! `patterns` lists the built-in patterns to mask; an empty configuration
//! enables both:
//!
//! * `card`: runs of 13 to 19 digits, optionally separated by single spaces
//!   or dashes (`4111 1111 1111 1111`, `4111-1111-1111-1111`). A longer run
//!   of digits is left alone (it is not a card number); no Luhn check.
//! * `email`: `local@domain.tld` with a local part of letters, digits and
//!   `.`, `_`, `%`, `+`, `-`, a domain of dot-separated labels of letters,
//!   digits and `-`, and a top-level label of at least two letters.
//!
//! Every byte of a match, separators included, is replaced by `*`, so bodies
//! keep their length and layout: `card 4111-1111-1111-1111.` becomes
//! `card *******************.`.
//!
//! The filter enables `buffer_request` and `buffer_response`: it reads the
//! whole request body before the next handler and the whole response body
//! after it, and writes a body back only when something was masked (the host
//! then recomputes `content-length`). Bodies are scanned as bytes, as
//! received: a compressed body (`content-encoding: gzip`, …) is not
//! decoded, so nothing in it is found.

use http_wasm_sdk::{Config, Error, Features, Filter, Next, Request, Response};
use serde::Deserialize;

/// A built-in pattern.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Card numbers.
    Card,
    /// E-mail addresses.
    Email,
}

/// The configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The patterns to mask.
    pub patterns: Vec<Pattern>,
}

/// The mask byte.
pub const MASK: u8 = b'*';

/// Masks every match of `patterns` in `body`; true when anything changed.
pub fn redact(body: &mut [u8], patterns: &[Pattern]) -> bool {
    let mut changed = false;
    for pattern in patterns {
        changed |= match pattern {
            Pattern::Card => mask_cards(body),
            Pattern::Email => mask_emails(body),
        };
    }
    changed
}

fn mask(bytes: &mut [u8]) {
    bytes.fill(MASK);
}

/// Masks card numbers: 13 to 19 digits, single spaces or dashes between.
pub fn mask_cards(body: &mut [u8]) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < body.len() {
        if !body[i].is_ascii_digit() || (i > 0 && body[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        // A run starts at i: digits, with one separator at most between two.
        let (mut digits, mut end, mut j) = (0, i, i);
        while j < body.len() {
            if body[j].is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if matches!(body[j], b' ' | b'-') && body.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        if (13..=19).contains(&digits) {
            mask(&mut body[i..end]);
            changed = true;
        }
        i = end.max(i + 1);
    }
    changed
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The length of the domain at the start of `bytes` (`example.co.uk`), or
/// 0 when there is none: labels of letters, digits and `-`, separated by
/// single dots, the last of at least two letters.
fn domain_len(bytes: &[u8]) -> usize {
    let mut len = bytes.iter().take_while(|b| is_domain(**b)).count();
    // Trailing dots or dashes end a sentence, not a domain.
    while len > 0 && matches!(bytes[len - 1], b'.' | b'-') {
        len -= 1;
    }
    let domain = &bytes[..len];
    let Some(dot) = domain.iter().rposition(|b| *b == b'.') else { return 0 };
    let tld = &domain[dot + 1..];
    let labels_ok = domain.split(|b| *b == b'.').all(|label| !label.is_empty());
    if labels_ok && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) { len } else { 0 }
}

/// Masks e-mail addresses.
pub fn mask_emails(body: &mut [u8]) -> bool {
    let mut changed = false;
    let mut i = 0;
    while let Some(at) = body[i..].iter().position(|b| *b == b'@').map(|p| p + i) {
        let local = body[..at].iter().rev().take_while(|b| is_local(**b)).count();
        // A local part does not start with a dot.
        let local = local - body[at - local..at].iter().take_while(|b| **b == b'.').count();
        let domain = domain_len(&body[at + 1..]);
        if local > 0 && domain > 0 {
            mask(&mut body[at - local..at + 1 + domain]);
            changed = true;
            i = at + 1 + domain;
        } else {
            i = at + 1;
        }
    }
    changed
}

/// The filter.
#[derive(Debug)]
pub struct Redact {
    patterns: Vec<Pattern>,
}

impl Redact {
    fn redact_body(&self, body: http_wasm_sdk::Body) {
        let mut bytes = body.read_all();
        if redact(&mut bytes, &self.patterns) {
            body.write(&bytes);
        }
    }
}

impl Filter for Redact {
    fn features() -> Features {
        Features::BUFFER_REQUEST | Features::BUFFER_RESPONSE
    }

    fn new(config: &Config) -> Result<Self, Error> {
        let patterns = if config.as_bytes().iter().all(u8::is_ascii_whitespace) {
            vec![Pattern::Card, Pattern::Email]
        } else {
            config.json::<Settings>()?.patterns
        };
        Ok(Redact { patterns })
    }

    fn handle_request(&mut self, req: &mut Request, _res: &mut Response) -> Next {
        self.redact_body(req.body());
        Next::Continue(0)
    }

    fn handle_response(&mut self, _req_ctx: u32, _req: &mut Request, res: &mut Response, is_error: bool) {
        if !is_error {
            self.redact_body(res.body());
        }
    }
}

http_wasm_sdk::export_filter!(Redact);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, patterns: &[Pattern]) -> (String, bool) {
        let mut bytes = input.as_bytes().to_vec();
        let changed = redact(&mut bytes, patterns);
        (String::from_utf8(bytes).unwrap(), changed)
    }

    fn both(input: &str) -> String {
        run(input, &[Pattern::Card, Pattern::Email]).0
    }

    #[test]
    fn cards() {
        assert_eq!(both("card 4111111111111111."), "card ****************.");
        assert_eq!(both("4111 1111 1111 1111"), "*******************");
        assert_eq!(both("x 4111-1111-1111-1111 y"), "x ******************* y");
        assert_eq!(both("4111111111111"), "*************"); // 13 digits
        assert_eq!(both("411111111111"), "411111111111"); // 12 digits
        assert_eq!(both("41111111111111111111"), "41111111111111111111"); // 20 digits
        assert_eq!(both("4111  1111 1111 1111"), "4111  1111 1111 1111"); // double space splits
        assert_eq!(both("4111--1111-1111-1111"), "4111--1111-1111-1111");
        assert_eq!(both("n=4111111111111111-"), "n=****************-");
        assert_eq!(both("tel 1234 5678"), "tel 1234 5678");
    }

    #[test]
    fn emails() {
        assert_eq!(both("mail a.b+c@ex-ample.co.uk now"), "mail ******************** now");
        assert_eq!(both("<x@y.io>."), "<******>.");
        assert_eq!(both("end x@y.org."), "end *******.");
        assert_eq!(both("not@an-address"), "not@an-address");
        assert_eq!(both("x@y.c"), "x@y.c");
        assert_eq!(both("@y.com"), "@y.com");
        assert_eq!(both("x@.com"), "x@.com");
        assert_eq!(both("x@y..com"), "x@y..com");
        assert_eq!(both("a@b.cd, e@f.gh"), "******, ******");
        assert_eq!(both(".x@y.io"), ".******");
        assert_eq!(both("@@@"), "@@@");
    }

    #[test]
    fn patterns_are_selected() {
        let input = "x@y.io 4111111111111111";
        assert_eq!(run(input, &[Pattern::Email]), ("****** 4111111111111111".into(), true));
        assert_eq!(run(input, &[Pattern::Card]), ("x@y.io ****************".into(), true));
        assert_eq!(run("nothing here", &[Pattern::Card, Pattern::Email]), ("nothing here".into(), false));
        assert_eq!(run(input, &[]), (input.into(), false));
    }

    #[test]
    fn non_utf8_bodies() {
        let mut body = b"\xff\xfe4111111111111111\xff".to_vec();
        assert!(redact(&mut body, &[Pattern::Card]));
        assert_eq!(body, b"\xff\xfe****************\xff");
    }

    #[test]
    fn configs() {
        let new = |json: &str| Redact::new(&Config::from_bytes(json)).map(|r| r.patterns);
        assert_eq!(new("").unwrap(), [Pattern::Card, Pattern::Email]);
        assert_eq!(new(" \n").unwrap(), [Pattern::Card, Pattern::Email]);
        assert_eq!(new(r#"{"patterns":["email"]}"#).unwrap(), [Pattern::Email]);
        assert_eq!(new(r#"{"patterns":[]}"#).unwrap(), []);
        assert!(new(r#"{"patterns":["ssn"]}"#).is_err());
        assert!(new(r#"{"pattern":["card"]}"#).is_err());
    }
}
